"""The steppable trainer shared by the command line and the UI, with its run states and stop reasons.

`Trainer.step()` trains one batch and returns what happened as plain data; the command line calls it in a loop,
the training page calls it from `cae.engine.runner.TrainingRunner`'s thread. The trainer knows no model type: it
asks the model for its objective (cae.models.objective), records the terms it reports, and asks it what to advise
on a collapse.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from dataclasses import asdict, dataclass, field, replace
from enum import StrEnum
from typing import Any

import numpy as np
import torch

from cae.engine.checkpoint import Checkpoint
from cae.engine.data import MnistData
from cae.engine.metrics import as_batch, reconstruction_stats
from cae.engine.train_config import TrainConfig, pick_device, scheduled_lr
from cae.models.registry import build_model

_SEED_LOCK = threading.Lock()  # seeding the global RNG for weight init must not interleave between sessions
# A model whose reconstructions vary across digits less than this share of the digits' own variation gives the same
# picture for every digit. Checked at each validation from this step on: an untrained network's output is still
# nearly constant for its first few dozen steps.
COLLAPSE_SPREAD = 0.05
COLLAPSE_MIN_STEPS = 30


class StopReason(StrEnum):
    USER = "stopped by the user"
    DIVERGED = "the loss stopped being a finite number"
    COLLAPSED = "the model collapsed to one output for every digit"
    SESSION_GONE = "its browser session ended"
    INTERRUPTED = "interrupted from the keyboard"


class RunState(StrEnum):
    READY = "ready"  # made, not started
    WAITING = "waiting"  # for a place in the server's run queue
    RUNNING = "running"
    PAUSED = "paused"
    FINISHED = "finished"
    STOPPED = "stopped"
    FAILED = "failed"  # an exception inside the thread

    @property
    def live(self) -> bool:
        return self in (RunState.WAITING, RunState.RUNNING, RunState.PAUSED)


@dataclass
class History:
    """Metrics as plain lists, ready for a chart or a checkpoint."""

    train_loss: list[float] = field(default_factory=list)  # the objective's total, one per step
    terms: dict[str, list[float]] = field(default_factory=dict)  # each reported term per step, when there are 2+
    val_step: list[int] = field(default_factory=list)  # the step after which each validation ran
    val_mse: list[float] = field(default_factory=list)  # MSE per pixel on the validation digits, one per epoch
    samples_per_s: float = 0.0  # over the last 50 steps
    train_seconds: float = 0.0  # time spent in training steps, validation excluded
    samples: int = 0  # digits trained on so far, repeats counted

    def copy(self) -> History:
        return replace(self, train_loss=list(self.train_loss), val_step=list(self.val_step),
                       val_mse=list(self.val_mse), terms={name: list(v) for name, v in self.terms.items()})


@dataclass(frozen=True)
class StepResult:
    step: int  # steps done so far
    epoch: int  # 0-based epoch of this step
    loss: float
    val_mse: float | None = None  # set when this step ended an epoch
    stop_reason: StopReason | None = None  # set when training cannot go on


class Trainer:
    """Trains one model one batch at a time; `finished` turns true after the last epoch or a stop."""

    def __init__(self, model_config: Any, train_config: TrainConfig, data: MnistData):
        self.model_config = model_config.validate()
        self.config = train_config.validate()
        self.data_source = data.source
        self.device = pick_device(train_config.device)
        with _SEED_LOCK, torch.random.fork_rng(devices=[]):
            torch.manual_seed(train_config.seed)
            self.model = build_model(model_config).to(self.device)
        if not self.model.USES_TRAINER_LOSS:  # record what the objective really uses, not a setting it ignores
            self.config = replace(self.config, loss=self.model.OBJECTIVE_LOSS)
        self.generator = torch.Generator().manual_seed(train_config.seed)  # subset and shuffles
        self.noise_generator = torch.Generator(self.device).manual_seed(train_config.seed + 1)  # the objective's
        self.model.draw_dropout_from(self.noise_generator)  # not torch's global one, which other runs share
        train = data.train_images
        if 0 < train_config.train_subset < len(train):
            train = train[torch.randperm(len(train), generator=self.generator)[:train_config.train_subset]]
        self.train_images = train.to(self.device)  # uint8, converted batch by batch
        # Each epoch's check: all validation digits, or the first val_subset (a short run on the page validates
        # several times). The last epoch's check is over every validation digit: with the final weights, it is the
        # finished run's score (final_mse), which the page then shows without scoring the model a second time.
        self.all_val_images = data.val_images.to(self.device)
        self.held_out = (len(data.val_images), data.val_name)  # what the score is measured on, for its checkpoint
        self.val_images = self.all_val_images[:train_config.val_subset or None]  # a view: one copy on the device
        self.steps_per_epoch = math.ceil(len(train) / train_config.batch_size)
        self.total_steps = self.steps_per_epoch * train_config.epochs
        self.optimizer = self._make_optimizer()
        self.history = History()
        self.step_count = 0
        self.stop_reason: StopReason | None = None
        self.stop_message: str | None = None  # what happened and what to try, for people
        self._order = torch.empty(0, dtype=torch.long)
        self._recent = deque(maxlen=50)  # (seconds, samples) of recent steps, for samples/s
        self._last_good = [p.detach().clone() for p in self.model.parameters()]

    def _make_optimizer(self) -> torch.optim.Optimizer:
        params = self.model.parameters()
        if self.config.optimizer == "sgd":
            return torch.optim.SGD(params, lr=self.config.learning_rate, momentum=self.config.momentum)
        return torch.optim.Adam(params, lr=self.config.learning_rate)

    @property
    def final_mse(self) -> float | None:
        """The last epoch's check, over every validation digit with the final weights: the run's score once it has
        gone to its end (None before, and for a run stopped early)."""
        return self.history.val_mse[-1] if self.history.val_step[-1:] == [self.total_steps] else None

    @property
    def epoch(self) -> int:
        return min(self.step_count // self.steps_per_epoch, self.config.epochs)

    @property
    def finished(self) -> bool:
        return self.stop_reason is not None or self.step_count >= self.total_steps

    @property
    def loss_label(self) -> str:
        return self.model.loss_label(self.config.loss)

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
        objective = self.model.objective(x, loss=self.config.loss, generator=self.noise_generator)  # 3. forward
        value = objective.total.item()
        if not math.isfinite(value):  # 4. give up on a non-finite loss, keeping the last weights that were finite
            return self._stop_for_divergence(value)
        for good, param in zip(self._last_good, self.model.parameters()):
            good.copy_(param.detach())
        self.optimizer.zero_grad(set_to_none=True)  # 5. backward and update
        objective.total.backward()
        self.optimizer.step()
        self.step_count += 1
        self._record(value, objective.values() if len(objective.terms) > 1 else {})
        self._count_speed(time.perf_counter() - start, len(x))
        val = None
        if self.step_count % self.steps_per_epoch == 0:  # 6. validation at the end of each epoch
            last = self.step_count == self.total_steps
            val = self.validate(self.all_val_images if last else self.val_images)
            self.history.val_step.append(self.step_count)
            self.history.val_mse.append(val)
        return StepResult(self.step_count, (self.step_count - 1) // self.steps_per_epoch, value, val_mse=val,
                          stop_reason=self.stop_reason)

    def _record(self, total: float, terms: dict[str, float]) -> None:
        self.history.train_loss.append(total)
        for name, value in terms.items():
            self.history.terms.setdefault(name, []).append(value)

    def _count_speed(self, seconds: float, samples: int) -> None:
        self._recent.append((seconds, samples))
        self.history.train_seconds += seconds
        self.history.samples += samples
        self.history.samples_per_s = sum(n for _, n in self._recent) / max(sum(s for s, _ in self._recent), 1e-9)

    def _stop_for_divergence(self, value: float) -> StepResult:
        with torch.no_grad():
            for good, param in zip(self._last_good, self.model.parameters()):
                param.copy_(good)
        self.stop(StopReason.DIVERGED,
                  f"the loss became {value} at step {self.step_count + 1}; training stopped and the weights that "
                  f"last gave a finite loss were put back. Try a smaller learning rate.")
        return StepResult(self.step_count, self.epoch, value, stop_reason=self.stop_reason)

    def validate(self, images: torch.Tensor) -> float:
        """MSE per pixel on these validation digits; stops the run if the model has collapsed (see COLLAPSE_SPREAD)."""
        stats = reconstruction_stats(self.model, images)
        if self.step_count >= COLLAPSE_MIN_STEPS and stats.spread_ratio < COLLAPSE_SPREAD and self.stop_reason is None:
            # Set here, not through stop(): after the last step the run counts as finished, and stop() would ignore a
            # collapse that the last epoch's check finds.
            self.stop_reason = StopReason.COLLAPSED
            self.stop_message = (f"after {self.step_count} steps the model gives nearly the same picture for every "
                                 f"digit (its outputs vary {stats.spread_ratio:.1%} as much as the digits do; "
                                 f"validation MSE {stats.mse:.3f}, about what one fixed blurry or blank picture "
                                 f"scores). " + self.model.collapse_advice(self.config))
        return stats.mse

    def stop(self, reason: StopReason = StopReason.USER, message: str | None = None) -> None:
        if not self.finished:
            self.stop_reason = reason
            self.stop_message = message or reason.value

    def release(self) -> None:
        """Drop the training data copy and the optimizer's state once nobody will train this model again."""
        self.train_images = self.val_images = self.all_val_images = None
        self.optimizer.state.clear()
        self._last_good = []

    def filters(self) -> dict[str, np.ndarray]:
        """The encoder's kernels: conv1 (32, 5, 5) and conv2 (32 out, 32 in, 5, 5), copied to numpy."""
        kernels = self.model.encoder_kernels()
        return {"conv1": kernels["conv1"].detach()[:, 0].cpu().numpy().copy(),
                "conv2": kernels["conv2"].detach().cpu().numpy().copy()}

    def training_state(self) -> dict[str, Any]:
        """What Resume needs beyond the weights and the history: the step count, the optimizer's state, the random
        generators' states and this epoch's order of digits (tensors and plain data: loadable with weights_only)."""
        return {"step": self.step_count, "optimizer": self.optimizer.state_dict(),
                "generator": self.generator.get_state(), "noise_generator": self.noise_generator.get_state(),
                "order": self._order.cpu().clone()}

    @classmethod
    def resumed(cls, ckpt: Checkpoint, data: MnistData) -> Trainer:
        """A trainer that goes on from a checkpoint with a training state (Checkpoint.training_state) as if it had
        never stopped: same weights, optimizer state, step, history and random generators. ValueError without one."""
        state = ckpt.training_state
        if not state or ckpt.train_config is None:
            raise ValueError("this checkpoint has no training state to resume from (a model file, not a run's)")
        trainer = cls(ckpt.model_config, ckpt.train_config, data)
        trainer.model.load_state_dict(ckpt.state_dict)
        trainer.optimizer.load_state_dict(state["optimizer"])
        trainer.generator.set_state(state["generator"])
        trainer.noise_generator.set_state(state["noise_generator"])
        trainer._order = state["order"].to(trainer.device)
        trainer.step_count = int(state["step"])
        fields = {name: value for name, value in ckpt.history.items() if name in History.__dataclass_fields__}
        trainer.history = History(**fields).copy()
        trainer._last_good = [p.detach().clone() for p in trainer.model.parameters()]
        return trainer

    def checkpoint(self, *, training_state: bool = False) -> Checkpoint:
        """The current model with its configs and history; with its score once the run has one (final_mse); with
        `training_state`, also what Resume needs (training_state())."""
        ckpt = Checkpoint(
            model_config=self.model_config, train_config=self.config,
            state_dict={k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()},
            history=asdict(self.history), data_source=self.data_source,
            metrics={"val_mse": self.history.val_mse[-1] if self.history.val_mse else None,
                     "steps": self.step_count, "total_steps": self.total_steps, "stop_reason": self.stop_message},
            training_state=self.training_state() if training_state else None,
        )
        if self.final_mse is not None:
            ckpt.record_score(self.final_mse, *self.held_out)
        return ckpt
