"""The run store: every run's record, loss points, validation checks and checkpoints, kept across restarts.

Written through SQLAlchemy Core so that one code path serves the embedded default, SQLite in WAL mode at
`<runs dir>/runs.sqlite`, and a server database named by URL in CAE_RUNS_DB (PostgreSQL, for several app servers
sharing one store). The runs dir is CAE_RUNS_DIR, else `runs/` beside the data folder; checkpoint files live under
`<runs dir>/<workspace>/<run id>/`, written atomically by cae.engine.checkpoint.save and referenced from the
database by their path relative to the runs dir. docs/run-store.md describes the schema, backups and settings.

Workspaces are implicit: a workspace is its id (a random URL-safe token that is its only key) and exists while it
holds runs. Every read takes the workspace, so one workspace's address never reaches another's runs; the writes a
running job makes (`append_steps`, `add_checkpoint`, `end_run`) take the run id it was given at `create_run`.

Failures: anything that stops the store from being opened or written (a corrupt file, a read-only folder, a full
disk) raises StoreError with the location and the reason, so a caller can keep working without saving. A checkpoint
file that has gone missing is reported on its run (`RunRecord.checkpoint_missing`), never raised while reading.
SQLite writers take the write lock at BEGIN (BEGIN IMMEDIATE) and wait up to `busy_seconds` for it, and a write that
still meets "database is locked" is retried until then: many threads and processes can write at once. On
PostgreSQL (driver psycopg 3; a `postgresql://` URL gets it) writers run at READ COMMITTED and readers at REPEATABLE
READ (one snapshot per read); a serialization failure, deadlock or lock timeout is retried the same way, and the
openers of a new or older store take turns (an advisory lock) to create or migrate its schema.

Several app servers may share one server database: a run's owner names its process and machine (boot and pid
namespace), and `mark_interrupted_on_start` looks a pid up only on the machine that gave it out; another machine's
runs go by their heartbeat (updated_at, compared with this machine's clock: keep the servers' clocks in sync).

Limits: a workspace keeps at most CAE_RUNS_KEEP runs (the oldest ended runs beyond it are pruned and returned, a live
run never); a run's record and files take at most `max_run_bytes`, beyond which older checkpoints are dropped and then
its loss points thinned (see `_enforce_limit`).

torch is imported only where a checkpoint is read or written, so `python -m cae.runs list` starts quickly.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import shutil
import socket
import sqlite3
import time
import unicodedata
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, is_dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import (
    Column,
    Connection,
    Engine,
    Float,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    create_engine,
    delete,
    event,
    func,
    insert,
    inspect,
    select,
    update,
)
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

if TYPE_CHECKING:
    from cae.engine.checkpoint import Checkpoint

DATABASE_FILE = "runs.sqlite"
DEFAULT_KEEP = 50  # runs per workspace unless CAE_RUNS_KEEP says otherwise
MAX_RUN_BYTES = 2_000_000  # a run's record and files together
# Room kept for the record beside a checkpoint: a file bigger than max_run_bytes less this is refused outright.
RECORD_HEADROOM = 100_000
MIN_LOSS_POINTS = 256  # thinning stops here: a curve needs a few hundred points to keep its shape
# Estimated bytes a row takes in the database (row, key and index, measured on SQLite), for the size limit; a loss
# point adds the length of its terms' JSON.
POINT_ROW_BYTES = 48
VALIDATION_ROW_BYTES = 48
RUN_ROW_BYTES = 512
STALE_SECONDS = 120.0  # a live run on another machine (or a live process) not heard from this long is dead
HOST_NAME_KEPT = 64  # of a host name in a run's owner (the column holds 200 characters)
BUSY_SECONDS = 30.0
SERVER_CONNECT_SECONDS = 10  # a server database that does not answer in this time is not there
SERVER_CONNECTIONS = 20  # a process's most connections to a server database (a quarter kept open between uses)
# PostgreSQL's serialization failure, deadlock detected, lock not available: the transaction is done again.
RETRIED_SQLSTATES = ("40001", "40P01", "55P03")
# PostgreSQL: the advisory lock that lets one opener at a time create or migrate the schema (any fixed number).
MIGRATION_LOCK = 7_236_481_092_551
_WRITE = "cae_write"  # execution option: this transaction writes (SQLite: BEGIN IMMEDIATE)
_WORKSPACE_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{23}")
_T = TypeVar("_T")


class StoreError(RuntimeError):
    """The run store cannot be opened or written; the message says where and why."""


class RunNotFound(StoreError, LookupError):
    """No run with that id in that workspace (or no run with that id at all)."""


class RunInFlight(StoreError):
    """The run is still live (running, paused or waiting) and the request needs it ended."""


class RunTooLarge(StoreError):
    """A checkpoint alone would take more than a run may (max_run_bytes less RECORD_HEADROOM)."""


class NoCheckpoint(StoreError):
    """The run has no usable checkpoint: none written yet, its files went missing, or the file is unusable."""


class WorkspaceIdError(ValueError):
    """The text is not a workspace id (new_workspace_id makes them)."""


class EndReason(StrEnum):
    """Why a run ended; the value is what the database holds."""

    FINISHED = "finished"
    USER = "user"
    TAB_CLOSED = "tab_closed"
    INTERRUPTED = "interrupted"
    DIVERGED = "diverged"
    COLLAPSED = "collapsed"
    FAILED = "failed"

    @property
    def label(self) -> str:
        return _END_LABELS[self]

    @property
    def state(self) -> str:
        """The state a run ending this way is left in."""
        return {EndReason.FINISHED: "finished", EndReason.FAILED: "failed",
                EndReason.INTERRUPTED: "interrupted"}.get(self, "stopped")


_END_LABELS = {
    EndReason.FINISHED: "finished", EndReason.USER: "stopped by the user", EndReason.TAB_CLOSED: "stopped: tab closed",
    EndReason.INTERRUPTED: "interrupted", EndReason.DIVERGED: "diverged", EndReason.COLLAPSED: "collapsed",
    EndReason.FAILED: "failed",
}
# States as stored: cae.engine.trainer.RunState's values, plus "interrupted" for a run whose process died.
LIVE_STATES = ("ready", "waiting", "running", "paused")
ENDED_STATES = ("finished", "stopped", "failed", "interrupted")
CHECKPOINT_KINDS = ("epoch", "last", "final")  # at an epoch's end; the latest state of an unfinished run; the result


# Workspace ids -----------------------------------------------------------------------------------------------------

def new_workspace_id() -> str:
    """A fresh workspace id: 24 URL-safe characters, 143 random bits, never starting with '-' or '_' (so it reads
    as an argument on a command line)."""
    while True:
        candidate = secrets.token_urlsafe(18)
        if candidate[0].isalnum():
            return candidate


def is_workspace_id(text: object) -> bool:
    return isinstance(text, str) and _WORKSPACE_PATTERN.fullmatch(text) is not None


def check_workspace_id(text: object) -> str:
    """The id itself, or WorkspaceIdError saying what a workspace id looks like."""
    if not is_workspace_id(text):
        shown = repr(text) if len(repr(text)) <= 40 else repr(text)[:37] + "..."
        raise WorkspaceIdError(f"{shown} is not a workspace id (24 letters, digits, '-' or '_', made by the app)")
    return text


# Where the store lives ----------------------------------------------------------------------------------------------

def runs_dir() -> Path:
    """CAE_RUNS_DIR, else `runs/` beside the data folder (cae.engine.data.data_dir)."""
    if os.environ.get("CAE_RUNS_DIR"):
        return Path(os.environ["CAE_RUNS_DIR"])
    from cae.engine.data import data_dir  # torch comes with it: only when the runs dir is not set

    return data_dir().parent / "runs"


def keep_limit() -> int:
    """CAE_RUNS_KEEP (default DEFAULT_KEEP): runs a workspace keeps."""
    text = os.environ.get("CAE_RUNS_KEEP", "").strip()
    if not text:
        return DEFAULT_KEEP
    if not text.isdigit() or int(text) < 1:
        raise StoreError(f"CAE_RUNS_KEEP={text!r}: give a whole number of runs, 1 or more")
    return int(text)


def _process_owner() -> str:
    """`host/pid/token/machine` of this process, recorded on the runs it starts: the token tells a reused pid apart,
    the machine (see _machine_id) says where that pid means something; the host name is for people."""
    global _OWNER
    if _OWNER is None or _OWNER[0] != os.getpid():
        host = socket.gethostname()[:HOST_NAME_KEPT]
        _OWNER = (os.getpid(), f"{host}/{os.getpid()}/{secrets.token_hex(4)}/{_machine_id()}")
    return _OWNER[1]


_OWNER: tuple[int, str] | None = None


def _machine_id() -> str:
    """Which processes this one can see by pid: 16 hex digits of a hash of the kernel's boot id and this process's
    pid namespace (Linux). Host names are no such key: containers with host networking share the host's name, and
    two machines may be given one name, while a pid is only meaningful in its own namespace of its own boot."""
    parts = []
    try:
        parts.append(Path("/proc/sys/kernel/random/boot_id").read_text().strip())
        parts.append(os.readlink("/proc/self/ns/pid"))
    except OSError:  # not Linux: the host's name and its network card's address are the best there is
        parts = [socket.gethostname(), str(uuid.getnode())]
    return hashlib.sha256(" ".join(parts).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class _Owner:
    host: str
    pid: int
    machine: str | None  # None: written before owners named their machine (host/pid/token)


def _parse_owner(text: str | None) -> _Owner | None:
    parts = (text or "").split("/")
    if len(parts) not in (3, 4) or not parts[1].isdigit():
        return None
    return _Owner(parts[0], int(parts[1]), parts[3] if len(parts) == 4 else None)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# The schema --------------------------------------------------------------------------------------------------------
# `metadata` is the current shape, used by every query; MIGRATIONS build it step by step and stay as written once
# released (a store made by any earlier version is brought up to date by the steps after its version).

metadata = MetaData()
schema_version_table = Table("schema_version", metadata, Column("version", Integer, nullable=False))
runs_table = Table(
    "runs", metadata,
    Column("id", String(32), primary_key=True),
    Column("workspace", String(64), nullable=False, index=True),
    Column("name", String(200), nullable=False),
    Column("model_type", String(32), nullable=False),
    Column("model_config", Text, nullable=False),  # JSON
    Column("train_config", Text, nullable=False),  # JSON
    Column("data_source", String(64), nullable=False),
    Column("state", String(16), nullable=False),
    Column("end_reason", String(16)),
    Column("end_message", Text),
    Column("created_at", Float, nullable=False),  # seconds since the epoch, UTC
    Column("updated_at", Float, nullable=False),
    Column("ended_at", Float),
    Column("steps", Integer, nullable=False),
    Column("total_steps", Integer),
    Column("samples", Integer, nullable=False),
    Column("wall_seconds", Float, nullable=False),
    Column("samples_per_s", Float, nullable=False),
    Column("scores", Text),  # JSON
    Column("owner", String(200)),  # host/pid/token of the process running it
    # version 2: what the size limit counts
    Column("loss_stride", Integer, nullable=False, server_default="1"),  # loss points kept: every stride-th step
    Column("loss_points", Integer, nullable=False, server_default="0"),
    Column("record_bytes", Integer, nullable=False, server_default="0"),  # estimated, see POINT_ROW_BYTES
    Column("files_bytes", Integer, nullable=False, server_default="0"),
)
loss_points_table = Table(
    "loss_points", metadata,
    Column("run_id", String(32), ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True),
    Column("step", Integer, primary_key=True),
    Column("samples", Integer),  # digits trained on up to and including this step
    Column("loss", Float, nullable=False),  # the objective's total
    Column("terms", Text),  # JSON {term: value} when the objective reports 2+ terms
    sqlite_with_rowid=False,  # SQLite keeps the rows in the key's order: no second copy of the key
)
validations_table = Table(
    "validations", metadata,
    Column("run_id", String(32), ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True),
    Column("step", Integer, primary_key=True),
    Column("epoch", Integer, nullable=False),  # 1-based: the epoch this check ended
    Column("val_mse", Float, nullable=False),
    Column("digits", Integer),
    sqlite_with_rowid=False,
)
checkpoints_table = Table(
    "checkpoints", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run_id", String(32), ForeignKey("runs.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("kind", String(8), nullable=False),
    Column("path", String(400), nullable=False),  # relative to the runs dir
    Column("step", Integer, nullable=False),
    Column("epoch", Integer, nullable=False),
    Column("bytes", Integer, nullable=False),
    Column("created_at", Float, nullable=False),
    UniqueConstraint("path", name="checkpoints_path"),
)


def _create_version_1(conn: Connection) -> None:
    """The runs, their loss points, validation checks and checkpoints."""
    frozen = MetaData()
    Table("runs", frozen,
          Column("id", String(32), primary_key=True),
          Column("workspace", String(64), nullable=False, index=True),
          Column("name", String(200), nullable=False),
          Column("model_type", String(32), nullable=False),
          Column("model_config", Text, nullable=False),
          Column("train_config", Text, nullable=False),
          Column("data_source", String(64), nullable=False),
          Column("state", String(16), nullable=False),
          Column("end_reason", String(16)),
          Column("end_message", Text),
          Column("created_at", Float, nullable=False),
          Column("updated_at", Float, nullable=False),
          Column("ended_at", Float),
          Column("steps", Integer, nullable=False),
          Column("total_steps", Integer),
          Column("samples", Integer, nullable=False),
          Column("wall_seconds", Float, nullable=False),
          Column("samples_per_s", Float, nullable=False),
          Column("scores", Text),
          Column("owner", String(200)))
    Table("loss_points", frozen,
          Column("run_id", String(32), ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True),
          Column("step", Integer, primary_key=True),
          Column("samples", Integer),
          Column("loss", Float, nullable=False),
          Column("terms", Text),
          sqlite_with_rowid=False)
    Table("validations", frozen,
          Column("run_id", String(32), ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True),
          Column("step", Integer, primary_key=True),
          Column("epoch", Integer, nullable=False),
          Column("val_mse", Float, nullable=False),
          Column("digits", Integer),
          sqlite_with_rowid=False)
    Table("checkpoints", frozen,
          Column("id", Integer, primary_key=True, autoincrement=True),
          Column("run_id", String(32), ForeignKey("runs.id", ondelete="CASCADE"), nullable=False, index=True),
          Column("kind", String(8), nullable=False),
          Column("path", String(400), nullable=False),
          Column("step", Integer, nullable=False),
          Column("epoch", Integer, nullable=False),
          Column("bytes", Integer, nullable=False),
          Column("created_at", Float, nullable=False),
          UniqueConstraint("path", name="checkpoints_path"))
    frozen.create_all(conn)


def _add_column(conn: Connection, table: str, column: Column) -> None:
    """ALTER TABLE ... ADD COLUMN, standard SQL that SQLite and PostgreSQL both take; the type as this dialect spells
    it."""
    kind = column.type.compile(dialect=conn.dialect)
    default = f" DEFAULT {column.server_default.arg}" if column.server_default is not None else ""
    null = "" if column.nullable else " NOT NULL"
    conn.exec_driver_sql(f"ALTER TABLE {table} ADD COLUMN {column.name} {kind}{null}{default}")


def _add_size_bookkeeping(conn: Connection) -> None:
    """Version 2: the counts the size limit reads, filled in for the runs already there."""
    for name in ("loss_stride", "loss_points", "record_bytes", "files_bytes"):
        _add_column(conn, "runs", runs_table.c[name])
    for (run_id,) in conn.execute(select(runs_table.c.id)).all():
        _recount(conn, run_id)


# Ordered: MIGRATIONS[n] takes a store from version n to n + 1.
MIGRATIONS: list[Callable[[Connection], None]] = [_create_version_1, _add_size_bookkeeping]
SCHEMA_VERSION = len(MIGRATIONS)


# What callers pass and get back -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class StepRow:
    """One training step's loss: the objective's total and, when it reports several, each term."""

    step: int  # 1-based: steps done after this one
    loss: float
    terms: Mapping[str, float] = field(default_factory=dict)
    samples: int | None = None  # digits trained on so far


@dataclass(frozen=True)
class Validation:
    step: int
    epoch: int  # 1-based: the epoch this check ended
    val_mse: float
    digits: int | None = None  # validation digits checked


@dataclass(frozen=True)
class Progress:
    """Where a run stands, written with its steps."""

    steps: int
    samples: int
    wall_seconds: float
    samples_per_s: float

    @classmethod
    def from_history(cls, history: Any, *, steps: int, wall_seconds: float) -> Progress:
        """From a cae.engine.trainer.History (samples, samples_per_s) and the runner's wall time."""
        return cls(steps=steps, samples=int(history.samples), wall_seconds=float(wall_seconds),
                   samples_per_s=float(history.samples_per_s))


