"""The loss of each training method, from advgrad's attacks and certified bounds.

Every method maps a batch to per-sample losses (N,) and the logits its accuracy is read from
(the adversarial, noisy or clean ones), through ``step.forward`` (the model being trained: a
DistributedDataParallel wrapper under torchrun). Attacks run on ``step.module`` (the bare model)
through :func:`advgrad.attacks.run_attack`, with frozen weights and in eval mode; randomness
comes only from ``step.generator``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from advgrad.attacks import PGDParams, get_attack, run_attack
from advgrad.core.gradient import frozen
from advgrad.core.threat import ThreatModel
from advgrad.train.train_config import TrainConfig

#: TRADES starts its inner maximisation at x + this · N(0, 1) (Zhang et al. 2019)
TRADES_START = 0.001


@dataclass
class Step:
    """One batch of training: the data, the schedule's values and where to get randomness."""

    forward: Callable[[Tensor], Tensor]
    module: nn.Module
    x: Tensor
    y: Tensor
    config: TrainConfig
    eps: float  # the ramped ε of this batch
    kappa: float  # weight of the clean loss (certified training)
    crown_weight: float  # weight of CROWN-IBP against IBP bounds (crown-ibp)
    generator: torch.Generator
    bounds: object | None = None  # TrainableBounds for certified training


def _threat(step: Step) -> ThreatModel:
    return ThreatModel(step.config.norm, step.eps)


def standard_loss(step: Step) -> tuple[Tensor, Tensor]:
    logits = step.forward(step.x)
    return F.cross_entropy(logits.float(), step.y, reduction="none"), logits


def pgd_loss(step: Step) -> tuple[Tensor, Tensor]:
    """Madry et al. (ICLR 2018): min_W E max_{δ ∈ B_ε} CE(f(x + δ), y), the inner max by PGD."""
    c = step.config
    params = PGDParams(steps=c.steps, step_size=c.step_size, random_start=True, restarts=1)
    x_adv = run_attack(
        get_attack("pgd"), step.module, step.x, step.y, threat=_threat(step), params=params, generator=step.generator
    )
    logits = step.forward(x_adv)
    return F.cross_entropy(logits.float(), step.y, reduction="none"), logits


def _kl(log_p_clean: Tensor, log_p_adv: Tensor) -> Tensor:
    """KL(p_clean ‖ p_adv) per sample."""
    return (log_p_clean.exp() * (log_p_clean - log_p_adv)).sum(dim=1)


def trades_example(step: Step, clean_logits: Tensor) -> Tensor:
    """argmax_{x' ∈ B_ε(x) ∩ [0,1]} KL(f(x) ‖ f(x')) by ``steps`` steepest-ascent steps from
    x + 0.001·N(0, 1), projected after each (Zhang et al. 2019, Algorithm 1)."""
    c, threat = step.config, _threat(step)
    size = c.step_size if c.step_size is not None else 2.5 * step.eps / c.steps
    log_p = F.log_softmax(clean_logits.detach().float(), dim=1)
    noise = torch.randn(step.x.shape, generator=step.generator, device=step.generator.device, dtype=step.x.dtype)
    x_adv = threat.clip(step.x + TRADES_START * noise.to(step.x.device), step.x)
    with frozen(step.module), torch.enable_grad():
        for _ in range(c.steps):
            x_var = x_adv.detach().requires_grad_(True)
            kl = _kl(log_p, F.log_softmax(step.module(x_var).float(), dim=1)).sum()
            (grad,) = torch.autograd.grad(kl, x_var)
            direction = threat.geometry.ascent_direction(grad, x_adv, threat.lower, threat.upper)
            x_adv = threat.clip(x_adv + size * direction, step.x)
    return threat.clip_exact(x_adv.detach(), step.x)


def trades_loss(step: Step) -> tuple[Tensor, Tensor]:
    """Zhang et al. (ICML 2019): CE(f(x), y) + β·KL(f(x) ‖ f(x')); with β = 0, exactly the
    standard loss (no adversarial example is computed)."""
    clean = step.forward(step.x)
    loss = F.cross_entropy(clean.float(), step.y, reduction="none")
    if step.config.beta == 0:
        return loss, clean
    x_adv = trades_example(step, clean)
    adv = step.forward(x_adv)
    robust = _kl(F.log_softmax(clean.float(), dim=1), F.log_softmax(adv.float(), dim=1))
    return loss + step.config.beta * robust, clean


def noise_loss(step: Step) -> tuple[Tensor, Tensor]:
    """Gaussian data augmentation for randomized smoothing (Cohen et al., ICML 2019): CE at
    x + N(0, σ²I), the noise not clipped to [0, 1] (as the smoothed classifier sees it)."""
    noise = torch.randn(step.x.shape, generator=step.generator, device=step.generator.device, dtype=step.x.dtype)
    logits = step.forward(step.x + step.config.sigma * noise.to(step.x.device))
    return F.cross_entropy(logits.float(), step.y, reduction="none"), logits


def worst_case_logits(margin_lower: Tensor, y: Tensor) -> Tensor:
    """−m with 0 at the label: the logits (up to a shift) of the worst case the bounds allow;
    CE of them is an upper bound of the CE at every point of the ball (Gowal et al. 2018)."""
    return (-margin_lower).scatter(1, y[:, None], 0.0)


def certified_loss(step: Step) -> tuple[Tensor, Tensor]:
    """κ·CE(f(x), y) + (1 − κ)·CE(−m, y) with m the margin lower bounds over the ε-ball: IBP
    (Gowal et al. 2018) or, for crown-ibp, a mix w·CROWN-IBP + (1 − w)·IBP (Zhang et al., ICLR 2020)."""
    clean = step.forward(step.x)
    loss = F.cross_entropy(clean.float(), step.y, reduction="none")
    if step.eps == 0 or step.kappa == 1:
        return loss, clean
    bounds = step.bounds
    low = bounds.margin_lower(step.x, step.y, step.eps, norm=step.config.norm, method="ibp")
    if step.config.method == "crown-ibp" and step.crown_weight > 0:
        crown = bounds.margin_lower(step.x, step.y, step.eps, norm=step.config.norm, method="crown-ibp")
        low = step.crown_weight * crown + (1 - step.crown_weight) * low
    robust = F.cross_entropy(worst_case_logits(low.float(), step.y), step.y, reduction="none")
    return step.kappa * loss + (1 - step.kappa) * robust, clean


LOSSES: dict[str, Callable[[Step], tuple[Tensor, Tensor]]] = {
    "standard": standard_loss,
    "pgd": pgd_loss,
    "trades": trades_loss,
    "noise": noise_loss,
    "ibp": certified_loss,
    "crown-ibp": certified_loss,
}
