"""The Compare runs page's figures: loss curves overlaid against digits seen, validation MSE per epoch, and the same
digits reconstructed by each model, one row a model. No st.* here."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import plotly.graph_objects as go

from cae.views.figures.base import GREY, image_axes, stable_figure
from cae.views.figures.train import smooth, tick_labels, value_axis

COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
           "#17becf"]
GAP = 3  # pixels between digits
ROW_PIXELS = 56  # screen pixels per row of digits: twice MNIST's size


def thinned(xs: Sequence[float], ys: Sequence[float], most: int = 400) -> tuple[list, list]:
    """At most `most` evenly spaced points of a curve, its last point kept."""
    if len(xs) <= most:
        return list(xs), list(ys)
    picks = np.unique(np.linspace(0, len(xs) - 1, most).round().astype(int))
    return [xs[i] for i in picks], [ys[i] for i in picks]


@dataclass(frozen=True)
class LossSeries:
    """One line of the loss chart: a model's total loss or one of its objective's terms, against digits seen."""

    label: str
    samples: Sequence[int]
    values: Sequence[float | None]  # None where the term was not recorded
    model_index: int  # the model's colour
    term_index: int = 0  # 0 for the total (a solid line); terms get dashes of their own


DASHES = ["solid", "dash", "dot", "dashdot", "longdash"]


def loss_curves(series: Sequence[LossSeries], *, log_scale: bool = True) -> go.Figure:
    """Each model's training loss (smoothed as TensorBoard does), and the terms chosen, against the digits it had
    trained on; a log axis gets ticks that read at a glance (cae.views.figures.train.value_axis)."""
    traces, shown_values, shown_samples = [], [], []
    for line in series:
        points = [(x, y) for x, y in zip(line.samples, line.values) if y is not None and x > 0]
        if not points:
            continue
        xs, ys = thinned([x for x, _ in points], list(smooth([y for _, y in points])))
        shown_values += ys
        shown_samples += xs
        traces.append(dict(type="scatter", mode="lines", name=line.label, x=xs, y=ys,
                           line=dict(color=COLOURS[line.model_index % len(COLOURS)], width=2,
                                     dash=DASHES[line.term_index % len(DASHES)]),
                           hovertemplate=f"{line.label}<br>%{{x:,}} digits: %{{y:.4g}}<extra></extra>"))
    return stable_figure(traces, title=dict(text="Training loss against digits seen (smoothed)"), height=380,
                         margin=dict(l=60, r=10, t=40, b=45), legend=dict(orientation="h", y=-0.25),
                         xaxis=dict(title=dict(text="digits trained on"), type="log",
                                    **value_axis(shown_samples, log_scale=True)),
                         yaxis=dict(title=dict(text="loss"), type="log" if log_scale else "linear",
                                    **value_axis(shown_values, log_scale)))


def validation_curves(curves: Sequence[tuple[str, Sequence[int], Sequence[float]]]) -> go.Figure:
    """Each model's validation MSE per pixel at the end of each epoch."""
    traces = [dict(type="scatter", mode="lines+markers", name=label, x=list(epochs), y=list(values),
                   line=dict(color=COLOURS[index % len(COLOURS)], width=2),
                   hovertemplate=f"{label}<br>epoch %{{x}}: %{{y:.4f}}<extra></extra>")
              for index, (label, epochs, values) in enumerate(curves) if values]
    return stable_figure(traces, title=dict(text="Validation MSE per pixel per epoch"), height=320,
                         margin=dict(l=60, r=10, t=40, b=45), legend=dict(orientation="h", y=-0.3),
                         xaxis=dict(title=dict(text="epoch"), dtick=1), yaxis=dict(title=dict(text="MSE per pixel")))


def reconstruction_rows(rows: Sequence[tuple[str, np.ndarray]], *, title: str) -> go.Figure:
    """Rows of (N, 28, 28) digits, one row a model (the originals first), each row named on the left."""
    count = max(len(images) for _, images in rows)
    width = count * (28 + GAP) - GAP
    height = len(rows) * (28 + GAP) - GAP
    canvas = np.full((height, width), np.nan, np.float32)
    for row, (_, images) in enumerate(rows):
        for column, image in enumerate(images):
            top, left = row * (28 + GAP), column * (28 + GAP)
            canvas[top:top + 28, left:left + 28] = image
    axes = image_axes(height, width)
    axes["yaxis"].update(visible=True, showgrid=False, zeroline=False, ticks="",
                         tickvals=[row * (28 + GAP) + 13.5 for row in range(len(rows))],
                         ticktext=[label for label, _ in rows])
    trace = dict(type="heatmap", z=canvas, zmin=0, zmax=1, colorscale=GREY, showscale=False,
                 hovertemplate="%{z:.3f}<extra></extra>")
    return stable_figure([trace], title=dict(text=title), height=45 + ROW_PIXELS * len(rows),
                         margin=dict(l=260, r=5, t=35, b=5), **axes)


def sweep_chart(setting: str, runs: Sequence[tuple[str, object, float]], *, log_x: bool,
                pca: Sequence[tuple[int, float]] = ()) -> go.Figure:
    """Each run's held-out MSE against its value of the swept setting (runs: label, value, MSE), and PCA's at the
    same code sizes beside them for a code-size sweep: the bottleneck curve."""
    ordered = sorted(runs, key=lambda run: run[1]) if all(isinstance(run[1], (int, float)) for run in runs) \
        else list(runs)
    traces = [dict(type="scatter", mode="lines+markers", name="autoencoder runs",
                   x=[value if isinstance(value, (int, float)) and not isinstance(value, bool) else str(value)
                      for _, value, _ in ordered],
                   y=[mse for _, _, mse in ordered], text=[label for label, _, _ in ordered],
                   line=dict(color=COLOURS[0], width=2), marker=dict(size=9),
                   hovertemplate="%{text}<br>" + setting + " %{x}: MSE %{y:.4f}<extra></extra>")]
    if pca:
        traces.append(dict(type="scatter", mode="lines+markers", name="PCA, as many components",
                           x=[size for size, _ in pca], y=[mse for _, mse in pca],
                           line=dict(color=COLOURS[1], width=2, dash="dash"), marker=dict(size=7),
                           hovertemplate="PCA, %{x} components: MSE %{y:.4f}<extra></extra>"))
    values = [mse for *_, mse in runs] + [mse for _, mse in pca]
    xaxis = dict(title=dict(text=setting))
    if log_x:
        ticks = sorted({value for _, value, _ in runs} | {size for size, _ in pca})  # the values swept, by name
        xaxis.update(type="log", tickmode="array", tickvals=ticks, ticktext=tick_labels(ticks))
    return stable_figure(traces, title=dict(text=f"Held-out MSE against {setting}"), height=340,
                         margin=dict(l=60, r=10, t=40, b=45), legend=dict(orientation="h", y=-0.3), xaxis=xaxis,
                         yaxis=dict(title=dict(text="held-out MSE per pixel"), type="log",
                                    **value_axis(values, log_scale=True)))
