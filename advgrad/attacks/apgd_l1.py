"""L1-APGD: Auto-PGD for the L1 ball ∩ the box, with a sparse step whose sparsity adapts.

Written from Croce & Hein, "Mind the box: l1-APGD for sparse adversarial attacks on image
classifiers" (ICML 2021), Section 3. :func:`advgrad.attacks.apgd.apgd` runs it for the L1 threat
model (``apgd-ce``, ``apgd-dlr``, ``apgd-t`` with ``--norm 1``).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from advgrad.attacks.iterative import RunOutput, gradient_of
from advgrad.core.geometry import expand, flat
from advgrad.core.losses import is_successful
from advgrad.core.threat import ThreatModel

# Iterations between two adaptations of the sparsity and the step size, as a share of the steps.
CHECK_EVERY = 0.04
# Initial share of the coordinates the step moves (the top 20% of |∇|).
INITIAL_SPARSITY = 0.2
# The step shrinks by this factor at a check where the iterate did not get sparser, down to ε/10.
STEP_DECAY = 1.5
MIN_STEP_FRACTION = 0.1
# A check "got sparser" when ‖x_best − x‖₀ fell below this share of its value at the previous check.
SPARSER = 0.95


def sparse_direction(grad: Tensor, share: Tensor) -> Tensor:
    """sign(g_i)/m on the coordinates whose |g_i| is at least the ⌊(1 − share)·d⌋-th smallest |g|
    (so about the top ``share`` of them, ties kept), 0 elsewhere; m is their number, so the
    direction has L1 norm 1. ``share`` is per sample, shape (N,)."""
    fl = flat(grad)
    d = fl.shape[1]
    position = ((1 - share) * d).long().clamp(0, d - 1)
    threshold = fl.abs().sort(dim=1).values.gather(1, position[:, None])
    signs = fl.sign() * (fl.abs() >= threshold)
    return (signs / (signs.abs().sum(dim=1, keepdim=True) + 1e-10)).reshape(grad.shape)


def apgd_l1_run(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    threat: ThreatModel,
    steps: int,
    loss: str,
    random_start: bool,
    loss_target: Tensor | None,
    goal_target: Tensor | None,
    generator: torch.Generator,
    early_stop: bool,
) -> RunOutput:
    """One start of L1-APGD. Returns (x_adv, success, value) as the L∞/L2 run does: per sample the
    highest-objective iterate that reached the goal if one did (value +∞), else the highest-objective
    iterate.

    x_{k+1} = P(x_k + η_k·s_k), s_k = sign(g)/‖sign(g)‖₁ on the top share k_t of |∇J(x_k)| (the
    sparse step), P the exact projection onto the L1 ball ∩ the box. η_0 = ε, k_0 = 20%. Every
    ⌈4% of the steps⌉ iterations the sparsity is set to ‖x_best − x‖₀/(1.5·d); where that count
    dropped below 95% of its value at the previous check the step goes back to ε and the iterate
    restarts from x_best, elsewhere η is divided by 1.5 (never below ε/10). No momentum."""
    n = x.shape[0]
    d = flat(x).shape[1]
    eps = threat.eps
    x0 = x.clone()
    if random_start:
        noise = torch.randn(x.shape, generator=generator, device=generator.device, dtype=x.dtype).to(x.device)
        x0 = threat.clip(x + noise, x)
    grad, logits, f0 = gradient_of(model, x0, y, loss_target, loss)
    found = is_successful(logits, y, goal_target)
    x_found, f_found = x0.clone(), torch.where(found, f0, torch.full_like(f0, float("-inf")))
    out, out_value = x0.clone(), f0.clone()
    index = torch.arange(n, device=x.device)
    xs, ys = x, y
    lt, gt = loss_target, goal_target
    x_cur, x_max, f_max, grad_max = x0, x0, f0, grad
    eta = torch.full((n,), float(eps), device=x.device, dtype=x.dtype)
    share = torch.full((n,), INITIAL_SPARSITY, device=x.device, dtype=x.dtype)
    sp_old = torch.full((n,), float(d), device=x.device, dtype=x.dtype)
    every = max(int(CHECK_EVERY * steps), 1)

    def keep(mask: Tensor) -> None:
        nonlocal index, xs, ys, lt, gt, x_cur, x_max, f_max, grad_max, grad, eta, share, sp_old
        index, xs, ys, x_cur, x_max, f_max, grad_max, grad, eta, share, sp_old = (
            t[mask] for t in (index, xs, ys, x_cur, x_max, f_max, grad_max, grad, eta, share, sp_old)
        )
        lt = None if lt is None else lt[mask]
        gt = None if gt is None else gt[mask]

    if early_stop:
        keep(~found)
    for k in range(steps):
        if index.numel() == 0:
            break
        x_cur = threat.clip(x_cur + expand(eta, x_cur) * sparse_direction(grad, share), xs)
        grad, logits, f_new = gradient_of(model, x_cur, ys, lt, loss)
        hit = is_successful(logits, ys, gt)
        better_hit = hit & (f_new > f_found[index])
        x_found[index[better_hit]] = x_cur[better_hit]
        f_found[index[better_hit]] = f_new[better_hit]
        found[index[hit]] = True
        improved = f_new > f_max
        x_max = torch.where(expand(improved, x_cur), x_cur, x_max)
        grad_max = torch.where(expand(improved, grad), grad, grad_max)
        f_max = torch.where(improved, f_new, f_max)
        if (k + 1) % every == 0:
            sparsity = (flat(x_max - xs) != 0).sum(dim=1).to(x.dtype)
            sparser = sparsity / sp_old.clamp_min(1) < SPARSER
            share = sparsity / d / STEP_DECAY
            eta = torch.where(sparser, torch.full_like(eta, eps), eta / STEP_DECAY).clamp(eps * MIN_STEP_FRACTION, eps)
            sp_old = sparsity
            x_cur = torch.where(expand(sparser, x_cur), x_max, x_cur)
            grad = torch.where(expand(sparser, grad), grad_max, grad)
        if early_stop and bool(hit.any()):
            keep(~hit)
    out[index] = x_max
    out_value[index] = f_max
    out[found] = x_found[found]
    out_value[found] = math.inf
    return out, found, out_value
