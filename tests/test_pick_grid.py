"""The home page's grids: every label sits in a blank band above its digit, never on the ink."""

import json

import numpy as np
import pytest

from cae.views.figures.home import LABEL_BAND, comparison_grid, digit_grid


def labelled_rows(figure) -> tuple[np.ndarray, list[dict], dict]:
    s = json.loads(figure.to_json())
    grid = np.array([[np.nan if v is None else v for v in row] for row in s["data"][0]["z"]], float)
    return grid, s["layout"]["annotations"], s["layout"]


@pytest.mark.parametrize("make", [
    lambda images, labels: comparison_grid(images, images, labels, per_row=8),
    lambda images, labels: digit_grid(images, labels, per_row=8),
])
def test_each_label_lies_in_a_blank_band_inside_the_axes(make):
    images = np.ones((20, 28, 28), np.float32)  # all ink: a label on a digit would land on a drawn row
    labels = [f"#{i} 0.012" for i in range(20)]
    grid, notes, layout = labelled_rows(make(images, labels))
    assert [note["text"] for note in notes] == labels
    (x0, x1), (bottom, top) = layout["xaxis"]["range"], layout["yaxis"]["range"]
    for note in notes:
        row = round(note["y"])
        assert np.isnan(grid[row]).all(), note["text"]  # a blank row: no digit under the label
        assert x0 <= note["x"] <= x1 and top <= note["y"] <= bottom
    assert np.isnan(grid).all(axis=1).sum() == LABEL_BAND * -(-20 // 8)


def test_a_grid_without_labels_has_no_bands():
    grid, notes, _ = labelled_rows(digit_grid(np.ones((32, 28, 28), np.float32)))
    assert notes == []
    assert not np.isnan(grid).any()
