"""A training run written to the run store as it happens (cae.engine.store), for cae.engine.runner's thread and
the command line.

`RunRecorder` turns a Trainer's progress into the store's rows: the run when it begins, its loss points, validation
checks and progress at most every `write_seconds` (one transaction a write, so training keeps its speed), a
checkpoint at each epoch's end, and its end with the reason and the last or final checkpoint. A store that cannot be
written stops the recording, never the training: the first StoreError is kept in `problem` (one message for the
page), and the run goes on in memory.
"""

from __future__ import annotations

import copy
import math
import sys
import time
from collections.abc import Callable
from typing import Any, TypeVar

from cae.engine.metrics import COMPARISON_DIGITS, comparison_scores
from cae.engine.store import (
    NewRun,
    Progress,
    RunStore,
    StoreError,
    end_reason_for,
    samples_by_step,
    step_rows,
    validation_rows,
)
from cae.engine.trainer import StopReason, Trainer
from cae.models.registry import type_of

WRITE_SECONDS = 1.0  # at most one write of loss points a second
HEARTBEAT_SECONDS = 20.0  # a paused or waiting run says it is alive (mark_interrupted_on_start waits 120 s)
# The key of a run's scores that holds its comparison scores (cae.engine.metrics.comparison_scores) with the digits
# and data source they were measured on: the Compare page reads them instead of scoring every run it shows.
COMPARISON_SCORES = "comparison"

_T = TypeVar("_T")


