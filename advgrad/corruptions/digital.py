"""Digital corruptions: contrast, elastic transform, pixelate and JPEG compression.

Constants: Hendrycks & Dietterich (ICLR 2019), CIFAR-10-C. The elastic transform's constants are
fractions of the image side (the original writes them as multiples of 32); it runs on the working grid
(:func:`advgrad.corruptions.filters.on_working_grid`) so that an 8×8 image is deformed as its
32×32 version would be. Pixelate and JPEG work on the image as it is (its 8×8 blocks are part of the format).
"""

from __future__ import annotations

import torch
from torch import Tensor

from advgrad.core.errors import UsageError
from advgrad.corruptions.draws import SampleDraws
from advgrad.corruptions.filters import (
    REFERENCE_SIDE,
    cell_average,
    gaussian_blur,
    on_working_grid,
    pixel_grid,
    sample_at,
)

CONTRAST = (0.75, 0.5, 0.4, 0.3, 0.15)
ELASTIC = (  # displacement α, its smoothing σ, affine jitter: fractions of the image side
    (0.0, 0.0, 0.08),
    (0.05, 0.2, 0.07),
    (0.08, 0.06, 0.06),
    (0.1, 0.04, 0.05),
    (0.1, 0.03, 0.03),
)
PIXELATE = (0.95, 0.9, 0.85, 0.75, 0.65)  # side of the coarse image, as a share of the side
JPEG_QUALITY = (80, 65, 58, 50, 40)


def contrast(x: Tensor, severity: int, draws: SampleDraws) -> Tensor:
    """(x − m)·c + m, m the mean of each channel of each image, clipped to [0, 1]."""
    c = CONTRAST[severity - 1]
    mean = x.mean(dim=(2, 3), keepdim=True)
    return ((x - mean) * c + mean).clamp(0, 1)


def elastic_transform(x: Tensor, severity: int, draws: SampleDraws) -> Tensor:
    """A random affine map (three points around the centre, a third of the side away, each moved by
    up to ``jitter`` per coordinate) composed with a smooth random displacement field (uniform noise
    in ±1 smoothed by a Gaussian of σ, times α); bilinear, reflecting at the edges."""
    alpha, sigma, jitter = ELASTIC[severity - 1]

    def corrupt(g: Tensor, scale: float) -> Tensor:
        n, h, w = g.shape[0], g.shape[-2], g.shape[-1]
        side = min(h, w)
        cy, cx, third = float(h // 2), float(w // 2), float(side // 3)
        src = torch.tensor(
            [[cx + third, cy + third], [cx + third, cy - third], [cx - third, cy - third]], device=g.device
        )
        dst = src + draws.uniform(-1, 1, 3, 2) * jitter * side  # the same draws at every severity
        ones = torch.ones(n, 3, 1, device=g.device)
        # the affine map A (2×3) with A·[src; 1] = dst, per sample
        a = torch.linalg.solve(torch.cat([src.expand(n, -1, -1), ones], dim=2), dst).transpose(1, 2)
        field = draws.uniform(-1, 1, 2, h, w)
        field = gaussian_blur(field, sigma * side) * (alpha * side) if alpha > 0 else torch.zeros_like(field)
        cols, rows = pixel_grid(g)
        qx, qy = cols + field[:, 0], rows + field[:, 1]
        # out(q) = image(A⁻¹(q + d(q))): OpenCV's warpAffine, then the displaced read
        lin, shift = a[:, :, :2], a[:, :, 2]
        inv = torch.linalg.inv(lin)
        vx, vy = qx - shift[:, 0, None, None], qy - shift[:, 1, None, None]
        px = inv[:, 0, 0, None, None] * vx + inv[:, 0, 1, None, None] * vy
        py = inv[:, 1, 0, None, None] * vx + inv[:, 1, 1, None, None] * vy
        return sample_at(g, px, py, padding="reflection").clamp(0, 1)

    return on_working_grid(x, corrupt)


def pixelate(x: Tensor, severity: int, draws: SampleDraws) -> Tensor:
    """Averaged over cells 32/⌊32·share⌋ pixels wide, then read back (coarser pixels).

    Pixelation is a loss of resolution relative to the image, so the cell width is in the image's
    own pixels at every size: for 32×32 images it gives the original's ⌊32·share⌋ coarse pixels
    per side; an 8×8 image is reduced to 7.5, 7, 6.75, 6 and 5 cells per side (the last cell cut)."""
    share = PIXELATE[severity - 1]
    return cell_average(x, REFERENCE_SIDE / int(REFERENCE_SIDE * share)).clamp(0, 1)


def jpeg_compression(x: Tensor, severity: int, draws: SampleDraws) -> Tensor:
    """Encoded as JPEG at the severity's quality and decoded (torchvision, on the CPU, 8 bits per
    value); 1 or 3 channels."""
    import warnings

    with warnings.catch_warnings():  # torchvision ≥ 0.29 announces a successor for its JPEG codec
        warnings.simplefilter("ignore", DeprecationWarning)
        from torchvision.io import decode_jpeg, encode_jpeg

    if x.shape[1] not in (1, 3):
        raise UsageError(
            f"jpeg_compression needs images of 1 or 3 channels, these have {x.shape[1]}: leave it out of the "
            "corruptions",
            params="corruptions",
        )
    quality = JPEG_QUALITY[severity - 1]
    pixels = (x.detach() * 255).round().clamp(0, 255).to(torch.uint8).cpu()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        decoded = decode_jpeg(encode_jpeg(list(pixels), quality=quality))
    return torch.stack(decoded).to(device=x.device, dtype=x.dtype) / 255
