"""A TrainingRunner with a RunRecorder writes its run to the run store as it trains (cae.engine.recording): the
run, its loss points and checks batched, a checkpoint at each epoch's end, its end with the reason; a failing store
stops the saving, never the training."""

import time
from dataclasses import replace

import pytest

from cae.engine.metrics import COMPARISON_PSNR, comparison_scores
from cae.engine.recording import COMPARISON_SCORES, RunRecorder
from cae.engine.runner import TrainingRunner
from cae.engine.store import EndReason, RunStore, StoreError, new_workspace_id
from cae.engine.train_config import TrainConfig
from cae.engine.trainer import RunState, Trainer
from cae.models.autoencoder import ModelConfig
from cae.models.registry import MODEL_TYPES


@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.setenv("CAE_RUNS_DIR", str(tmp_path / "runs"))
    with RunStore() as opened:
        yield opened


def small_trainer(mnist, *, epochs: int = 3) -> Trainer:
    small = replace(mnist, val_images=mnist.val_images[:200], val_labels=mnist.val_labels[:200])
    return Trainer(ModelConfig(code_size=4), TrainConfig(epochs=epochs, train_subset=256, batch_size=64), small)


class CountingStore:
    """A RunStore that counts the writes of loss points, or fails them."""

    def __init__(self, store: RunStore, *, fail_after: int | None = None):
        self.store = store
        self.appends = 0
        self.fail_after = fail_after

    def __getattr__(self, name):
        return getattr(self.store, name)

    def append_steps(self, run_id, rows, **kwargs):
        self.appends += 1
        if self.fail_after is not None and self.appends > self.fail_after:
            raise StoreError("run store test.sqlite: cannot save the steps: disk I/O error")
        return self.store.append_steps(run_id, rows, **kwargs)


def run_to_end(runner: TrainingRunner) -> None:
    runner.start()
    runner.join(120)
    assert not runner.alive


def test_a_finished_run_is_in_the_store_with_every_step_check_and_checkpoint(mnist, store):
    workspace = new_workspace_id()
    runner = TrainingRunner(small_trainer(mnist), recorder=RunRecorder(store, workspace, name="first"))
    run_to_end(runner)
    trainer = runner.trainer
    record = store.get_run(workspace, runner.run_id)
    assert record.name == "first" and record.model_type == "cae" and record.state == "finished"
    assert record.end_reason is EndReason.FINISHED and record.steps == trainer.total_steps == 12
    assert record.scores["held_out_mse"] == pytest.approx(trainer.final_mse)
    assert record.train_config["epochs"] == 3 and record.model_config["code_size"] == 4
    curve = store.loss_curve(workspace, runner.run_id)
    assert curve.steps == list(range(1, 13)) and curve.loss == pytest.approx(trainer.history.train_loss)
    assert curve.samples[3] == 256 and curve.samples[-1] == 3 * 256
    checks = store.validations(workspace, runner.run_id)
    assert [check.epoch for check in checks] == [1, 2, 3]
    assert [check.val_mse for check in checks] == pytest.approx(trainer.history.val_mse)
    kinds = sorted((item.kind, item.epoch) for item in record.checkpoints)
    assert kinds == [("epoch", 1), ("epoch", 2), ("final", 3)]
    loaded = store.load_checkpoint(workspace, runner.run_id)
    assert loaded.metrics["steps"] == 12 and loaded.held_out_mse == pytest.approx(trainer.final_mse)


def test_a_run_ends_with_its_comparison_scores_measured_on_its_final_weights(mnist, store):
    """The Compare page reads these instead of scoring every run it shows."""
    workspace = new_workspace_id()
    runner = TrainingRunner(small_trainer(mnist, epochs=1), recorder=RunRecorder(store, workspace))
    run_to_end(runner)
    trainer = runner.trainer
    stored = store.get_run(workspace, runner.run_id).scores[COMPARISON_SCORES]
    final = store.load_checkpoint(workspace, runner.run_id).build_model()
    expected = comparison_scores(final, mnist.val_images[:200])
    assert stored["digits"] == 200 and stored["step"] == trainer.total_steps
    assert stored["data_source"] == mnist.source
    assert stored[COMPARISON_PSNR] == pytest.approx(expected[COMPARISON_PSNR], rel=1e-5)
    assert 0 < stored[COMPARISON_PSNR] < 40


@pytest.mark.parametrize("kind", [kind for kind in MODEL_TYPES.values() if kind.scores], ids=lambda kind: kind.name)
def test_a_run_stores_the_scores_its_type_declares(mnist, store, kind):
    workspace = new_workspace_id()
    small = replace(mnist, val_images=mnist.val_images[:200], val_labels=mnist.val_labels[:200])
    trainer = Trainer(kind.config_class(code_size=4), TrainConfig(epochs=1, train_subset=128, batch_size=64), small)
    runner = TrainingRunner(trainer, recorder=RunRecorder(store, workspace))
    run_to_end(runner)
    stored = store.get_run(workspace, runner.run_id).scores[COMPARISON_SCORES]
    assert all(key in stored and stored[key] > 0 for key in [score.key for score in kind.scores])


@pytest.mark.slow  # 40 steps and 10 epoch checks
def test_writes_are_batched_not_one_a_step(mnist, store):
    counting = CountingStore(store)
    trainer = small_trainer(mnist, epochs=10)
    runner = TrainingRunner(trainer, recorder=RunRecorder(counting, new_workspace_id(), write_seconds=60))
    run_to_end(runner)
    # the first step's, one an epoch (its check and checkpoint) and the end's: far fewer than the 40 steps
    assert counting.appends <= 12 < trainer.total_steps


