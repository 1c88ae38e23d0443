"""Corruptions of digit images: Gaussian noise, masking and salt and pepper, always clipped to [0, 1].

The denoising autoencoder trains on them, the home page's noise control shows them, and `python -m cae.evaluate
--noise KIND:AMOUNT` scores models on them. Randomness comes from a torch.Generator passed in, so a seed gives the
same noise everywhere. KIND_KNOB and AMOUNT_KNOB describe the two settings once, for the denoiser's config and the
home page's noise control alike.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from cae.models.config import ConfigError, Knob, check_choice, check_range

# kind -> what its amount means, for help texts and messages
KINDS = {"gaussian": "standard deviation of the added noise",
         "mask": "fraction of pixels set to 0",
         "saltpepper": "fraction of pixels set to 0 or 1 (half each)"}
AMOUNT_RANGE = (0.0, 1.0)
# The settings as widgets offer them, under the field names of a config that carries a Noise (DenoisingConfig);
# an amount of 0 is allowed but pointless, so the widgets start at 0.05.
NAMES = {"gaussian": "Gaussian", "mask": "masking", "saltpepper": "salt and pepper"}  # kind as people read it
KIND_KNOB = Knob("noise", "Noise while training",
                 "; ".join(f"{NAMES[kind]}: {what}" for kind, what in KINDS.items()),
                 choices=tuple(KINDS), choice_names=tuple(NAMES[kind] for kind in KINDS))
AMOUNT_KNOB = Knob("noise_amount", "Noise amount", "Gaussian: its sigma; masking and salt and pepper: the fraction "
                                                   "of pixels changed.", low=0.05, high=AMOUNT_RANGE[1], step=0.05)


@dataclass(frozen=True)
class Noise:
    kind: str = "gaussian"
    amount: float = 0.5

    def validate(self) -> Noise:
        check_choice("noise", self.kind, KINDS)
        check_range("noise amount", self.amount, *AMOUNT_RANGE)
        return self

    @classmethod
    def parse(cls, text: str) -> Noise:
        """'gaussian:0.5', 'mask:0.5', 'saltpepper:0.2' -> Noise; ConfigError for anything else."""
        kind, _, amount = text.partition(":")
        try:
            value = float(amount)
        except ValueError:
            raise ConfigError(f"noise must look like KIND:AMOUNT (e.g. gaussian:0.5), got {text!r}") from None
        return cls(kind, value).validate()

    def describe(self) -> str:
        return {"gaussian": f"Gaussian noise, sigma {self.amount:g}", "mask": f"masking {self.amount:.0%}",
                "saltpepper": f"salt and pepper {self.amount:.0%}"}[self.kind]

    def apply(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """A corrupted copy of float images in [0, 1] (any shape); the input is not changed."""
        if self.kind == "gaussian":
            noise = torch.randn(images.shape, generator=generator, device=images.device, dtype=images.dtype)
            return (images + self.amount * noise).clamp_(0, 1)
        chosen = torch.rand(images.shape, generator=generator, device=images.device) < self.amount
        if self.kind == "mask":
            return images.masked_fill(chosen, 0.0)
        salt = torch.rand(images.shape, generator=generator, device=images.device) < 0.5
        return torch.where(chosen, salt.to(images.dtype), images)


def psnr(mse: float) -> float:
    """Peak signal-to-noise ratio in dB for a mean squared error of pixels in [0, 1]: 10 log10(1 / MSE)."""
    return float("inf") if mse == 0 else 10 * math.log10(1 / mse)
