"""Validation shared by every config dataclass, so the UI, the command lines and a loaded file get one message."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Container
from typing import Any, TypeVar

T = TypeVar("T")


@dataclasses.dataclass(frozen=True)
class Knob:
    """A setting of a model type that pages offer as a widget: one of `choices`, or a number from `low` to `high`.

    A config class lists its own in KNOBS, so a page draws a new type's settings without naming the type.
    """

    field: str  # the config field it sets
    label: str
    help: str
    choices: tuple[str, ...] = ()  # a choice among these when given, else a number
    choice_names: tuple[str, ...] = ()  # how a page names each choice (the choices themselves when empty)
    low: float = 0.0
    high: float = 1.0
    step: float = 0.05

    def name_of(self, choice: str) -> str:
        """A choice as people read it ("salt and pepper", not "saltpepper")."""
        names = dict(zip(self.choices, self.choice_names))
        return names.get(choice, choice)

    def value(self, raw: Any) -> Any:
        """A widget's value as the config field takes it."""
        return str(raw) if self.choices else float(raw)


class ConfigError(ValueError):
    """A setting is missing, unknown or out of range; the message names it and what is allowed."""


def check_range(name: str, value: Any, low: float, high: float, *, integer: bool = False) -> None:
    kind = int if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kind) or (not integer and not math.isfinite(value)):
        raise ConfigError(f"{name} must be {'a whole number' if integer else 'a number'}, got {value!r}")
    if not low <= value <= high:
        raise ConfigError(f"{name} must be between {low:g} and {high:g}, got {value!r}")


def check_choice(name: str, value: Any, choices: Container[str]) -> None:
    if value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(map(repr, choices))}; got {value!r}")


def config_from_dict(cls: type[T], values: dict[str, Any]) -> T:
    """Build and validate a config dataclass from plain data (a checkpoint, a form), rejecting unknown keys."""
    if not isinstance(values, dict):
        raise ConfigError(f"{cls.__name__} must be a mapping, got {type(values).__name__}")
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"unknown {cls.__name__} setting(s): {', '.join(unknown)}")
    try:
        return cls(**values).validate()
    except TypeError as error:  # e.g. an unhashable value in a frozen dataclass
        raise ConfigError(f"bad {cls.__name__}: {error}") from error
