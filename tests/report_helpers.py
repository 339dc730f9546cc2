"""Shared pieces of the report tests: crafted reports, a gradient-masking model, a test-only
score-based attack and a small evaluation on the embedded default."""

from __future__ import annotations

import json
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from advgrad.attacks import get_attack
from advgrad.attacks.base import AttackParams, AttackSpec
from advgrad.core.losses import margin
from advgrad.core.results import AttackCurve, CurvePoint, RobustnessReport
from advgrad.evaluation.eval_config import EvalAttack, EvalConfig
from advgrad.evaluation.sweep import evaluate
from advgrad.io.data.load_data import load_default
from advgrad.io.model.load_model import load_default_model

DIAGNOSTICS_OK = {
    "gradient_samples": 100,
    "gradient_zero": 0,
    "gradient_nonfinite": 0,
    "repeat_samples": 100,
    "repeat_changed": 0,
    "repeat_max_difference": 0.0,
    "output_rows": 100,
    "output_unit_rows": 0,
    "output_simplex_rows": 0,
    "loss_samples": 100,
    "loss_saturated": 0,
    "consistency_samples": 100,
    "consistency_mismatched": 0,
    "cost_samples": 8,
    "cost_min": 12,
    "cost_max": 12,
    "input_shape": [1, 8, 8],
}


def crafted(
    robust: dict[str, list[int]],
    eps: list[float] | tuple[float, ...] = (0.0, 0.1, 0.2),
    *,
    n: int = 100,
    clean: int = 95,
    norm: str = "inf",
    kinds: dict[str, str] | None = None,
    params: dict[str, dict] | None = None,
    diagnostics: dict | None = None,
    class_counts: list[int] | None = None,
) -> RobustnessReport:
    """A report with the given number of robust samples per attack and ε (one class unless
    ``class_counts`` says otherwise: per-class counts then split in proportion)."""
    kinds, params = kinds or {}, params or {}
    counts = class_counts or [n]
    curves = {}
    for name, values in robust.items():
        points = [
            CurvePoint(
                eps=e,
                accuracy=r / n,
                robust=r,
                success_rate=(clean - r) / clean,
                mean_norm=None if r == clean else e / 2,
                max_norm=None if r == clean else e,
                robust_per_class=[r * c // n for c in counts],
            )
            for e, r in zip(eps, values, strict=True)
        ]
        default_params = {"steps": 20} if name != "fgsm" else {}
        curves[name] = AttackCurve(
            name, norm, params.get(name, default_params), None, points, 1.0, 1000, kinds.get(name, "gradient")
        )
    return RobustnessReport(
        n_samples=n,
        clean_correct=clean,
        clean_accuracy=clean / n,
        eps=list(eps),
        norm=norm,
        attacks=curves,
        class_counts=counts,
        clean_correct_per_class=[clean * c // n for c in counts],
        model={"source": "crafted"},
        data={"source": "crafted", "description": "crafted data"},
        config={"early_stop": True},
        seed=0,
        timing={"total_seconds": 1.0},
        versions={"advgrad": "0", "torch": "0", "python": "3"},
        diagnostics=dict(DIAGNOSTICS_OK if diagnostics is None else diagnostics),
    )


class Rounding(nn.Module):
    """Rounds its input to a grid of ``levels`` steps before the model: ∇ₓJ = 0 almost everywhere.
    The embedded digits hold 17 grey levels (k/16), so with 16 levels clean inputs are unchanged."""

    def __init__(self, model: nn.Module, levels: int = 16):
        super().__init__()
        self.model = model
        self.levels = levels

    def forward(self, x: Tensor) -> Tensor:
        return self.model(torch.round(x * self.levels) / self.levels)


@dataclass
class RandomSearchParams(AttackParams):
    """``queries`` random corners of the L∞ ball."""

    queries: int = 60


def random_search(model, x, y, *, threat, params=None, target=None, generator=None, early_stop=False) -> Tensor:
    """A minimal score-based attack (test only): random sign perturbations of size ε, keeping per
    sample the one with the highest margin loss. Uses the model's outputs only, never a gradient."""
    params = params or RandomSearchParams()
    with torch.no_grad():
        best = x.clone()
        best_score = margin(model(x), y)
        for _ in range(params.queries):
            signs = torch.randint(0, 2, x.shape, generator=generator, device=x.device).to(x.dtype) * 2 - 1
            candidate = (x + threat.eps * signs).clamp(0, 1)
            score = margin(model(candidate), y)
            better = score > best_score
            best[better] = candidate[better]
            best_score = torch.where(better, score, best_score)
    return best


RANDOM_SEARCH = AttackSpec(
    name="random-search",
    function=random_search,
    params_type=RandomSearchParams,
    norms=("inf",),
    kind="score",
    summary="random corners of the L∞ ball (test only)",
    reference="test helper",
)


def registered_square() -> AttackSpec | None:
    """The Square attack when the attacks issue has registered it, else None."""
    try:
        return get_attack("square")
    except Exception:
        return None


def run_default(
    attacks: list[EvalAttack] | None = None,
    *,
    eps=(0.0, 0.1, 0.3),
    limit: int = 60,
    batch_size: int = 20,
    model: nn.Module | None = None,
    examples: int = 0,
    binarization: bool | None = None,
    **kwargs,
) -> RobustnessReport:
    """evaluate() on the first ``limit`` embedded digits with the default model (or ``model``)."""
    if attacks is None:
        attacks = [
            EvalAttack(get_attack("fgsm"), get_attack("fgsm").make_params()),
            EvalAttack(get_attack("pgd"), get_attack("pgd").make_params(steps=10)),
        ]
    data = load_default()
    net = model if model is not None else load_default_model()
    config = EvalConfig(eps=list(eps), seed=0, examples=examples, binarization=binarization)
    return evaluate(net, data.batches(batch_size, limit=limit), attacks, config, **kwargs)


def comparable(report: dict) -> dict:
    """A report's JSON without what may differ between equal runs: timing and where outputs went."""
    report = json.loads(json.dumps(report))
    report.pop("timing")  # every measured time sits there (schema version 2)
    report.get("config", {}).pop("outputs", None)
    return report


def stop_after(batches: int):
    """A progress callback that interrupts the run (KeyboardInterrupt) after ``batches`` batches."""
    done = []

    def tick(n: int) -> None:
        done.append(n)
        if len(done) == batches:
            raise KeyboardInterrupt

    return tick
