"""Sweep one setting from the command line: `python -m cae.sweep code_size=2,4,8,16,32,64 [cae.train options]`.

Each value of the setting becomes one run with every other option as given (the same options as
`python -m cae.train`), trained one after another, its checkpoint saved in --out-dir, and with `--workspace ID`
written to the run store, where the app's Compare page draws the sweep: each run's score against the setting's
value, beside PCA at the same sizes for a code-size sweep (the bottleneck curve). Prints one JSON object a run.
Every value is checked before the first run starts: a bad one exits with status 2 and trains nothing. Ctrl+C stops
the run in flight (its model is saved) and the sweep.

With CAE_RAY_ADDRESS naming a Ray cluster (docs/cluster.md), every run is submitted at once, one actor a run, and
each run's line is printed as it ends; the runs are kept in the run store (in --workspace, else in a new workspace
that the sweep names), from which each checkpoint is copied into --out-dir. A cluster that cannot be used is said
on stderr, and the runs train here one after another.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from cae.engine import checkpoint
from cae.engine.data import DataError, MnistData, load_mnist
from cae.engine.engine import RAY_ADDRESS_VARIABLE, RunHandle, engine_from_environment
from cae.engine.metrics import model_mse, pca_mse
from cae.engine.store import RunStore, StoreError, WorkspaceIdError, check_workspace_id, new_workspace_id
from cae.engine.train_config import TrainConfig
from cae.engine.trainer import StopReason, Trainer
from cae.models.config import ConfigError
from cae.train import CONFIG_CLASSES, add_training_options, configs_from, recorder_for, store_failure, train_and_save
from cae.views.train_sweep import run_name

MODEL_TYPE = "model_type"
TRUE_WORDS = ("true", "yes", "on", "1")
FALSE_WORDS = ("false", "no", "off", "0")


def sweepable() -> dict[str, type]:
    """Every setting a sweep can vary, with its type: the model type, and each field of the configs."""
    settings: dict[str, type] = {MODEL_TYPE: str}
    for config_class in [*CONFIG_CLASSES, TrainConfig]:
        for field in dataclasses.fields(config_class):
            settings.setdefault(field.name, type(field.default))
    return settings


def parse_sweep(text: str) -> tuple[str, list[str]]:
    """"code_size=2,4,8" -> ("code_size", ["2", "4", "8"]); ConfigError for anything else."""
    name, equals, values = text.partition("=")
    name = name.strip().replace("-", "_")
    settings = sweepable()
    if not equals or name not in settings:
        raise ConfigError(f"the sweep {text!r} is not SETTING=VALUE,VALUE,...; the settings are "
                          f"{', '.join(sorted(settings))}")
    listed = [value.strip() for value in values.split(",") if value.strip()]
    if len(listed) < 2:
        raise ConfigError(f"the sweep of {name} needs at least two values, separated by commas")
    if len(set(listed)) < len(listed):
        raise ConfigError(f"the sweep of {name} lists a value twice: {values}")
    return name, listed


def option_for(name: str, value: str) -> list[str]:
    """The cae.train option that sets this setting to this value."""
    flag = "--" + name.replace("_", "-")
    if sweepable()[name] is not bool:
        return [flag, value]
    if value.lower() in TRUE_WORDS:
        return [flag]
    if value.lower() in FALSE_WORDS:
        return [flag.replace("--", "--no-", 1)]
    raise ConfigError(f"{name} is true or false, not {value!r}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cae.sweep", description=__doc__.split("\n\n")[0])
    parser.add_argument("sweep", help="SETTING=VALUE,VALUE,... e.g. code_size=2,4,8,16,32,64 or "
                                      "model_type=cae,dae,vae or tied_weights=true,false")
    add_training_options(parser)
    parser.add_argument("--out-dir", type=Path, default=None,
                        help="where the runs' checkpoints go (default: runs/sweep-<time>/)")
    parser.add_argument("--name", help="the runs' names in the run store start with this (default: sweep <time>)")
    args, rest = parser.parse_known_args(argv)
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    try:
        name, values = parse_sweep(args.sweep)
        given = argv if argv is not None else sys.argv[1:]
        flags = {"--" + name.replace("_", "-"), "--no-" + name.replace("_", "-")}
        if any(option.split("=")[0] in flags for option in given):
            raise ConfigError(f"{name} is the setting swept: give its values in the sweep only")
        base = [option for option in given if option != args.sweep]
        runs = []
        for value in values:  # every value is checked before the first run starts
            one = parser.parse_args([args.sweep, *base, *option_for(name, value)])
            runs.append((value, *configs_from(one)))
        out_dir = args.out_dir or Path("runs") / f"sweep-{stamp}"
        out_dir.mkdir(parents=True, exist_ok=True)
        data = load_mnist()
    except (ConfigError, DataError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except OSError as error:
        print(f"error: --out-dir: {error}", file=sys.stderr)
        return 2
    prefix = args.name or f"sweep {stamp}"
    print(f"data: {data.describe()}; {len(runs)} runs of {name}: {', '.join(values)}", file=sys.stderr)
    if os.environ.get(RAY_ADDRESS_VARIABLE, "").strip():
        code = sweep_on_cluster(name, runs, data, out_dir=out_dir, prefix=prefix, workspace=args.workspace)
        if code is not None:
            return code
    failed = False
    for value, model_config, train_config in runs:
        try:
            recorder = recorder_for(args.workspace, run_name(prefix, name, value))
        except (WorkspaceIdError, StoreError) as error:
            return store_failure(error)
        trainer = Trainer(model_config, train_config, data)
        summary = train_and_save(trainer, data, out_dir / f"{name}-{value}.pt", recorder=recorder,
                                 progress=not args.no_progress)
        print(json.dumps({"sweep": {name: value}, **summary}), flush=True)
        if trainer.stop_reason is StopReason.INTERRUPTED:  # Ctrl+C: the run in flight is saved, the rest not begun
            return 0
        failed = failed or trainer.stop_reason is not None
    return 1 if failed else 0


def sweep_on_cluster(name: str, runs: list[tuple[str, Any, TrainConfig]], data: MnistData, *, out_dir: Path,
                     prefix: str, workspace: str | None) -> int | None:
    """Submit every run to the cluster at once and print each run's line as it ends; the exit status, or None when
    the cluster cannot be used (said on stderr: the caller trains the runs here)."""
    try:
        store = RunStore()
        chosen_workspace = check_workspace_id(workspace) if workspace else new_workspace_id()
    except (WorkspaceIdError, StoreError) as error:
        return store_failure(error)
    chosen = engine_from_environment(lambda: data, store=store)
    if chosen.problem is not None:
        print(f"note: {chosen.problem}", file=sys.stderr)
        return None
    if workspace is None:
        print(f"the runs are kept in workspace {chosen_workspace} (python -m cae.runs list {chosen_workspace})",
              file=sys.stderr)
    waiting: dict[str, RunHandle] = {}
    for value, model_config, train_config in runs:
        waiting[value] = chosen.engine.start(model_config, train_config, workspace=chosen_workspace,
                                             name=run_name(prefix, name, value))
    print(f"{len(runs)} runs submitted to the Ray cluster at {os.environ[RAY_ADDRESS_VARIABLE].strip()}",
          file=sys.stderr)
    try:
        failed = report_as_they_end(name, waiting, data, out_dir, store, chosen_workspace)
    except KeyboardInterrupt:  # Ctrl+C: every run stops, keeping its model, and says so
        for handle in waiting.values():
            handle.stop()
        report_as_they_end(name, waiting, data, out_dir, store, chosen_workspace)
        return 0
    return 1 if failed else 0


def report_as_they_end(name: str, waiting: dict[str, RunHandle], data: MnistData, out_dir: Path, store: RunStore,
                       workspace: str) -> bool:
    """Print each run's line as it ends (taking it out of `waiting`); True if any stopped early or failed."""
    failed = False
    while waiting:
        for value in [value for value, handle in waiting.items() if not handle.alive]:
            handle = waiting.pop(value)
            summary = ended_run_summary(handle, data, out_dir / f"{name}-{value}.pt", store, workspace)
            print(json.dumps({"sweep": {name: value}, **summary}), flush=True)
            snap = handle.snapshot()
            failed = failed or snap.stop_reason is not None or snap.error is not None
        if waiting:
            next(iter(waiting.values())).join(0.2)
    return failed