@dataclass(frozen=True)
class CheckpointRecord:
    kind: str  # one of CHECKPOINT_KINDS
    path: str  # relative to the runs dir
    step: int
    epoch: int
    bytes: int
    created_at: float
    exists: bool  # the file was there when this record was read

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "path": self.path, "step": self.step, "epoch": self.epoch, "bytes": self.bytes,
                "created_at": _iso(self.created_at), "exists": self.exists}


_KIND_PREFERENCE = {"final": 0, "last": 1, "epoch": 2}


@dataclass(frozen=True)
class RunRecord:
    id: str
    workspace: str
    name: str
    model_type: str
    model_config: dict[str, Any]
    train_config: dict[str, Any]
    data_source: str
    state: str
    end_reason: EndReason | None
    end_message: str | None
    created_at: float
    updated_at: float
    ended_at: float | None
    steps: int
    total_steps: int | None
    samples: int
    wall_seconds: float
    samples_per_s: float
    scores: dict[str, Any]
    owner: str | None
    loss_stride: int
    loss_points: int
    record_bytes: int
    files_bytes: int
    checkpoints: tuple[CheckpointRecord, ...] = ()

    @property
    def live(self) -> bool:
        return self.state in LIVE_STATES

    @property
    def checkpoint_missing(self) -> bool:
        """Some checkpoint file this run references is not there."""
        return any(not item.exists for item in self.checkpoints)

    @property
    def best_checkpoint(self) -> CheckpointRecord | None:
        """The checkpoint to use: the final one, else the last, else the newest epoch's, among files that exist."""
        present = [item for item in self.checkpoints if item.exists]
        return min(present, key=lambda item: (_KIND_PREFERENCE[item.kind], -item.step), default=None)

    @property
    def status(self) -> str:
        """For people: "running", "finished", "interrupted at step 120", "failed: ValueError: ..."."""
        if self.end_reason is None:
            return self.state
        return self.end_message or self.end_reason.label

    def to_dict(self) -> dict[str, Any]:
        plain = {name: getattr(self, name) for name in (
            "id", "workspace", "name", "model_type", "model_config", "train_config", "data_source", "state",
            "end_message", "steps", "total_steps", "samples", "wall_seconds", "samples_per_s", "scores",
            "loss_stride", "loss_points", "record_bytes", "files_bytes")}
        plain.update(
            end_reason=None if self.end_reason is None else self.end_reason.value, status=self.status,
            created_at=_iso(self.created_at), updated_at=_iso(self.updated_at), ended_at=_iso(self.ended_at),
            checkpoints=[item.to_dict() for item in self.checkpoints], checkpoint_missing=self.checkpoint_missing)
        return plain


