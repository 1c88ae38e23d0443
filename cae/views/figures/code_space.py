"""Figure builders for "The code space" page: the map of the codes and the code plane's decoded manifold (charts:
hover and clicks), interpolation strips and neighbours (pictures, cae.views.figures.pictures). No st.* here.

Built on cae.views.figures.base and its conventions (see stable_figure): plain lists, a data revision, no template,
explicit ranges and fixed margins, so the browser plots each chart once. Every point of a map carries the index
of its digit in `customdata`: a selection names points by trace and position, and each label is a trace of its own.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
from PIL import Image

from cae.views.figures.base import INK, stable_figure, tile
from cae.views.figures.pictures import TEXT_SIZE, Drawing, Picture, coloured, fitted

LABEL_COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
                 "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"]  # digit 0..9 (tab10)
YOURS = "#ffd54f"  # your digit's star
CHOSEN = "#000000"
YOUR_DIGIT = -1  # customdata of your digit's star (digits are 0..N-1)
PLANE_POINT = -2  # customdata of the invisible points that make the empty plane clickable
CLICK_GRID = 48  # invisible points a side over the code plane
MAP_MARGIN = dict(l=45, r=95, t=40, b=40)  # a map's plot area inside its chart; the legend on the right
PREVIEW_WIDTH = 1000  # pixels of a map's preview: the chart's width on a 1400-pixel-wide window


def _padded(low: float, high: float, share: float = 0.04) -> list[float]:
    pad = (high - low) * share or 1.0
    return [float(low - pad), float(high + pad)]


def map_extent(coords: np.ndarray) -> np.ndarray:
    """(2, 2) [[x_low, x_high], [y_low, y_high]] of all the points."""
    return np.stack([coords.min(0), coords.max(0)], 1) if len(coords) else np.array([[-1.0, 1.0], [-1.0, 1.0]])


def map_ranges(coords: np.ndarray, yours: np.ndarray | None = None,
               extent: np.ndarray | None = None) -> tuple[list[float], list[float]]:
    """The x and y ranges a map shows: every point (or `extent`) and your digit's star, with a margin."""
    extent = map_extent(np.asarray(coords, np.float32)) if extent is None else extent
    if yours is not None:  # the star stays in view even when it lands outside the digits
        yours = np.asarray(yours, np.float32).reshape(2)
        extent = np.stack([np.minimum(extent[:, 0], yours), np.maximum(extent[:, 1], yours)], 1)
    return _padded(*extent[0]), _padded(*extent[1])


def code_map(coords: np.ndarray, labels: np.ndarray, *, title: str, yours: np.ndarray | None = None,
             chosen: Sequence[tuple[int, str]] = (), extent: np.ndarray | None = None,
             axis_titles: tuple[str, str] = ("", ""), revision: str = "", height: int = 560,
             clickable: bool = False) -> go.Figure:
    """One WebGL point per digit coloured by its label; your digit as a star; chosen digits ringed and named.

    `chosen` holds (index, name) pairs; `revision` keeps zoom and pan across reruns until it changes. A
    `clickable` map (a code plane, whose every point is a code) can be clicked on its empty space too.
    """
    coords = np.asarray(coords, np.float32)
    labels = np.asarray(labels)
    x_range, y_range = map_ranges(coords, yours, extent)
    if yours is not None:
        yours = np.asarray(yours, np.float32).reshape(2)
    traces = [click_grid(*x_range, *y_range)] if clickable else []  # first: the digits are drawn over it
    for label in range(10):
        members = np.flatnonzero(labels == label)
        traces.append(dict(type="scattergl", x=coords[members, 0], y=coords[members, 1], mode="markers",
                           name=str(label), customdata=members,
                           marker=dict(size=4, color=LABEL_COLOURS[label], opacity=0.75),
                           hovertemplate=f"digit #%{{customdata}}: a {label}<extra></extra>"))
    if chosen:
        indices = [index for index, _ in chosen]
        traces.append(dict(type="scatter", x=coords[indices, 0], y=coords[indices, 1], mode="markers+text",
                           name="chosen", customdata=indices, text=[name for _, name in chosen],
                           textposition="top center", textfont=dict(size=13, color=INK),
                           marker=dict(size=13, color="rgba(0,0,0,0)", line=dict(width=2.5, color=INK)),
                           hovertemplate="digit #%{customdata}<extra></extra>"))
    if yours is not None:
        traces.append(dict(type="scatter", x=[yours[0]], y=[yours[1]], mode="markers", name="your digit",
                           customdata=[YOUR_DIGIT],
                           marker=dict(symbol="star", size=20, color=YOURS, line=dict(width=1.5, color=CHOSEN)),
                           hovertemplate="your digit<extra></extra>"))
    return stable_figure(traces, title=dict(text=title), height=height, uirevision=revision or title,
                         margin=MAP_MARGIN, hovermode="closest", dragmode="zoom",
                         legend=dict(title=dict(text="label"), itemsizing="constant", x=1.01, xanchor="left", y=1,
                               yanchor="top"),
                         xaxis=dict(range=x_range, title=dict(text=axis_titles[0]), zeroline=False),
                         yaxis=dict(range=y_range, title=dict(text=axis_titles[1]), zeroline=False))


