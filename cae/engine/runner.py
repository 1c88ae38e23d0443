"""A Trainer in a background thread: pause, resume and stop between steps, a place in the server's run queue,
and an end when the browser session that started it has gone.

The training page keeps one TrainingRunner per browser session and draws the snapshots its thread publishes.
How long a closed tab's run waits for the tab to come back is a hosting setting: CAE_ORPHAN_SECONDS (default 45),
read once when the server imports this module.
"""

from __future__ import annotations

import math
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace

import numpy as np
import torch

from cae.engine.metrics import reconstruct
from cae.engine.recording import RunRecorder
from cae.engine.run_queue import RunQueue
from cae.engine.trainer import History, RunState, StopReason, Trainer

ORPHAN_SECONDS_VARIABLE = "CAE_ORPHAN_SECONDS"
DEFAULT_ORPHAN_SECONDS = 45.0  # a reconnecting tab (a network blip, a laptop lid) comes back well within this
OWNER_CHECK_SECONDS = 1.0


def orphan_seconds_from_environment() -> float:
    """CAE_ORPHAN_SECONDS if set to a number of seconds (0 or more), else 45; ValueError for anything else."""
    text = os.environ.get(ORPHAN_SECONDS_VARIABLE, "").strip()
    if not text:
        return DEFAULT_ORPHAN_SECONDS
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"{ORPHAN_SECONDS_VARIABLE} must be a number of seconds, 0 or more, got {text!r}")
    return seconds


def orphan_seconds_or_default() -> float:
    """The grace from the environment; a bad value is said in the server's log and the default used (a page that
    failed to import would take the whole Train page down with it)."""
    try:
        return orphan_seconds_from_environment()
    except ValueError as error:
        print(f"CAE Explorer: {error}; using {DEFAULT_ORPHAN_SECONDS:g} s instead", file=sys.stderr)
        return DEFAULT_ORPHAN_SECONDS


ORPHAN_SECONDS = orphan_seconds_or_default()  # a run whose session has been gone this long stops


