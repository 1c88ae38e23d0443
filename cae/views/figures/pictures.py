"""Pictures: digits, maps of activations, numbered grids and diagrams drawn as SVG, with no plotly. No st.* here.

Where a chart's interactivity adds little (28x28 digits, a layer's maps, small grids of numbers), a picture costs the
browser far less than a chart: a page sends it inside its own message (cae.ui.images) and the browser draws it at
once, while a page's first plotly chart makes the browser fetch and run plotly.js (4.7 MB) and then plot every chart
of the page in one long task, so nothing else appears meanwhile (docs/benchmarks.md). Pixels are PNGs inside the
SVG, drawn sharp at any size (image-rendering: pixelated); text is SVG text in the charts' grey (base.INK), which
reads on Streamlit's light and dark themes. What a picture loses against a chart: hover values and zoom.
"""

from __future__ import annotations

import base64
import html
import io
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image
from plotly import colors as plotly_colors

from cae.views.figures.base import INK, RULE

FONT_FAMILY = "'Source Sans Pro', 'Source Sans', 'Helvetica Neue', Arial, sans-serif"
TITLE_SIZE = 15
TEXT_SIZE = 13


def _table(stops: list[str], where: list[float] | None = None) -> np.ndarray:
    """(256, 3) uint8: 'rgb(r,g,b)' stops at `where` (evenly spaced by default), interpolated."""
    rgb = np.array([[int(part) for part in re.findall(r"\d+", stop)] for stop in stops], np.float64)
    where = np.linspace(0, 1, len(stops)) if where is None else np.asarray(where)
    steps = np.linspace(0, 1, 256)
    return np.stack([np.interp(steps, where, rgb[:, channel]) for channel in range(3)], 1).round().astype(np.uint8)


# The colour scales of the figures: a digit's ink (black to white), an error (plotly.js's "Reds": light grey at zero,
# so a panel without error still shows as a square, to dark red), values around zero (blue negative, white zero,
# red positive), a difference (white to black).
SCALES = {
    "grey": _table(["rgb(0,0,0)", "rgb(255,255,255)"]),
    "reds": _table(["rgb(220,220,220)", "rgb(245,195,157)", "rgb(245,160,105)", "rgb(178,10,28)"], [0, 0.2, 0.4, 1]),
    "diverging": _table(plotly_colors.diverging.RdBu_r),
    "greys": _table(plotly_colors.sequential.Greys),
}


def coloured(values: np.ndarray, scale: str, low: float, high: float) -> np.ndarray:
    """(H, W) values -> (H, W, 4) RGBA uint8 on one of SCALES from `low` to `high`; NaN is transparent."""
    values = np.asarray(values, np.float64)
    finite = np.isfinite(values)
    span = (high - low) or 1.0
    where = np.clip((np.where(finite, values, low) - low) / span, 0, 1)
    rgba = np.empty((*values.shape, 4), np.uint8)
    rgba[..., :3] = SCALES[scale][np.round(where * 255).astype(np.int64)]
    rgba[..., 3] = np.where(finite, 255, 0)
    return rgba


def png_uri(rgba: np.ndarray) -> str:
    """An (H, W, 4) or (H, W, 3) uint8 array as a PNG data: URL."""
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgba)).save(buffer, format="PNG", compress_level=1)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def number(value: float) -> str:
    """A coordinate in an SVG: two decimals at most, no trailing zeros."""
    return f"{value:.2f}".rstrip("0").rstrip(".")


@dataclass(frozen=True)
class Picture:
    """An SVG, its natural size in CSS pixels, and what it shows in words (its alt text)."""

    svg: str
    alt: str
    width: int
    height: int


