"""Figure builders: specs that survive Streamlit's JSON copy unchanged, labels that stay in view, loss ranges."""

import json

import numpy as np
import plotly.io as pio
import pytest

from cae.views.figures import base, home, train


def not_json(constant: str):
    raise ValueError(f"{constant} is not JSON: the browser's JSON.parse refuses the whole figure")


def spec(figure) -> dict:
    """The figure as the browser receives it: plotly's JSON text, parsed as strictly as JSON.parse does."""
    return json.loads(pio.to_json(figure, validate=False), parse_constant=not_json)


def all_figures():
    """Each figure builder on the same made-up data every call."""
    rng = np.random.default_rng(0)
    kernels = rng.normal(size=(32, 5, 5)).astype(np.float32)
    digit = rng.random((28, 28)).astype(np.float32)
    digit[0, 0] = np.nan  # a gap, as the panels have between digits
    return {
        "digit_panels": base.digit_panels([("Input", digit), ("Output", digit), ("Error", digit)], error_panel=2),
        "code_chart": base.code_chart(rng.normal(size=32).astype(np.float32)),
        "comparison_grid": home.comparison_grid(rng.random((5, 28, 28)), rng.random((5, 28, 28)),
                                                   [f"#{i}" for i in range(5)], per_row=4, title="Samples"),
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


@pytest.mark.parametrize("name", ["digit_panels", "comparison_grid", "filters_figure"])
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
