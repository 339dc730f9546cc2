"""Square attack: a score-based random search that needs only the model's outputs.

Written from the description in Andriushchenko, Croce, Flammarion & Hein, "Square Attack: a
query-efficient black-box adversarial attack via random search" (ECCV 2020). It never calls
``backward``, so gradient masking does not hide a model's weakness from it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from advgrad.attacks.base import AttackParams, AttackSpec, param, prepare_params
from advgrad.attacks.iterative import fresh_generator
from advgrad.core.errors import UsageError
from advgrad.core.geometry import L2, LINF, TINY, expand
from advgrad.core.gradient import frozen
from advgrad.core.losses import is_successful, margin
from advgrad.core.threat import ThreatModel

# Iterations (out of 10,000 queries) after which the square's area fraction p is halved.
_HALVINGS = (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)


@dataclass
class SquareParams(AttackParams):
    """Query budget per sample and the initial fraction of pixels a square covers."""

    queries: int = param(5000, "model evaluations per sample (the first one is the initial point)")
    p_init: float | None = param(
        None, "initial fraction p of the image a square covers", shown="0.05 for L∞, 0.1 for L2"
    )
    rescale_schedule: bool = param(
        True, "halve p at the schedule's points rescaled to the query budget (off: at the fixed iterations)"
    )

    def resolve(self, threat: ThreatModel) -> SquareParams:
        return self.fill(p_init=_moves(threat).p_init)

    at_least_one = ("queries",)
    cost_formula = "queries"  # forward passes only

    def validate(self) -> None:
        super().validate()
        if self.p_init is not None and not 0 < self.p_init <= 1:
            raise UsageError(f"p-init must be in (0, 1], got {self.p_init}")


def square_fraction(p_init: float, iteration: int, queries: int, rescale: bool = True) -> float:
    """p at ``iteration``: p_init halved at iterations 10, 50, 200, 500, 1k, 2k, 4k, 6k and 8k of a
    10,000-query run, those points rescaled to a budget of ``queries`` when ``rescale`` (else
    taken as they are, as AutoAttack's standard version does: with 5000 queries p ends at p_init/128)."""
    scaled = int(iteration / max(queries, 1) * 10000) if rescale else iteration
    return p_init / 2 ** sum(scaled > h for h in _HALVINGS)


def _as_image(x: Tensor) -> Tensor:
    """View inputs as (N, C, H, W): images stay, (N, H, W) gets one channel, anything else (N, 1, 1, D)."""
    if x.dim() == 4:
        return x
    if x.dim() == 3:
        return x.unsqueeze(1)
    return x.reshape(x.shape[0], 1, 1, -1)


def _window(
    n: int, h: int, w: int, side_h: int, side_w: int, gen: torch.Generator, device
) -> tuple[Tensor, Tensor, Tensor]:
    """A random side_h×side_w window per sample: its mask (N, H, W) and its top-left corners."""
    top = torch.randint(0, h - side_h + 1, (n,), generator=gen, device=gen.device).to(device)
    left = torch.randint(0, w - side_w + 1, (n,), generator=gen, device=gen.device).to(device)
    rows = torch.arange(h, device=device)
    cols = torch.arange(w, device=device)
    in_rows = (rows >= top[:, None]) & (rows < top[:, None] + side_h)
    in_cols = (cols >= left[:, None]) & (cols < left[:, None] + side_w)
    return in_rows[:, :, None] & in_cols[:, None, :], top, left


def _signs(shape: tuple[int, ...], gen: torch.Generator, device, dtype) -> Tensor:
    return (torch.randint(0, 2, shape, generator=gen, device=gen.device) * 2 - 1).to(device=device, dtype=dtype)


def _side(p: float, h: int, w: int, least: int = 1) -> tuple[int, int]:
    """Window side s = round(√(p·H·W)), at least ``least`` and at most the image."""
    s = max(int(round(math.sqrt(p * h * w))), least)
    return min(s, h), min(s, w)


def meta_pattern(h: int, w: int, device=None, dtype=torch.float32) -> Tensor:
    """The L2 pattern η^{(h,w)} of the paper: concentric rectangles whose value grows towards the
    centre, η_{r,s} = Σ_{k=0}^{M(r,s)} 1/(n + 1 − k)² with n = ⌊h/2⌋ and
    M(r,s) = n − max(|r − ⌊h/2⌋|, |s − ⌊w/2⌋|) (0-based r, s)."""
    n = h // 2
    r = torch.arange(h, device=device)[:, None]
    s = torch.arange(w, device=device)[None, :]
    m = n - torch.maximum((r - h // 2).abs(), (s - w // 2).abs())
    weights = 1.0 / (n + 1 - torch.arange(n + 1, device=device, dtype=dtype)) ** 2
    cumulative = torch.cat([torch.zeros(1, device=device, dtype=dtype), weights.cumsum(0)])
    return cumulative[(m + 1).clamp(0, n + 1)]


def l2_window_pattern(side: int, transpose: bool, device=None, dtype=torch.float32) -> Tensor:
    """η = [η^{(s,k)}, −η^{(s,s−k)}], k = ⌊s/2⌋, rotated by 90° when ``transpose``; unit L2 norm."""
    k = side // 2
    pattern = torch.cat([meta_pattern(side, k, device, dtype), -meta_pattern(side, side - k, device, dtype)], dim=1)
    if transpose:
        pattern = pattern.t()
    return pattern / pattern.norm().clamp_min(TINY)


def _margin_score(model: nn.Module, x: Tensor, y: Tensor, target: Tensor | None) -> tuple[Tensor, Tensor]:
    """(score to minimise, success) from one forward pass: the margin of the true (or the
    target) class over the best other class, negated for a target."""
    logits = model(x).float()
    return -margin(logits, y, target), is_successful(logits, y, target)


def _init_linf(x: Tensor, eps: float, gen: torch.Generator) -> Tensor:
    """Vertical stripes: each column of each channel moved by ±ε."""
    n, c, _, w = x.shape
    return eps * _signs((n, c, 1, w), gen, x.device, x.dtype).expand_as(x)


def _init_l2(x: Tensor, eps: float, gen: torch.Generator) -> Tensor:
    """A grid of meta-pattern tiles with random signs per tile and channel, scaled to norm ε."""
    n, c, h, w = x.shape
    tile = max(1, min(h, w) // 5)
    delta = torch.zeros_like(x)
    for top in range(0, h, tile):  # a loop over tiles of the grid, not over samples
        for left in range(0, w, tile):
            th, tw = min(tile, h - top), min(tile, w - left)
            pattern = meta_pattern(th, tw, x.device, x.dtype)
            signs = _signs((n, c, 1, 1), gen, x.device, x.dtype)
            delta[:, :, top : top + th, left : left + tw] = signs * pattern
    norms = delta.flatten(1).norm(dim=1).clamp_min(TINY)
    return delta * expand(eps / norms, delta)


def _propose_linf(x: Tensor, delta: Tensor, threat: ThreatModel, p: float, gen: torch.Generator) -> Tensor:
    """Set a random square of each sample to ±ε per channel (one colour per channel).

    If the draw would leave the point as it is once clipped to the box (likely with one channel,
    or on a background at 0), its signs are flipped, so that no query is spent on an unchanged
    point."""
    n, c, h, w = delta.shape
    side_h, side_w = _side(p, h, w)
    mask, _, _ = _window(n, h, w, side_h, side_w, gen, delta.device)
    window = mask[:, None].expand_as(delta)
    colour = threat.eps * _signs((n, c, 1, 1), gen, delta.device, delta.dtype)
    new = torch.where(window, colour.expand_as(delta), delta)
    unchanged = (((x + new).clamp(threat.lower, threat.upper) - x - delta).abs().flatten(1).amax(dim=1) == 0).reshape(
        -1, 1, 1, 1
    )
    return torch.where(window & unchanged, -new, new)


def _propose_l2(x: Tensor, delta: Tensor, threat: ThreatModel, p: float, gen: torch.Generator) -> Tensor:
    """Move the perturbation's mass from two random squares W1, W2 into W1, reshaped along a new
    signed pattern, keeping ‖δ‖₂ = ε (Algorithm 3 of the paper)."""
    n, c, h, w = delta.shape
    side, _ = _side(p, min(h, w), min(h, w), least=min(2, min(h, w)))
    device, dtype = delta.device, delta.dtype
    mask1, top, left = _window(n, h, w, side, side, gen, device)
    mask2, _, _ = _window(n, h, w, side, side, gen, device)
    m1 = mask1[:, None].to(dtype)
    both = (mask1 | mask2)[:, None].to(dtype)
    transpose = bool(torch.randint(0, 2, (1,), generator=gen, device=gen.device))
    pattern = l2_window_pattern(side, transpose, device, dtype)
    # Place the pattern at each sample's W1 (a scatter by index arithmetic, no loop over samples).
    canvas = torch.zeros(n, h, w, device=device, dtype=dtype)
    rows = top[:, None, None] + torch.arange(side, device=device)[None, :, None]
    cols = left[:, None, None] + torch.arange(side, device=device)[None, None, :]
    canvas[torch.arange(n, device=device)[:, None, None], rows, cols] = pattern
    unused = (threat.eps**2 - delta.flatten(1).pow(2).sum(dim=1)).clamp_min(0)  # ε² − ‖δ‖²
    in_w1 = delta * m1
    w1_norm = in_w1.pow(2).sum(dim=(2, 3), keepdim=True).sqrt()
    sign = _signs((n, c, 1, 1), gen, device, dtype)
    new = sign * canvas[:, None] + in_w1 / w1_norm.clamp_min(TINY)
    available = ((delta * both).pow(2).sum(dim=(2, 3), keepdim=True) + expand(unused, delta) / c).sqrt()
    new = new / (new * m1).pow(2).sum(dim=(2, 3), keepdim=True).sqrt().clamp_min(TINY) * available
    return delta * (1 - both) + new * m1


@dataclass(frozen=True)
class _Moves:
    """What the Square attack does in one norm: its initial point, its proposal and its default
    p_init (the paper's values)."""

    init: Callable[[Tensor, float, torch.Generator], Tensor]
    propose: Callable[[Tensor, Tensor, ThreatModel, float, torch.Generator], Tensor]
    p_init: float


# Keyed by the norm's geometry: the attack supports the norms it has moves for.
_MOVES = {LINF: _Moves(_init_linf, _propose_linf, 0.05), L2: _Moves(_init_l2, _propose_l2, 0.1)}


def _moves(threat: ThreatModel) -> _Moves:
    try:
        return _MOVES[threat.geometry]
    except KeyError:
        raise UsageError(f"square does not support the {threat.geometry.label} threat model") from None


def square(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    threat: ThreatModel,
    params: SquareParams | None = None,
    target: Tensor | None = None,
    generator: torch.Generator | None = None,
    early_stop: bool = False,
) -> Tensor:
    """Square attack (Andriushchenko, Croce, Flammarion & Hein, ECCV 2020, "Square Attack: a
    query-efficient black-box adversarial attack via random search").

    Threat model: L∞ or L2 ball of radius ε intersected with [0, 1]; uses only the logits (no
    gradient, no backward). Random search minimising the margin L = z_y − max_{j≠y} z_j
    (targeted: max_{j≠t} z_j − z_t): from an initial point (L∞: vertical stripes of ±ε; L2: a grid
    of signed patterns of norm ε), each iteration proposes δ' by changing one random square of side
    s = round(√(p·H·W)) — L∞: set it to ±ε per channel; L2: move the mass of two squares into one,
    along a new signed pattern, keeping ‖δ'‖₂ = ε — and keeps x + δ' (clipped to the box) when L
    decreases. p starts at ``p_init`` and is halved on a fixed schedule of the query budget.
    A sample stops being queried once it is fooled (or reaches the target), whatever
    ``early_stop`` says. Shapes: x (N, C, H, W) in [0, 1] (other shapes are viewed as 1×1×D images).

    >>> x_adv = square(model, x, y, threat=ThreatModel("inf", 8 / 255), params=SquareParams(queries=1000))
    """
    params = prepare_params(params, SquareParams, threat)
    generator = generator if generator is not None else fresh_generator(x.device)
    shape = x.shape
    x_img = _as_image(x.detach())
    moves = _moves(threat)
    with frozen(model), torch.no_grad():
        best = threat.clip(x_img + moves.init(x_img, threat.eps, generator), x_img)
        score, done = _margin_score(model, best.reshape(shape), y, target)
        # The samples still queried, compacted only when one of them is fooled (not every query).
        active = (~done).nonzero().squeeze(1)
        xa, ya, best_a, score_a = x_img[active], y[active], best[active], score[active]
        ta = None if target is None else target[active]
        for i in range(1, params.queries):
            if active.numel() == 0:
                break
            p = square_fraction(params.p_init, i, params.queries, params.rescale_schedule)
            delta = moves.propose(xa, best_a - xa, threat, p, generator)
            candidate = threat.clip(xa + delta, xa)
            cand_score, cand_done = _margin_score(model, candidate.reshape((-1,) + shape[1:]), ya, ta)
            better = cand_score < score_a
            best_a = torch.where(expand(better, candidate), candidate, best_a)
            score_a = torch.where(better, cand_score, score_a)
            fooled = better & cand_done
            if bool(fooled.any()):
                best[active], score[active] = best_a, score_a
                done[active[fooled]] = True
                keep = ~fooled
                active, xa, ya, best_a, score_a = active[keep], xa[keep], ya[keep], best_a[keep], score_a[keep]
                ta = None if ta is None else ta[keep]
        best[active] = best_a
    return best.reshape(shape)


SPEC = AttackSpec(
    name="square",
    function=square,
    params_type=SquareParams,
    norms=tuple(geometry.name for geometry in _MOVES),
    kind="score",
    summary="random search over square-shaped changes; uses only the model's outputs, never a gradient",
    reference="Andriushchenko, Croce, Flammarion & Hein, ECCV 2020",
)
