"""The model-type contract: what every model type offers the trainer, the pages and the command lines.

A model type (cae.models.registry.ModelType) is a config dataclass (`ModelConfigLike`) and a torch network built from
it (`Network`). Code outside cae/models calls only what these two protocols list. What only some types can do is
declared, never discovered by name:

- `Network.SCORES`: the scores a type is judged by beyond the reconstruction MSE every type has (a variational
  model's negative ELBO, a denoiser's PSNR), each a `Score`. `python -m cae.evaluate`, cae.engine.metrics and the
  home page iterate over them.
- `Network.PRIOR`: the distribution (a `Prior`) a type draws codes from to make new digits, or None for a type that
  cannot. Sampling, the range a traversal sweeps and the words a page uses for it all come from it.

`contract_problems` says what a type lacks; the registry refuses a type that has any (cae.models.registry.register).
cae.models.autoencoder.ConvAutoencoder keeps the contract; a new type usually subclasses it and changes only what
differs, but nothing requires that.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, runtime_checkable

import torch
from torch import nn

from cae.models.config import ConfigError, Knob
from cae.models.objective import Objective

BETTER = ("lower", "higher")


def as_is(value: float) -> float:
    return value


@dataclass(frozen=True)
class Score:
    """A number a model type is judged by, measured digit by digit and summarised over many.

    `per_digit(model, images, generator)` gets a batch (B, 1, 28, 28) in [0, 1] and returns (B,) numbers; the model is
    in eval mode without gradients, and `generator` (on the model's device) feeds any randomness the score needs.
    The score of a set of digits is `summary` of the mean of those numbers; of one digit, `summary` of its own.
    """

    key: str  # its name in `python -m cae.evaluate`'s JSON, saying what it was measured on: "held_out_elbo_nats"
    label: str  # for people: "Negative ELBO"
    unit: str  # "nats per digit", "dB"
    better: str  # "lower" or "higher"
    per_digit: Callable[[Any, torch.Tensor, torch.Generator | None], torch.Tensor]
    summary: Callable[[float], float] = as_is  # e.g. a PSNR from the mean squared error per digit
    help: str = ""  # one sentence: what it measures

    def __post_init__(self) -> None:
        if self.better not in BETTER:
            raise ConfigError(f"a score's better must be one of {', '.join(BETTER)}; got {self.better!r}")

    def describe(self, value: float) -> str:
        return f"{value:.2f} {self.unit}"


@runtime_checkable
class Prior(Protocol):
    """The distribution a generating type draws its codes from: its new digits are these codes, decoded."""

    description: str  # how a page names it: "N(0, I)"

    def sample(self, count: int, code_size: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """(count, code_size) codes drawn from the prior, on the generator's device (the CPU without one)."""
        ...

    def traversal_range(self) -> tuple[float, float]:
        """The values one code number is swept over to show what it does: where the prior keeps nearly all its mass."""
        ...


@dataclass(frozen=True)
class TransposedConvolution:
    """One of a network's transposed convolutions, as the "How it works" page checks it against a full convolution."""

    layer: str  # its stage's name: "deconv2"
    input_stage: str  # the stage whose output it reads: "upscale2"
    weight_name: str  # what the network's code calls its weight, shown on the page: "deconv2_w"
    weight: torch.Tensor  # (C_in, C_out, k, k), as conv_transpose2d takes it
    bias: torch.Tensor  # (C_out,)
    encoder_layer: str  # the encoder convolution it mirrors: "conv2"
    encoder_weight: torch.Tensor  # that convolution's weight: the very same tensor when the weights are tied


@runtime_checkable
class ModelConfigLike(Protocol):
    """A model type's config: a frozen dataclass saved in checkpoints; pages and command lines build it from plain
    data (cae.models.config.config_from_dict), and its defaults are a valid config."""

    code_size: int  # numbers in the code
    dropout: float
    tied_weights: bool  # the decoder's transposed convolutions reuse the encoder's kernels
    activation: str
    RANGES: ClassVar[dict[str, tuple[float, float]]]  # field -> (low, high) it accepts
    KNOBS: ClassVar[tuple[Knob, ...]]  # the type's own settings, as pages offer them

    def validate(self) -> Any:
        """Return self, or raise ConfigError naming the first field that is out of range."""
        ...

    def describe(self) -> str:
        """One line for people: the settings."""
        ...


@runtime_checkable
class Network(Protocol):
    """A model type's network: a torch nn.Module built from its config (`network_class(config)`)."""

    config: ModelConfigLike  # the validated config it was built from
    TERMS: ClassVar[dict[str, str]]  # the terms `objective` reports, in order, and their labels for charts
    USES_TRAINER_LOSS: ClassVar[bool]  # whether `objective` follows TrainConfig.loss (mse or bce)
    OBJECTIVE_LOSS: ClassVar[str]  # the per-pixel loss its own objective uses, recorded when USES_TRAINER_LOSS is off
    OBJECTIVE_TEXT: ClassVar[str]  # what its own objective minimises, in words (the Train page shows it)
    SCORES: ClassVar[tuple[Score, ...]]  # its extra scores; () for none
    PRIOR: ClassVar[Prior | None]  # what new digits are drawn from; None: it cannot make new digits
    STAGE_LAYERS: ClassVar[dict[str, str]]  # stage -> the layer computing it (as layer_of names it), where they differ

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1, 28, 28) images in [0, 1] -> (B, code_size) codes."""
        ...

    def decode(self, code: torch.Tensor) -> torch.Tensor:
        """(B, code_size) codes -> (B, 1, 28, 28) images in [0, 1]."""
        ...

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """What the model makes of its input; calling the network does the same."""
        ...

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ...

    def encoder_stages(self, x: torch.Tensor) -> Iterator[tuple[str, torch.Tensor]]:
        """(name, tensor) after each encoder stage; the last one is named "code" and is what `encode` returns."""
        ...

    def decoder_stages(self, code: torch.Tensor, *, logits: bool = False) -> Iterator[tuple[str, torch.Tensor]]:
        """(name, tensor) after each decoder stage; the last one is the image (or its logits)."""
        ...

    def objective(self, x: torch.Tensor, *, loss: str = "mse", generator: torch.Generator | None = None) -> Objective:
        """The training loss on a batch of clean digits, with one term per TERMS entry, in that order."""
        ...

    def loss_label(self, loss: str = "mse") -> str:
        """The objective's unit, for charts."""
        ...

    def collapse_advice(self, train_config: Any) -> str:
        """What to tell a person whose run collapsed to one output for every digit."""
        ...

    def draw_dropout_from(self, generator: torch.Generator) -> None:
        """Randomness the network draws while training comes from `generator` from now on (the trainer's own)."""
        ...

    def sample(self, count: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """(count, 1, 28, 28) new digits decoded from codes drawn from PRIOR; ValueError when PRIOR is None."""
        ...

    def transposed_convolutions(self) -> list[TransposedConvolution]:
        """Its transposed convolutions in decoder order; the last one makes the image."""
        ...

    def encoder_kernels(self) -> dict[str, torch.Tensor]:
        """The encoder's convolution kernels by layer, (out, in, k, k) each, first layer first."""
        ...

    def layer_of(self, parameter_name: str) -> str:
        """The layer a parameter (as named by `named_parameters`) belongs to: "conv1.weight" -> "conv1"."""
        ...


def members(protocol: type) -> list[str]:
    """The public names a protocol lists: its annotated attributes and its methods."""
    names = [*protocol.__annotations__, *vars(protocol)]
    return list(dict.fromkeys(name for name in names if not name.startswith("_")))


def _lacking(instance: Any, protocol: type) -> list[str]:
    absent = object()
    return [name for name in members(protocol) if getattr(instance, name, absent) is absent]


def contract_problems(config_class: type, network_class: type) -> list[str]:
    """What a model type lacks or gets wrong against this contract; [] for a type that keeps it.

    The network is built from the config's defaults on the meta device: no memory, no weights drawn.
    """
    if not dataclasses.is_dataclass(config_class):
        return [f"{config_class.__name__} is not a dataclass"]
    if not (isinstance(network_class, type) and issubclass(network_class, nn.Module)):
        return [f"{network_class!r} is not a torch nn.Module"]
    try:
        config = config_class().validate()
    except (ConfigError, TypeError) as error:
        return [f"{config_class.__name__}() is not a valid config: {error}"]
    problems = [f"{config_class.__name__} lacks {name}" for name in _lacking(config, ModelConfigLike)]
    with torch.device("meta"):
        network = network_class(config)
    problems += [f"{network_class.__name__} lacks {name}" for name in _lacking(network, Network)]
    if problems:
        return problems
    fields = {field.name for field in dataclasses.fields(config_class)}
    problems += [f"knob {knob.field!r} is not a field of {config_class.__name__}"
                 for knob in config_class.KNOBS if knob.field not in fields]
    if not network.TERMS:
        problems.append(f"{network_class.__name__}.TERMS names no term")
    problems += [f"{network_class.__name__}.SCORES holds {score!r}, not a Score"
                 for score in network.SCORES if not isinstance(score, Score)]
    if network.PRIOR is not None and not isinstance(network.PRIOR, Prior):
        problems.append(f"{network_class.__name__}.PRIOR is neither None nor a Prior")
    return problems
