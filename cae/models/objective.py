"""What a model type's training objective returns: the total to minimise and the named terms it reports.

The trainer, the history and the loss chart know only this: a new objective adds terms, not code elsewhere.
The reported total is always the sum of the reported terms (a weighted term is reported weighted).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class Objective:
    total: torch.Tensor  # scalar, what the optimiser minimises
    terms: dict[str, torch.Tensor]  # name -> scalar; they add up to total

    @classmethod
    def of(cls, **terms: torch.Tensor) -> Objective:
        return cls(sum(terms.values()), terms)

    def values(self) -> dict[str, float]:
        """The terms as plain floats (one device sync), ready for a history."""
        return dict(zip(self.terms, torch.stack(list(self.terms.values())).tolist()))


def per_pixel_loss(output: torch.Tensor, target: torch.Tensor, loss: str) -> torch.Tensor:
    """Mean squared error ("mse") or binary cross-entropy ("bce"), averaged over pixels and digits."""
    if loss == "bce":
        return F.binary_cross_entropy(output, target)
    return F.mse_loss(output, target)
