"""The convolutional autoencoder of "Convolutional Autoencoder for Dummies", and its config.

Pure PyTorch: no files, no Streamlit, no argument parsing. The decoder mirrors the encoder; with tied weights
(the post's choice) each transposed convolution uses the very weight tensor of the matching encoder convolution,
which is the post's lesson in code: a "deconvolution" is a full convolution with the kernel rotated 180 degrees.

ConvAutoencoder keeps the contract every model type keeps (cae.models.contract): `encode`, `decode`, `reconstruct`,
`objective` (the training loss and its named terms), `loss_label`, the stage generators the pages draw, the layers
they look into, and the config's `describe`. It declares no extra score and no prior. The denoising and variational
types subclass it and change only what differs.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from cae.models.config import ConfigError, check_choice, check_range
from cae.models.contract import Prior, Score, TransposedConvolution
from cae.models.objective import Objective, per_pixel_loss

ACTIVATIONS = {"tanh": torch.tanh, "relu": F.relu, "sigmoid": torch.sigmoid}
CHANNELS = 32  # filters in each convolution, as in the post
KERNEL = 5  # 5x5 kernels: 28 -> 24 -> (pool) 12 -> 8 -> (pool) 4
FLAT = CHANNELS * 4 * 4  # 512 numbers between the convolutions and the code


class Dropout(nn.Dropout):
    """nn.Dropout that draws its masks from a torch.Generator of its own once given one (draw_dropout_from).

    torch's dropout draws from the process-wide generator, which every visitor's run and page shares: a run beside
    another (or a page drawing anything random) would change its masks, and the same seed would not give the same
    run. The masks are those of nn.Dropout: keep with probability 1 - p, scale the kept by 1 / (1 - p).
    """

    generator: torch.Generator | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.generator is None or not self.training or self.p == 0:
            return super().forward(x)
        keep = torch.empty_like(x).bernoulli_(1 - self.p, generator=self.generator)
        return x * keep / (1 - self.p)


@dataclass(frozen=True)
class ModelConfig:
    code_size: int = 32  # numbers in the code between encoder and decoder
    dropout: float = 0.0  # on the flattened 512 features and on the code; the post used 0.5
    tied_weights: bool = True  # decoder's transposed convs reuse the encoder's conv weights (the post's choice)
    activation: str = "tanh"  # after each hidden conv / transposed conv and the decoder's dense layer

    RANGES = {"code_size": (1, 256), "dropout": (0.0, 0.9)}  # class constant, not a field
    KNOBS = ()  # a type's own settings beyond these, as pages offer them (cae.models.config.Knob); not a field

    def validate(self) -> ModelConfig:
        """Return self, or raise ConfigError naming the first field that is out of range."""
        check_range("code_size", self.code_size, *self.RANGES["code_size"], integer=True)
        check_range("dropout", self.dropout, *self.RANGES["dropout"])
        check_choice("activation", self.activation, ACTIVATIONS)
        if not isinstance(self.tied_weights, bool):
            raise ConfigError(f"tied_weights must be true or false, got {self.tied_weights!r}")
        return self

    def describe(self) -> str:
        """One line for people: the network's settings."""
        return (f"code {self.code_size} · dropout {self.dropout:g} · "
                f"{'tied' if self.tied_weights else 'untied'} weights · {self.activation}")


