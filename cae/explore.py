"""What the pages compute about a model and some digits: one reconstruction with its code, or a scored sample set."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from cae.metrics import as_batch, per_image_mse, reconstruct


@dataclass(frozen=True)
class Reconstruction:
    image: np.ndarray  # (28, 28) model input in [0, 1]
    output: np.ndarray  # (28, 28) reconstruction in [0, 1]
    code: np.ndarray  # (code_size,)

    @property
    def error(self) -> np.ndarray:
        return (self.output - self.image) ** 2

    @property
    def mse(self) -> float:
        return float(self.error.mean())


@torch.no_grad()
def reconstruct_one(model: nn.Module, image: np.ndarray) -> Reconstruction:
    """Encode and decode one 28x28 image; the model is only read (eval mode, no gradients)."""
    if model.training:
        raise ValueError("reconstruct_one needs a model in eval mode; shared models are never switched")
    x = as_batch(np.asarray(image, np.float32)[None])
    code = model.encode(x)
    return Reconstruction(np.asarray(image, np.float32), model.decode(code)[0, 0].numpy(), code[0].numpy())


@dataclass(frozen=True)
class ScoredSamples:
    indices: np.ndarray  # positions in the source images
    originals: np.ndarray  # (N, 28, 28) in [0, 1]
    outputs: np.ndarray
    mse: np.ndarray  # (N,) per image

    def worst_first(self) -> "ScoredSamples":
        order = np.argsort(-self.mse)
        return ScoredSamples(self.indices[order], self.originals[order], self.outputs[order], self.mse[order])


def score_samples(model: nn.Module, images: torch.Tensor, indices: np.ndarray) -> ScoredSamples:
    originals = images[torch.as_tensor(indices)].numpy().astype(np.float32) / 255
    outputs = reconstruct(model, originals)
    return ScoredSamples(np.asarray(indices), originals, outputs, per_image_mse(originals, outputs))


def choose_samples(labels: torch.Tensor, *, digit: int | None = None, start: int = 0, count: int = 32,
                   seed: int | None = None) -> np.ndarray:
    """Indices to show: from `start` on, optionally one digit only, or a seeded random draw when seed is given."""
    pool = np.arange(len(labels)) if digit is None else np.flatnonzero(labels.numpy() == digit)
    if seed is not None:
        return np.random.default_rng(seed).choice(pool, size=min(count, len(pool)), replace=False)
    start = int(np.searchsorted(pool, start))
    return pool[start:start + count]
