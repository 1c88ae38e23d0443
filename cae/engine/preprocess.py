"""Canvas drawings and uploaded images -> 28x28 model inputs, made the way MNIST made its digits. Pure numpy / PIL.

MNIST's recipe: the ink's bounding box is scaled (aspect kept, anti-aliased) into 20x20, then placed in 28x28 with
its centre of mass at the centre. A drawing merely resized to 28x28 looks nothing like what the model has seen.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

BOX = 20  # MNIST scales the ink's bounding box into 20x20 ...
SIZE = 28  # ... and centres it by its centre of mass in 28x28
CENTRE = 14.0  # where MNIST's centres of mass lie, in pixel indices (training-set mean 14.00, 14.01; sd 0.29)
INK_LEVEL = 0.25  # a pixel is ink when its brightness is at least this share of the brightest pixel
STROKE = 0.12  # MNIST strokes are about this share of the box side (2.4 px of 20); thinner strokes are thickened
MAX_UPLOAD_SIDE = 4096  # larger images are refused before they are decoded
WORK_SIDE = 280  # ink boxes larger than the canvas are shrunk to this first (see to_model_input)
UPLOAD_TYPES = ("PNG", "JPEG", "MPO")  # MPO: the JPEG that phones write with a second picture inside


class ImageError(ValueError):
    """An upload that is not a usable PNG or JPEG picture; the message says why."""


def load_upload(data: bytes) -> np.ndarray:
    """PNG or JPEG bytes -> uint8 array (H, W), (H, W, 3) or (H, W, 4); ImageError for anything else."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.format not in UPLOAD_TYPES:
                raise ImageError(f"this is a {image.format or 'unknown'} file; please upload a PNG or JPEG picture")
            if max(image.size) > MAX_UPLOAD_SIDE:
                raise ImageError(f"the picture is {image.size[0]}x{image.size[1]} pixels; "
                                 f"please upload one at most {MAX_UPLOAD_SIDE} pixels on each side")
            image.load()
            upright = ImageOps.exif_transpose(image)  # a phone's portrait photo is stored sideways plus a tag
            return np.asarray(upright.convert("RGBA" if "A" in upright.getbands() else "RGB"))
    except UnidentifiedImageError as error:
        raise ImageError("this file is not a picture we can read; please upload a PNG or JPEG") from error
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        if isinstance(error, ImageError):
            raise
        raise ImageError(f"the picture could not be read (corrupt or cut short): {error}") from error


def ink_of(image: np.ndarray) -> np.ndarray:
    """Any uint8 picture -> float32 (H, W) ink in [0, 1], light on dark as in MNIST."""
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[2] in (3, 4):
        light = image[..., :3].astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
        if image.shape[2] == 4 and image[..., 3].min() < 255:
            return image[..., 3].astype(np.float32) / 255  # transparency present: the ink is what is opaque
    elif image.ndim == 2:
        light = image.astype(np.float32)
    else:
        raise ImageError(f"expected an HxW, HxWx3 or HxWx4 picture, got shape {image.shape}")
    border = np.concatenate([light[0], light[-1], light[:, 0], light[:, -1]])
    background = float(np.median(border))
    if background > 127:  # dark ink on a light background: invert
        light, background = 255 - light, 255 - background
    return np.clip((light - background) / max(255 - background, 1), 0, 1)


def _dilate(ink: np.ndarray, radius: int) -> np.ndarray:
    out = ink.copy()
    for dy in range(-radius, radius + 1):
        for dx in range(-radius, radius + 1):
            if dy * dy + dx * dx <= radius * radius:
                out = np.maximum(out, np.roll(ink, (dy, dx), axis=(0, 1)))
    return out


def _ink_mask(ink: np.ndarray) -> np.ndarray:
    """Where the ink is: pixels at least INK_LEVEL of the brightest."""
    return ink >= INK_LEVEL * max(float(ink.max()), 1e-6)


