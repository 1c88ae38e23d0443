"""The run store's cost to training: the same run through a TrainingRunner without a store and with one (in a
temporary CAE_RUNS_DIR), interleaved, and what the store wrote.

Prints, for the Train page's defaults on a training subset (--digits, --epochs): samples/s without and with the
store and their ratio (goal: at least 0.90), the writes of loss points (with their median time) and checkpoints,
and the bytes the run takes (record and files). Needs MNIST in the data folder (CAE_DATA_DIR or ./data). Run:
`python -m benchmarks.bench_store [--digits 5000 --epochs 2 --rounds 2]`.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from dataclasses import replace

from cae.engine.data import load_mnist
from cae.engine.recording import RunRecorder
from cae.engine.runner import TrainingRunner
from cae.engine.store import RunStore, new_workspace_id
from cae.engine.train_config import PAGE_DEFAULTS
from cae.engine.trainer import Trainer


class TimedStore:
    """A RunStore whose loss-point writes are timed."""

    def __init__(self, store: RunStore):
        self.store = store
        self.append_seconds: list[float] = []

    def __getattr__(self, name):
        return getattr(self.store, name)

    def append_steps(self, run_id, rows, **kwargs):
        began = time.perf_counter()
        self.store.append_steps(run_id, rows, **kwargs)
        self.append_seconds.append(time.perf_counter() - began)


def one_run(data, train_config, store: TimedStore | None, workspace: str) -> float:
    """Samples/s over the run's wall time (pauses and waits excluded, validation included)."""
    trainer = Trainer(PAGE_DEFAULTS.model, train_config, data)
    recorder = None if store is None else RunRecorder(store, workspace)
    runner = TrainingRunner(trainer, recorder=recorder)
    runner.start()
    runner.join()
    return trainer.history.samples / runner.wall_seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--digits", type=int, default=5000)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    data = load_mnist()
    train_config = replace(PAGE_DEFAULTS.train, train_subset=args.digits, epochs=args.epochs)
    with tempfile.TemporaryDirectory(prefix="cae-runs-") as folder, RunStore(root=folder) as opened:
        store = TimedStore(opened)
        workspace = new_workspace_id()
        without, with_store = [], []
        for _ in range(args.rounds):  # interleaved: the machine's load hits both alike
            without.append(one_run(data, train_config, None, workspace))
            with_store.append(one_run(data, train_config, store, workspace))
        plain, stored = statistics.median(without), statistics.median(with_store)
        print(f"samples/s without the store {plain:,.0f}, with it {stored:,.0f}: ratio {stored / plain:.3f} "
              f"(goal >= 0.90; {args.rounds} rounds, {args.digits:,} digits x {args.epochs} epochs)")
        print(f"loss-point writes: {len(store.append_seconds)} over {args.rounds} runs, median "
              f"{statistics.median(store.append_seconds) * 1000:.1f} ms, max {max(store.append_seconds) * 1000:.1f} ms")
        last = opened.list_runs(workspace)[0]
        print(f"the last run: {last.loss_points} loss points, {last.record_bytes:,} bytes of record, "
              f"{last.files_bytes:,} bytes of checkpoints ({', '.join(item.kind for item in last.checkpoints)})")


if __name__ == "__main__":
    main()
