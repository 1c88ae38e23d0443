"""How it works: the |difference| panel tells the truth about its size (rounding is not drawn as a difference)."""

import json

import numpy as np

from cae.views.figures.inside import comparison_figure


def spec(by_transpose: np.ndarray, by_full_conv: np.ndarray) -> dict:
    return json.loads(comparison_figure(by_transpose, by_full_conv, layer="deconv1", channel=0).to_json())


def test_rounding_is_blank_on_the_values_scale_and_named_in_the_title():
    values = np.random.default_rng(0).normal(size=(12, 12))
    rounded = values + np.random.default_rng(1).normal(scale=1e-15, size=values.shape)
    s = spec(values, rounded)
    difference = s["data"][2]
    assert difference["zmax"] == np.abs(values).max()  # the values' own scale, not the difference's maximum
    assert max(max(row) for row in difference["z"]) < 1e-6 * difference["zmax"]
    titles = [note["text"] for note in s["layout"]["annotations"]]
    assert titles[2].startswith("|difference|: identical to ")
    assert float(titles[2].rsplit(" ", 1)[1]) < 1e-13


def test_a_real_difference_shows_and_says_how_large():
    values = np.random.default_rng(0).normal(size=(12, 12))
    other = values.copy()
    other[3, 4] += 0.5
    s = spec(values, other)
    assert s["layout"]["annotations"][2]["text"] == "|difference|: up to 0.5"
    assert max(max(row) for row in s["data"][2]["z"]) == 0.5
