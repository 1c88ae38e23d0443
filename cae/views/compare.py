"""What the Compare runs page computes: the models side by side (saved runs, shipped models, PCA at a code size),
the settings that differ between them, their scores on the held-out digits, their loss curves against digits seen,
their validation checks per epoch, and reconstructions of the same digits. No Streamlit here.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from cae.engine.checkpoint import Checkpoint
from cae.engine.metrics import as_batch, declared_scores, denoising_psnr, model_mse, reconstruct
from cae.engine.store import samples_by_step
from cae.models.noise import Noise

COMPARE_NOISE = Noise("gaussian", 0.5)  # every model's PSNR is measured from the same corruption
MSE_COLUMN = "Held-out MSE"
PSNR_COLUMN = "PSNR at sigma 0.5 (dB)"
FULL_EPOCH = 60_000  # MNIST's training digits: an epoch of a run that trained on all of them


@dataclass(frozen=True)
class Curve:
    """A loss curve against digits trained on, and the validation checks per epoch."""

    samples: list[int]
    loss: list[float]
    val_epoch: list[int] = field(default_factory=list)
    val_mse: list[float] = field(default_factory=list)


@dataclass(frozen=True)
class Candidate:
    """One row of the comparison: a model (checkpoint and built network) or PCA at a code size."""

    label: str
    checkpoint: Checkpoint | None  # None for PCA
    model: nn.Module | None  # None for PCA
    curve: Curve | None = None  # None for PCA and a model without a history
    steps: int | None = None
    wall_seconds: float | None = None
    pca_components: int | None = None


def pca_basis(train_images: torch.Tensor, components: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean (784,), basis (784, k)) of PCA fitted on the training digits."""
    train = as_batch(train_images).flatten(1).double()
    mean = train.mean(0)
    centred = train - mean
    _, vectors = torch.linalg.eigh(centred.T @ centred)  # eigenvalues ascending: the last are the largest
    return mean, vectors[:, -components:]


def pca_reconstruct(mean: torch.Tensor, basis: torch.Tensor, images: torch.Tensor | np.ndarray) -> np.ndarray:
    """(N, 28, 28) images through PCA: projected on the basis and back, clipped to [0, 1]."""
    flat = as_batch(images).flatten(1).double() - mean
    out = (flat @ basis @ basis.T + mean).clamp(0, 1)
    return out.reshape(-1, 28, 28).float().numpy()


def model_scores(model: nn.Module, images: torch.Tensor) -> dict[str, float]:
    """Held-out MSE, the PSNR of the output from digits with Gaussian noise of sigma 0.5, and the scores the model's
    type declares (cae.models.contract.Score), by column name."""
    scores = {MSE_COLUMN: model_mse(model, images), PSNR_COLUMN: denoising_psnr(model, images, COMPARE_NOISE)[1]}
    labels = {score.key: f"{score.label} ({score.unit})" for score in model.SCORES}
    scores.update({labels[key]: value for key, value in declared_scores(model, images).items()})
    return scores


def pca_scores(mean: torch.Tensor, basis: torch.Tensor, images: torch.Tensor) -> dict[str, float]:
    """PCA's held-out MSE and its PSNR from the same noisy digits as the models'."""
    clean = as_batch(images).squeeze(1).numpy()
    generator = torch.Generator().manual_seed(0)
    noisy = COMPARE_NOISE.apply(as_batch(images), generator).squeeze(1)
    output = pca_reconstruct(mean, basis, noisy)
    noisy_mse = float(np.mean((output.astype(np.float64) - clean) ** 2))
    plain = pca_reconstruct(mean, basis, images)
    return {MSE_COLUMN: float(np.mean((plain.astype(np.float64) - clean) ** 2)),
            PSNR_COLUMN: float(10 * np.log10(1 / max(noisy_mse, 1e-12)))}


def curve_from_history(ckpt: Checkpoint) -> Curve | None:
    """A checkpoint's own history as a Curve (shipped models and exported files carry theirs)."""
    history, config = ckpt.history or {}, ckpt.train_config
    losses = list(history.get("train_loss") or [])
    if not losses or config is None:
        return None
    epoch_size = config.train_subset or FULL_EPOCH
    samples_at = samples_by_step(epoch_size, config.batch_size)
    steps_per_epoch = -(-epoch_size // config.batch_size)
    val_steps = list(history.get("val_step") or [])
    return Curve([samples_at(step) for step in range(1, len(losses) + 1)], losses,
                 [-(-step // steps_per_epoch) for step in val_steps], list(history.get("val_mse") or []))


def parameters(model: nn.Module) -> int:
    """Distinct trainable numbers (tied weights counted once)."""
    return sum(parameter.numel() for parameter in model.parameters())


def settings_rows(candidates: list[Candidate]) -> list[dict[str, Any]]:
    """One row a candidate: its type, every model and training setting, parameters, steps and wall time."""
    rows = []
    for candidate in candidates:
        row: dict[str, Any] = {"model": candidate.label}
        if candidate.checkpoint is None:
            row.update(type="PCA", code_size=candidate.pca_components)
        else:
            ckpt = candidate.checkpoint
            row["type"] = ckpt.kind.title
            row.update({name: _cell(value) for name, value in asdict(ckpt.model_config).items()})
            if ckpt.train_config is not None:
                row.update({name: _cell(value) for name, value in asdict(ckpt.train_config).items()
                            if name != "device"})
            row["parameters"] = parameters(candidate.model)
        row["steps"] = candidate.steps
        row["wall time (s)"] = None if candidate.wall_seconds is None else round(candidate.wall_seconds, 1)
        rows.append(row)
    return rows


def _cell(value: Any) -> Any:
    """A setting as a table cell: numbers and text as they are, anything else as text."""
    return value if isinstance(value, (int, float, str, bool)) or value is None else str(value)


def differing_columns(rows: list[dict[str, Any]]) -> list[str]:
    """The settings whose values are not all equal across the rows (a setting a row lacks counts as different)."""
    names = list(dict.fromkeys(name for row in rows for name in row if name != "model"))
    return [name for name in names if len({repr(row.get(name)) for row in rows}) > 1]


def reconstructions(candidate: Candidate, images: torch.Tensor | np.ndarray,
                    pca: tuple[torch.Tensor, torch.Tensor] | None = None) -> np.ndarray:
    """(N, 28, 28) outputs of the candidate for these digits (PCA needs its fitted `pca` basis)."""
    if candidate.model is not None:
        return reconstruct(candidate.model, images)
    assert pca is not None
    return pca_reconstruct(*pca, images)
