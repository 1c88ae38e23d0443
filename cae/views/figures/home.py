"""The home page's figures: MNIST digits picked by the visitor, alone or over their reconstructions. No st.* here."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
import torch
from torchvision.utils import make_grid

from cae.views.figures.base import GREY, GRID_PAD, image_axes, sample_grid, stable_figure

LABEL_BAND = 11  # image rows kept blank above each row of digits for their labels (on the digits they hid the ink)
STEP = 28 + GRID_PAD  # image rows from one row of digits to the next
PIXELS_PER_ROW = 62 / STEP  # screen pixels per image row at the page's width: a row of digits about 62 px high


def comparison_grid(originals: np.ndarray, reconstructions: np.ndarray, labels: Sequence[str], *,
                    per_row: int = 8, title: str = "") -> go.Figure:
    """Originals over their reconstructions, `per_row` samples a row, each labelled (index, MSE) above its digit."""
    pairs = -(-len(originals) // per_row)
    grid = with_label_bands(sample_grid(originals, reconstructions, per_row), [2 * k * STEP for k in range(pairs)])
    return _labelled_grid(grid, labels, per_row, rows_per_label=2, title=title)


def digit_grid(images: np.ndarray, labels: Sequence[str] = (), *, per_row: int = 16, title: str = "") -> go.Figure:
    """(N, 28, 28) images in [0, 1], `per_row` a row, each optionally labelled above it."""
    count = len(images)
    rows = -(-count // per_row)
    padded = np.zeros((rows * per_row, 28, 28), np.float32)
    padded[:count] = images
    grid = make_grid(torch.as_tensor(padded).unsqueeze(1), nrow=per_row, padding=GRID_PAD, pad_value=0.35)[0].numpy()
    if labels:
        grid = with_label_bands(grid, [k * STEP for k in range(rows)])
    return _labelled_grid(grid, labels, per_row, rows_per_label=1, title=title)


def with_label_bands(grid: np.ndarray, above_rows: Sequence[int]) -> np.ndarray:
    """The grid with LABEL_BAND blank (NaN: not drawn) image rows inserted above each of the given image rows."""
    pieces, start = [], 0
    for row in above_rows:
        pieces += [grid[start:row], np.full((LABEL_BAND, grid.shape[1]), np.nan, grid.dtype)]
        start = row
    pieces.append(grid[start:])
    return np.concatenate(pieces)


def _labelled_grid(grid: np.ndarray, labels: Sequence[str], per_row: int, *, rows_per_label: int,
                   title: str) -> go.Figure:
    """The grid as one image; label i in the band above digit i (bands only where there are labels)."""
    band = LABEL_BAND if labels else 0
    block = rows_per_label * STEP + band  # image rows from one band to the next
    notes = [dict(x=(i % per_row) * STEP + GRID_PAD, y=(i // per_row) * block + band / 2 + 1, text=label,
                  showarrow=False, xanchor="left", yanchor="middle", font=dict(size=10))
             for i, label in enumerate(labels)]
    heatmap = dict(type="heatmap", z=grid, zmin=0, zmax=1, colorscale=GREY, showscale=False, hoverinfo="skip")
    return stable_figure([heatmap], title=dict(text=title), annotations=notes,
                         height=round(70 + grid.shape[0] * PIXELS_PER_ROW),
                         margin=dict(l=5, r=5, t=35 if title else 5, b=5), **image_axes(*grid.shape))
