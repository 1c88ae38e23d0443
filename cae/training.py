"""The steppable trainer shared by the command line and the UI, and a background runner with pause and stop.

`Trainer.step()` trains one batch and returns what happened as plain data; the command line calls it in a loop,
the training page calls it from `TrainingRunner`'s thread and draws the snapshots that thread publishes.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace

import numpy as np
import torch
import torch.nn.functional as F

from cae.config import check_choice, check_range
from cae.data import MnistData
from cae.metrics import as_batch, model_mse, reconstruct
from cae.registry import build_model

OPTIMIZERS = ("adam", "sgd")
LOSSES = ("mse", "bce")
SCHEDULES = ("constant", "cosine")
DEVICES = ("auto", "cpu", "cuda", "mps")
_SEED_LOCK = threading.Lock()  # seeding the global RNG for weight init must not interleave between sessions


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 5
    batch_size: int = 128
    learning_rate: float = 1e-3
    optimizer: str = "adam"  # "adam" or "sgd" (with momentum)
    momentum: float = 0.9  # SGD only
    loss: str = "mse"  # "mse" or "bce" (binary cross-entropy); validation is always MSE per pixel
    schedule: str = "constant"  # learning rate "constant", or "cosine" decay to zero over the run
    train_subset: int = 0  # train on this many digits (a seeded random subset); 0 = all
    seed: int = 0
    device: str = "auto"  # "auto": CUDA, else MPS, else CPU

    RANGES = {"epochs": (1, 500), "batch_size": (1, 4096), "learning_rate": (1e-6, 10.0),
              "momentum": (0.0, 0.999), "train_subset": (0, 10_000_000), "seed": (0, 2**31 - 1)}

    def validate(self) -> "TrainConfig":
        for name in ("epochs", "batch_size", "train_subset", "seed"):
            check_range(name, getattr(self, name), *self.RANGES[name], integer=True)
        check_range("learning_rate", self.learning_rate, *self.RANGES["learning_rate"])
        check_range("momentum", self.momentum, *self.RANGES["momentum"])
        check_choice("optimizer", self.optimizer, OPTIMIZERS)
        check_choice("loss", self.loss, LOSSES)
        check_choice("schedule", self.schedule, SCHEDULES)
        check_choice("device", self.device, DEVICES)
        return self


def pick_device(name: str = "auto") -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    return torch.device(name)


def scheduled_lr(config: TrainConfig, step: int, total_steps: int) -> float:
    if config.schedule == "cosine":
        return config.learning_rate * 0.5 * (1 + math.cos(math.pi * min(step / max(total_steps, 1), 1.0)))
    return config.learning_rate


@dataclass
class History:
    """Metrics as plain lists, ready for a chart or a checkpoint."""

    train_loss: list[float] = field(default_factory=list)  # one per step, in the training loss's own units
    val_step: list[int] = field(default_factory=list)  # the step after which each validation ran
    val_mse: list[float] = field(default_factory=list)  # MSE per pixel on the validation digits, one per epoch
    samples_per_s: float = 0.0  # over the last 50 steps
    train_seconds: float = 0.0  # time spent in training steps, validation excluded
    samples: int = 0  # digits trained on so far, repeats counted


@dataclass(frozen=True)
class StepResult:
    step: int  # steps done so far
    epoch: int  # 0-based epoch of this step
    loss: float
    val_mse: float | None = None  # set when this step ended an epoch
    stop_reason: str | None = None  # set when training cannot go on (a loss that is not finite)


class Trainer:
    """Trains one model one batch at a time; `finished` turns true after the last epoch or a stop."""

    def __init__(self, model_config, train_config: TrainConfig, data: MnistData, *, model_type: str = "cae"):
        self.model_type = model_type
        self.model_config = model_config.validate()
        self.config = train_config.validate()
        self.data_source = data.source
        self.device = pick_device(train_config.device)
        with _SEED_LOCK, torch.random.fork_rng(devices=[]):
            torch.manual_seed(train_config.seed)
            self.model = build_model(model_type, model_config).to(self.device)
        self.generator = torch.Generator().manual_seed(train_config.seed)
        train = data.train_images
        if 0 < train_config.train_subset < len(train):
            train = train[torch.randperm(len(train), generator=self.generator)[:train_config.train_subset]]
        self.train_images = train.to(self.device)  # uint8, converted batch by batch
        self.val_images = data.val_images.to(self.device)
        self.steps_per_epoch = math.ceil(len(train) / train_config.batch_size)
        self.total_steps = self.steps_per_epoch * train_config.epochs
        self.optimizer = self._make_optimizer()
        self.history = History()
        self.step_count = 0
        self.stop_reason: str | None = None
        self._order = torch.empty(0, dtype=torch.long)
        self._recent = deque(maxlen=50)  # (seconds, samples) of recent steps, for samples/s
        self._last_good = [p.detach().clone() for p in self.model.parameters()]

    def _make_optimizer(self) -> torch.optim.Optimizer:
        params, c = self.model.parameters(), self.config
        if c.optimizer == "sgd":
            return torch.optim.SGD(params, lr=c.learning_rate, momentum=c.momentum)
        return torch.optim.Adam(params, lr=c.learning_rate)

    @property
    def epoch(self) -> int:
        return min(self.step_count // self.steps_per_epoch, self.config.epochs)

    @property
    def finished(self) -> bool:
        return self.stop_reason is not None or self.step_count >= self.total_steps

    def _loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self.config.loss == "bce":
            return F.binary_cross_entropy(output, target)
        return F.mse_loss(output, target)

    def step(self) -> StepResult:
        """Train one batch; at the end of an epoch also measure the validation MSE."""
        if self.finished:
            raise RuntimeError("training has finished; build a new Trainer to train again")
        start = time.perf_counter()
        within = self.step_count % self.steps_per_epoch
        if within == 0:  # 1. a fresh, seeded shuffle each epoch
            self._order = torch.randperm(len(self.train_images), generator=self.generator).to(self.device)
        size = self.config.batch_size
        x = as_batch(self.train_images[self._order[within * size:(within + 1) * size]], self.device)
        for group in self.optimizer.param_groups:  # 2. the learning rate for this step
            group["lr"] = scheduled_lr(self.config, self.step_count, self.total_steps)
        self.model.train()
        loss = self._loss(self.model(x), x)  # 3. forward
        value = loss.item()
        if not math.isfinite(value):  # 4. give up on a non-finite loss, keeping the last weights that were finite
            return self._stop_for(value)
        for good, param in zip(self._last_good, self.model.parameters()):
            good.copy_(param.detach())
        self.optimizer.zero_grad(set_to_none=True)  # 5. backward and update
        loss.backward()
        self.optimizer.step()
        self.step_count += 1
        self.history.train_loss.append(value)
        self._count_speed(time.perf_counter() - start, len(x))
        val = None
        if self.step_count % self.steps_per_epoch == 0:  # 6. validation at the end of each epoch
            val = self.validate()
            self.history.val_step.append(self.step_count)
            self.history.val_mse.append(val)
        return StepResult(self.step_count, (self.step_count - 1) // self.steps_per_epoch, value, val_mse=val)

    def _count_speed(self, seconds: float, samples: int) -> None:
        self._recent.append((seconds, samples))
        self.history.train_seconds += seconds
        self.history.samples += samples
        self.history.samples_per_s = sum(n for _, n in self._recent) / max(sum(s for s, _ in self._recent), 1e-9)

    def _stop_for(self, value: float) -> StepResult:
        with torch.no_grad():
            for good, param in zip(self._last_good, self.model.parameters()):
                param.copy_(good)
        self.stop_reason = (f"the loss became {value} at step {self.step_count + 1}; training stopped and the "
                            f"weights that last gave a finite loss were put back. Try a smaller learning rate.")
        return StepResult(self.step_count, self.epoch, value, stop_reason=self.stop_reason)

    def validate(self) -> float:
        return model_mse(self.model, self.val_images)

    def stop(self, reason: str = "stopped by the user") -> None:
        if not self.finished:
            self.stop_reason = reason

    def filters(self) -> dict[str, np.ndarray]:
        """The encoder's kernels: conv1 (32, 5, 5) and conv2 (32 out, 32 in, 5, 5), copied to numpy."""
        return {"conv1": self.model.conv1.weight.detach()[:, 0].cpu().numpy().copy(),
                "conv2": self.model.conv2.weight.detach().cpu().numpy().copy()}

    def checkpoint(self):
        """The current model with its configs and history, as a Checkpoint (see cae.checkpoint)."""
        from cae.checkpoint import Checkpoint  # here: checkpoint imports this module for TrainConfig

        return Checkpoint(
            model_type=self.model_type, model_config=asdict(self.model_config), train_config=asdict(self.config),
            state_dict={k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()},
            history=asdict(self.history), data_source=self.data_source,
            metrics={"val_mse": self.history.val_mse[-1] if self.history.val_mse else None,
                     "steps": self.step_count, "stop_reason": self.stop_reason},
        )


