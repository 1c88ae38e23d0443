"""The model types the app knows, by name: each has a config dataclass and a network built from it.

A checkpoint records its model type's name; the trainer, pages and command lines build models only through this
module and call only the interface of cae.models.autoencoder.ConvAutoencoder, so a new type is added here and in
its own module.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import nn

from cae.models.autoencoder import ConvAutoencoder, ModelConfig
from cae.models.config import ConfigError, config_from_dict
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
    def can_sample(self) -> bool:
        """Whether it can make new digits from its prior (only a variational model has one)."""
        return hasattr(self.network_class, "sample")


MODEL_TYPES = {
    "cae": ModelType("cae", "Autoencoder (the post's)", "Squeeze a digit into a short code and rebuild it.",
                     ModelConfig, ConvAutoencoder),
    "dae": ModelType("dae", "Denoising autoencoder", "Rebuild the clean digit from a corrupted one.",
                     DenoisingConfig, DenoisingAutoencoder),
    "vae": ModelType("vae", "Variational autoencoder", "Codes become distributions, so new digits can be sampled.",
                     VariationalConfig, VariationalAutoencoder),
}


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
