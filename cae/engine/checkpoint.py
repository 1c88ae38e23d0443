"""Checkpoints: one file with the model type, configs, weights, history, data source and library versions.

Written atomically (a temporary file in the same folder, then a rename) so a crash never leaves half a file.
Read with `torch.load(..., weights_only=True)`, which never unpickles code, and checked field by field, so a
corrupt, truncated or foreign file raises CheckpointError and nothing else changes. In memory the configs are
typed (the model type's config dataclass, TrainConfig); on disk they are plain dicts. Version 1 files (written
before the model types) hold an autoencoder's config and load as such.

A model's score is its MSE per pixel on held-out digits, digits it never trained on (MNIST's 10,000 test digits,
or the offline sample's validation split), stored under SCORE with the digits named in "evaluated_on". Files
written before that name stored it as "test_mse", which loading renames.

A run that ended before its last planned step (stopped, diverged, its tab gone) says so in its description, with
the steps it made of those planned: from "total_steps" when the file holds it, else from its history (the first
epoch's check came after one epoch's steps).
"""

from __future__ import annotations

import io
import os
import platform
import tempfile
from dataclasses import asdict, dataclass, field, replace
from importlib import metadata
from pathlib import Path
from typing import Any, BinaryIO

import torch
from torch import nn

from cae.engine.train_config import TrainConfig
from cae.models.config import ConfigError, config_from_dict
from cae.models.registry import ModelType, build_model, make_config, model_type, type_of

FORMAT = "cae-explorer-checkpoint"
VERSION = 2  # 2: model types (cae, dae, vae); 1: the autoencoder alone, same fields
READABLE_VERSIONS = (1, 2)
SCORE = "held_out_mse"  # metrics key of the score (module docstring)
OLD_SCORE_NAMES = ("test_mse",)  # what files written before SCORE call it
NUMERIC_METRICS = (SCORE, *OLD_SCORE_NAMES, "val_mse", "pca_mse", "steps", "total_steps")


class CheckpointError(ValueError):
    """The file is not a usable CAE Explorer checkpoint; the message says why."""


def library_versions() -> dict[str, str]:
    """The versions a checkpoint records. torchvision's is its installed distribution's (without the build tag, such
    as "+cu130", that torchvision.__version__ adds): importing torchvision would take seconds, for this one string."""
    try:
        vision = metadata.version("torchvision")
    except metadata.PackageNotFoundError:
        vision = "not installed"
    return {"torch": str(torch.__version__), "torchvision": vision, "python": platform.python_version()}


@dataclass
class Checkpoint:
    model_config: Any  # the model type's config dataclass (cae.models.registry), which names the type
    state_dict: dict[str, torch.Tensor]
    train_config: TrainConfig | None = None  # None for weights from elsewhere
    history: dict[str, Any] = field(default_factory=dict)  # cae.engine.trainer.History as a dict
    data_source: str = ""  # cae.engine.data.FULL or SAMPLE
    # SCORE with "evaluated_on"; val_mse (the last epoch's check), pca_mse, steps (made), total_steps (planned),
    # stop_reason, wall_seconds
    metrics: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=library_versions)
    # For Resume, in a run store's epoch and last checkpoints only: the optimizer's state, the step count and the
    # random generators' states (cae.engine.trainer.Trainer.training_state); None in a model file.
    training_state: dict[str, Any] | None = None

    def without_training_state(self) -> Checkpoint:
        """The model file alone: a copy without the state that only Resume needs (the optimizer's is as large as
        the weights twice over)."""
        return replace(self, training_state=None)

    @property
    def kind(self) -> ModelType:
        return type_of(self.model_config)

    @property
    def model_type(self) -> str:
        return self.kind.name

    def build_model(self) -> nn.Module:
        """The network with these weights, on the CPU, in eval mode."""
        model = build_model(self.model_config)
        try:
            model.load_state_dict(self.state_dict)
        except RuntimeError as error:
            raise CheckpointError(f"the weights do not fit the {self.model_type!r} model: {error}") from error
        return model.eval()

    @property
    def held_out_mse(self) -> float | None:
        """The score: MSE per pixel on held-out digits (those named by `evaluated_on`), None if never scored."""
        return self.metrics.get(SCORE)

    @property
    def evaluated_on(self) -> str:
        """The held-out digits the score was measured on, for people: "10,000 test digits"."""
        return self.metrics.get("evaluated_on") or (
            "MNIST test digits" if self.data_source == "MNIST" else "validation digits")

    def record_score(self, mse: float, digits: int, name: str) -> None:
        """Store the score, measured on `digits` held-out digits that the data calls `name` ("test", ...)."""
        self.metrics[SCORE] = mse
        self.metrics["evaluated_on"] = f"{digits:,} {name} digits"

    def describe(self) -> str:
        """A few lines for people: type, settings, score and training."""
        score, last_check = self.held_out_mse, self.metrics.get("val_mse")
        lines = [f"{self.kind.title}: {self.model_config.describe()}"]
        if score is not None:
            lines.append(f"Held-out MSE per pixel {score:.4f} on {self.evaluated_on}")
        elif last_check is not None:  # never scored with its final weights (a run stopped early, outside the page)
            lines.append(f"MSE per pixel {last_check:.4f} at its last epoch's check")
        if self.train_config:
            lines.append(f"trained on {self.data_source or '?'}: {self.train_config.describe()}")
            ended_early = self.ended_early()
            if ended_early:
                lines.append(ended_early)
        return "  \n".join(lines)

    def ended_early(self) -> str | None:
        """'stopped after 37 of 312 steps (epoch 1 of 4)' for a run that ended before its last planned step; None
        for a run that went to its end, or one whose file does not say how far it went."""
        steps = self.metrics.get("steps")
        if not isinstance(steps, int):
            steps = len(self.history.get("train_loss") or [])
        epochs = self.train_config.epochs if self.train_config else 0
        if steps <= 0 or epochs <= 0:
            return None
        checked = [step for step in self.history.get("val_step") or [] if isinstance(step, int) and step > 0]
        total = self.metrics.get("total_steps")
        if not isinstance(total, int) and checked:
            total = checked[0] * epochs  # each epoch's check follows its last step
        if isinstance(total, int) and total > 0:
            if steps >= total:
                return None
            made = f"{steps:,} of {total:,} steps"
        elif self.metrics.get("stop_reason"):
            made = f"{steps:,} steps"
        else:
            return None  # how far it was meant to go is not known, and nothing says it stopped
        epochs_done = sum(step <= steps for step in checked)
        if checked and steps == checked[-1]:
            return f"stopped after {made} (at the end of epoch {epochs_done} of {epochs})"
        return f"stopped after {made} (epoch {min(epochs_done + 1, epochs)} of {epochs})"

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "version": VERSION, "model_type": self.model_type,
                "model_config": asdict(self.model_config),
                "train_config": None if self.train_config is None else asdict(self.train_config),
                "state_dict": self.state_dict, "history": self.history, "data_source": self.data_source,
                "metrics": self.metrics, "versions": self.versions,
                **({} if self.training_state is None else {"training_state": self.training_state})}