@dataclass(frozen=True)
class RunSnapshot:
    """A consistent copy of a run's progress, taken between two steps, for a page to draw."""

    state: str  # ready, running, paused, finished, stopped, failed
    step: int
    total_steps: int
    steps_per_epoch: int
    history: History
    filters: dict[str, np.ndarray]
    previews: np.ndarray | None  # reconstructions of the preview digits
    stop_reason: str | None
    error: str | None

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
    steps, and when it pauses or ends. (A page that waited for the step in flight, the epoch's validation
    included, left the live view dimmed as stale half of the time.) Reconstructions of `preview_images` are made by
    the thread itself, at most every `preview_seconds`: torch work from a second thread would start a second OpenMP
    team on the same cores (measured: ~10% of training speed).
    To read or change the trainer itself, do it inside `reading()`: the thread holds the lock for each step, and
    lets waiting readers in before its next one (a plain Lock is not fair: a reader waited 8 s while the thread
    re-took it step after step next to a busy Python thread).
    """

    def __init__(self, trainer: Trainer, *, preview_images: torch.Tensor | None = None,
                 preview_seconds: float = 1.0, publish_seconds: float = 0.25):
        self.trainer = trainer
        self.preview_images = preview_images
        self.preview_seconds = preview_seconds
        self.publish_seconds = publish_seconds
        self._previews: np.ndarray | None = None
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
        self._wall = 0.0  # seconds of running, counted by the thread; pauses excluded

    @property
    def state(self) -> str:
        """ready, running, paused, then finished, stopped or failed once the thread has ended (the last step's
        validation counts as running: a page that saw "finished" earlier would look for a model still in use)."""
        if self.error:
            return "failed"
        if self._thread is None:
            return "ready"
        if self.alive:
            return "running" if self._running.is_set() else "paused"
        return "stopped" if self.trainer.stop_reason else "finished"

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def wall_seconds(self) -> float:
        return self._wall

    def start(self) -> bool:
        """Start the thread; False (and nothing new) if it was started before."""
        with self._start_lock:
            if self._thread is not None:
                return False
            self._thread = threading.Thread(target=self._loop, name="cae-trainer", daemon=True)
            self._thread.start()
            return True

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
        """Under the lock: reconstruct the preview digits if they are due."""
        now = time.perf_counter()
        if self.preview_images is not None and (force or now - self._previews_at >= self.preview_seconds):
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
        t = self.trainer
        h = t.history
        self._published = RunSnapshot(
            state=self.state, step=t.step_count, total_steps=t.total_steps, steps_per_epoch=t.steps_per_epoch,
            history=replace(h, train_loss=list(h.train_loss), val_step=list(h.val_step), val_mse=list(h.val_mse)),
            filters=t.filters(), stop_reason=t.stop_reason, error=self.error, previews=self._previews)
        self._published_at = now

    def snapshot(self) -> RunSnapshot:
        """The run as last published, with its state now; made here only once, before the thread's first step."""
        if self._published is None:
            with self.reading():
                if self._published is None:
                    self._publish(force=True)
        return replace(self._published, state=self.state, error=self.error)

    def _loop(self) -> None:
        try:
            while True:
                if not self._running.is_set():
                    with self._lock:
                        self._publish(force=True)  # the page shows where it paused
                    self._running.wait()
                began = time.perf_counter()
                while self._readers:  # someone is waiting in reading(): let them in first
                    time.sleep(0.0005)
                with self._lock:
                    if self._stop.is_set() and not self.trainer.finished:
                        self.trainer.stop()
                        self._publish(force=True)
                    if self.trainer.finished:
                        return
                    self.trainer.step()
                    self._publish(force=self.trainer.finished)  # at the end: the final weights' reconstructions
                self._wall += time.perf_counter() - began
        except Exception as error:  # shown on the page: a thread's exception would otherwise vanish
            self.error = f"{type(error).__name__}: {error}"
