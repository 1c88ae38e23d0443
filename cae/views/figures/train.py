"""The Train page's live view: the loss curves, the learned filters and the reconstructions of a few fixed digits
(an image, not a chart). No st.* here."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import plotly.graph_objects as go

from cae.views.figures.base import DIVERGING, image_axes, sample_grid, stable_figure, tile


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
    """Training loss per step (raw and smoothed), held-out MSE per epoch; long runs thinned to max_points.

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
                       name="held-out MSE (each epoch; the last: all held-out digits)",
                       mode="lines+markers", line=dict(color="#d62728", width=2),
                       yaxis="y2" if terms else "y"))
    shapes, notes = [], []
    if pca_mse is not None:
        shapes.append(dict(type="line", xref="paper", x0=0, x1=1, y0=pca_mse, y1=pca_mse,
                           line=dict(color="grey", dash="dot")))
        # An annotation on a log axis is placed by the value's log10 (a shape by the value itself).
        notes.append(dict(xref="paper", x=1, y=math.log10(pca_mse) if log_scale else pca_mse,
                          text=f"PCA {pca_mse:.4f}", showarrow=False, xanchor="right", yanchor="bottom"))
    scale = "log" if log_scale else "linear"
    xaxis = dict(title=dict(text="step"))
    yaxis = dict(title=dict(text=f"loss ({loss_name})"), type=scale)
    extra = {}
    if terms:  # an objective in nats per digit and an MSE per pixel need axes of their own
        term_values = [v for values in terms.values() for v in values]
        yaxis.update(value_axis([*train_loss, *term_values], log_scale))
        extra["yaxis2"] = dict(title=dict(text="held-out MSE"), type=scale, overlaying="y", side="right",
                               showgrid=False, **value_axis([*val_mse, pca_mse], log_scale))
        if pca_mse is not None:
            shapes[0]["yref"] = notes[0]["yref"] = "y2"
    else:
        yaxis.update(value_axis([*train_loss, *val_mse, pca_mse], log_scale))
    if train_loss or val_step:  # explicit ranges (see stable_figure)
        xaxis["range"] = [0, max(total_steps or 0, len(train_loss), max(val_step, default=0)) + 1]
    if train_loss:
        notes.extend(_start_and_now(steps, smooth(train_loss)[::stride], log_scale))
    # The legend sits below the plot, two entries a row (inside it, it covered the curves); margins never grow by
    # themselves (see stable_figure), so the bottom one is made to fit it.
    bottom = 55 + 22 * -(-len(traces) // 2)
    return stable_figure(traces, title=dict(text="Loss"), xaxis=xaxis, yaxis=yaxis, shapes=shapes, annotations=notes,
                         height=295 + bottom, margin=dict(l=60, r=60 if terms else 10, t=40, b=bottom),
                         legend=dict(orientation="h", x=0, y=-0.2, xanchor="left", yanchor="top"), **extra)


def _start_and_now(steps: np.ndarray, smoothed: np.ndarray, log_scale: bool) -> list[dict]:
    """Where the smoothed training loss started and where it is now, written on the curve."""
    notes = []
    for step, value, label, anchor in ((steps[0], smoothed[0], "start", "left"),
                                       (steps[-1], smoothed[-1], "now", "right")):
        if not math.isfinite(value) or (log_scale and value <= 0):
            continue
        notes.append(dict(x=float(step), y=math.log10(value) if log_scale else float(value),
                          text=f"{label} {_number(value)}", showarrow=False, xanchor=anchor, yanchor="bottom",
                          font=dict(size=11, color="#1f77b4")))
    if len(steps) == 1:
        notes = notes[:1]
    return notes


def _number(value: float, digits: int = 3) -> str:
    """A loss as a person reads it: 3 significant digits, no exponent between 0.001 and 100,000."""
    if value == 0 or 1e-3 <= abs(value) < 1e5:
        decimals = max(0, digits - 1 - math.floor(math.log10(abs(value)))) if value else 0
        return f"{value:,.{decimals}f}"
    return f"{value:.{digits - 1}e}"


def log_ticks(low: float, high: float, most: int = 8) -> list[float]:
    """Tick values for a log axis from low to high that read at a glance: 1-2-5 steps, or every digit when the
    range is under a decade and a half, or evenly spaced values when it is narrower than one digit's step.

    plotly's own choice over a short range labelled ticks "2, 0.1, 9, 8, 7 ... 3, 2": digits without their decade.
    """
    low_decade, high_decade = math.floor(math.log10(low)), math.ceil(math.log10(high))
    for mantissas in ((1,), (1, 2, 5), (1, 2, 3, 4, 5, 6, 7, 8, 9)):
        ticks = [m * 10.0 ** decade for decade in range(low_decade, high_decade + 1) for m in mantissas]
        ticks = [t for t in ticks if low <= t <= high]
        if len(ticks) > most:
            step = -(-len(ticks) // most)
            return ticks[::step]
        if len(ticks) >= 3:
            return ticks
    return list(np.linspace(low, high, 4))


def tick_labels(values: Sequence[float]) -> list[str]:
    """The fewest significant digits (at least 1) that tell every tick from its neighbours."""
    for digits in range(1, 8):
        labels = [_number(v, digits) for v in values]
        if len(set(labels)) == len(labels):
            return labels
    return [_number(v, 8) for v in values]


def value_axis(values: Sequence[float | None], log_scale: bool) -> dict:
    """An explicit range around the finite positive values, with readable ticks on a log axis ({} with none)."""
    axis_range = _value_range(values, log_scale)
    if axis_range is None:
        return {}
    if not log_scale:
        return {"range": axis_range}
    ticks = log_ticks(10 ** axis_range[0], 10 ** axis_range[1])
    return {"range": axis_range, "tickmode": "array", "tickvals": ticks, "ticktext": tick_labels(ticks)}


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
    return stable_figure(traces, title=dict(text="Learned filters"), annotations=notes,
                         height=90 + round((2 * height + gap) * 6.5), margin=dict(l=5, r=75, t=50, b=5),
                         **image_axes(2 * height + gap, grid.shape[1], headroom=0.5))


def comparison_image(originals: np.ndarray, reconstructions: np.ndarray, *, scale: int = 3) -> np.ndarray:
    """Originals (top row) over reconstructions (bottom row) as one uint8 image, each pixel a scale x scale block.

    An image rather than a plotly figure for the live view: the browser shows it for a fraction of the cost.
    """
    grid = sample_grid(originals, reconstructions, per_row=len(originals))
    return (grid.repeat(scale, 0).repeat(scale, 1) * 255).round().clip(0, 255).astype(np.uint8)
