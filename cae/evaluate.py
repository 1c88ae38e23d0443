"""Score a checkpoint, or reconstruct images with it: `python -m cae.evaluate --help`.

    python -m cae.evaluate [CHECKPOINT]               one JSON object: held_out_mse, pca_mse, code_size, source, count,
                                                      and the scores its model type declares (held_out_elbo_nats for
                                                      a variational model, held_out_own_noise_psnr_db for a denoiser)
    python -m cae.evaluate CHECKPOINT --noise gaussian:0.5   adds noisy_psnr_db and output_psnr_db
    python -m cae.evaluate --reconstruct IN.npy OUT.npy   reconstructions of an (N, 28, 28) array in [0, 1]
    python -m cae.evaluate CHECKPOINT --sample N OUT.npy  N new digits from the prior of a type that has one

Without CHECKPOINT the shipped pretrained default is used. `--dry-run` scores only the first 500 digits.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from cae.engine import checkpoint
from cae.engine.data import DataError, load_mnist
from cae.engine.metrics import declared_scores, denoising_psnr, model_mse, pca_mse, reconstruct
from cae.models.config import ConfigError
from cae.models.noise import Noise
from cae.models.registry import MODEL_TYPES

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


def evaluate(ckpt: checkpoint.Checkpoint, *, limit: int | None = None, noise: Noise | None = None) -> dict:
    """Model and PCA (as many components as the code has, fitted on the same training data) on the same digits, and
    the scores the model's type declares; with `noise`, also how well the model cleans noisy copies of them."""
    data = load_mnist()
    test = data.val_images[:limit]
    code_size = ckpt.model_config.code_size
    model = ckpt.build_model()
    result = {checkpoint.SCORE: model_mse(model, test), "pca_mse": pca_mse(data.train_images, test, code_size),
              "code_size": code_size, "model_type": ckpt.model_type,
              "source": data.source, "split": data.val_name, "count": len(test), "trained_on": ckpt.data_source}
    result.update(declared_scores(model, test))
    if noise is not None:
        noisy, output = denoising_psnr(model, test, noise)
        result.update(noise=f"{noise.kind}:{noise.amount:g}", noisy_psnr_db=noisy, output_psnr_db=output)
    return result


def sample(ckpt: checkpoint.Checkpoint, count: int, *, seed: int = 0) -> np.ndarray:
    """(count, 28, 28) digits decoded from the prior; InputError for a model type that has none."""
    if not ckpt.kind.can_sample:
        able = " or ".join(f"--model-type {kind.name}" for kind in MODEL_TYPES.values() if kind.can_sample)
        raise InputError(f"this model ({ckpt.kind.title}) cannot sample new digits: it has no prior over its codes. "
                         f"A model of a type with a prior can ({able or 'none is registered'}).")
    if count < 1:
        raise InputError(f"--sample needs a positive count, got {count}")
    with torch.no_grad():
        images = ckpt.build_model().sample(count, torch.Generator().manual_seed(seed))
    return images[:, 0].numpy()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cae.evaluate", description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", nargs="?", type=Path, default=checkpoint.DEFAULT_CHECKPOINT)
    task = parser.add_mutually_exclusive_group()
    task.add_argument("--reconstruct", nargs=2, type=Path, metavar=("IN.npy", "OUT.npy"))
    parser.add_argument("--noise", metavar="KIND:AMOUNT",
                        help="also score denoising: gaussian:SIGMA, mask:FRACTION or saltpepper:FRACTION")
    task.add_argument("--sample", nargs=2, metavar=("N", "OUT.npy"), help="N new digits from the model's prior")
    parser.add_argument("--dry-run", action="store_true", help=f"score the first {DRY_RUN_DIGITS} digits only")
    args = parser.parse_args(argv)
    if (args.sample or args.reconstruct) and (args.noise or args.dry_run):
        parser.error("--noise and --dry-run go with scoring, not with --reconstruct or --sample")  # exit status 2
    try:
        ckpt = checkpoint.load(args.checkpoint)
        if args.sample:
            count, target = args.sample
            if not count.isdigit():
                raise InputError(f"--sample needs a whole number of digits, got {count!r}")
            images = sample(ckpt, int(count))
            target = Path(target).with_suffix(".npy")  # np.save would add it anyway
            np.save(target, images)
            print(json.dumps({"sampled": len(images), "out": str(target)}))
        elif args.reconstruct:
            source, target = args.reconstruct
            outputs = reconstruct(ckpt.build_model(), load_images(source))
            np.save(target, outputs)
            print(json.dumps({"reconstructed": len(outputs), "out": str(target)}))
        else:
            noise = Noise.parse(args.noise) if args.noise else None
            result = evaluate(ckpt, limit=DRY_RUN_DIGITS if args.dry_run else None, noise=noise)
            print(json.dumps({"checkpoint": str(args.checkpoint), **result}))
    except (checkpoint.CheckpointError, ConfigError, DataError, InputError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
