"""The Ray engine (cae.engine.ray_engine) on a real cluster on this machine: a head and a second node, one CPU each
(tests/ray_cluster.py), their workers on the offline sample of MNIST (4,500 training digits: a run's last check is
500 digits, not 10,000).

A run trains to its end and lands in the store as an embedded one does, its actor then gone; Pause gives the worker
back and Resume goes on from the same step; a sweep from the command line trains its runs at once on both nodes; a
worker killed mid-run is "lost at step N", kept as an interrupted run with its last epoch's checkpoint, and Resume
finishes it; a new driver (a restarted app server) finds a run by its id and follows it; a run nobody polls stops
itself; a node whose data is not the app's fails the run with a sentence that says so; a code map is made by a task on
the cluster; a cluster that refuses the token gives the embedded engine and says why (one that does not answer:
tests/test_engine.py).

All slow; ray must be installed (requirements-cluster.txt): without it every test fails, saying so.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from cae.engine.data import load_mnist
from cae.engine.engine import RAY_ADDRESS_VARIABLE, EmbeddedEngine
from cae.engine.store import EndReason, RunStore, new_workspace_id
from cae.engine.train_config import TrainConfig
from cae.engine.trainer import RunState, StopReason
from cae.models.autoencoder import ModelConfig
from tests.apptest import until
from tests.conftest import ROOT

pytestmark = pytest.mark.slow

RAY_MISSING = importlib.util.find_spec("ray") is None
SHORT = TrainConfig(epochs=2, batch_size=64, train_subset=512, val_subset=200, seed=3)  # 8 steps an epoch


def long_run(epochs: int) -> TrainConfig:
    return TrainConfig(epochs=epochs, batch_size=32, train_subset=1024, val_subset=200, seed=5)  # 32 steps an epoch


def wait_until(condition: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"after {seconds:.0f} s: {what}")
        time.sleep(0.1)


@pytest.fixture(scope="module")
def sample_dir():
    """A data folder without full MNIST: the app and every node use the offline sample."""
    with tempfile.TemporaryDirectory(prefix="cae-no-mnist-") as folder:
        yield folder


@pytest.fixture(scope="module")
def cluster(sample_dir):
    """The cluster, stopped after the module's tests; nothing of it may be left running."""
    if RAY_MISSING:
        pytest.fail("ray is not installed: .venv/bin/pip install 'ray==2.60.0' (the line of requirements-cluster.txt)")
    from tests.ray_cluster import RAY, local_cluster, ray_processes_of

    temp = Path(tempfile.mkdtemp(prefix="cae-ray-", dir="/tmp"))  # short: Ray's socket paths live under it
    with local_cluster(temp, env={"CAE_DATA_DIR": sample_dir}) as running:
        yield running
    subprocess.run([RAY, "stop"], capture_output=True, env=running.env)
    assert not ray_processes_of(temp), "Ray processes were left running"
    shutil.rmtree(temp, ignore_errors=True)  # the nodes' logs and sockets


@pytest.fixture(scope="module")
def driver(cluster):
    """This process, connected to the cluster as a driver (as an app server is)."""
    import ray

    from cae.engine.ray_engine import connect

    connect(cluster.address)
    yield cluster
    ray.shutdown()


@pytest.fixture
def data(sample_dir, monkeypatch):
    monkeypatch.setenv("CAE_DATA_DIR", sample_dir)
    return load_mnist()


@pytest.fixture
def store():
    with RunStore() as opened:
        yield opened


@pytest.fixture
def engine(driver, data, store):
    """A Ray engine on this test's store; any run's actor left behind by a failing test is killed afterwards."""
    import ray

    from cae.engine.ray_engine import NAMESPACE, RayEngine

    yield RayEngine(lambda: data, store=store, preview_seconds=0.5, orphan_seconds=30)
    for entry in ray.util.list_named_actors(all_namespaces=True):
        if entry["namespace"] == NAMESPACE:
            ray.kill(ray.get_actor(entry["name"], namespace=NAMESPACE))


