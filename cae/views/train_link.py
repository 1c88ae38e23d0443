"""The Train page's settings in its address, as TensorFlow Playground keeps its whole setup in its URL.

`encode` turns the page's settings (the model type, its config with the type's own knobs, and the trainer's settings
the page offers) into short query parameters, writing only those that differ from the page's defaults
(cae.engine.train_config.PAGE_DEFAULTS), so a bare address stays bare. `decode` reads them back: each value is
checked against what the page offers (the configs' ranges and choices, the page's lists), and a bad one is replaced
by its default with a sentence that says so. Parameters it does not know (the workspace `w`, other pages' or later
versions') are left to their owners. No Streamlit here: the page puts the result into its widgets.

Choices are written as the configs store them ("saltpepper", "adam") and read either way: stored, or as people read
them ("salt and pepper", "Adam"), in any case.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cae.engine.train_config import LOSSES, OPTIMIZERS, PAGE_DEFAULTS, SCHEDULES, TrainConfig
from cae.models.autoencoder import ACTIVATIONS, ModelConfig
from cae.models.config import ConfigError, Knob
from cae.models.registry import MODEL_TYPES, ModelType, type_of

# The values the page offers inside the configs' ranges: easy-to-set values, dropped when a config no longer allows
# them (`within`). Sliders stop short of the configs' highest values (a step of 1 among 500 epochs is a pixel).
LEARNING_RATES = (1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 2e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3, 1.0, 3.0, 10.0)
BATCH_SIZES = (16, 32, 64, 128, 256, 512)
SUBSETS = (500, 1000, 2000, 5000, 10000, 20000, 0)  # 0 = every training digit
CODE_SIZE_SHOWN = 128
EPOCHS_SHOWN = 50

TYPE_PARAM = "type"
YES = ("yes", "true", "on", "1")
NO = ("no", "false", "off", "0")


def within(values: tuple, field: str) -> tuple:
    """The values that TrainConfig allows for this field."""
    low, high = TrainConfig.RANGES[field]
    return tuple(value for value in values if low <= value <= high)


@dataclass(frozen=True)
class Setting:
    """One setting of the Train page as the address carries it: a choice among `choices` (their names as people
    read them in `names`), a yes or no, or a number from `low` to `high`."""

    param: str  # its query key
    field: str  # the config field it sets (ModelConfig's, a type's knob's, or TrainConfig's)
    label: str  # as the page names it
    kind: type  # str, bool, int or float
    choices: tuple = ()  # the only values allowed, when given
    names: tuple[str, ...] = ()  # how the page shows each choice (the choice itself where empty)
    low: float = -math.inf
    high: float = math.inf

    def name_of(self, value: Any) -> str:
        """A value as people read it: its choice's name, 'yes' or 'no', or the number."""
        names = dict(zip(self.choices, self.names))
        if value in names:
            return names[value]
        if self.kind is bool:
            return YES[0] if value else NO[0]
        if self.kind is float:
            return f"{value:g}"
        return str(value)

    def written(self, value: Any) -> str:
        """A value as the address holds it: a stored choice as it is (short), a number bare (1000, not 1,000), a
        named number by its name ('all'), yes or no."""
        if self.kind is str:
            return str(value)
        name = self.name_of(value)
        if self.kind is int and name.replace(",", "").isdigit():
            return str(value)
        return name

    def parse(self, text: str) -> Any:
        """The value a query parameter's text names; ValueError with the reason ('is not a number') if none."""
        text = text.strip()
        folded = text.casefold()
        for choice, name in zip(self.choices, self.names or self.choices):
            if folded in (str(choice).casefold(), str(name).casefold()):
                return choice
        if self.kind is str:
            raise ValueError(f"is not one of {', '.join(self.names or self.choices)}")
        if self.kind is bool:
            if folded in YES:
                return True
            if folded in NO:
                return False
            raise ValueError("is not yes or no")
        value = number(text, whole=self.kind is int)
        if self.choices and value not in self.choices:
            raise ValueError(f"is not one the page offers ({', '.join(map(self.name_of, self.choices))})")
        if not self.low <= value <= self.high:
            raise ValueError(f"is outside {bound(self.low)} to {bound(self.high)}")
        return value


