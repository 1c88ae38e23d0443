"""The home page's figures: MNIST digits picked by the visitor, alone or over their reconstructions. No st.* here."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
import torch
from torchvision.utils import make_grid

from cae.views.figures.base import GREY, GRID_PAD, image_axes, sample_grid, stable_figure


def comparison_grid(originals: np.ndarray, reconstructions: np.ndarray, labels: Sequence[str], *,
                    per_row: int = 8, title: str = "") -> go.Figure:
    """Originals over their reconstructions, `per_row` samples a row, each labelled (index, MSE)."""
    grid = sample_grid(originals, reconstructions, per_row)
    step = 28 + GRID_PAD
    notes = [dict(x=(i % per_row) * step + GRID_PAD, y=(i // per_row) * 2 * step + GRID_PAD, text=label,
                  showarrow=False, xanchor="left", yanchor="top", font=dict(size=9, color="#ffd54f"))
             for i, label in enumerate(labels)]
    rows = 2 * -(-len(originals) // per_row)
    heatmap = dict(type="heatmap", z=grid, zmin=0, zmax=1, colorscale=GREY, showscale=False, hoverinfo="skip")
    return stable_figure([heatmap], title=dict(text=title), annotations=notes, height=70 + rows * 62,
                         margin=dict(l=5, r=5, t=35 if title else 5, b=5), **image_axes(*grid.shape))


def digit_grid(images: np.ndarray, labels: Sequence[str] = (), *, per_row: int = 16, title: str = "") -> go.Figure:
    """(N, 28, 28) images in [0, 1], `per_row` a row, each optionally labelled in its corner."""
    count = len(images)
    padded = np.zeros((-(-count // per_row) * per_row, 28, 28), np.float32)
    padded[:count] = images
    grid = make_grid(torch.as_tensor(padded).unsqueeze(1), nrow=per_row, padding=GRID_PAD, pad_value=0.35)[0].numpy()
    step = 28 + GRID_PAD
    notes = [dict(x=(i % per_row) * step + GRID_PAD, y=(i // per_row) * step + GRID_PAD, text=label, showarrow=False,
                  xanchor="left", yanchor="top", font=dict(size=9, color="#ffd54f")) for i, label in enumerate(labels)]
    heatmap = dict(type="heatmap", z=grid, zmin=0, zmax=1, colorscale=GREY, showscale=False, hoverinfo="skip")
    return stable_figure([heatmap], title=dict(text=title), annotations=notes, height=70 + len(padded) // per_row * 62,
                         margin=dict(l=5, r=5, t=35 if title else 5, b=5), **image_axes(*grid.shape))