def click_grid(left: float, right: float, bottom: float, top: float) -> dict:
    """Invisible points over a plane, so that a click anywhere is a selection (plotly selects points, not empty
    space); each names the plane (PLANE_POINT) and its place, which the page decodes."""
    xs, ys = np.meshgrid(np.linspace(left, right, CLICK_GRID), np.linspace(bottom, top, CLICK_GRID))
    return dict(type="scattergl", x=xs.ravel(), y=ys.ravel(), mode="markers", name="the plane",
                customdata=np.full(xs.size, PLANE_POINT), showlegend=False, marker=dict(size=6, color="rgba(0,0,0,0)"),
                hovertemplate="decode (%{x:.2f}, %{y:.2f})<extra></extra>")


def png_source(image: np.ndarray) -> str:
    """A 2-D array in [0, 1] as a PNG data URI: a 560x560 manifold is ~100 kB this way, megabytes as a heatmap."""
    buffer = io.BytesIO()
    Image.fromarray((np.clip(image, 0, 1) * 255).round().astype(np.uint8), mode="L").save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def manifold_figure(image: np.ndarray, extent: np.ndarray, *, size: int, marked: np.ndarray | None = None,
                    revision: str = "", height: int = 560) -> go.Figure:
    """The decoded grid laid over the code plane (axes in code numbers), clickable anywhere.

    Each of the size x size tiles is the decoding of the code at its centre. The plane is clickable anywhere
    (click_grid); `marked` is drawn as a cross.
    """
    (x_low, x_high), (y_low, y_high) = extent
    half_x, half_y = (x_high - x_low) / (size - 1) / 2, (y_high - y_low) / (size - 1) / 2
    left, right, bottom, top = x_low - half_x, x_high + half_x, y_low - half_y, y_high + half_y
    traces = [click_grid(left, right, bottom, top)]
    if marked is not None:
        marked = np.asarray(marked, np.float32).reshape(2)
        traces.append(dict(type="scatter", x=[marked[0]], y=[marked[1]], mode="markers", name="decoded",
                           customdata=[PLANE_POINT], showlegend=False, hoverinfo="skip",
                           marker=dict(symbol="x-thin", size=16, line=dict(width=3, color=YOURS))))
    picture = dict(source=png_source(image), xref="x", yref="y", x=left, y=top, sizex=right - left,
                   sizey=top - bottom, sizing="stretch", layer="below")
    return stable_figure(traces, title=dict(text=f"The decoder's view of the plane: {size} x {size} codes decoded"),
                         images=[picture], height=height, uirevision=revision or "manifold", hovermode="closest",
                         dragmode="zoom", margin=dict(l=45, r=10, t=40, b=40),
                         xaxis=dict(range=[left, right], title=dict(text="code[0]"), showgrid=False, zeroline=False),
                         yaxis=dict(range=[bottom, top], title=dict(text="code[1]"), showgrid=False, zeroline=False))