def bound(value: float) -> str:
    """A range's end in a sentence: 2147483647, not 2.14748e+09."""
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def number(text: str, *, whole: bool) -> int | float:
    """A finite number from text (a whole one when asked); ValueError with the reason."""
    try:
        value = float(text)
    except ValueError:
        raise ValueError("is not a number") from None
    if not math.isfinite(value):
        raise ValueError("is not a number")
    if not whole:
        return value
    if not value.is_integer():
        raise ValueError("is not a whole number")
    return int(value)


def knob_setting(knob: Knob) -> Setting:
    """A model type's own setting (cae.models.config.Knob) under its field's name."""
    if knob.choices:
        return Setting(knob.field, knob.field, knob.label, str, choices=knob.choices,
                       names=tuple(knob.name_of(choice) for choice in knob.choices))
    return Setting(knob.field, knob.field, knob.label, float, low=knob.low, high=knob.high)


CODE = Setting("code", "code_size", "Code size", int, low=ModelConfig.RANGES["code_size"][0],
               high=min(ModelConfig.RANGES["code_size"][1], CODE_SIZE_SHOWN))
DROPOUT = Setting("dropout", "dropout", "Dropout", float, low=ModelConfig.RANGES["dropout"][0],
                  high=ModelConfig.RANGES["dropout"][1])
TIED = Setting("tied", "tied_weights", "Tied weights", bool)
ACTIVATION = Setting("act", "activation", "Activation", str, choices=tuple(ACTIVATIONS))
LOSS = Setting("loss", "loss", "Loss", str, choices=tuple(LOSSES), names=tuple(LOSSES.values()))
OPTIMIZER = Setting("opt", "optimizer", "Optimizer", str, choices=tuple(OPTIMIZERS), names=tuple(OPTIMIZERS.values()))
LEARNING_RATE = Setting("lr", "learning_rate", "Learning rate", float,
                        choices=within(LEARNING_RATES, "learning_rate"))
SCHEDULE = Setting("schedule", "schedule", "Schedule", str, choices=tuple(SCHEDULES), names=tuple(SCHEDULES.values()))
BATCH = Setting("batch", "batch_size", "Batch size", int, choices=within(BATCH_SIZES, "batch_size"))
EPOCHS = Setting("epochs", "epochs", "Epochs", int, low=TrainConfig.RANGES["epochs"][0],
                 high=min(TrainConfig.RANGES["epochs"][1], EPOCHS_SHOWN))
DIGITS_SUBSETS = within(SUBSETS, "train_subset")
DIGITS = Setting("digits", "train_subset", "Training digits", int, choices=DIGITS_SUBSETS,
                 names=tuple("all" if subset == 0 else f"{subset:,}" for subset in DIGITS_SUBSETS))
SEED = Setting("seed", "seed", "Random seed", int, low=TrainConfig.RANGES["seed"][0],
               high=TrainConfig.RANGES["seed"][1])

MODEL_SETTINGS = (CODE, DROPOUT, TIED, ACTIVATION)  # every type's, in the page's order
TRAIN_SETTINGS = (LOSS, OPTIMIZER, LEARNING_RATE, SCHEDULE, BATCH, EPOCHS, DIGITS, SEED)


def type_settings(kind: ModelType) -> tuple[Setting, ...]:
    """The model settings of this type: every type's, then its own knobs."""
    return MODEL_SETTINGS + tuple(knob_setting(knob) for knob in kind.config_class.KNOBS)


def train_settings(kind: ModelType) -> tuple[Setting, ...]:
    """The trainer's settings the page offers for this type (no loss for a type with an objective of its own)."""
    if kind.network_class.USES_TRAINER_LOSS:
        return TRAIN_SETTINGS
    return tuple(setting for setting in TRAIN_SETTINGS if setting is not LOSS)


def setting_params() -> set[str]:
    """Every query key a Train page setting may use, for every registered type: the keys this module owns."""
    params = {TYPE_PARAM, *(setting.param for setting in MODEL_SETTINGS + TRAIN_SETTINGS)}
    for kind in MODEL_TYPES.values():
        params.update(setting.param for setting in type_settings(kind))
    return params


def default_type() -> ModelType:
    """The type the page starts with."""
    return type_of(PAGE_DEFAULTS.model)


def default_model(kind: ModelType) -> Any:
    """The page's starting config for this type: the page's defaults, the type's own knobs at their defaults."""
    shared = {setting.field: getattr(PAGE_DEFAULTS.model, setting.field) for setting in MODEL_SETTINGS}
    return kind.config_class(**shared)


