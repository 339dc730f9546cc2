"""Image operations the corruptions share, on batched N×C×H×W tensors: Gaussian and disk blurs,
motion blur along an angle, resampling at fractional coordinates, centred zoom, the plasma
fractal, and the working grid on which size-dependent corruptions run.

The working grid: the published constants (Hendrycks & Dietterich, CIFAR-10-C) are lengths in
pixels of a 32×32 image. An image whose shorter side is below :data:`REFERENCE_SIDE` is repeated
``k × k`` times per pixel (nearest neighbour, ``k = ⌈32 / side⌉``), corrupted there, and averaged
back over the ``k × k`` blocks: an 8×8 image is corrupted as the 32×32 image it would be, then
reduced again. On that grid, and for images of side 32 or more, lengths are scaled by
``scale = side_on_the_grid / 32`` (1 for 8×8 and 32×32 images, 7 for 224×224).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

REFERENCE_SIDE = 32  # the published constants are for 32×32 images (CIFAR-10-C)


def working_factor(height: int, width: int) -> int:
    """How many times each pixel is repeated (per axis) on the working grid."""
    side = min(height, width)
    return 1 if side >= REFERENCE_SIDE else math.ceil(REFERENCE_SIDE / side)


def on_working_grid(x: Tensor, corrupt: Callable[[Tensor, float], Tensor]) -> Tensor:
    """``corrupt(x_grid, scale)`` on the working grid, brought back to ``x``'s size by block averages."""
    k = working_factor(x.shape[-2], x.shape[-1])
    grid = x if k == 1 else x.repeat_interleave(k, dim=-2).repeat_interleave(k, dim=-1)
    scale = min(grid.shape[-2], grid.shape[-1]) / REFERENCE_SIDE
    out = corrupt(grid, scale)
    return out if k == 1 else F.avg_pool2d(out, k)


def pad(x: Tensor, ph: int, pw: int) -> Tensor:
    """Reflect padding (as OpenCV's default border), replicate where the image is too small to reflect."""
    mode = "reflect" if ph < x.shape[-2] and pw < x.shape[-1] else "replicate"
    return F.pad(x, (pw, pw, ph, ph), mode=mode)


