"""Engine benchmarks on full MNIST (import it first: `python -m cae.data import ../shared/data/MNIST/raw`).

Prints, from one process:
  1. the trainer's samples/s against a bare PyTorch loop on the same model, batch and data (ratio; goal >= 0.95);
  2. training time for the trainer, from scratch, to pass PCA-32's test MSE (goal <= 30 s);
  3. one digit through preprocessing, encode and decode: median latency (goal <= 5 ms).
Run: `python -m benchmarks.bench_engine [--quick]`.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from cae.engine import checkpoint
from cae.engine.data import load_mnist
from cae.engine.metrics import as_batch, model_mse, pca_mse
from cae.engine.preprocess import to_model_input
from cae.engine.trainer import TrainConfig, Trainer
from cae.models.autoencoder import ConvAutoencoder, ModelConfig
from cae.views.explore import reconstruct_one

BATCH = 128


def bare_loop(images: torch.Tensor, steps: int, seed: int = 0) -> float:
    """The textbook loop: same model, Adam, batch and uint8 -> float conversion. Returns samples/s."""
    torch.manual_seed(seed)
    model = ConvAutoencoder(ModelConfig())
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    order = torch.randperm(len(images))
    start = time.perf_counter()
    for i in range(steps):
        x = as_batch(images[order[i * BATCH:(i + 1) * BATCH]])
        loss = F.mse_loss(model(x), x)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return steps * BATCH / (time.perf_counter() - start)


def trainer_loop(data, steps: int, seed: int = 0) -> float:
    trainer = Trainer(ModelConfig(), TrainConfig(seed=seed, batch_size=BATCH, epochs=1), data)
    start = time.perf_counter()
    for _ in range(steps):  # fewer steps than an epoch: no validation inside the timing
        trainer.step()
    return steps * BATCH / (time.perf_counter() - start)


def throughput(data, steps: int, rounds: int) -> None:
    bare_loop(data.train_images, 10), trainer_loop(data, 10)  # warm up both paths
    bare, ours = [], []
    for r in range(rounds):  # interleaved, so drifts in machine load hit both alike
        bare.append(bare_loop(data.train_images, steps, r))
        ours.append(trainer_loop(data, steps, r))
    b, t = statistics.median(bare), statistics.median(ours)
    print(f"1. throughput, {rounds} rounds of {steps} steps of {BATCH}: bare loop {b:,.0f} samples/s, "
          f"trainer {t:,.0f} samples/s, ratio {t / b:.3f} (goal >= 0.95)")


def time_to_pca(data, check_every: int, limit_s: float) -> None:
    target = pca_mse(data.train_images, data.val_images, 32)
    trainer = Trainer(ModelConfig(), TrainConfig(learning_rate=2e-3, batch_size=BATCH, epochs=3), data)
    training = 0.0
    while not trainer.finished and training < limit_s:
        start = time.perf_counter()
        for _ in range(check_every):
            if trainer.step_count % trainer.steps_per_epoch == trainer.steps_per_epoch - 1:
                break  # leave the end-of-epoch validation to the probe below, outside the clock
            trainer.step()
        training += time.perf_counter() - start
        mse = model_mse(trainer.model, data.val_images)  # the probe: all 10,000 test digits, clock stopped
        if mse < target:
            print(f"2. from scratch to below PCA-32's test MSE {target:.4f}: {training:.1f} s of training "
                  f"({trainer.step_count} steps, {trainer.step_count * BATCH:,} digits; test MSE {mse:.4f}; "
                  f"probes every {check_every} steps not timed) (goal <= 30 s)")
            return
        if trainer.step_count % trainer.steps_per_epoch == trainer.steps_per_epoch - 1:
            trainer.step()  # the epoch's last step, with its validation, outside the clock
    print(f"2. did not pass PCA-32 ({target:.4f}) within {limit_s:.0f} s of training")


def latency(data, count: int) -> None:
    model = checkpoint.load(checkpoint.DEFAULT_CHECKPOINT).build_model()
    canvases = []
    for digit in data.val_images[:count].numpy():  # MNIST digits blown up to canvas size, as RGBA
        big = np.asarray(Image.fromarray(digit).resize((280, 280), Image.Resampling.BILINEAR))
        canvases.append(np.dstack([big, big, big, np.full_like(big, 255)]))
    for canvas in canvases[:10]:
        reconstruct_one(model, to_model_input(canvas))
    prep, full = [], []
    for canvas in canvases:
        start = time.perf_counter()
        image = to_model_input(canvas)
        middle = time.perf_counter()
        reconstruct_one(model, image)
        end = time.perf_counter()
        prep.append(middle - start)
        full.append(end - start)
    print(f"3. one 280x280 canvas -> 28x28 -> encode -> decode, median of {count}: "
          f"{statistics.median(full) * 1e3:.2f} ms (preprocessing {statistics.median(prep) * 1e3:.2f} ms) "
          f"(goal <= 5 ms)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps and rounds (a smoke run)")
    args = parser.parse_args()
    data = load_mnist()
    print(f"data: {data.describe()}; torch {torch.__version__}, {torch.get_num_threads()} threads")
    throughput(data, steps=20 if args.quick else 150, rounds=1 if args.quick else 3)
    time_to_pca(data, check_every=25, limit_s=5 if args.quick else 120)
    latency(data, count=50 if args.quick else 200)


if __name__ == "__main__":
    main()
