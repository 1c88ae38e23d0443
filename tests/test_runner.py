"""The runner's orphan grace as a hosting setting (CAE_ORPHAN_SECONDS) and its waits as settings of a runner, so no
test needs to wait the real 45 s (the runner's other behaviour: tests/test_training.py)."""

import importlib.util
import inspect
import sys
import threading
import time
from dataclasses import replace

import pytest

from cae.engine import runner as runner_module
from cae.engine.runner import (
    DEFAULT_ORPHAN_SECONDS,
    ORPHAN_SECONDS_VARIABLE,
    TrainingRunner,
    orphan_seconds_from_environment,
    orphan_seconds_or_default,
)
from cae.engine.train_config import TrainConfig
from cae.engine.trainer import RunState, StopReason, Trainer
from cae.models.autoencoder import ModelConfig


@pytest.mark.parametrize("text, seconds", [(None, DEFAULT_ORPHAN_SECONDS), ("", DEFAULT_ORPHAN_SECONDS),
                                           ("120", 120.0), (" 2.5 ", 2.5), ("0", 0.0)])
def test_the_grace_comes_from_the_environment_with_45_s_by_default(monkeypatch, text, seconds):
    if text is None:
        monkeypatch.delenv(ORPHAN_SECONDS_VARIABLE, raising=False)
    else:
        monkeypatch.setenv(ORPHAN_SECONDS_VARIABLE, text)
    assert orphan_seconds_from_environment() == seconds
    assert DEFAULT_ORPHAN_SECONDS == 45


@pytest.mark.parametrize("text", ["-1", "soon", "nan", "inf"])
def test_a_bad_grace_is_named_and_the_server_goes_on_with_the_default(monkeypatch, capsys, text):
    monkeypatch.setenv(ORPHAN_SECONDS_VARIABLE, text)
    with pytest.raises(ValueError, match=ORPHAN_SECONDS_VARIABLE):
        orphan_seconds_from_environment()
    assert orphan_seconds_or_default() == DEFAULT_ORPHAN_SECONDS
    assert f"{ORPHAN_SECONDS_VARIABLE} must be a number of seconds" in capsys.readouterr().err


def test_the_module_reads_the_grace_once_at_import_and_runners_default_to_it(monkeypatch):
    """What the Train page shows and what its runners use: the value read when the server imported the runner."""
    assert runner_module.ORPHAN_SECONDS == orphan_seconds_or_default()
    monkeypatch.setenv(ORPHAN_SECONDS_VARIABLE, "7")
    spec = importlib.util.spec_from_file_location("runner_imported_by_a_server", runner_module.__file__)
    imported = importlib.util.module_from_spec(spec)  # a copy: the real module keeps its own value
    monkeypatch.setitem(sys.modules, spec.name, imported)  # its dataclasses look their module up there
    spec.loader.exec_module(imported)
    assert imported.ORPHAN_SECONDS == 7.0
    assert inspect.signature(imported.TrainingRunner).parameters["orphan_seconds"].default == 7.0


def small_trainer(mnist) -> Trainer:
    """Short steps and short epoch checks (200 digits): the run notices its owner between steps."""
    small = replace(mnist, val_images=mnist.val_images[:200], val_labels=mnist.val_labels[:200])
    return Trainer(ModelConfig(code_size=4), TrainConfig(epochs=50, train_subset=256, batch_size=64), small)


def test_a_gone_session_stops_its_run_after_the_runners_own_grace_and_check_interval(mnist):
    connected = threading.Event()
    connected.set()
    asked = []

    def owner_alive() -> bool:
        asked.append(time.monotonic())
        return connected.is_set()

    runner = TrainingRunner(small_trainer(mnist), owner_alive=owner_alive, orphan_seconds=0.3,
                            owner_check_seconds=0.05)
    runner.start()
    deadline = time.monotonic() + 60
    while runner.trainer.step_count < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    connected.clear()
    gone_at = time.monotonic()
    runner.join(30)
    waited = time.monotonic() - gone_at
    assert runner.state is RunState.STOPPED and runner.trainer.stop_reason is StopReason.SESSION_GONE
    assert 0.3 <= waited < 10  # the grace given, not the module's default
    gaps = [later - earlier for earlier, later in zip(asked, asked[1:])]
    assert len(asked) > 3 and min(gaps) >= 0.05 - 1e-3  # asked no more often than it was told


def test_a_paused_run_wakes_to_check_its_owner_at_the_runners_interval(mnist):
    connected = threading.Event()
    connected.set()
    runner = TrainingRunner(small_trainer(mnist), owner_alive=connected.is_set, orphan_seconds=0.2,
                            owner_check_seconds=0.05)
    runner.pause()
    runner.start()
    deadline = time.monotonic() + 30
    while runner.state is not RunState.PAUSED and time.monotonic() < deadline:
        time.sleep(0.01)
    connected.clear()
    gone_at = time.monotonic()
    runner.join(30)
    assert not runner.alive and runner.trainer.stop_reason is StopReason.SESSION_GONE
    assert time.monotonic() - gone_at < 5
    assert runner.trainer.step_count == 0  # paused from the start: the checks alone ended it
