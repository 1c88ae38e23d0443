"""How it works: the |difference| panel tells the truth about its size (rounding is not drawn as a difference)."""

import numpy as np

from cae.views.figures.inside import comparison_figure
from tests.pictures import Shown, read

WHITE = [255, 255, 255, 255]  # zero on the difference's scale (white to black)


def picture(by_transpose: np.ndarray, by_full_conv: np.ndarray) -> Shown:
    return read(comparison_figure(by_transpose, by_full_conv, layer="deconv1", channel=0))


def difference_title(shown: Shown) -> str:
    """The difference panel's title, its two lines joined as one."""
    lines = shown.texts[1:]  # after the picture's title: the panels' titles, left to right
    start = next(i for i, line in enumerate(lines) if line.startswith("|difference|"))
    return " ".join(lines[start:start + 2])


def test_rounding_is_blank_on_the_values_scale_and_named_in_the_title():
    values = np.random.default_rng(0).normal(size=(12, 12))
    rounded = values + np.random.default_rng(1).normal(scale=1e-15, size=values.shape)
    shown = picture(values, rounded)
    difference = shown.layers[2]
    assert (difference == WHITE).all()  # on the values' own scale rounding is nothing, not a speckled picture
    assert not (shown.layers[0] == WHITE).all()  # while the values themselves show
    title = difference_title(shown)
    assert title.startswith("|difference|: identical to ")
    assert float(title.rsplit(" ", 1)[1]) < 1e-13


def test_a_real_difference_shows_and_says_how_large():
    values = np.random.default_rng(0).normal(size=(12, 12))
    other = values.copy()
    other[3, 4] += 0.5
    shown = picture(values, other)
    assert difference_title(shown) == "|difference|: up to 0.5"
    drawn = (shown.layers[2] != WHITE).any(axis=2)
    assert drawn[3, 4] and drawn.sum() == 1  # that one cell, in grey on the values' scale
