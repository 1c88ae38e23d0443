"""The Ray engine against the embedded one, on a local 2-node cluster (tests/ray_cluster.py: a head and a second
node on this machine, one CPU each).

Prints, for a sweep of `--runs` runs of the Train page's default run (PAGE_DEFAULTS, code sizes 8, 16, 32, ...):
1. the wall time embedded (every run started at once through the server's run queue, which trains them one after
   another, each on every core) against on the cluster (every run submitted at once, one worker CPU each), from
   the first Start to the last run's end;
2. samples/s per run on a worker against in-process (one run alone, each on one torch thread: what a run gets from
   one CPU either way; goal: ratio >= 0.9), and what the sweep's runs got;
3. the poll latency: a handle's poll of its actor (what changed since its last poll), timed from this process
   every 0.25 s while the sweep trains (goal: p95 <= 50 ms);
4. a default run's length on one worker CPU, and a worker's memory (for docs/cluster.md's capacity model).
Needs MNIST in the data folder (CAE_DATA_DIR or ./data), used by this process and by both nodes. Run:
`python -m benchmarks.bench_ray [--runs 4] [--epochs 4]`.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path

import torch

from cae.engine.data import data_dir, load_mnist
from cae.engine.engine import EmbeddedEngine, RunHandle
from cae.engine.run_queue import RunQueue
from cae.engine.store import RunStore, new_workspace_id
from cae.engine.train_config import PAGE_DEFAULTS
from cae.engine.trainer import RunState
from tests.ray_cluster import local_cluster

POLL_EVERY = 0.25


def sweep_configs(runs: int, epochs: int) -> list:
    sizes = [8 * 2 ** index for index in range(runs)]
    return [(replace(PAGE_DEFAULTS.model, code_size=size), replace(PAGE_DEFAULTS.train, epochs=epochs))
            for size in sizes]


def wait_all(handles: list[RunHandle]) -> None:
    for handle in handles:
        handle.join()
    failed = [handle.snapshot().error or handle.notice for handle in handles if handle.state is not RunState.FINISHED]
    if failed:
        raise SystemExit(f"a run did not finish: {failed}")


def per_run_speed(handle: RunHandle) -> float:
    """Samples/s over the run's training steps (validation excluded)."""
    history = handle.snapshot().history
    return history.samples / history.train_seconds


def time_polls(engine, handles: list[RunHandle], stop: threading.Event, latencies: list[float]) -> None:
    """Poll the first running run's actor as its handle does (incremental), every POLL_EVERY seconds."""
    import ray

    from cae.engine.ray_engine import NAMESPACE, actor_name

    have = {"steps": 0, "checks": 0, "filters": -1, "previews": -1}
    actor = None
    while not stop.is_set():
        if actor is None:
            running = [handle for handle in handles if handle.state is RunState.RUNNING]
            try:
                actor = ray.get_actor(actor_name(running[0].run_id), namespace=NAMESPACE) if running else None
            except ValueError:  # it ended between the two looks
                actor = None
            have = {"steps": 0, "checks": 0, "filters": -1, "previews": -1}
        if actor is not None:
            began = time.perf_counter()
            try:
                answer = ray.get(actor.poll.remote(have, False), timeout=10)
            except Exception:  # its run ended and its actor exited: follow another
                actor = None
                continue
            latencies.append(time.perf_counter() - began)
            if answer.get("phase") == "running":
                delta = answer["history"]
                have["steps"] = delta["steps_from"] + len(delta["train_loss"])
                have["checks"] = delta["checks_from"] + len(delta["val_step"])
                have["filters"] = answer["filters"][0] if answer["filters"] else have["filters"]
                have["previews"] = answer["previews"][0] if answer["previews"] else have["previews"]
        stop.wait(POLL_EVERY)


