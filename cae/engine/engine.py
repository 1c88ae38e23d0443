"""One interface for a training run, whatever trains it: the embedded engine (a thread and the server's run queue in
this process, cae.engine.runner) or a Ray cluster (cae.engine.ray_engine), chosen by CAE_RAY_ADDRESS.

A page, a sweep or a command line starts a run through a `RunEngine` and gets a `RunHandle` back: what may be asked
of a run (its snapshot and state, pause, resume, stop, its id in the run store, its model once it has ended)
without reaching into the trainer, which on a cluster lives in another process on another machine. The embedded
handle is today's TrainingRunner itself (`EmbeddedRun` adds only what a page needs without the trainer); the Ray
handle follows a run's actor and rebuilds the same snapshots from what it polls.

`engine_from_environment()` picks the engine: Ray when CAE_RAY_ADDRESS names a cluster (ray is imported only then),
else the embedded one; a cluster that cannot be used gives the embedded engine and a sentence that says why, for
the caller to show.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import torch

from cae.engine.checkpoint import Checkpoint
from cae.engine.data import MnistData
from cae.engine.recording import RunRecorder
from cae.engine.run_queue import RunQueue, default_places
from cae.engine.runner import ORPHAN_SECONDS, RunSnapshot, TrainingRunner
from cae.engine.store import CheckpointRecord, NoCheckpoint, RunRecord, RunStore
from cae.engine.train_config import TrainConfig
from cae.engine.trainer import RunState, Trainer

RAY_ADDRESS_VARIABLE = "CAE_RAY_ADDRESS"
PREVIEW_DIGITS = 8  # validation digits #0 to #7, reconstructed in every snapshot
RESUMABLE_KINDS = ("last", "epoch")  # checkpoints that hold a training state (cae.engine.trainer.Trainer.resumed)
# A cluster's head that does not take a TCP connection in this time is not there. Without this check ray.init()
# waits on an address that does not answer for minutes (measured: over 2 minutes), with the page blank meanwhile.
PROBE_SECONDS = 3.0
FALLBACK = "runs train on this server instead"


@dataclass(frozen=True)
class Worker:
    """The process a run trains in, on a cluster."""

    pid: int
    host: str
    node: str  # the cluster's id of the machine (Ray's node id)


@runtime_checkable
class RunHandle(Protocol):
    """What a page, a sweep or a command line may ask of a run, whichever engine trains it."""

    @property
    def run_id(self) -> str | None:
        """The run's id in the run store (None without a store, or before the run is created there)."""

    @property
    def state(self) -> RunState:
        """Waiting (for a place, or on a cluster for a worker), running, paused, or how it ended."""

    @property
    def alive(self) -> bool:
        """The run can still change: waiting, running or paused."""

    @property
    def pause_requested(self) -> bool:
        """Pause was pressed (and not Resume since), before `state` says paused."""

    @property
    def store_problem(self) -> str | None:
        """Why the run is not (or no longer) saved in the run store; None while it is."""

    @property
    def wall_seconds(self) -> float:
        """Seconds of training since this handle's run started or resumed; pauses and waits excluded."""

    @property
    def notice(self) -> str | None:
        """What the engine has to say about the run beyond its snapshot ("waiting for a worker", "worker lost at
        step 120: ..."); None when there is nothing to add."""

    @property
    def worker(self) -> Worker | None:
        """Where the run trains (or trained last) when that is another process; None for a thread of this one."""

    @property
    def model_config(self) -> Any:
        """The model type's config of the run."""

    @property
    def train_config(self) -> TrainConfig:
        """The training settings as the trainer uses them."""

    @property
    def loss_label(self) -> str:
        """The objective's unit, for the loss chart ("MSE per pixel", "nats per digit")."""

    @property
    def term_labels(self) -> dict[str, str]:
        """The objective's terms and their labels, for the loss chart."""

    def snapshot(self) -> RunSnapshot:
        """The run's progress as last known, at once (never waits for a step, nor for a cluster)."""

    def pause(self) -> None: ...

    def resume(self) -> None: ...

    def stop(self) -> None: ...

    def join(self, timeout: float | None = None) -> None:
        """Wait until the run has ended (or `timeout` seconds)."""

    def final_checkpoint(self) -> Checkpoint | None:
        """The model the run ended with, with its configs, history and score when it has one (no training state);
        None for a run that never took a step. Call once the run has ended."""

    def training_digits(self) -> torch.Tensor | None:
        """The training digits the run trains on (its seeded subset), for PCA on the same digits; None once freed."""


@dataclass(frozen=True)
class EngineLoad:
    """How busy the engine is, for the page's server line."""

    places: int  # runs that can train at once: the queue's places, or the cluster's CPUs
    training: int  # places in use now
    waiting: int  # runs of this server waiting for a place or a worker
    trained_by: str = "This server"  # what trains the runs, as a sentence's subject


