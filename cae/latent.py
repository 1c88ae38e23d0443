"""The code-space command line: a 2-D map of the validation digits' codes, written as an (N, 2) array.

    python -m cae.latent [CHECKPOINT] --method pca|tsne --out MAP.npy [--save-codes CODES.npy] [--score] [--dry-run]

Row i of MAP.npy is validation digit i. One JSON line: method, count, seconds (the map alone; encoding is
`encode_seconds`), and with --score the 5-NN accuracy of the map (labels are used for that score only).
`--dry-run` maps the first 500 digits. Without CHECKPOINT the shipped pretrained default is used.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from cae.engine import checkpoint
from cae.engine.data import DataError, load_mnist
from cae.views.latent import encode_images, fit_pca, knn_accuracy
from cae.views.latent_maps import fit_tsne

METHODS = ("pca", "tsne")
DRY_RUN_DIGITS = 500


def make_map(codes: np.ndarray, method: str) -> np.ndarray:
    """(N, D) codes -> (N, 2) by the named method (a 2-number code is drawn as it is by "pca")."""
    if method == "pca":
        return fit_pca(codes).coords
    return fit_tsne(codes).coords


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cae.latent", description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", nargs="?", type=Path, default=checkpoint.DEFAULT_CHECKPOINT)
    parser.add_argument("--method", choices=METHODS, default="pca")
    parser.add_argument("--out", type=Path, required=True, help="the (N, 2) coordinates, as .npy")
    parser.add_argument("--save-codes", type=Path, metavar="CODES.npy", help="also write the (N, D) codes")
    parser.add_argument("--score", action="store_true", help="add the map's 5-NN accuracy (5-fold CV)")
    parser.add_argument("--dry-run", action="store_true", help=f"map the first {DRY_RUN_DIGITS} digits only")
    args = parser.parse_args(argv)
    try:
        model = checkpoint.load(args.checkpoint).build_model()
        data = load_mnist()
    except (checkpoint.CheckpointError, DataError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    count = DRY_RUN_DIGITS if args.dry_run else len(data.val_images)
    started = time.perf_counter()
    codes = encode_images(model, data.val_images[:count])
    encoded = time.perf_counter()
    coords = make_map(codes, args.method)
    seconds = time.perf_counter() - encoded
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.save(args.out, np.asarray(coords, np.float32))
    if args.save_codes:
        np.save(args.save_codes, codes)
    summary = {"method": args.method, "count": len(coords), "seconds": round(seconds, 2),
               "encode_seconds": round(encoded - started, 2), "code_size": codes.shape[1],
               "source": data.source, "out": str(args.out)}
    if args.score:
        summary["knn5_accuracy"] = round(knn_accuracy(coords, data.val_labels.numpy()[:count]), 4)
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
