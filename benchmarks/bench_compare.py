"""The Compare runs page's server time for ten runs: real runs trained into a temporary run store, then the page
drawn with all ten chosen (and PCA), under AppTest in this process.

Prints, for ten new runs: the first draw in a new session (the runs' scores read from the store, as each run stored
them when it ended), a redraw, and the same first draw with the runs' stored scores taken away (the page then scores
each model itself, as it did before runs were scored as they ended): the ratio of the two first draws. PCA's one-time
fit per server process is timed on its own before them. Goal: ten runs draw in at most 1 s of server time.
Needs MNIST in the data folder (CAE_DATA_DIR or ./data). Run: `python -m benchmarks.bench_compare [--digits 1000]`.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from streamlit.testing.v1 import AppTest

from cae.engine.data import load_mnist
from cae.engine.recording import COMPARISON_SCORES, RunRecorder
from cae.engine.runner import TrainingRunner
from cae.engine.store import RunStore, new_workspace_id
from cae.engine.train_config import PAGE_DEFAULTS
from cae.engine.trainer import Trainer
from cae.views.compare import run_label

ROOT = Path(__file__).resolve().parents[1]
RUNS = 10
CHOSEN_KEY = "c_chosen"  # the Compare page's choice of models (pages/4_Compare.py CompareKey.CHOSEN)


def train_runs(data, train_config, store: RunStore, workspace: str) -> float:
    """Ten real runs, each code size a different one, recorded as the Train page records them; their wall time."""
    began = time.perf_counter()
    for index in range(RUNS):
        model_config = replace(PAGE_DEFAULTS.model, code_size=4 * (index + 1))
        trainer = Trainer(model_config, train_config, data)
        runner = TrainingRunner(trainer, recorder=RunRecorder(store, workspace, name=f"code {model_config.code_size}"))
        runner.start()
        runner.join()
    return time.perf_counter() - began


def draw(workspace: str, chosen: list[str]) -> tuple[AppTest, float]:
    """A new session opening the Compare page with these models chosen (and PCA): the seconds of the page's first
    run, which draws them."""
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=600)
    at.query_params["w"] = workspace
    at.session_state[CHOSEN_KEY] = chosen
    at.run()
    assert not at.exception, at.exception
    began = time.perf_counter()
    at.switch_page("pages/4_Compare.py").run()
    seconds = time.perf_counter() - began
    assert not at.exception, at.exception
    assert len(at.dataframe[0].value) == len(chosen) + 1, "every model chosen and PCA in the table"
    return at, seconds


def redraw(at: AppTest) -> float:
    began = time.perf_counter()
    at.run()
    return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--digits", type=int, default=1000, help="training digits per run (one epoch each)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cae-runs-") as folder:
        os.environ["CAE_RUNS_DIR"] = folder
        data = load_mnist()
        train_config = replace(PAGE_DEFAULTS.train, train_subset=args.digits, epochs=1)
        workspace = new_workspace_id()
        with RunStore() as store:
            trained = train_runs(data, train_config, store, workspace)
            records = store.list_runs(workspace)
        labels = [run_label(record) for record in records]
        print(f"{RUNS} runs trained in {trained:.1f} s ({args.digits:,} digits x 1 epoch each, scored as they "
              f"ended), {data.source}, {len(data.val_images):,} held-out digits")
        _, pca_first = draw(new_workspace_id(), [])  # nothing but PCA: its fit, once per server process
        print(f"PCA's first draw (its fit, once per server process): {pca_first:.2f} s")
        at, stored = draw(workspace, labels)
        again = redraw(at)
        print(f"ten runs, first draw in a new session: {stored:.2f} s (goal <= 1 s); a redraw: {again:.2f} s")
        with RunStore() as store:
            for record in records:
                store.update_scores(record.id, {COMPARISON_SCORES: None})
        _, measured = draw(workspace, labels)
        print(f"the same ten runs without their stored scores (scored on the page): {measured:.2f} s; "
              f"stored / scored here: {stored / measured:.3f}")


if __name__ == "__main__":
    main()
