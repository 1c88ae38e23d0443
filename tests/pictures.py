"""Reading back the pictures pages show (cae.views.figures.pictures): their alt text, their text and their pixels, from
a Picture or from what a page sent (a Markdown image of an SVG, cae.ui.images), for AppTest and unit tests."""

from __future__ import annotations

import base64
import io
import re
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass

import numpy as np
from PIL import Image

from cae.views.figures.pictures import Picture

SVG = "{http://www.w3.org/2000/svg}"
SVG_URL = "data:image/svg+xml;base64,"
PNG_URL = "data:image/png;base64,"
MARKDOWN_PICTURE = re.compile(r"!\[((?:\\.|[^\]\\])*)\]\(" + re.escape(SVG_URL) + r"([A-Za-z0-9+/=]+)\)")


@dataclass(frozen=True)
class Shown:
    """One picture as the browser gets it."""

    alt: str
    svg: str

    @property
    def root(self) -> ElementTree.Element:
        return ElementTree.fromstring(self.svg)

    @property
    def texts(self) -> list[str]:
        """Every text drawn, in drawing order."""
        return ["".join(node.itertext()) for node in self.root.iter(f"{SVG}text")]

    @property
    def layers(self) -> list[np.ndarray]:
        """Every block of pixels drawn, in drawing order, as (H, W, 4) RGBA uint8 arrays."""
        return [pixels_of(node.get("href")) for node in self.root.iter(f"{SVG}image")]

    def grey(self, layer: int) -> np.ndarray:
        """A block of grey pixels (a digit) as values in [0, 1] (to within 1/255); NaN where transparent."""
        rgba = self.layers[layer].astype(np.float64)
        return np.where(rgba[..., 3] > 0, rgba[..., 0] / 255, np.nan)


def pixels_of(url: str) -> np.ndarray:
    assert url.startswith(PNG_URL), url[:40]
    with Image.open(io.BytesIO(base64.b64decode(url[len(PNG_URL):]))) as image:
        return np.asarray(image.convert("RGBA"))


def read(picture: Picture) -> Shown:
    return Shown(picture.alt, picture.svg)


def shown_pictures(at) -> list[Shown]:
    """Every picture an AppTest run of a page shows (Markdown images of SVG, cae.ui.images), in page order."""
    shown = []
    for element in at.get("markdown"):
        for alt, data in MARKDOWN_PICTURE.findall(element.value):
            shown.append(Shown(re.sub(r"\\(.)", r"\1", alt), base64.b64decode(data).decode("utf-8")))
    return shown


def picture(at, alt_part: str) -> Shown:
    """The first picture whose alt text contains alt_part."""
    return next(p for p in shown_pictures(at) if alt_part in p.alt)
