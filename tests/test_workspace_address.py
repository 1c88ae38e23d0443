"""The workspace at an address, under AppTest: the id in the query string (?w=), made on a first visit and carried
across pages; a malformed one replaced with a message; the workspace's saved runs in the sidebar's model choice,
loaded from the run store; a missing checkpoint file said, not failed; a short Train page run written to the store.
Every test's store is a temporary CAE_RUNS_DIR (tests/conftest.py)."""

import threading
import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from cae.engine import checkpoint
from cae.engine.store import RunStore, is_workspace_id, new_workspace_id
from cae.engine.trainer import RunState
from cae.ui import common as ui
from tests.conftest import ROOT

MODEL_CHOICE = ui.SharedKey.MODEL_WIDGET


def app(workspace: str | None = None) -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    if workspace is not None:
        at.query_params[ui.WORKSPACE_PARAM] = workspace
    at.run()
    assert not at.exception
    return at


def saved_run(workspace: str, *, name: str = "kept run", finish: bool = True) -> str:
    """A run of the workspace in the test's store, with a shipped model as its final checkpoint."""
    with RunStore() as store:
        ckpt = checkpoint.load(checkpoint.PRETRAINED[ui.DEFAULT_LABEL])
        run_id = store.create_run(workspace, model_type=ckpt.model_type, model_config=ckpt.model_config,
                                  train_config=ckpt.train_config, data_source="MNIST", name=name, total_steps=10).id
        store.add_checkpoint(run_id, ckpt, "final", step=10, epoch=1)
        if finish:
            from cae.engine.store import EndReason

            store.end_run(run_id, EndReason.FINISHED)
        return run_id


def test_a_first_visit_gets_a_new_workspace_in_its_address_and_the_sidebar_gives_the_link():
    at = app()
    workspace = at.query_params[ui.WORKSPACE_PARAM]
    assert is_workspace_id(workspace)
    assert any(f"?w={workspace}" in code.value for code in at.sidebar.code)
    assert any("bookmark" in caption.value for caption in at.sidebar.caption)
    at.switch_page("pages/2_How_it_works.py").run()
    assert not at.exception
    assert at.query_params[ui.WORKSPACE_PARAM] == workspace  # carried to the next page
    assert at.session_state[ui.SharedKey.WORKSPACE] == workspace


def test_a_malformed_workspace_in_the_address_gets_a_new_one_and_says_so():
    at = app("not a workspace!")
    workspace = at.query_params[ui.WORKSPACE_PARAM]
    assert is_workspace_id(workspace) and workspace != "not a workspace!"
    assert any("not a workspace id" in warning.value for warning in at.sidebar.warning)


def test_an_addresss_saved_runs_are_in_the_model_choice_and_another_address_does_not_see_them():
    workspace = new_workspace_id()
    saved_run(workspace)
    at = app(workspace)
    assert at.query_params[ui.WORKSPACE_PARAM] == workspace
    label = f"{ui.SAVED_PREFIX}kept run (finished)"
    assert label in at.selectbox(key=MODEL_CHOICE).options
    at.selectbox(key=MODEL_CHOICE).set_value(label).run()
    assert not at.exception and not at.sidebar.warning
    assert at.session_state[MODEL_CHOICE] == label
    stranger = app(new_workspace_id())
    assert not any(option.startswith(ui.SAVED_PREFIX) for option in stranger.selectbox(key=MODEL_CHOICE).options)


def test_a_saved_run_whose_checkpoint_file_is_gone_says_so_and_the_page_still_works(runs_in_a_temporary_folder):
    workspace = new_workspace_id()
    saved_run(workspace, name="lost file")
    for file in Path(runs_in_a_temporary_folder).rglob("*.pt"):
        file.unlink()
    at = app(workspace)
    label = next(option for option in at.selectbox(key=MODEL_CHOICE).options if "lost file" in option)
    at.selectbox(key=MODEL_CHOICE).set_value(label).run()
    assert not at.exception
    assert any("cannot be used" in warning.value and "missing" in warning.value for warning in at.sidebar.warning)


def test_a_store_that_cannot_be_opened_leaves_the_app_working_with_one_message(tmp_path, monkeypatch):
    blocker = tmp_path / "a file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("CAE_RUNS_DIR", str(blocker / "runs"))
    at = app()
    assert not at.exception
    warnings = [warning.value for warning in at.sidebar.warning]
    assert len(warnings) == 1 and warnings[0].startswith("Runs are not saved on this server")


@pytest.mark.slow
def test_a_train_page_run_is_written_to_the_store_and_offered_after_a_reload(full_mnist, monkeypatch):
    monkeypatch.setenv("CAE_MAX_RUNS", "2")
    ui.run_queue.clear()
    at = app()
    workspace = at.query_params[ui.WORKSPACE_PARAM]
    at.switch_page("pages/1_Train.py").run()
    for key, value in {"t_subset": 1000, "t_batch": 64, "t_epochs": 2, "t_lr": 1e-3}.items():
        at.session_state[key] = value
    at.run()
    at.button(key="t_start").click().run()
    runner = at.session_state[ui.SharedKey.RUNNER]
    deadline = time.time() + 120
    while runner.state is not RunState.FINISHED and time.time() < deadline:
        time.sleep(0.2)
    at.run()
    assert not at.exception and runner.state is RunState.FINISHED and runner.store_problem is None
    with RunStore() as store:
        record = store.get_run(workspace, runner.run_id)
    assert record.state == "finished" and record.steps == 32 and record.best_checkpoint.kind == "final"
    # in this session the run is its session model, not offered twice
    options = at.selectbox(key=MODEL_CHOICE).options
    assert not any(option.startswith(ui.SAVED_PREFIX) for option in options)
    reloaded = app(workspace)  # a new session at the same address
    saved = [option for option in reloaded.selectbox(key=MODEL_CHOICE).options if option.startswith(ui.SAVED_PREFIX)]
    assert saved == [f"{ui.SAVED_PREFIX}{record.name} (finished)"]
    ui.run_queue.clear()


