"""The one gradient loop behind FGSM, BIM, PGD and MI-FGSM.

Every attack here iterates x_{t+1} = Π(x_t + α · d(g_t)), where g_t = ∇ₓJ(x_t) (or a momentum
average of it), d is the steepest-ascent direction of the threat model's norm (sign(g) for L∞,
g/‖g‖₂ for L2, a sparse signed top-k for L1) and Π projects onto the ε-ball around x and the box.
An attack supplies only its configuration: number of steps, step size, start and momentum.

With ``early_stop`` a sample leaves the batch as soon as an iterate reaches the goal
(misclassified, or classified as the target); the iterate that reached it is returned. Without
it the full step budget is spent on every sample and the loop never synchronises with the host.

An iterate at which the model's logits are NaN or infinite is never a success: the sample goes
back to its last iterate with finite logits (the clean input if none) and stops moving, and a
non-finite gradient component counts as zero.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from advgrad.attacks.base import AttackParams, prepare_params
from advgrad.core.geometry import L1_SPARSITY, TINY, expand
from advgrad.core.geometry import movable as box_movable
from advgrad.core.gradient import expectation, frozen
from advgrad.core.losses import finite_rows, get_loss, is_successful
from advgrad.core.threat import ThreatModel


@dataclass(frozen=True)
class LoopConfig:
    """How the shared loop runs: ``steps`` gradient steps of size ``step_size`` from a random or
    zero start, ``restarts`` times (best result per sample kept), with optional momentum μ; each
    gradient averages ``eot`` stochastic passes (expectation over transformation)."""

    steps: int
    step_size: float
    random_start: bool = True
    restarts: int = 1
    momentum: float | None = None
    loss: str = "ce"
    l1_sparsity: float = L1_SPARSITY
    eot: int = 1  # forward and backward passes averaged into each gradient (randomized models)


@dataclass
class LoopParams(AttackParams):
    """Parameters of an attack that runs on the shared loop (FGSM, BIM, MI-FGSM, PGD): its
    :class:`LoopConfig` takes every field of the same name these parameters have, and the values an
    attack fixes in ``loop_fixed`` (FGSM: one step; BIM and MI-FGSM: no random start)."""

    loop_fixed: ClassVar[dict[str, Any]] = {}

    def loop_config(self) -> LoopConfig:
        """How the shared loop runs with these (resolved) parameters."""
        own = {f.name: getattr(self, f.name) for f in fields(LoopConfig) if hasattr(self, f.name)}
        return LoopConfig(**{**own, **self.loop_fixed})


@dataclass
class LoopResult:
    """Adversarial inputs and whether each reached the goal (None when it was not evaluated)."""

    x_adv: Tensor
    success: Tensor | None


def fresh_generator(device: torch.device) -> torch.Generator:
    """A generator seeded from the OS, so an attack without one never touches the global RNG."""
    gen = torch.Generator(device=device)
    gen.seed()
    return gen


def random_start(shape: torch.Size, threat: ThreatModel, generator: torch.Generator, dtype: torch.dtype) -> Tensor:
    """A perturbation drawn uniformly from the ε-ball of the threat model's norm
    (:meth:`advgrad.core.geometry.NormGeometry.random_point`)."""
    return threat.geometry.random_point(shape, threat.eps, generator, dtype)


def steepest_direction(grad: Tensor, threat: ThreatModel, sparsity: float = L1_SPARSITY) -> Tensor:
    """The unit-norm direction the loop steps along for a gradient ``grad``: sign(g) for L∞,
    g/‖g‖₂ for L2, for L1 sign(g_k)/k on the top (1 − ``sparsity``) share of the coordinates
    (:meth:`advgrad.core.geometry.NormGeometry.ascent_direction`)."""
    return threat.geometry.ascent_direction(grad, sparsity=sparsity)


def _at_least_float32(logits: Tensor) -> Tensor:
    """Half-precision logits are lifted to float32 for the loss; float64 stays float64 (a float32
    softmax underflows on confident samples and the gradient vanishes)."""
    return logits if logits.dtype == torch.float64 else logits.float()


def movable(x_adv: Tensor, grad: Tensor, threat: ThreatModel) -> Tensor:
    """1 where an ascent step along ``grad`` can move the coordinate, 0 where the box stops it.

    The sparse L1 direction spends its whole step on a few coordinates; a coordinate already at
    the box edge in the direction of its gradient would take the step and lose it to the clip.
    """
    return box_movable(x_adv, grad, threat.lower, threat.upper)


def gradient_of(
    model: nn.Module, x_adv: Tensor, y: Tensor, target: Tensor | None, loss: str, eot: int = 1
) -> tuple[Tensor, Tensor, Tensor]:
    """(∇ₓJ, logits, J) at ``x_adv`` for the objective ``loss``; the caller enables grad. With
    ``eot`` > 1 each is the mean over that many forward and backward passes (expectation over
    transformation, :func:`advgrad.core.gradient.expectation`): the gradient of E[J] on a randomized
    model, and the mean logits, by which early stop judges success."""
    objective = get_loss(loss)
    x_var = x_adv.detach().requires_grad_(True)

    def draw() -> tuple[Tensor, Tensor, Tensor]:
        logits = model(x_var)
        value = objective(_at_least_float32(logits), y, target)
        (grad,) = torch.autograd.grad(value.sum(), x_var)
        return grad, logits.detach(), value.detach()

    grad, logits, value = expectation(eot, draw)
    return grad, logits, value


class _Batch:
    """The samples still in play, compacted as they reach the goal (early stop)."""

    def __init__(self, x: Tensor, y: Tensor, target: Tensor | None, x_adv: Tensor):
        self.index = torch.arange(x.shape[0], device=x.device)
        self.x, self.y, self.target, self.x_adv = x, y, target, x_adv
        self.velocity: Tensor | None = None  # momentum buffer, created on first use
        self.last_finite = x.clone()  # per sample, the last iterate at which the logits were finite
        self.halted = torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)  # non-finite logits met

    def halt_non_finite(self, finite: Tensor) -> None:
        """Samples whose logits at the current iterate are not all finite go back to their last
        iterate with finite logits and stop there; the others record the current iterate as such."""
        self.halted = self.halted | ~finite
        self.x_adv = torch.where(expand(finite, self.x_adv), self.x_adv, self.last_finite)
        self.last_finite = self.x_adv

    def keep(self, mask: Tensor) -> None:
        self.index, self.x, self.y, self.x_adv, self.last_finite, self.halted = (
            t[mask] for t in (self.index, self.x, self.y, self.x_adv, self.last_finite, self.halted)
        )
        if self.velocity is not None:
            self.velocity = self.velocity[mask]
        if self.target is not None:
            self.target = self.target[mask]


def _one_run(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    threat: ThreatModel,
    config: LoopConfig,
    target: Tensor | None,
    generator: torch.Generator,
    early_stop: bool,
    score: bool,
) -> tuple[Tensor, Tensor | None, Tensor | None]:
    """One start of the loop. Returns (x_adv, success, objective at x_adv); the last two only when
    ``score`` or ``early_stop`` asks for a final evaluation."""
    start = torch.zeros_like(x)
    if config.random_start and threat.eps > 0:
        start = random_start(x.shape, threat, generator, x.dtype).to(x.device)
    batch = _Batch(x, y, target, threat.clip(x + start, x))
    out = batch.x_adv.clone()
    success = torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)
    value_out = torch.full((x.shape[0],), float("-inf"), device=x.device, dtype=torch.float64)
    for _ in range(config.steps):
        if batch.index.numel() == 0:
            break
        grad, logits, _ = gradient_of(model, batch.x_adv, batch.y, batch.target, config.loss, config.eot)
        batch.halt_non_finite(finite_rows(logits))
        grad = torch.nan_to_num(grad, nan=0.0, posinf=0.0, neginf=0.0)
        if early_stop:
            done = is_successful(logits, batch.y, batch.target)
            if bool(done.any()):
                out[batch.index[done]] = batch.x_adv[done]
                success[batch.index[done]] = True
                batch.keep(~done)
                grad = grad[~done]
                if batch.index.numel() == 0:
                    break
        if config.momentum is not None:
            l1 = grad.abs().reshape(grad.shape[0], -1).sum(dim=1).clamp_min(TINY)
            normalised = grad / expand(l1, grad)
            batch.velocity = normalised if batch.velocity is None else config.momentum * batch.velocity + normalised
            grad = batch.velocity
        step = threat.geometry.ascent_direction(grad, batch.x_adv, threat.lower, threat.upper, config.l1_sparsity)
        step = step * expand(~batch.halted, grad).to(grad.dtype)  # a sample that met NaN/Inf logits stays put
        batch.x_adv = threat.clip(batch.x_adv + config.step_size * step, batch.x)
    out[batch.index] = batch.x_adv
    if not (score or early_stop):
        return out, None, None
    if batch.index.numel():
        objective = get_loss(config.loss)
        with torch.no_grad():
            logits = _at_least_float32(model(batch.x_adv))
            finite = finite_rows(logits)
            out[batch.index] = torch.where(expand(finite, batch.x_adv), batch.x_adv, batch.last_finite)
            value = objective(logits, batch.y, batch.target).double()
            value_out[batch.index] = torch.where(finite, value, torch.full_like(value, float("-inf")))
            success[batch.index] = is_successful(logits, batch.y, batch.target)
    value_out[success] = float("inf")
    return out, success, value_out


RunOutput = tuple[Tensor, "Tensor | None", "Tensor | None"]


def keep_best(
    run: Callable[[int, Tensor, bool], RunOutput],
    n: int,
    runs: int,
    *,
    only_unbroken: bool,
    device: torch.device,
) -> LoopResult:
    """Call ``run`` ``runs`` times and keep, per sample, the best result.

    ``run(k, idx, score)`` attacks the samples ``idx`` (indices into the batch of ``n``) for the
    k-th time and returns ``(x_adv, success, value)`` for them; ``success`` and ``value`` may be
    ``None`` when ``score`` is False (only for a single run). The best result of a sample is one
    that reached the goal if any run did (its value is +∞), else the one with the highest
    objective. With ``only_unbroken`` later runs attack only the samples no earlier run broke.
    """
    best, success, best_value = run(0, torch.arange(n, device=device), runs > 1)
    for k in range(1, runs):
        todo = ~success if only_unbroken else torch.ones_like(success)
        if only_unbroken and not bool(todo.any()):
            break
        idx = todo.nonzero().squeeze(1)
        cand, cand_success, cand_value = run(k, idx, True)
        better = cand_value > best_value[idx]
        best[idx[better]] = cand[better]
        best_value[idx[better]] = cand_value[better]
        success[idx] = success[idx] | cand_success
    return LoopResult(best, success)


def gradient_attack(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    threat: ThreatModel,
    config: LoopConfig,
    *,
    target: Tensor | None = None,
    generator: torch.Generator | None = None,
    early_stop: bool = False,
) -> LoopResult:
    """Run the loop with ``config.restarts`` starts and keep, per sample, the best result: one that
    reaches the goal if any start does, else the one with the highest objective.

    With ``early_stop`` later restarts only run on samples no earlier start has broken.
    The model runs in eval mode with frozen parameters; both are restored afterwards.
    """
    if generator is None:
        generator = fresh_generator(x.device)
    x = x.detach()

    def run(_: int, idx: Tensor, score: bool) -> RunOutput:
        sub_target = None if target is None else target[idx]
        return _one_run(model, x[idx], y[idx], threat, config, sub_target, generator, early_stop, score)

    with frozen(model), torch.enable_grad():
        return keep_best(run, x.shape[0], max(1, config.restarts), only_unbroken=early_stop, device=x.device)


def loop_attack(
    params_type: type[LoopParams],
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    threat: ThreatModel,
    params: LoopParams | None,
    target: Tensor | None,
    generator: torch.Generator | None,
    early_stop: bool,
) -> Tensor:
    """The body of every attack that is the shared loop with its own configuration (FGSM, BIM,
    MI-FGSM, PGD): the parameters, prepared for ``threat``, say how the loop runs
    (:meth:`LoopParams.loop_config`)."""
    params = prepare_params(params, params_type, threat)
    config = params.loop_config()
    return gradient_attack(model, x, y, threat, config, target=target, generator=generator, early_stop=early_stop).x_adv