def _bounding_box(mask: np.ndarray) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) of a non-empty mask, bottom and right exclusive."""
    rows, cols = np.nonzero(mask)
    return rows.min(), rows.max() + 1, cols.min(), cols.max() + 1


def _shrink(ink: np.ndarray, longest: int) -> np.ndarray:
    """Scale ink so that its longer side is `longest` pixels, aspect kept, with area averaging."""
    scale = longest / max(ink.shape)
    size = (max(1, round(ink.shape[1] * scale)), max(1, round(ink.shape[0] * scale)))
    return np.asarray(Image.fromarray(ink.astype(np.float32)).resize(size, Image.Resampling.BOX))


def _stroke_width(mask: np.ndarray) -> float:
    """Mean stroke width of a mask: area / half the perimeter (for a long stroke, w * L / L)."""
    inner = mask[1:-1, 1:-1] & mask[:-2, 1:-1] & mask[2:, 1:-1] & mask[1:-1, :-2] & mask[1:-1, 2:]
    edge = mask.sum() - inner.sum()
    return 2.0 * mask.sum() / max(edge, 1)


def is_speck(mask: np.ndarray) -> bool:
    """True for no ink, or ink too small to be a digit: a dot or a stray touch."""
    if mask.sum() == 0:
        return True
    rows, cols = np.nonzero(mask)
    height, width = np.ptp(rows) + 1, np.ptp(cols) + 1
    longest, side = max(height, width), max(mask.shape)
    round_blob = mask.sum() / (height * width) > 0.6 and longest / min(height, width) < 1.5
    return longest < 0.08 * side or (round_blob and longest < 0.2 * side)


def _centre_of_mass(image: np.ndarray) -> tuple[float, float]:
    rows, cols = np.indices(image.shape)
    total = image.sum()
    return float((rows * image).sum() / total), float((cols * image).sum() / total)


def to_model_input(image: np.ndarray) -> np.ndarray | None:
    """A canvas RGBA array or an uploaded picture -> 28x28 float32 in [0, 1] as MNIST made it; None if no digit."""
    ink = ink_of(image)
    mask = _ink_mask(ink)
    if ink.max() < 0.1 or is_speck(mask):
        return None
    top, bottom, left, right = _bounding_box(mask)
    # 0. a photo's ink box is shrunk to the canvas's size first: thickening costs radius^2 passes over the box, which
    #    for a 2,000-pixel digit with a thin pen would take minutes; at this size it takes milliseconds
    if max(bottom - top, right - left) > WORK_SIDE:
        ink = _shrink(ink[top:bottom, left:right], WORK_SIDE)
        mask = _ink_mask(ink)
        top, bottom, left, right = _bounding_box(mask)
    # 1. thicken strokes much thinner than MNIST's, measured against the bounding box they will be scaled with
    longest = max(bottom - top, right - left)
    missing = STROKE * longest - _stroke_width(mask[top:bottom, left:right])
    if missing > 2:
        pad = int(missing / 2 + 0.5)
        ink = _dilate(np.pad(ink[top:bottom, left:right], pad), pad)
        top, bottom, left, right = 0, ink.shape[0], 0, ink.shape[1]
        longest = max(bottom, right)
    # 2. scale the bounding box into 20x20, aspect kept, with area averaging (anti-aliased)
    crop = ink[top:bottom, left:right]
    scale = BOX / longest
    height, width = max(1, round(crop.shape[0] * scale)), max(1, round(crop.shape[1] * scale))
    small = np.asarray(Image.fromarray(crop.astype(np.float32)).resize((width, height), Image.Resampling.BOX))
    small = np.clip(small / max(float(small.max()), 1e-6), 0, 1)
    # 3. place it in 28x28 with its centre of mass where MNIST puts it, shifted by whole pixels
    cy, cx = _centre_of_mass(small)
    y = int(np.clip(round(CENTRE - cy), 0, SIZE - height))
    x = int(np.clip(round(CENTRE - cx), 0, SIZE - width))
    out = np.zeros((SIZE, SIZE), np.float32)
    out[y:y + height, x:x + width] = small
    return out