@pytest.mark.slow
def test_a_stopped_run_at_the_address_resumes_from_its_checkpoint_and_finishes(full_mnist, mnist, monkeypatch):
    from dataclasses import replace

    from cae.engine.recording import RunRecorder
    from cae.engine.runner import TrainingRunner
    from cae.engine.train_config import TrainConfig
    from cae.engine.trainer import StopReason, Trainer
    from cae.models.autoencoder import ModelConfig

    monkeypatch.setenv("CAE_MAX_RUNS", "2")
    ui.run_queue.clear()
    workspace = new_workspace_id()
    with RunStore() as store:
        trainer = Trainer(ModelConfig(code_size=4), TrainConfig(epochs=3, train_subset=256, batch_size=64),
                          replace(mnist, val_images=mnist.val_images[:200], val_labels=mnist.val_labels[:200]))
        connected = threading.Event()
        connected.set()
        runner = TrainingRunner(trainer, recorder=RunRecorder(store, workspace, name="cut short"),
                                owner_alive=connected.is_set, orphan_seconds=0, owner_check_seconds=0.01)
        runner.start()
        deadline = time.time() + 60
        while trainer.step_count < 5 and time.time() < deadline:
            time.sleep(0.01)
        connected.clear()  # its tab closes
        runner.join(30)
        assert trainer.stop_reason is StopReason.SESSION_GONE and trainer.step_count < trainer.total_steps
        run_id = runner.run_id
        assert store.get_run(workspace, run_id).status.startswith("stopped: tab closed")
    at = app(workspace)
    at.switch_page("pages/1_Train.py").run()
    assert any("stopped: tab closed" in text.value for text in at.markdown)
    at.button(key=f"t_resume-{run_id}").click().run()
    assert not at.exception
    resumed = at.session_state[ui.SharedKey.RUNNER]
    assert resumed.run_id == run_id and resumed.trainer.step_count >= 5
    deadline = time.time() + 120
    while resumed.alive and time.time() < deadline:
        time.sleep(0.2)
    at.run()
    assert not at.exception and resumed.state is RunState.FINISHED
    with RunStore() as store:
        record = store.get_run(workspace, run_id)
        assert record.state == "finished" and record.steps == 12
        assert store.loss_curve(workspace, run_id).steps == list(range(1, 13))
    ui.run_queue.clear()


def test_an_interrupted_run_says_where_resume_picks_it_up():
    """Cut short mid-epoch, a run resumes from its last epoch's checkpoint: the list says so, since the steps after
    it are trained again."""
    from cae.engine.store import EndReason, Progress, StepRow

    workspace = new_workspace_id()
    with RunStore() as store:
        ckpt = checkpoint.load(checkpoint.PRETRAINED[ui.DEFAULT_LABEL])
        run_id = store.create_run(workspace, model_type=ckpt.model_type, model_config=ckpt.model_config,
                                  train_config=ckpt.train_config, data_source="MNIST", name="cut mid-epoch",
                                  total_steps=30).id
        store.append_steps(run_id, [StepRow(step, 0.1) for step in range(1, 15)],
                           progress=Progress(steps=14, samples=14 * 128, wall_seconds=3.0, samples_per_s=600.0))
        store.add_checkpoint(run_id, ckpt, "epoch", step=10, epoch=1)
        store.end_run(run_id, EndReason.INTERRUPTED, "interrupted at step 14")
    at = app(workspace)
    at.switch_page("pages/1_Train.py").run()
    assert not at.exception
    line = next(text.value for text in at.markdown if "cut mid-epoch" in text.value)
    assert "interrupted at step 14" in line and "Resume goes on from step 10, where epoch 1 ended" in line


def test_a_run_whose_server_died_elsewhere_shows_interrupted_without_a_restart_here(monkeypatch):
    """Several app servers on one store: a run of another machine that stopped writing is found dead when a page
    lists the runs, not only when a server starts."""
    from sqlalchemy import update

    from cae.engine import store as store_module

    monkeypatch.setattr(ui, "DEAD_RUNS_CHECK_SECONDS", 0)
    workspace = new_workspace_id()
    at = app(workspace)  # this server is up: its store opened and looked for dead runs already
    with RunStore() as store:
        ckpt = checkpoint.load(checkpoint.PRETRAINED[ui.DEFAULT_LABEL])
        run_id = store.create_run(workspace, model_type=ckpt.model_type, model_config=ckpt.model_config,
                                  train_config=ckpt.train_config, data_source="MNIST", name="elsewhere",
                                  total_steps=30).id
        store.add_checkpoint(run_id, ckpt, "epoch", step=10, epoch=1)
        with store.engine.begin() as conn:  # its server is on another machine, and went quiet long ago
            conn.execute(update(store_module.runs_table).where(store_module.runs_table.c.id == run_id).values(
                owner="another-host/4242/zz000000/0123456789abcdef",
                updated_at=time.time() - store_module.STALE_SECONDS - 1))
    at.switch_page("pages/1_Train.py").run()
    assert not at.exception
    assert any("elsewhere" in text.value and "interrupted" in text.value for text in at.markdown)
