"""Reconstruction error of a model and of PCA, both as mean squared error per pixel on images in [0, 1], and the
scores a model's type declares beyond it (cae.models.contract.Score)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from cae.models.contract import Score
from cae.models.noise import Noise, psnr

# Digits per forward pass when scoring: on a 2-core machine 256 ran twice as fast as 1,000 (the first layers'
# activations of 1,000 digits, 74 MB, do not stay in cache).
EVAL_BATCH = 256
# The scores that put any two models on one scale (the Compare page's): the PSNR of the output from digits with
# Gaussian noise of sigma 0.5, so a plain autoencoder and a denoiser meet on one number, and the type's own scores.
# They are measured on the first COMPARISON_DIGITS held-out digits: enough for a standard error near 0.05 dB, and
# cheap enough (a fifth of a full pass) to score every run as it ends.
COMPARISON_NOISE = Noise("gaussian", 0.5)
COMPARISON_DIGITS = 2000
COMPARISON_PSNR = "psnr_sigma_0.5_db"


def as_batch(images: torch.Tensor | np.ndarray, device: torch.device | str = "cpu") -> torch.Tensor:
    """(N, 28, 28) uint8 in 0..255 or float in [0, 1] -> (N, 1, 28, 28) float32 in [0, 1] on device."""
    images = torch.as_tensor(images).to(device)
    if images.dtype == torch.uint8:
        return images.unsqueeze(1).float().div_(255)
    return images.unsqueeze(1).float()


@contextmanager
def evaluating(model: nn.Module) -> Iterator[torch.device]:
    """Eval mode (no dropout) and no gradients for a while; the model's own mode comes back afterwards."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield next(model.parameters()).device
    finally:
        model.train(was_training)


def reconstruct(model: nn.Module, images: torch.Tensor | np.ndarray, *, batch_size: int = EVAL_BATCH) -> np.ndarray:
    """(N, 28, 28) images -> (N, 28, 28) float32 reconstructions in [0, 1], model in eval mode."""
    with evaluating(model) as device:
        parts = [model(as_batch(images[i:i + batch_size], device)).squeeze(1).cpu()
                 for i in range(0, len(images), batch_size)]
    return torch.cat(parts).numpy() if parts else np.zeros((0, 28, 28), np.float32)


def model_mse(model: nn.Module, images: torch.Tensor | np.ndarray, *, batch_size: int = EVAL_BATCH) -> float:
    """Mean squared error per pixel of the model's reconstructions of (N, 28, 28) images."""
    total = 0.0
    with evaluating(model) as device:
        for i in range(0, len(images), batch_size):
            x = as_batch(images[i:i + batch_size], device)
            total += torch.sum((model(x) - x) ** 2).item()
    return total / (len(images) * 28 * 28)


@dataclass(frozen=True)
class ReconstructionStats:
    mse: float  # per pixel
    output_spread: float  # how much the reconstructions differ between digits: per-pixel variance, averaged
    input_spread: float  # the same for the digits themselves

    @property
    def spread_ratio(self) -> float:
        """Near 0: the model gives (almost) the same picture for every digit."""
        return self.output_spread / max(self.input_spread, 1e-12)


def reconstruction_stats(model: nn.Module, images: torch.Tensor | np.ndarray, *,
                         batch_size: int = EVAL_BATCH) -> ReconstructionStats:
    """MSE per pixel of the reconstructions of (N, 28, 28) images, and how much they vary across the digits."""
    error = 0.0
    pixel_sums = {name: torch.zeros(784, dtype=torch.float64) for name in ("out", "out_sq", "inp", "inp_sq")}
    with evaluating(model) as device:
        for i in range(0, len(images), batch_size):
            x = as_batch(images[i:i + batch_size], device)
            y = model(x)
            error += torch.sum((y - x) ** 2).item()
            flat_in, flat_out = x.flatten(1).double().cpu(), y.flatten(1).double().cpu()
            pixel_sums["out"] += flat_out.sum(0)
            pixel_sums["out_sq"] += (flat_out**2).sum(0)
            pixel_sums["inp"] += flat_in.sum(0)
            pixel_sums["inp_sq"] += (flat_in**2).sum(0)
    count = len(images)

    def spread(name: str) -> float:
        mean = pixel_sums[name] / count
        return torch.mean(pixel_sums[f"{name}_sq"] / count - mean**2).item()

    return ReconstructionStats(error / (count * 784), spread("out"), spread("inp"))


