"""Command-line options made from config dataclasses, so every field is an option with its default and comment.

Options of several config classes (the model types') share one parser: an option is added once, and an option
given for a type whose config lacks it is refused with a clear message.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Sequence
from typing import Any

from cae.models.config import ConfigError


def add_config_options(parser: argparse.ArgumentParser, config_classes: Sequence[type], title: str) -> None:
    """One option per field of the given classes; unset options stay off the namespace (their field's default)."""
    group = parser.add_argument_group(title)
    added: set[str] = set()
    for config_class in config_classes:
        for field in dataclasses.fields(config_class):
            if field.name in added:
                continue
            added.add(field.name)
            flag = "--" + field.name.replace("_", "-")
            owners = [owner.__name__ for owner in config_classes
                      if field.name in {other.name for other in dataclasses.fields(owner)}]
            only = "" if len(owners) == len(config_classes) else f" ({', '.join(owners)} only)"
            if isinstance(field.default, bool):
                group.add_argument(flag, dest=field.name, action=argparse.BooleanOptionalAction,
                                   default=argparse.SUPPRESS, help=f"default: {field.default}{only}")
            else:
                group.add_argument(flag, dest=field.name, type=type(field.default), default=argparse.SUPPRESS,
                                   metavar=field.name.upper(), help=f"default: {field.default}{only}")


def config_from_args(config_class: type, args: argparse.Namespace, *, option_classes: Sequence[type] = (),
                     owner: str = "") -> Any:
    """The config from the options given; ConfigError for an option of `option_classes` this class lacks."""
    own = {field.name for field in dataclasses.fields(config_class)}
    foreign = sorted({field.name for cls in option_classes for field in dataclasses.fields(cls)
                      if field.name not in own and hasattr(args, field.name)})
    if foreign:
        flags = ", ".join("--" + name.replace("_", "-") for name in foreign)
        raise ConfigError(f"{flags} does not apply to {owner or config_class.__name__}")
    return config_class(**{name: getattr(args, name) for name in own if hasattr(args, name)}).validate()
