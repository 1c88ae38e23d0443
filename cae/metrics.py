"""Reconstruction error of a model and of PCA, both as mean squared error per pixel on images in [0, 1]."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch
from torch import nn


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


def reconstruct(model: nn.Module, images: torch.Tensor | np.ndarray, *, batch_size: int = 1000) -> np.ndarray:
    """(N, 28, 28) images -> (N, 28, 28) float32 reconstructions in [0, 1], model in eval mode."""
    with evaluating(model) as device:
        parts = [model(as_batch(images[i:i + batch_size], device)).squeeze(1).cpu()
                 for i in range(0, len(images), batch_size)]
    return torch.cat(parts).numpy() if parts else np.zeros((0, 28, 28), np.float32)


def model_mse(model: nn.Module, images: torch.Tensor | np.ndarray, *, batch_size: int = 1000) -> float:
    """Mean squared error per pixel of the model's reconstructions of (N, 28, 28) images."""
    total = 0.0
    with evaluating(model) as device:
        for i in range(0, len(images), batch_size):
            x = as_batch(images[i:i + batch_size], device)
            total += torch.sum((model(x) - x) ** 2).item()
    return total / (len(images) * 28 * 28)


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
