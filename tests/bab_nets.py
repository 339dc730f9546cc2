"""Tiny ReLU networks and robustness properties near their decision boundary, for the tests of
α-CROWN and branch and bound against the MILP oracle (:mod:`milp_oracle`).

A property is (network, x, y, ε) with y the network's own prediction at x. ε is placed inside the
bracket of the sample's robust radius that two cheap methods give, the largest ε CROWN certifies
and the smallest ε projected gradient descent falsifies, so that verdicts come out mixed and many
properties need more than CROWN or an attack to decide.
"""

from __future__ import annotations

import torch
from torch import nn

from advgrad.bounds import BoundedModel


def _decisive(net: nn.Sequential) -> nn.Sequential:
    """The network in eval mode with its last layer scaled up: PyTorch's initialisation leaves logits
    that hardly differ, so margins would sit within rounding of the boundary."""
    with torch.no_grad():
        net[-1].weight.mul_(8.0)
        net[-1].bias.mul_(8.0)
    return net.eval()


def mlp(seed: int) -> tuple[nn.Sequential, tuple[int, ...]]:
    torch.manual_seed(seed)
    return _decisive(nn.Sequential(nn.Linear(4, 10), nn.ReLU(), nn.Linear(10, 10), nn.ReLU(), nn.Linear(10, 3))), (4,)


def cnn(seed: int) -> tuple[nn.Sequential, tuple[int, ...]]:
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Conv2d(1, 3, 3), nn.ReLU(), nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(16, 3))
    return _decisive(net), (1, 6, 6)


def pool_cnn(seed: int) -> tuple[nn.Sequential, tuple[int, ...]]:
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(8, 3))
    return _decisive(net), (1, 6, 6)


NETS = {"mlp": mlp, "cnn": cnn, "pool": pool_cnn}


def _pgd_fools(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, steps: int = 30) -> torch.Tensor:
    """bool (N,): L∞ projected gradient descent on z_y − max_{j≠y} z_j finds a misclassified point."""
    adv = x.clone()
    rows = torch.arange(len(y))
    fooled = torch.zeros(len(y), dtype=torch.bool)
    for _ in range(steps):
        adv.requires_grad_(True)
        z = model(adv)
        other = z.clone()
        other[rows, y] = -torch.inf
        (grad,) = torch.autograd.grad((z[rows, y] - other.amax(1)).sum(), adv)
        with torch.no_grad():
            adv = torch.minimum(torch.maximum(adv - 0.25 * eps * grad.sign(), x - eps), x + eps).clamp(0, 1)
            fooled |= model(adv).argmax(1) != y
    return fooled


#: the ε grid on which the radius brackets are read
GRID = [0.005 * 1.4**k for k in range(14)]


def properties(kind: str, seed: int, samples: int = 8) -> tuple[nn.Sequential, torch.Tensor, torch.Tensor, float]:
    """A network, ``samples`` inputs with their predicted labels and one ε for all of them: the median
    over the samples of the middle of [CROWN's certified radius, PGD's falsified radius], each read
    on :data:`GRID`."""
    net, shape = NETS[kind](seed)
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(samples, *shape, generator=gen)
    with torch.no_grad():
        y = net(x).argmax(1)
    bounded = BoundedModel(net, x[:1])
    crown = torch.zeros(samples)
    attack = torch.full((samples,), GRID[-1])
    for eps in GRID:
        ok = (bounded.margin_bounds(x, y, eps) > 0).all(1)
        crown = torch.where(ok, torch.tensor(eps), crown)
    for eps in reversed(GRID):
        attack = torch.where(_pgd_fools(net, x, y, eps), torch.tensor(eps), attack)
    return net, x, y, float(((crown + attack) / 2).median())
