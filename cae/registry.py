"""The model types the app knows, by name: each has a config dataclass and a network built from it.

A checkpoint records its model type's name; pages and command lines build models only through `build_model`,
so a new type (denoising, variational) is added here and nowhere else.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import nn

from cae.config import ConfigError, config_from_dict
from cae.model import ConvAutoencoder, ModelConfig


@dataclass(frozen=True)
class ModelType:
    name: str  # stored in checkpoints
    title: str  # shown to people
    config_class: type
    network_class: type[nn.Module]


MODEL_TYPES = {
    "cae": ModelType("cae", "Convolutional autoencoder (the post's)", ModelConfig, ConvAutoencoder),
}


def model_type(name: str) -> ModelType:
    if name not in MODEL_TYPES:
        raise ConfigError(f"unknown model type {name!r}; this version knows {', '.join(MODEL_TYPES)}")
    return MODEL_TYPES[name]


def build_model(name: str, config: Any) -> nn.Module:
    """A fresh network of the named type; config may be its dataclass or a plain dict of its fields."""
    kind = model_type(name)
    if isinstance(config, dict):
        config = config_from_dict(kind.config_class, config)
    return kind.network_class(config)