def per_image_mse(originals: np.ndarray, reconstructions: np.ndarray) -> np.ndarray:
    """(N, 28, 28) pairs in [0, 1] -> (N,) mean squared error of each image."""
    return ((np.asarray(originals, np.float32) - reconstructions) ** 2).reshape(len(originals), -1).mean(axis=1)


@torch.no_grad()
def pca_mse(train_images: torch.Tensor, test_images: torch.Tensor, components: int) -> float:
    """MSE per pixel of PCA with `components` components fitted on train_images, scored on test_images."""
    train = as_batch(train_images).flatten(1).double()  # (N, 784)
    mean = train.mean(0)
    centred = train - mean
    _, vectors = torch.linalg.eigh(centred.T @ centred)  # eigenvalues ascending: the last are the largest
    basis = vectors[:, -components:]  # (784, k)
    test = as_batch(test_images).flatten(1).double() - mean
    return torch.mean((test @ basis @ basis.T - test) ** 2).item()


def denoising_psnr(model: nn.Module, images: torch.Tensor | np.ndarray, noise, *, seed: int = 0,
                   batch_size: int = EVAL_BATCH) -> tuple[float, float]:
    """(PSNR of the noisy digits, PSNR of the model's output from them), both against the clean digits, in dB.

    `noise` is a cae.models.noise.Noise; its seeded draw is the same for every model, so models compare on equal terms.
    """
    generator = torch.Generator().manual_seed(seed)
    noisy_error = output_error = 0.0
    with evaluating(model) as device:
        for i in range(0, len(images), batch_size):
            clean = as_batch(images[i:i + batch_size])
            noisy = noise.apply(clean, generator)
            output = model(noisy.to(device)).cpu()
            noisy_error += torch.sum((noisy.double() - clean.double()) ** 2).item()
            output_error += torch.sum((output.double() - clean.double()) ** 2).item()
    pixels = len(images) * 784
    return psnr(noisy_error / pixels), psnr(output_error / pixels)


def declared_score(model: nn.Module, score: Score, images: torch.Tensor | np.ndarray, *, seed: int = 0,
                   batch_size: int = EVAL_BATCH) -> float:
    """One of the scores the model's type declares, over (N, 28, 28) images; its randomness (a sampled code, a
    corruption) comes from a generator seeded with `seed`, so every model of the type is scored on equal terms."""
    total = 0.0
    with evaluating(model) as device:
        generator = torch.Generator(device).manual_seed(seed)
        for i in range(0, len(images), batch_size):
            total += score.per_digit(model, as_batch(images[i:i + batch_size], device), generator).sum().item()
    return score.summary(total / len(images))


def declared_scores(model: nn.Module, images: torch.Tensor | np.ndarray, *, seed: int = 0,
                    batch_size: int = EVAL_BATCH) -> dict[str, float]:
    """Every score the model's type declares (its SCORES), by key: {} for a type with none."""
    return {score.key: declared_score(model, score, images, seed=seed, batch_size=batch_size)
            for score in model.SCORES}


def comparison_scores(model: nn.Module, images: torch.Tensor | np.ndarray) -> dict[str, float]:
    """The PSNR from digits with Gaussian noise of sigma 0.5 (COMPARISON_PSNR) and every score the model's type
    declares, by key, on the first COMPARISON_DIGITS of the held-out `images`; the same noise for every model."""
    scored = images[:COMPARISON_DIGITS]
    scores = {COMPARISON_PSNR: denoising_psnr(model, scored, COMPARISON_NOISE)[1]}
    scores.update(declared_scores(model, scored))
    return scores
