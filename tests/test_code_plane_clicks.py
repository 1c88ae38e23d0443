"""The code plane is clickable on its empty space: invisible points cover the axes' whole range."""

import json

import numpy as np
import pytest

from cae.views.figures.code_space import CLICK_GRID, PLANE_POINT, code_map


def test_a_clickable_map_covers_its_whole_view_with_plane_points_under_the_digits():
    coords = np.random.default_rng(0).normal(size=(200, 2)).astype(np.float32)
    labels = np.arange(200) % 10
    s = json.loads(code_map(coords, labels, title="plane", clickable=True, yours=np.array([6.0, -5.0])).to_json())
    grid = s["data"][0]  # first: every digit's point is drawn over it
    assert set(grid["customdata"]) == {PLANE_POINT}
    assert len(grid["x"]) == CLICK_GRID**2
    (x0, x1), (y0, y1) = s["layout"]["xaxis"]["range"], s["layout"]["yaxis"]["range"]
    assert min(grid["x"]) == pytest.approx(x0, rel=1e-5)  # the corners of the view, empty space included
    assert max(grid["x"]) == pytest.approx(x1, rel=1e-5)
    assert min(grid["y"]) == pytest.approx(y0, rel=1e-5)
    assert max(grid["y"]) == pytest.approx(y1, rel=1e-5)
    assert x1 > 6.0 and y0 < -5.0  # the view reaches your digit, far from the others


def test_a_projected_map_is_not_clickable_between_its_points():
    coords = np.random.default_rng(0).normal(size=(50, 2)).astype(np.float32)
    s = json.loads(code_map(coords, np.arange(50) % 10, title="pca").to_json())
    assert all(PLANE_POINT not in (trace.get("customdata") or []) for trace in s["data"])