@dataclass(frozen=True)
class LossCurve:
    """A run's loss points in step order (every loss_stride-th step once thinned, and the last)."""

    steps: list[int]
    samples: list[int | None]
    loss: list[float]
    terms: dict[str, list[float | None]]


@dataclass(frozen=True)
class NewRun:
    id: str
    pruned: list[RunRecord]  # runs of the workspace removed to stay within its limit, for the page to mention


def _iso(seconds: float | None) -> str | None:
    return None if seconds is None else datetime.fromtimestamp(seconds, UTC).isoformat(timespec="seconds")


def _plain(config: Any) -> dict[str, Any]:
    return asdict(config) if is_dataclass(config) else dict(config)


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def _point_bytes(terms_json: str | None) -> int:
    return POINT_ROW_BYTES + len(terms_json or "")


def step_rows(history: Any, since: int, *, samples_at: Callable[[int], int] | None = None) -> list[StepRow]:
    """The rows for steps since+1 .. now from a cae.engine.trainer.History (its train_loss and terms lists are one
    entry a step); `samples_at(step)` gives the digits trained on by that step, when the caller knows it."""
    rows = []
    for index in range(since, len(history.train_loss)):
        terms = {name: values[index] for name, values in history.terms.items() if index < len(values)}
        step = index + 1
        rows.append(StepRow(step, history.train_loss[index], terms, None if samples_at is None else samples_at(step)))
    return rows


