"""Weather corruptions: snow, frost, fog and brightness.

Constants: Hendrycks & Dietterich (ICLR 2019), CIFAR-10-C. Snow, frost and fog draw layers whose
texture has a size in pixels: they run on the working grid
(:func:`advgrad.corruptions.filters.on_working_grid`), with flake zoom and motion lengths times its
scale. Frost differs from the original, which blends crops of six stock frost photographs: those are
not shipped here, so the frost layer is procedural (:func:`frost_layer`).
"""

from __future__ import annotations

import torch
from torch import Tensor

from advgrad.corruptions.draws import SampleDraws
from advgrad.corruptions.filters import gaussian_blur, grayscale, motion_blur, on_working_grid, plasma_fractal, zoom

# mean and σ of the snow layer, its zoom, threshold, motion radius and σ, share of the image kept
SNOW = (
    (0.1, 0.2, 1, 0.6, 8, 3, 0.95),
    (0.1, 0.2, 1, 0.5, 10, 4, 0.9),
    (0.15, 0.3, 1.75, 0.55, 10, 4, 0.9),
    (0.25, 0.3, 2.25, 0.6, 12, 6, 0.85),
    (0.3, 0.3, 1.25, 0.65, 14, 12, 0.8),
)
FROST = ((1, 0.2), (1, 0.3), (0.9, 0.4), (0.85, 0.4), (0.75, 0.45))  # weight of the image, of the frost
FOG = ((0.2, 3), (0.5, 3), (0.75, 2.5), (1, 2), (1.5, 1.75))  # fog strength, plasma decay
BRIGHTNESS = (0.05, 0.1, 0.15, 0.2, 0.3)
FROST_TINT = (0.85, 0.92, 1.0)  # bluish white, for RGB images


def snow(x: Tensor, severity: int, draws: SampleDraws) -> Tensor:
    """A layer of Gaussian noise (one value per pixel of the working grid) zoomed, thresholded and
    motion-blurred (angle uniform in −135°…−45°: falling) is added twice (once turned by 180°) to
    the image, whose dark parts are first lifted towards 1.5·gray + 0.5."""
    loc, sd, zoom_by, threshold, radius, sigma, keep = SNOW[severity - 1]
    angle = draws.uniform(-135, -45)

    def corrupt(g: Tensor, scale: float) -> Tensor:
        layer = loc + sd * draws.randn(1, g.shape[-2], g.shape[-1])  # the same noise at every severity
        layer = zoom(layer, zoom_by * scale) if zoom_by * scale != 1 else layer
        layer = torch.where(layer < threshold, torch.zeros_like(layer), layer).clamp(0, 1)
        layer = motion_blur(layer, radius * scale, sigma * scale, angle)
        lifted = torch.maximum(g, grayscale(g) * 1.5 + 0.5)
        g = keep * g + (1 - keep) * lifted
        return (g + layer + layer.flip(-2, -1)).clamp(0, 1)

    return on_working_grid(x, corrupt)


def frost_layer(draws: SampleDraws, channels: int, height: int, width: int, scale: float) -> Tensor:
    """N×C×H×W procedural frost in [0, 1], a stand-in for the stock photographs of the original:
    a rough plasma fractal (decay 1.6) squared, for patches of rime, plus ice needles, sparse
    seeds drawn out into streaks by motion blur in two directions 60° apart, slightly smoothed;
    tinted bluish white for RGB."""
    base = plasma_fractal(draws, height, width, 1.6)[:, None] ** 2
    seeds = (draws.rand(1, height, width) < 0.06).float()
    angle = draws.uniform(0, 180)
    needles = motion_blur(seeds, 3 * scale, 2 * scale, angle) + motion_blur(seeds, 3 * scale, 2 * scale, angle + 60)
    needles = gaussian_blur(needles / needles.amax(dim=(1, 2, 3), keepdim=True).clamp_min(1e-12), 0.5 * scale)
    layer = (0.7 * base + 0.8 * needles).clamp(0, 1)
    if channels == 3:
        return layer * torch.tensor(FROST_TINT, device=layer.device)[None, :, None, None]
    return layer.expand(-1, channels, -1, -1)


def frost(x: Tensor, severity: int, draws: SampleDraws) -> Tensor:
    """a·x + b·frost, clipped: the image dimmed and overlaid with a frost layer (:func:`frost_layer`)."""
    a, b = FROST[severity - 1]
    return on_working_grid(
        x, lambda g, s: (a * g + b * frost_layer(draws, g.shape[1], g.shape[-2], g.shape[-1], s)).clamp(0, 1)
    )


def fog(x: Tensor, severity: int, draws: SampleDraws) -> Tensor:
    """x + c·plasma, rescaled by m / (m + c) (m: the image's largest value): a haze whose roughness
    is the plasma's decay."""
    strength, decay = FOG[severity - 1]

    def corrupt(g: Tensor, scale: float) -> Tensor:
        peak = g.amax(dim=(1, 2, 3), keepdim=True)
        haze = plasma_fractal(draws, g.shape[-2], g.shape[-1], decay)[:, None]
        return ((g + strength * haze) * peak / (peak + strength)).clamp(0, 1)

    return on_working_grid(x, corrupt)


def brightness(x: Tensor, severity: int, draws: SampleDraws) -> Tensor:
    """The value V = max over channels (HSV) raised by c and clipped to 1, hue and saturation kept:
    every channel is multiplied by V′/V (a black pixel becomes gray V′ = c). For one channel, min(x + c, 1)."""
    c = BRIGHTNESS[severity - 1]
    value = x.amax(dim=1, keepdim=True)
    lifted = (value + c).clamp(max=1)
    ratio = torch.where(value > 0, lifted / value.clamp_min(1e-12), torch.zeros_like(value))
    return torch.where(value > 0, x * ratio, lifted.expand_as(x)).clamp(0, 1)
