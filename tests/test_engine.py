"""The run interface (cae.engine.engine) with its embedded engine, on the offline sample: a run started through it
is today's runner behind RunHandle and ends with its model in the store; Resume goes on from a stopped run's
checkpoint; the engine is chosen from CAE_RAY_ADDRESS, and a cluster that cannot be used gives the embedded engine
with a sentence that says why (no ray needed). The Ray engine's own tests: tests/test_ray_engine.py."""

from __future__ import annotations

import time
from dataclasses import replace

import pytest

from cae.engine.data import load_sample
from cae.engine.engine import (
    RAY_ADDRESS_VARIABLE,
    EmbeddedEngine,
    EngineLoad,
    RunHandle,
    engine_from_environment,
    parse_address,
)
from cae.engine.store import EndReason, RunStore, new_workspace_id
from cae.engine.train_config import TrainConfig
from cae.engine.trainer import RunState, StopReason
from cae.models.autoencoder import ModelConfig
from cae.models.variational import VariationalConfig
from tests.ray_cluster import free_port

TINY = TrainConfig(epochs=2, batch_size=64, train_subset=256, val_subset=100)  # 4 steps an epoch


@pytest.fixture(scope="module")
def data():
    return load_sample()


@pytest.fixture
def store():
    with RunStore() as opened:
        yield opened


def test_an_embedded_run_is_a_run_handle_that_ends_with_its_model_in_the_store(data, store):
    engine = EmbeddedEngine(lambda: data, store=store)
    workspace = new_workspace_id()
    handle = engine.start(ModelConfig(), TINY, workspace=workspace, name="here")
    assert isinstance(handle, RunHandle)
    handle.join(120)
    snap = handle.snapshot()
    assert handle.state is RunState.FINISHED and snap.step == 8 and not handle.alive
    assert handle.worker is None and handle.notice is None and handle.store_problem is None
    assert handle.loss_label == "MSE per pixel" and handle.term_labels == {"reconstruction": "reconstruction"}
    assert handle.model_config == ModelConfig() and handle.train_config == TINY
    assert len(handle.training_digits()) == 256
    model = handle.final_checkpoint()
    assert model.held_out_mse == pytest.approx(snap.history.val_mse[-1])
    record = store.get_run(workspace, handle.run_id)
    assert record.state == "finished" and record.name == "here" and "final" in {c.kind for c in record.checkpoints}
    assert engine.load() == EngineLoad(places=engine.queue.places, training=0, waiting=0)


def test_a_variational_run_names_its_own_objective(data):
    handle = EmbeddedEngine(lambda: data).start(VariationalConfig(), TINY, workspace=None)
    handle.stop()
    handle.join(60)
    assert handle.loss_label == "nats per digit" and set(handle.term_labels) == {"reconstruction", "kl"}
    assert handle.run_id is None  # no store, no workspace: nothing written
    assert (handle.final_checkpoint() is None) == (handle.snapshot().step == 0)  # a model once it took a step


def test_resume_goes_on_from_a_stopped_runs_checkpoint_to_the_end(data, store):
    engine = EmbeddedEngine(lambda: data, store=store)
    workspace = new_workspace_id()
    first = engine.start(ModelConfig(), replace(TINY, epochs=12), workspace=workspace)
    deadline = time.monotonic() + 60
    while first.snapshot().step < 6:
        assert time.monotonic() < deadline, "the run took no steps"
        time.sleep(0.02)
    first.stop()
    first.join(60)
    stopped_at = first.snapshot().step
    assert first.snapshot().stop_reason is StopReason.USER
    assert store.get_run(workspace, first.run_id).end_reason is EndReason.USER

    again = engine.resume(workspace, first.run_id)
    assert again.run_id == first.run_id and again.snapshot().step == stopped_at
    again.join(120)
    assert again.state is RunState.FINISHED and again.snapshot().step == 48
    record = store.get_run(workspace, first.run_id)
    assert record.state == "finished" and record.steps == 48
    assert store.loss_curve(workspace, first.run_id).steps == list(range(1, 49))
    with pytest.raises(LookupError):
        engine.attach(workspace, first.run_id)


def test_the_engine_is_chosen_from_the_environment_and_an_unusable_cluster_is_said(data, store):
    chosen = engine_from_environment(lambda: data, store=store, environ={})
    assert chosen.engine.name == "embedded" and chosen.problem is None

    began = time.monotonic()
    chosen = engine_from_environment(lambda: data, store=store,
                                     environ={RAY_ADDRESS_VARIABLE: f"127.0.0.1:{free_port()}"})
    assert chosen.engine.name == "embedded" and time.monotonic() - began < 10
    assert "does not answer" in chosen.problem and chosen.problem.endswith("runs train on this server instead")

    chosen = engine_from_environment(lambda: data, store=store, environ={RAY_ADDRESS_VARIABLE: "ray://head:10001"})
    assert chosen.engine.name == "embedded" and "HOST:PORT" in chosen.problem
    chosen = engine_from_environment(lambda: data, store=None, environ={RAY_ADDRESS_VARIABLE: "127.0.0.1:6379"})
    assert chosen.engine.name == "embedded" and "run store" in chosen.problem


@pytest.mark.parametrize(("text", "expected"), [("10.0.0.5:6379", ("10.0.0.5", 6379)),
                                                ("head.local:6380", ("head.local", 6380)),
                                                ("[::1]:6379", ("::1", 6379))])
def test_a_cluster_address_is_host_and_port(text, expected):
    assert parse_address(text) == expected


@pytest.mark.parametrize("text", ["head", "ray://head:10001", ":6379", "head:port", "auto"])
def test_anything_else_is_no_cluster_address(text):
    with pytest.raises(ValueError, match="HOST:PORT"):
        parse_address(text)
