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
from cae.engine.metrics import (
    COMPARISON_DIGITS,
    COMPARISON_NOISE,
    COMPARISON_PSNR,
    EVAL_BATCH,
    as_batch,
    comparison_scores,
    model_mse,
    reconstruct,
)
from cae.engine.recording import COMPARISON_SCORES
from cae.engine.store import RunRecord, samples_by_step
from cae.views import train_sweep

MSE_COLUMN = "Held-out MSE"
PSNR_COLUMN = "PSNR at sigma 0.5 (dB)"
TOTAL = "total"  # the loss curves' name for the objective's total (the terms go by their own names)
FULL_EPOCH = 60_000  # MNIST's training digits: an epoch of a run that trained on all of them


@dataclass(frozen=True)
class Curve:
    """A loss curve against digits trained on, and the validation checks per epoch."""

    samples: list[int]
    loss: list[float]
    val_epoch: list[int] = field(default_factory=list)
    val_mse: list[float] = field(default_factory=list)
    terms: dict[str, list[float | None]] = field(default_factory=dict)  # each term the objective reports, per point

    def series(self, name: str) -> list[float | None] | None:
        """The total loss (TOTAL) or one of its terms; None when this curve has no such term."""
        return self.loss if name == TOTAL else self.terms.get(name)


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
    scores: dict[str, float] | None = None  # its table scores by column, when known without scoring it here


def run_label(record: RunRecord) -> str:
    """A saved run as the page names it: its name, where it stands, and the start of its id (names may repeat)."""
    return f"{record.name} ({record.status}) [{record.id[:6]}]"


def newest_sweep(records: list[RunRecord]) -> list[RunRecord]:
    """The runs of the newest sweep when the newest run (records come newest first) is one of a sweep's two or more,
    else []: in the order of their values when those are numbers, else oldest first (the runs of a sweep start at
    once, so the order they were created in is not the order of their values)."""
    newest = train_sweep.name_parts(records[0].name) if records else None
    if newest is None:
        return []
    members: list[tuple[str, RunRecord]] = []  # (value, run), oldest first
    for record in reversed(records):
        parts = train_sweep.name_parts(record.name)
        if parts is not None and parts[0] == newest[0]:
            members.append((parts[2], record))
    if len(members) < 2:
        return []
    try:
        numbers = [float(value) for value, _ in members]
    except ValueError:
        return [record for _, record in members]
    by_number = sorted(zip(numbers, members), key=lambda pair: pair[0])
    return [record for _, (_, record) in by_number]


def term_names(curves: list[Curve]) -> list[str]:
    """TOTAL and every term any of the curves reports, in the order first met."""
    return [TOTAL, *dict.fromkeys(name for curve in curves for name in curve.terms)]


def pca_eigen(train_images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean (784,), eigenvectors (784, 784) in ascending order of variance) of the training digits: every PCA
    size is a slice of these, so a new size costs nothing once they are known."""
    train = as_batch(train_images).flatten(1).double()
    mean = train.mean(0)
    centred = train - mean
    _, vectors = torch.linalg.eigh(centred.T @ centred)
    return mean, vectors


def pca_basis(eigen: tuple[torch.Tensor, torch.Tensor], components: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean (784,), basis (784, k)) of PCA with `components` components, from pca_eigen's result."""
    mean, vectors = eigen
    return mean, vectors[:, -components:]


def pca_reconstruct(mean: torch.Tensor, basis: torch.Tensor, images: torch.Tensor | np.ndarray) -> np.ndarray:
    """(N, 28, 28) images through PCA: projected on the basis and back, clipped to [0, 1]."""
    flat = as_batch(images).flatten(1).double() - mean
    out = (flat @ basis @ basis.T + mean).clamp(0, 1)
    return out.reshape(-1, 28, 28).float().numpy()


def score_columns(model: nn.Module, held_out_mse: float, comparison: dict[str, Any]) -> dict[str, float]:
    """The table's scores by column name: the held-out MSE, the PSNR at sigma 0.5 and the scores the model's type
    declares (cae.models.contract.Score), from their keys in `comparison` (cae.engine.metrics.comparison_scores)."""
    columns = {MSE_COLUMN: held_out_mse, PSNR_COLUMN: comparison[COMPARISON_PSNR]}
    columns.update({f"{score.label} ({score.unit})": comparison[score.key] for score in model.SCORES
                    if score.key in comparison})
    return columns


