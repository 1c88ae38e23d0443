"""What every page's figures share: the look (colours, font, JSON-stable figures drawn without Streamlit's theme),
image axes, grids of digits and tiles of kernels. No st.* here. Digits side by side and the code as bars are
pictures (cae.views.figures.pictures)."""

from __future__ import annotations

import pickle
import zlib

import numpy as np
import plotly.graph_objects as go

GREY = [[0, "black"], [1, "white"]]
DIVERGING = "RdBu_r"  # kernels: blue negative, red positive, white at zero
GRID_PAD = 2  # image pixels of frame around and between the digits of a grid
GRID_FRAME = 0.35  # the frame's grey, on the digits' scale of 0 (black) to 1 (white)
# The charts are drawn without Streamlit's theme (see stable_figure): text and rules in a grey that reads on its light
# and dark themes alike (the theme's own grey for chart text), on a transparent background, in the app's font.
INK = "#808495"
RULE = "rgba(128, 132, 149, 0.3)"
CLEAR = "rgba(0,0,0,0)"
FONT = dict(family='"Source Sans", "Source Sans Pro", sans-serif', size=12, color=INK)


def image_axes(height: int, width: int, *, headroom: float = 0) -> dict:
    """Axes that show a height x width array as an image: square pixels, row 0 at the top, no ticks.

    `headroom` rows above row 0 stay in view for labels anchored there: plotly hides a label whose anchor lies
    outside an axis's explicit range (explicit: see stable_figure).
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
    """The app's look, under a figure's own layout; margins never grow (see stable_figure): each figure sets its own."""
    out = {"font": FONT, "paper_bgcolor": CLEAR, "plot_bgcolor": CLEAR, **layout,
           "margin": {**layout.get("margin", {}), "autoexpand": False}}
    for axis in ("xaxis", "yaxis"):
        out[axis] = {"gridcolor": RULE, "zerolinecolor": RULE, "linecolor": RULE, **layout.get(axis, {})}
    if "title" in layout:
        out["title"] = {"x": 0.01, "xanchor": "left", "font": {"size": 16, "weight": 600}, **layout["title"]}
    return out


def stable_figure(traces: list[dict], **layout) -> go.Figure:
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


def digit_tiles(images: np.ndarray, per_row: int, *, padding: int = GRID_PAD, pad_value: float = GRID_FRAME
                ) -> np.ndarray:
    """(N, H, W) images -> one 2-D float32 image, `per_row` a row, each framed by `padding` pixels of `pad_value`
    (torchvision's make_grid layout for one channel; a slot with no image is all frame).

    Unlike make_grid, a single image is framed too, so a grid of one digit has the layout of any other grid.
    """
    count, height, width = images.shape
    columns = min(per_row, count)
    rows = -(-count // columns)
    cells = np.full((rows * columns, height + padding, width + padding), pad_value, np.float32)
    cells[:count, padding:, padding:] = images  # each cell: its frame above and to its left, then its image
    grid = cells.reshape(rows, columns, height + padding, width + padding).transpose(0, 2, 1, 3)
    grid = grid.reshape(rows * (height + padding), columns * (width + padding))
    return np.pad(grid, ((0, padding), (0, padding)), constant_values=pad_value)  # the frame below and to the right


def sample_grid(originals: np.ndarray, reconstructions: np.ndarray, per_row: int) -> np.ndarray:
    """One 2-D image: `per_row` originals a row, each row of them over its reconstructions."""
    count = len(originals)
    tiles = []
    for start in range(0, count, per_row):
        row = slice(start, min(start + per_row, count))
        padding = per_row - (row.stop - row.start)
        for block in (originals[row], reconstructions[row]):
            tiles.extend(list(block) + [np.zeros((28, 28), np.float32)] * padding)
    return digit_tiles(np.asarray(tiles, np.float32), per_row)


def tile(kernels: np.ndarray, per_row: int) -> np.ndarray:
    """(N, k, k) -> one 2-D array of tiles separated by NaN gaps (drawn as blank)."""
    count, k = len(kernels), kernels.shape[-1]
    rows = -(-count // per_row)
    out = np.full((rows * (k + 1) - 1, per_row * (k + 1) - 1), np.nan, np.float32)
    for i, kernel in enumerate(kernels):
        r, c = divmod(i, per_row)
        out[r * (k + 1):r * (k + 1) + k, c * (k + 1):c * (k + 1) + k] = kernel
    return out