def samples_by_step(epoch_size: int, batch_size: int) -> Callable[[int], int]:
    """Digits trained on after each step when every epoch goes once through `epoch_size` digits in batches of
    `batch_size` (the last batch of an epoch smaller), as cae.engine.trainer.Trainer does: a `samples_at` for
    step_rows."""
    steps_per_epoch = -(-epoch_size // batch_size)

    def samples_at(step: int) -> int:
        epochs, within = divmod(step, steps_per_epoch)
        return epochs * epoch_size + min(within * batch_size, epoch_size)

    return samples_at


def validation_rows(history: Any, since_step: int, steps_per_epoch: int, *,
                    digits: Callable[[int], int] | None = None) -> list[Validation]:
    """The validation checks recorded after step `since_step` in a History."""
    return [Validation(step, (step + steps_per_epoch - 1) // steps_per_epoch, mse,
                       None if digits is None else digits(step))
            for step, mse in zip(history.val_step, history.val_mse) if step > since_step]


def end_reason_for(stop_reason: Any, error: str | None = None) -> EndReason:
    """The EndReason for a trainer's stop reason (cae.engine.trainer.StopReason or None) or a crash's error."""
    from cae.engine.trainer import StopReason  # torch comes with it: only in a process that trains

    if error:
        return EndReason.FAILED
    return {None: EndReason.FINISHED, StopReason.USER: EndReason.USER, StopReason.INTERRUPTED: EndReason.USER,
            StopReason.SESSION_GONE: EndReason.TAB_CLOSED, StopReason.DIVERGED: EndReason.DIVERGED,
            StopReason.COLLAPSED: EndReason.COLLAPSED}[stop_reason]


def _describe_failure(error: BaseException) -> str:
    """The database's or the system's own words, without SQLAlchemy's statement dump."""
    original = getattr(error, "orig", None) or error
    text = str(original).strip() or type(original).__name__
    if isinstance(original, OSError) and original.strerror:
        text = f"{original.strerror} ({original.filename})" if original.filename else original.strerror
    if "not a database" in text:
        text += " (the file is corrupt or is not a run store)"
    return text


def _locked(error: OperationalError) -> bool:
    """A failure that another transaction caused and that the same work, done again, gets past: SQLite's "database
    is locked", PostgreSQL's serialization failure, deadlock or lock not available (by SQLSTATE)."""
    original = getattr(error, "orig", error)
    code = getattr(original, "sqlstate", None)
    if code is not None:
        return code in RETRIED_SQLSTATES
    text = str(original).lower()
    return any(word in text for word in ("locked", "busy", "deadlock", "could not serialize"))


def _shown_url(url: str) -> str:
    """The URL without its password, for messages; a URL that does not parse is shown as far as its scheme."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return url.partition("://")[0] + "://..." if "://" in url else "(not a database URL)"


def server_url(url: str) -> URL:
    """The URL as SQLAlchemy takes it; a PostgreSQL URL without a driver (`postgresql://`, or `postgres://` as some
    hosts write it) gets psycopg 3, the driver this app installs (SQLAlchemy's own default is psycopg2)."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def _recount(conn: Connection, run_id: str) -> None:
    """Recompute a run's size bookkeeping from its rows and checkpoints."""
    points, terms_length = conn.execute(
        select(func.count(), func.coalesce(func.sum(func.length(loss_points_table.c.terms)), 0))
        .where(loss_points_table.c.run_id == run_id)).one()
    checks = conn.execute(select(func.count()).where(validations_table.c.run_id == run_id)).scalar_one()
    files = conn.execute(select(func.coalesce(func.sum(checkpoints_table.c.bytes), 0))
                         .where(checkpoints_table.c.run_id == run_id)).scalar_one()
    text_columns = (runs_table.c.name, runs_table.c.model_config, runs_table.c.train_config, runs_table.c.scores,
                    runs_table.c.end_message)
    row_text = conn.execute(select(sum(func.coalesce(func.length(column), 0) for column in text_columns))
                            .where(runs_table.c.id == run_id)).scalar_one()
    record = RUN_ROW_BYTES + row_text + points * POINT_ROW_BYTES + terms_length + checks * VALIDATION_ROW_BYTES
    conn.execute(update(runs_table).where(runs_table.c.id == run_id).values(
        loss_points=points, record_bytes=record, files_bytes=files))


def _checkpoint_file_name(kind: str, epoch: int) -> str:
    return f"epoch-{epoch:04d}.pt" if kind == "epoch" else f"{kind}.pt"


# The store --------------------------------------------------------------------------------------------------------

class RunStore:
    """One run store (database and files). Thread-safe: share one per process.

    `url` defaults to CAE_RUNS_DB, else SQLite at `<root>/runs.sqlite`; `root` (where checkpoint files go) defaults
    to runs_dir(); `keep` to CAE_RUNS_KEEP. Opening creates or migrates the schema; StoreError if that fails.
    """

    def __init__(self, url: str | None = None, *, root: str | Path | None = None, keep: int | None = None,
                 max_run_bytes: int = MAX_RUN_BYTES, busy_seconds: float = BUSY_SECONDS):
        self.root = Path(root) if root is not None else runs_dir()
        self.keep = keep if keep is not None else keep_limit()
        self.max_run_bytes = max_run_bytes
        self.busy_seconds = busy_seconds
        url = url or os.environ.get("CAE_RUNS_DB") or None
        self.location = str(self.root / DATABASE_FILE) if url is None else _shown_url(url)
        try:
            if url is None:
                self.root.mkdir(parents=True, exist_ok=True)
                url = f"sqlite:///{self.root / DATABASE_FILE}"
            self.engine = self._make_engine(url)
            self.location = self.engine.url.render_as_string(hide_password=True)
        except (ArgumentError, NoSuchModuleError, ImportError, OSError) as error:  # a bad URL or a missing driver
            raise StoreError(f"run store {self.location}: cannot open it: {_describe_failure(error)}") from error
        self._server = self.engine.dialect.name != "sqlite"
        try:
            self._transaction(self._migrate, what="open it")
        except StoreError:
            # SQLite's BEGIN IMMEDIATE and PostgreSQL's MIGRATION_LOCK serialise the openers: a real failure.
            if self.engine.dialect.name in ("sqlite", "postgresql"):
                self.engine.dispose()
                raise
            # Two servers opening a new server database at once: one made the tables while the other tried to.
            try:
                self._transaction(self._migrate, what="open it")
            except StoreError:
                self.engine.dispose()
                raise

    def _make_engine(self, url: str) -> Engine:
        if not url.startswith("sqlite"):
            return self._make_server_engine(url)
        engine = create_engine(url, connect_args={"timeout": self.busy_seconds, "check_same_thread": False},
                               pool_size=10, max_overflow=30, pool_timeout=self.busy_seconds)
        busy_ms = int(self.busy_seconds * 1000)

        @event.listens_for(engine, "connect")
        def _configure(dbapi_connection: Any, _record: Any) -> None:
            # Autocommit at the driver, so that the BEGIN below is the only one (pysqlite's own would be DEFERRED).
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            cursor.execute(f"PRAGMA busy_timeout = {busy_ms}")
            cursor.execute("PRAGMA journal_mode = WAL")  # readers never wait for the writer
            cursor.execute("PRAGMA synchronous = NORMAL")  # WAL stays consistent; a power cut may lose the last commit
            cursor.execute("PRAGMA foreign_keys = ON")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _begin(conn: Connection) -> None:
            # A writer takes the lock at BEGIN, where the busy timeout waits for it; a deferred transaction that
            # turned into a writer later would fail at once with "database is locked" when another wrote first.
            conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get(_WRITE) else "BEGIN")

        return engine

    def _make_server_engine(self, url: str) -> Engine:
        """A server database (PostgreSQL): at most SERVER_CONNECTIONS connections a process (PostgreSQL allows 100
        in all by default, shared by every app server), checked before use (a server restarted meanwhile costs no
        request); a server that does not answer is given up on after SERVER_CONNECT_SECONDS."""
        parsed = server_url(url)
        connect_args: dict[str, Any] = {}
        if parsed.get_backend_name() == "postgresql" and "connect_timeout" not in parsed.query:
            connect_args["connect_timeout"] = SERVER_CONNECT_SECONDS
        return create_engine(parsed, pool_pre_ping=True, pool_size=SERVER_CONNECTIONS // 4,
                             max_overflow=SERVER_CONNECTIONS - SERVER_CONNECTIONS // 4, pool_timeout=self.busy_seconds,
                             connect_args=connect_args)

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> RunStore:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # Transactions ---------------------------------------------------------------------------------------------------

    def _transaction(self, work: Callable[[Connection], _T], *, what: str, write: bool = True) -> _T:
        """Run `work` in one transaction; retried while the database is locked (up to busy_seconds); any other
        failure of the database or the files becomes StoreError. StoreErrors raised by `work` pass through."""
        deadline = time.monotonic() + self.busy_seconds
        pause = 0.01
        while True:
            try:
                with self.engine.connect() as conn:
                    if write:
                        conn = conn.execution_options(**{_WRITE: True})
                    elif self._server:
                        # A reader's statements see one snapshot (a run and its checkpoints as of one moment); a
                        # transaction that only reads is never refused at this level.
                        conn = conn.execution_options(isolation_level="REPEATABLE READ")
                    with conn.begin():
                        return work(conn)
            except StoreError:
                raise
            except OperationalError as error:
                if _locked(error) and time.monotonic() < deadline:
                    time.sleep(pause)
                    pause = min(pause * 2, 0.5)
                    continue
                raise self._error(what, error) from error
            except (DBAPIError, PoolTimeout, sqlite3.Error, OSError) as error:
                raise self._error(what, error) from error

    def _error(self, what: str, error: BaseException) -> StoreError:
        return StoreError(f"run store {self.location}: cannot {what}: {_describe_failure(error)}")

    def _migrate(self, conn: Connection) -> int:
        if conn.dialect.name == "postgresql":  # servers starting together: the others wait, then find it made
            conn.execute(select(func.pg_advisory_xact_lock(MIGRATION_LOCK)))
        inspector = inspect(conn)
        if not inspector.has_table("schema_version"):
            if inspector.has_table("runs"):
                raise StoreError(f"run store {self.location}: it has a runs table but no schema version; "
                                 "not a store this app made")
            schema_version_table.create(conn)
            conn.execute(insert(schema_version_table).values(version=0))
        version = conn.execute(select(schema_version_table.c.version)).scalar_one()
        if version > SCHEMA_VERSION:
            raise StoreError(f"run store {self.location}: made by a newer version of the app (schema version "
                             f"{version}; this one knows up to {SCHEMA_VERSION})")
        for number in range(version, SCHEMA_VERSION):
            MIGRATIONS[number](conn)
            conn.execute(update(schema_version_table).values(version=number + 1))
        return SCHEMA_VERSION

    @property
    def schema_version(self) -> int:
        return self._transaction(lambda conn: conn.execute(select(schema_version_table.c.version)).scalar_one(),
                                 what="read its schema version", write=False)

    # Writing a run ---------------------------------------------------------------------------------------------------

    def create_run(self, workspace: str, *, model_type: str, model_config: Any, train_config: Any,
                   data_source: str, name: str | None = None, state: str = "running",
                   total_steps: int | None = None, owner: str | None = None) -> NewRun:
        """A new run in the workspace, owned by this process; then the workspace is pruned to its limit.

        The configs are dataclasses or plain dicts (stored as JSON); `model_type` is the type's name."""
        check_workspace_id(workspace)
        if state not in LIVE_STATES:
            raise ValueError(f"a new run's state is one of {', '.join(LIVE_STATES)}, not {state!r}")
        run_id = secrets.token_hex(8)
        now = time.time()
        values = dict(
            id=run_id, workspace=workspace,
            name=_checked_name(name or f"{model_type} {time.strftime('%Y-%m-%d %H:%M')}"),
            model_type=model_type, model_config=_dumps(_plain(model_config)),
            train_config=_dumps(_plain(train_config)), data_source=data_source, state=state, created_at=now,
            updated_at=now, steps=0, total_steps=total_steps, samples=0, wall_seconds=0.0, samples_per_s=0.0,
            owner=owner or _process_owner(), loss_stride=1, loss_points=0, files_bytes=0)

        def work(conn: Connection) -> None:
            conn.execute(insert(runs_table).values(**values, record_bytes=0))
            _recount(conn, run_id)

        self._transaction(work, what=f"create a run in workspace {workspace}")
        return NewRun(run_id, self.prune(workspace))

    def append_steps(self, run_id: str, rows: Sequence[StepRow], *, validations: Sequence[Validation] = (),
                     progress: Progress | None = None, state: str | None = None) -> None:
        """Add loss points (and validation checks, progress, a state) in one transaction: call it with each snapshot.

        A row at a step already stored replaces it and every later one (a resumed run redoes those steps). Once a
        run has been thinned (see _enforce_limit) only every loss_stride-th step is kept, and the newest."""
        rows = sorted(rows, key=lambda row: row.step)
        checks = sorted(validations, key=lambda check: check.step)
        if state is not None and state not in LIVE_STATES + ENDED_STATES:
            raise ValueError(f"unknown state {state!r}")

        def work(conn: Connection) -> list[str]:
            stride = self._run_value(conn, run_id, runs_table.c.loss_stride)
            values: dict[str, Any] = {"updated_at": time.time()}
            if rows:
                kept = [row for row in rows[:-1] if row.step % stride == 0] + rows[-1:]
                # Also drops the previous batch's newest point when it is off the stride.
                floor = (rows[0].step - 1) // stride * stride
                replaced = conn.execute(delete(loss_points_table).where(
                    loss_points_table.c.run_id == run_id, loss_points_table.c.step > floor)).rowcount
                encoded = [(row, _dumps(dict(row.terms)) if row.terms else None) for row in kept]
                conn.execute(insert(loss_points_table), [
                    {"run_id": run_id, "step": row.step, "samples": row.samples, "loss": float(row.loss),
                     "terms": terms} for row, terms in encoded])
                added = sum(_point_bytes(terms) for _, terms in encoded)
                average = added // len(encoded)
                values.update(loss_points=runs_table.c.loss_points + len(kept) - replaced,
                              record_bytes=runs_table.c.record_bytes + added - replaced * average,
                              steps=rows[-1].step)
            if checks:
                replaced = conn.execute(delete(validations_table).where(
                    validations_table.c.run_id == run_id, validations_table.c.step >= checks[0].step)).rowcount
                conn.execute(insert(validations_table), [
                    {"run_id": run_id, "step": check.step, "epoch": check.epoch, "val_mse": float(check.val_mse),
                     "digits": check.digits} for check in checks])
                growth = (len(checks) - replaced) * VALIDATION_ROW_BYTES
                values["record_bytes"] = values.get("record_bytes", runs_table.c.record_bytes) + growth
            if progress is not None:
                values.update(steps=progress.steps, samples=progress.samples, wall_seconds=progress.wall_seconds,
                              samples_per_s=progress.samples_per_s)
            if state is not None:
                values["state"] = state
            conn.execute(update(runs_table).where(runs_table.c.id == run_id).values(**values))
            return self._enforce_limit(conn, run_id)

        self._remove_files(self._transaction(work, what=f"save the steps of run {run_id}"))

    def heartbeat(self, run_id: str, *, state: str | None = None) -> None:
        """Say the run's process is alive (a paused run writes nothing else); optionally its new live state."""
        self.append_steps(run_id, (), state=state)

    def end_run(self, run_id: str, reason: EndReason, message: str | None = None, *,
                scores: Mapping[str, Any] | None = None, progress: Progress | None = None) -> None:
        """The run has ended: its state, reason, message (the error for a failure), scores and final progress."""
        reason = EndReason(reason)

        def work(conn: Connection) -> None:
            old_scores = self._run_value(conn, run_id, runs_table.c.scores)
            now = time.time()
            values: dict[str, Any] = dict(state=reason.state, end_reason=reason.value,
                                          end_message=message or reason.label, ended_at=now, updated_at=now)
            if scores is not None:
                values["scores"] = _dumps({**json.loads(old_scores or "{}"), **scores})
            if progress is not None:
                values.update(steps=progress.steps, samples=progress.samples, wall_seconds=progress.wall_seconds,
                              samples_per_s=progress.samples_per_s)
            conn.execute(update(runs_table).where(runs_table.c.id == run_id).values(**values))
            _recount(conn, run_id)

        self._transaction(work, what=f"end run {run_id}")

    def update_scores(self, run_id: str, scores: Mapping[str, Any]) -> None:
        """Merge scores measured after the run ended (the command line scores the model once it is saved)."""

        def work(conn: Connection) -> None:
            old = json.loads(self._run_value(conn, run_id, runs_table.c.scores) or "{}")
            conn.execute(update(runs_table).where(runs_table.c.id == run_id).values(scores=_dumps({**old, **scores})))
            _recount(conn, run_id)

        self._transaction(work, what=f"save the scores of run {run_id}")

    def reopen_run(self, run_id: str, *, from_step: int, state: str = "running") -> None:
        """Resume: the run is live again, owned by this process, and its points and checks after `from_step` (the
        checkpoint it resumes from) are dropped, since it trains those steps again."""

        def work(conn: Connection) -> None:
            self._run_value(conn, run_id, runs_table.c.id)
            for table in (loss_points_table, validations_table):
                conn.execute(delete(table).where(table.c.run_id == run_id, table.c.step > from_step))
            conn.execute(update(runs_table).where(runs_table.c.id == run_id).values(
                state=state, end_reason=None, end_message=None, ended_at=None, steps=from_step,
                owner=_process_owner(), updated_at=time.time()))
            _recount(conn, run_id)

        self._transaction(work, what=f"reopen run {run_id}")

    def add_checkpoint(self, run_id: str, checkpoint: Checkpoint, kind: str, *, step: int,
                       epoch: int) -> CheckpointRecord:
        """Write the checkpoint file atomically under the run's folder and record it.

        One file per epoch (kind "epoch"), one "last" and one "final" per run: a second of the same replaces the
        first. RunTooLarge (nothing written) if the file alone would not fit in max_run_bytes."""
        from cae.engine import checkpoint as checkpoint_file  # torch comes with it

        if kind not in CHECKPOINT_KINDS:
            raise ValueError(f"checkpoint kind {kind!r}: one of {', '.join(CHECKPOINT_KINDS)}")
        workspace = self._transaction(lambda conn: self._run_value(conn, run_id, runs_table.c.workspace),
                                      what=f"read run {run_id}", write=False)
        size = len(checkpoint_file.to_bytes(checkpoint))
        if size > self.max_run_bytes - RECORD_HEADROOM:
            raise RunTooLarge(f"run {run_id}: a checkpoint of {size:,} bytes does not fit in a run's "
                              f"{self.max_run_bytes:,} bytes")
        relative = f"{workspace}/{run_id}/{_checkpoint_file_name(kind, epoch)}"
        path = self.root / relative
        existed = path.exists()
        try:
            checkpoint_file.save(checkpoint, path)
            size = path.stat().st_size
        except OSError as error:
            raise self._error(f"write checkpoint {path}", error) from error
        now = time.time()

        def work(conn: Connection) -> list[str]:
            self._run_value(conn, run_id, runs_table.c.id)
            conn.execute(delete(checkpoints_table).where(checkpoints_table.c.path == relative))
            conn.execute(insert(checkpoints_table).values(run_id=run_id, kind=kind, path=relative, step=step,
                                                          epoch=epoch, bytes=size, created_at=now))
            files = conn.execute(select(func.sum(checkpoints_table.c.bytes))
                                 .where(checkpoints_table.c.run_id == run_id))
            conn.execute(update(runs_table).where(runs_table.c.id == run_id).values(files_bytes=files.scalar_one(),
                                                                        updated_at=now))
            return self._enforce_limit(conn, run_id)

        try:
            dropped = self._transaction(work, what=f"record checkpoint {relative}")
        except StoreError:
            if not existed:
                path.unlink(missing_ok=True)
            raise
        self._remove_files(dropped)
        return CheckpointRecord(kind, relative, step, epoch, size, now, exists=True)

    def _enforce_limit(self, conn: Connection, run_id: str) -> list[str]:
        """Keep the run within max_run_bytes; the files to delete once this transaction commits.

        While it is over, in this order: 1. checkpoints that matter least go: epoch checkpoints but the newest, then
        any that a later "last" or the "final" supersedes; 2. the loss points are thinned: every second one of those
        left goes (the first and the newest stay), down to MIN_LOSS_POINTS; 3. the oldest checkpoints but the newest
        go."""
        over = self._bytes_over(conn, run_id)
        if over <= 0:
            return []
        files, points = checkpoints_table.c, loss_points_table.c
        held = conn.execute(select(files.id, files.kind, files.path, files.step, files.bytes)
                            .where(files.run_id == run_id).order_by(files.step, files.id)).all()
        newest = held[-1] if held else None
        older_epochs = [item for item in held if item.kind == "epoch"][:-1]
        superseded = [item for item in held if item.kind != "final" and any(
            later.kind == "final" or (later.kind == "last" and later.step >= item.step)
            for later in held if later is not item)]
        least = list(dict.fromkeys(older_epochs + superseded))
        dropped: list[str] = []

        def drop(candidates: list[Any], over: int) -> int:
            for item in candidates:
                if over <= 0:
                    break
                if item.path not in dropped:
                    conn.execute(delete(checkpoints_table).where(files.id == item.id))
                    dropped.append(item.path)
                    over -= item.bytes
            return over

        over = drop(least, over)
        if dropped:
            _recount(conn, run_id)
        while over > 0:
            stride, count = conn.execute(select(runs_table.c.loss_stride, runs_table.c.loss_points)
                                         .where(runs_table.c.id == run_id)).one()
            if count <= MIN_LOSS_POINTS:
                break
            first, last = conn.execute(select(func.min(points.step), func.max(points.step))
                                       .where(points.run_id == run_id)).one()
            conn.execute(delete(loss_points_table).where(
                points.run_id == run_id, points.step % (stride * 2) != 0, points.step > first, points.step < last))
            conn.execute(update(runs_table).where(runs_table.c.id == run_id).values(loss_stride=stride * 2))
            _recount(conn, run_id)
            over = self._bytes_over(conn, run_id)
        if over > 0 and drop([item for item in held if item is not newest], over) != over:
            _recount(conn, run_id)
        return dropped

    def _bytes_over(self, conn: Connection, run_id: str) -> int:
        run = conn.execute(select(runs_table.c.record_bytes, runs_table.c.files_bytes)
                           .where(runs_table.c.id == run_id)).one()
        return run.record_bytes + run.files_bytes - self.max_run_bytes

    def _remove_files(self, relative_paths: Iterable[str]) -> None:
        for relative in relative_paths:
            (self.root / relative).unlink(missing_ok=True)

    @staticmethod
    def _run_value(conn: Connection, run_id: str, column: Column) -> Any:
        row = conn.execute(select(column).where(runs_table.c.id == run_id)).first()
        if row is None:
            raise RunNotFound(f"no run {run_id!r} in the run store (deleted or pruned?)")
        return row[0]

    # Reading --------------------------------------------------------------------------------------------------------

    def list_runs(self, workspace: str) -> list[RunRecord]:
        """The workspace's runs, newest first; [] for a workspace with none."""
        check_workspace_id(workspace)

        def work(conn: Connection) -> list[RunRecord]:
            rows = conn.execute(select(runs_table).where(runs_table.c.workspace == workspace)
                                .order_by(runs_table.c.created_at.desc(), runs_table.c.id)).all()
            return self._records(conn, rows)

        return self._transaction(work, what=f"list the runs of workspace {workspace}", write=False)

    def get_run(self, workspace: str, run_id: str) -> RunRecord:
        """One run of the workspace; RunNotFound if the workspace has no such run."""

        def work(conn: Connection) -> RunRecord:
            return self._records(conn, [self._run_row(conn, workspace, run_id)])[0]

        return self._transaction(work, what=f"read run {run_id}", write=False)

    def loss_curve(self, workspace: str, run_id: str) -> LossCurve:
        def work(conn: Connection) -> LossCurve:
            self._run_row(conn, workspace, run_id)
            rows = conn.execute(select(loss_points_table.c.step, loss_points_table.c.samples, loss_points_table.c.loss,
                                       loss_points_table.c.terms).where(loss_points_table.c.run_id == run_id)
                                .order_by(loss_points_table.c.step)).all()
            decoded = [json.loads(row.terms) if row.terms else {} for row in rows]
            names = list(dict.fromkeys(name for terms in decoded for name in terms))
            return LossCurve(steps=[row.step for row in rows], samples=[row.samples for row in rows],
                             loss=[row.loss for row in rows],
                             terms={name: [terms.get(name) for terms in decoded] for name in names})

        return self._transaction(work, what=f"read the loss of run {run_id}", write=False)

    def validations(self, workspace: str, run_id: str) -> list[Validation]:
        def work(conn: Connection) -> list[Validation]:
            self._run_row(conn, workspace, run_id)
            rows = conn.execute(select(validations_table).where(validations_table.c.run_id == run_id)
                                .order_by(validations_table.c.step)).all()
            return [Validation(row.step, row.epoch, row.val_mse, row.digits) for row in rows]

        return self._transaction(work, what=f"read the validation checks of run {run_id}", write=False)

    def checkpoint_path(self, record: CheckpointRecord) -> Path:
        return self.root / record.path

    def load_checkpoint(self, workspace: str, run_id: str, kind: str | None = None) -> Checkpoint:
        """The run's best checkpoint (RunRecord.best_checkpoint) or its newest of `kind`; NoCheckpoint when there is
        no such file or it is unusable (the message gives cae.engine.checkpoint's reason)."""
        from cae.engine import checkpoint as checkpoint_file  # torch comes with it

        record = self.get_run(workspace, run_id)
        if kind is None:
            chosen = record.best_checkpoint
        else:
            chosen = max((item for item in record.checkpoints if item.kind == kind and item.exists),
                         key=lambda item: item.step, default=None)
        if chosen is None:
            missing = [item.path for item in record.checkpoints if not item.exists]
            why = f"its files are missing: {', '.join(missing)}" if missing else "none was written"
            raise NoCheckpoint(f"run {run_id} has no {kind or 'usable'} checkpoint ({why})")
        try:
            return checkpoint_file.load(self.checkpoint_path(chosen))
        except checkpoint_file.CheckpointError as error:
            raise NoCheckpoint(f"run {run_id}: {error}") from error

    def export_checkpoint(self, workspace: str, run_id: str, out: str | Path, *, kind: str | None = None) -> Path:
        """A checked copy of the run's checkpoint (see load_checkpoint) at `out`, written atomically."""
        from cae.engine import checkpoint as checkpoint_file  # torch comes with it

        loaded = self.load_checkpoint(workspace, run_id, kind)
        try:
            return checkpoint_file.save(loaded.without_training_state(), out)  # a model file: no optimizer state
        except OSError as error:
            raise StoreError(f"cannot write {out}: {_describe_failure(error)}") from error

    def _run_row(self, conn: Connection, workspace: str, run_id: str) -> Any:
        row = conn.execute(select(runs_table)
                           .where(runs_table.c.id == run_id, runs_table.c.workspace == workspace)).first()
        if row is None:
            raise RunNotFound(f"workspace {workspace} has no run {run_id!r}")
        return row

    def _records(self, conn: Connection, rows: Sequence[Any]) -> list[RunRecord]:
        held: dict[str, list[CheckpointRecord]] = {row.id: [] for row in rows}
        if held:
            for item in conn.execute(select(checkpoints_table).where(checkpoints_table.c.run_id.in_(list(held)))
                                     .order_by(checkpoints_table.c.step, checkpoints_table.c.id)):
                held[item.run_id].append(CheckpointRecord(
                    item.kind, item.path, item.step, item.epoch, item.bytes, item.created_at,
                    exists=(self.root / item.path).is_file()))
        return [RunRecord(
            id=row.id, workspace=row.workspace, name=row.name, model_type=row.model_type,
            model_config=json.loads(row.model_config), train_config=json.loads(row.train_config),
            data_source=row.data_source, state=row.state,
            end_reason=None if row.end_reason is None else EndReason(row.end_reason), end_message=row.end_message,
            created_at=row.created_at, updated_at=row.updated_at, ended_at=row.ended_at, steps=row.steps,
            total_steps=row.total_steps, samples=row.samples, wall_seconds=row.wall_seconds,
            samples_per_s=row.samples_per_s, scores=json.loads(row.scores or "{}"), owner=row.owner,
            loss_stride=row.loss_stride, loss_points=row.loss_points, record_bytes=row.record_bytes,
            files_bytes=row.files_bytes, checkpoints=tuple(held[row.id])) for row in rows]

    # Managing runs --------------------------------------------------------------------------------------------------

    def rename_run(self, workspace: str, run_id: str, name: str) -> RunRecord:
        name = _checked_name(name)

        def work(conn: Connection) -> None:
            self._run_row(conn, workspace, run_id)
            conn.execute(update(runs_table).where(runs_table.c.id == run_id).values(name=name, updated_at=time.time()))
            _recount(conn, run_id)

        self._transaction(work, what=f"rename run {run_id}")
        return self.get_run(workspace, run_id)

    def delete_run(self, workspace: str, run_id: str, *, force: bool = False) -> RunRecord:
        """Remove the run's record and files; a live run only with `force` (RunInFlight otherwise)."""

        def work(conn: Connection) -> RunRecord:
            record = self._records(conn, [self._run_row(conn, workspace, run_id)])[0]
            if record.live and not force:
                raise RunInFlight(f"run {run_id} is {record.state}; stop it first")
            self._delete_rows(conn, [run_id])
            return record

        record = self._transaction(work, what=f"delete run {run_id}")
        self._remove_run_folders([record])
        return record

    def prune(self, workspace: str, keep: int | None = None) -> list[RunRecord]:
        """Delete the workspace's oldest ended runs beyond `keep` (default: the store's); live runs stay, even when
        they alone are more. Returns the runs deleted."""
        keep = self.keep if keep is None else keep
        check_workspace_id(workspace)
        if keep < 0:
            raise ValueError(f"keep {keep}: 0 or more runs")

        def work(conn: Connection) -> list[RunRecord]:
            total = conn.execute(select(func.count()).where(runs_table.c.workspace == workspace)).scalar_one()
            if total <= keep:
                return []
            oldest = conn.execute(select(runs_table)
                                  .where(runs_table.c.workspace == workspace, runs_table.c.state.in_(ENDED_STATES))
                                  .order_by(runs_table.c.created_at, runs_table.c.id).limit(total - keep)).all()
            records = self._records(conn, oldest)
            self._delete_rows(conn, [record.id for record in records])
            return records

        pruned = self._transaction(work, what=f"prune workspace {workspace}")
        self._remove_run_folders(pruned)
        return pruned

    def mark_interrupted_on_start(self, *, stale_seconds: float = STALE_SECONDS) -> list[RunRecord]:
        """At a server's start: live runs whose process has died become "interrupted at step N".

        Dead means: not heard from (updated_at) for `stale_seconds` (a live run's process writes or heartbeats more
        often than that), or started by a process of this machine (same boot, same pid namespace: see _machine_id)
        that no longer exists or whose pid this process now has. A pid is only looked up where it was given out: a
        run of another machine sharing a server database goes by its heartbeat alone, even when its host has this
        one's name. This process's own runs are never touched, nor a run that wrote while this looked."""
        mine = _process_owner()
        here = _parse_owner(mine)

        def dead(row: Any) -> bool:
            if row.owner == mine:
                return False
            if time.time() - row.updated_at >= stale_seconds:
                return True
            owner = _parse_owner(row.owner)
            if owner is None:
                return False
            # An owner written before owners named their machine: its host name is all there is to go by.
            same_machine = owner.machine == here.machine if owner.machine is not None else owner.host == here.host
            if not same_machine:
                return False
            return owner.pid == os.getpid() or not _pid_alive(owner.pid)

        def work(conn: Connection) -> list[tuple[str, str]]:
            live = conn.execute(select(runs_table).where(runs_table.c.state.in_(LIVE_STATES))).all()
            marked = []
            for row in live:
                if not dead(row):
                    continue
                # Only if it is as it was read: a run that heartbeated or ended meanwhile is alive or done.
                changed = conn.execute(update(runs_table).where(
                    runs_table.c.id == row.id, runs_table.c.updated_at == row.updated_at,
                    runs_table.c.state.in_(LIVE_STATES)).values(
                    state="interrupted", end_reason=EndReason.INTERRUPTED.value,
                    end_message=f"interrupted at step {row.steps}", ended_at=row.updated_at)).rowcount
                if changed:
                    _recount(conn, row.id)
                    marked.append((row.workspace, row.id))
            return marked

        marked = self._transaction(work, what="mark the runs of a stopped process as interrupted")
        return [self.get_run(workspace, run_id) for workspace, run_id in marked]

    def _delete_rows(self, conn: Connection, run_ids: list[str]) -> None:
        if not run_ids:
            return
        # Children first, and by hand: also where foreign keys are not enforced.
        for table in (loss_points_table, validations_table, checkpoints_table):
            conn.execute(delete(table).where(table.c.run_id.in_(run_ids)))
        conn.execute(delete(runs_table).where(runs_table.c.id.in_(run_ids)))

    def _remove_run_folders(self, records: Iterable[RunRecord]) -> None:
        for record in records:
            shutil.rmtree(self.root / record.workspace / record.id, ignore_errors=True)


def _checked_name(name: str) -> str:
    """Whitespace runs made one space; control characters dropped (PostgreSQL refuses a NUL in text)."""
    printable = "".join(char for char in str(name) if unicodedata.category(char) != "Cc" or char.isspace())
    cleaned = " ".join(printable.split())
    if not cleaned:
        raise ValueError("a run's name cannot be empty")
    if len(cleaned) > 200:
        raise ValueError(f"a run's name is at most 200 characters ({len(cleaned)} given)")
    return cleaned
