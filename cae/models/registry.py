"""The model types the app knows, by name: each has a config dataclass and a network built from it.

A checkpoint records its model type's name; the trainer, pages and command lines build models only through this
module and call only what the contract lists (cae.models.contract), so a new type is its own module plus one
`register` call here. What a type can do beyond the contract's basics it declares: its extra scores and its prior.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import nn

from cae.models.autoencoder import ConvAutoencoder, ModelConfig
from cae.models.config import ConfigError, config_from_dict
from cae.models.contract import Prior, Score, contract_problems
from cae.models.denoising import DenoisingAutoencoder, DenoisingConfig
from cae.models.variational import VariationalAutoencoder, VariationalConfig


@dataclass(frozen=True)
class ModelType:
    name: str  # stored in checkpoints
    title: str  # shown to people
    lesson: str  # what it teaches, one sentence
    config_class: type
    network_class: type[nn.Module]

    @property
    def prior(self) -> Prior | None:
        """What its new digits are drawn from, as its network declares; None for a type that cannot make any."""
        return self.network_class.PRIOR

    @property
    def can_sample(self) -> bool:
        return self.prior is not None

    @property
    def scores(self) -> tuple[Score, ...]:
        """The scores it is judged by beyond the reconstruction MSE, as its network declares."""
        return self.network_class.SCORES


MODEL_TYPES: dict[str, ModelType] = {}


def register(kind: ModelType) -> ModelType:
    """Add a model type under its name; TypeError if it breaks the contract, ValueError if the name is taken."""
    if kind.name in MODEL_TYPES:
        raise ValueError(f"a model type named {kind.name!r} is registered already")
    problems = contract_problems(kind.config_class, kind.network_class)
    if problems:
        raise TypeError(f"model type {kind.name!r} does not keep the contract: {'; '.join(problems)}")
    MODEL_TYPES[kind.name] = kind
    return kind


register(ModelType("cae", "Autoencoder (the post's)", "Squeeze a digit into a short code and rebuild it.",
                   ModelConfig, ConvAutoencoder))
register(ModelType("dae", "Denoising autoencoder", "Rebuild the clean digit from a corrupted one.",
                   DenoisingConfig, DenoisingAutoencoder))
register(ModelType("vae", "Variational autoencoder", "Codes become distributions, so new digits can be sampled.",
                   VariationalConfig, VariationalAutoencoder))


def model_type(name: str) -> ModelType:
    if name not in MODEL_TYPES:
        raise ConfigError(f"unknown model type {name!r}; this version knows {', '.join(MODEL_TYPES)}")
    return MODEL_TYPES[name]


def type_of(config: Any) -> ModelType:
    """The model type whose config class this config is."""
    for kind in MODEL_TYPES.values():
        if type(config) is kind.config_class:
            return kind
    raise ConfigError(f"{type(config).__name__} is not the config of a known model type")


def make_config(name: str, values: dict[str, Any]) -> Any:
    """The named type's config from plain data (a checkpoint, a form), validated."""
    return config_from_dict(model_type(name).config_class, values)


def build_model(config: Any) -> nn.Module:
    """A fresh network of the type this config belongs to."""
    return type_of(config).network_class(config.validate())
