"""The trainer's settings (TrainConfig) and the small pure helpers that read them.

Apart from the trainer so that checkpoints can validate a stored TrainConfig without importing the trainer
(`checkpoint.py` and `trainer.py` once imported each other).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from cae.models.autoencoder import ModelConfig
from cae.models.config import ConfigError, check_choice, check_range

# name -> what it is, for people (the Train page's choices, help texts)
OPTIMIZERS = {"adam": "Adam", "sgd": "SGD with momentum"}
LOSSES = {"mse": "Mean squared error", "bce": "Binary cross-entropy"}
SCHEDULES = {"constant": "Constant", "cosine": "Cosine decay to zero"}
DEVICES = ("auto", "cpu", "cuda", "mps")


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 5
    batch_size: int = 128
    learning_rate: float = 1e-3
    optimizer: str = "adam"  # "adam" or "sgd" (with momentum)
    momentum: float = 0.9  # SGD only
    loss: str = "mse"  # reconstruction loss per pixel, "mse" or "bce"; a variational model has its own objective
    schedule: str = "constant"  # learning rate "constant", or "cosine" decay to zero over the run
    train_subset: int = 0  # train on this many digits (a seeded random subset); 0 = all
    val_subset: int = 0  # validate each epoch on the first this many validation digits; 0 = all
    seed: int = 0
    device: str = "auto"  # "auto": CUDA, else MPS, else CPU

    RANGES = {"epochs": (1, 500), "batch_size": (1, 4096), "learning_rate": (1e-6, 10.0),
              "momentum": (0.0, 0.999), "train_subset": (0, 10_000_000), "val_subset": (0, 10_000_000),
              "seed": (0, 2**31 - 1)}

    def validate(self) -> TrainConfig:
        for name in ("epochs", "batch_size", "train_subset", "val_subset", "seed"):
            check_range(name, getattr(self, name), *self.RANGES[name], integer=True)
        check_range("learning_rate", self.learning_rate, *self.RANGES["learning_rate"])
        check_range("momentum", self.momentum, *self.RANGES["momentum"])
        check_choice("optimizer", self.optimizer, OPTIMIZERS)
        check_choice("loss", self.loss, LOSSES)
        check_choice("schedule", self.schedule, SCHEDULES)
        check_choice("device", self.device, DEVICES)
        return self

    def describe(self) -> str:
        epochs = "1 epoch" if self.epochs == 1 else f"{self.epochs} epochs"
        return (f"{epochs}, {self.optimizer} lr {self.learning_rate:g} ({self.schedule}), "
                f"batch {self.batch_size}")


@dataclass(frozen=True)
class PageDefaults:
    """What a first Start on the Train page trains: every knob of the page starts from here (a model type's own
    knobs from its config's defaults), and the settings the page has no knob for are taken from `train` as they are.
    """

    model: ModelConfig  # its type is the page's first choice
    train: TrainConfig


# Chosen by measurement so that a first run beats PCA within 30 s on either data source (docs/benchmarks.md,
# "The Train page's defaults"). The first epochs check 1,000 validation digits; the last checks them all, and that
# check is the run's score (cae.engine.trainer). benchmarks/bench_browser.py times the same run.
PAGE_DEFAULTS = PageDefaults(
    model=ModelConfig(),
    train=TrainConfig(epochs=4, batch_size=64, learning_rate=3e-3, schedule="constant", train_subset=5000,
                      val_subset=1000))


def pick_device(name: str = "auto") -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r}: this machine has no CUDA GPU that torch can use; try --device auto")
    return device


def scheduled_lr(config: TrainConfig, step: int, total_steps: int) -> float:
    if config.schedule == "cosine":
        return config.learning_rate * 0.5 * (1 + math.cos(math.pi * min(step / max(total_steps, 1), 1.0)))
    return config.learning_rate
