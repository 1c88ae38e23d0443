"""Command-line options made from config dataclasses, so every field is an option with its default and comment."""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any


def add_config_options(parser: argparse.ArgumentParser, config_class: type, title: str) -> None:
    group = parser.add_argument_group(title)
    for f in dataclasses.fields(config_class):
        flag = "--" + f.name.replace("_", "-")
        if isinstance(f.default, bool):
            group.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=f.default)
        else:
            group.add_argument(flag, dest=f.name, type=type(f.default), default=f.default,
                               metavar=f.name.upper(), help=f"default: {f.default}")


def config_from_args(config_class: type, args: argparse.Namespace) -> Any:
    return config_class(**{f.name: getattr(args, f.name) for f in dataclasses.fields(config_class)}).validate()