def ended_run_summary(handle: RunHandle, data: MnistData, out: Path, store: RunStore,
                      workspace: str) -> dict[str, Any]:
    """What `cae.train` says of a run (see train_and_save), for a run that ended on the cluster: its model copied
    from the store to `out`, scored as a command-line run is (its own score, PCA at its code size)."""
    snap = handle.snapshot()
    summary: dict[str, Any] = {"checkpoint": None, checkpoint.SCORE: None, "evaluated_on": None, "pca_mse": None,
                               "train_seconds": round(snap.history.train_seconds, 1),
                               "samples_per_s": round(snap.history.samples_per_s), "stop_reason": snap.stop_message}
    if snap.error is not None:
        summary["error"] = snap.error
    ckpt = handle.final_checkpoint()
    if ckpt is not None:
        if ckpt.held_out_mse is None:  # stopped early: score the weights it stopped with
            ckpt.record_score(model_mse(ckpt.build_model(), data.val_images), len(data.val_images), data.val_name)
        ckpt.metrics["pca_mse"] = pca_mse(data.train_images, data.val_images, ckpt.model_config.code_size)
        checkpoint.save(ckpt, out)
        summary.update({"checkpoint": str(out), checkpoint.SCORE: ckpt.held_out_mse,
                        "evaluated_on": ckpt.evaluated_on, "pca_mse": ckpt.metrics["pca_mse"]})
    store_problem = handle.store_problem
    if ckpt is not None and store_problem is None:
        scores = {checkpoint.SCORE: ckpt.held_out_mse, "pca_mse": ckpt.metrics["pca_mse"]}
        try:
            store.update_scores(handle.run_id, scores)
        except StoreError as error:
            store_problem = str(error)
    worker = handle.worker
    summary.update(workspace=workspace, run_id=handle.run_id, store_problem=store_problem,
                   worker=None if worker is None else dataclasses.asdict(worker))
    return summary


if __name__ == "__main__":
    sys.exit(main())
