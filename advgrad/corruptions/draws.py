"""Random numbers of the corruptions, one generator per sample.

Sample ``i`` of a run (its index among all the run's samples, ``first + k`` for row ``k`` of a
batch starting at ``first``) draws from ``generator_for(device, seed, "corruption", name, i)``
(:mod:`advgrad.core.seeding`). Its corrupted image therefore depends on the seed, the corruption and
the sample alone: not on the batch size, on which batches ran before (resume), or on which
process ran it (torchrun). The severity is not part of the path: every severity of one
corruption draws the same numbers for a sample (common random numbers), so only the published
constants differ between severities.
"""

from __future__ import annotations

import torch
from torch import Tensor

from advgrad.core.seeding import generator_for


class SampleDraws:
    """One seeded generator per sample of a batch; each method draws one tensor of ``shape`` per
    sample and stacks them into ``(n, *shape)`` on ``device``."""

    def __init__(self, device: torch.device, seed: int, name: str, first: int, n: int):
        self.device = torch.device(device)
        self.generators = [generator_for(self.device, seed, "corruption", name, first + k) for k in range(n)]

    def _stack(self, draw) -> Tensor:
        return torch.stack([draw(g) for g in self.generators])

    def rand(self, *shape: int) -> Tensor:
        """Uniform on [0, 1)."""
        return self._stack(lambda g: torch.rand(shape, generator=g, device=self.device))

    def uniform(self, low: float, high: float, *shape: int) -> Tensor:
        """Uniform on [low, high)."""
        return low + (high - low) * self.rand(*shape)

    def randn(self, *shape: int) -> Tensor:
        """Standard normal."""
        return self._stack(lambda g: torch.randn(shape, generator=g, device=self.device))

    def randint(self, low: int, high: int, *shape: int) -> Tensor:
        """Integers in [low, high)."""
        return self._stack(lambda g: torch.randint(low, high, shape, generator=g, device=self.device))

    def poisson(self, rates: Tensor) -> Tensor:
        """Poisson counts with the given rates, ``rates[k]`` drawn by sample ``k``'s generator."""
        return torch.stack([torch.poisson(r, generator=g) for r, g in zip(rates, self.generators, strict=True)])
