"""The denoising autoencoder: the post's network, trained to rebuild clean digits from corrupted ones.

Only the objective differs: the input is corrupted (cae.models.noise) and the loss compares the output with the clean
digit. The corruption is part of the model's config, so a checkpoint says what the model learned to remove. Its score
(SCORES) is the PSNR of what it makes of digits corrupted that same way.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from cae.models.autoencoder import ConvAutoencoder, ModelConfig
from cae.models.contract import Score
from cae.models.noise import AMOUNT_KNOB, KIND_KNOB, Noise, psnr
from cae.models.objective import Objective, per_pixel_loss


@dataclass(frozen=True)
class DenoisingConfig(ModelConfig):
    noise: str = "gaussian"  # corruption while training: "gaussian", "mask" or "saltpepper" (cae.models.noise.KINDS)
    noise_amount: float = 0.5  # its sigma, or the fraction of pixels it changes

    KNOBS = (KIND_KNOB, AMOUNT_KNOB)

    @property
    def corruption(self) -> Noise:
        return Noise(self.noise, self.noise_amount)

    def validate(self) -> DenoisingConfig:
        super().validate()
        self.corruption.validate()
        return self

    def describe(self) -> str:
        return f"{super().describe()} · trained on {self.corruption.describe()}"


def own_noise_error(model: DenoisingAutoencoder, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Mean squared error per digit of the output from a copy with the model's own training noise, (B,)."""
    output = model(model.config.corruption.apply(x, generator))
    return ((output - x) ** 2).flatten(1).mean(1)


class DenoisingAutoencoder(ConvAutoencoder):
    SCORES = (Score("held_out_own_noise_psnr_db", "PSNR from its training noise", "dB", "higher", own_noise_error,
                    summary=psnr, help="10 log10(1 / MSE) of its output against the clean digit, given a copy with "
                                       "the noise it was trained on: higher is cleaner."),)

    def __init__(self, config: DenoisingConfig = DenoisingConfig()):
        super().__init__(config)

    def objective(self, x: torch.Tensor, *, loss: str = "mse",
                  generator: torch.Generator | None = None) -> Objective:
        noisy = self.config.corruption.apply(x, generator)
        return Objective.of(reconstruction=per_pixel_loss(self(noisy), x, loss))