def filter2d(x: Tensor, kernel: Tensor) -> Tensor:
    """Each channel correlated with the 2-D ``kernel`` (odd sides), same size out."""
    c = x.shape[1]
    kh, kw = kernel.shape
    weight = kernel.to(x).expand(c, 1, kh, kw)
    return F.conv2d(pad(x, kh // 2, kw // 2), weight, groups=c)


def gaussian_kernel1d(sigma: float, *, truncate: float = 3.0, radius: int | None = None) -> Tensor:
    """Normalised samples of exp(−t²/2σ²) for t = −r…r, r = ``radius`` or max(1, ⌈truncate·σ⌉);
    [1] for σ ≤ 0."""
    if sigma <= 0:
        return torch.ones(1)
    r = radius if radius is not None else max(1, math.ceil(truncate * sigma))
    t = torch.arange(-r, r + 1, dtype=torch.float32)
    k = torch.exp(-(t**2) / (2 * sigma**2))
    return k / k.sum()


def gaussian_blur(x: Tensor, sigma: float, *, truncate: float = 3.0) -> Tensor:
    """Separable Gaussian blur of standard deviation ``sigma`` pixels."""
    k = gaussian_kernel1d(sigma, truncate=truncate)
    if k.numel() == 1:
        return x
    return filter2d(filter2d(x, k[None, :]), k[:, None])


def disk_kernel(radius: float, alias_blur: float) -> Tensor:
    """The defocus kernel: the pixels of the integer grid within ``radius`` of the centre (at least
    the centre), normalised, then smoothed by a Gaussian of ``alias_blur`` pixels over 3×3 taps
    (5×5 for a radius above 8), as the original anti-aliases it."""
    half = 1 if radius <= 8 else 2
    r = max(1, math.ceil(radius)) + half
    t = torch.arange(-r, r + 1, dtype=torch.float32)
    disk = ((t[:, None] ** 2 + t[None, :] ** 2) <= radius**2).float()
    disk /= disk.sum()
    g = gaussian_kernel1d(alias_blur, radius=half)
    if g.numel() > 1:
        disk = F.conv2d(disk[None, None], (g[:, None] * g[None, :])[None, None], padding=half)[0, 0]
    return disk / disk.sum()


def pixel_grid(x: Tensor) -> tuple[Tensor, Tensor]:
    """Column and row coordinates (H×W each) of ``x``'s pixel centres."""
    h, w = x.shape[-2], x.shape[-1]
    rows = torch.arange(h, device=x.device, dtype=torch.float32)
    cols = torch.arange(w, device=x.device, dtype=torch.float32)
    return cols[None, :].expand(h, w), rows[:, None].expand(h, w)


def sample_at(x: Tensor, px: Tensor, py: Tensor, padding: str = "border") -> Tensor:
    """Bilinear samples of ``x`` at column ``px`` and row ``py`` (N×H'×W' pixel coordinates, pixel
    centres at integers); outside the image as ``padding`` says (border, reflection, zeros)."""
    h, w = x.shape[-2], x.shape[-1]
    grid = torch.stack([(2 * px + 1) / w - 1, (2 * py + 1) / h - 1], dim=-1)
    return F.grid_sample(x, grid.to(x.dtype), mode="bilinear", padding_mode=padding, align_corners=False)


def motion_blur(x: Tensor, radius: float, sigma: float, angle_deg: Tensor) -> Tensor:
    """One-sided motion blur: each pixel becomes Σᵢ wᵢ·x(p + i·u) / Σᵢ wᵢ over i = 0…⌈radius⌉, with
    wᵢ = exp(−i²/2σ²) and u the unit vector at ``angle_deg`` (one angle per sample, degrees): the
    Gaussian-weighted streak of ImageMagick's motion blur, ``radius`` pixels long. Edges repeat the
    border."""
    cols, rows = pixel_grid(x)
    a = torch.deg2rad(angle_deg.to(torch.float32))[:, None, None]
    ux, uy = torch.cos(a), -torch.sin(a)
    weights = [math.exp(-(i**2) / (2 * sigma**2)) for i in range(max(1, math.ceil(radius)) + 1)]
    out = torch.zeros_like(x)
    for i, weight in enumerate(weights):
        out = out + weight * sample_at(x, cols + i * ux, rows + i * uy)
    return out / sum(weights)


def cell_average(x: Tensor, cell: float) -> Tensor:
    """Pixelation: the image averaged over square cells ``cell`` pixels wide (from the top-left
    corner; the last cell of a row or column may be cut), each pixel then given the area-weighted
    mean of the cells it overlaps. With ``side / cell`` a whole number this is the exact box-filter
    down- and up-sampling of PIL's BOX resize when the ratio is whole."""
    return torch.einsum(
        "hi,ncij,wj->nchw", _cell_projection(x.shape[-2], cell, x), x, _cell_projection(x.shape[-1], cell, x)
    )


def _cell_projection(size: int, cell: float, like: Tensor) -> Tensor:
    """size×size: averaging over cells of width ``cell``, then reading each pixel back (areas)."""
    cells = math.ceil(size / cell - 1e-9)
    lo = torch.arange(cells, dtype=torch.float64)[:, None] * cell
    hi = (lo + cell).clamp(max=size)
    j = torch.arange(size, dtype=torch.float64)[None, :]
    overlap = (torch.minimum(hi, j + 1) - torch.maximum(lo, j)).clamp_min(0)  # cells × pixels
    down = overlap / overlap.sum(dim=1, keepdim=True)
    up = overlap.T  # each pixel's share in each cell (rows sum to 1)
    return (up @ down).to(device=like.device, dtype=like.dtype)


def zoom(x: Tensor, factor: float) -> Tensor:
    """``x`` enlarged ``factor`` times about its centre and cropped to its size (bilinear)."""
    cols, rows = pixel_grid(x)
    cy, cx = (x.shape[-2] - 1) / 2, (x.shape[-1] - 1) / 2
    px = (cx + (cols - cx) / factor).expand(x.shape[0], -1, -1)
    py = (cy + (rows - cy) / factor).expand(x.shape[0], -1, -1)
    return sample_at(x, px, py)


def plasma_fractal(draws, height: int, width: int, decay: float) -> Tensor:
    """N×height×width height maps in [0, 1] by the diamond-square algorithm (a plasma fractal, as the
    fog of Hendrycks & Dietterich): the grid starts at 0; at each level, the centres of squares and
    then of diamonds get the mean of their four corners plus noise uniform in ±w², and w (100 at the
    first level) is divided by ``decay`` after each level; larger ``decay``: smoother maps.
    The maps are made on a square whose side is the power of two at or above the larger side, then
    cropped. ``draws`` is a
    :class:`~advgrad.corruptions.draws.SampleDraws`: the noise of each map is its sample's."""
    side = 1 << max(1, math.ceil(math.log2(max(height, width, 2))))
    n = len(draws.generators)
    grid = torch.zeros(n, side, side, device=draws.device)
    step, wibble = side, 100.0
    while step >= 2:
        half = step // 2
        m = side // step

        def noisy(total: Tensor, m: int = m, wibble: float = wibble) -> Tensor:
            return total / 4 + wibble * draws.uniform(-wibble, wibble, m, m)

        corners = grid[:, 0::step, 0::step]
        squares = corners + corners.roll(-1, dims=1)
        squares = squares + squares.roll(-1, dims=2)
        grid[:, half::step, half::step] = noisy(squares)
        centres = grid[:, half::step, half::step]
        corners = grid[:, 0::step, 0::step]
        grid[:, 0::step, half::step] = noisy(centres + centres.roll(1, dims=1) + corners + corners.roll(-1, dims=2))
        grid[:, half::step, 0::step] = noisy(centres + centres.roll(1, dims=2) + corners + corners.roll(-1, dims=1))
        step //= 2
        wibble /= decay
    grid = grid[:, :height, :width]
    low = grid.amin(dim=(1, 2), keepdim=True)
    high = grid.amax(dim=(1, 2), keepdim=True)
    return (grid - low) / (high - low).clamp_min(1e-12)


def grayscale(x: Tensor) -> Tensor:
    """N×1×H×W luma: the channel itself for one channel, 0.299 R + 0.587 G + 0.114 B for three
    (ITU-R BT.601, as OpenCV's RGB→gray), the channel mean otherwise."""
    if x.shape[1] == 1:
        return x
    if x.shape[1] == 3:
        w = torch.tensor([0.299, 0.587, 0.114], device=x.device, dtype=x.dtype)
        return (x * w[None, :, None, None]).sum(dim=1, keepdim=True)
    return x.mean(dim=1, keepdim=True)
