"""The variational autoencoder: the post's encoder with a mean and a log-variance head per code number.

While training, the code is sampled with the reparameterisation trick (mean + sigma * noise, so gradients flow
through mean and sigma); the objective is the negative evidence lower bound: binary cross-entropy summed over the
784 pixels plus beta times the KL divergence of the code's distribution from the prior, in nats per digit.
Reconstructions use the mean; new digits are decoded from codes drawn from the prior. The prior is declared in
PRIOR (cae.models.prior, N(0, I)); the negative ELBO is declared in SCORES, so `python -m cae.evaluate` and the
pages report it without knowing this type.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from cae.models.autoencoder import FLAT, ConvAutoencoder, ModelConfig
from cae.models.config import Knob, check_range
from cae.models.contract import Score
from cae.models.objective import Objective
from cae.models.prior import STANDARD_NORMAL, VariationalPrior

LOG_VARIANCE_LIMIT = 10.0  # exp(+-10): keeps a wild early step from overflowing the KL term


@dataclass(frozen=True)
class VariationalConfig(ModelConfig):
    beta: float = 1.0  # weight of the KL term; 1 is the true lower bound, larger trades detail for a tidier code

    RANGES = {**ModelConfig.RANGES, "beta": (0.0, 20.0)}
    KNOBS = (Knob("beta", "Beta (weight of the KL term)", "1 trains the true lower bound. Larger: a tidier code, "
                                                          "blurrier digits.", low=0.0, high=10.0, step=0.25),)

    def validate(self) -> VariationalConfig:
        super().validate()
        check_range("beta", self.beta, *self.RANGES["beta"])
        return self

    def describe(self) -> str:
        return f"{super().describe()} · beta {self.beta:g}"


def negative_elbo_per_digit(model: VariationalAutoencoder, x: torch.Tensor,
                            generator: torch.Generator | None) -> torch.Tensor:
    return model.negative_elbo(x, generator)


class VariationalAutoencoder(ConvAutoencoder):
    TERMS = {"reconstruction": "reconstruction", "kl": "beta x KL"}  # KL weighted: the terms add up to the total
    USES_TRAINER_LOSS = False  # its own objective: cross-entropy summed over the pixels, plus beta x KL
    OBJECTIVE_LOSS = "bce"
    OBJECTIVE_TEXT = ("the negative ELBO, reconstruction (cross-entropy summed over the 784 pixels) plus beta x KL, "
                      "in nats per digit")
    PRIOR: VariationalPrior = STANDARD_NORMAL
    SCORES = (Score("held_out_elbo_nats", "Negative ELBO", "nats per digit", "lower", negative_elbo_per_digit,
                    help="The true bound (beta 1) with one sampled code per digit: the fewer nats, the likelier "
                         "the model finds the digit."),)
    STAGE_LAYERS = {**ConvAutoencoder.STAGE_LAYERS, "mean": "encode_dense", "log_variance": "log_variance_dense"}

    def __init__(self, config: VariationalConfig = VariationalConfig()):
        super().__init__(config)
        self.log_variance_dense = nn.Linear(FLAT, config.code_size)  # encode_dense is the mean head

    def heads(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, 512) -> mean and log-variance of the code, each (B, code)."""
        log_variance = self.log_variance_dense(features).clamp(-LOG_VARIANCE_LIMIT, LOG_VARIANCE_LIMIT)
        return self.encode_dense(features), log_variance

    def head_stages(self, features: torch.Tensor) -> Iterator[tuple[str, torch.Tensor]]:
        mean, log_variance = self.heads(features)
        yield "mean", mean
        yield "log_variance", log_variance
        # While training the code is a sample; otherwise the mean (reconstructions use the mean).
        yield "code", self.sample_code(mean, log_variance) if self.training else mean

    @staticmethod
    def sample_code(mean: torch.Tensor, log_variance: torch.Tensor,
                    generator: torch.Generator | None = None) -> torch.Tensor:
        """The reparameterisation trick: mean + sigma * noise, differentiable in mean and log_variance."""
        noise = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
        return mean + (0.5 * log_variance).exp() * noise

    def _terms(self, x: torch.Tensor, generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Reconstruction nats and KL nats per digit, each (B,), with one sampled code per digit."""
        *_, (_, features) = self.feature_stages(x)
        mean, log_variance = self.heads(features)
        code = self.sample_code(mean, log_variance, generator)
        *_, (_, logits) = self.decoder_stages(code, logits=True)
        reconstruction = F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(1)
        return reconstruction, self.PRIOR.kl(mean, log_variance, code)

    def objective(self, x: torch.Tensor, *, loss: str = "bce",
                  generator: torch.Generator | None = None) -> Objective:
        """Negative ELBO in nats per digit (the trainer's `loss` setting does not apply: this is the VAE's own)."""
        reconstruction, kl = self._terms(x, generator)
        return Objective.of(reconstruction=reconstruction.mean(), kl=self.config.beta * kl.mean())

    def negative_elbo(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """The true bound (beta 1) per digit in nats, (B,): the type's score (SCORES)."""
        reconstruction, kl = self._terms(x, generator)
        return reconstruction + kl

    @staticmethod
    def loss_label(loss: str = "bce") -> str:
        return "nats per digit"

    def collapse_advice(self, train_config) -> str:
        if self.config.beta > 1:
            return (f"With beta {self.config.beta:g} the KL term outweighs the picture: every code is pushed onto "
                    f"the prior and carries nothing about its digit (posterior collapse). Try beta 1 or less.")
        return super().collapse_advice(train_config)
