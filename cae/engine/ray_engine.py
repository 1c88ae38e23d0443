"""Runs on a Ray cluster (CAE_RAY_ADDRESS): one named, detached actor per run, behind cae.engine.engine's interface.

Each run is an actor holding one CPU (torch on one thread inside it) that wraps the unchanged Trainer and
TrainingRunner with a RunRecorder writing to the app's own run store, whose location the actor is given (the
database URL and the checkpoint folder; on several machines: a server database and a shared folder). The actor is
named after the run's id and detached, so it outlives the process that started it and a restarted app server finds
it again (`RayEngine.attach`). The store is where a run comes back from its worker: the app creates the run there
before the actor is scheduled (so its id names the actor), the actor takes it over and writes its steps,
checkpoints and end, and the app loads the model from the store's checkpoint.

`RayRun`, the handle, follows its actor from a thread of the app's process: it polls the actor (every POLL_SECONDS)
for what changed since its last poll (the loss points and checks since then; the filters and reconstructions only
when they changed), rebuilds the same RunSnapshot the embedded runner publishes, and turns Pause, Resume and Stop
into the actor's calls. Ray's scheduler is the queue: a run whose actor is not placed yet says it waits for a
worker. Pause gives the worker back: the actor writes the run's steps and a checkpoint with the training state,
then it is killed; Resume places a new actor that goes on from that checkpoint. A run ends in the store by its
actor's RunRecorder (the final checkpoint with it); its follower kills the actor once it has fetched the end, and
an actor nobody follows goes by itself LINGER_SECONDS later: an ended run holds no CPU.

Faults: an actor nobody has polled for the orphan time (CAE_ORPHAN_SECONDS; a page polls while its tab is
connected, a sweep while it waits) stops its run itself, keeping the model. A worker killed mid-run ends the run in
the store as "worker lost at step N", with the checkpoint of its last finished epoch, and Resume places it again.
Every node loads MNIST from its own data folder (CAE_DATA_DIR as `ray start` saw it); a node whose data is not the
app's fails the run with a sentence that says so. Ray 2.52+ token authentication: a cluster started with a token
refuses a driver without it, and ray.init() then retries for about 20 s and says only "Failed to connect"; `connect`
gives up after CONNECT_TRIES seconds and names the token (docs/cluster.md).
"""

from __future__ import annotations

import logging
import math
import os
import socket
import threading
import time
import traceback
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from enum import Enum
from pathlib import Path
from typing import Any

import ray
import torch
from ray.exceptions import ActorUnavailableError, AuthenticationError, GetTimeoutError, RayActorError
from sqlalchemy.engine import make_url

from cae.engine.checkpoint import Checkpoint
from cae.engine.data import DataError, MnistData, data_dir, load_mnist
from cae.engine.engine import EngineLoad, Worker, resumable_checkpoint, resumed_trainer
from cae.engine.recording import HEARTBEAT_SECONDS, RunRecorder
from cae.engine.runner import ORPHAN_SECONDS, RunSnapshot, TrainingRunner
from cae.engine.store import EndReason, NoCheckpoint, RunRecord, RunStore, StoreError
from cae.engine.train_config import TrainConfig
from cae.engine.trainer import History, RunState, StopReason, Trainer
from cae.models.config import config_from_dict
from cae.models.registry import make_config, type_of

NAMESPACE = "cae-explorer"  # the Ray namespace of every run's actor: their names are unique in it
ACTOR_PREFIX = "cae-run-"
POLL_SECONDS = 0.5  # the handle asks its actor for news this often (the Train page redraws every second)
POLL_GAP_SECONDS = 5.0  # the actor: a run polled this recently has someone following it
LINGER_SECONDS = 10.0  # an ended run's actor waits this long for its follower to fetch the end and kill it
PARK_SECONDS = 120.0  # Pause: the step in flight (an epoch's validation included) must end within this
NAME_FREE_SECONDS = 30.0  # Resume right after Pause: the killed actor's name is freed within this
# ray.init() tries to reach the head's GCS once a second, 20 times by default; a refused token looks the same as a
# head that is slow to start, so the connection gives up sooner (RAY_gcs_server_port_wait_time_s, unless set).
CONNECT_TRIES = 5
CONNECT_TRIES_VARIABLE = "RAY_gcs_server_port_wait_time_s"


class ClusterUnavailable(RuntimeError):
    """The cluster at CAE_RAY_ADDRESS cannot be used; the message says why, for people."""


def actor_name(run_id: str) -> str:
    """The name of the actor that trains this run: found again from the run's id alone."""
    return f"{ACTOR_PREFIX}{run_id}"