def strips(rows: Sequence[tuple[str, np.ndarray]], *, tags: Sequence[Sequence[str]] = (), width: float = 1000,
           pixel: float = 5) -> Picture:
    """Rows of 28x28 images (each row (steps, 28, 28)), a caption above each row; pixels sharp; a picture.

    `tags`, one list a row, are written small in each image's corner (a label and a distance, say). Each image
    pixel is `pixel` screen pixels, less where the longest row would be wider than `width`.
    """
    steps = max(len(images) for _, images in rows)
    units = steps * 29 - 1  # image pixels a row: 28 each and a gap of 1
    pixel = min(pixel, width / units)
    band = 24
    drawing = Drawing(units * pixel, len(rows) * (band + 28 * pixel))
    for number, (caption, images) in enumerate(rows):
        top = number * (band + 28 * pixel) + band
        grid = tile(np.asarray(images, np.float32), per_row=len(images))  # (28, n * 29 - 1), NaN gaps
        drawing.pixels(coloured(grid, "grey", 0, 1), 0, top, grid.shape[1] * pixel, 28 * pixel)
        if caption:
            drawing.text(0, top - 7, caption, size=fitted(caption, drawing.width, TEXT_SIZE))
        row_tags = tags[number] if number < len(tags) else ()
        for column, tag in enumerate(row_tags):
            drawing.text(column * 29 * pixel + 3, top + 3, tag, size=11, colour=YOURS, baseline="hanging")
    described = "; ".join(caption for caption, _ in rows if caption)
    return drawing.picture(described or "digits")


def map_pixels(coords: np.ndarray, labels: np.ndarray, x_range: Sequence[float], y_range: Sequence[float], *,
               width: int, height: int) -> np.ndarray:
    """The map's points over its plot area as an (height, width) image of 1 + each pixel's label (0: no point): a
    dot of the chart's size per digit, drawn in the chart's order (digit 0's points first, 9's on top)."""
    coords = np.asarray(coords, np.float64)
    labels = np.asarray(labels)
    columns = np.round((coords[:, 0] - x_range[0]) / (x_range[1] - x_range[0]) * (width - 1)).astype(np.int64)
    rows = np.round((y_range[1] - coords[:, 1]) / (y_range[1] - y_range[0]) * (height - 1)).astype(np.int64)
    dot = [(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3) if dy * dy + dx * dx <= 4]  # about 4 px across
    pixels = np.zeros((height, width), np.uint8)
    for label in range(10):
        members = labels == label
        for dy, dx in dot:
            y, x = rows[members] + dy, columns[members] + dx
            inside = (y >= 0) & (y < height) & (x >= 0) & (x < width)
            pixels[y[inside], x[inside]] = label + 1
    return pixels


def points_uri(pixels: np.ndarray) -> str:
    """map_pixels as a PNG data: URL with a palette (the label colours at the chart's opacity of 0.75): about a
    third of the bytes of a full-colour one."""
    palette = [0, 0, 0, 0]
    for colour in LABEL_COLOURS:
        palette += [int(colour[i:i + 2], 16) for i in (1, 3, 5)] + [191]
    image = Image.fromarray(pixels, mode="P")
    image.putpalette(palette, rawmode="RGBA")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def map_preview(coords: np.ndarray, labels: np.ndarray, *, title: str, x_range: Sequence[float],
                y_range: Sequence[float], width: int = PREVIEW_WIDTH, height: int = 560) -> Picture:
    """A picture of the map's chart (its points, title and legend at the chart's places, no axes) to show while the
    browser loads plotly.js for the chart itself. Drawn for a chart `width` x `height`; it may be stretched to the
    chart's real width (margins and text then change by a few percent)."""
    margin = MAP_MARGIN
    plot_width, plot_height = width - margin["l"] - margin["r"], height - margin["t"] - margin["b"]
    drawing = Drawing(width, height)
    drawing.text(0.01 * drawing.width, 26, title, size=fitted(title, width - 10, 16), bold=True)
    points = points_uri(map_pixels(coords, labels, x_range, y_range, width=plot_width, height=plot_height))
    drawing.png(points, margin["l"], margin["t"], plot_width, plot_height, sharp=False)
    legend = drawing.width - margin["r"] + 12
    drawing.text(legend, margin["t"] + 10, "label", size=12)
    for label, colour in enumerate(LABEL_COLOURS):
        y = margin["t"] + 29 + 19 * label
        drawing.circle(legend + 6, y - 4, 5, fill=colour)
        drawing.text(legend + 17, y, str(label), size=12)
    return drawing.picture(f"{title} (a picture of the map, until its chart is ready)", stretch=True)
