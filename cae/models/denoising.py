"""The denoising autoencoder: the post's network, trained to rebuild clean digits from corrupted ones.

Only the objective differs: the input is corrupted (cae.models.noise) and the loss compares the output with the clean
digit. The corruption is part of the model's config, so a checkpoint says what the model learned to remove.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from cae.models.autoencoder import ConvAutoencoder, ModelConfig
from cae.models.config import Knob
from cae.models.noise import KINDS, Noise
from cae.models.objective import Objective, per_pixel_loss


@dataclass(frozen=True)
class DenoisingConfig(ModelConfig):
    noise: str = "gaussian"  # corruption while training: "gaussian", "mask" or "saltpepper" (cae.models.noise.KINDS)
    noise_amount: float = 0.5  # its sigma, or the fraction of pixels it changes

    KNOBS = (Knob("noise", "Noise while training", "; ".join(f"{kind}: {what}" for kind, what in KINDS.items()),
                  choices=tuple(KINDS)),
             Knob("noise_amount", "Noise amount", "Gaussian: its sigma; masking and salt and pepper: the fraction "
                                                  "of pixels changed.", low=0.05, high=1.0, step=0.05))

    @property
    def corruption(self) -> Noise:
        return Noise(self.noise, self.noise_amount)

    def validate(self) -> DenoisingConfig:
        super().validate()
        self.corruption.validate()
        return self

    def describe(self) -> str:
        return f"{super().describe()} · trained on {self.corruption.describe()}"


class DenoisingAutoencoder(ConvAutoencoder):
    def __init__(self, config: DenoisingConfig = DenoisingConfig()):
        super().__init__(config)

    def objective(self, x: torch.Tensor, *, loss: str = "mse",
                  generator: torch.Generator | None = None) -> Objective:
        noisy = self.config.corruption.apply(x, generator)
        return Objective.of(reconstruction=per_pixel_loss(self(noisy), x, loss))