def actor_exists(run_id: str) -> bool:
    import ray

    from cae.engine.ray_engine import NAMESPACE, actor_name

    return {"name": actor_name(run_id), "namespace": NAMESPACE} in ray.util.list_named_actors(all_namespaces=True)


def free_cpus() -> int:
    import ray

    return int(ray.available_resources().get("CPU", 0))


def test_a_run_trains_to_its_end_on_a_worker_and_lands_in_the_store_as_an_embedded_one_does(engine, data, store):
    workspace = new_workspace_id()
    handle = engine.start(ModelConfig(), SHORT, workspace=workspace, name="on the cluster")
    assert handle.state is RunState.WAITING and handle.alive
    assert handle.snapshot().total_steps == 16 and handle.snapshot().previews is not None  # drawable at once
    handle.join(240)
    snap = handle.snapshot()
    assert snap.state is RunState.FINISHED and not handle.alive, (snap.error, handle.notice)
    assert snap.step == 16 and handle.worker is not None and handle.worker.pid != os.getpid()

    record = store.get_run(workspace, handle.run_id)
    assert record.state == "finished" and record.steps == 16 and record.data_source == data.source
    assert {item.kind for item in record.checkpoints} == {"epoch", "final"}
    assert record.scores["held_out_mse"] == pytest.approx(snap.history.val_mse[-1])
    # The incremental polls rebuilt the whole run: every loss point and check the store has.
    curve = store.loss_curve(workspace, handle.run_id)
    assert curve.steps == list(range(1, 17)) and snap.history.train_loss == pytest.approx(curve.loss)
    assert snap.history.val_mse == pytest.approx([check.val_mse for check in store.validations(workspace,
                                                                                               handle.run_id)])
    model = handle.final_checkpoint()
    assert model.training_state is None and model.held_out_mse == pytest.approx(snap.history.val_mse[-1])
    kernels = model.build_model().encoder_kernels()["conv1"].detach()[:, 0].numpy()
    assert kernels == pytest.approx(snap.filters["conv1"])  # the last filters fetched are the final weights'
    wait_until(lambda: not actor_exists(handle.run_id) and free_cpus() == 2, 30, "the ended run's actor went")

    embedded = EmbeddedEngine(lambda: data, store=store).start(ModelConfig(), SHORT, workspace=workspace,
                                                               name="in this process")
    embedded.join(240)
    alike = embedded.snapshot()
    assert alike.state is RunState.FINISHED and alike.step == snap.step
    assert snap.history.train_loss[0] == pytest.approx(alike.history.train_loss[0], rel=1e-4)  # same start
    assert snap.history.val_mse[-1] == pytest.approx(alike.history.val_mse[-1], rel=0.1)  # thread counts differ
    assert store.get_run(workspace, embedded.run_id).state == "finished"


def test_a_run_whose_actor_went_before_its_end_was_fetched_ends_as_the_store_says(driver, data, store):
    from cae.engine.ray_engine import RayEngine

    # The actor exits the moment its run has ended, while its follower polls every 15 s: the follower finds it gone
    # and learns the end, and the steps since its last poll, from the store.
    engine = RayEngine(lambda: data, store=store, poll_seconds=15, linger_seconds=0)
    workspace = new_workspace_id()
    handle = engine.start(ModelConfig(), SHORT, workspace=workspace)
    handle.join(240)
    snap = handle.snapshot()
    assert snap.state is RunState.FINISHED and snap.step == 16 and snap.stop_reason is None
    curve = store.loss_curve(workspace, handle.run_id)
    assert snap.history.train_loss == pytest.approx(curve.loss) and len(snap.history.val_mse) == 2
    assert handle.final_checkpoint().held_out_mse == pytest.approx(snap.history.val_mse[-1])


