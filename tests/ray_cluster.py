"""A real Ray cluster on this machine for the tests and benchmarks/bench_ray.py: a head and further nodes, each its
own `ray start --block` process (its own raylet, object store and workers), one CPU each, stopped afterwards.

Each node's starter is owned here: SIGTERM makes it drain and stop the processes of its node, so a cluster can be
stopped alone while another runs. `ray stop` then stops anything left of this session's clusters, and the ports
are checked to be free again. Ray's memory is kept small (an 80 MB object store a node, no dashboard): the machine
is shared.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

RAY = str(Path(sys.executable).with_name("ray"))
OBJECT_STORE_BYTES = 80 * 1024 * 1024  # Ray's floor is about 75 MB
HOST = "127.0.0.1"
START_SECONDS = 90.0  # a node's start on a busy 2-core machine
STOP_SECONDS = 60.0


@dataclass
class LocalCluster:
    address: str  # the head's HOST:PORT, for CAE_RAY_ADDRESS
    temp_dir: Path
    env: dict[str, str]  # what the nodes' processes (and so the actors) were started with
    starters: list[subprocess.Popen] = field(default_factory=list)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


def _wait_for_nodes(address: str, count: int, env: dict[str, str], starters: list[subprocess.Popen]) -> None:
    """Until the cluster counts `count` live nodes (asked through `ray status`, which needs no dashboard)."""
    deadline = time.monotonic() + START_SECONDS
    while True:
        for starter in starters:
            if starter.poll() is not None:
                raise RuntimeError(f"a Ray node did not start (exit {starter.returncode}); see its output above")
        status = subprocess.run([RAY, "status", "--address", address], env=env, capture_output=True, text=True)
        if status.returncode == 0 and status.stdout.count(" node_") >= count:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"the Ray cluster at {address} has not got {count} nodes after {START_SECONDS:.0f} s:"
                               f"\n{status.stdout}\n{status.stderr}")
        time.sleep(1)


def stop_node(starter: subprocess.Popen) -> None:
    """Stop one node: its starter drains it and stops its processes."""
    if starter.poll() is None:
        starter.send_signal(signal.SIGTERM)
        try:
            starter.wait(STOP_SECONDS)
        except subprocess.TimeoutExpired:
            starter.kill()
            starter.wait()


@contextmanager
def local_cluster(temp_dir: Path, *, nodes: int = 2, cpus_per_node: int = 1, env: dict[str, str] | None = None,
                  auth_token: str | None = None) -> Iterator[LocalCluster]:
    """A cluster of `nodes` nodes (the first is the head) with `cpus_per_node` CPUs each, its processes started
    with `env` on top of this process's environment; with `auth_token`, Ray's token authentication is on."""
    node_env = {**os.environ, **(env or {}), "RAY_AUTH_MODE": "disabled"}
    node_env.pop("RAY_ADDRESS", None)
    if auth_token is not None:
        node_env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=auth_token)
    port = free_port()
    address = f"{HOST}:{port}"
    common = ["--block", "--num-cpus", str(cpus_per_node), "--object-store-memory", str(OBJECT_STORE_BYTES),
              "--node-ip-address", HOST, "--disable-usage-stats"]
    cluster = LocalCluster(address=address, temp_dir=temp_dir, env=node_env)
    temp_dir.mkdir(parents=True, exist_ok=True)
    try:
        cluster.starters.append(subprocess.Popen(
            [RAY, "start", "--head", "--port", str(port), "--include-dashboard", "false", "--temp-dir",
             str(temp_dir), *common], env=node_env, cwd=temp_dir, stdout=subprocess.DEVNULL))
        _wait_for_nodes(address, 1, node_env, cluster.starters)
        for _ in range(nodes - 1):
            cluster.starters.append(subprocess.Popen([RAY, "start", "--address", address, *common], env=node_env,
                                                     cwd=temp_dir, stdout=subprocess.DEVNULL))
        _wait_for_nodes(address, nodes, node_env, cluster.starters)
        yield cluster
    finally:
        for starter in reversed(cluster.starters):  # the workers first: the head's going leaves them waiting
            stop_node(starter)


def ray_processes_of(temp_dir: Path) -> list[str]:
    """Command lines of processes still running that belong to a cluster started in `temp_dir` (its session
    folder is in their arguments) and of Ray's worker processes (titled "ray::..."), for a test to check that
    nothing was left behind."""
    found = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True).stdout.splitlines()
    return [line for line in found[1:] if int(line.split(None, 1)[0]) != os.getpid() and "ps -eo" not in line
            and (str(temp_dir) in line or line.split(None, 1)[-1].startswith("ray::"))]
