"""The run store's cost to training: the same run through a TrainingRunner without a store and with one (in a
temporary CAE_RUNS_DIR), interleaved, and what the store wrote.

Prints, for the Train page's defaults on a training subset (--digits, --epochs): samples/s without and with the
store and their ratio (goal: at least 0.90), the writes of loss points (with their median time) and checkpoints,
and the bytes the run takes (record and files); then the store alone: a snapshot's write time, and the time to
list a workspace of ten runs with their loss curves. Needs MNIST in the data folder (CAE_DATA_DIR or ./data). Run:
`python -m benchmarks.bench_store [--digits 5000 --epochs 2 --rounds 2]`.

The database is SQLite in the temporary folder unless `--url URL` or CAE_RUNS_DB names another (e.g. PostgreSQL,
`postgresql://user:password@host/database`; the run store's tables there are used as they are) or `--postgres`
starts a throwaway local PostgreSQL server with a real server's durability settings (tests/postgres.py).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import tempfile
import time
from dataclasses import replace

from cae.engine.data import load_mnist
from cae.engine.recording import RunRecorder
from cae.engine.runner import TrainingRunner
from cae.engine.store import Progress, RunStore, StepRow, new_workspace_id
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
    parser.add_argument("--snapshots", type=int, default=200, help="writes timed for the store alone")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--url", help="the run store's database URL (default: SQLite in a temporary folder)")
    where.add_argument("--postgres", action="store_true", help="start a throwaway local PostgreSQL server for it")
    args = parser.parse_args()
    data = load_mnist()
    train_config = replace(PAGE_DEFAULTS.train, train_subset=args.digits, epochs=args.epochs)
    with contextlib.ExitStack() as stack:
        folder = stack.enter_context(tempfile.TemporaryDirectory(prefix="cae-runs-"))
        url = args.url or os.environ.get("CAE_RUNS_DB") or f"sqlite:///{folder}/runs.sqlite"
        if args.postgres:
            from tests.postgres import postgres_server

            url = stack.enter_context(postgres_server(durable=True)).new_database()
        opened = stack.enter_context(RunStore(url, root=folder))
        print(f"run store: {opened.location}")
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
        store_alone(opened, args.snapshots)


def store_alone(store: RunStore, snapshots: int) -> None:
    """The store's own times, without training beside it: `snapshots` writes of a second's steps at the page's
    pace (20 rows with two terms), then the reads a page makes of a workspace of ten such runs."""
    workspace = new_workspace_id()
    run_ids = [store.create_run(workspace, model_type="vae", model_config={}, train_config={},
                                data_source="MNIST").id for _ in range(10)]
    writes = []
    for batch in range(snapshots):
        rows = [StepRow(batch * 20 + i, 0.05, {"reconstruction": 0.04, "kl": 0.01}, (batch * 20 + i) * 128)
                for i in range(1, 21)]
        began = time.perf_counter()
        store.append_steps(run_ids[batch % len(run_ids)], rows,
                           progress=Progress(batch * 20 + 20, (batch * 20 + 20) * 128, batch * 1.0, 2560.0))
        writes.append(time.perf_counter() - began)
    reads = []
    for _ in range(20):
        began = time.perf_counter()
        for record in store.list_runs(workspace):
            store.loss_curve(workspace, record.id)
        reads.append(time.perf_counter() - began)
    print(f"store alone: {snapshots} snapshot writes of 20 steps, median {statistics.median(writes) * 1000:.1f} ms, "
          f"p95 {sorted(writes)[int(len(writes) * 0.95)] * 1000:.1f} ms; a workspace of 10 runs listed with their "
          f"curves ({snapshots * 20 // 10:,} points each): median {statistics.median(reads) * 1000:.1f} ms")


if __name__ == "__main__":
    main()
