"""Figure builders: specs that survive Streamlit's JSON copy unchanged, labels that stay in view, loss ranges; the
pictures' colour scales and ticks."""

import json

import numpy as np
import plotly.io as pio
import pytest

from cae.views.figures import pictures, train
from tests.pictures import read


def not_json(constant: str):
    raise ValueError(f"{constant} is not JSON: the browser's JSON.parse refuses the whole figure")


def spec(figure) -> dict:
    """The figure as the browser receives it: plotly's JSON text, parsed as strictly as JSON.parse does."""
    return json.loads(pio.to_json(figure, validate=False), parse_constant=not_json)


def all_figures():
    """Each figure builder on the same made-up data every call."""
    rng = np.random.default_rng(0)
    kernels = rng.normal(size=(32, 5, 5)).astype(np.float32)
    return {
        "loss_chart": train.loss_chart(list(np.linspace(0.2, 0.01, 40)), [20, 40], [0.05, 0.02], log_scale=True,
                                         total_steps=100),
        "filters_figure": train.filters_figure(kernels, kernels * 0.1, 3),
    }


@pytest.mark.parametrize("name", list(all_figures()))
def test_a_spec_is_the_same_after_a_json_round_trip_so_the_browser_plots_it_once(name):
    """Streamlit re-renders a mounted chart with a JSON copy of its figure; anything plotly.js then sees as changed
    makes it plot the whole chart again (see figures.base.stable_figure)."""
    s = spec(all_figures()[name])
    text = json.dumps(s)
    assert "bdata" not in text  # typed arrays come back from JSON as objects
    assert s["layout"]["template"] is None  # an object ({} included) is compared by identity
    assert isinstance(s["layout"]["datarevision"], int)  # data arrays are not compared one by one
    assert s["layout"]["margin"]["autoexpand"] is False  # a margin that grows plots the chart again
    for axis in ("xaxis", "yaxis"):  # plotly writes back a reversed autorange as a range
        assert s["layout"][axis].get("autorange") != "reversed"
    # The same data again gives the same text: a rerun that changed nothing leaves the mounted chart alone.
    assert json.dumps(spec(all_figures()[name])) == text


def test_the_data_revision_follows_the_data():
    def revision(loss):
        return spec(train.loss_chart(loss, [], [], total_steps=10))["layout"]["datarevision"]

    assert revision([0.3, 0.2]) == revision([0.3, 0.2])
    assert revision([0.3, 0.2]) != revision([0.3, 0.2, 0.1])


def test_arrays_become_lists_with_nan_as_null_and_six_significant_digits():
    s = spec(train.filters_figure(np.full((32, 5, 5), 0.123456789, np.float32), np.ones((32, 5, 5)), 0))
    z = s["data"][0]["z"]
    assert z[0][5] is None  # the gap between two kernels
    assert z[0][0] == 1.0  # weights over the layer's largest
    assert s["data"][0]["text"][0][:6] == ["conv1 kernel 0: 0.123"] * 5 + [""]  # hover: the real weight
    assert s["data"][1]["text"][6][0] == "conv2→0 kernel 8: 1.000"


@pytest.mark.parametrize("name", ["filters_figure"])
def test_labels_are_anchored_inside_the_explicit_ranges(name):
    """plotly hides an annotation whose anchor lies outside an explicit axis range (the panel titles vanished)."""
    layout = spec(all_figures()[name])["layout"]
    (x0, x1), (y_bottom, y_top) = layout["xaxis"]["range"], layout["yaxis"]["range"]
    for note in layout["annotations"]:
        if note.get("xref", "x") == "x":
            assert x0 <= note["x"] <= x1, note["text"]
        if note.get("yref", "y") == "y":
            assert y_top <= note["y"] <= y_bottom, note["text"]  # reversed: row 0 at the top


def test_the_loss_chart_spans_the_run_and_every_value():
    loss = [0.2, 0.1, 0.05, 0.04]
    log = spec(train.loss_chart(loss, [4], [0.03], log_scale=True, total_steps=50))["layout"]
    assert log["xaxis"]["range"][1] >= 50
    low, high = log["yaxis"]["range"]
    assert low < np.log10(0.03) and high > np.log10(0.2)
    linear = spec(train.loss_chart(loss, [4], [0.03], log_scale=False))["layout"]
    assert linear["yaxis"]["range"][0] == 0 and linear["yaxis"]["range"][1] >= 0.2
    assert linear["xaxis"]["range"][1] >= 4


def test_an_empty_loss_chart_draws():
    layout = spec(train.loss_chart([], [], [], total_steps=10))["layout"]
    assert layout["title"]["text"] == "Loss"


def test_pictures_colour_values_on_their_scale_and_leave_nan_transparent():
    values = np.array([[0.0, 0.5, 1.0, np.nan]])
    grey = pictures.coloured(values, "grey", 0, 1)
    assert grey[0, :3, 0].tolist() == [0, 128, 255] and grey[0, :3, 3].tolist() == [255] * 3
    assert grey[0, 3, 3] == 0  # a gap between digits is not drawn
    around_zero = pictures.coloured(np.array([[-2.0, 0.0, 2.0]]), "diverging", -2, 2)
    blue, white, red = around_zero[0, :, :3].astype(int)
    assert blue[2] > blue[0] and red[0] > red[2] and (white > 240).all()


def test_digit_panels_keep_each_digit_and_scale_the_error_to_its_largest_value():
    rng = np.random.default_rng(0)
    digit = rng.random((28, 28)).astype(np.float32)
    error = digit * 0.1
    shown = read(pictures.digit_panels([("Input", digit), ("Error", error)], error_panel=1))
    assert shown.texts == ["Input", "Error"] and shown.alt == "Input, Error"
    np.testing.assert_allclose(shown.grey(0), digit, atol=1 / 255)
    reds = shown.layers[1][..., :3].astype(int)
    darkest = np.unravel_index(np.argmax(error), error.shape)
    assert (reds[darkest] == [178, 10, 28]).all()  # the largest error: the scale's end, however small it is


def test_the_code_chart_draws_a_bar_for_each_number_on_ruled_ticks():
    code = np.array([1.5, -0.5, 0.0, 2.25], np.float32)
    shown = read(pictures.code_chart(code, width=400))
    bars = shown.root.findall("{http://www.w3.org/2000/svg}rect")
    assert len(bars) == 4
    heights = [float(bar.get("height")) for bar in bars]
    assert heights[3] / heights[0] == pytest.approx(2.25 / 1.5, rel=1e-2)
    assert "1.50, -0.50, 0.00, 2.25" in shown.alt  # the values a hover gave, in words
    assert {"0", "1", "2"} <= set(shown.texts)  # round ticks


@pytest.mark.parametrize("low, high, count, expected", [(0, 1, 5, [0, 0.2, 0.4, 0.6, 0.8, 1.0]),
                                                        (-1.3, 2.1, 5, [-1, 0, 1, 2]), (0, 31, 4, [0, 10, 20, 30]),
                                                        (5, 5, 5, [5])])
def test_nice_ticks_are_round_and_inside_the_range(low, high, count, expected):
    assert pictures.nice_ticks(low, high, count) == pytest.approx(expected)
