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

from advgrad.attacks import FGSMParams, PGDParams, get_attack, run_attack
from advgrad.core.gradient import frozen
from advgrad.core.threat import ThreatModel
from advgrad.train.staps import connect, expand, head_margins, latent_attack, split_model
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


def _ce_at(step: Step, x_adv: Tensor) -> tuple[Tensor, Tensor]:
    logits = step.forward(x_adv)
    return F.cross_entropy(logits.float(), step.y, reduction="none"), logits


def _fgsm_point(step: Step, *, random_start: bool) -> Tensor:
    """One signed-gradient step of ``step_size`` (default ε) from x or from a uniform point of the
    ε-ball, through :func:`run_attack` (projected onto the ball and [0, 1])."""
    params = FGSMParams(step_size=step.config.step_size, random_start=random_start)
    return run_attack(
        get_attack("fgsm"), step.module, step.x, step.y, threat=_threat(step), params=params, generator=step.generator
    )


def fgsm_loss(step: Step) -> tuple[Tensor, Tensor]:
    """Goodfellow et al. (ICLR 2015): CE at the FGSM point x + ε·sign(∇ₓCE) (single-step training
    that is prone to catastrophic overfitting at larger ε)."""
    return _ce_at(step, _fgsm_point(step, random_start=False))


def fgsm_rs_loss(step: Step) -> tuple[Tensor, Tensor]:
    """Wong, Rice & Kolter (ICLR 2020), "Fast is better than free": FGSM from a uniform random point
    of the ε-ball, step α = 1.25·ε (the recipe's), projected back onto the ball."""
    return _ce_at(step, _fgsm_point(step, random_start=True))


def n_fgsm_loss(step: Step) -> tuple[Tensor, Tensor]:
    """de Jorge et al. (NeurIPS 2022), N-FGSM: x' = x + η + α·sign(∇ₓCE(x + η)) with η uniform in
    the ball of radius ``noise_radius``·ε (2 in the paper) and α = ε, not projected back onto the
    ε-ball (only onto [0, 1]): the stronger noise, not a clipped step, avoids the collapse."""
    c, threat = step.config, _threat(step)
    size = c.step_size if c.step_size is not None else step.eps
    start = threat.geometry.random_point(step.x.shape, c.noise_radius * step.eps, step.generator, step.x.dtype)
    x_noisy = (step.x + start.to(step.x.device)).clamp(threat.lower, threat.upper)
    with frozen(step.module), torch.enable_grad():
        x_var = x_noisy.detach().requires_grad_(True)
        loss = F.cross_entropy(step.module(x_var).float(), step.y, reduction="sum")
        (grad,) = torch.autograd.grad(loss, x_var)
    direction = threat.geometry.ascent_direction(grad, x_noisy, threat.lower, threat.upper)
    x_adv = (x_noisy + size * direction).clamp(threat.lower, threat.upper)
    return _ce_at(step, x_adv.detach())


def _input_gradient(step: Step, x: Tensor) -> Tensor:
    """∇ₓ CE(f(x), y) per sample, kept in the graph of the weights (for GradAlign's second derivative)."""
    x_var = x.detach().requires_grad_(True)
    loss = F.cross_entropy(step.forward(x_var).float(), step.y, reduction="sum")
    (grad,) = torch.autograd.grad(loss, x_var, create_graph=True)
    return grad.flatten(1)


def gradalign_loss(step: Step) -> tuple[Tensor, Tensor]:
    """Andriushchenko & Flammarion (NeurIPS 2020), GradAlign: CE at the FGSM point plus
    λ·(1 − cos(∇ₓCE(x), ∇ₓCE(x + η))), η uniform in the ε-ball; the regulariser keeps the loss
    locally linear, which is what single-step training needs not to collapse (λ = ``lam``)."""
    loss, logits = _ce_at(step, _fgsm_point(step, random_start=False))
    if step.eps == 0:
        return loss, logits
    threat = _threat(step)
    eta = threat.geometry.random_point(step.x.shape, step.eps, step.generator, step.x.dtype).to(step.x.device)
    g_clean = _input_gradient(step, step.x)
    g_noisy = _input_gradient(step, (step.x + eta).clamp(threat.lower, threat.upper))
    cosine = F.cosine_similarity(g_clean, g_noisy, dim=1, eps=1e-12)
    return loss + step.config.lam * (1 - cosine), logits


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


def _ibp_ce(step: Step, centre: Tensor, radius: float) -> Tensor:
    """CE(−m, y) with m the IBP margin lower bounds over the ball of ``radius`` around ``centre``."""
    low = step.bounds.margin_lower(centre, step.y, radius, norm=step.config.norm, method="ibp")
    return F.cross_entropy(worst_case_logits(low.float(), step.y), step.y, reduction="none")


