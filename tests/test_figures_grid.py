"""Grids of digits: cae's own tiling against torchvision's make_grid (the reference, imported only here) on real
MNIST digits, with the arguments each grid of the app uses."""

import numpy as np
import pytest
import torch
from torchvision.utils import make_grid

from cae.views.figures.base import GRID_FRAME, GRID_PAD, digit_tiles, sample_grid
from cae.views.figures.home import digit_layout


def reference(tiles: np.ndarray, per_row: int) -> np.ndarray:
    """make_grid as the app called it before it tiled grids itself: one channel, no normalizing."""
    grid = make_grid(torch.as_tensor(tiles).unsqueeze(1), nrow=per_row, padding=GRID_PAD, pad_value=GRID_FRAME)
    return grid[0].numpy()


@pytest.fixture(scope="module")
def digits(mnist) -> np.ndarray:
    return (mnist.val_images[:40].numpy() / 255).astype(np.float32)


@pytest.mark.parametrize("count, per_row", [(32, 16), (37, 8), (9, 9), (5, 8), (2, 1), (40, 3)])
def test_the_tiles_are_make_grids(digits, count, per_row):
    ours = digit_tiles(digits[:count], per_row)
    theirs = reference(digits[:count], per_row)
    assert ours.dtype == theirs.dtype == np.float32
    assert ours.shape == theirs.shape
    assert np.array_equal(ours, theirs)


def test_a_slot_with_no_digit_is_all_frame_and_every_digit_keeps_its_pixels(digits):
    grid = digit_tiles(digits[:5], per_row=3)  # two rows, the second with one empty slot
    step = 28 + GRID_PAD
    assert grid.shape == (2 * step + GRID_PAD, 3 * step + GRID_PAD)
    for index in range(5):
        row, column = divmod(index, 3)
        top, left = row * step + GRID_PAD, column * step + GRID_PAD
        assert np.array_equal(grid[top:top + 28, left:left + 28], digits[index])
    empty_top, empty_left = step + GRID_PAD, 2 * step + GRID_PAD
    assert np.all(grid[empty_top:empty_top + 28, empty_left:empty_left + 28] == GRID_FRAME)


def test_one_digit_is_framed_like_any_other_grid_where_make_grid_returns_it_bare(digits):
    assert reference(digits[:1], 1).shape == (28, 28)
    grid = digit_tiles(digits[:1], per_row=1)
    assert grid.shape == (28 + 2 * GRID_PAD, 28 + 2 * GRID_PAD)
    assert np.array_equal(grid[GRID_PAD:-GRID_PAD, GRID_PAD:-GRID_PAD], digits[0])
    assert np.all(grid[:GRID_PAD] == GRID_FRAME) and np.all(grid[:, -GRID_PAD:] == GRID_FRAME)


def test_originals_over_reconstructions_as_make_grid_laid_them_out(digits):
    originals, reconstructions = digits[:10], 1 - digits[10:20]
    blank = np.zeros((2, 28, 28), np.float32)
    rows = [originals[0:4], reconstructions[0:4], originals[4:8], reconstructions[4:8],
            np.concatenate([originals[8:10], blank]), np.concatenate([reconstructions[8:10], blank])]
    assert np.array_equal(sample_grid(originals, reconstructions, per_row=4), reference(np.concatenate(rows), 4))


def test_the_home_pages_digit_grid_pads_its_last_row_with_black_digits_as_before(digits):
    padded = np.concatenate([digits[:21], np.zeros((3, 28, 28), np.float32)])
    assert np.array_equal(digit_layout(digits[:21], per_row=8).values, reference(padded, 8))
