"""Small models and data for the training tests (importable as ``train_models:NAME`` by the CLI)."""

from __future__ import annotations

import torch
from torch import Tensor, nn


def mlp(inputs: int = 2, hidden: int = 16, classes: int = 2, dropout: float = 0.0) -> nn.Module:
    """Flatten → Linear → ReLU (→ Dropout) → Linear."""
    layers: list[nn.Module] = [nn.Flatten(), nn.Linear(inputs, hidden), nn.ReLU()]
    if dropout:
        layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers, nn.Linear(hidden, classes))


def margin_problem(n: int, seed: int) -> tuple[Tensor, Tensor]:
    """Two classes in [0, 1]² (as 1×1×2 images) separated by the line x₁ = 0.5 with an L∞ margin
    of 0.095 on each side: half the samples in tight clusters at (0.4, 0.5) and (0.6, 0.5), half far
    away at (0.05, 0.95) and (0.95, 0.05). The far clusters tilt the classes' mean difference to
    about 40° from the x₁ axis, so the boundary of standard training (which follows it) passes
    within about 0.06 of the near clusters in L∞; x₁ = 0.5 keeps every sample 0.095 away."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 2
    far = (torch.arange(n) // 2) % 2 == 1
    c1 = torch.where(far[:, None], torch.tensor([0.95, 0.05]), torch.tensor([0.60, 0.5]))
    c0 = torch.where(far[:, None], torch.tensor([0.05, 0.95]), torch.tensor([0.40, 0.5]))
    centre = torch.where(y[:, None] == 1, c1, c0)
    return (centre + 0.01 * (torch.rand(n, 2, generator=g) - 0.5)).reshape(n, 1, 1, 2), y
