"""Figure builders for the "How it works" page: stage maps, the architecture diagram, the two computations of a
transposed convolution side by side, and the step-through's small numbered grids. No st.* here.

Built on cae.views.figures.base and its conventions (see stable_figure): plain lists, a data revision, no
template, explicit ranges for image axes and fixed margins, so the browser plots each chart once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import plotly.graph_objects as go

from cae.views.figures.base import DIVERGING, GREY, INK, RULE, image_axes, stable_figure, tile
from cae.views.inside import Box, GatherStep, ScatterStep, shape_text

HIGHLIGHT = "#ffb000"  # the output cell followed in every view
OUTLINE = "#2ca02c"  # the stamp or window in play
CODE_COLOUR = "#ffd54f"
ENCODER_COLOUR = "rgba(31, 119, 180, 0.18)"
DECODER_COLOUR = "rgba(214, 39, 40, 0.15)"
VECTOR_WIDTH = 32  # vectors (512 features, the code) drawn as rows of 32 cells


def _limit(values: np.ndarray) -> float:
    finite = np.abs(values[np.isfinite(values)])
    return float(finite.max()) if finite.size and finite.max() > 0 else 1.0


def stage_grid(values: np.ndarray) -> np.ndarray:
    """A stage's values for one digit as one 2-D array: maps tiled 8 a row, a vector in rows of 32 (NaN is blank)."""
    if values.ndim == 1:
        rows = -(-len(values) // VECTOR_WIDTH)
        grid = np.full(rows * VECTOR_WIDTH, np.nan, np.float32)
        grid[:len(values)] = values
        return grid.reshape(rows, VECTOR_WIDTH)
    if len(values) == 1:
        return values[0]
    return tile(values, per_row=8)


def stage_figure(name: str, values: np.ndarray, *, image: bool = False) -> go.Figure:
    """One stage: its maps (or vector) with its shape in the title; `image` for values in [0, 1] (grey)."""
    grid = stage_grid(values)
    if image:
        colours = dict(zmin=0, zmax=1, colorscale=GREY)
    else:
        limit = _limit(grid)
        colours = dict(zmin=-limit, zmax=limit, zmid=0, colorscale=DIVERGING)
    heatmap = dict(type="heatmap", z=grid, showscale=False, hovertemplate="%{z:.3f}<extra></extra>", **colours)
    rows, cols = grid.shape
    plot_height = int(np.clip(200 * rows / cols, 16, 170))  # a quarter of the page: ~170 px centred, ~300 wide
    return stable_figure([heatmap], title=dict(text=f"{name} · {shape_text(values.shape)}", font=dict(size=13)),
                         height=plot_height + 40, margin=dict(l=5, r=5, t=32, b=8), **image_axes(rows, cols))


def _params_text(box: Box) -> str:
    if box.tied == box.untied:
        return f"{box.tied:,} params" if box.tied else "no params"
    return f"{box.tied:,} tied<br>{box.untied:,} untied"


def architecture_figure(encoder: Sequence[Box], decoder: Sequence[Box], *, tied: bool,
                        other: Sequence[Box] = ()) -> go.Figure:
    """The encoder left to right on top, the decoder right to left beneath it, so each decoder stage sits under
    the encoder stage of the same shape: the mirror the post describes. `other`: layers no stage names."""
    width, gap = 1.0, 0.3
    step = width + gap
    columns = max(len(encoder), len(decoder))
    shapes, notes = [], []
    placed = [(box, index, 0) for index, box in enumerate(encoder)]
    placed += [(box, len(decoder) - 1 - index, 1) for index, box in enumerate(decoder)]
    for box, column, row in placed:
        x0, y0 = column * step, row * 1.6
        is_code = row == 0 and column == len(encoder) - 1
        fill = CODE_COLOUR if is_code else (ENCODER_COLOUR if row == 0 else DECODER_COLOUR)
        shapes.append(dict(type="rect", x0=x0, x1=x0 + width, y0=y0, y1=y0 + 1, fillcolor=fill,
                           line=dict(color=RULE), layer="below"))
        notes.append(dict(x=x0 + width / 2, y=y0 + 0.5, showarrow=False, font=dict(size=11),
                          text=f"<b>{box.stage}</b><br>{box.shape}<br>{_params_text(box)}"))
    for a, b in zip(placed, placed[1:]):
        (_, column_a, row_a), (_, column_b, row_b) = a, b
        start = (column_a * step + width / 2, row_a * 1.6 + 1) if row_b != row_a else \
            (column_a * step + (width if column_b > column_a else 0), row_a * 1.6 + 0.5)
        end = (column_b * step + width / 2, row_b * 1.6) if row_b != row_a else \
            (column_b * step + (0 if column_b > column_a else width), row_b * 1.6 + 0.5)
        notes.append(dict(x=end[0], y=end[1], ax=start[0], ay=start[1], xref="x", yref="y", axref="x", ayref="y",
                          text="", showarrow=True, arrowhead=2, arrowsize=1, arrowwidth=1.2, arrowcolor=INK))
    every = [*encoder, *decoder, *other]
    tied_total, untied_total = sum(b.tied for b in every), sum(b.untied for b in every)
    chosen = "tied" if tied else "untied"
    title = (f"The network: {tied_total:,} parameters with tied weights, {untied_total:,} untied "
             f"(this model: {chosen})")
    if other:
        title += " · also " + ", ".join(f"{b.stage} {_params_text(b)}" for b in other)
    return stable_figure([], title=dict(text=title), shapes=shapes, annotations=notes, height=300,
                         margin=dict(l=5, r=5, t=40, b=5),
                         xaxis=dict(visible=False, range=[-0.1, columns * step - gap + 0.1]),
                         yaxis=dict(visible=False, range=[2.7, -0.1]))


@dataclass
class Panel:
    """One numbered grid of a step-through figure."""

    title: str
    values: np.ndarray  # (rows, cols)
    numbers: bool | np.ndarray = True  # write each value in its cell, or in the cells a boolean mask marks
    grey: bool = False  # values in [0, 1] (a digit) on the grey scale; else blue-white-red around zero
    boxes: list[tuple[int, int, int, int, str]] = field(default_factory=list)  # (row, col, rows, cols, colour)


def panels_figure(panels: Sequence[Panel], *, title: str, height: int = 330, digits: int = 2,
                  gap: float = 1.5) -> go.Figure:
    """Small grids side by side on one pair of axes (one trace each), numbers in the cells, boxes around cells."""
    traces, shapes, notes = [], [], []
    left = 0.0
    rows = max(p.values.shape[0] for p in panels)
    for panel in panels:
        values = np.asarray(panel.values, np.float64)
        limit = _limit(values)
        colours = dict(zmin=0, zmax=1, colorscale=GREY) if panel.grey else \
            dict(zmin=-limit, zmax=limit, zmid=0, colorscale=DIVERGING)
        trace = dict(type="heatmap", z=values, x0=left, dx=1, y0=0, dy=1, showscale=False,
                     hovertemplate="%{z:.4f}<extra></extra>", **colours)
        if panel.numbers is not False:
            shown = np.broadcast_to(np.asarray(panel.numbers, bool), values.shape).tolist()
            trace["text"] = [[f"{v:.{digits}f}".replace("-0.00", "0.00") if keep else "" for v, keep in zip(row, mask)]
                             for row, mask in zip(values.tolist(), shown)]
            trace["texttemplate"] = "%{text}"
            trace["textfont"] = dict(size=9)
        traces.append(trace)
        notes.append(dict(x=left - 0.5, y=-0.7, text=panel.title, showarrow=False, xanchor="left",
                          yanchor="bottom", font=dict(size=12)))
        for row, col, box_rows, box_cols, colour in panel.boxes:
            shapes.append(dict(type="rect", x0=left + col - 0.5, x1=left + col + box_cols - 0.5, y0=row - 0.5,
                               y1=row + box_rows - 0.5, line=dict(color=colour, width=3)))
        left += values.shape[1] + gap
    width = left - gap
    return stable_figure(traces, title=dict(text=title, font=dict(size=14)), shapes=shapes, annotations=notes,
                         height=height, margin=dict(l=5, r=5, t=58, b=5), **image_axes(rows, width, headroom=1.6))


def comparison_figure(by_transpose: np.ndarray, by_full_conv: np.ndarray, *, layer: str, channel: int) -> go.Figure:
    """One output channel computed both ways and their difference, all three on the values' own scale.

    The difference keeps the values' scale: scaled to its own maximum (rounding, ~1e-15) it looked like a large
    speckled difference. At this scale rounding is blank, and the panel's title gives its size.
    """
    difference = np.abs(by_transpose - by_full_conv)
    limit = _limit(np.stack([by_transpose, by_full_conv]))
    size = by_transpose.shape[0]
    gap = max(2, size // 4)
    traces = []
    titles = ["conv_transpose2d", "full conv, rotated", difference_title(float(difference.max()), limit)]
    for index, values in enumerate((by_transpose, by_full_conv)):
        traces.append(dict(type="heatmap", z=values, x0=index * (size + gap), dx=1, zmin=-limit, zmax=limit, zmid=0,
                           colorscale=DIVERGING, showscale=False, hovertemplate="%{z:.5f}<extra></extra>"))
    traces.append(dict(type="heatmap", z=difference, x0=2 * (size + gap), dx=1, zmin=0, zmax=limit,
                       colorscale="Greys", showscale=False, hovertemplate="%{z:.2e}<extra></extra>"))
    notes = [dict(x=index * (size + gap) - 0.5, y=-0.6, text=text, showarrow=False, xanchor="left",
                  yanchor="bottom", font=dict(size=11)) for index, text in enumerate(titles)]
    shape = shape_text(by_transpose.shape)
    return stable_figure(traces, title=dict(text=f"{layer}, output channel {channel} ({shape}), before its activation",
                                            font=dict(size=14)),
                         annotations=notes, height=240, margin=dict(l=5, r=5, t=58, b=5),
                         **image_axes(size, 3 * size + 2 * gap, headroom=max(2.0, size * 0.18)))


def difference_title(largest: float, scale: float) -> str:
    """What the difference panel shows, in words: identical up to rounding, or how large the difference is."""
    if largest == 0:
        return "|difference|: none"
    if largest < 1e-6 * scale:  # far below anything the values' colour scale can show
        return f"|difference|: identical to {largest:.0e}"
    return f"|difference|: up to {largest:.2g}"


def kernels_figure(stored: np.ndarray, *, title: str, per_row: int = 16) -> go.Figure:
    """(N, k, k) kernels as stored above the same kernels rotated 180 degrees (what the full convolution uses)."""
    k = stored.shape[-1]
    rotated = np.rot90(stored, 2, axes=(1, 2))
    blocks = [("as stored", stored), ("rotated 180°: what the full convolution uses", rotated)]
    block_rows = -(-len(stored) // per_row) * (k + 1) - 1
    gap = 8  # rows between the blocks, room for the second block's label
    limit = _limit(stored)
    traces, notes = [], []
    for index, (label, kernels) in enumerate(blocks):
        top = index * (block_rows + gap)
        traces.append(dict(type="heatmap", z=tile(kernels, per_row), y0=top, zmin=-limit, zmax=limit, zmid=0,
                           colorscale=DIVERGING, showscale=False, hovertemplate="%{z:.3f}<extra></extra>"))
        notes.append(dict(x=-0.5, y=top - 0.5, text=label, showarrow=False, xanchor="left", yanchor="bottom",
                          font=dict(size=11)))
    rows = 2 * block_rows + gap
    cols = per_row * (k + 1) - 1
    return stable_figure(traces, title=dict(text=title, font=dict(size=13)), annotations=notes, height=200,
                         margin=dict(l=5, r=5, t=36, b=5), **image_axes(rows, cols, headroom=6))


def scatter_figure(inputs: np.ndarray, kernel: np.ndarray, step: ScatterStep) -> go.Figure:
    """Scatter view: the input cell whose stamp completes the followed cell, its stamp, and the sum so far."""
    k = kernel.shape[0]
    (row, col), (a, b) = step.cell, step.source
    reaching = [(r, c, 1, 1, HIGHLIGHT) for r, c, _, _ in step.terms]
    panels = [Panel("input", inputs, boxes=[*reaching, (a, b, 1, 1, OUTLINE)]),
              Panel("kernel as stored", kernel),
              Panel(f"stamp = {inputs[a, b]:.2f} × kernel", step.stamp),
              Panel("stamps added so far", step.partial,
                    boxes=[(a, b, k, k, OUTLINE), (row, col, 1, 1, HIGHLIGHT)])]
    return panels_figure(panels, title=f"Scatter (transposed convolution): stamps of input cells up to ({a}, {b})")


def gather_figure(step: GatherStep, *, full: bool, inputs_title: str = "input", digit: bool = False) -> go.Figure:
    """Gather view: one window of the (padded) input times the kernel used, summed into the followed cell.
    `digit`: the input is a patch of the digit (values in [0, 1], drawn grey)."""
    k = step.kernel.shape[0]
    row, col = step.cell
    pad = step.pad
    inside_input = [(pad, pad, step.padded.shape[0] - 2 * pad, step.padded.shape[1] - 2 * pad, RULE)] if pad else []
    in_window = np.zeros(step.padded.shape, bool)
    in_window[row:row + k, col:col + k] = True
    this_cell = np.zeros(step.output.shape, bool)
    this_cell[row, col] = True
    panels = [Panel(f"{inputs_title} + {pad} zeros around" if full else inputs_title, step.padded,
                    numbers=in_window if full else True, grey=digit, boxes=[*inside_input, (row, col, k, k, OUTLINE)]),
              Panel("kernel rotated 180°" if full else "kernel as stored", step.kernel),
              Panel("window × kernel", step.products),
              Panel("output", step.output, numbers=this_cell if full else True,
                    boxes=[(row, col, 1, 1, HIGHLIGHT)])]
    what = "Gather (full convolution, rotated kernel)" if full else "The encoder's valid convolution (no padding)"
    return panels_figure(panels, title=f"{what}: output cell ({row}, {col}) = sum of window × kernel")


def upscale_figure(source: np.ndarray, upscaled: np.ndarray) -> go.Figure:
    """Nearest-neighbour upscaling: each value copied into a 2x2 block; nothing learned, nothing added."""
    factor = upscaled.shape[0] // source.shape[0]
    blocks = [(r * factor, c * factor, factor, factor, OUTLINE) for r in range(source.shape[0])
              for c in range(source.shape[1])]
    panels = [Panel("deconv2 output", source), Panel(f"upscaled ×{factor}", upscaled, boxes=blocks)]
    return panels_figure(panels, title="Nearest-neighbour upscaling: copies, no weights", height=200, gap=3)
