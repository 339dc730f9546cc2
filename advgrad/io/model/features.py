"""A table's model behind its feature scaling, so that attacks work in the unit box [0, 1].

The data of a table reaches the attacks scaled per feature (:mod:`advgrad.io.data.tables`): the
attack sees ``z`` in [0, 1]^D, the model receives raw feature values ``lo + (hi − lo)·min(r·z, 1)``.
ε is thereby a fraction of each feature's range, and every attack, check and bound works on the
table unchanged.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from advgrad.core.errors import ModelError
from advgrad.io.data.tables import FeatureSpace


class FeatureScaled(nn.Module):
    """``model(lo + (hi − lo)·u)`` with ``u = min(r·z, 1)``; the attack sees ``z``, the model raw features.

    Features of ε weight 0 (``space.fixed``) pass their value but not their gradient: the threat
    model holds them fixed, and a zero gradient keeps the attacks' steps from being spent on them.
    """

    def __init__(self, model: nn.Module, space: FeatureSpace):
        super().__init__()
        self.model = model
        self.space = space
        lo, hi, r = space.tensors()
        self.register_buffer("lower", lo.unsqueeze(0), persistent=False)
        self.register_buffer("span", (hi - lo).unsqueeze(0), persistent=False)
        self.register_buffer("stretch", r.unsqueeze(0), persistent=False)
        free = torch.ones(1, space.features)
        free[0, list(space.fixed)] = 0.0
        self.register_buffer("free", free, persistent=False)
        self.stretched = space.stretched
        self.has_fixed = bool(space.fixed)

    def forward(self, z: Tensor):
        if z.dim() != 2 or z.shape[1] != self.space.features:
            raise ModelError(
                f"the table has {self.space.features} features but the model was given shape {tuple(z.shape)}"
            )
        if self.has_fixed:  # value passes, gradient does not
            z = z * self.free + (z * (1 - self.free)).detach()
        u = z * self.stretch.to(z.dtype)
        if self.stretched:
            u = u.clamp(0.0, 1.0)
        return self.model(self.lower.to(z.dtype) + self.span.to(z.dtype) * u)
