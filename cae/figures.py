"""Figure builders for every page: digits, errors, codes, sample grids, loss curves, filters (plotly, plus one
plain image for the live view). No st.* here."""

from __future__ import annotations

import math
import pickle
import zlib
from collections.abc import Mapping, Sequence

import numpy as np
import plotly.graph_objects as go
import torch
from torchvision.utils import make_grid

GREY = [[0, "black"], [1, "white"]]
ERROR = "Reds"
DIVERGING = "RdBu_r"  # kernels: blue negative, red positive, white at zero
GRID_PAD = 2
# The charts are drawn without Streamlit's theme (see _figure): text and rules in a grey that reads on its light and
# dark themes alike (the theme's own grey for chart text), on a transparent background, in the app's font.
INK = "#808495"
RULE = "rgba(128, 132, 149, 0.3)"
CLEAR = "rgba(0,0,0,0)"
FONT = dict(family='"Source Sans", "Source Sans Pro", sans-serif', size=12, color=INK)


def image_axes(height: int, width: int, *, headroom: float = 0) -> dict:
    """Axes that show a height x width array as an image: square pixels, row 0 at the top, no ticks.

    `headroom` rows above row 0 stay in view for labels anchored there: plotly hides a label whose anchor lies
    outside an axis's explicit range (explicit: see _figure).
    """
    return dict(xaxis=dict(visible=False, range=[-0.5, width - 0.5], constrain="domain"),
                yaxis=dict(visible=False, range=[height - 0.5, -0.5 - headroom], scaleanchor="x", constrain="domain"))


