"""Canvas and uploads -> 28x28 model input made the MNIST way."""

import io

import numpy as np
import pytest
from PIL import Image

from cae.engine import preprocess
from cae.engine.preprocess import ImageError, load_upload, to_model_input
from tests.drawing import FOUR, SEVEN, canvas
from tests.drawing import encode as png


def centre_of_mass(image):
    rows, cols = np.indices(image.shape)
    return (rows * image).sum() / image.sum(), (cols * image).sum() / image.sum()


def ink_box(image, level=0.05):
    rows, cols = np.nonzero(image > level)
    return rows.max() - rows.min() + 1, cols.max() - cols.min() + 1


@pytest.mark.parametrize("strokes", [SEVEN, FOUR])
def test_result_is_28x28_in_0_1_with_the_centre_of_mass_at_the_centre_and_ink_within_20x20(strokes):
    out = to_model_input(canvas(strokes))
    assert out.shape == (28, 28) and out.dtype == np.float32
    assert out.min() >= 0 and out.max() == pytest.approx(1.0)
    cy, cx = centre_of_mass(out)
    assert abs(cy - 14) <= 1 and abs(cx - 14) <= 1  # MNIST's own centres of mass lie at (14.0, 14.0)
    height, width = ink_box(out)
    assert max(height, width) == 20 and min(height, width) < 20  # longest side 20, aspect kept


def test_small_in_a_corner_and_large_in_the_middle_give_nearly_the_same_digit():
    large = to_model_input(canvas(FOUR, left=40, top=30, size=210, pen=20))
    small = to_model_input(canvas(FOUR, left=5, top=200, size=60, pen=6))
    # Centring moves whole pixels, as MNIST did, so rounding may put the two one pixel apart.
    nearest = min(np.abs(np.roll(large, (dy, dx), axis=(0, 1)) - small).mean()
                  for dy in (-1, 0, 1) for dx in (-1, 0, 1))
    assert nearest < 0.03


def test_a_thin_pen_is_thickened_to_mnist_strokes():
    thin, normal = to_model_input(canvas(FOUR, pen=3)), to_model_input(canvas(FOUR, pen=22))
    assert (thin > 0.5).sum() > 0.6 * (normal > 0.5).sum()


def test_transparent_background_keeps_the_ink_in_alpha():
    assert np.allclose(to_model_input(canvas(SEVEN, transparent=True)), to_model_input(canvas(SEVEN)), atol=0.02)


def test_dark_ink_on_a_light_upload_is_inverted():
    drawing = canvas(SEVEN)[..., :3]
    inverted = 255 - drawing  # black ink on white paper, RGB
    assert np.allclose(to_model_input(inverted), to_model_input(drawing), atol=1e-5)
    grey = inverted[..., 0]  # and as a greyscale picture
    assert np.allclose(to_model_input(grey), to_model_input(drawing), atol=1e-5)


def test_empty_and_one_dot_canvases_give_none():
    assert to_model_input(np.zeros((280, 280, 4), np.uint8)) is None
    assert to_model_input(canvas([[(0.5, 0.5)]], pen=18)) is None  # one click: a dot
    assert to_model_input(canvas([[(0.5, 0.5)]], pen=40)) is None  # a big dot is still no digit


def test_real_mnist_digits_blown_up_to_canvas_size_come_back_as_themselves(mnist):
    errors, correlations = [], []
    for digit in mnist.val_images[:100].numpy():
        out = to_model_input(np.asarray(Image.fromarray(digit).resize((280, 280), Image.Resampling.BILINEAR)))
        errors.append(np.abs(out - digit / 255).mean())
        correlations.append(np.corrcoef(out.ravel(), digit.ravel())[0, 1])
    # measured: median error 0.025, correlation 0.978; a one-pixel shift of the digits alone gives 0.064
    assert np.median(errors) < 0.035 and np.median(correlations) > 0.96


def test_uploads_png_and_jpeg_are_read():
    drawing = canvas(SEVEN)
    assert load_upload(png(drawing)).shape == (280, 280, 4)
    jpeg = load_upload(png(drawing[..., :3], "JPEG"))
    assert np.corrcoef(to_model_input(jpeg).ravel(), to_model_input(drawing).ravel())[0, 1] > 0.98


@pytest.mark.parametrize("data, message", [
    (b"%PDF-1.4 not a picture", "not a picture"),
    (png(np.random.default_rng(0).integers(0, 255, (40, 40), dtype=np.uint8))[:600], "could not be read"),
    (png(np.zeros((40, 40), np.uint8), "GIF"), "GIF file"),
])
def test_bad_uploads_get_a_clear_message(data, message):
    with pytest.raises(ImageError, match=message):
        load_upload(data)


def test_a_huge_upload_is_refused_before_decoding():
    data = png(np.zeros((10000, 10000), np.uint8))
    with pytest.raises(ImageError, match="10000x10000"):
        load_upload(data)


def test_a_photo_sized_digit_with_a_thin_pen_is_shrunk_before_it_is_thickened(monkeypatch):
    radii = []
    real_dilate = preprocess._dilate
    monkeypatch.setattr(preprocess, "_dilate", lambda ink, radius: radii.append(radius) or real_dilate(ink, radius))
    photo = canvas(FOUR, left=300, top=200, size=2400, pen=12, side=3000)  # a 2,400-pixel digit, a 12-pixel pen
    result = to_model_input(photo)
    assert radii and max(radii) <= preprocess.STROKE * preprocess.WORK_SIDE  # not ~140 passes wide: minutes
    reference = to_model_input(canvas(FOUR, left=30, top=20, size=240, pen=1))  # the same shape at canvas size
    nearest = min(np.abs(np.roll(result, (dy, dx), axis=(0, 1)) - reference).mean()
                  for dy in (-1, 0, 1) for dx in (-1, 0, 1))
    assert nearest < 0.05


def jpeg_with(image: Image.Image, **options) -> bytes:
    out = io.BytesIO()
    image.save(out, **options)
    return out.getvalue()


def test_a_phone_photo_stored_sideways_is_turned_upright():
    upright = Image.fromarray(canvas(SEVEN)[..., :3]).resize((280, 200))  # wider than tall, as it should show
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: the viewer turns it 90 degrees clockwise
    sideways = upright.transpose(Image.Transpose.ROTATE_90)  # how the camera stored it
    loaded = load_upload(jpeg_with(sideways, format="JPEG", exif=exif))
    assert loaded.shape == (200, 280, 3)
    assert np.abs(loaded.astype(float) - np.asarray(upright, float)).mean() < 8  # JPEG's loss only


def test_a_phone_jpeg_with_a_second_picture_inside_mpo_is_read():
    first = Image.fromarray(canvas(SEVEN)[..., :3])
    data = jpeg_with(first, format="MPO", save_all=True, append_images=[first.resize((70, 70))])
    assert Image.open(io.BytesIO(data)).format == "MPO"
    assert load_upload(data).shape == (280, 280, 3)