def worker_memory_mb(pid: int) -> float:
    rss = subprocess.run(["ps", "-o", "rss=", "-p", str(pid)], capture_output=True, text=True).stdout.strip()
    return int(rss) / 1024 if rss else 0.0  # gone


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=PAGE_DEFAULTS.train.epochs)
    parser.add_argument("--rounds", type=int, default=2, help="of the one-run-alone comparison")
    args = parser.parse_args()
    data = load_mnist()
    torch_threads = torch.get_num_threads()
    folder = Path(data_dir()).resolve()
    print(f"data: {data.describe()} ({folder}); default run: {PAGE_DEFAULTS.train.describe()}, "
          f"{PAGE_DEFAULTS.train.train_subset:,} digits; torch threads here: {torch.get_num_threads()}")
    configs = sweep_configs(args.runs, args.epochs)
    with tempfile.TemporaryDirectory(prefix="cae-bench-ray-", dir="/tmp") as temp:
        store = RunStore(root=Path(temp) / "runs")
        workspace = new_workspace_id()

        embedded = EmbeddedEngine(lambda: data, store=store, queue=RunQueue(1))
        began = time.perf_counter()
        handles = [embedded.start(model, train, workspace=workspace) for model, train in configs]
        wait_all(handles)
        embedded_wall = time.perf_counter() - began
        embedded_speeds = [per_run_speed(handle) for handle in handles]
        print(f"1. embedded sweep of {args.runs} runs, one after another: {embedded_wall:.1f} s "
              f"({statistics.mean(embedded_speeds):,.0f} samples/s a run, {torch.get_num_threads()} threads)")

        with local_cluster(Path(temp) / "ray", env={"CAE_DATA_DIR": str(folder)}) as cluster:
            from cae.engine.ray_engine import RayEngine

            engine = RayEngine.connect(cluster.address, lambda: data, store=store)
            latencies: list[float] = []
            stop = threading.Event()
            began = time.perf_counter()
            handles = [engine.start(model, train, workspace=workspace) for model, train in configs]
            poller = threading.Thread(target=time_polls, args=(engine, handles, stop, latencies), daemon=True)
            poller.start()
            memory: dict[str, float] = {}  # a run's worker: the most memory it was seen with
            placed: dict[str, float] = {}
            ended: dict[str, float] = {}
            looks = 0
            while any(handle.alive for handle in handles):
                now = time.perf_counter()
                looks += 1
                for handle in handles:
                    if handle.state is RunState.RUNNING:
                        placed.setdefault(handle.run_id, now - began)
                        if looks % 10 == 0:  # `ps` every 2 s: more would take CPU from the runs
                            seen = worker_memory_mb(handle.worker.pid)
                            memory[handle.run_id] = max(memory.get(handle.run_id, 0.0), seen)
                    if not handle.alive:
                        ended.setdefault(handle.run_id, now - began)
                time.sleep(0.2)
            cluster_wall = time.perf_counter() - began
            stop.set()
            poller.join()
            wait_all(handles)
            cluster_speeds = [per_run_speed(handle) for handle in handles]
            lengths = [ended[run] - placed[run] for run in placed if run in ended]
            cpus = engine.load().places
            print(f"1. cluster sweep of {args.runs} runs on {cpus} worker CPUs: {cluster_wall:.1f} s "
                  f"({statistics.mean(cluster_speeds):,.0f} samples/s a run, 1 thread each, {cpus} at once); "
                  f"speed-up {embedded_wall / cluster_wall:.2f}x")
            ordered = sorted(latencies)
            p95 = ordered[int(0.95 * (len(ordered) - 1))]
            print(f"3. poll latency while the sweep trained: {len(ordered)} polls, median "
                  f"{statistics.median(ordered) * 1000:.1f} ms, p95 {p95 * 1000:.1f} ms, max {ordered[-1] * 1000:.1f} "
                  f"ms (goal p95 <= 50 ms)")
            first_wave = sorted(placed.values())[:cpus]
            print(f"4. a default run on one worker CPU, from running to its end (its last check of every held-out "
                  f"digit included): {statistics.mean(lengths):.1f} s (min {min(lengths):.1f}, max "
                  f"{max(lengths):.1f}); Start to running on a free CPU (a worker's start and its data): "
                  f"{statistics.mean(first_wave):.1f} s; a worker's memory at most {max(memory.values()):.0f} MB "
                  f"(resident, shared libraries included)")

            # Alone: one run on a worker, one in this process on one thread; same configs, interleaved.
            model, train = configs[0]
            torch.set_num_threads(1)
            solo = EmbeddedEngine(lambda: data, store=store, queue=RunQueue(1))
            worker_speeds, here_speeds = [], []
            for _ in range(args.rounds):
                for engine_used, speeds in ((engine, worker_speeds), (solo, here_speeds)):
                    alone = engine_used.start(model, train, workspace=workspace)
                    wait_all([alone])
                    speeds.append(per_run_speed(alone))
            worker_speed, here_speed = statistics.median(worker_speeds), statistics.median(here_speeds)
            print(f"2. one run alone, one torch thread each, {args.rounds} rounds interleaved (medians): on a worker "
                  f"{worker_speed:,.0f} samples/s ({', '.join(f'{v:,.0f}' for v in worker_speeds)}), in this "
                  f"process {here_speed:,.0f} ({', '.join(f'{v:,.0f}' for v in here_speeds)}): ratio "
                  f"{worker_speed / here_speed:.2f} (goal >= 0.9)")
            mean_cluster, mean_embedded = statistics.mean(cluster_speeds), statistics.mean(embedded_speeds)
            print(f"   in the sweep: {mean_cluster:,.0f} samples/s a run on the cluster (1 thread, {cpus} at once) "
                  f"against {mean_embedded:,.0f} embedded (one run at a time on {torch_threads} threads): "
                  f"{cpus * mean_cluster:,.0f} samples/s for the {cpus} at once against {mean_embedded:,.0f}")
            import ray

            ray.shutdown()
        store.close()


if __name__ == "__main__":
    main()