class RunRecorder:
    """Writes one Trainer's run into a workspace of a RunStore. Call from the thread that trains, between steps.

    With `run_id`, the recorder continues that run (Resume: the store's `reopen_run` has been called) instead of
    creating a new one."""

    def __init__(self, store: RunStore, workspace: str, *, name: str | None = None, run_id: str | None = None,
                 wall_before: float = 0.0, write_seconds: float = WRITE_SECONDS,
                 heartbeat_seconds: float = HEARTBEAT_SECONDS, clock: Callable[[], float] = time.monotonic):
        self.store = store
        self.workspace = workspace
        self.name = name
        self.run_id = run_id
        self.wall_before = wall_before  # seconds the run trained before it was resumed
        self.write_seconds = write_seconds
        self.heartbeat_seconds = heartbeat_seconds
        self.clock = clock
        self.pruned: list[Any] = []  # runs of the workspace pruned when this one was created (RunRecord)
        self.problem: str | None = None  # why nothing more is saved; None while saving works
        self._written_steps = 0  # loss points written so far
        self._written_checks = 0  # step of the last validation check written
        self._written_at = -float("inf")
        self._heard_at = -float("inf")
        self._epochs_saved: set[int] = set()
        self._samples_at: Callable[[int], int] | None = None
        self._digits: Callable[[int], int] | None = None
        self._ended = False
        self._state: str | None = None  # the live state last written

    @property
    def saving(self) -> bool:
        return self.problem is None and self.run_id is not None and not self._ended

    def _guard(self, work: Callable[[], _T]) -> _T | None:
        """The one place a store failure is caught: it stops the saving, says why once, and training goes on."""
        if self.problem is not None:
            return None
        try:
            return work()
        except StoreError as error:
            self.problem = f"{error}. Training goes on, but this run is no longer saved (download its model)."
            print(f"CAE Explorer: {self.problem}", file=sys.stderr)
            return None

    def begin(self, trainer: Trainer, *, state: str = "running") -> None:
        """Create the run (or take up the reopened one) with the trainer's configs; its steps so far are written."""
        self._samples_at = samples_by_step(len(trainer.train_images), trainer.config.batch_size)
        every, part = len(trainer.all_val_images), len(trainer.val_images)
        total = trainer.total_steps
        self._digits = lambda step: every if step == total else part
        self._written_steps = trainer.step_count
        self._written_checks = trainer.step_count
        self._epochs_saved = {epoch for epoch in range(1, trainer.step_count // trainer.steps_per_epoch + 1)}
        if self.run_id is not None:
            return

        def create() -> NewRun:
            return self.store.create_run(
                self.workspace, model_type=type_of(trainer.model_config).name,
                model_config=trainer.model_config, train_config=trainer.config, data_source=trainer.data_source,
                name=self.name, state=state, total_steps=trainer.total_steps)

        created = self._guard(create)
        if created is not None:
            self.run_id = created.id
            self.pruned = created.pruned
            self._heard_at = self.clock()

    def progress(self, trainer: Trainer, wall_seconds: float, *, state: str | None = None,
                 force: bool = False) -> None:
        """Write the steps and checks since the last write, if one is due (or `force`); and an epoch's checkpoint
        when the trainer has just ended an epoch."""
        if not self.saving:
            return
        now = self.clock()
        epoch_ended = trainer.step_count > 0 and trainer.step_count % trainer.steps_per_epoch == 0 \
            and trainer.step_count // trainer.steps_per_epoch not in self._epochs_saved
        if not (force or epoch_ended or now - self._written_at >= self.write_seconds):
            return
        history = trainer.history
        rows = step_rows(history, self._written_steps, samples_at=self._samples_at)
        checks = validation_rows(history, self._written_checks, trainer.steps_per_epoch, digits=self._digits)
        progress = Progress.from_history(history, steps=trainer.step_count,
                                         wall_seconds=self.wall_before + wall_seconds)

        def write() -> bool:
            self.store.append_steps(self.run_id, rows, validations=checks, progress=progress, state=state)
            return True

        if self._guard(write):
            self._written_steps = len(history.train_loss)
            self._written_checks = history.val_step[-1] if history.val_step else self._written_checks
            self._written_at = self._heard_at = now
            self._state = state or self._state
        if epoch_ended and trainer.stop_reason is None and trainer.step_count < trainer.total_steps:
            epoch = trainer.step_count // trainer.steps_per_epoch
            self._checkpoint(trainer, "epoch")
            self._epochs_saved.add(epoch)

    def heartbeat(self, state: str) -> None:
        """While paused or waiting: the run's state, and that its process is alive (at most every heartbeat_seconds,
        and at once when the state changes)."""
        if not self.saving:
            return
        now = self.clock()
        if now - self._heard_at < self.heartbeat_seconds and state == self._state:
            return

        def beat() -> bool:
            self.store.heartbeat(self.run_id, state=state)
            return True

        if self._guard(beat):
            self._heard_at = now
            self._state = state

    def _checkpoint(self, trainer: Trainer, kind: str) -> None:
        epoch = max(1, -(-trainer.step_count // trainer.steps_per_epoch))
        ckpt = trainer.checkpoint(training_state=kind != "final")  # epoch and last ones can be resumed from
        self._guard(lambda: self.store.add_checkpoint(self.run_id, ckpt, kind, step=trainer.step_count, epoch=epoch))

    def end(self, trainer: Trainer, wall_seconds: float, error: str | None = None) -> None:
        """The run has ended: its last steps, its checkpoint ("final" when it went to its end, "last" otherwise: a
        stopped run can be resumed from it) and its reason. A run that never took a step keeps no checkpoint."""
        if not self.saving:
            return
        self.progress(trainer, wall_seconds, force=True)
        if trainer.step_count > 0 and error is None:
            self._checkpoint(trainer, "final" if trainer.stop_reason is None else "last")
        reason = end_reason_for(trainer.stop_reason, error)
        message = error if error else _end_message(trainer)
        scores = _end_scores(trainer) if error is None else None
        progress = Progress.from_history(trainer.history, steps=trainer.step_count,
                                         wall_seconds=self.wall_before + wall_seconds)
        self._guard(lambda: self.store.end_run(self.run_id, reason, message, scores=scores, progress=progress))
        self._ended = True


def _end_scores(trainer: Trainer) -> dict[str, Any] | None:
    """The held-out MSE of the final weights (when the trainer measured it) and the comparison scores of the model
    the run ends with; non-finite values (a diverged run) are left out."""
    scores: dict[str, Any] = {}
    if trainer.final_mse is not None and math.isfinite(trainer.final_mse):
        scores["held_out_mse"] = trainer.final_mse
    if trainer.step_count > 0 and trainer.all_val_images is not None:
        model = copy.deepcopy(trainer.model)  # a page may be reading the trainer's own model (its mode) meanwhile
        measured = {key: value for key, value in comparison_scores(model, trainer.all_val_images).items()
                    if math.isfinite(value)}
        scores[COMPARISON_SCORES] = {"digits": min(len(trainer.all_val_images), COMPARISON_DIGITS),
                                     "data_source": trainer.data_source, "step": trainer.step_count, **measured}
    return scores or None


def _end_message(trainer: Trainer) -> str | None:
    """For people: None (the reason's own label) for a finished run, else what stopped it and where."""
    reason = trainer.stop_reason
    if reason is None:
        return None
    if reason is StopReason.SESSION_GONE:
        return f"stopped: tab closed (at step {trainer.step_count})"
    if reason in (StopReason.USER, StopReason.INTERRUPTED):
        return f"stopped at step {trainer.step_count}"
    return f"{reason.value} (step {trainer.step_count}): {trainer.stop_message}"
