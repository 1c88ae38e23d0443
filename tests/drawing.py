"""Test drawings: digits rendered as streamlit-drawable-canvas returns them, and helpers to hand them to pages."""

from __future__ import annotations

import base64
import io

import numpy as np
from PIL import Image, ImageDraw

SEVEN = [[(0.1, 0.05), (0.9, 0.05), (0.45, 1.0)]]  # strokes of a "7" in unit coordinates
FOUR = [[(0.6, 1.0), (0.6, 0.0), (0.0, 0.65), (0.85, 0.65)]]


def canvas(strokes, *, left=60, top=40, size=200, pen=18, side=280, transparent=False) -> np.ndarray:
    """A drawing as the canvas returns it: RGBA, white pen on black (or on transparent)."""
    image = Image.new("RGBA", (side, side), (0, 0, 0, 0 if transparent else 255))
    draw = ImageDraw.Draw(image)
    for stroke in strokes:
        points = [(left + x * size, top + y * size) for x, y in stroke]
        draw.line(points, fill=(255, 255, 255, 255), width=pen, joint="curve")
        for x, y in points:  # round caps, as a pen leaves
            draw.ellipse((x - pen / 2, y - pen / 2, x + pen / 2, y + pen / 2), fill=(255, 255, 255, 255))
    return np.asarray(image)


def encode(array: np.ndarray, fmt: str = "PNG") -> bytes:
    out = io.BytesIO()
    Image.fromarray(array).save(out, format=fmt)
    return out.getvalue()


def canvas_state(array: np.ndarray) -> dict:
    """The canvas component's session-state value after a stroke (see ENVIRONMENT.md, AppTest)."""
    url = "data:image/png;base64," + base64.b64encode(encode(array)).decode()
    return {"drawing": {"raw": {"objects": [], "background": "#000000"}, "data": url}, "backgroundFit": None}