def _plain(value):
    """Arrays as JSON lists (NaN as null), floats to 6 significant digits of the array's largest value."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        nested = value and isinstance(value[0], (dict, list, tuple, np.ndarray))
        return [_plain(v) for v in value] if nested else value
    if not isinstance(value, np.ndarray):
        return value
    if value.dtype.kind != "f":
        return value.tolist()
    value = value.astype(np.float64)  # float32's digits would come back as 0.12349999696...
    finite = np.isfinite(value)
    largest = float(np.abs(value[finite]).max()) if finite.any() else 0.0
    if largest > 0:
        value = np.round(value, max(0, 5 - int(np.floor(np.log10(largest)))))
    return value.tolist() if finite.all() else np.where(finite, value, None).tolist()


def _styled(layout: dict) -> dict:
    """The app's look, under a figure's own layout; margins never grow (see _figure), so each figure sets its own."""
    out = {"font": FONT, "paper_bgcolor": CLEAR, "plot_bgcolor": CLEAR, **layout,
           "margin": {**layout.get("margin", {}), "autoexpand": False}}
    for axis in ("xaxis", "yaxis"):
        out[axis] = {"gridcolor": RULE, "zerolinecolor": RULE, "linecolor": RULE, **layout.get(axis, {})}
    if "title" in layout:
        out["title"] = {"x": 0.01, "xanchor": "left", "font": {"size": 16, "weight": 600}, **layout["title"]}
    return out


def _figure(traces: list[dict], **layout) -> go.Figure:
    """A figure the browser draws once, not three times (pages show it with `theme=None`; see ui.chart).

    Streamlit mounts a new chart whenever a figure changes (the live training view: two a second). After mounting
    it re-renders the chart with a copy of the figure made through JSON; plotly.js then finds "changes" and plots
    everything again: typed arrays (numpy's base64 encoding) come back as objects, a theme template or an empty
    one ({}) as a new object, a reversed autorange as the range plotly wrote back. Here: plain lists, a data
    revision (arrays are then not compared one by one), no template (null), explicit ranges for image axes.
    Margins do not grow to fit labels, legend or colour bar either (each growth is another full plot), and no
    plotly validation (several times faster to build). Measured on the training page in steady training: the
    browser's renderer 0.16 -> 0.12 of a core.
    """
    revision = zlib.crc32(pickle.dumps(traces))  # before _plain: arrays pickle as raw bytes
    traces = _plain(traces)
    figure = go.Figure(data=traces, layout={**_styled(layout), "datarevision": revision}, _validate=False)
    figure.layout.template = None  # after construction: at construction None means plotly's default template
    return figure


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
                   **image_axes(28, width, headroom=1))


def code_chart(code: np.ndarray) -> go.Figure:
    code = np.asarray(code).ravel()
    colours = np.where(code >= 0, "#d62728", "#1f77b4")  # red positive, blue negative
    bars = dict(type="bar", x=np.arange(len(code)), y=code, marker=dict(color=colours),
                hovertemplate="code[%{x}] = %{y:.3f}<extra></extra>")
    return _figure([bars], title=dict(text=f"The code: {len(code)} numbers"), height=220, bargap=0.1,
                   margin=dict(l=45, r=5, t=35, b=40), xaxis=dict(title=dict(text="code index")))


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
    return _figure([heatmap], title=dict(text=title), annotations=notes, height=70 + len(padded) // per_row * 62,
                   margin=dict(l=5, r=5, t=35 if title else 5, b=5), **image_axes(*grid.shape))


def smooth(values: Sequence[float], weight: float = 0.9) -> np.ndarray:
    """Exponential moving average with bias correction, as TensorBoard draws it."""
    out, average = np.empty(len(values)), 0.0
    for i, value in enumerate(values):
        average = weight * average + (1 - weight) * value
        out[i] = average / (1 - weight ** (i + 1))
    return out


TERM_COLOURS = ["#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"]


def loss_chart(train_loss: Sequence[float], val_step: Sequence[int], val_mse: Sequence[float], *,
               loss_name: str = "MSE", log_scale: bool = False, pca_mse: float | None = None,
               total_steps: int | None = None, max_points: int = 500,
               terms: Mapping[str, Sequence[float]] | None = None,
               term_labels: Mapping[str, str] | None = None) -> go.Figure:
    """Training loss per step (raw and smoothed), validation MSE per epoch; long runs thinned to max_points.

    The step axis spans `total_steps` when given: the curve grows into the run's width. `terms` are the parts of
    an objective with more than one (they add up to the loss), drawn smoothed beside it and named by
    `term_labels` (the model type's TERMS).
    """
    stride = max(1, -(-len(train_loss) // max_points))
    steps = np.arange(1, len(train_loss) + 1)[::stride]
    total_label = "training total" if terms else f"training {loss_name}"
    traces = [
        dict(type="scatter", x=steps, y=np.asarray(train_loss)[::stride], name=f"{total_label} (each step)",
             mode="lines", line=dict(color="rgba(31,119,180,0.3)", width=1)),
        dict(type="scatter", x=steps, y=smooth(train_loss)[::stride], name=f"{total_label}, smoothed",
             mode="lines", line=dict(color="#1f77b4", width=2)),
    ]
    for colour, (name, values) in zip(TERM_COLOURS, (terms or {}).items()):
        traces.append(dict(type="scatter", x=steps, y=smooth(values)[::stride], mode="lines",
                           name=f"{(term_labels or {}).get(name, name)}, smoothed", line=dict(color=colour, width=2)))
    traces.append(dict(type="scatter", x=list(val_step), y=list(val_mse),
                       name="validation MSE (per epoch; the last: all digits)",
                       mode="lines+markers", line=dict(color="#d62728", width=2),
                       yaxis="y2" if terms else "y"))
    shapes, notes = [], []
    if pca_mse is not None:
        shapes.append(dict(type="line", xref="paper", x0=0, x1=1, y0=pca_mse, y1=pca_mse,
                           line=dict(color="grey", dash="dot")))
        notes.append(dict(xref="paper", x=1, y=pca_mse, text=f"PCA {pca_mse:.4f}", showarrow=False,
                          xanchor="right", yanchor="bottom"))
    scale = "log" if log_scale else "linear"
    xaxis = dict(title=dict(text="step"))
    yaxis = dict(title=dict(text=f"loss ({loss_name})"), type=scale)
    extra = {}
    if terms:  # an objective in nats per digit and an MSE per pixel need axes of their own
        term_values = [v for values in terms.values() for v in values]
        yaxis["range"] = _value_range([*train_loss, *term_values], log_scale)
        extra["yaxis2"] = dict(title=dict(text="validation MSE"), type=scale, overlaying="y", side="right",
                               showgrid=False, range=_value_range([*val_mse, pca_mse], log_scale))
        if extra["yaxis2"]["range"] is None:
            del extra["yaxis2"]["range"]
        if pca_mse is not None:
            shapes[0]["yref"] = notes[0]["yref"] = "y2"
    else:
        yaxis["range"] = _value_range([*train_loss, *val_mse, pca_mse], log_scale)
    if yaxis["range"] is None:
        del yaxis["range"]
    if train_loss or val_step:  # explicit ranges (see _figure)
        xaxis["range"] = [0, max(total_steps or 0, len(train_loss), max(val_step, default=0)) + 1]
    return _figure(traces, title=dict(text="Loss"), xaxis=xaxis, yaxis=yaxis, shapes=shapes, annotations=notes,
                   height=340, margin=dict(l=60, r=60 if terms else 10, t=40, b=45),
                   legend=dict(x=0.99, y=0.99, xanchor="right", yanchor="top", bgcolor="rgba(128, 132, 149, 0.12)"),
                   **extra)


def _value_range(values: Sequence[float | None], log_scale: bool) -> list[float] | None:
    """An explicit axis range around the finite positive values (None when there are none)."""
    values = [v for v in values if v is not None and math.isfinite(v) and v > 0]
    if not values:
        return None
    low, high = min(values), max(values)
    if log_scale:
        pad = max(0.05, 0.05 * math.log10(high / low))
        return [math.log10(low) - pad, math.log10(high) + pad]
    return [0, high * 1.05]


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
        # Hover text as strings, not customdata pairs: building and sending a list per pixel cost the server
        # ~15 ms a second, holding the GIL the trainer needs.
        hover = [[f"{name} kernel {n}: {w:.3f}" if w == w else "" for n, w in zip(n_row, w_row)]  # NaN: a gap
                 for n_row, w_row in zip(number.tolist(), grid.tolist())]
        traces.append(dict(type="heatmap", z=grid / limit, y0=top, zmin=-1, zmax=1, zmid=0, colorscale=DIVERGING,
                           text=hover, hovertemplate="%{text}<extra></extra>", showscale=i == 0,
                           colorbar=dict(thickness=10, title=dict(text="weight / layer's max |weight|", side="right"))))
        notes.append(dict(x=-0.5, y=top - 0.6, text=label, showarrow=False, xanchor="left", yanchor="bottom",
                          font=dict(size=12)))
    return _figure(traces, title=dict(text="Learned filters"), annotations=notes,
                   height=90 + round((2 * height + gap) * 6.5), margin=dict(l=5, r=75, t=50, b=5),
                   **image_axes(2 * height + gap, grid.shape[1], headroom=0.5))


def comparison_image(originals: np.ndarray, reconstructions: np.ndarray, *, scale: int = 3) -> np.ndarray:
    """Originals (top row) over reconstructions (bottom row) as one uint8 image, each pixel a scale x scale block.

    An image rather than a plotly figure for the live view: the browser shows it for a fraction of the cost.
    """
    grid = sample_grid(originals, reconstructions, per_row=len(originals))
    return (grid.repeat(scale, 0).repeat(scale, 1) * 255).round().clip(0, 255).astype(np.uint8)
