"""Common corruptions: the 15 of Hendrycks & Dietterich, "Benchmarking Neural Network Robustness
to Common Corruptions and Perturbations" (ICLR 2019), each at severities 1 to 5, on batched
N×C×H×W tensors in [0, 1] (1 or 3 channels), on the tensors' device.

Each corruption is one function ``f(x, severity, draws) -> x_corrupted`` in the module of its
group (:mod:`~advgrad.corruptions.noise`, :mod:`~advgrad.corruptions.blur`,
:mod:`~advgrad.corruptions.weather`, :mod:`~advgrad.corruptions.digital`), registered in the one
list below. :func:`corrupt` is the way to call them: it seeds each sample's randomness from the
run's seed, the corruption and the sample's index (:mod:`advgrad.corruptions.draws`), so results
do not depend on the batch size, on resume or on the number of processes.

Example::

    from advgrad.corruptions import corrupt, list_corruptions
    x_fog = corrupt(x, "fog", 3, seed=0)        # x: N×C×H×W in [0, 1]
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from advgrad.core.errors import UsageError
from advgrad.corruptions import blur, digital, noise, weather
from advgrad.corruptions.draws import SampleDraws

SEVERITIES = (1, 2, 3, 4, 5)
ALL = "all"


@dataclass(frozen=True)
class Corruption:
    """A registered corruption: its name, group, function and a line saying what it does."""

    name: str
    group: str
    function: Callable[[Tensor, int, SampleDraws], Tensor]
    summary: str


_REGISTRY: dict[str, Corruption] = {
    c.name: c
    for c in (
        Corruption("gaussian_noise", "noise", noise.gaussian_noise, "additive Gaussian noise"),
        Corruption("shot_noise", "noise", noise.shot_noise, "Poisson (photon) noise"),
        Corruption("impulse_noise", "noise", noise.impulse_noise, "salt-and-pepper noise"),
        Corruption("defocus_blur", "blur", blur.defocus_blur, "blur by a disk (out of focus)"),
        Corruption("glass_blur", "blur", blur.glass_blur, "blur with pixels locally scrambled (frosted glass)"),
        Corruption("motion_blur", "blur", blur.motion_blur, "blur along a random direction"),
        Corruption("zoom_blur", "blur", blur.zoom_blur, "mean of zooms towards the centre"),
        Corruption("snow", "weather", weather.snow, "falling snow flakes"),
        Corruption("frost", "weather", weather.frost, "frost on a window (procedural texture)"),
        Corruption("fog", "weather", weather.fog, "haze from a plasma fractal"),
        Corruption("brightness", "weather", weather.brightness, "brighter (HSV value raised)"),
        Corruption("contrast", "digital", digital.contrast, "less contrast"),
        Corruption("elastic_transform", "digital", digital.elastic_transform, "random affine and elastic warp"),
        Corruption("pixelate", "digital", digital.pixelate, "coarser pixels"),
        Corruption("jpeg_compression", "digital", digital.jpeg_compression, "JPEG artefacts"),
    )
}


def list_corruptions() -> list[str]:
    """The registered corruptions' names, in the paper's order."""
    return list(_REGISTRY)


def get_corruption(name: str) -> Corruption:
    """The corruption called ``name``; an unknown name is a :class:`UsageError` listing the valid ones."""
    key = str(name).strip().lower().replace("-", "_")
    if key not in _REGISTRY:
        raise UsageError(
            f"unknown corruption {name!r}; choose {ALL} or some of {', '.join(_REGISTRY)}", params="corruptions"
        )
    return _REGISTRY[key]


def parse_corruptions(text: str | list[str] | None) -> list[str]:
    """``"all"`` or comma-separated names (also as a list) → registered names in the order given,
    without repeats; None or empty → []. An unknown name is a :class:`UsageError`."""
    if text is None:
        return []
    parts = [p.strip() for p in (text.split(",") if isinstance(text, str) else text) for p in str(p).split(",")]
    names: list[str] = []
    for part in parts:
        if not part:
            continue
        found = list(_REGISTRY) if part.lower() == ALL else [get_corruption(part).name]
        names += [n for n in found if n not in names]
    if not names and isinstance(text, str) and text.strip():
        raise UsageError(f"give {ALL} or corruption names ({', '.join(_REGISTRY)}), got {text!r}", params="corruptions")
    return names


def check_severity(severity: int) -> int:
    if isinstance(severity, bool) or int(severity) != severity or severity not in SEVERITIES:
        raise UsageError(f"`severity` must be one of 1, 2, 3, 4, 5, got {severity!r}", params="severity")
    return int(severity)


def corrupt(x: Tensor, name: str, severity: int, *, seed: int = 0, first: int = 0) -> Tensor:
    """``x`` (N×C×H×W in [0, 1], any device) under corruption ``name`` at ``severity`` (1…5).

    Row ``k`` is sample ``first + k`` of the run: its randomness comes from (``seed``, ``name``,
    ``first + k``) alone, and is the same at every severity. Returns a new tensor of ``x``'s dtype
    and device, in [0, 1]; ``x`` is not changed."""
    spec = get_corruption(name)
    severity = check_severity(severity)
    if x.dim() != 4:
        raise UsageError(f"corruptions take N×C×H×W images, got shape {tuple(x.shape)}", params="x")
    if x.shape[0] == 0:
        return x.clone()
    draws = SampleDraws(x.device, seed, spec.name, first, x.shape[0])
    with torch.no_grad():
        out = spec.function(x.detach().float(), severity, draws)
    return out.clamp(0, 1).to(x.dtype)


__all__ = [
    "ALL",
    "SEVERITIES",
    "Corruption",
    "check_severity",
    "corrupt",
    "get_corruption",
    "list_corruptions",
    "parse_corruptions",
]
