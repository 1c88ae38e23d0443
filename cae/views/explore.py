"""What the pages compute about a model and some digits: one reconstruction with its code (from a clean or a
corrupted copy), the scores its type declares for one digit, a scored sample set, and, for a type with a prior
(cae.models.contract.Prior), new digits and traversals."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from cae.engine.metrics import as_batch, declared_score, per_image_mse, reconstruct
from cae.models.contract import Score
from cae.models.noise import Noise, psnr


@dataclass(frozen=True)
class Reconstruction:
    image: np.ndarray  # (28, 28) the clean model input in [0, 1]
    output: np.ndarray  # (28, 28) reconstruction in [0, 1]
    code: np.ndarray  # (code_size,)
    noisy: np.ndarray | None = None  # (28, 28) the corrupted copy the model was given, if any

    @property
    def error(self) -> np.ndarray:
        """Squared error against the clean digit: what a denoiser should bring down."""
        return (self.output - self.image) ** 2

    @property
    def mse(self) -> float:
        return float(self.error.mean())

    @property
    def noisy_psnr(self) -> float | None:
        return None if self.noisy is None else psnr(float(((self.noisy - self.image) ** 2).mean()))

    @property
    def output_psnr(self) -> float:
        return psnr(self.mse)


@torch.no_grad()
def reconstruct_one(model: nn.Module, image: np.ndarray, *, noise: Noise | None = None,
                    seed: int = 0) -> Reconstruction:
    """Encode and decode one 28x28 image, or a copy corrupted by `noise` (seeded); the model is only read."""
    if model.training:
        raise ValueError("reconstruct_one needs a model in eval mode; shared models are never switched")
    clean = np.asarray(image, np.float32)
    given = as_batch(clean[None])
    noisy = None
    if noise is not None:
        given = noise.apply(given, torch.Generator().manual_seed(seed))
        noisy = given[0, 0].numpy()
    code = model.encode(given)
    return Reconstruction(clean, model.decode(code)[0, 0].numpy(), code[0].numpy(), noisy)


def digit_scores(model: nn.Module, image: np.ndarray, *, seed: int = 0) -> list[tuple[Score, float]]:
    """Each score the model's type declares (its SCORES), for one (28, 28) digit in [0, 1]; seeded."""
    digit = np.asarray(image, np.float32)[None]
    return [(score, declared_score(model, score, digit, seed=seed)) for score in model.SCORES]


@torch.no_grad()
def sample_digits(model: nn.Module, count: int, seed: int) -> np.ndarray:
    """(count, 28, 28) new digits from the codes the model's type draws from its prior, seeded."""
    return model.sample(count, torch.Generator().manual_seed(seed))[:, 0].numpy()


@torch.no_grad()
def traversal(model: nn.Module, image: np.ndarray, dimension: int, *,
              steps: int = 9) -> tuple[np.ndarray, np.ndarray]:
    """The digit's code with one number swept over its prior's traversal range, the others kept:
    (values, (steps, 28, 28)). ValueError for a type without a prior: there is no range to sweep."""
    if model.PRIOR is None:
        raise ValueError(f"{type(model).__name__} has no prior: no range to sweep a code number over")
    low, high = model.PRIOR.traversal_range()
    code = model.encode(as_batch(np.asarray(image, np.float32)[None]))
    values = np.linspace(low, high, steps, dtype=np.float32)
    codes = code.repeat(steps, 1)
    codes[:, dimension] = torch.from_numpy(values)
    return values, model.decode(codes)[:, 0].numpy()


@dataclass(frozen=True)
class ScoredSamples:
    indices: np.ndarray  # positions in the source images
    originals: np.ndarray  # (N, 28, 28) in [0, 1]
    outputs: np.ndarray
    mse: np.ndarray  # (N,) per image

    def worst_first(self) -> ScoredSamples:
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