def test_a_stopped_run_ends_with_its_reason_and_a_last_checkpoint(mnist, store):
    workspace = new_workspace_id()
    runner = TrainingRunner(small_trainer(mnist, epochs=50), recorder=RunRecorder(store, workspace))
    runner.start()
    deadline = time.monotonic() + 60
    while runner.trainer.step_count < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    runner.stop()
    runner.join(30)
    record = store.get_run(workspace, runner.run_id)
    assert record.state == "stopped" and record.end_reason is EndReason.USER
    assert record.status == f"stopped at step {runner.trainer.step_count}"
    assert record.best_checkpoint.kind == "last" and record.best_checkpoint.step == runner.trainer.step_count


def test_a_paused_run_says_so_in_the_store(mnist, store):
    workspace = new_workspace_id()
    runner = TrainingRunner(small_trainer(mnist, epochs=50), recorder=RunRecorder(store, workspace))
    runner.pause()
    runner.start()
    deadline = time.monotonic() + 30
    while (runner.run_id is None or store.get_run(workspace, runner.run_id).state != "paused") \
            and time.monotonic() < deadline:
        time.sleep(0.02)
    assert store.get_run(workspace, runner.run_id).state == "paused"
    runner.stop()
    runner.join(30)
    assert store.get_run(workspace, runner.run_id).state == "stopped"


def test_a_failing_store_stops_the_saving_not_the_training(mnist, store, capsys):
    failing = CountingStore(store, fail_after=1)
    trainer = small_trainer(mnist)
    runner = TrainingRunner(trainer, recorder=RunRecorder(failing, new_workspace_id(), write_seconds=0))
    run_to_end(runner)
    assert runner.state is RunState.FINISHED and trainer.step_count == trainer.total_steps
    assert len(trainer.history.train_loss) == trainer.total_steps  # nothing lost from memory
    assert runner.store_problem.startswith("run store test.sqlite: cannot save the steps")
    assert "no longer saved" in runner.store_problem
    assert failing.appends == 2  # after the first failure nothing more is tried
    assert capsys.readouterr().err.count("no longer saved") == 1


def test_a_store_that_cannot_create_the_run_leaves_the_run_training(mnist, store):
    class Broken(CountingStore):
        def create_run(self, *args, **kwargs):
            raise StoreError("run store x: cannot create a run: attempt to write a readonly database")

    trainer = small_trainer(mnist, epochs=1)
    runner = TrainingRunner(trainer, recorder=RunRecorder(Broken(store), new_workspace_id()))
    run_to_end(runner)
    assert runner.state is RunState.FINISHED and runner.run_id is None
    assert "readonly database" in runner.store_problem


def test_a_trainer_resumed_from_a_checkpoint_goes_on_exactly_as_if_it_had_never_stopped(mnist):
    from cae.engine import checkpoint

    straight = small_trainer(mnist, epochs=2)
    while not straight.finished:
        straight.step()
    first = small_trainer(mnist, epochs=2)
    for _ in range(5):  # mid-epoch: the epoch's order of digits must come back too
        first.step()
    saved = checkpoint.load(checkpoint.to_bytes(first.checkpoint(training_state=True)))
    assert saved.training_state["step"] == 5
    assert saved.without_training_state().training_state is None
    small = replace(mnist, val_images=mnist.val_images[:200], val_labels=mnist.val_labels[:200])
    resumed = Trainer.resumed(saved, small)
    while not resumed.finished:
        resumed.step()
    assert resumed.history.train_loss == pytest.approx(straight.history.train_loss, rel=1e-5)
    assert resumed.history.val_mse == pytest.approx(straight.history.val_mse, rel=1e-5)
    for ours, theirs in zip(resumed.model.parameters(), straight.model.parameters()):
        assert (ours - theirs).abs().max().item() < 1e-5
    with pytest.raises(ValueError, match="no training state"):
        Trainer.resumed(saved.without_training_state(), small)


def test_a_stopped_run_resumed_through_the_store_finishes_with_one_continuous_curve(mnist, store):
    workspace = new_workspace_id()
    runner = TrainingRunner(small_trainer(mnist, epochs=3), recorder=RunRecorder(store, workspace))
    runner.start()
    deadline = time.monotonic() + 60
    while runner.trainer.step_count < 6 and time.monotonic() < deadline:
        time.sleep(0.01)
    runner.stop()
    runner.join(30)
    stopped_at = runner.trainer.step_count
    record = store.get_run(workspace, runner.run_id)
    assert record.state == "stopped" and record.best_checkpoint.kind == "last"
    saved = store.load_checkpoint(workspace, runner.run_id, "last")
    small = replace(mnist, val_images=mnist.val_images[:200], val_labels=mnist.val_labels[:200])
    trainer = Trainer.resumed(saved, small)
    store.reopen_run(runner.run_id, from_step=trainer.step_count)
    again = TrainingRunner(trainer, recorder=RunRecorder(store, workspace, run_id=runner.run_id,
                                                         wall_before=record.wall_seconds))
    run_to_end(again)
    record = store.get_run(workspace, runner.run_id)
    assert record.state == "finished" and record.steps == 12 and stopped_at < 12
    assert record.wall_seconds > again.wall_seconds  # the time before the stop counts too
    assert store.loss_curve(workspace, runner.run_id).steps == list(range(1, 13))
    assert [check.epoch for check in store.validations(workspace, runner.run_id)] == [1, 2, 3]
    assert store.load_checkpoint(workspace, runner.run_id).training_state is None  # the final one: a model file
