"""Two toy defences around the embedded digits CNN, for trying the adaptive attacks.

Neither is a real defence; each reproduces, on a model small enough for a test, the obstacle
that a class of defences puts in front of gradient attacks (Athalye, Carlini & Wagner, ICML 2018):

* :func:`noisy_digits`: Gaussian noise added to the input on every forward pass (a randomized
  model, in the manner of random self-ensemble defences). One gradient is one random draw;
  expectation over transformation (``--eot``, ``autoattack-rand``) averages the draws.
* :func:`quantized_digits`: the input rounded to a few grey levels before the CNN (a
  non-differentiable preprocessor: ∇ₓJ = 0 almost everywhere). BPDA (``--bpda quantize``)
  differentiates the rounding as the identity.

Both load from the command line as factories: ``--model advgrad.io.model.defended:noisy_digits``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class GaussianNoise(nn.Module):
    """x + σ·ξ with ξ ~ N(0, I) drawn anew on every call, from the module's own generator (seeded,
    so that a run is reproducible without touching the global RNG)."""

    def __init__(self, sigma: float, seed: int = 0):
        super().__init__()
        self.sigma = sigma
        self.generator = torch.Generator().manual_seed(seed)

    def forward(self, x: Tensor) -> Tensor:
        noise = torch.randn(x.shape, generator=self.generator, dtype=x.dtype)
        return x + self.sigma * noise.to(x.device)


class Quantize(nn.Module):
    """round(x·(L − 1))/(L − 1): L grey levels evenly spaced in [0, 1]."""

    def __init__(self, levels: int):
        super().__init__()
        self.levels = levels

    def forward(self, x: Tensor) -> Tensor:
        return torch.round(x * (self.levels - 1)) / (self.levels - 1)


class Preprocessed(nn.Module):
    """``net(preprocess(x))``; the preprocessor is the submodule ``noise`` or ``quantize``."""

    def __init__(self, name: str, preprocess: nn.Module, net: nn.Module):
        super().__init__()
        self.add_module(name, preprocess)
        self.net = net
        self._first = name

    def forward(self, x: Tensor) -> Tensor:
        return self.net(getattr(self, self._first)(x))


def _digits() -> nn.Module:
    from advgrad.io.model.load_model import load_default_model

    return load_default_model()


def noisy_digits(sigma: float = 0.15, seed: int = 0) -> nn.Module:
    """The embedded digits CNN behind Gaussian input noise of standard deviation ``sigma``."""
    return Preprocessed("noise", GaussianNoise(sigma, seed), _digits()).eval()


def quantized_digits(levels: int = 8) -> nn.Module:
    """The embedded digits CNN behind a rounding of its input to ``levels`` grey levels."""
    return Preprocessed("quantize", Quantize(levels), _digits()).eval()
