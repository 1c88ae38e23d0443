"""The code space's picture of its map, shown until the chart is drawn: the points where the chart puts them, in
their label's colour, over the chart's plot area."""

import numpy as np

from cae.views.figures.code_space import MAP_MARGIN, map_pixels, map_preview, map_ranges
from tests.pictures import SVG, pixels_of, read


def test_each_point_lands_where_the_chart_puts_it_in_its_labels_colour():
    coords = np.array([[0.0, 0.0], [10.0, 5.0], [5.0, 2.5], [5.0, 2.5]], np.float32)
    labels = np.array([1, 2, 3, 7])
    pixels = map_pixels(coords, labels, [0.0, 10.0], [0.0, 5.0], width=101, height=51)
    assert pixels[50, 0] == 2 and pixels[0, 100] == 3  # bottom left, top right (y grows upwards)
    assert pixels[25, 50] == 8  # two digits at one place: the later label on top, as the chart draws them
    assert (pixels > 0).sum() < 4 * 13  # dots a few pixels across, nothing else


def test_the_preview_puts_the_points_in_the_charts_plot_area_with_title_and_legend():
    rng = np.random.default_rng(0)
    coords = rng.normal(size=(500, 2)).astype(np.float32)
    labels = rng.integers(0, 10, 500)
    x_range, y_range = map_ranges(coords)
    shown = read(map_preview(coords, labels, title="PCA of the codes of 500 digits", x_range=x_range,
                             y_range=y_range, width=800, height=560))
    (points,) = shown.root.iter(f"{SVG}image")
    box = [float(points.get(key)) for key in ("x", "y", "width", "height")]
    assert box == [MAP_MARGIN["l"], MAP_MARGIN["t"], 800 - MAP_MARGIN["l"] - MAP_MARGIN["r"],
                   560 - MAP_MARGIN["t"] - MAP_MARGIN["b"]]
    drawn = pixels_of(points.get("href"))
    assert drawn.shape[:2] == (480, 660) and (drawn[..., 3] > 0).any()
    assert shown.texts == ["PCA of the codes of 500 digits", "label", *map(str, range(10))]
    assert "until its chart is ready" in shown.alt