class RunEngine(Protocol):
    """Starts runs and finds them again; see the module docstring."""

    name: str  # "embedded" or "ray", for logs and notices
    on_cluster: bool  # its runs train on other machines: so can the app's other long jobs (the t-SNE maps)

    def start(self, model_config: Any, train_config: TrainConfig, *, workspace: str | None,
              name: str | None = None, owner_alive: Callable[[], bool] | None = None) -> RunHandle:
        """A new run, started (or waiting for a place); ConfigError for bad settings. With `workspace` (and a run
        store) it is written to the store as it goes. With `owner_alive`, the run stops once that has said False
        for the orphan time (CAE_ORPHAN_SECONDS), keeping its model."""

    def resume(self, workspace: str, run_id: str, *,
               owner_alive: Callable[[], bool] | None = None) -> RunHandle:
        """A run of the workspace that stopped before its end goes on from its newest resumable checkpoint (its
        weights, optimizer state, step and random generators). StoreError (NoCheckpoint) or ValueError: why not."""

    def attach(self, workspace: str, run_id: str, *,
               owner_alive: Callable[[], bool] | None = None) -> RunHandle:
        """A handle on a run that is training now, started by another handle (a page reloaded, a restarted app
        server); LookupError when nothing trains it."""

    def live_runs(self, workspace: str) -> list[str]:
        """Ids of the workspace's runs training now that `attach` can reach."""

    def load(self) -> EngineLoad: ...


def resumable_checkpoint(record: RunRecord) -> CheckpointRecord | None:
    """The run's newest checkpoint that holds a training state and whose file is there."""
    candidates = [item for item in record.checkpoints if item.kind in RESUMABLE_KINDS and item.exists]
    return max(candidates, key=lambda item: item.step, default=None)


def trainer_from_store(store: RunStore, workspace: str, run_id: str, data: MnistData) -> tuple[Trainer, RunRecorder]:
    """Resume: a trainer at the run's newest resumable checkpoint and a recorder that goes on writing the same run,
    which the store has reopened (owned by this process). StoreError (NoCheckpoint) or ValueError says why not."""
    record = store.get_run(workspace, run_id)
    trainer = resumed_trainer(store, record, data)
    store.reopen_run(run_id, from_step=trainer.step_count)
    return trainer, RunRecorder(store, workspace, run_id=run_id, wall_before=record.wall_seconds)


def resumed_trainer(store: RunStore, record: RunRecord, data: MnistData) -> Trainer:
    """A trainer at the run's newest resumable checkpoint, the store left as it is."""
    chosen = resumable_checkpoint(record)
    if chosen is None:
        raise NoCheckpoint(f"run {record.name!r} has no checkpoint to resume from (none was kept, or its files are "
                           f"missing)")
    ckpt = store.load_checkpoint(record.workspace, record.id, chosen.kind)
    if ckpt.data_source != data.source:
        raise ValueError(f"it trained on {ckpt.data_source or '?'} and this server has {data.source}")
    return Trainer.resumed(ckpt, data)


class EmbeddedRun(TrainingRunner):
    """The embedded engine's handle: a TrainingRunner, unchanged, with what a page needs without its trainer."""

    @property
    def notice(self) -> str | None:
        return None  # the snapshot says it all: the queue's place is runs_ahead

    @property
    def worker(self) -> Worker | None:
        return None  # this process

    @property
    def model_config(self) -> Any:
        return self.trainer.model_config

    @property
    def train_config(self) -> TrainConfig:
        return self.trainer.config

    @property
    def loss_label(self) -> str:
        return self.trainer.loss_label

    @property
    def term_labels(self) -> dict[str, str]:
        return dict(self.trainer.model.TERMS)

    def final_checkpoint(self) -> Checkpoint | None:
        with self.reading() as trainer:
            if trainer.step_count == 0:
                return None  # stopped before the first step: nothing was learned
            return trainer.checkpoint()  # with its score when the run went to its end

    def training_digits(self) -> torch.Tensor | None:
        with self.reading() as trainer:
            return trainer.train_images