def mtl_ibp_loss(step: Step) -> tuple[Tensor, Tensor]:
    """De Palma et al. (ICLR 2024), MTL-IBP: (1 − α)·CE(f(x'), y) + α·CE(−m_IBP, y), x' an
    adversarial example of ``steps`` PGD steps (1 in the recipe: FGSM from a random start) and α =
    ``alpha``: a convex combination of a lower and an upper bound of the robust loss."""
    if step.eps == 0:
        return standard_loss(step)
    c = step.config
    params = PGDParams(steps=c.steps, step_size=c.step_size, random_start=True, restarts=1)
    x_adv = run_attack(
        get_attack("pgd"), step.module, step.x, step.y, threat=_threat(step), params=params, generator=step.generator
    )
    adv, logits = _ce_at(step, x_adv)
    return (1 - c.alpha) * adv + c.alpha * _ibp_ce(step, step.x, step.eps), logits


def sabr_loss(step: Step) -> tuple[Tensor, Tensor]:
    """Müller et al. (ICLR 2023), SABR: the IBP loss over a small box of radius λ·ε (λ = ``lam``)
    centred at a PGD adversarial example moved into the ball of radius (1 − λ)·ε around x, so
    that the box lies inside the ε-ball. The loss bounds no point of the ball but that box (it is not
    an upper bound of the robust loss); it is far less loose than IBP over the whole ball, which is
    what lets the network stay accurate. Certify the result with ``advgrad certify``."""
    clean = step.forward(step.x)
    if step.eps == 0:
        return F.cross_entropy(clean.float(), step.y, reduction="none"), clean
    return _ibp_ce(step, _small_box_centre(step), step.config.lam * step.eps), clean


def _small_box_centre(step: Step) -> Tensor:
    """SABR's box centre: a PGD adversarial example moved into the ball of radius (1 − λ)·ε around x."""
    c = step.config
    params = PGDParams(steps=c.steps, step_size=c.step_size, random_start=True, restarts=1)
    x_adv = run_attack(
        get_attack("pgd"), step.module, step.x, step.y, threat=_threat(step), params=params, generator=step.generator
    )
    return ThreatModel(c.norm, (1 - c.lam) * step.eps).clip(x_adv, step.x).detach()


def staps_loss(step: Step) -> tuple[Tensor, Tensor]:
    """Mao, Müller, Fischer & Vechev (NeurIPS 2023), STAPS: SABR's small box, bounded by IBP through
    the feature extractor only (``step.bounds`` bounds it); in the latent box [l, u] PGD on the head
    finds, for each class j, a point z_j of small margin h(z_j)_y − h(z_j)_j; L_TAPS is CE of the
    worst-case logits those margins give, its gradient sent to l and u by TAPS's connector
    (:mod:`advgrad.train.staps`). The loss is L_TAPS · L_IBP, L_IBP the IBP loss over the same box and
    L_TAPS's gradient expanded 5-fold, as the paper trains. Like SABR's, it is not an upper bound of
    the robust loss."""
    clean = step.forward(step.x)
    if step.eps == 0:
        return F.cross_entropy(clean.float(), step.y, reduction="none"), clean
    c, classes = step.config, clean.shape[1]
    _, head = split_model(step.module)
    centre, radius = _small_box_centre(step), c.lam * step.eps
    low, high = step.bounds.box(centre, radius, norm=c.norm)
    z = latent_attack(head, low, high, step.y, classes, c.steps, step.generator)
    z = connect(z, low.repeat_interleave(classes, dim=0), high.repeat_interleave(classes, dim=0))
    margins = head_margins(head, z, step.y, classes)
    taps = F.cross_entropy(worst_case_logits(margins, step.y), step.y, reduction="none")
    return expand(taps) * _ibp_ce(step, centre, radius), clean


LOSSES: dict[str, Callable[[Step], tuple[Tensor, Tensor]]] = {
    "standard": standard_loss,
    "pgd": pgd_loss,
    "trades": trades_loss,
    "noise": noise_loss,
    "ibp": certified_loss,
    "crown-ibp": certified_loss,
    "fgsm": fgsm_loss,
    "fgsm-rs": fgsm_rs_loss,
    "n-fgsm": n_fgsm_loss,
    "gradalign": gradalign_loss,
    "mtl-ibp": mtl_ibp_loss,
    "sabr": sabr_loss,
    "staps": staps_loss,
}