def _failure_chain(error: BaseException | None) -> Iterator[BaseException]:
    """The error and the errors it came from, outermost first."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        yield error
        error = error.__cause__ or error.__context__


def connect(address: str) -> None:
    """Connect this process to the cluster as a driver (once; later calls do nothing). ClusterUnavailable says why
    not, naming token authentication when that is the reason."""
    if ray.is_initialized():
        return
    token_help = ("set RAY_AUTH_MODE=token and the cluster's token (RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or "
                  "~/.ray/auth_token) in this server's environment: docs/cluster.md")
    tries_given = os.environ.get(CONNECT_TRIES_VARIABLE)
    os.environ[CONNECT_TRIES_VARIABLE] = tries_given or str(CONNECT_TRIES)
    try:
        ray.init(address=address, namespace=NAMESPACE, log_to_driver=False, logging_level=logging.WARNING)
    except AuthenticationError as error:  # RAY_AUTH_MODE=token here, and no token
        raise ClusterUnavailable(f"the Ray cluster at {address} needs a token and this server has none: "
                                 f"{token_help}") from error
    except Exception as error:  # the cluster's own words, whatever it refused
        told = " ".join(str(part) for part in _failure_chain(error))
        if "InvalidAuthToken" in told or "AuthenticationError" in told:
            raise ClusterUnavailable(f"the Ray cluster at {address} refused this server's token (token "
                                     f"authentication: none, or another than the cluster's): {token_help}") from error
        first = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise ClusterUnavailable(f"the Ray cluster at {address} answered but this server could not join it as a "
                                 f"driver ({first}; the same ray and Python versions are needed on both "
                                 f"sides)") from error
    finally:
        if tries_given is None:
            os.environ.pop(CONNECT_TRIES_VARIABLE, None)


@dataclass(frozen=True)
class StoreLocation:
    """Where the app's run store is, for a process on another machine: the database URL (with its password, when
    it has one) and the checkpoint folder, both absolute."""

    url: str
    root: str

    @classmethod
    def of(cls, store: RunStore) -> StoreLocation:
        url = store.engine.url
        if url.get_backend_name() == "sqlite" and url.database:  # relative to this process's folder otherwise
            url = url.set(database=str(Path(url.database).resolve()))
        return cls(url.render_as_string(hide_password=False), str(store.root.resolve()))

    def open(self) -> RunStore:
        return RunStore(self.url, root=self.root)

    def __repr__(self) -> str:  # Ray's logs and errors show an actor's arguments: never the password
        shown = make_url(self.url).render_as_string(hide_password=True)
        return f"StoreLocation(url={shown!r}, root={self.root!r})"


@dataclass(frozen=True)
class RunSpec:
    """What a run's actor needs to take up its run: the run in the store and the settings of the thread."""

    workspace: str
    run_id: str
    store: StoreLocation
    data_source: str  # the app's data source; the worker's must be the same
    model_config: Any | None  # a fresh run's configs; None: resume from the run's newest resumable checkpoint
    train_config: TrainConfig | None
    preview_digits: int
    preview_seconds: float
    orphan_seconds: float
    poll_gap_seconds: float = POLL_GAP_SECONDS
    linger_seconds: float = LINGER_SECONDS


# What a poll returns ----------------------------------------------------------------------------------------------

def history_delta(history: History, have_steps: int, have_checks: int) -> dict[str, Any]:
    """What a follower that holds the first `have_steps` loss points and `have_checks` checks lacks: the lists
    from where the two agree (`steps_from`, `checks_from`), and the running figures."""
    steps_from = min(have_steps, len(history.train_loss))
    checks_from = min(have_checks, len(history.val_step))
    return {"steps_from": steps_from, "train_loss": history.train_loss[steps_from:],
            "terms": {name: values[steps_from:] for name, values in history.terms.items()},
            "checks_from": checks_from, "val_step": history.val_step[checks_from:],
            "val_mse": history.val_mse[checks_from:], "samples_per_s": history.samples_per_s,
            "train_seconds": history.train_seconds, "samples": history.samples}


def apply_delta(history: History, delta: dict[str, Any]) -> History:
    """The follower's history with a delta (history_delta) applied: a new History, the old one left as it is."""
    steps_from, checks_from = delta["steps_from"], delta["checks_from"]
    names = set(history.terms) | set(delta["terms"])
    return History(
        train_loss=history.train_loss[:steps_from] + list(delta["train_loss"]),
        terms={name: history.terms.get(name, [])[:steps_from] + list(delta["terms"].get(name, []))
               for name in names},
        val_step=history.val_step[:checks_from] + list(delta["val_step"]),
        val_mse=history.val_mse[:checks_from] + list(delta["val_mse"]),
        samples_per_s=delta["samples_per_s"], train_seconds=delta["train_seconds"], samples=delta["samples"])


class _Versioned:
    """A value that changes now and then (the filters, the reconstructions), numbered so that a poll sends it only
    to a follower that has an older one."""

    def __init__(self):
        self.value: Any = None
        self.version = 0
        self._lock = threading.Lock()

    def offer(self, value: Any, have: int) -> tuple[int, Any] | None:
        """(version, value) if the follower's version `have` is older, else None. The runner publishes a new
        object whenever it makes the value again, so identity tells a change."""
        with self._lock:
            if value is not self.value:
                self.value = value
                self.version += 1
            return (self.version, value) if have != self.version else None


