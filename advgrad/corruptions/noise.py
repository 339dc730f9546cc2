"""Noise corruptions: Gaussian, shot (Poisson) and impulse (salt-and-pepper) noise.

Constants: Hendrycks & Dietterich (ICLR 2019), CIFAR-10-C. Noise is per pixel, so nothing here
depends on the image size.
"""

from __future__ import annotations

from torch import Tensor

from advgrad.corruptions.draws import SampleDraws

GAUSSIAN_SIGMA = (0.04, 0.06, 0.08, 0.09, 0.10)
SHOT_PHOTONS = (500, 250, 100, 75, 50)
IMPULSE_AMOUNT = (0.01, 0.02, 0.03, 0.05, 0.07)


def gaussian_noise(x: Tensor, severity: int, draws: SampleDraws) -> Tensor:
    """x + σ·z, z ~ N(0, 1) per pixel and channel, clipped to [0, 1]."""
    sigma = GAUSSIAN_SIGMA[severity - 1]
    return (x + sigma * draws.randn(*x.shape[1:])).clamp(0, 1)


def shot_noise(x: Tensor, severity: int, draws: SampleDraws) -> Tensor:
    """Poisson(λ·x)/λ per pixel and channel (photon counting with λ photons at full intensity)."""
    photons = SHOT_PHOTONS[severity - 1]
    return (draws.poisson(x * photons) / photons).clamp(0, 1)


def impulse_noise(x: Tensor, severity: int, draws: SampleDraws) -> Tensor:
    """Each pixel value (per channel) is replaced with probability ``amount`` by 0 or 1, each with
    probability ½ (salt and pepper)."""
    amount = IMPULSE_AMOUNT[severity - 1]
    hit = draws.rand(*x.shape[1:]) < amount
    salt = (draws.rand(*x.shape[1:]) < 0.5).to(x.dtype)
    return (x.masked_fill(hit, 0) + hit.to(x.dtype) * salt).clamp(0, 1)