class EmbeddedEngine:
    """Runs train in threads of this process, as many at once as the queue has places (cae.engine.run_queue)."""

    name = "embedded"
    on_cluster = False

    def __init__(self, data: Callable[[], MnistData], *, store: RunStore | None = None,
                 queue: RunQueue | None = None, preview_digits: int = PREVIEW_DIGITS, preview_seconds: float = 1.0,
                 orphan_seconds: float = ORPHAN_SECONDS):
        self.data = data
        self.store = store
        self.queue = queue if queue is not None else RunQueue(default_places())
        self.preview_digits = preview_digits
        self.preview_seconds = preview_seconds
        self.orphan_seconds = orphan_seconds

    def start(self, model_config: Any, train_config: TrainConfig, *, workspace: str | None,
              name: str | None = None, owner_alive: Callable[[], bool] | None = None) -> EmbeddedRun:
        trainer = Trainer(model_config, train_config, self.data())
        recorder = None
        if self.store is not None and workspace is not None:
            recorder = RunRecorder(self.store, workspace, name=name)
        return self._run(trainer, recorder, owner_alive)

    def resume(self, workspace: str, run_id: str, *,
               owner_alive: Callable[[], bool] | None = None) -> EmbeddedRun:
        if self.store is None:
            raise NoCheckpoint("runs are not saved on this server, so none can be resumed")
        trainer, recorder = trainer_from_store(self.store, workspace, run_id, self.data())
        return self._run(trainer, recorder, owner_alive)

    def attach(self, workspace: str, run_id: str, *,
               owner_alive: Callable[[], bool] | None = None) -> EmbeddedRun:
        raise LookupError("an embedded run lives in the browser session that started it; it cannot be followed "
                          "from elsewhere")

    def live_runs(self, workspace: str) -> list[str]:
        return []

    def load(self) -> EngineLoad:
        training, waiting = self.queue.counts()
        return EngineLoad(places=self.queue.places, training=training, waiting=waiting)

    def _run(self, trainer: Trainer, recorder: RunRecorder | None,
             owner_alive: Callable[[], bool] | None) -> EmbeddedRun:
        preview = self.data().val_images[:self.preview_digits]
        runner = EmbeddedRun(trainer, preview_images=preview, preview_seconds=self.preview_seconds, queue=self.queue,
                             owner_alive=owner_alive, orphan_seconds=self.orphan_seconds, recorder=recorder)
        runner.start()
        return runner


@dataclass(frozen=True)
class ChosenEngine:
    engine: RunEngine
    problem: str | None  # why the configured cluster is not used, for the caller to show; None when all is well


def parse_address(text: str) -> tuple[str, int]:
    """"HOST:PORT" -> (host, port); ValueError for anything else (a Ray Client "ray://" address included)."""
    host, colon, port = text.strip().rpartition(":")
    if not colon or not host or not port.isdigit() or "//" in host:
        raise ValueError(f"{RAY_ADDRESS_VARIABLE} must be the cluster head's HOST:PORT (what `ray start --head` "
                         f"prints after --address=), not {text!r}")
    return host.strip("[]"), int(port)


def cluster_problem(address: str, *, timeout: float = PROBE_SECONDS) -> str | None:
    """Why the cluster at `address` cannot be reached (a bad address, no answer), or None when its head takes a
    connection."""
    try:
        host, port = parse_address(address)
    except ValueError as error:
        return str(error)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except OSError as error:
        return f"the Ray cluster at {address} does not answer ({error.strerror or error})"


def engine_from_environment(data: Callable[[], MnistData], *, store: RunStore | None, queue: RunQueue | None = None,
                            preview_digits: int = PREVIEW_DIGITS, preview_seconds: float = 1.0,
                            orphan_seconds: float = ORPHAN_SECONDS,
                            environ: Mapping[str, str] | None = None) -> ChosenEngine:
    """Ray when CAE_RAY_ADDRESS is set and its cluster can be used, else the embedded engine; see ChosenEngine."""
    environ = os.environ if environ is None else environ
    embedded = EmbeddedEngine(data, store=store, queue=queue, preview_digits=preview_digits,
                              preview_seconds=preview_seconds, orphan_seconds=orphan_seconds)
    address = environ.get(RAY_ADDRESS_VARIABLE, "").strip()
    if not address:
        return ChosenEngine(embedded, None)
    if store is None:  # a run's model comes back from its worker through the store
        return ChosenEngine(embedded, f"{RAY_ADDRESS_VARIABLE} is set, but the run store cannot be opened, and runs "
                                      f"come back from the cluster through it; {FALLBACK}")
    problem = cluster_problem(address)
    if problem is not None:
        return ChosenEngine(embedded, f"{problem}; {FALLBACK}")
    try:
        from cae.engine import ray_engine  # ray is imported here, and only here
    except ImportError as error:
        return ChosenEngine(embedded, f"{RAY_ADDRESS_VARIABLE} is set, but ray cannot be imported ({error}): install "
                                      f"requirements-cluster.txt; {FALLBACK}")
    try:
        engine = ray_engine.RayEngine.connect(address, data, store=store, preview_digits=preview_digits,
                                              preview_seconds=preview_seconds, orphan_seconds=orphan_seconds)
    except ray_engine.ClusterUnavailable as error:
        return ChosenEngine(embedded, f"{error}; {FALLBACK}")
    return ChosenEngine(engine, None)