# The actor --------------------------------------------------------------------------------------------------------

class RunActor:
    """One run on a worker: made by Ray from a RunSpec (cae.engine.ray_engine's RayEngine), see the module docstring.

    Its constructor returns at once; a thread loads the data, takes the run up in the store and trains it in a
    TrainingRunner, so that polls are answered while the data loads. Methods may be called from several threads at
    once (the actor's max_concurrency)."""

    def __init__(self, spec: RunSpec):
        torch.set_num_threads(1)  # one CPU is what the actor holds; more threads would fight over it
        self.spec = spec
        self._polled_at = time.monotonic()
        self._runner: TrainingRunner | None = None
        self._store: RunStore | None = None
        self._failure: str | None = None
        self._stop_requested = False
        self._filters = _Versioned()
        self._previews = _Versioned()
        node = ray.get_runtime_context().get_node_id()
        self._where = {"pid": os.getpid(), "host": socket.gethostname(), "node": node}
        threading.Thread(target=self._run, name="cae-run", daemon=True).start()

    def _polled_recently(self) -> bool:
        return time.monotonic() - self._polled_at < self.spec.poll_gap_seconds

    def _take_up(self) -> TrainingRunner:
        """Load this node's data, check it is the app's, and make the runner of the run (fresh, or resumed)."""
        spec = self.spec
        self._store = store = spec.store.open()
        data = load_mnist()
        if data.source != spec.data_source:
            raise DataError(f"worker {socket.gethostname()} has {data.describe()} in {data_dir().resolve()}, and this "
                            f"run trains on {spec.data_source}: import the same data on every node (python -m "
                            f"cae.data import DIR, or CAE_DATA_DIR before `ray start`)")
        if spec.model_config is None:
            record = store.get_run(spec.workspace, spec.run_id)
            trainer = resumed_trainer(store, record, data)
            wall_before = record.wall_seconds
        else:
            trainer = Trainer(spec.model_config, spec.train_config, data)
            wall_before = 0.0
        store.reopen_run(spec.run_id, from_step=trainer.step_count)  # this process owns the run from now on
        recorder = RunRecorder(store, spec.workspace, run_id=spec.run_id, wall_before=wall_before)
        return TrainingRunner(trainer, preview_images=data.val_images[:spec.preview_digits],
                              preview_seconds=spec.preview_seconds, owner_alive=self._polled_recently,
                              orphan_seconds=spec.orphan_seconds, recorder=recorder)

    def _run(self) -> None:
        try:
            runner = self._take_up()
            self._runner = runner  # first: a Stop from now on reaches the runner itself
            if self._stop_requested:
                runner.stop()  # Stop while the data loaded: the run ends at once, as a waiting one does
            runner.start()
            runner.join()
        except Exception as error:  # the follower shows it, and the store keeps it
            self._failure = f"{type(error).__name__}: {error}"
            traceback.print_exc()
            if self._store is not None:
                try:
                    self._store.end_run(self.spec.run_id, EndReason.FAILED, f"failed on its worker: {self._failure}")
                except StoreError:
                    pass  # the follower ends it in the store when it can
        finally:
            # The run has ended, its model in the store. Its follower kills the actor once it has the last snapshot
            # (an actor that killed itself then could cut that answer off); without one, the actor goes by itself.
            time.sleep(self.spec.linger_seconds)
            ray.kill(ray.get_runtime_context().current_actor, no_restart=True)

    def poll(self, have: dict[str, int], keepalive: bool = True) -> dict[str, Any]:
        """What changed since the follower's `have` (steps, checks, filters, previews); `keepalive`: the follower's
        owner is there (an unpolled run stops after the orphan time)."""
        if keepalive:
            self._polled_at = time.monotonic()
        answer: dict[str, Any] = {"worker": self._where}
        if self._failure is not None:
            return {**answer, "phase": "failed", "error": self._failure}
        runner = self._runner
        if runner is None:
            return {**answer, "phase": "starting"}
        snap = runner.snapshot()
        return {**answer, "phase": "running", "state": snap.state.value, "step": snap.step,
                "total_steps": snap.total_steps, "steps_per_epoch": snap.steps_per_epoch,
                "stop_reason": None if snap.stop_reason is None else snap.stop_reason.name,
                "stop_message": snap.stop_message, "error": snap.error,
                "history": history_delta(snap.history, have.get("steps", 0), have.get("checks", 0)),
                "filters": self._filters.offer(snap.filters, have.get("filters", -1)),
                "previews": self._previews.offer(snap.previews, have.get("previews", -1)),
                "wall_seconds": runner.wall_seconds, "store_problem": runner.store_problem}

    def pause(self) -> None:
        if self._runner is not None:
            self._runner.pause()

    def resume(self) -> None:
        if self._runner is not None:
            self._runner.resume()

    def stop(self) -> None:
        self._stop_requested = True
        if self._runner is not None:
            self._runner.stop()

    def park(self) -> int | None:
        """Pause, then write the run's steps and a checkpoint with its training state: the step it paused at, after
        which the actor may be killed and the run resumed elsewhere. None when that cannot be done (not training
        yet, ended meanwhile, the store failing): the run then stays paused here."""
        runner = self._runner
        if runner is None or not runner.alive:
            return None
        runner.pause()
        deadline = time.monotonic() + PARK_SECONDS
        while runner.alive and runner.state is not RunState.PAUSED:
            if time.monotonic() > deadline:
                return None
            time.sleep(0.02)
        recorder = runner.recorder
        if not runner.alive or recorder is None or not recorder.saving:
            return None
        with runner.reading() as trainer:
            recorder.progress(trainer, runner.wall_seconds, state="paused", force=True)
            step = trainer.step_count
            if step > 0:
                epoch = max(1, math.ceil(step / trainer.steps_per_epoch))
                try:
                    recorder.store.add_checkpoint(recorder.run_id, trainer.checkpoint(training_state=True), "last",
                                                  step=step, epoch=epoch)
                except StoreError:
                    return None
        return None if recorder.problem else step


