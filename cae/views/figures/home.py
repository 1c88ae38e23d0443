"""The home page's pictures: MNIST digits picked by the visitor, alone or over their reconstructions. No st.* here.

Pictures, not charts (cae.views.figures.pictures): they show nothing on hover, and a page of them opens without
plotly.js.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from cae.views.figures.base import GRID_PAD, digit_tiles, sample_grid
from cae.views.figures.pictures import Drawing, Picture, coloured, fitted

LABEL_BAND = 11  # image rows kept blank above each row of digits for their labels (on the digits they hid the ink)
STEP = 28 + GRID_PAD  # image rows from one row of digits to the next
PIXEL = 2.5  # screen pixels per image pixel at a grid's natural size: a digit about 70 px high
LABEL_SIZE = 11
TITLE_BAND = 30  # screen pixels above a titled grid


@dataclass(frozen=True)
class LabelledGrid:
    """Digits as one image, and where each label goes: in the blank band above its digit."""

    values: np.ndarray  # (rows, cols) in [0, 1]; NaN where nothing is drawn (the bands)
    labels: list[tuple[float, float, str]]  # (column, row, text): the label's left end and middle, in image pixels


def comparison_layout(originals: np.ndarray, reconstructions: np.ndarray, labels: Sequence[str], *,
                      per_row: int = 8) -> LabelledGrid:
    """Originals over their reconstructions, `per_row` samples a row, each labelled (index, MSE) above its digit."""
    pairs = -(-len(originals) // per_row)
    grid = with_label_bands(sample_grid(originals, reconstructions, per_row), [2 * k * STEP for k in range(pairs)])
    return LabelledGrid(grid, _placed(labels, per_row, rows_per_label=2))


def digit_layout(images: np.ndarray, labels: Sequence[str] = (), *, per_row: int = 16) -> LabelledGrid:
    """(N, 28, 28) images in [0, 1], `per_row` a row, each optionally labelled above it."""
    count = len(images)
    rows = -(-count // per_row)
    padded = np.zeros((rows * per_row, 28, 28), np.float32)
    padded[:count] = images
    grid = digit_tiles(padded, per_row)
    if labels:
        grid = with_label_bands(grid, [k * STEP for k in range(rows)])
    return LabelledGrid(grid, _placed(labels, per_row, rows_per_label=1))


def with_label_bands(grid: np.ndarray, above_rows: Sequence[int]) -> np.ndarray:
    """The grid with LABEL_BAND blank (NaN: not drawn) image rows inserted above each of the given image rows."""
    pieces, start = [], 0
    for row in above_rows:
        pieces += [grid[start:row], np.full((LABEL_BAND, grid.shape[1]), np.nan, grid.dtype)]
        start = row
    pieces.append(grid[start:])
    return np.concatenate(pieces)


def _placed(labels: Sequence[str], per_row: int, *, rows_per_label: int) -> list[tuple[float, float, str]]:
    """Label i in the band above digit i."""
    block = rows_per_label * STEP + LABEL_BAND  # image rows from one band to the next
    return [((i % per_row) * STEP + GRID_PAD, (i // per_row) * block + LABEL_BAND / 2 + 1, label)
            for i, label in enumerate(labels)]


def grid_picture(grid: LabelledGrid, *, title: str = "", alt: str = "") -> Picture:
    """The grid's digits sharp on a grey scale, its labels in their bands, its title above."""
    top = TITLE_BAND if title else 0
    rows, cols = grid.values.shape
    drawing = Drawing(cols * PIXEL, top + rows * PIXEL)
    if title:
        drawing.text(2, 20, title, size=fitted(title, drawing.width - 4), bold=True)
    drawing.pixels(coloured(grid.values, "grey", 0, 1), 0, top, cols * PIXEL, rows * PIXEL)
    for column, row, text in grid.labels:
        drawing.text(column * PIXEL, top + row * PIXEL, text, size=LABEL_SIZE, baseline="middle")
    return drawing.picture(alt or title)


def comparison_grid(originals: np.ndarray, reconstructions: np.ndarray, labels: Sequence[str], *,
                    per_row: int = 8, title: str = "") -> Picture:
    return grid_picture(comparison_layout(originals, reconstructions, labels, per_row=per_row), title=title)


def digit_grid(images: np.ndarray, labels: Sequence[str] = (), *, per_row: int = 16, title: str = "") -> Picture:
    return grid_picture(digit_layout(images, labels, per_row=per_row), title=title)
