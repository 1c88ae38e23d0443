"""The prior of the variational autoencoder: the standard normal N(0, I) its codes are pulled towards.

A variational model needs of its prior what every generating type declares (cae.models.contract.Prior: samples and
the range a traversal sweeps) and one thing more, the KL divergence its objective adds (`VariationalPrior.kl`). A VAE
with another prior is another class here, named in its network's PRIOR.
"""

from __future__ import annotations

from typing import Protocol

import torch

from cae.models.contract import Prior

SWEEP_SIGMAS = 3.0  # a traversal spans +-3 standard deviations: 99.7% of the prior's mass in each code number


class VariationalPrior(Prior, Protocol):
    def kl(self, mean: torch.Tensor, log_variance: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
        """KL(N(mean, exp(log_variance)) || prior) per digit, summed over code numbers: (B, code) -> (B,).

        `code` is one sample from N(mean, exp(log_variance)) per digit, for a prior whose KL has no closed form
        (log q(code) - log p(code) estimates it); a closed form ignores it.
        """
        ...


def kl_to_standard_normal(mean: torch.Tensor, log_variance: torch.Tensor) -> torch.Tensor:
    """KL(N(mean, exp(log_variance)) || N(0, I)) per digit, summed over code numbers: (B, code) -> (B,)."""
    return 0.5 * torch.sum(mean**2 + log_variance.exp() - 1 - log_variance, dim=1)


class StandardNormal:
    """N(0, I): every code number an independent standard normal."""

    description = "N(0, I)"

    def sample(self, count: int, code_size: int, generator: torch.Generator | None = None) -> torch.Tensor:
        device = generator.device if generator is not None else None
        return torch.randn((count, code_size), generator=generator, device=device)

    def traversal_range(self) -> tuple[float, float]:
        return -SWEEP_SIGMAS, SWEEP_SIGMAS

    def kl(self, mean: torch.Tensor, log_variance: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
        return kl_to_standard_normal(mean, log_variance)


STANDARD_NORMAL = StandardNormal()
