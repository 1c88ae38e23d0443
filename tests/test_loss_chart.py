"""The loss chart reads at a glance: log ticks with their decade, where the loss started and where it is, a PCA
label that stays in view, a legend that covers no curve."""

import json
import math

import numpy as np
import pytest

from cae.views.figures.train import log_ticks, loss_chart, tick_labels


def layout_of(figure) -> dict:
    return json.loads(figure.to_json())["layout"]


def a_run(steps: int = 300) -> list[float]:
    rng = np.random.default_rng(0)
    return list(0.012 + 0.09 * np.exp(-np.arange(steps) / 40) + rng.normal(0, 0.002, steps).clip(-0.005))


@pytest.mark.parametrize("low, high", [(0.0116, 0.102), (80.0, 560.0), (0.0368, 0.0381), (1e-4, 10.0), (0.3, 0.31)])
def test_log_ticks_are_few_distinct_and_inside_the_range(low, high):
    ticks = log_ticks(low, high)
    labels = tick_labels(ticks)
    assert 3 <= len(ticks) <= 8
    assert all(low <= t <= high * (1 + 1e-12) for t in ticks)
    assert ticks == sorted(ticks)
    assert len(set(labels)) == len(labels)
    for tick, label in zip(ticks, labels):  # each label is its tick, to the digits it shows
        assert float(label.replace(",", "")) == pytest.approx(tick, rel=0.05)


def test_a_short_log_range_gets_labels_with_their_decade():
    """plotly's own ticks over 0.0116..0.102 read "2, 0.1, 9, 8, 7 ... 3, 2"; ours read 0.02, 0.05, 0.1."""
    assert tick_labels(log_ticks(0.0116, 0.102)) == ["0.02", "0.05", "0.1"]


def test_the_default_run_chart_shows_readable_ticks_start_and_now():
    loss = a_run()
    layout = layout_of(loss_chart(loss, [78, 156, 234, 300], [0.03, 0.02, 0.016, 0.0131], log_scale=True,
                                  pca_mse=0.0170, total_steps=312))
    yaxis = layout["yaxis"]
    assert yaxis["tickmode"] == "array"
    assert yaxis["ticktext"] == tick_labels(yaxis["tickvals"])
    low, high = yaxis["range"]
    assert all(low <= math.log10(v) <= high for v in yaxis["tickvals"])
    notes = {note["text"].split()[0]: note for note in layout["annotations"]}
    assert notes["start"]["text"].startswith("start 0.1")
    assert notes["now"]["x"] == 300
    for note in notes.values():  # on a log axis an annotation is placed by log10 of its value: inside the range
        assert low <= note["y"] <= high, note["text"]
    assert layout["legend"]["y"] < 0  # below the plot, not over the curves


def test_a_variational_run_has_readable_ticks_on_both_axes():
    nats = list(100 + 450 * np.exp(-np.arange(300) / 30))
    terms = {"reconstruction": [v * 0.8 for v in nats], "kl": [v * 0.2 for v in nats]}
    layout = layout_of(loss_chart(nats, [78, 156, 234, 300], [0.0381, 0.0375, 0.0371, 0.0368], log_scale=True,
                                  pca_mse=0.0170, total_steps=312, terms=terms, loss_name="nats per digit"))
    for axis in ("yaxis", "yaxis2"):
        labels = layout[axis]["ticktext"]
        assert len(set(labels)) == len(labels) >= 3, labels
        assert max(len(label) for label in labels) <= 6, labels  # "0.0379", not "0.03792"
    pca_note = next(note for note in layout["annotations"] if note["text"].startswith("PCA"))
    assert pca_note["yref"] == "y2"
    assert layout["yaxis2"]["range"][0] <= pca_note["y"] <= layout["yaxis2"]["range"][1]
    assert layout["margin"]["b"] >= 55 + 22 * 3  # five legend entries: three rows below the plot


def test_a_linear_chart_keeps_plotly_ticks_and_values_as_they_are():
    layout = layout_of(loss_chart([0.2, 0.1, 0.05, 0.04], [4], [0.03], log_scale=False))
    assert "tickvals" not in layout["yaxis"]
    notes = {note["text"].split()[0]: note for note in layout["annotations"]}
    assert notes["now"]["y"] == pytest.approx(float(notes["now"]["text"].split()[1]), rel=0.01)