@dataclass(frozen=True)
class LinkSettings:
    """What an address asks the Train page for, every bad value replaced by its default, and why."""

    model: Any  # its type's config, validated
    train: TrainConfig  # validated
    problems: tuple[str, ...] = ()  # one sentence per value that was not used

    @property
    def kind(self) -> ModelType:
        return type_of(self.model)


def encode(model: Any, train: TrainConfig) -> dict[str, str]:
    """The query parameters of these settings: only those that differ from the page's defaults, type first."""
    kind = type_of(model)
    params: dict[str, str] = {}
    if kind is not default_type():
        params[TYPE_PARAM] = kind.name
    model_defaults = default_model(kind)
    for setting in type_settings(kind):
        params.update(differing(setting, getattr(model, setting.field), getattr(model_defaults, setting.field)))
    for setting in train_settings(kind):
        params.update(differing(setting, getattr(train, setting.field), getattr(PAGE_DEFAULTS.train, setting.field)))
    return params


def differing(setting: Setting, value: Any, default: Any) -> dict[str, str]:
    """{param: text} when the value reads differently from the default, else {} (a float a hair off the default,
    as a slider may give, is not worth a parameter)."""
    text = setting.written(value)
    return {} if text == setting.written(default) else {setting.param: text}


def decode(params: Mapping[str, str]) -> LinkSettings:
    """The settings an address names, with the page's defaults for those it leaves out. A bad value (not a number,
    not a choice, outside what the page offers, or at odds with the other settings in its config's own check) gives
    its default and one sentence; keys this module does not own are ignored."""
    problems: list[str] = []
    kind = default_type()
    if TYPE_PARAM in params:
        text = params[TYPE_PARAM]
        readable = {name.casefold(): name for name in MODEL_TYPES}
        readable.update({each.title.casefold(): name for name, each in MODEL_TYPES.items()})
        chosen = readable.get(text.strip().casefold())
        if chosen is None:
            problems.append(f"model type {text!r} is not one of {', '.join(MODEL_TYPES)}: using the default "
                            f"{kind.name}")
        else:
            kind = MODEL_TYPES[chosen]
    problems += unused(params, kind)
    model = settle(kind.config_class, default_model(kind), type_settings(kind), params, problems)
    train = settle(TrainConfig, PAGE_DEFAULTS.train, train_settings(kind), params, problems)
    return LinkSettings(model, train, tuple(problems))


def unused(params: Mapping[str, str], kind: ModelType) -> list[str]:
    """Sentences for settings the address gives that this type does without, or that belong to another type."""
    sentences = []
    reported = {setting.param for setting in type_settings(kind) + train_settings(kind)}  # its own: not unused
    if LOSS.param in params and LOSS.param not in reported:
        sentences.append(f"loss {params[LOSS.param]!r} is not used: the {kind.title.casefold()} has an objective "
                         f"of its own")
    for other in MODEL_TYPES.values():
        for setting in type_settings(other):
            if setting.param in params and setting.param not in reported:
                reported.add(setting.param)  # one sentence for a knob that several other types share
                sentences.append(f"{lower(setting.label)} {params[setting.param]!r} is not used: it is a setting "
                                 f"of the {other.title.casefold()}, not of the {kind.title.casefold()}")
    return sentences


def settle(config_class: type, defaults: Any, settings: tuple[Setting, ...], params: Mapping[str, str],
           problems: list[str]) -> Any:
    """The config with each valid value the address gives, taken in order: a value that is bad alone, or that its
    config's own check rejects beside those taken before it, keeps its default and adds a sentence."""
    values = {field.name: getattr(defaults, field.name) for field in dataclasses.fields(defaults)}
    for setting in settings:
        if setting.param not in params:
            continue
        text = params[setting.param]
        default = setting.name_of(values[setting.field])
        try:
            value = setting.parse(text)
        except ValueError as reason:
            problems.append(f"{lower(setting.label)} {text!r} {reason}: using the default {default}")
            continue
        try:
            config_class(**{**values, setting.field: value}).validate()
        except ConfigError as error:
            problems.append(f"{lower(setting.label)} {text!r} does not go with the other settings ({error}): using "
                            f"the default {default}")
            continue
        values[setting.field] = value
    return config_class(**values)


def lower(label: str) -> str:
    """A page label inside a sentence: 'Code size' -> 'code size' ('KL' and the like stay as they are)."""
    return label[:1].lower() + label[1:]