def test_pause_gives_the_worker_back_and_resume_goes_on_from_the_same_step(engine, store):
    workspace = new_workspace_id()
    handle = engine.start(ModelConfig(), long_run(20), workspace=workspace)
    wait_until(lambda: handle.snapshot().step >= 5, 120, "the run took steps")
    handle.pause()
    assert handle.pause_requested
    wait_until(lambda: "went back to the cluster" in (handle.notice or ""), 60, "the run parked")
    assert handle.state is RunState.PAUSED and handle.alive
    paused_at = handle.snapshot().step
    assert len(handle.snapshot().history.train_loss) == paused_at  # every point up to the pause was fetched
    wait_until(lambda: not actor_exists(handle.run_id) and free_cpus() == 2, 30, "the paused run's CPU came back")
    record = store.get_run(workspace, handle.run_id)
    assert record.state == "paused" and record.steps == paused_at
    assert ("last", paused_at) in {(item.kind, item.step) for item in record.checkpoints}

    handle.resume()
    wait_until(lambda: handle.snapshot().step > paused_at + 3, 120, "the resumed run went on")
    assert handle.state is RunState.RUNNING and handle.worker is not None
    handle.stop()
    handle.join(120)
    snap = handle.snapshot()
    assert snap.state is RunState.STOPPED and snap.stop_reason is StopReason.USER
    assert len(snap.history.train_loss) == snap.step  # one curve across the pause
    record = store.get_run(workspace, handle.run_id)
    assert record.end_reason is EndReason.USER and record.steps == snap.step
    assert store.loss_curve(workspace, handle.run_id).steps == list(range(1, snap.step + 1))