def to_bytes(checkpoint: Checkpoint) -> bytes:
    buffer = io.BytesIO()
    torch.save(checkpoint.to_dict(), buffer)
    return buffer.getvalue()


def save(checkpoint: Checkpoint, path: str | Path) -> Path:
    """Write atomically: readers see the old file or the whole new one, never a part."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = to_bytes(checkpoint)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(temporary, 0o644)  # mkstemp makes it owner-only; a checkpoint is an ordinary file
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def load(source: str | Path | bytes | BinaryIO, *, name: str | None = None) -> Checkpoint:
    """Read a checkpoint from a path, bytes or a file object; CheckpointError for anything unusable."""
    label = name or (str(source) if isinstance(source, (str, Path)) else "the file")
    if isinstance(source, bytes):
        source = io.BytesIO(source)
    try:
        raw = torch.load(source, map_location="cpu", weights_only=True)
    except FileNotFoundError as error:
        raise CheckpointError(f"{label} does not exist") from error
    except Exception as error:  # pickle, zip and unsupported-global errors all mean "not ours"
        raise CheckpointError(f"{label} is not a readable checkpoint (corrupt, truncated or another format): "
                              f"{type(error).__name__}") from error
    try:
        return _checked(raw)
    except (CheckpointError, ConfigError) as error:
        raise CheckpointError(f"{label}: {error}") from error


def renamed_metrics(metrics: dict[str, Any]) -> dict[str, Any]:
    """A file's metrics under today's names: a score stored under an old name (OLD_SCORE_NAMES) becomes SCORE."""
    renamed = dict(metrics)
    for old in OLD_SCORE_NAMES:
        if old in renamed:
            value = renamed.pop(old)
            renamed.setdefault(SCORE, value)
    return renamed


def _checked(raw: Any) -> Checkpoint:
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise CheckpointError("not a CAE Explorer checkpoint (a model file from somewhere else?)")
    if raw.get("version") not in READABLE_VERSIONS:
        raise CheckpointError(f"checkpoint format version {raw.get('version')!r}; this app reads versions "
                              f"{', '.join(map(str, READABLE_VERSIONS))}")
    if not isinstance(raw.get("model_type"), str):
        raise CheckpointError("the model type is missing")
    for name in ("history", "metrics", "versions"):
        if not isinstance(raw.get(name) or {}, dict):
            raise CheckpointError(f"its {name} are not a mapping")
    for name, value in (raw.get("metrics") or {}).items():
        if name in NUMERIC_METRICS and value is not None and not isinstance(value, (int, float)):
            raise CheckpointError(f"its {name} is not a number")
    metrics = renamed_metrics(raw.get("metrics") or {})
    model_config = make_config(model_type(raw["model_type"]).name, raw.get("model_config"))
    train_config = None if raw.get("train_config") is None else config_from_dict(TrainConfig, raw["train_config"])
    state = raw.get("state_dict")
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError("the weights are missing or are not tensors")
    training_state = raw.get("training_state")
    if training_state is not None and not isinstance(training_state, dict):
        raise CheckpointError("its training state is not a mapping")
    checkpoint = Checkpoint(
        model_config=model_config, state_dict=state,
        train_config=train_config, history=raw.get("history") or {},
        data_source=str(raw.get("data_source") or ""), metrics=metrics,
        versions=raw.get("versions") or {}, training_state=training_state)
    if not all(torch.isfinite(v).all() for v in state.values()):
        raise CheckpointError("the weights contain NaN or infinite numbers")
    checkpoint.build_model()  # the weights must fit the architecture the config describes
    return checkpoint


PRETRAINED_DIR = Path(__file__).resolve().parents[1] / "pretrained"  # cae/pretrained: the shipped models
DEFAULT_CHECKPOINT = PRETRAINED_DIR / "default.pt"  # each made by the command in docs/benchmarks.md
# The shipped models, by the label the sidebar shows; the first is the default.
PRETRAINED = {
    "Pretrained default": DEFAULT_CHECKPOINT,
    "Pretrained denoising (DAE)": PRETRAINED_DIR / "dae.pt",
    "Pretrained variational (VAE)": PRETRAINED_DIR / "vae.pt",
    "Pretrained 2-number code (plane)": PRETRAINED_DIR / "plane.pt",
}
