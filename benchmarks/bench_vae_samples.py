"""How clearly and evenly a variational model's prior samples read as the ten digits, by a classifier that never saw
the model: 3 nearest neighbours among the 60,000 MNIST training digits (pixels; its accuracy on the 10,000 test
digits is printed beside it). Full MNIST in the data folder (CAE_DATA_DIR or ./data).

Prints one JSON line: the classifier's test accuracy; for N samples (`python -m cae.evaluate --sample`'s path,
seeded), the count read as each class, the smallest and largest class share, the normalised entropy of the class
shares (1 = perfectly even), and the share of samples whose 3 neighbours all agree (read clearly; the same
share for the test digits as a yardstick).
Run: `python -m benchmarks.bench_vae_samples [CHECKPOINT] [--count 1000] [--seed 0]`.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from cae.engine import checkpoint
from cae.engine.data import load_mnist
from cae.evaluate import sample

NEIGHBOURS = 3


def neighbour_votes(train: torch.Tensor, labels: torch.Tensor, queries: torch.Tensor) -> torch.Tensor:
    """(N, NEIGHBOURS) labels of each query's nearest training digits (Euclidean distance over the pixels)."""
    votes = []
    for start in range(0, len(queries), 500):
        distances = torch.cdist(queries[start:start + 500], train)
        votes.append(labels[distances.topk(NEIGHBOURS, largest=False).indices])
    return torch.cat(votes)


def agreement(votes: torch.Tensor) -> float:
    """The share of digits whose neighbours all carry the same label: read clearly, not between two classes."""
    return (votes == votes[:, :1]).all(dim=1).float().mean().item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", nargs="?", default=str(checkpoint.PRETRAINED_DIR / "vae.pt"))
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    data = load_mnist()
    train = data.train_images.flatten(1).float() / 255
    test = data.val_images.flatten(1).float() / 255
    test_votes = neighbour_votes(train, data.train_labels, test)
    accuracy = (test_votes.mode(dim=1).values == data.val_labels).float().mean().item()
    samples = torch.from_numpy(sample(checkpoint.load(args.checkpoint), args.count, seed=args.seed)).flatten(1)
    votes = neighbour_votes(train, data.train_labels, samples)
    read_as = votes.mode(dim=1).values
    counts = np.bincount(read_as.numpy(), minlength=10)
    shares = counts / counts.sum()
    nonzero = shares[shares > 0]
    print(json.dumps({
        "checkpoint": args.checkpoint, "samples": args.count, "seed": args.seed,
        "classifier_test_accuracy": round(accuracy, 4),
        "counts_by_class": counts.tolist(), "classes_seen": int((counts > 0).sum()),
        "smallest_share": round(float(shares.min()), 4), "largest_share": round(float(shares.max()), 4),
        "evenness": round(float(-(nonzero * np.log(nonzero)).sum() / np.log(10)), 4),
        "all_neighbours_agree": round(agreement(votes), 4),
        "all_neighbours_agree_on_test_digits": round(agreement(test_votes), 4),  # the yardstick: real digits
    }))


if __name__ == "__main__":
    main()