def test_a_sweep_from_the_command_line_trains_its_three_runs_at_once_on_both_nodes(driver, sample_dir, store,
                                                                                 tmp_path):
    workspace = new_workspace_id()
    env = {**os.environ, RAY_ADDRESS_VARIABLE: driver.address, "CAE_DATA_DIR": sample_dir}
    done = subprocess.run(
        [sys.executable, "-m", "cae.sweep", "code_size=2,4,8", "--dry-run", "--no-progress", "--workspace", workspace,
         "--out-dir", str(tmp_path / "out"), "--name", "on the cluster"],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "3 runs submitted to the Ray cluster" in done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert sorted(line["sweep"]["code_size"] for line in lines) == ["2", "4", "8"]
    assert all(line["held_out_mse"] > 0 and line["pca_mse"] > 0 and line["store_problem"] is None for line in lines)
    assert all(Path(line["checkpoint"]).is_file() for line in lines)
    assert len({line["worker"]["node"] for line in lines}) == 2  # the head's CPU and the second node's
    records = store.list_runs(workspace)
    assert sorted(record.model_config["code_size"] for record in records) == [2, 4, 8]
    assert all(record.state == "finished" and record.scores["pca_mse"] > 0 for record in records)
    first_end = min(record.ended_at for record in records)
    assert sum(record.created_at < first_end for record in records) == 3  # submitted together, not in turn


def test_a_worker_killed_mid_run_is_lost_at_its_step_and_resume_finishes_the_run(engine, store):
    workspace = new_workspace_id()
    handle = engine.start(ModelConfig(), long_run(8), workspace=workspace)

    def epoch_kept() -> bool:
        return any(item.kind == "epoch" for item in store.get_run(workspace, handle.run_id).checkpoints)

    wait_until(lambda: epoch_kept() and handle.snapshot().step > 34, 180, "an epoch's checkpoint was kept")
    os.kill(handle.worker.pid, signal.SIGKILL)
    handle.join(60)
    snap = handle.snapshot()
    assert snap.state is RunState.STOPPED and snap.stop_reason is StopReason.INTERRUPTED
    lost_at = int(snap.stop_message.removeprefix("worker lost at step "))
    assert lost_at >= 34 and "Resume goes on from its last epoch's checkpoint" in handle.notice
    record = store.get_run(workspace, handle.run_id)
    assert record.state == "interrupted" and record.end_message == f"worker lost at step {lost_at}"
    kept = max(item.step for item in record.checkpoints if item.kind == "epoch")
    assert kept % 32 == 0 and kept <= lost_at

    again = engine.resume(workspace, handle.run_id)
    assert again.snapshot().step == kept  # drawn from its checkpoint while it waits for a worker
    again.join(240)
    assert again.state is RunState.FINISHED, (again.snapshot().error, again.notice)
    record = store.get_run(workspace, handle.run_id)
    assert record.state == "finished" and record.steps == 256
    assert "final" in {item.kind for item in record.checkpoints}
    assert store.loss_curve(workspace, handle.run_id).steps == list(range(1, 257))


START_AND_LEAVE = """
import json, os, sys, time
from cae.engine.data import load_mnist
from cae.engine.ray_engine import RayEngine, connect
from cae.engine.store import RunStore
from cae.engine.train_config import TrainConfig
from cae.models.autoencoder import ModelConfig
connect(sys.argv[1])
data = load_mnist()
engine = RayEngine(lambda: data, store=RunStore())
handle = engine.start(ModelConfig(), TrainConfig(epochs=40, batch_size=32, train_subset=1024, val_subset=200),
                      workspace=sys.argv[2])
deadline = time.monotonic() + 180
while handle.snapshot().step < 3 and time.monotonic() < deadline:
    time.sleep(0.1)
print(json.dumps({"run_id": handle.run_id, "step": handle.snapshot().step}), flush=True)
os._exit(0)  # the app server goes away at once, its handle with it
"""

FIND_AND_STOP = """
import json, sys, time
from cae.engine.data import load_mnist
from cae.engine.ray_engine import RayEngine, connect
from cae.engine.store import RunStore
connect(sys.argv[1])
data = load_mnist()
engine = RayEngine(lambda: data, store=RunStore())
live = engine.live_runs(sys.argv[2])
handle = engine.attach(sys.argv[2], sys.argv[3])
deadline = time.monotonic() + 120
while handle.state.value != "running" and time.monotonic() < deadline:
    time.sleep(0.1)
seen = handle.snapshot()
handle.stop()
handle.join(120)
print(json.dumps({"live": live, "state": seen.state.value, "step": seen.step,
                  "points": len(seen.history.train_loss), "ended": handle.state.value}), flush=True)
"""


def start_and_leave(driver, sample_dir: str, workspace: str) -> dict:
    """A first app server (a driver process) starts a run in the workspace and dies; the run's id and step then."""
    env = {**os.environ, "CAE_DATA_DIR": sample_dir}
    first = subprocess.run([sys.executable, "-c", START_AND_LEAVE, driver.address, workspace], env=env, cwd=ROOT,
                           capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr[-3000:]
    return json.loads(first.stdout.splitlines()[-1])


def test_a_new_driver_finds_a_run_by_its_id_and_follows_it(driver, sample_dir, store):
    workspace = new_workspace_id()
    env = {**os.environ, "CAE_DATA_DIR": sample_dir}
    started = start_and_leave(driver, sample_dir, workspace)
    assert started["step"] >= 3
    assert actor_exists(started["run_id"])  # its driver is gone; the detached actor is not

    second = subprocess.run([sys.executable, "-c", FIND_AND_STOP, driver.address, workspace, started["run_id"]],
                            env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr[-3000:]
    followed = json.loads(second.stdout.splitlines()[-1])
    assert followed["live"] == [started["run_id"]]
    assert followed["state"] == "running" and followed["step"] > started["step"]
    assert followed["points"] == followed["step"]  # the whole curve, fetched by a driver that never saw it
    assert followed["ended"] == "stopped"
    record = store.get_run(workspace, started["run_id"])
    assert record.end_reason is EndReason.USER and record.steps >= followed["step"]
    wait_until(lambda: not actor_exists(started["run_id"]), 30, "the stopped run's actor went")


def test_a_run_nobody_polls_stops_itself_after_the_orphan_time_keeping_its_model(driver, data, store):
    from cae.engine.ray_engine import RayEngine

    engine = RayEngine(lambda: data, store=store, orphan_seconds=1, poll_gap_seconds=1)
    workspace = new_workspace_id()
    owner = {"here": True}
    handle = engine.start(ModelConfig(), long_run(40), workspace=workspace, owner_alive=lambda: owner["here"])
    wait_until(lambda: handle.snapshot().step >= 3, 120, "the run took steps")
    owner["here"] = False  # the tab closed: its polls no longer keep the run
    handle.join(60)
    snap = handle.snapshot()
    assert snap.state is RunState.STOPPED and snap.stop_reason is StopReason.SESSION_GONE
    assert snap.step < snap.total_steps
    record = store.get_run(workspace, handle.run_id)
    assert record.end_reason is EndReason.TAB_CLOSED
    assert "last" in {item.kind for item in record.checkpoints}  # its model is kept, and it can be resumed
    wait_until(lambda: not actor_exists(handle.run_id), 30, "the orphaned run's actor went")


def test_a_node_with_other_data_than_the_apps_fails_the_run_saying_so(driver, mnist, store):
    from cae.engine.ray_engine import RayEngine

    engine = RayEngine(lambda: mnist, store=store)  # the app has full MNIST; the nodes have the offline sample
    workspace = new_workspace_id()
    handle = engine.start(ModelConfig(), SHORT, workspace=workspace)
    handle.join(120)
    snap = handle.snapshot()
    assert snap.state is RunState.FAILED
    assert "trains on MNIST" in snap.error and "import the same data on every node" in snap.error
    assert store.get_run(workspace, handle.run_id).state == "failed"
    wait_until(lambda: not actor_exists(handle.run_id), 30, "the failed run's actor went")


def test_a_code_map_is_made_by_a_task_on_the_cluster_that_reports_its_progress(driver):
    from cae.views.cluster_maps import fit_on_cluster
    from cae.views.latent_maps import MapJobs

    generator = np.random.default_rng(0)
    centres = generator.normal(size=(3, 8)) * 10
    codes = np.concatenate([centre + generator.normal(size=(100, 8)) for centre in centres]).astype(np.float32)
    job = MapJobs(fit_on_cluster).start("three blobs", codes)
    wait_until(lambda: job.finished, 180, "the map was made")
    assert job.error is None and job.progress.stage == "done" and job.progress.preview is not None
    coords = job.result.coords
    assert coords.shape == (300, 2) and np.isfinite(coords).all() and not coords.flags.writeable
    labels = np.repeat(np.arange(3), 100)
    distances = ((coords[:, None] - coords[None]) ** 2).sum(-1)
    nearest = np.argsort(distances, axis=1)[:, 1:6]
    assert (labels[nearest] == labels[:, None]).mean() > 0.95  # the blobs stay apart on the map


CHOOSE = """
import json, time
from cae.engine.engine import engine_from_environment
from cae.engine.store import RunStore
began = time.monotonic()
chosen = engine_from_environment(lambda: None, store=RunStore())
print(json.dumps({"engine": chosen.engine.name, "problem": chosen.problem, "seconds": time.monotonic() - began}))
"""


def test_token_authentication_is_named_when_the_token_is_missing_or_wrong(tmp_path):
    if RAY_MISSING:
        pytest.fail("ray is not installed: .venv/bin/pip install 'ray==2.60.0' (the line of requirements-cluster.txt)")
    from tests.ray_cluster import local_cluster

    token = "cae-test-token-0123456789abcdef"
    temp = Path(tempfile.mkdtemp(prefix="cae-ray-token-", dir="/tmp"))
    home = tmp_path / "home"  # no ~/.ray/auth_token to be found by chance
    home.mkdir()
    cases = {"no token": {}, "mode without token": {"RAY_AUTH_MODE": "token"},
             "wrong token": {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": "not-the-token"},
             "the token": {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token}}
    with local_cluster(temp, nodes=1, auth_token=token) as secured:
        base = {key: value for key, value in os.environ.items() if not key.startswith("RAY_")}
        started = {case: subprocess.Popen(
            [sys.executable, "-c", CHOOSE], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
            env={**base, **extra, "HOME": str(home), RAY_ADDRESS_VARIABLE: secured.address})
            for case, extra in cases.items()}
        told = {case: json.loads(process.communicate(timeout=240)[0].splitlines()[-1])
                for case, process in started.items()}
    shutil.rmtree(temp, ignore_errors=True)
    assert told["the token"]["engine"] == "ray" and told["the token"]["problem"] is None
    for case in ("no token", "wrong token"):
        assert told[case]["engine"] == "embedded" and "refused this server's token" in told[case]["problem"]
        assert told[case]["seconds"] < 30  # ray.init alone: about 20 s, then "Failed to connect" only
    assert "needs a token and this server has none" in told["mode without token"]["problem"]
    assert "RAY_AUTH_TOKEN" in told["no token"]["problem"]


def ray_train_page(address: str, sample_dir: str, monkeypatch, *, workspace: str | None = None, **settings):
    """The Train page of an app server whose CAE_RAY_ADDRESS names the cluster (this process is its driver)."""
    from streamlit.testing.v1 import AppTest

    from cae.ui import common as ui

    monkeypatch.setenv("CAE_DATA_DIR", sample_dir)
    monkeypatch.setenv(RAY_ADDRESS_VARIABLE, address)
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    if workspace is not None:
        at.query_params[ui.WORKSPACE_PARAM] = workspace
    at.run()
    at.switch_page("pages/1_Train.py").run()
    for key, value in settings.items():
        at.session_state[key] = value
    at.run()
    assert not at.exception, at.exception
    assert not at.warning or all("cluster" not in warning.value for warning in at.warning)  # the cluster is used
    return at


def test_a_sweep_from_the_train_page_trains_its_three_runs_on_the_cluster(driver, sample_dir, store, monkeypatch):
    from cae.engine.ray_engine import RayRun
    from cae.ui import common as ui

    at = ray_train_page(driver.address, sample_dir, monkeypatch, t_subset=500, t_batch=64, t_epochs=2, t_lr=1e-3)
    workspace = at.query_params[ui.WORKSPACE_PARAM]
    assert any(caption.value.startswith("The Ray cluster trains 2 runs at once") for caption in at.caption)
    at.selectbox(key="t_sweep_setting").set_value("Code size").run()
    at.text_input(key="t_sweep_values-code_size").set_value("2, 4, 8").run()
    at.button(key="t_sweep_start").click().run()
    assert not at.exception and not at.error, [error.value for error in at.error]
    handles = [handle for _, handle in at.session_state["t_sweep"].runs]
    assert len(handles) == 3 and all(isinstance(handle, RayRun) for handle in handles)
    assert [str(value) for value in at.dataframe[0].value["Code size"]] == ["2", "4", "8"]
    until(at, lambda: not any(handle.alive for handle in handles), seconds=300)  # the sweep's three runs ended
    at.run()
    assert list(at.dataframe[0].value["state"]) == ["finished"] * 3
    assert len({handle.worker.node for handle in handles}) == 2  # both nodes trained the sweep's runs
    records = store.list_runs(workspace)
    assert sorted(record.model_config["code_size"] for record in records) == [2, 4, 8]
    assert all(record.state == "finished" and record.checkpoints for record in records)
    wait_until(lambda: not any(actor_exists(handle.run_id) for handle in handles), 30, "the runs' actors went")


def test_after_an_app_restart_the_train_page_follows_a_run_that_went_on_on_the_cluster(driver, sample_dir, store,
                                                                                      monkeypatch):
    """The first app server started the run and died; a page of the new one at the same address finds it training,
    follows it (its whole curve so far), stops it, and the model joins the page's model choice."""
    from cae.ui import common as ui

    workspace = new_workspace_id()
    started = start_and_leave(driver, sample_dir, workspace)

    at = ray_train_page(driver.address, sample_dir, monkeypatch, workspace=workspace)
    assert [expander.label for expander in at.expander if expander.label.startswith("Runs of this address training")] \
        == ["Runs of this address training now (1)"]
    at.button(key=f"t_follow-{started['run_id']}").click().run()
    handle = at.session_state[ui.SharedKey.RUNNER]
    assert handle.run_id == started["run_id"]
    until(at, lambda: handle.state is RunState.RUNNING and handle.snapshot().step > started["step"], seconds=120)
    assert len(handle.snapshot().history.train_loss) == handle.snapshot().step  # its whole curve
    assert at.button(key="t_start").disabled and not at.button(key="t_stop").disabled
    at.button(key="t_stop").click().run()
    until(at, lambda: not handle.alive, seconds=120)
    at.run()
    assert any(option.startswith("Run 1: CAE, code") for option in at.selectbox(key="model_select").options)
    assert store.get_run(workspace, started["run_id"]).end_reason is EndReason.USER


def test_the_code_space_makes_a_t_sne_map_by_a_task_on_the_cluster(driver, sample_dir, monkeypatch):
    """With CAE_RAY_ADDRESS set, the page's t-SNE job for a model without a shipped map goes to the cluster."""
    from streamlit.testing.v1 import AppTest

    from cae.engine import checkpoint
    from cae.views import cluster_maps

    calls = []
    fit_on_cluster = cluster_maps.fit_on_cluster

    def counted(codes, progress, **options):
        calls.append(len(codes))
        return fit_on_cluster(codes, progress, **options)

    monkeypatch.setattr(cluster_maps, "fit_on_cluster", counted)
    monkeypatch.setenv("CAE_DATA_DIR", sample_dir)
    monkeypatch.setenv(RAY_ADDRESS_VARIABLE, driver.address)
    shipped = checkpoint.load(checkpoint.PRETRAINED[next(iter(checkpoint.PRETRAINED))])
    nudged = {name: tensor + 1e-3 if name.endswith("bias") else tensor for name, tensor in shipped.state_dict.items()}
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.session_state["models"] = {"nudged": checkpoint.Checkpoint(shipped.model_config, nudged)}
    at.session_state["model_select"] = "nudged"  # weights of its own: no map was shipped with it
    at.run()
    at.switch_page("pages/3_Code_space.py").run()
    at.radio(key="cs_method").set_value("t-SNE").run()
    until(at, lambda: any(caption.value.startswith("t-SNE of the codes (openTSNE), made in")
                          for caption in at.caption), seconds=240)
    assert calls == [500]  # the sample's 500 held-out digits, mapped on the cluster


def test_following_a_run_again_after_a_reload_takes_it_from_the_gone_page_and_pause_keeps_it_paused(engine, store):
    """One follower at a time: the handle of a page that has gone lets go when a new page follows the run (so the
    new page's Pause is not read as a lost worker), and a page still open keeps its run."""
    workspace = new_workspace_id()
    first_page_open = [True]
    first = engine.start(ModelConfig(), long_run(20), workspace=workspace, owner_alive=lambda: first_page_open[0])
    wait_until(lambda: first.snapshot().step >= 3, 120, "the run took steps")
    with pytest.raises(LookupError, match="shown in another open tab"):
        engine.attach(workspace, first.run_id, owner_alive=lambda: True)
    assert first.alive

    first_page_open[0] = False  # a reload: the first page's session is gone, its handle still follows
    second = engine.attach(workspace, first.run_id, owner_alive=lambda: True)
    assert not first.alive and second.alive  # the gone page let go, leaving the run as it was
    wait_until(lambda: second.state is RunState.RUNNING and second.snapshot().step > first.snapshot().step, 120,
               "the new page follows the run")
    second.pause()
    wait_until(lambda: "went back to the cluster" in (second.notice or ""), 60, "the run parked")
    record = store.get_run(workspace, first.run_id)
    assert record.state == "paused" and record.end_reason is None  # not "worker lost"
    second.stop()
    second.join(120)
    assert store.get_run(workspace, first.run_id).end_reason is EndReason.USER
