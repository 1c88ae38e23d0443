"""Score a checkpoint, or reconstruct images with it: `python -m cae.evaluate --help`.

    python -m cae.evaluate [CHECKPOINT]               one JSON object: test_mse, pca_mse, code_size, source, count
    python -m cae.evaluate --reconstruct IN.npy OUT.npy   reconstructions of an (N, 28, 28) array in [0, 1]

Without CHECKPOINT the shipped pretrained default is used. `--dry-run` scores only the first 500 digits.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from cae import checkpoint
from cae.data import DataError, load_mnist
from cae.metrics import model_mse, pca_mse, reconstruct

DRY_RUN_DIGITS = 500


class InputError(ValueError):
    """An input array that is not (N, 28, 28) numbers in [0, 1]."""


def load_images(path: Path) -> np.ndarray:
    try:
        images = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise InputError(f"{path} is not a readable .npy array: {error}") from error
    if images.ndim == 2:
        images = images[None]
    if images.ndim != 3 or images.shape[1:] != (28, 28) or not np.issubdtype(images.dtype, np.number):
        raise InputError(f"{path} must hold an (N, 28, 28) array of numbers, not {images.dtype} {images.shape}")
    images = images.astype(np.float32)
    if not np.isfinite(images).all() or images.min() < 0 or images.max() > 1:
        raise InputError(f"{path} must hold values in [0, 1] (divide 0..255 images by 255)")
    return images


def evaluate(ckpt: checkpoint.Checkpoint, *, limit: int | None = None) -> dict:
    """Model and PCA (as many components as the code has, fitted on the same training data) on the same digits."""
    data = load_mnist()
    test = data.val_images[:limit]
    code_size = ckpt.model_config["code_size"]
    return {"test_mse": model_mse(ckpt.build_model(), test),
            "pca_mse": pca_mse(data.train_images, test, code_size),
            "code_size": code_size, "model_type": ckpt.model_type,
            "source": data.source, "split": data.val_name, "count": len(test),
            "trained_on": ckpt.data_source}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cae.evaluate", description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", nargs="?", type=Path, default=checkpoint.DEFAULT_CHECKPOINT)
    parser.add_argument("--reconstruct", nargs=2, type=Path, metavar=("IN.npy", "OUT.npy"))
    parser.add_argument("--dry-run", action="store_true", help=f"score the first {DRY_RUN_DIGITS} digits only")
    args = parser.parse_args(argv)
    try:
        ckpt = checkpoint.load(args.checkpoint)
        if args.reconstruct:
            source, target = args.reconstruct
            outputs = reconstruct(ckpt.build_model(), load_images(source))
            np.save(target, outputs)
            print(json.dumps({"reconstructed": len(outputs), "out": str(target)}))
        else:
            result = evaluate(ckpt, limit=DRY_RUN_DIGITS if args.dry_run else None)
            print(json.dumps({"checkpoint": str(args.checkpoint), **result}))
    except (checkpoint.CheckpointError, DataError, InputError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
