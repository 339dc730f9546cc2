"""Blur corruptions: defocus, glass, motion and zoom blur.

Constants: Hendrycks & Dietterich (ICLR 2019), CIFAR-10-C (32×32 images). Defocus, glass and
motion blur are lengths in pixels: they run on the working grid with lengths times its scale
(:func:`advgrad.corruptions.filters.on_working_grid`). Zoom factors are relative to the image and
hold at any size.
"""

from __future__ import annotations

from torch import Tensor

from advgrad.corruptions.draws import SampleDraws
from advgrad.corruptions.filters import (
    disk_kernel,
    filter2d,
    gaussian_blur,
    on_working_grid,
    pixel_grid,
    sample_at,
    zoom,
)
from advgrad.corruptions.filters import (
    motion_blur as _motion,
)

DEFOCUS = ((0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2), (1.5, 0.1))  # disk radius, anti-alias σ (pixels)
GLASS = ((0.05, 1, 1), (0.25, 1, 1), (0.4, 1, 1), (0.25, 1, 2), (0.4, 1, 2))  # blur σ, max shift, rounds
MOTION = ((6, 1), (6, 1.5), (6, 2), (8, 2), (9, 2.5))  # radius, σ (pixels); angle uniform in ±45°
ZOOM_STEPS = (6, 11, 16, 21, 26)  # zoom factors 1, 1.01, …: this many of them


def defocus_blur(x: Tensor, severity: int, draws: SampleDraws) -> Tensor:
    """Each channel convolved with a disk of the severity's radius, anti-aliased by a small Gaussian."""
    radius, alias = DEFOCUS[severity - 1]
    return on_working_grid(x, lambda g, s: filter2d(g, disk_kernel(radius * s, alias * s)).clamp(0, 1))


def glass_blur(x: Tensor, severity: int, draws: SampleDraws) -> Tensor:
    """Gaussian blur; then, for each round, every pixel takes the value at a random offset
    (each coordinate uniform in −δ…δ−1, as the original draws it); then Gaussian blur again.

    The original swaps pixels one after another; that cannot be batched, so here every pixel
    gathers from its offset at once (a pixel may be read twice): the same local scrambling."""
    sigma, delta, rounds = GLASS[severity - 1]

    def corrupt(g: Tensor, scale: float) -> Tensor:
        shift = max(1, round(delta * scale))
        g = gaussian_blur(g, sigma * scale)
        cols, rows = pixel_grid(g)
        h, w = g.shape[-2], g.shape[-1]
        offsets = draws.randint(-shift, shift, 2 * rounds, h, w).to(g.dtype)  # the same for every severity
        for k in range(rounds):
            px = (cols + offsets[:, 2 * k]).clamp(0, w - 1)
            py = (rows + offsets[:, 2 * k + 1]).clamp(0, h - 1)
            g = sample_at(g, px, py)  # integer coordinates: a gather
        return gaussian_blur(g, sigma * scale).clamp(0, 1)

    return on_working_grid(x, corrupt)


def motion_blur(x: Tensor, severity: int, draws: SampleDraws) -> Tensor:
    """Motion blur along a random direction (uniform in ±45° per sample)."""
    radius, sigma = MOTION[severity - 1]
    angle = draws.uniform(-45, 45)
    return on_working_grid(x, lambda g, s: _motion(g, radius * s, sigma * s, angle).clamp(0, 1))


def zoom_blur(x: Tensor, severity: int, draws: SampleDraws) -> Tensor:
    """The mean of the image and its centred zooms by 1, 1.01, 1.02, … (6 to 26 factors by severity)."""
    factors = [1 + 0.01 * k for k in range(ZOOM_STEPS[severity - 1])]
    total = x.clone()
    for f in factors:
        total = total + zoom(x, f)
    return (total / (len(factors) + 1)).clamp(0, 1)
