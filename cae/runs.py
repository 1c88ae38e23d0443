"""The run store from the command line: `python -m cae.runs --help`.

list a workspace's runs (one JSON object a line, newest first), show one (JSON), export one's checkpoint to a file,
rename, delete, prune to a number of runs, and make a new workspace id. The store is the one the app uses
(CAE_RUNS_DB, else CAE_RUNS_DIR or runs/ beside the data folder; docs/run-store.md). An unknown or malformed
workspace or run id exits with status 2 and a message, and changes nothing; a store that cannot be opened or
written exits with status 1.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from cae.engine.store import (
    CHECKPOINT_KINDS,
    DATABASE_FILE,
    RunInFlight,
    RunNotFound,
    RunStore,
    StoreError,
    WorkspaceIdError,
    check_workspace_id,
    new_workspace_id,
    runs_dir,
)


class UsageError(Exception):
    """A request about a workspace or run that is not there; exit status 2."""


def _print_json(value: Any) -> None:
    print(json.dumps(value, ensure_ascii=False))


def _known_workspace(store: RunStore, workspace: str) -> list:
    runs = store.list_runs(workspace)
    if not runs:
        raise UsageError(f"workspace {workspace} has no runs in {store.location} (unknown workspace?)")
    return runs


def _list(store: RunStore, args: argparse.Namespace) -> None:
    for record in _known_workspace(store, args.workspace):
        _print_json(record.to_dict())


def _show(store: RunStore, args: argparse.Namespace) -> None:
    shown = store.get_run(args.workspace, args.run).to_dict()
    shown["validations"] = [asdict(check) for check in store.validations(args.workspace, args.run)]
    if args.points:
        shown["loss_curve"] = asdict(store.loss_curve(args.workspace, args.run))
    print(json.dumps(shown, indent=2, ensure_ascii=False))


def _export(store: RunStore, args: argparse.Namespace) -> None:
    if args.out.is_dir():
        raise UsageError(f"{args.out} is a folder; give a file name, such as {args.out / 'model.pt'}")
    path = store.export_checkpoint(args.workspace, args.run, args.out, kind=args.kind)
    _print_json({"run": args.run, "checkpoint": str(path)})


def _rename(store: RunStore, args: argparse.Namespace) -> None:
    record = store.rename_run(args.workspace, args.run, args.name)
    _print_json({"run": record.id, "name": record.name})


def _delete(store: RunStore, args: argparse.Namespace) -> None:
    record = store.delete_run(args.workspace, args.run, force=args.force)
    _print_json({"deleted": record.id, "name": record.name})


def _prune(store: RunStore, args: argparse.Namespace) -> None:
    _known_workspace(store, args.workspace)
    for record in store.prune(args.workspace, args.keep):
        _print_json({"pruned": record.id, "name": record.name, "created_at": record.to_dict()["created_at"]})


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m cae.runs", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)

    def command(name: str, action: Callable, help_text: str, *, run: bool = True) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.add_argument("workspace", help="the workspace id (from the app's address: ?workspace=...)")
        if run:
            sub.add_argument("run", help="the run id (from `list`)")
        sub.set_defaults(action=action)
        return sub

    command("list", _list, "the workspace's runs, one JSON object a line, newest first", run=False)
    show = command("show", _show, "one run as JSON, with its validation checks")
    show.add_argument("--points", action="store_true", help="also its loss curve (every stored step)")
    export = command("export", _export, "write the run's checkpoint (final, else last, else newest epoch) to OUT")
    export.add_argument("out", type=Path, help="the file to write (a .pt checkpoint)")
    export.add_argument("--kind", choices=CHECKPOINT_KINDS, help="that kind's newest checkpoint instead")
    rename = command("rename", _rename, "give the run a new name")
    rename.add_argument("name")
    delete = command("delete", _delete, "remove the run's record and files")
    delete.add_argument("--force", action="store_true", help="even while it is running (its process keeps training)")
    prune = command("prune", _prune, "delete the oldest ended runs beyond KEEP; prints what went", run=False)
    prune.add_argument("--keep", type=int, default=None, help="runs to keep (default: CAE_RUNS_KEEP, else 50)")
    new = commands.add_parser("new-workspace", help="print a fresh workspace id (for `python -m cae.train`)")
    new.set_defaults(action=None)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.action is None:
        print(new_workspace_id())
        return 0
    try:
        check_workspace_id(args.workspace)
        if getattr(args, "keep", None) is not None and args.keep < 0:
            raise UsageError(f"--keep {args.keep}: 0 or more runs")
        if not os.environ.get("CAE_RUNS_DB") and not (runs_dir() / DATABASE_FILE).is_file():
            raise UsageError(f"there is no run store at {runs_dir() / DATABASE_FILE} (set CAE_RUNS_DIR or CAE_RUNS_DB "
                             "to the app's)")
        with RunStore() as store:
            args.action(store, args)
    except (UsageError, WorkspaceIdError, RunNotFound, RunInFlight, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except StoreError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