class ConvAutoencoder(nn.Module):
    """conv-pool-conv-pool-dense code, mirrored by dense-upscale-deconv-upscale-deconv; output in [0, 1]."""

    TERMS = {"reconstruction": "reconstruction"}  # the loss terms `objective` reports, in order, and their labels
    USES_TRAINER_LOSS = True  # the objective follows TrainConfig.loss (mse or bce)
    # A type with an objective of its own (USES_TRAINER_LOSS False) names the per-pixel loss it uses, recorded in
    # its TrainConfig, and says in words what it minimises (the Train page shows it in place of the loss choice).
    OBJECTIVE_LOSS = "mse"
    OBJECTIVE_TEXT = ""
    SCORES: tuple[Score, ...] = ()  # scores beyond the reconstruction MSE (cae.models.contract.Score)
    PRIOR: Prior | None = None  # no distribution over its codes: it cannot make new digits
    # Stages computed by a layer of another name (layer_of); every other stage is its layer's own name. A layer
    # belongs to the first stage that names it.
    STAGE_LAYERS = {"code": "encode_dense", "dense": "decode_dense"}

    def __init__(self, config: ModelConfig = ModelConfig()):
        super().__init__()
        self.config = config.validate()
        self.act = ACTIVATIONS[config.activation]
        self.conv1 = nn.Conv2d(1, CHANNELS, KERNEL)  # weight (32, 1, 5, 5)
        self.conv2 = nn.Conv2d(CHANNELS, CHANNELS, KERNEL)  # weight (32, 32, 5, 5)
        self.encode_dense = nn.Linear(FLAT, config.code_size)
        self.decode_dense = nn.Linear(config.code_size, FLAT)
        self.dropout = Dropout(config.dropout)
        # A transposed conv's bias belongs to its own output channels, so it is never shared.
        self.deconv2_bias = nn.Parameter(torch.zeros(CHANNELS))
        self.deconv1_bias = nn.Parameter(torch.zeros(1))
        if not config.tied_weights:
            self.deconv2_weight = nn.Parameter(self.conv2.weight.detach().clone())
            self.deconv1_weight = nn.Parameter(self.conv1.weight.detach().clone())

    # The transposed convs' weights: the encoder's own tensors when tied (no copy), else the decoder's.
    @property
    def deconv2_w(self) -> torch.Tensor:
        return self.conv2.weight if self.config.tied_weights else self.deconv2_weight

    @property
    def deconv1_w(self) -> torch.Tensor:
        return self.conv1.weight if self.config.tied_weights else self.deconv1_weight

    def feature_stages(self, x: torch.Tensor) -> Iterator[tuple[str, torch.Tensor]]:
        """Yield (name, tensor) after each convolutional stage of the encoder, ending with the 512 features."""
        h = self.act(self.conv1(x))
        yield "conv1", h  # (B, 32, 24, 24)
        h = F.max_pool2d(h, 2)
        yield "pool1", h  # (B, 32, 12, 12)
        h = self.act(self.conv2(h))
        yield "conv2", h  # (B, 32, 8, 8)
        h = F.max_pool2d(h, 2)
        yield "pool2", h  # (B, 32, 4, 4)
        yield "flatten", self.dropout(h.flatten(1))  # (B, 512)

    def head_stages(self, features: torch.Tensor) -> Iterator[tuple[str, torch.Tensor]]:
        """From the 512 features to the code; the last stage is always named "code"."""
        yield "code", self.encode_dense(features)  # (B, code); linear, so its numbers take any sign and size

    def encoder_stages(self, x: torch.Tensor) -> Iterator[tuple[str, torch.Tensor]]:
        """Yield (name, tensor) after each encoder stage; the last one is the code."""
        features = None
        for name, features in self.feature_stages(x):
            yield name, features
        yield from self.head_stages(features)

    def decoder_stages(self, code: torch.Tensor, *, logits: bool = False) -> Iterator[tuple[str, torch.Tensor]]:
        """Yield (name, tensor) after each decoder stage; the last one is the image (or its logits)."""
        h = self.act(self.decode_dense(self.dropout(code)))
        yield "dense", h  # (B, 512)
        h = h.view(-1, CHANNELS, 4, 4)
        yield "reshape", h
        h = F.interpolate(h, scale_factor=2, mode="nearest")
        yield "upscale2", h  # (B, 32, 8, 8)
        h = self.act(F.conv_transpose2d(h, self.deconv2_w, self.deconv2_bias))
        yield "deconv2", h  # (B, 32, 12, 12)
        h = F.interpolate(h, scale_factor=2, mode="nearest")
        yield "upscale1", h  # (B, 32, 24, 24)
        h = F.conv_transpose2d(h, self.deconv1_w, self.deconv1_bias)
        yield "deconv1", h if logits else torch.sigmoid(h)  # (B, 1, 28, 28)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1, 28, 28) images in [0, 1] -> (B, code_size) codes."""
        *_, (_, code) = self.encoder_stages(x)
        return code

    def decode(self, code: torch.Tensor) -> torch.Tensor:
        """(B, code_size) codes -> (B, 1, 28, 28) images in [0, 1]."""
        *_, (_, image) = self.decoder_stages(code)
        return image

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """What the model makes of its input: the decoded code."""
        return self.decode(self.encode(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.reconstruct(x)

    def sample(self, count: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """(count, 1, 28, 28) new digits decoded from codes drawn from the type's PRIOR."""
        if self.PRIOR is None:
            raise ValueError(f"{type(self).__name__} has no prior over its codes: it cannot make new digits")
        code = self.PRIOR.sample(count, self.config.code_size, generator)
        return self.decode(code.to(self.encode_dense.weight.device))

    def transposed_convolutions(self) -> list[TransposedConvolution]:
        """deconv2 then deconv1, each with the encoder convolution it mirrors (decoder_stages applies them)."""
        return [TransposedConvolution("deconv2", "upscale2", "deconv2_w", self.deconv2_w, self.deconv2_bias,
                                      "conv2", self.conv2.weight),
                TransposedConvolution("deconv1", "upscale1", "deconv1_w", self.deconv1_w, self.deconv1_bias,
                                      "conv1", self.conv1.weight)]

    def encoder_kernels(self) -> dict[str, torch.Tensor]:
        """conv1's (32, 1, 5, 5) and conv2's (32, 32, 5, 5) kernels, the tensors themselves."""
        return {"conv1": self.conv1.weight, "conv2": self.conv2.weight}

    @staticmethod
    def layer_of(parameter_name: str) -> str:
        """'conv1.weight' -> 'conv1'; 'deconv2_bias' and 'deconv2_weight' -> 'deconv2'."""
        return parameter_name.split(".")[0].removesuffix("_bias").removesuffix("_weight")

    def draw_dropout_from(self, generator: torch.Generator) -> None:
        """Dropout masks come from `generator` from now on: a trainer's own, so its seed decides them (Dropout)."""
        self.dropout.generator = generator

    def objective(self, x: torch.Tensor, *, loss: str = "mse",
                  generator: torch.Generator | None = None) -> Objective:
        """The training loss on a batch of clean digits; `generator` feeds any randomness the type needs."""
        return Objective.of(reconstruction=per_pixel_loss(self(x), x, loss))

    @staticmethod
    def loss_label(loss: str = "mse") -> str:
        """The objective's unit, for charts."""
        return f"{loss.upper()} per pixel"

    def collapse_advice(self, train_config) -> str:
        """What to tell a person whose run collapsed to one output for every digit (cae.engine.trainer)."""
        return (f"The learning rate {train_config.learning_rate:g} is too large for {train_config.optimizer}: its "
                f"first steps threw the weights so far that the units saturate and their gradients vanish, so more "
                f"training will not bring it back. Try 0.001 to 0.003 with Adam.")
