"""The home page's grids: every label sits in a blank band above its digit, never on the ink."""

import numpy as np
import pytest

from cae.views.figures.home import LABEL_BAND, PIXEL, comparison_grid, comparison_layout, digit_grid, digit_layout
from tests.pictures import read

LAYOUTS = [
    lambda images, labels: comparison_layout(images, images, labels, per_row=8),
    lambda images, labels: digit_layout(images, labels, per_row=8),
]


@pytest.mark.parametrize("make", LAYOUTS)
def test_each_label_lies_in_a_blank_band_inside_the_grid(make):
    images = np.ones((20, 28, 28), np.float32)  # all ink: a label on a digit would land on a drawn row
    labels = [f"#{i} 0.012" for i in range(20)]
    grid = make(images, labels)
    assert [text for _, _, text in grid.labels] == labels
    rows, cols = grid.values.shape
    for column, row, text in grid.labels:
        assert np.isnan(grid.values[round(row)]).all(), text  # a blank row: no digit under the label
        assert 0 <= column < cols and 0 <= row < rows
    assert np.isnan(grid.values).all(axis=1).sum() == LABEL_BAND * -(-20 // 8)


@pytest.mark.parametrize("draw", [
    lambda images, labels: comparison_grid(images, images, labels, per_row=8, title="Picked"),
    lambda images, labels: digit_grid(images, labels, per_row=8, title="Picked"),
])
def test_the_picture_draws_the_grid_and_writes_each_label_in_its_band(draw):
    images = np.random.default_rng(0).random((20, 28, 28)).astype(np.float32)
    labels = [f"#{i} 0.012" for i in range(20)]
    shown = read(draw(images, labels))
    assert shown.texts == ["Picked", *labels]
    pixels = shown.grey(0)
    assert np.isnan(pixels).all(axis=1).sum() == LABEL_BAND * -(-20 // 8)  # the bands are left transparent
    assert np.allclose(pixels[LABEL_BAND + 2:LABEL_BAND + 30, 2:30], images[0], atol=1 / 255)  # the first digit
    title_band = float(shown.root.find("{http://www.w3.org/2000/svg}image").get("y"))
    label_y = [float(node.get("y")) for node in shown.root.iter("{http://www.w3.org/2000/svg}text")][1:]
    band_rows = {round((y - title_band) / PIXEL) for y in label_y}
    assert all(np.isnan(pixels[row]).all() for row in band_rows)  # each label's line is a blank row


def test_a_grid_without_labels_has_no_bands():
    grid = digit_layout(np.ones((32, 28, 28), np.float32))
    assert grid.labels == []
    assert not np.isnan(grid.values).any()