class Drawing:
    """An SVG being drawn, in CSS pixels at its natural size (it scales as a whole on the page)."""

    def __init__(self, width: float, height: float):
        self.width = math.ceil(width)
        self.height = math.ceil(height)
        self.parts: list[str] = []

    def pixels(self, rgba: np.ndarray, x: float, y: float, width: float, height: float) -> None:
        """An RGBA array stretched over a box, each value a sharp square (no smoothing between them)."""
        self.png(png_uri(rgba), x, y, width, height, sharp=True)

    def png(self, source: str, x: float, y: float, width: float, height: float, *, sharp: bool) -> None:
        """A PNG (a data: URL) stretched over a box; `sharp`: each of its pixels a square, not smoothed."""
        style = ' style="image-rendering:pixelated"' if sharp else ""
        self.parts.append(f'<image href="{source}" x="{number(x)}" y="{number(y)}" width="{number(width)}" '
                          f'height="{number(height)}" preserveAspectRatio="none"{style}/>')

    def text(self, x: float, y: float, text: str, *, size: float = TEXT_SIZE, anchor: str = "start",
             bold: bool = False, colour: str = INK, baseline: str = "auto") -> None:
        weight = ' font-weight="600"' if bold else ""
        self.parts.append(f'<text x="{number(x)}" y="{number(y)}" font-size="{number(size)}" text-anchor="{anchor}" '
                          f'dominant-baseline="{baseline}" fill="{colour}"{weight}>{html.escape(text)}</text>')

    def rect(self, x: float, y: float, width: float, height: float, *, fill: str = "none", stroke: str = "none",
             stroke_width: float = 1) -> None:
        self.parts.append(f'<rect x="{number(x)}" y="{number(y)}" width="{number(width)}" height="{number(height)}" '
                          f'fill="{fill}" stroke="{stroke}" stroke-width="{number(stroke_width)}"/>')

    def line(self, x0: float, y0: float, x1: float, y1: float, *, stroke: str = INK, stroke_width: float = 1,
             arrow: bool = False) -> None:
        end = ' marker-end="url(#arrow)"' if arrow else ""
        self.parts.append(f'<line x1="{number(x0)}" y1="{number(y0)}" x2="{number(x1)}" y2="{number(y1)}" '
                          f'stroke="{stroke}" stroke-width="{number(stroke_width)}"{end}/>')

    def circle(self, x: float, y: float, radius: float, *, fill: str) -> None:
        self.parts.append(f'<circle cx="{number(x)}" cy="{number(y)}" r="{number(radius)}" fill="{fill}"/>')

    def picture(self, alt: str, *, stretch: bool = False) -> Picture:
        """The SVG; `stretch`: it may be drawn wider or narrower than its natural shape (no aspect kept)."""
        arrow = ('<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" '
                 f'orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="{INK}"/></marker></defs>')
        body = "".join(self.parts)
        aspect = ' preserveAspectRatio="none"' if stretch else ""
        svg = (f'<svg xmlns="http://www.w3.org/2000/svg" width="{self.width}" height="{self.height}" '
               f'viewBox="0 0 {self.width} {self.height}"{aspect} font-family="{FONT_FAMILY}">'
               f'<title>{html.escape(alt)}</title>{arrow if "url(#arrow)" in body else ""}{body}</svg>')
        return Picture(svg, alt, self.width, self.height)


def fitted(text: str, width: float, size: float = TITLE_SIZE) -> float:
    """A font size at most `size` at which `text` fits in `width` (SVG text does not wrap; about 0.58 em a
    character in a bold sans-serif)."""
    return min(size, width / (0.58 * max(len(text), 1)))


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """About `count` round values (steps of 1, 2, 2.5 or 5 times a power of ten) from `low` to `high`."""
    span = high - low
    if not span > 0:
        return [low]
    rough = span / count
    magnitude = 10 ** math.floor(math.log10(rough))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= rough)
    first = math.ceil(low / step - 1e-9) * step
    ticks = []
    while first <= high + step * 1e-9:
        ticks.append(round(first, 12))
        first += step
    return ticks


def tick_text(value: float) -> str:
    return f"{value:.6g}".replace("-", "−") if value else "0"


def digit_panels(panels: Sequence[tuple[str, np.ndarray]], *, error_panel: int | None = None,
                 pixel: float = 7) -> Picture:
    """28x28 images side by side, each titled above, pixels sharp; the error panel, if any, white to red from
    zero to its own largest value. `pixel`: screen pixels per image pixel at the picture's natural size."""
    side, gap, band = 28 * pixel, 3 * pixel, 24
    drawing = Drawing(len(panels) * side + (len(panels) - 1) * gap, band + side)
    for index, (title, image) in enumerate(panels):
        left = index * (side + gap)
        if index == error_panel:
            rgba = coloured(image, "reds", 0, max(float(np.nanmax(image)), 1e-3))
        else:
            rgba = coloured(image, "grey", 0, 1)
        drawing.pixels(rgba, left, band, side, side)
        drawing.text(left + side / 2, band - 7, title, anchor="middle")
    return drawing.picture(", ".join(title for title, _ in panels))


def code_chart(code: np.ndarray, *, width: int = 700, height: int = 220) -> Picture:
    """The code as bars, red positive and blue negative, with its values on a ruled axis."""
    code = np.asarray(code, np.float64).ravel()
    left, right, top, bottom = 45, 8, 36, 40
    low, high = min(float(code.min()), 0.0), max(float(code.max()), 0.0)
    pad = (high - low) * 0.05 or 1.0
    low, high = low - pad, high + pad
    plot_width, plot_height = width - left - right, height - top - bottom
    drawing = Drawing(width, height)

    def y_of(value: float) -> float:
        return top + (high - value) / (high - low) * plot_height

    title = f"The code: {len(code)} numbers"
    drawing.text(5, 20, title, size=TITLE_SIZE, bold=True)
    for tick in nice_ticks(low, high):
        drawing.line(left, y_of(tick), width - right, y_of(tick), stroke=RULE)
        drawing.text(left - 5, y_of(tick), tick_text(tick), anchor="end", baseline="middle", size=11)
    step = plot_width / len(code)
    for index, value in enumerate(code):
        colour = "#d62728" if value >= 0 else "#1f77b4"  # red positive, blue negative
        drawing.rect(left + index * step + step * 0.05, min(y_of(value), y_of(0)), step * 0.9,
                     abs(y_of(value) - y_of(0)), fill=colour)
    for index in nice_ticks(0, len(code) - 1, count=min(len(code), 8)):
        if float(index).is_integer():
            drawing.text(left + (index + 0.5) * step, height - bottom + 14, f"{int(index)}", anchor="middle", size=11)
    drawing.text(left + plot_width / 2, height - 6, "code index", anchor="middle", size=12)
    values = ", ".join(f"{value:.2f}" for value in code)
    return drawing.picture(f"{title}: {values}")
