"""The Train page's "Sweep one setting": the runs a sweep of one setting makes from the page's other settings.

The settings a sweep can vary are the page's own (cae.views.train_link: the model type, every type's settings and
the type's own knobs, the trainer's settings the page offers), so a value is checked as a link's is: against the
choices and ranges the page offers, then by the config's own check beside the other settings. No Streamlit here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from cae.models.config import ConfigError
from cae.models.registry import MODEL_TYPES, ModelType
from cae.views import train_link as link

MOST_RUNS = 8  # runs in one sweep: each takes a place (a core) of the server or the cluster
# Values a sweep starts with for the numbers without choices (the lessons they make); a type's own numeric knobs
# start at their lowest, middle and highest values.
SUGGESTED = {link.CODE.field: (2, 4, 8, 16, 32), link.DROPOUT.field: (0.0, 0.25, 0.5), link.EPOCHS.field: (1, 2, 4),
             link.SEED.field: (0, 1, 2)}
MODEL_TYPE = "model type"  # the sweep of the model type itself (not a config field)
NAME_SEPARATOR = ": "  # a sweep's run is named "PREFIX: setting=value", here, by cae.sweep, and read by Compare

# Makes a type's configs from the page's settings: its shared settings as the page shows them, its own knobs as
# the page keeps them.
ConfigsFor = Callable[[ModelType], tuple[Any, Any]]


@dataclass(frozen=True)
class SweepSetting:
    """One setting a sweep can vary: a page setting, or the model type (`setting` None)."""

    label: str
    setting: link.Setting | None

    @property
    def field(self) -> str:
        return self.setting.field if self.setting is not None else MODEL_TYPE

    @property
    def listed(self) -> bool:
        """Its values are chosen from a list (a choice, yes or no, the model type) rather than typed."""
        return self.setting is None or bool(self.setting.choices) or self.setting.kind is bool

    def options(self) -> list[Any]:
        """The values to choose from, for a listed setting."""
        if self.setting is None:
            return list(MODEL_TYPES)
        if self.setting.kind is bool:
            return [True, False]
        return list(self.setting.choices)

    def name_of(self, value: Any) -> str:
        """A value as people read it."""
        if self.setting is None:
            return MODEL_TYPES[value].title
        return self.setting.name_of(value)

    def written(self, value: Any) -> str:
        """A value in a run's name (as the address would write it: short, no thousands separators)."""
        if self.setting is None:
            return value
        return self.setting.written(value)

    def suggested(self, current: Any) -> list[Any]:
        """The values a sweep of this setting starts with, `current` being the page's value now."""
        if self.setting is None or self.setting.kind is bool:
            return self.options()
        if self.setting.choices:
            return spread_around(list(self.setting.choices), current)
        if self.field in SUGGESTED:
            return [value for value in SUGGESTED[self.field] if self.setting.low <= value <= self.setting.high]
        low, high = self.setting.low, self.setting.high
        return [round(value, 4) for value in (low, (low + high) / 2, high)]

    def parse(self, text: str) -> list[Any]:
        """Typed values, separated by commas, checked as a link's are; ValueError names the first bad one."""
        values = []
        for item in (part.strip() for part in text.split(",")):
            if not item:
                continue
            try:
                value = self.setting.parse(item)
            except ValueError as reason:
                raise ValueError(f"{link.lower(self.label)} {item!r} {reason}") from None
            if value in values:
                raise ValueError(f"{link.lower(self.label)} {item!r} is listed twice")
            values.append(value)
        return values


def current_value(swept: SweepSetting, kind: ModelType, model_config: Any, train_config: Any) -> Any:
    """The swept setting's value in the page's settings now (for a type, its name)."""
    if swept.setting is None:
        return kind.name
    if swept.setting in link.type_settings(kind):
        return getattr(model_config, swept.field)
    return getattr(train_config, swept.field)


def spread_around(choices: list[Any], current: Any) -> list[Any]:
    """Up to three of the choices, two steps apart, around the current one (a learning rate's 3e-4, 1e-3, 3e-3 is
    too close to tell apart in a short run; every other one is not)."""
    if len(choices) <= 3:
        return choices
    middle = choices.index(current) if current in choices else len(choices) // 2
    middle = min(max(middle, 2), len(choices) - 3)
    return [choices[middle - 2], choices[middle], choices[middle + 2]]


def sweep_settings(kind: ModelType) -> dict[str, SweepSetting]:
    """What a sweep can vary for a page set to this type, by label: the model type, then the page's settings in its
    order."""
    chosen = [SweepSetting("Model type", None)]
    chosen += [SweepSetting(setting.label, setting) for setting in link.type_settings(kind) + link.train_settings(kind)]
    return {item.label: item for item in chosen}


def run_name(prefix: str, setting: str, value: str) -> str:
    """The name of a sweep's run in the run store."""
    return f"{prefix}{NAME_SEPARATOR}{setting}={value}"


def name_parts(name: str) -> tuple[str, str, str] | None:
    """(prefix, setting, value) of a sweep's run name (run_name), or None for a name that is not one."""
    prefix, separator, assignment = name.rpartition(NAME_SEPARATOR)
    setting, equals, value = assignment.partition("=")
    if not separator or not equals:
        return None
    return prefix, setting, value


@dataclass(frozen=True)
class SweepRun:
    """One run of a sweep: its value as people read it, its name in the run store, and its configs."""

    shown: str
    name: str
    model_config: Any
    train_config: Any


def sweep_runs(swept: SweepSetting, values: Sequence[Any], kind: ModelType, configs_for: ConfigsFor, *,
               prefix: str) -> list[SweepRun]:
    """The runs of a sweep: the page's settings for `kind` with the swept setting at each value. ConfigError names
    what is wrong (too few or too many values, a value the config refuses beside the other settings); nothing is
    started by this."""
    if len(values) < 2:
        raise ConfigError("a sweep needs at least two values")
    if len(values) > MOST_RUNS:
        raise ConfigError(f"a sweep has at most {MOST_RUNS} runs; {len(values)} values were given")
    runs = []
    for value in values:
        if swept.setting is None:
            model_config, train_config = configs_for(MODEL_TYPES[value])
        else:
            model_config, train_config = configs_for(kind)
            model_config, train_config = with_value(swept.setting, value, kind, model_config, train_config)
        try:
            model_config.validate()
            train_config.validate()
        except ConfigError as error:
            raise ConfigError(f"{link.lower(swept.label)} {swept.name_of(value)} does not go with the other "
                              f"settings: {error}") from None
        runs.append(SweepRun(swept.name_of(value), run_name(prefix, swept.field, swept.written(value)), model_config,
                             train_config))
    return runs


def with_value(setting: link.Setting, value: Any, kind: ModelType, model_config: Any,
               train_config: Any) -> tuple[Any, Any]:
    """The configs with one setting changed: a field of the type's config, or of the trainer's."""
    if setting in link.type_settings(kind):
        return replace(model_config, **{setting.field: value}), train_config
    return model_config, replace(train_config, **{setting.field: value})
