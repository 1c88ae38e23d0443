"""Figure builders for every page: digits, errors, codes, sample grids, loss curves, filters (plotly, plus one
plain image for the live view). No st.* here."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
import torch
from torchvision.utils import make_grid

GREY = [[0, "black"], [1, "white"]]
ERROR = "Reds"
DIVERGING = "RdBu_r"  # kernels: blue negative, red positive, white at zero
GRID_PAD = 2
# One pair of axes drawn as an image: square pixels, row 0 at the top, no ticks.
SQUARE_AXES = dict(xaxis=dict(visible=False, constrain="domain"),
                   yaxis=dict(visible=False, autorange="reversed", scaleanchor="x", constrain="domain"))


def _figure(traces: list[dict], **layout) -> go.Figure:
    """A figure from plain dicts, without plotly's validation: several times faster, and the live training
    view rebuilds its figures every second while the trainer needs the CPU.

    No plotly template either (Streamlit's theme styles the charts in the browser): plotly's default one made the
    browser take twice as long to draw the loss chart (30 ms against 15, measured in Chromium).
    """
    return go.Figure(data=traces, layout={"template": {}, **layout}, _validate=False)


def digit_panels(panels: Sequence[tuple[str, np.ndarray]], *, error_panel: int | None = None,
                 height: int = 260) -> go.Figure:
    """28x28 images side by side, pixels sharp; the error panel, if any, on a red scale.

    All panels share one pair of axes (a grey trace and a red one), which the browser draws several times faster
    than one subplot per panel: this figure is redrawn after every stroke.
    """
    gap = 3
    width = len(panels) * (28 + gap) - gap
    grey = np.full((28, width), np.nan, np.float32)
    red = np.full((28, width), np.nan, np.float32)
    for i, (_, image) in enumerate(panels):
        (red if i == error_panel else grey)[:, i * (28 + gap):i * (28 + gap) + 28] = image
    traces = [dict(type="heatmap", z=grey, zmin=0, zmax=1, colorscale=GREY, showscale=False,
                   hovertemplate="row %{y}, col %{x}: %{z:.3f}<extra></extra>")]
    if error_panel is not None:
        traces.append(dict(type="heatmap", z=red, zmin=0, zmax=float(max(np.nanmax(red), 1e-3)), colorscale=ERROR,
                           showscale=False, hovertemplate="squared error %{z:.4f}<extra></extra>"))
    titles = [dict(x=i * (28 + gap) + 13.5, y=-1, text=title, showarrow=False, yanchor="bottom", font=dict(size=13))
              for i, (title, _) in enumerate(panels)]
    return _figure(traces, annotations=titles, height=height, margin=dict(l=5, r=5, t=30, b=5),
                   plot_bgcolor="rgba(0,0,0,0)", **SQUARE_AXES)


def code_chart(code: np.ndarray) -> go.Figure:
    code = np.asarray(code).ravel()
    colours = np.where(code >= 0, "#d62728", "#1f77b4")  # red positive, blue negative
    bars = dict(type="bar", x=np.arange(len(code)), y=code, marker=dict(color=colours),
                hovertemplate="code[%{x}] = %{y:.3f}<extra></extra>")
    return _figure([bars], title=dict(text=f"The code: {len(code)} numbers"), height=220, bargap=0.1,
                   margin=dict(l=5, r=5, t=35, b=5), xaxis=dict(title=dict(text="code index")))


def sample_grid(originals: np.ndarray, reconstructions: np.ndarray, per_row: int) -> np.ndarray:
    """One 2-D image: `per_row` originals a row, each row of them over its reconstructions (make_grid's layout)."""
    count = len(originals)
    tiles = []
    for start in range(0, count, per_row):
        row = slice(start, min(start + per_row, count))
        padding = per_row - (row.stop - row.start)
        for block in (originals[row], reconstructions[row]):
            tiles.extend(list(block) + [np.zeros((28, 28), np.float32)] * padding)
    return make_grid(torch.as_tensor(np.asarray(tiles, np.float32)).unsqueeze(1), nrow=per_row, padding=GRID_PAD,
                     pad_value=0.35)[0].numpy()


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
    return _figure([heatmap], title=dict(text=title), annotations=notes, height=70 + rows * 62,
                   margin=dict(l=5, r=5, t=35 if title else 5, b=5), **SQUARE_AXES)


def smooth(values: Sequence[float], weight: float = 0.9) -> np.ndarray:
    """Exponential moving average with bias correction, as TensorBoard draws it."""
    out, average = np.empty(len(values)), 0.0
    for i, value in enumerate(values):
        average = weight * average + (1 - weight) * value
        out[i] = average / (1 - weight ** (i + 1))
    return out


def loss_chart(train_loss: Sequence[float], val_step: Sequence[int], val_mse: Sequence[float], *,
               loss_name: str = "MSE", log_scale: bool = False, pca_mse: float | None = None,
               max_points: int = 500) -> go.Figure:
    """Training loss per step (raw and smoothed), validation MSE per epoch; long runs thinned to max_points."""
    stride = max(1, -(-len(train_loss) // max_points))
    steps = np.arange(1, len(train_loss) + 1)[::stride]
    traces = [
        dict(type="scatter", x=steps, y=np.asarray(train_loss)[::stride], name=f"training {loss_name} (each step)",
             mode="lines", line=dict(color="rgba(31,119,180,0.3)", width=1)),
        dict(type="scatter", x=steps, y=smooth(train_loss)[::stride], name="training, smoothed", mode="lines",
             line=dict(color="#1f77b4", width=2)),
        dict(type="scatter", x=list(val_step), y=list(val_mse), name="validation MSE (each epoch)",
             mode="lines+markers", line=dict(color="#d62728", width=2)),
    ]
    shapes, notes = [], []
    if pca_mse is not None:
        shapes.append(dict(type="line", xref="paper", x0=0, x1=1, y0=pca_mse, y1=pca_mse,
                           line=dict(color="grey", dash="dot")))
        notes.append(dict(xref="paper", x=1, y=pca_mse, text=f"PCA {pca_mse:.4f}", showarrow=False,
                          xanchor="right", yanchor="bottom"))
    return _figure(traces, title=dict(text="Loss"), xaxis=dict(title=dict(text="step")),
                   yaxis=dict(title=dict(text="loss"), type="log" if log_scale else "linear"), shapes=shapes,
                   annotations=notes, height=340, margin=dict(l=5, r=5, t=40, b=5),
                   legend=dict(orientation="h", y=-0.25))


def tile(kernels: np.ndarray, per_row: int) -> np.ndarray:
    """(N, k, k) -> one 2-D array of tiles separated by NaN gaps (drawn as blank)."""
    count, k = len(kernels), kernels.shape[-1]
    rows = -(-count // per_row)
    out = np.full((rows * (k + 1) - 1, per_row * (k + 1) - 1), np.nan, np.float32)
    for i, kernel in enumerate(kernels):
        r, c = divmod(i, per_row)
        out[r * (k + 1):r * (k + 1) + k, c * (k + 1):c * (k + 1) + k] = kernel
    return out


def filters_figure(conv1: np.ndarray, conv2_into: np.ndarray, channel: int, *, per_row: int = 8) -> go.Figure:
    """conv1's kernels (N, 5, 5) above the kernels conv2 applies to make output `channel` (32, 5, 5).

    Each layer is divided by its own largest |weight|, so both share one colour scale centred at zero; hovering
    shows the real weight. One figure, not two: each figure the live view replaces costs the browser ~30 ms of
    CPU a second, taken from the trainer on a small machine.
    """
    k = conv1.shape[-1]
    blocks = [("conv1", f"Conv1: its {len(conv1)} kernels", conv1),
              (f"conv2→{channel}", f"Conv2: the {len(conv2_into)} kernels into channel {channel}", conv2_into)]
    height = -(-len(conv1) // per_row) * (k + 1) - 1
    gap = 4  # rows between the blocks, for the second block's label
    traces, notes = [], []
    for i, (name, label, kernels) in enumerate(blocks):
        top = i * (height + gap)
        grid = tile(kernels, per_row)
        limit = float(np.abs(kernels).max()) or 1.0
        rows, cols = np.indices(grid.shape)
        number = (rows // (k + 1)) * per_row + cols // (k + 1)
        traces.append(dict(type="heatmap", z=grid / limit, y0=top, zmin=-1, zmax=1, zmid=0, colorscale=DIVERGING,
                           customdata=np.stack([number, grid], -1).astype(np.float32), showscale=i == 0,
                           colorbar=dict(thickness=10, title=dict(text="weight / layer's max |weight|", side="right")),
                           hovertemplate=f"{name} kernel %{{customdata[0]}}: %{{customdata[1]:.3f}}<extra></extra>"))
        notes.append(dict(x=-0.5, y=top - 0.6, text=label, showarrow=False, xanchor="left", yanchor="bottom",
                          font=dict(size=12)))
    return _figure(traces, title=dict(text="Learned filters"), annotations=notes,
                   height=90 + round((2 * height + gap) * 6.5), margin=dict(l=5, r=5, t=50, b=5),
                   **SQUARE_AXES)


def comparison_image(originals: np.ndarray, reconstructions: np.ndarray, *, scale: int = 3) -> np.ndarray:
    """Originals (top row) over reconstructions (bottom row) as one uint8 image, each pixel a scale x scale block.

    An image rather than a plotly figure for the live view: the browser shows it for a fraction of the cost.
    """
    grid = sample_grid(originals, reconstructions, per_row=len(originals))
    return (grid.repeat(scale, 0).repeat(scale, 1) * 255).round().clip(0, 255).astype(np.uint8)