# The handle -------------------------------------------------------------------------------------------------------

# How the store's end reasons read as a trainer's stop reasons, for a run whose end the handle learns from the store.
STOP_REASONS = {EndReason.USER: StopReason.USER, EndReason.TAB_CLOSED: StopReason.SESSION_GONE,
                EndReason.INTERRUPTED: StopReason.INTERRUPTED, EndReason.DIVERGED: StopReason.DIVERGED,
                EndReason.COLLAPSED: StopReason.COLLAPSED}


class Phase(Enum):
    SUBMITTED = "submitted"  # the actor is asked for; no answer yet (Ray has not placed it, or it is starting)
    STARTING = "starting"  # the actor answers; its data loads
    LIVE = "live"  # its runner trains (or is paused in place)
    PARKED = "parked"  # paused with its worker given back: the run waits in the store for Resume
    ENDED = "ended"


class RayRun:
    """The handle of a run on the cluster (cae.engine.engine.RunHandle); made by RayEngine. A daemon thread
    follows the actor; the page's calls only set what is wanted and read what was last fetched."""

    def __init__(self, engine: RayEngine, *, workspace: str, run_id: str, trainer: Trainer,
                 owner_alive: Callable[[], bool] | None, actor: Any | None, phase: Phase, submitted_here: bool):
        self._engine = engine
        self.workspace = workspace
        self._run_id = run_id
        self._model_config = trainer.model_config
        self._train_config = trainer.config
        self._loss_label = trainer.loss_label
        self._term_labels = dict(trainer.model.TERMS)
        self._train_images = trainer.train_images
        preview = engine.data().val_images[:engine.preview_digits]
        placeholder = TrainingRunner(trainer, preview_images=preview).snapshot()  # the run as its actor will begin it
        self._published = replace(placeholder, state=RunState.WAITING)
        self._final: RunSnapshot | None = None
        self._owner_alive = owner_alive
        self._owner_gone_since: float | None = None
        self._actor = actor
        self._phase = phase
        self._submitted_here = submitted_here  # this handle asked for the actor: a death before any answer is a
        # failure to start, not a lost worker
        self._answered = False
        self._released = False  # let go: another handle follows the run now
        self._have_filters = -1
        self._have_previews = -1
        self._outstanding: Any | None = None
        self._parked_step = trainer.step_count
        self._pause_requested = False
        self._stop_requested = False
        self._stop_sent = False
        self._paused_in_place = False  # park failed: the actor stays, paused
        self._wall = 0.0
        self._store_problem: str | None = None
        self._notice: str | None = None
        self._worker: Worker | None = None
        self._heard_at = time.monotonic()
        self._ended = threading.Event()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._follow, name=f"cae-ray-{run_id}", daemon=True)
        self._thread.start()

    # What a page reads -------------------------------------------------------------------------------------------

    @property
    def run_id(self) -> str:
        return self._run_id

    @property
    def state(self) -> RunState:
        phase = self._phase
        if phase is Phase.ENDED:
            return self._final.state
        if phase is Phase.PARKED:
            return RunState.PAUSED
        if phase is Phase.LIVE and self._published.state is not RunState.READY:
            return self._published.state
        return RunState.WAITING

    @property
    def alive(self) -> bool:
        return self._phase is not Phase.ENDED

    @property
    def pause_requested(self) -> bool:
        return self._pause_requested

    @property
    def store_problem(self) -> str | None:
        return self._store_problem

    @property
    def wall_seconds(self) -> float:
        return self._wall

    @property
    def notice(self) -> str | None:
        if self._notice is not None:
            return self._notice
        if self._phase is Phase.SUBMITTED:
            return ("Waiting for a worker: the cluster starts the run as soon as one of its CPUs is free (a worker "
                    "takes a few seconds to start).")
        if self._phase is Phase.STARTING:
            return "Starting on a worker: its data loads."
        if self._phase is Phase.PARKED:
            return "Paused: its worker went back to the cluster; Resume asks for one again."
        return None

    @property
    def worker(self) -> Worker | None:
        """Where the run trains (or trained last)."""
        return self._worker

    @property
    def model_config(self) -> Any:
        return self._model_config

    @property
    def train_config(self) -> TrainConfig:
        return self._train_config

    @property
    def loss_label(self) -> str:
        return self._loss_label

    @property
    def term_labels(self) -> dict[str, str]:
        return dict(self._term_labels)

    def snapshot(self) -> RunSnapshot:
        if self._final is not None:
            return self._final
        return replace(self._published, state=self.state)

    def final_checkpoint(self) -> Checkpoint | None:
        """The run's model from the store (its final checkpoint, else its last one), without the training state."""
        if self._final is None or self._final.step == 0:
            return None
        try:
            return self._engine.store.load_checkpoint(self.workspace, self._run_id).without_training_state()
        except NoCheckpoint:
            return None

    def training_digits(self) -> torch.Tensor | None:
        return self._train_images

    # What a page asks for ----------------------------------------------------------------------------------------

    def pause(self) -> None:
        self._pause_requested = True
        self._wake.set()

    def resume(self) -> None:
        self._pause_requested = False
        self._wake.set()

    def stop(self) -> None:
        self._stop_requested = True
        self._pause_requested = False
        self._wake.set()

    def join(self, timeout: float | None = None) -> None:
        self._ended.wait(timeout)

    # The follower thread -----------------------------------------------------------------------------------------

    def owner_present(self) -> bool:
        """Whether the page that holds this handle is there now."""
        return self._owner_alive is None or bool(self._owner_alive())

    def let_go(self) -> None:
        """Stop following the run, leaving it as it is (another handle follows it now)."""
        self._released = True
        self._final = self.snapshot()
        self._outstanding = None
        self._actor = None  # never killed from here: the run goes on
        self._phase = Phase.ENDED
        self._ended.set()
        self._wake.set()

    def _follow(self) -> None:
        while self._phase is not Phase.ENDED and not self._released:
            began = time.monotonic()
            try:
                self._turn()
            except Exception as error:  # a follower that died silently would leave the page waiting for ever
                traceback.print_exc()
                self._end_here(RunState.FAILED, error=f"following the run failed: {type(error).__name__}: {error}")
                self._kill_actor()
            if self._phase is not Phase.ENDED:
                self._wake.wait(max(0.0, self._engine.poll_seconds - (time.monotonic() - began)))
                self._wake.clear()

    def _owner_here(self) -> bool:
        """Whether the owner is there now; tracks since when it has been gone."""
        here = self._owner_alive is None or self._owner_alive()
        if here:
            self._owner_gone_since = None
        elif self._owner_gone_since is None:
            self._owner_gone_since = time.monotonic()
        return here

    def _owner_gone_too_long(self) -> bool:
        gone = self._owner_gone_since
        return gone is not None and time.monotonic() - gone >= self._engine.orphan_seconds

    def _turn(self) -> None:
        """One round: act on what was asked for, then poll the actor (or look after a parked run)."""
        owner_here = self._owner_here()
        if self._phase is Phase.PARKED:
            self._look_after_parked()
            return
        if self._phase is Phase.SUBMITTED and not self._answered and self._cancel_unplaced():
            return
        if self._stop_requested and not self._stop_sent:
            self._actor.stop.remote()
            self._stop_sent = True
        if self._phase is Phase.LIVE and not self._stop_requested:
            if self._pause_requested and not self._paused_in_place:
                self._park()
                return
            if not self._pause_requested and self._paused_in_place:
                self._actor.resume.remote()
                self._paused_in_place = False
        self._poll(keepalive=owner_here)

    def _cancel_unplaced(self) -> bool:
        """A run whose actor has not answered yet: Stop, Pause or a gone owner act without it. True if acted."""
        if self._stop_requested:
            self._kill_actor()
            self._end_in_store(EndReason.USER, f"stopped at step {self._parked_step}")
            self._end_here(RunState.STOPPED, reason=StopReason.USER)
            return True
        if self._owner_gone_too_long():
            self._kill_actor()
            self._end_in_store(EndReason.TAB_CLOSED, f"stopped: tab closed (at step {self._parked_step})")
            self._end_here(RunState.STOPPED, reason=StopReason.SESSION_GONE)
            return True
        if self._pause_requested:
            self._kill_actor()
            self._reopen(state="paused")
            self._phase = Phase.PARKED
            return True
        self._heartbeat("waiting")
        return False

    def _look_after_parked(self) -> None:
        if self._stop_requested:
            self._end_in_store(EndReason.USER, f"stopped at step {self._parked_step}")
            self._end_here(RunState.STOPPED, reason=StopReason.USER)
        elif self._owner_gone_too_long():
            self._end_in_store(EndReason.TAB_CLOSED, f"stopped: tab closed (at step {self._parked_step})")
            self._end_here(RunState.STOPPED, reason=StopReason.SESSION_GONE)
        elif not self._pause_requested:
            fresh = (self._model_config, self._train_config) if self._parked_step == 0 else None  # no checkpoint
            self._reopen(state="waiting")  # before the actor takes the run over, never after
            self._actor = self._engine.place(self._engine.spec_for(self.workspace, self._run_id, fresh=fresh))
            self._phase = Phase.SUBMITTED
            self._submitted_here = True
            self._answered = False
        else:
            self._heartbeat("paused")

    def _park(self) -> None:
        """Pause with the worker given back (see RunActor.park); the run stays paused in place if that fails."""
        self._outstanding = None  # its answer, if it comes, is older than what is asked for below
        try:
            step = ray.get(self._actor.park.remote(), timeout=PARK_SECONDS + 10)
            if step is not None:
                self._take(ray.get(self._actor.poll.remote(self._have(), True), timeout=PARK_SECONDS))  # to the pause
        except GetTimeoutError:
            step = None
        except RayActorError as error:  # the worker died while it parked
            self._actor_died(error)
            return
        if step is None:
            self._paused_in_place = True
            return
        self._kill_actor()
        self._parked_step = step
        self._reopen(state="paused")
        self._phase = Phase.PARKED

    def _poll(self, *, keepalive: bool) -> None:
        if self._outstanding is None:
            self._outstanding = self._actor.poll.remote(self._have(), keepalive)
        ready, _ = ray.wait([self._outstanding], timeout=self._engine.poll_seconds)
        if not ready:
            return  # not placed yet, or busy: asked again next round
        reference, self._outstanding = self._outstanding, None
        try:
            answer = ray.get(reference)
        except ActorUnavailableError:
            return  # a network blip: the actor may come back
        except RayActorError as error:
            self._actor_died(error)
            return
        self._take(answer)

    def _have(self) -> dict[str, int]:
        """What this handle holds, for the actor to send only what it lacks."""
        history = self._published.history
        return {"steps": len(history.train_loss), "checks": len(history.val_step), "filters": self._have_filters,
                "previews": self._have_previews}

    def _take(self, answer: dict[str, Any]) -> None:
        self._answered = True
        self._heard_at = time.monotonic()
        self._worker = Worker(**answer["worker"])
        if answer["phase"] == "starting":
            self._phase = Phase.STARTING
            return
        if answer["phase"] == "failed":
            self._end_here(RunState.FAILED, error=answer["error"])
            self._kill_actor()
            return
        self._phase = Phase.LIVE
        filters, previews = answer["filters"], answer["previews"]
        if filters is not None:
            self._have_filters, filters = filters
        if previews is not None:
            self._have_previews, previews = previews
        snap = self._published
        self._published = RunSnapshot(
            state=RunState(answer["state"]), step=answer["step"], total_steps=answer["total_steps"],
            steps_per_epoch=answer["steps_per_epoch"], history=apply_delta(snap.history, answer["history"]),
            filters=snap.filters if filters is None else filters,
            previews=snap.previews if previews is None else previews,
            stop_reason=None if answer["stop_reason"] is None else StopReason[answer["stop_reason"]],
            stop_message=answer["stop_message"], error=answer["error"])
        self._wall = answer["wall_seconds"]
        self._store_problem = answer["store_problem"]
        if not self._published.state.live and self._published.state is not RunState.READY:
            self._final = self._published
            self._phase = Phase.ENDED
            self._ended.set()
            self._kill_actor()  # it would exit by itself after LINGER_SECONDS; its CPU is free now instead

    def _actor_died(self, error: RayActorError) -> None:
        """The actor is gone and this handle did not kill it: the store says whether its run ended first."""
        if self._released:
            return
        record = self._record()
        if record is not None and not record.live:  # it ended, and its actor exited before the last poll
            self._end_from_record(record)
            return
        if record is not None and record.state == "paused" and not self._pause_requested:
            self._notice = "Another page paused this run, and its worker went back to the cluster."
            self.let_go()  # that page holds the paused run; this one must not call it lost
            return
        cause = str(error).splitlines()[0]
        if self._submitted_here and not self._answered:
            message = f"the cluster could not start the run: {cause}"
            self._end_in_store(EndReason.FAILED, message)
            self._end_here(RunState.FAILED, error=message)
            return
        step = max(self._published.step, record.steps if record is not None else 0)
        message = f"worker lost at step {step}"
        self._end_in_store(EndReason.INTERRUPTED, message)
        kept = None if record is None else resumable_checkpoint(record)
        where = f" on {self._worker.host}" if self._worker is not None else ""
        self._notice = (f"The worker{where} was lost at step {step:,}. "
                        + ("Resume goes on from its last epoch's checkpoint "
                           f"(step {kept.step:,})." if kept is not None else "It had not finished an epoch, so "
                                                                            "Start trains it again."))
        self._end_here(RunState.STOPPED, reason=StopReason.INTERRUPTED, message=message)

    def _end_from_record(self, record: RunRecord) -> None:
        """The run ended and its actor went before this handle fetched the end: the end, and the steps since the
        last poll, from the store."""
        try:
            curve = self._engine.store.loss_curve(self.workspace, self._run_id)
            checks = self._engine.store.validations(self.workspace, self._run_id)
        except StoreError as error:
            self._store_problem = str(error)
            curve = None
        if curve is not None and curve.steps == list(range(1, record.steps + 1)):  # every step kept (not thinned)
            history = replace(self._published.history, train_loss=list(curve.loss),
                              terms={name: list(values) for name, values in curve.terms.items()},
                              val_step=[check.step for check in checks], val_mse=[check.val_mse for check in checks],
                              samples=record.samples, samples_per_s=record.samples_per_s)
            self._published = replace(self._published, step=record.steps, history=history)
        state = {"finished": RunState.FINISHED, "failed": RunState.FAILED}.get(record.state, RunState.STOPPED)
        reason = STOP_REASONS.get(record.end_reason)
        self._end_here(state, reason=reason, message=record.end_message if reason else None,
                       error=record.end_message if state is RunState.FAILED else None)

    def _end_here(self, state: RunState, *, reason: StopReason | None = None, message: str | None = None,
                  error: str | None = None) -> None:
        self._final = replace(self._published, state=state, stop_reason=reason,
                              stop_message=message or (reason.value if reason else None), error=error)
        self._phase = Phase.ENDED
        self._ended.set()

    # The store and the actor, from the app's side ----------------------------------------------------------------

    def _record(self) -> RunRecord | None:
        try:
            return self._engine.store.get_run(self.workspace, self._run_id)
        except StoreError as error:
            self._store_problem = str(error)
            return None

    def _end_in_store(self, reason: EndReason, message: str) -> None:
        """End the run in the store, unless it has ended there already (its actor got there first)."""
        if self._released:
            return
        record = self._record()
        if record is None or not record.live:
            return
        try:
            self._engine.store.end_run(self._run_id, reason, message)
        except StoreError as error:
            self._store_problem = str(error)

    def _reopen(self, *, state: str) -> None:
        """The run is this process's again (waiting for a worker, or parked): live in the store, at its step."""
        try:
            self._engine.store.reopen_run(self._run_id, from_step=self._parked_step, state=state)
        except StoreError as error:
            self._store_problem = str(error)
        self._heard_at = time.monotonic()

    def _heartbeat(self, state: str) -> None:
        if time.monotonic() - self._heard_at < HEARTBEAT_SECONDS:
            return
        try:
            self._engine.store.heartbeat(self._run_id, state=state)
        except StoreError as error:
            self._store_problem = str(error)
        self._heard_at = time.monotonic()

    def _kill_actor(self) -> None:
        self._outstanding = None
        if self._actor is not None:
            ray.kill(self._actor, no_restart=True)
            self._actor = None


