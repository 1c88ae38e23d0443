"""The pictures of the "How it works" page: stage maps, the architecture diagram, the two computations of a
transposed convolution side by side, and the step-through's small numbered grids. No st.* here.

Pictures, not charts (cae.views.figures.pictures): the page shows 22 of them, and as charts the browser plotted all
of them in one long task, after loading plotly.js, before the first one appeared. What they lose is the hover
value of each cell; the step-through writes its numbers in the cells.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from cae.views.figures.base import INK, RULE, tile
from cae.views.figures.pictures import Drawing, Picture, coloured, fitted
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


STAGE_WIDTH = 240  # screen pixels of a stage picture at its natural size: about a quarter of the page
STAGE_HEIGHT = 170  # the most a stage's maps take
CELL = 30  # screen pixels of a step-through cell: room for a number such as -0.12


def stage_figure(name: str, values: np.ndarray, *, image: bool = False) -> Picture:
    """One stage: its maps (or vector) with its shape in the title; `image` for values in [0, 1] (grey).

    Other stages go from blue (negative) through white (zero) to red (positive), up to their largest absolute
    value, which the title gives (a chart gave each cell's value on hover; this is the scale to read them by).
    """
    grid = stage_grid(values)
    rows, cols = grid.shape
    title = f"{name} · {shape_text(values.shape)}"
    if image:
        rgba = coloured(grid, "grey", 0, 1)
        scale = "ink from 0 to 1"
    else:
        limit = _limit(grid)
        rgba = coloured(grid, "diverging", -limit, limit)
        scale = f"blue -{limit:.3g}, white 0, red +{limit:.3g}"
        title += f" · ±{limit:.2g}"
    pixel = min(STAGE_WIDTH / cols, STAGE_HEIGHT / rows)
    height = max(rows * pixel, 16)  # a vector of one row (the code) is drawn 16 pixels high, not a hairline
    band = 26
    drawing = Drawing(STAGE_WIDTH, band + height)
    drawing.text(2, 17, title, size=fitted(title, STAGE_WIDTH - 4, 13), bold=True)
    drawing.pixels(rgba, (STAGE_WIDTH - cols * pixel) / 2, band, cols * pixel, height)
    return drawing.picture(f"{title}: {scale}")


def _params_lines(box: Box) -> list[str]:
    if box.tied == box.untied:
        return [f"{box.tied:,} params" if box.tied else "no params"]
    return [f"{box.tied:,} tied", f"{box.untied:,} untied"]


def architecture_figure(encoder: Sequence[Box], decoder: Sequence[Box], *, tied: bool,
                        other: Sequence[Box] = (), width: int = 1000) -> Picture:
    """The encoder left to right on top, the decoder right to left beneath it, so each decoder stage sits under
    the encoder stage of the same shape: the mirror the post describes. `other`: layers no stage names."""
    box_width, gap, row_step = 1.0, 0.3, 1.6  # in box units: a box is 1 x 1
    step = box_width + gap
    columns = max(len(encoder), len(decoder))
    top, x_unit, y_unit = 44, width / (columns * step - gap + 0.2), 88
    drawing = Drawing(width, top + (row_step + 1) * y_unit + 6)

    def at(x: float, y: float) -> tuple[float, float]:
        return (x + 0.1) * x_unit, top + y * y_unit

    every = [*encoder, *decoder, *other]
    tied_total, untied_total = sum(b.tied for b in every), sum(b.untied for b in every)
    title = (f"The network: {tied_total:,} parameters with tied weights, {untied_total:,} untied "
             f"(this model: {'tied' if tied else 'untied'})")
    if other:
        title += " · also " + ", ".join(f"{b.stage} {' / '.join(_params_lines(b))}" for b in other)
    drawing.text(4, 22, title, size=fitted(title, width - 8), bold=True)
    placed = [(box, index, 0) for index, box in enumerate(encoder)]
    placed += [(box, len(decoder) - 1 - index, 1) for index, box in enumerate(decoder)]
    for box, column, row in placed:
        x0, y0 = at(column * step, row * row_step)
        is_code = row == 0 and column == len(encoder) - 1
        fill = CODE_COLOUR if is_code else (ENCODER_COLOUR if row == 0 else DECODER_COLOUR)
        drawing.rect(x0, y0, box_width * x_unit, y_unit, fill=fill, stroke=RULE)
        lines = [box.stage, box.shape, *_params_lines(box)]
        first = y0 + y_unit / 2 - (len(lines) - 1) * 7
        for number, line in enumerate(lines):
            drawing.text(x0 + box_width * x_unit / 2, first + number * 14, line, size=11, anchor="middle",
                         baseline="middle", bold=number == 0, colour="#31333f" if is_code else INK)
    for (_, column_a, row_a), (_, column_b, row_b) in zip(placed, placed[1:]):
        if row_b != row_a:  # down from the code's box to the decoder's first
            start = at(column_a * step + box_width / 2, row_a * row_step + 1)
            end = at(column_b * step + box_width / 2, row_b * row_step)
        else:
            rightwards = column_b > column_a
            start = at(column_a * step + (box_width if rightwards else 0), row_a * row_step + 0.5)
            end = at(column_b * step + (0 if rightwards else box_width), row_b * row_step + 0.5)
        drawing.line(*start, *end, stroke=INK, stroke_width=1.2, arrow=True)
    return drawing.picture(title)


@dataclass
class Panel:
    """One numbered grid of a step-through figure."""

    title: str
    values: np.ndarray  # (rows, cols)
    numbers: bool | np.ndarray = True  # write each value in its cell, or in the cells a boolean mask marks
    grey: bool = False  # values in [0, 1] (a digit) on the grey scale; else blue-white-red around zero
    boxes: list[tuple[int, int, int, int, str]] = field(default_factory=list)  # (row, col, rows, cols, colour)


def _ink_on(rgb: np.ndarray) -> str:
    """Black or white, whichever reads on a cell of this colour."""
    luminance = 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]
    return "#000000" if luminance > 140 else "#ffffff"


def panels_figure(panels: Sequence[Panel], *, title: str, digits: int = 2, gap: float = 1.5,
                  cell: float = CELL) -> Picture:
    """Small grids side by side, numbers in the cells, boxes around cells, each grid titled above."""
    rows = max(p.values.shape[0] for p in panels)
    width = (sum(p.values.shape[1] for p in panels) + gap * (len(panels) - 1)) * cell
    top = 50
    drawing = Drawing(width, top + rows * cell + 4)
    drawing.text(2, 18, title, size=fitted(title, width - 4, 14), bold=True)
    left = 0.0
    for panel in panels:
        values = np.asarray(panel.values, np.float64)
        limit = _limit(values)
        scale, low, high = ("grey", 0, 1) if panel.grey else ("diverging", -limit, limit)
        rgba = coloured(values, scale, low, high)
        panel_rows, panel_cols = values.shape
        drawing.pixels(rgba, left, top, panel_cols * cell, panel_rows * cell)
        drawing.text(left, top - 8, panel.title, size=fitted(panel.title, max(panel_cols * cell, 4 * cell), 12))
        if panel.numbers is not False:
            shown = np.broadcast_to(np.asarray(panel.numbers, bool), values.shape)
            for (row, col), value in np.ndenumerate(values):
                if shown[row, col]:
                    text = f"{value:.{digits}f}".replace("-0.00", "0.00")
                    drawing.text(left + (col + 0.5) * cell, top + (row + 0.5) * cell, text, size=9, anchor="middle",
                                 baseline="central", colour=_ink_on(rgba[row, col, :3]))
        for row, col, box_rows, box_cols, colour in panel.boxes:
            drawing.rect(left + col * cell, top + row * cell, box_cols * cell, box_rows * cell, stroke=colour,
                         stroke_width=3)
        left += (panel_cols + gap) * cell
    return drawing.picture(f"{title}: " + "; ".join(panel.title for panel in panels))


def comparison_figure(by_transpose: np.ndarray, by_full_conv: np.ndarray, *, layer: str, channel: int,
                      width: int = 480) -> Picture:
    """One output channel computed both ways and their difference, all three on the values' own scale.

    The difference keeps the values' scale (white to black from zero to the values' largest): scaled to its own
    maximum (rounding, ~1e-15) it looked like a large speckled difference. At this scale rounding is blank, and the
    panel's title gives its size.
    """
    difference = np.abs(by_transpose - by_full_conv)
    limit = _limit(np.stack([by_transpose, by_full_conv]))
    size = by_transpose.shape[0]
    gap = max(2, size // 4)
    pixel = width / (3 * size + 2 * gap)
    top = 58
    drawing = Drawing(width, top + size * pixel + 4)
    title = f"{layer}, output channel {channel} ({shape_text(by_transpose.shape)}), before its activation"
    drawing.text(2, 18, title, size=fitted(title, width - 4, 14), bold=True)
    panels = [("conv_transpose2d", coloured(by_transpose, "diverging", -limit, limit)),
              ("full conv, rotated", coloured(by_full_conv, "diverging", -limit, limit)),
              (difference_title(float(difference.max()), limit), coloured(difference, "greys", 0, limit))]
    for index, (text, rgba) in enumerate(panels):
        left = index * (size + gap) * pixel
        drawing.pixels(rgba, left, top, size * pixel, size * pixel)
        drawing.rect(left, top, size * pixel, size * pixel, stroke=RULE)  # a blank difference still shows its square
        lines = text.split(": ", 1)
        lines = [f"{lines[0]}:", lines[1]] if len(lines) == 2 else lines
        for number, line in enumerate(lines):
            drawing.text(left, top - 6 - (len(lines) - 1 - number) * 14, line, size=11)
    return drawing.picture(f"{title}: " + "; ".join(text for text, _ in panels))


def difference_title(largest: float, scale: float) -> str:
    """What the difference panel shows, in words: identical up to rounding, or how large the difference is."""
    if largest == 0:
        return "|difference|: none"
    if largest < 1e-6 * scale:  # far below anything the values' colour scale can show
        return f"|difference|: identical to {largest:.0e}"
    return f"|difference|: up to {largest:.2g}"


def kernels_figure(stored: np.ndarray, *, title: str, per_row: int = 16, width: int = 480) -> Picture:
    """(N, k, k) kernels as stored above the same kernels rotated 180 degrees (what the full convolution uses)."""
    k = stored.shape[-1]
    rotated = np.rot90(stored, 2, axes=(1, 2))
    blocks = [("as stored", stored), ("rotated 180°: what the full convolution uses", rotated)]
    limit = _limit(stored)
    cols = per_row * (k + 1) - 1
    pixel = width / cols
    block_height = (-(-len(stored) // per_row) * (k + 1) - 1) * pixel
    top, label = 26, 18
    drawing = Drawing(width, top + 2 * (label + block_height) + 12)
    drawing.text(2, 17, title, size=fitted(title, width - 4, 13), bold=True)
    for index, (text, kernels) in enumerate(blocks):
        y = top + index * (label + block_height + 8) + label
        drawing.text(0, y - 5, text, size=11)
        grid = tile(kernels, per_row)
        drawing.pixels(coloured(grid, "diverging", -limit, limit), 0, y, grid.shape[1] * pixel,
                       grid.shape[0] * pixel)
    return drawing.picture(f"{title}: as stored, and rotated 180°")
def scatter_figure(inputs: np.ndarray, kernel: np.ndarray, step: ScatterStep) -> Picture:
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


def gather_figure(step: GatherStep, *, full: bool, inputs_title: str = "input", digit: bool = False) -> Picture:
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


def upscale_figure(source: np.ndarray, upscaled: np.ndarray) -> Picture:
    """Nearest-neighbour upscaling: each value copied into a 2x2 block; nothing learned, nothing added."""
    factor = upscaled.shape[0] // source.shape[0]
    blocks = [(r * factor, c * factor, factor, factor, OUTLINE) for r in range(source.shape[0])
              for c in range(source.shape[1])]
    panels = [Panel("deconv2 output", source), Panel(f"upscaled ×{factor}", upscaled, boxes=blocks)]
    return panels_figure(panels, title="Nearest-neighbour upscaling: copies, no weights", gap=3)
