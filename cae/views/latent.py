"""The code space: codes of a data set, 2-D maps of them, neighbours, interpolation and decoded grids.

What "The code space" page computes, as pure functions (no Streamlit): the page draws, this module counts. The
nonlinear map (t-SNE) and its background jobs live in cae/views/latent_maps.py; this module holds what is cheap.
The command line over both is `python -m cae.latent` (cae/latent.py).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from cae.engine.metrics import EVAL_BATCH, as_batch

SLIDER_PERCENTILES = (1.0, 99.0)  # a code slider spans this spread of the validation codes' number
PLANE_PERCENTILES = (0.5, 99.5)  # the manifold grid covers the plane where the digits are


def read_only(array: np.ndarray) -> np.ndarray:
    """Maps and codes are shared by every visitor (st.cache_resource): make writing to them an error."""
    array.setflags(write=False)
    return array


def weights_fingerprint(model: nn.Module) -> str:
    """A short hash of the model's weights: the cache key of its codes and maps.

    Models trained in different sessions can share a label, never their weights; the same checkpoint uploaded
    twice shares its maps.
    """
    digest = hashlib.sha1()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def _check_eval(model: nn.Module) -> None:
    if model.training:
        raise ValueError("the code space needs a model in eval mode; shared models are never switched")


@torch.no_grad()
def encode_images(model: nn.Module, images: np.ndarray | torch.Tensor, *, batch_size: int = EVAL_BATCH) -> np.ndarray:
    """(N, 28, 28) images (uint8, or float in [0, 1]) -> (N, code_size) float32 codes; the model is only read."""
    _check_eval(model)
    parts = [model.encode(as_batch(images[start:start + batch_size])).numpy()
             for start in range(0, len(images), batch_size)]
    return np.concatenate(parts).astype(np.float32) if parts else np.zeros((0, model.config.code_size), np.float32)


@torch.no_grad()
def decode_codes(model: nn.Module, codes: np.ndarray, *, batch_size: int = EVAL_BATCH) -> np.ndarray:
    """(N, code_size) codes -> (N, 28, 28) float32 images in [0, 1]."""
    _check_eval(model)
    codes = np.asarray(codes, np.float32).reshape(-1, model.config.code_size)
    parts = [model.decode(torch.from_numpy(codes[start:start + batch_size]))[:, 0].numpy()
             for start in range(0, len(codes), batch_size)]
    return np.concatenate(parts) if parts else np.zeros((0, 28, 28), np.float32)


@dataclass(frozen=True)
class LinearMap:
    """A map that is a linear function of the code: `(code - mean) @ axes`. PCA, or the code plane itself."""

    method: str  # "pca" or "plane"
    coords: np.ndarray  # (N, 2): where each reference code lies
    mean: np.ndarray  # (D,)
    axes: np.ndarray  # (D, 2)
    kept_variance: float  # share of the codes' variance the two axes show (1 for the plane)

    def place(self, codes: np.ndarray) -> np.ndarray:
        """(B, D) new codes -> (B, 2), by the very function that placed the reference codes."""
        return ((np.asarray(codes, np.float64).reshape(-1, len(self.mean)) - self.mean) @ self.axes).astype(
            np.float32)


def fit_pca(codes: np.ndarray) -> LinearMap:
    """The codes' first two principal components (each axis's sign fixed, so a map never flips between runs).

    A code of 1 or 2 numbers is its own map (method "plane"): nothing to project.
    """
    codes = np.asarray(codes, np.float64)
    size = codes.shape[1]
    if size <= 2:
        axes = np.eye(size, 2)  # a 1-number code lies on the x axis
        return LinearMap("plane", read_only((codes @ axes).astype(np.float32)), read_only(np.zeros(size)),
                         read_only(axes), 1.0)
    mean = codes.mean(0)
    _, singular, rows = np.linalg.svd(codes - mean, full_matrices=False)
    axes = rows[:2].T  # (D, 2)
    axes *= np.sign(axes[np.abs(axes).argmax(0), [0, 1]])  # largest loading of each axis positive
    kept = float((singular[:2] ** 2).sum() / (singular ** 2).sum())
    coords = ((codes - mean) @ axes).astype(np.float32)
    return LinearMap("pca", read_only(coords), mean, axes, kept)


def nearest(reference: np.ndarray, code: np.ndarray, count: int = 8, *,
            exclude: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The `count` reference codes closest to `code` (Euclidean, in code space), nearest first.

    Returns (indices, distances). `exclude` leaves out one index: the digit itself when it is in the reference.
    """
    distances = np.sqrt(((np.asarray(reference, np.float64) - np.asarray(code, np.float64).ravel()) ** 2).sum(1))
    if exclude is not None:
        distances[exclude] = np.inf
    count = min(count, len(distances) - (exclude is not None))
    nearest_first = np.argpartition(distances, count - 1)[:count] if count else np.zeros(0, int)
    nearest_first = nearest_first[np.argsort(distances[nearest_first], kind="stable")]
    return nearest_first, distances[nearest_first]