# The engine -------------------------------------------------------------------------------------------------------

class RayEngine:
    """Runs on the cluster this process is connected to (`connect`), written to `store` (cae.engine.engine's
    RunEngine). `data` is the app's own data: a worker's must be the same, and the handles draw their first
    snapshot from it."""

    name = "ray"
    on_cluster = True

    def __init__(self, data: Callable[[], MnistData], *, store: RunStore, preview_digits: int = 8,
                 preview_seconds: float = 1.0, orphan_seconds: float = ORPHAN_SECONDS,
                 poll_seconds: float = POLL_SECONDS, poll_gap_seconds: float = POLL_GAP_SECONDS,
                 linger_seconds: float = LINGER_SECONDS):
        self.data = data
        self.store = store
        self.location = StoreLocation.of(store)
        self.preview_digits = preview_digits
        self.preview_seconds = preview_seconds
        self.orphan_seconds = orphan_seconds
        self.poll_seconds = poll_seconds
        self.poll_gap_seconds = poll_gap_seconds
        self.linger_seconds = linger_seconds
        self._actor_class = ray.remote(RunActor)
        self._handles: weakref.WeakSet[RayRun] = weakref.WeakSet()

    @classmethod
    def connect(cls, address: str, data: Callable[[], MnistData], *, store: RunStore, **settings: Any) -> RayEngine:
        """Connect to the cluster at `address` (see `connect`) and make the engine; ClusterUnavailable says why not."""
        connect(address)
        return cls(data, store=store, **settings)

    def spec_for(self, workspace: str, run_id: str, *, fresh: tuple[Any, TrainConfig] | None) -> RunSpec:
        """The actor's spec for a run: `fresh` (its configs) trains it from the start, None resumes it."""
        model_config, train_config = fresh if fresh is not None else (None, None)
        return RunSpec(workspace=workspace, run_id=run_id, store=self.location, data_source=self.data().source,
                       model_config=model_config, train_config=train_config, preview_digits=self.preview_digits,
                       preview_seconds=self.preview_seconds, orphan_seconds=self.orphan_seconds,
                       poll_gap_seconds=self.poll_gap_seconds, linger_seconds=self.linger_seconds)

    def place(self, spec: RunSpec) -> Any:
        """Ask the cluster for the run's actor (placed when a CPU is free). An actor killed a moment ago may still
        hold the name: asked again until it is freed."""
        deadline = time.monotonic() + NAME_FREE_SECONDS
        while True:
            try:
                return self._actor_class.options(
                    name=actor_name(spec.run_id), namespace=NAMESPACE, lifetime="detached", num_cpus=1,
                    max_concurrency=4, max_restarts=0).remote(spec)
            except ValueError:  # ActorAlreadyExistsError
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def start(self, model_config: Any, train_config: TrainConfig, *, workspace: str | None,
              name: str | None = None, owner_alive: Callable[[], bool] | None = None) -> RayRun:
        if workspace is None:
            raise ValueError("a run on the cluster needs a workspace: its model comes back through the run store")
        trainer = Trainer(model_config, train_config, self.data())  # checks the settings; the first snapshot
        created = self.store.create_run(
            workspace, model_type=type_of(trainer.model_config).name, model_config=trainer.model_config,
            train_config=trainer.config, data_source=trainer.data_source, name=name, state="waiting",
            total_steps=trainer.total_steps)
        try:
            actor = self.place(self.spec_for(workspace, created.id, fresh=(model_config, train_config)))
        except Exception as error:
            self.store.end_run(created.id, EndReason.FAILED, f"the cluster did not take the run: {error}")
            raise
        return self._follow(RayRun(self, workspace=workspace, run_id=created.id, trainer=trainer,
                                   owner_alive=owner_alive, actor=actor, phase=Phase.SUBMITTED, submitted_here=True))

    def resume(self, workspace: str, run_id: str, *, owner_alive: Callable[[], bool] | None = None) -> RayRun:
        record = self.store.get_run(workspace, run_id)
        if record.live:
            raise ValueError(f"run {record.name!r} is {record.state}: only a run that has ended can be resumed")
        trainer = resumed_trainer(self.store, record, self.data())
        self.store.reopen_run(run_id, from_step=trainer.step_count, state="waiting")
        actor = self.place(self.spec_for(workspace, run_id, fresh=None))
        return self._follow(RayRun(self, workspace=workspace, run_id=run_id, trainer=trainer, owner_alive=owner_alive,
                                   actor=actor, phase=Phase.SUBMITTED, submitted_here=True))

    def attach(self, workspace: str, run_id: str, *, owner_alive: Callable[[], bool] | None = None) -> RayRun:
        record = self.store.get_run(workspace, run_id)  # RunNotFound for a run of another workspace
        # Two followers of one run would each act on it (a Pause by one reads to the other as a lost worker): a
        # handle of this process whose page has gone (a reload) lets go; one whose page is open keeps it.
        for other in [handle for handle in list(self._handles) if handle.run_id == run_id and handle.alive]:
            if other.owner_present():
                raise LookupError(f"run {record.name!r} is shown in another open tab of this address: follow it "
                                  f"there")
            other.let_go()
        try:
            actor = ray.get_actor(actor_name(run_id), namespace=NAMESPACE)
        except ValueError:
            raise LookupError(f"run {record.name!r} is not training on the cluster ({record.status})") from None
        return self._follow(RayRun(self, workspace=workspace, run_id=run_id, trainer=self._trainer_for(record),
                                   owner_alive=owner_alive, actor=actor, phase=Phase.SUBMITTED,
                                   submitted_here=False))

    def live_runs(self, workspace: str) -> list[str]:
        try:
            named = {entry["name"] for entry in ray.util.list_named_actors(all_namespaces=True)
                     if entry["namespace"] == NAMESPACE}
        except Exception:  # the cluster gone after the start (Ray raises several kinds): nothing to follow now
            return []
        return [record.id for record in self.store.list_runs(workspace)
                if record.live and actor_name(record.id) in named]

    def load(self) -> EngineLoad:
        waiting = sum(1 for handle in list(self._handles) if handle.state is RunState.WAITING)
        try:
            places = int(ray.cluster_resources().get("CPU", 0))
            free = int(ray.available_resources().get("CPU", 0))
        except Exception as error:  # the cluster gone after the start: said in the page's server line
            return EngineLoad(places=0, training=0, waiting=waiting,
                              trained_by=f"The Ray cluster (not answering: {type(error).__name__})")
        return EngineLoad(places=places, training=max(0, places - free), waiting=waiting,
                          trained_by="The Ray cluster")

    def _trainer_for(self, record: RunRecord) -> Trainer:
        """The run as its actor took it up: at its newest resumable checkpoint, else from its settings."""
        if resumable_checkpoint(record) is not None:
            return resumed_trainer(self.store, record, self.data())
        model_config = make_config(record.model_type, record.model_config)
        return Trainer(model_config, config_from_dict(TrainConfig, record.train_config), self.data())

    def _follow(self, handle: RayRun) -> RayRun:
        self._handles.add(handle)
        return handle