def model_scores(model: nn.Module, images: torch.Tensor, *, held_out_mse: float | None = None) -> dict[str, float]:
    """A model's table scores measured now (a shipped model, a run saved before runs were scored as they ended):
    the held-out MSE over all `images` unless it is known, the rest on the first COMPARISON_DIGITS."""
    if held_out_mse is None:
        held_out_mse = model_mse(model, images)
    return score_columns(model, held_out_mse, comparison_scores(model, images))


def stored_scores(model: nn.Module, scores: dict[str, Any], *, data_source: str,
                  step: int) -> dict[str, float] | None:
    """A run's table scores from what it stored as it ended (cae.engine.recording), if they were measured on the
    data in use now and on the weights of `step` (the checkpoint shown); None when they must be measured here."""
    comparison = scores.get(COMPARISON_SCORES)
    if not isinstance(comparison, dict) or comparison.get("data_source") != data_source \
            or comparison.get("step") != step or "held_out_mse" not in scores or COMPARISON_PSNR not in comparison:
        return None
    return score_columns(model, scores["held_out_mse"], comparison)


def pca_scores(mean: torch.Tensor, basis: torch.Tensor, images: torch.Tensor) -> dict[str, float]:
    """PCA's held-out MSE over all `images`, and its PSNR from the same noisy digits as the models' (the first
    COMPARISON_DIGITS, the same noise)."""
    clean = as_batch(images).squeeze(1).numpy()
    plain = pca_reconstruct(mean, basis, images)
    scored = as_batch(images[:COMPARISON_DIGITS])
    generator = torch.Generator().manual_seed(0)  # drawn batch by batch as denoising_psnr does: the models' noise
    noisy = torch.cat([COMPARISON_NOISE.apply(scored[start:start + EVAL_BATCH], generator)
                       for start in range(0, len(scored), EVAL_BATCH)]).squeeze(1)
    output = pca_reconstruct(mean, basis, noisy)
    noisy_mse = float(np.mean((output.astype(np.float64) - scored.squeeze(1).numpy()) ** 2))
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
    terms = {name: list(values) for name, values in (history.get("terms") or {}).items()}
    return Curve([samples_at(step) for step in range(1, len(losses) + 1)], losses,
                 [-(-step // steps_per_epoch) for step in val_steps], list(history.get("val_mse") or []), terms)


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


NOT_SETTINGS = ("steps", "wall time (s)", "parameters")  # outcomes of a run, not what it was asked to do


@dataclass(frozen=True)
class Sweep:
    """Models that differ in one setting only: that setting and each model's value of it, in the models' order."""

    setting: str
    values: list[Any]

    @property
    def numeric(self) -> bool:
        return all(isinstance(value, (int, float)) and not isinstance(value, bool) for value in self.values)

    @property
    def log_scale(self) -> bool:
        """A log axis when the values are positive numbers spread over more than a factor of 8 (code sizes,
        learning rates, batch sizes)."""
        return self.numeric and min(self.values) > 0 and max(self.values) >= 8 * min(self.values)


def sweep_of(candidates: list[Candidate]) -> Sweep | None:
    """The one setting the chosen models (two or more; PCA aside) differ in, however they were made (a sweep, or
    runs trained by hand), or None. A setting only some types have (a VAE's beta) does not count against a sweep of
    the model type."""
    models = [candidate for candidate in candidates if candidate.checkpoint is not None]
    if len(models) < 2:
        return None
    rows = settings_rows(models)
    differing = [name for name in differing_columns(rows)
                 if name not in NOT_SETTINGS and all(name in row for row in rows)]
    if len(differing) != 1:
        return None
    return Sweep(differing[0], [row[differing[0]] for row in rows])


def highlighted_columns(candidates: list[Candidate]) -> list[str]:
    """The table's columns to highlight: the settings (and parameter counts) that differ between the chosen models.
    PCA's row is left out: it has no settings, and would make every column differ."""
    models = [candidate for candidate in candidates if candidate.checkpoint is not None]
    if len(models) < 2:
        return []
    return [name for name in differing_columns(settings_rows(models)) if name not in ("steps", "wall time (s)")]


def reconstructions(candidate: Candidate, images: torch.Tensor | np.ndarray,
                    pca: tuple[torch.Tensor, torch.Tensor] | None = None) -> np.ndarray:
    """(N, 28, 28) outputs of the candidate for these digits (PCA needs its fitted `pca` basis)."""
    if candidate.model is not None:
        return reconstruct(candidate.model, images)
    assert pca is not None
    return pca_reconstruct(*pca, images)