@dataclass(frozen=True)
class RunSnapshot:
    """A consistent copy of a run's progress, taken between two steps, for a page to draw."""

    state: RunState
    step: int
    total_steps: int
    steps_per_epoch: int
    history: History
    filters: dict[str, np.ndarray]
    previews: np.ndarray | None  # reconstructions of the preview digits
    stop_reason: StopReason | None
    stop_message: str | None
    error: str | None
    runs_ahead: int = 0  # while waiting: runs in the queue before this one

    @property
    def epoch(self) -> int:
        return min(self.step // self.steps_per_epoch + 1, self.total_steps // self.steps_per_epoch)

    @property
    def seconds_left(self) -> float | None:
        if self.step == 0 or self.history.train_seconds == 0:
            return None
        return (self.total_steps - self.step) * self.history.train_seconds / self.step


class TrainingRunner:
    """Runs a Trainer in a daemon thread; pause, resume and stop take effect between steps.

    `snapshot()` never waits: the thread publishes a fresh copy of the run at most every `publish_seconds`, between
    steps, and when it pauses, waits or ends. (A page that waited for the step in flight, the epoch's validation
    included, left the live view dimmed as stale half of the time.) The filters and reconstructions of
    `preview_images` are made by the thread itself, at most every `preview_seconds`: torch work from a second thread
    would start a second OpenMP team on the same cores (measured: ~10% of training speed).
    To read or change the trainer itself, do it inside `reading()`: the thread holds the lock for each step, and
    lets waiting readers in before its next one (a plain Lock is not fair: a reader waited 8 s while the thread
    re-took it step after step next to a busy Python thread).
    With a `queue`, the thread trains only while it holds a place there; a paused run gives its place back. With
    `owner_alive`, asked at most every `owner_check_seconds`, the thread stops the run once that has answered
    False for `orphan_seconds`, and frees the training data: nobody is left to see the run.
    With a `recorder` (cae.engine.recording), the thread writes the run to the run store as it goes: its steps
    with the published snapshots (at most every second), a checkpoint at each epoch's end, a heartbeat while paused
    or waiting, and its end; a store that fails leaves the run training, with `store_problem` saying why.
    """

    def __init__(self, trainer: Trainer, *, preview_images: torch.Tensor | None = None,
                 preview_seconds: float = 1.0, publish_seconds: float = 0.25, queue: RunQueue | None = None,
                 owner_alive: Callable[[], bool] | None = None, orphan_seconds: float = ORPHAN_SECONDS,
                 owner_check_seconds: float = OWNER_CHECK_SECONDS, recorder: RunRecorder | None = None):
        self.trainer = trainer
        self.recorder = recorder
        self.preview_images = preview_images
        self.preview_seconds = preview_seconds
        self.publish_seconds = publish_seconds
        self.queue = queue
        self.owner_alive = owner_alive
        self.orphan_seconds = orphan_seconds
        self.owner_check_seconds = owner_check_seconds
        self._previews: np.ndarray | None = None
        self._filters: dict[str, np.ndarray] | None = None
        self._previews_at = -math.inf
        self._published: RunSnapshot | None = None  # the thread's latest copy; read-only for everyone
        self._published_at = -math.inf
        self._lock = threading.Lock()
        self._readers = 0  # threads waiting in reading(); the training thread gives way to them
        self._readers_guard = threading.Lock()
        self.error: str | None = None  # a crash inside the thread, with its type, for the page to show
        self._running = threading.Event()
        self._running.set()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._has_place = queue is None
        self._waiting = False
        self._parked = False  # the thread is in _wait_paused: no step in flight
        self._owner_checked_at = -math.inf
        self._owner_gone_since: float | None = None
        self._wall = 0.0  # seconds of running, counted by the thread; pauses and waits excluded

    @property
    def state(self) -> RunState:
        """The run's state; the last step's validation counts as running (a page that saw "finished" earlier
        would look for a model still in use), and so does the step in flight when Pause is pressed: a run is
        paused once its thread has stopped taking steps."""
        if self.error:
            return RunState.FAILED
        if self._thread is None:
            return RunState.READY
        if self.alive:
            if self._waiting:
                return RunState.WAITING
            return RunState.PAUSED if self._parked else RunState.RUNNING
        return RunState.STOPPED if self.trainer.stop_reason else RunState.FINISHED

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def wall_seconds(self) -> float:
        return self._wall

    @property
    def run_id(self) -> str | None:
        """The run's id in the run store, once the thread has created it there (None without a store)."""
        return None if self.recorder is None else self.recorder.run_id

    @property
    def store_problem(self) -> str | None:
        """Why this run is not (or no longer) saved in the run store; None while it is, or without a store."""
        return None if self.recorder is None else self.recorder.problem

    @property
    def runs_ahead(self) -> int:
        return self.queue.ahead_of(self) if self.queue is not None and self._waiting else 0

    def start(self) -> bool:
        """Start the thread; False (and nothing new) if it was started before."""
        with self._start_lock:
            if self._thread is not None:
                return False
            self._thread = threading.Thread(target=self._loop, name="cae-trainer", daemon=True)
            self._thread.start()
            return True

    @property
    def pause_requested(self) -> bool:
        """Pause was pressed (and not Resume since): true at once, while `state` says paused only once the thread
        has finished the step in flight."""
        return not self._running.is_set()

    def pause(self) -> None:
        self._running.clear()

    def resume(self) -> None:
        self._running.set()

    def stop(self) -> None:
        self._stop.set()
        self._running.set()  # wake a paused thread so it can see the stop

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def _refresh_previews(self, *, force: bool = False) -> None:
        """Under the lock: the filters and the preview digits' reconstructions, if they are due.

        Both change slowly; publishing them less often than the loss lets the live view leave their figures as
        they are in between (the browser redraws only what changed, and each redraw takes CPU from training)."""
        now = time.perf_counter()
        if force or self._filters is None or now - self._previews_at >= self.preview_seconds:
            self._filters = self.trainer.filters()
            if self.preview_images is not None:
                self._previews = reconstruct(self.trainer.model, self.preview_images)
            self._previews_at = now

    @contextmanager
    def reading(self) -> Iterator[Trainer]:
        """The trainer, held between two steps: read (or, in tests, change) it inside this block only."""
        with self._readers_guard:
            self._readers += 1
        try:
            with self._lock:
                yield self.trainer
        finally:
            with self._readers_guard:
                self._readers -= 1

    def _publish(self, *, force: bool = False) -> None:
        """Under the lock, between steps: copy the run for readers if a copy is due (previews first, if due)."""
        now = time.perf_counter()
        if not force and now - self._published_at < self.publish_seconds:
            return
        self._refresh_previews(force=force)
        trainer = self.trainer
        self._published = RunSnapshot(
            state=self.state, step=trainer.step_count, total_steps=trainer.total_steps,
            steps_per_epoch=trainer.steps_per_epoch, history=trainer.history.copy(), filters=self._filters,
            stop_reason=trainer.stop_reason, stop_message=trainer.stop_message, error=self.error,
            previews=self._previews)
        self._published_at = now

    def snapshot(self) -> RunSnapshot:
        """The run as last published, with its state now; made here only once, before the thread's first step."""
        if self._published is None:
            with self.reading():
                if self._published is None:
                    self._publish(force=True)
        return replace(self._published, state=self.state, error=self.error, runs_ahead=self.runs_ahead)

    def _owner_gone(self) -> bool:
        """True once `owner_alive` has said False for `orphan_seconds` (asked at most every `owner_check_seconds`)."""
        now = time.monotonic()
        if self.owner_alive is not None and now - self._owner_checked_at >= self.owner_check_seconds:
            self._owner_checked_at = now
            if self.owner_alive():
                self._owner_gone_since = None
            elif self._owner_gone_since is None:
                self._owner_gone_since = now
        return self._owner_gone_since is not None and now - self._owner_gone_since >= self.orphan_seconds

    def _should_end(self) -> bool:
        """Between steps: turn a stop request or a vanished owner into the trainer's stop; True when done."""
        with self._lock:
            if not self.trainer.finished:
                if self._owner_gone():
                    self.trainer.stop(StopReason.SESSION_GONE)
                elif self._stop.is_set():
                    self.trainer.stop(StopReason.USER)
            if self.trainer.finished:
                self._publish(force=True)
                return True
            return False

    def _give_back_place(self) -> None:
        """Its place, or its spot in the line if it was still waiting (the queue ignores a ticket it lacks)."""
        if self.queue is not None:
            self.queue.release(self)
            self._has_place = False

    def _wait_paused(self) -> None:
        """Paused: the place goes back to the queue; wake for resume, stop, or a check on the owner."""
        self._give_back_place()
        self._parked = True
        try:
            with self._lock:
                self._publish(force=True)  # the page shows where it paused
            self._heartbeat("paused")
            while not self._running.wait(self.owner_check_seconds) and not self._owner_gone():
                self._heartbeat("paused")
        finally:
            self._parked = False

    def _wait_for_place(self) -> None:
        self._waiting = True
        try:
            with self._lock:
                self._publish(force=True)
            self._heartbeat("waiting")
            self._has_place = self.queue.wait_for_place(self, give_up=self._give_up_waiting)
        finally:
            self._waiting = False

    def _give_up_waiting(self) -> bool:
        self._heartbeat("waiting")
        return self._stop.is_set() or self._owner_gone() or not self._running.is_set()

    def _heartbeat(self, state: str) -> None:
        if self.recorder is not None:
            self.recorder.heartbeat(state)

    def _step(self) -> None:
        began = time.perf_counter()
        while self._readers:  # someone is waiting in reading(): let them in first
            time.sleep(0.0005)
        with self._lock:
            if self.trainer.finished:  # stopped by a reader between the check and this step
                return
            self.trainer.step()
            self._publish(force=self.trainer.finished)  # at the end: the final weights' reconstructions
        self._wall += time.perf_counter() - began
        if self.recorder is not None:  # outside the lock: readers need not wait for the database
            self.recorder.progress(self.trainer, self._wall, state="running")

    def _loop(self) -> None:
        try:
            if self.recorder is not None:
                self.recorder.begin(self.trainer, state="running" if self._has_place else "waiting")
            while not self._should_end():
                if not self._running.is_set():
                    self._wait_paused()
                elif not self._has_place:
                    self._wait_for_place()
                else:
                    self._step()
        except Exception as error:  # shown on the page: a thread's exception would otherwise vanish
            self.error = f"{type(error).__name__}: {error}"
        finally:
            self._give_back_place()
            if self.recorder is not None:
                self.recorder.end(self.trainer, self._wall, self.error)
            if self.trainer.stop_reason is StopReason.SESSION_GONE:
                with self._lock:
                    self.trainer.release()
                    self.preview_images = None
