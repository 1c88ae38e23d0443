"""Sweep one setting from the command line: `python -m cae.sweep code_size=2,4,8,16,32,64 [cae.train options]`.

Each value of the setting becomes one run with every other option as given (the same options as
`python -m cae.train`), trained one after another, its checkpoint saved in --out-dir, and with `--workspace ID`
written to the run store, where the app's Compare page draws the sweep: each run's score against the setting's
value, beside PCA at the same sizes for a code-size sweep (the bottleneck curve). Prints one JSON object a run.
Every value is checked before the first run starts: a bad one exits with status 2 and trains nothing. Ctrl+C stops
the run in flight (its model is saved) and the sweep.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

from cae.engine.data import DataError, load_mnist
from cae.engine.store import StoreError, WorkspaceIdError
from cae.engine.train_config import TrainConfig
from cae.engine.trainer import StopReason, Trainer
from cae.models.config import ConfigError
from cae.train import CONFIG_CLASSES, add_training_options, configs_from, recorder_for, train_and_save

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
    failed = False
    for value, model_config, train_config in runs:
        try:
            recorder = recorder_for(args.workspace, f"{prefix}: {name}={value}")
        except WorkspaceIdError as error:
            print(f"error: --workspace: {error}", file=sys.stderr)
            return 2
        except StoreError as error:
            print(f"error: {error}", file=sys.stderr)
            return 1
        trainer = Trainer(model_config, train_config, data)
        summary = train_and_save(trainer, data, out_dir / f"{name}-{value}.pt", recorder=recorder,
                                 progress=not args.no_progress)
        print(json.dumps({"sweep": {name: value}, **summary}), flush=True)
        if trainer.stop_reason is StopReason.INTERRUPTED:  # Ctrl+C: the run in flight is saved, the rest not begun
            return 0
        failed = failed or trainer.stop_reason is not None
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
