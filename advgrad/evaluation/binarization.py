"""The binarization test: do the run's attacks find an adversarial example where one is known to exist?

Zimmermann, Brendel, Tramèr & Carlini (NeurIPS 2022, "Increasing Confidence in Adversarial
Robustness Evaluations") turn the question "is the model robust, or is the attack weak?" into one
with a known answer. For a clean sample x they change the classifier slightly, so that an
adversarial example inside the ε-ball provably exists, and run the same attack with the same budget
on the changed classifier: a working attack finds one; an attack that does not is failing, whatever
the model's robustness. 11 of 13 published defence evaluations they re-ran failed it.

advgrad's construction, per sample x classified correctly as y and per ε:

1. **Points.** A *boundary point* x_b = clip(x + ε·d), with d the unit ascent direction of the
   norm for a random Gaussian vector (a vertex of the L∞ ball, a point of the L2 sphere, for L1 a
   direction spread over the coordinates the box lets move) — inside the ε-ball and [0, 1], a
   legitimate adversarial input. *Inner points*, which stay in the sample's class: x,
   :data:`INNER_POINTS` points drawn uniformly from the ball, and as many surface points made as
   x_b is (so that x_b is one of many similar points, and the attack must find its side).
2. **Features.** The model's logits z(·) at every point: the whole model, defences included,
   stays in the path (the logits are a linear function of its penultimate features, so a linear
   readout on them is a linear head on those features).
3. **Readout.** A linear score s(x') = w·z(x') with w the difference between z(x_b) and the mean
   of the inner points' logits, refined by logistic regression when that does not separate them;
   the threshold t lies a quarter of the way from the largest inner score to s(x_b). The sample is *feasible*
   when s(x_b) > t > every inner score, and a forward pass confirms it: the binarized model
   classifies x as y and x_b as the other class. An infeasible sample (logits that cannot tell x_b
   from x, e.g. a model constant near x) is left out and counted.
4. **Binarized model.** Logits h(x') = (s(x') − t)/(t − s(x)), so that h(x) = −1 (logits of order
   one: a test of the search, not of a saturated loss): class y gets 0, a second class c gets h,
   every other class min(0, h) − 1 (always last, so attacks that need three or more classes, such
   as the DLR loss and targeted APGD, run unchanged). x_b is an adversarial example inside the
   ε-ball: h(x_b) > 0.
5. **The test.** Each attack runs on each feasible sample's binarized model, at the ε and with
   the parameters, seed rule and early stop of the run; a success is an x_adv inside the ball that
   the binarized model, in a fresh forward pass, classifies as c. The attack passes when it finds
   all but at most :data:`MISS_SHARE` of the feasible samples.

Cost: per attack, samples × (its passes per sample at one ε) + samples × (INNER_POINTS + 2)
forward passes, on one sample at a time (each sample has its own binarized model): with the
default 10 samples, a few thousandths of an evaluation of 450 samples at several ε.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor, nn

from advgrad.attacks.base import run_attack
from advgrad.core.losses import finite_rows
from advgrad.core.seeding import generator_for
from advgrad.core.threat import ThreatModel
from advgrad.evaluation.counting import CountingModel
from advgrad.evaluation.eval_config import EvalAttack, EvalConfig

SAMPLES = 20  # clean-correct samples of the run's first batch that get a binarized model
INNER_POINTS = 64  # points inside the ball, and as many on its surface, that stay in the sample's class
INNER_RADIUS = 1.0  # the inner points' ball, as a share of ε
MISS_SHARE = 0.1  # an attack fails the test when it misses more than this share of the feasible samples
FIT_STEPS = 300  # logistic-regression steps when the difference of means does not separate
FIT_RATE = 2.0
AUTO_SHARE = 0.1  # ensemble runs take the test by default when it costs at most this share of the run
THRESHOLD = 0.25  # where the threshold sits between the largest score kept in class and the boundary point's


class Binarized(nn.Module):
    """The model with a binary linear readout on its logits (see the module docstring)."""

    def __init__(self, model: nn.Module, w: Tensor, t: float, scale: float, y: int, other: int, classes: int):
        super().__init__()
        self.model, self.w, self.t, self.scale = model, w, t, scale
        self.y, self.other, self.classes = y, other, classes

    def forward(self, x: Tensor) -> Tensor:
        z = self.model(x)
        h = ((z.double() @ self.w - self.t) / self.scale).to(z.dtype)
        rest = torch.minimum(h, torch.zeros_like(h)) - 1
        out = rest[:, None].repeat(1, self.classes)
        out[:, self.y] = 0
        out[:, self.other] = h
        return out


@dataclass
class AttackTest:
    """The outcome for one attack: ``samples`` feasible, ``found`` adversarial examples found,
    ``passes`` model passes spent (sample-passes), at ``eps``."""

    attack: str
    eps: float
    samples: int
    found: int
    infeasible: int
    passes: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _surface(x: Tensor, threat: ThreatModel, gen: torch.Generator, n: int) -> Tensor:
    """``n`` points x + ε·d inside the ball and [0, 1], d the norm's unit ascent direction for a random
    Gaussian vector: a vertex of the L∞ ball, a point of the L2 sphere, for L1 a direction spread
    over the coordinates the box lets move."""
    pull = torch.randn((n, *x.shape[1:]), generator=gen, device=gen.device, dtype=x.dtype).to(x.device)
    base = x.expand_as(pull)
    direction = threat.geometry.ascent_direction(pull, base, threat.lower, threat.upper, sparsity=0.0)
    return threat.clip(base + threat.eps * direction, base)


def _points(x: Tensor, threat: ThreatModel, gen: torch.Generator) -> tuple[Tensor, Tensor]:
    """(the points kept in the sample's class, x first; the boundary point) for one sample ``x`` (1 × …)."""
    shape = torch.Size((INNER_POINTS, *x.shape[1:]))
    inner = threat.geometry.random_point(shape, INNER_RADIUS * threat.eps, gen, x.dtype).to(x.device)
    inner = threat.clip(x + inner, x.expand_as(inner))
    boundary = _surface(x, threat, gen, 1)
    return torch.cat([x, inner, _surface(x, threat, gen, INNER_POINTS)]), boundary


def _readout(z_in: Tensor, z_b: Tensor) -> tuple[Tensor, float, float] | None:
    """(w, t, scale) separating the boundary logits ``z_b`` (1 × C) from the inner ones (``z_in``,
    the sample's own first), or None. ``scale`` makes h(x) = −1 at the sample: logits of order one,
    whose cross-entropy gradients do not vanish in float32 (a test of the search, not of saturation)."""
    w = (z_b[0] - z_in.mean(dim=0)).double()
    if not bool((z_in.double() @ w < z_b[0].double() @ w).all()):
        w = _logistic(z_in.double(), z_b.double(), w)
    s_in, s_b = z_in.double() @ w, float(z_b[0].double() @ w)
    top = float(s_in.max())
    if not s_b > top:
        return None
    t = top + THRESHOLD * (s_b - top)
    return w, t, t - float(s_in[0])


def _logistic(z_in: Tensor, z_b: Tensor, w: Tensor) -> Tensor:
    """A logistic-regression direction by plain gradient descent (the boundary point weighted as all
    inner points together), started from ``w``, on standardised logits, mapped back."""
    mean, std = z_in.mean(dim=0), z_in.std(dim=0).clamp_min(1e-12)
    feats = (torch.cat([z_in, z_b]) - mean) / std
    labels = torch.cat([torch.zeros(z_in.shape[0]), torch.ones(1)]).to(feats)
    weight = torch.cat([torch.ones(z_in.shape[0]), torch.full((1,), float(z_in.shape[0]))]).to(feats)
    weight = weight / weight.sum()
    v, b = w * std, torch.zeros((), dtype=feats.dtype)
    for _ in range(FIT_STEPS):  # ∂/∂v of the weighted cross-entropy: Fᵀ(weight·(σ(Fv + b) − label))
        residual = weight * (torch.sigmoid(feats @ v + b) - labels)
        v, b = v - FIT_RATE * (feats.T @ residual), b - FIT_RATE * residual.sum()
    return (v / std).double()


def binarize(model: nn.Module, x: Tensor, y: int, classes: int, threat: ThreatModel, gen: torch.Generator):
    """The binarized model of one sample ``x`` (1 × …) and its boundary point, or None when infeasible."""
    inner, boundary = _points(x, threat, gen)
    with torch.no_grad():
        z = model(torch.cat([inner, boundary]))
    if not bool(finite_rows(z).all()):
        return None
    found = _readout(z[:-1], z[-1:])
    if found is None:
        return None
    other = (y + 1) % classes
    binarized = Binarized(model, *found, y, other, classes)
    with torch.no_grad():
        check = binarized(torch.cat([x, boundary])).argmax(dim=1).tolist()
    return (binarized, boundary) if check == [y, other] else None


def binarized_samples(model: nn.Module, x: Tensor, y: Tensor, threat: ThreatModel, seed: int) -> list:
    """Per sample of ``x``, ``y``: its binarized model (:func:`binarize`), or None when infeasible."""
    with torch.no_grad():
        classes = model(x[:1]).shape[1]
    return [
        binarize(model, x[i : i + 1], int(y[i]), classes, threat, generator_for(x.device, seed, "binarization", i))
        for i in range(x.shape[0])
    ]


def attack_binarized(
    model: nn.Module, attack: EvalAttack, a: int, x: Tensor, y: Tensor, eps: float, config: EvalConfig, made=None
) -> AttackTest:
    """One attack on the binarized models of the samples ``x``, ``y`` (clean-correct) at ``eps``;
    ``made``: those models when already built (:func:`binarized_samples`, shared by the attacks)."""
    counted = CountingModel(model)
    threat = ThreatModel(config.norm, eps, fixed=config.fixed)
    if made is None:
        made = binarized_samples(counted, x, y, threat, config.seed)
    found = 0
    for i, item in enumerate(made):
        if item is None:
            continue
        binarized = Binarized(counted, item[0].w, item[0].t, item[0].scale, item[0].y, item[0].other, item[0].classes)
        xi, yi = x[i : i + 1], y[i : i + 1]
        gen = generator_for(x.device, config.seed, "binarization", a, i)
        x_adv = run_attack(
            attack.spec,
            binarized,
            xi,
            yi,
            threat=threat,
            params=attack.params,
            generator=gen,
            early_stop=config.early_stop,
        )
        with torch.no_grad():
            hit = binarized(x_adv).argmax(dim=1) != yi
        found += int((hit & threat.contains(x_adv, xi)).sum())
    infeasible = sum(item is None for item in made)
    return AttackTest(attack.name, float(eps), x.shape[0] - infeasible, found, infeasible, counted.samples)


def binarization_test(
    model: nn.Module, x: Tensor, y: Tensor, attacks: list[EvalAttack], config: EvalConfig, report: Any
) -> dict[str, Any]:
    """The test for every attack of the run, on the first :data:`SAMPLES` clean-correct samples of
    ``x``, at the largest ε at which that attack left a sample robust (where the report claims
    robustness; an attack that fooled every sample at every ε > 0 needs no test). The binarized
    models of one ε are built once and serve every attack tested there."""
    with torch.no_grad():
        logits = model(x)
    keep = ((logits.argmax(dim=1) == y) & finite_rows(logits)).nonzero().squeeze(1)[:SAMPLES]
    x, y = x[keep], y[keep]
    results, built = [], {}
    for a, attack in enumerate(attacks):
        curve = report.attacks.get(attack.name)
        claimed = [p.eps for p in curve.points if p.eps > 0 and p.robust > 0] if curve is not None else []
        if not claimed or not keep.numel():
            continue
        eps = max(claimed)
        if eps not in built:
            threat = ThreatModel(config.norm, eps, fixed=config.fixed)
            built[eps] = binarized_samples(model, x, y, threat, config.seed)
        results.append(attack_binarized(model, attack, a, x, y, eps, config, built[eps]).to_dict())
    return {"samples": int(keep.numel()), "miss_share": MISS_SHARE, "attacks": results}


def binarization_passes(attacks: list[EvalAttack], classes: int) -> int:
    """An upper bound on the test's model passes (sample-passes): :data:`SAMPLES` samples per attack."""
    return SAMPLES * sum(a.params.passes_per_sample(classes) + 2 * INNER_POINTS + 4 for a in attacks)


def wanted(config: EvalConfig, attacks: list[EvalAttack], samples: int, classes: int) -> bool:
    """Whether a run of ``samples`` samples runs the test: when asked (``config.binarization``), or by
    default when the run has an ensemble attack (``strong``, ``autoattack``…) and the test costs at
    most :data:`AUTO_SHARE` of the run's own budget."""
    if config.binarization is not None:
        return bool(config.binarization and attacks)
    if not any(a.spec.kind == "ensemble" for a in attacks):
        return False
    runs = sum(e > 0 for e in config.eps)
    budget = samples * runs * sum(a.params.passes_per_sample(classes) for a in attacks)
    return binarization_passes(attacks, classes) <= AUTO_SHARE * budget
