"""Shared helpers for the benchmark scripts: models of known shape and a fair timer."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from advgrad.io.data.sources import Batch, DataSource


def cifar_convnet(width: int = 32, classes: int = 10) -> nn.Module:
    """A small VGG-style convnet for 3×32×32 inputs (what attack papers call a CIFAR model)."""
    c = width
    return nn.Sequential(
        nn.Conv2d(3, c, 3, padding=1),
        nn.BatchNorm2d(c),
        nn.ReLU(),
        nn.Conv2d(c, c, 3, padding=1),
        nn.BatchNorm2d(c),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(c, 2 * c, 3, padding=1),
        nn.BatchNorm2d(2 * c),
        nn.ReLU(),
        nn.Conv2d(2 * c, 2 * c, 3, padding=1),
        nn.BatchNorm2d(2 * c),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(2 * c, 4 * c, 3, padding=1),
        nn.BatchNorm2d(4 * c),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4 * c, classes),
    ).eval()


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def interleaved_medians(fns: dict[str, Callable[[], object]], repeats: int, device: torch.device) -> dict[str, float]:
    """Median wall time of each function, running them in turn ``repeats`` times so that
    machine noise (other processes, frequency changes) hits every candidate alike."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    for fn in fns.values():  # warm-up
        fn()
    for _ in range(repeats):
        for name, fn in fns.items():
            sync(device)
            t0 = time.perf_counter()
            fn()
            sync(device)
            times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(ts) for name, ts in times.items()}


def cifar_resnet18(classes: int = 10) -> nn.Module:
    """torchvision's ResNet-18 adapted to 3×32×32 inputs as CIFAR papers do: a 3×3 stride-1 stem
    and no max-pool, so the last stage still sees 4×4 feature maps."""
    from torchvision.models import resnet18

    model = resnet18(num_classes=classes)
    model.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
    model.maxpool = nn.Identity()
    return model.eval()


def template_images(
    n: int, templates: torch.Tensor, noise: float, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` labelled images: class c is ``templates[c]`` blended with uniform noise (weight ``noise``)."""
    y = torch.randint(0, templates.shape[0], (n,), generator=generator)
    x = (1 - noise) * templates[y] + noise * torch.rand((n, *templates.shape[1:]), generator=generator)
    return x.clamp(0, 1), y


def fitted_resnet18(device: torch.device, noise: float = 0.6, seed: int = 0, fit_samples: int = 512):
    """A CIFAR-shaped ResNet-18 that classifies a synthetic task well, in seconds on a CPU.

    Training a ResNet-18 is out of reach for a benchmark, and on an untrained net early exit means
    nothing (its clean accuracy is chance). So: ten smooth random colour templates, images that
    blend one with uniform noise; random convolutional weights, batch-norm statistics calibrated on
    such images, and the final linear layer fitted (logistic regression on the 512 features).
    Returns ``(model, templates)``; draw inputs with :func:`template_images`.
    """
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = cifar_resnet18()
    templates = F.interpolate(torch.rand(10, 3, 4, 4, generator=gen), size=32, mode="bilinear", align_corners=False)
    x, y = template_images(fit_samples, templates, noise, gen)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.momentum = None  # cumulative averages over the calibration batches
    model.train()
    with torch.no_grad():
        for chunk in x.split(128):
            model(chunk)
    head, model.fc = model.fc, nn.Identity()
    model.eval()
    with torch.no_grad():
        features = torch.cat([model(chunk) for chunk in x.split(128)])
    mean, std = features.mean(0), features.std(0).clamp_min(1e-6)
    z = (features - mean) / std
    weight = torch.zeros(10, z.shape[1], requires_grad=True)
    bias = torch.zeros(10, requires_grad=True)
    optimizer = torch.optim.Adam([weight, bias], lr=0.05)
    for _ in range(300):
        optimizer.zero_grad()
        loss = F.cross_entropy(z @ weight.T + bias, y) + 1e-3 * weight.square().sum()
        loss.backward()
        optimizer.step()
    with torch.no_grad():  # fold the standardisation into the linear head
        head.weight.copy_(weight / std)
        head.bias.copy_(bias - (weight / std) @ mean)
    model.fc = head
    return model.to(device).eval(), templates


class CycledSource(DataSource):
    """Another source's samples repeated to ``n`` (sample ``i`` is ``base``'s ``i mod len(base)``),
    fetched batch by batch: arbitrarily long runs with no data held beyond ``base``, for measuring
    how a run scales with its number of samples (bench_memory.py, and tests/test_memory.py through helpers)."""

    def __init__(self, base: DataSource, n: int):
        if n < 0 or len(base) == 0:
            raise ValueError(f"cannot cycle {len(base)} samples to {n}")
        self.base, self.n = base, n
        self.name, self.description = f"{base.name}-cycled", f"{base.description}, cycled to {n} samples"
        self.classes = base.classes

    def __len__(self) -> int:
        return self.n

    def fetch(self, indices: Tensor) -> Batch:
        return self.base.fetch(indices % len(self.base))
