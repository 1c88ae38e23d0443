"""Train a model from the command line and write a checkpoint: `python -m cae.train --help`.

`--model-type cae|dae|vae` picks the model type; every field of its config and of TrainConfig is an option.
Ctrl+C stops between steps and still saves the model. `--dry-run` trains one epoch on 512 digits: the real path in
seconds. `--workspace ID` also writes the run to the run store (cae.engine.store) as it trains, in that workspace,
where the app shows it at the workspace's address (a teacher can prepare runs for a class).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from tqdm import tqdm

from cae.cli import add_config_options, config_from_args
from cae.engine import checkpoint
from cae.engine.data import DataError, MnistData, load_mnist
from cae.engine.metrics import model_mse, pca_mse
from cae.engine.recording import RunRecorder
from cae.engine.store import RunStore, StoreError, WorkspaceIdError, check_workspace_id
from cae.engine.train_config import TrainConfig
from cae.engine.trainer import StopReason, Trainer
from cae.models.config import ConfigError
from cae.models.registry import MODEL_TYPES, model_type

DRY_RUN_DIGITS = 512


def train(trainer: Trainer, *, progress: bool = True, recorder: RunRecorder | None = None) -> None:
    """Step until finished, showing a progress bar; Ctrl+C stops the run, keeping what was learned. With a
    `recorder`, the run is written to the run store as it goes, and ended there."""
    bar = tqdm(total=trainer.total_steps, unit="step", disable=not progress, dynamic_ncols=True)
    began = time.perf_counter()
    error = None
    if recorder is not None:
        recorder.begin(trainer)
    try:
        while not trainer.finished:
            result = trainer.step()
            if recorder is not None:
                recorder.progress(trainer, time.perf_counter() - began, state="running")
            bar.update(1)
            bar.set_postfix(epoch=result.epoch + 1, loss=f"{result.loss:.4f}",
                            samples_s=f"{trainer.history.samples_per_s:.0f}")
            if result.val_mse is not None:
                bar.write(f"epoch {result.epoch + 1}: held-out MSE {result.val_mse:.5f}")
    except KeyboardInterrupt:
        trainer.stop(StopReason.INTERRUPTED)
    except Exception as failure:
        error = f"{type(failure).__name__}: {failure}"
        raise
    finally:
        bar.close()
        if recorder is not None:
            recorder.end(trainer, time.perf_counter() - began, error)


def writable_target(out: Path) -> Path:
    """The checkpoint's path, checked before training starts: a bad --out must not cost a finished run."""
    if out.is_dir():
        raise ConfigError(f"--out {out} is a folder; give a file name, such as {out / 'model.pt'}")
    folder = out.parent
    while not folder.exists() and folder != folder.parent:  # the nearest folder that exists must take new files
        folder = folder.parent
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ConfigError(f"--out {out}: cannot write into {folder}")
    return out


def add_training_options(parser: argparse.ArgumentParser) -> None:
    """The model type, every field of its config and of TrainConfig, and the run's options (shared with cae.sweep)."""
    parser.add_argument("--model-type", choices=list(MODEL_TYPES), default="cae",
                        help="; ".join(f"{kind.name}: {kind.title}" for kind in MODEL_TYPES.values()))
    add_config_options(parser, CONFIG_CLASSES, "model")
    add_config_options(parser, [TrainConfig], "training")
    parser.add_argument("--dry-run", action="store_true", help=f"1 epoch on {DRY_RUN_DIGITS} digits")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--workspace", help="also write the run to the run store, in this workspace (its id: "
                                            "`python -m cae.runs new-workspace` makes one, or the app's ?w=)")


CONFIG_CLASSES = [kind.config_class for kind in MODEL_TYPES.values()]