def interpolate_codes(start: np.ndarray, end: np.ndarray, steps: int = 10) -> np.ndarray:
    """(steps, D) codes on the straight line from `start` to `end`, both ends included."""
    weights = np.linspace(0.0, 1.0, steps)[:, None]
    return ((1 - weights) * np.asarray(start, np.float32).ravel() + weights * np.asarray(end, np.float32).ravel()
            ).astype(np.float32)


def blend_pixels(start: np.ndarray, end: np.ndarray, steps: int = 10) -> np.ndarray:
    """(steps, 28, 28): the two images cross-faded pixel by pixel, the blend the decoder is compared with."""
    weights = np.linspace(0.0, 1.0, steps)[:, None, None]
    return ((1 - weights) * np.asarray(start, np.float32) + weights * np.asarray(end, np.float32)).astype(np.float32)


def code_ranges(codes: np.ndarray, percentiles: tuple[float, float] = SLIDER_PERCENTILES) -> np.ndarray:
    """(D, 2) low and high of each code number over the codes (the 1st to 99th percentile by default)."""
    low, high = np.percentile(np.asarray(codes, np.float64), percentiles, axis=0)
    high = np.maximum(high, low + 1e-6)  # a number that never changes still gets a usable slider
    return np.stack([low, high], 1)


def plane_range(coords: np.ndarray, percentiles: tuple[float, float] = PLANE_PERCENTILES) -> np.ndarray:
    """(2, 2): [[x_low, x_high], [y_low, y_high]] where the points of a 2-D map are (outliers left out)."""
    return code_ranges(coords, percentiles)


def grid_codes(extent: np.ndarray, size: int = 20) -> np.ndarray:
    """(size * size, 2) points evenly over extent, row by row from the top (highest y) down, left to right.

    The order of an image: decoded and tiled, the grid looks like the map above it.
    """
    xs = np.linspace(extent[0][0], extent[0][1], size)
    ys = np.linspace(extent[1][1], extent[1][0], size)
    grid_y, grid_x = np.meshgrid(ys, xs, indexing="ij")
    return np.stack([grid_x.ravel(), grid_y.ravel()], 1).astype(np.float32)


def manifold(model: nn.Module, extent: np.ndarray, size: int = 20) -> np.ndarray:
    """(size * 28, size * 28): the decoded images of a size x size grid over a 2-number code's plane, tiled."""
    if model.config.code_size != 2:
        raise ValueError(f"a manifold grid needs a 2-number code, not {model.config.code_size}")
    images = decode_codes(model, grid_codes(extent, size))  # (size * size, 28, 28)
    return images.reshape(size, size, 28, 28).transpose(0, 2, 1, 3).reshape(size * 28, size * 28)


def knn_accuracy(coords: np.ndarray, labels: np.ndarray, *, neighbours: int = 5, folds: int = 5) -> float:
    """Mean accuracy of a k-nearest-neighbour classifier on a map's coordinates, k-fold cross-validated.

    How well a map keeps digits of one kind together; labels are used for scoring only, never for the map.
    """
    # Imported here: only the command line, tests and benchmarks score maps.
    from sklearn.model_selection import cross_val_score
    from sklearn.neighbors import KNeighborsClassifier

    return float(cross_val_score(KNeighborsClassifier(neighbours), coords, np.asarray(labels), cv=folds).mean())

