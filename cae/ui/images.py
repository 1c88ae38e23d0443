"""Pictures on a page (cae.views.figures.pictures), and the result view every page shows a digit's reconstruction in.

A picture is an SVG sent inside the page's message as a Markdown image (a data: URL): Streamlit's Markdown element
is part of the code the browser runs first, so a picture shows as soon as the page's message arrives, with nothing
to load before it (st.image's element is loaded on demand, and a page's other elements can keep it waiting: 0.3 to
0.8 s more in a new tab, docs/benchmarks.md). What st.image would add: a full-screen button.
"""

from __future__ import annotations

import base64
import re
from typing import Any

import numpy as np
import streamlit as st
from torch import nn

from cae.models.noise import Noise
from cae.views import explore
from cae.views.figures import pictures
from cae.views.figures.pictures import Picture

SVG_URL = "data:image/svg+xml;base64,"


def markdown(picture: Picture) -> str:
    """The picture as a Markdown image: its alt text (punctuation escaped, so it stays plain text) and its SVG."""
    alt = re.sub(r"([!-/:-@\[-`{-~])", r"\\\1", picture.alt)
    return f"![{alt}]({SVG_URL}{base64.b64encode(picture.svg.encode('utf-8')).decode('ascii')})"


def show(picture: Picture, *, where: Any = st) -> None:
    """A picture at its natural size, smaller where the column is narrower."""
    where.markdown(markdown(picture))


def show_reconstruction(model: nn.Module, image: np.ndarray | None, *, noise: Noise | None = None,
                        noise_seed: int = 0) -> explore.Reconstruction | None:
    """Input, reconstruction and error side by side, with the MSE; the code's bars go where `show_code` is called.

    With `noise`, the model is given a corrupted copy: the panels add it, and the PSNR of the copy and of the
    output against the clean digit show whether the model removed the noise. With no image the panels are drawn
    blank, so the page keeps its layout when a digit arrives.
    """
    result = None if image is None else explore.reconstruct_one(model, image, noise=noise, seed=noise_seed)
    blank = np.zeros((28, 28), np.float32)
    panels = [("Model input (28x28)", blank if result is None else result.image)]
    if noise is not None:
        panels.append(("Noisy input", blank if result is None else result.noisy))
    error_title = "Squared error" if result is None else f"Squared error, up to {float(result.error.max()):.3f}"
    panels += [("Reconstruction", blank if result is None else result.output),
               (error_title, blank if result is None else result.error)]
    show(pictures.digit_panels(panels, error_panel=len(panels) - 1))
    if result is None:
        return None
    columns = st.columns(3 if noise is not None else 1)
    columns[0].metric("MSE per pixel", f"{result.mse:.4f}",
                      help="Mean squared error between the clean model input and the reconstruction, pixels in "
                           "[0, 1].")
    if noise is not None:
        columns[1].metric("PSNR of the noisy input", f"{result.noisy_psnr:.1f} dB",
                          help="10 log10(1 / MSE) against the clean digit: higher is cleaner.")
        columns[2].metric("PSNR of the output", f"{result.output_psnr:.1f} dB",
                          delta=f"{result.output_psnr - result.noisy_psnr:+.1f} dB",
                          help="Above the noisy input's PSNR: the model removed noise. Below: it made things worse.")
    return result


def show_code(result: explore.Reconstruction, *, width: int = 1000) -> None:
    """The code's bars, `width` pixels wide at most (the height stays 220)."""
    show(pictures.code_chart(result.code, width=width))