def configs_from(args: argparse.Namespace) -> tuple[Any, TrainConfig]:
    """The model and training configs the options describe; ConfigError says what is wrong."""
    model_config = config_from_args(model_type(args.model_type).config_class, args, option_classes=CONFIG_CLASSES,
                                    owner=f"--model-type {args.model_type}")
    train_config = config_from_args(TrainConfig, args)
    if args.dry_run:
        train_config = replace(train_config, epochs=1, train_subset=DRY_RUN_DIGITS)
    return model_config, train_config


def recorder_for(workspace: str | None, name: str | None) -> RunRecorder | None:
    """A recorder into the workspace (None without one); WorkspaceIdError or StoreError says why not."""
    if workspace is None:
        return None
    check_workspace_id(workspace)
    return RunRecorder(RunStore(), workspace, name=name)


def store_failure(error: WorkspaceIdError | StoreError) -> int:
    """Say on stderr why the run store cannot take the runs; the exit status: 2 for a bad --workspace, 1 for a
    store that cannot be opened or written."""
    if isinstance(error, WorkspaceIdError):
        print(f"error: --workspace: {error}", file=sys.stderr)
        return 2
    print(f"error: {error}", file=sys.stderr)
    return 1


def train_and_save(trainer: Trainer, data: MnistData, out: Path, *, recorder: RunRecorder | None,
                   progress: bool) -> dict[str, Any]:
    """Train to the end (or Ctrl+C), save the checkpoint with its scores at `out`, and say how it went."""
    train(trainer, progress=progress, recorder=recorder)
    ckpt = trainer.checkpoint()  # a run that went to its end holds its score: the last epoch's check of every digit
    checkpoint.save(ckpt, out)  # the trained weights are safe on disk before the scoring below, which takes a while
    if ckpt.held_out_mse is None:  # stopped early: score the weights it stopped with
        ckpt.record_score(model_mse(trainer.model, data.val_images), len(data.val_images), data.val_name)
    ckpt.metrics["pca_mse"] = pca_mse(data.train_images, data.val_images, trainer.model_config.code_size)
    checkpoint.save(ckpt, out)
    summary = {"checkpoint": str(out), checkpoint.SCORE: ckpt.held_out_mse, "evaluated_on": ckpt.evaluated_on,
               "pca_mse": ckpt.metrics["pca_mse"], "train_seconds": round(trainer.history.train_seconds, 1),
               "samples_per_s": round(trainer.history.samples_per_s), "stop_reason": trainer.stop_message}
    if recorder is not None:
        summary.update(workspace=recorder.workspace, run_id=recorder.run_id, store_problem=recorder.problem)
        if recorder.problem is None:
            try:
                recorder.store.update_scores(recorder.run_id, {checkpoint.SCORE: ckpt.held_out_mse,
                                                               "pca_mse": ckpt.metrics["pca_mse"]})
            except StoreError as error:
                summary["store_problem"] = str(error)
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cae.train", description=__doc__.split("\n\n")[0])
    add_training_options(parser)
    parser.add_argument("--out", type=Path, help="checkpoint path (default: runs/<type>-<time>.pt)")
    parser.add_argument("--name", help="the run's name in the run store (with --workspace)")
    args = parser.parse_args(argv)
    try:
        recorder = recorder_for(args.workspace, args.name)
    except (WorkspaceIdError, StoreError) as error:
        return store_failure(error)
    try:
        model_config, train_config = configs_from(args)
        out = writable_target(args.out or Path("runs") / f"{args.model_type}-{time.strftime('%Y%m%d-%H%M%S')}.pt")
        data = load_mnist()
        trainer = Trainer(model_config, train_config, data)
    except (ConfigError, DataError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"data: {data.describe()}")
    print(f"model: {model_type(args.model_type).title}: {model_config.describe()}; objective in {trainer.loss_label}")
    print(f"device: {trainer.device}; {trainer.total_steps} steps of {train_config.batch_size}")
    summary = train_and_save(trainer, data, out, recorder=recorder, progress=not args.no_progress)
    print(json.dumps(summary))
    return 1 if trainer.stop_reason not in (None, StopReason.INTERRUPTED) else 0


if __name__ == "__main__":
    sys.exit(main())
