"""The report of a run from the summed tallies of its batches."""

from __future__ import annotations

import platform
import sys

import torch

from advgrad import __version__
from advgrad.core.results import (
    AttackCurve,
    CorruptionPoint,
    CorruptionResults,
    CurvePoint,
    RobustnessReport,
    float32_decimal,
)
from advgrad.corruptions import SEVERITIES
from advgrad.evaluation.eval_config import EvalAttack, EvalConfig
from advgrad.evaluation.tally import AttackTally, BatchTally


def versions(device: torch.device | None = None) -> dict[str, str]:
    """Versions and machine facts that a report carries."""
    info = {
        "advgrad": __version__,
        "torch": torch.__version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
    }
    if device is not None:
        info["device"] = str(device)
        if device.type == "cuda":
            info["device_name"] = torch.cuda.get_device_name(device)
    return info


def _nonfinite_logits(attacks: list[EvalAttack], total: BatchTally, config: EvalConfig) -> list[dict]:
    """Per attack and ε (None: a minimal attack's unbounded search), the inputs the attack tried
    on which the model's logits were NaN or infinite; only where there were any."""
    found = []
    for attack, tally in zip(attacks, total.attacks, strict=True):
        if tally.nonfinite_search:
            found.append({"attack": attack.name, "eps": None, "inputs": tally.nonfinite_search})
        found += [
            {"attack": attack.name, "eps": float(eps), "inputs": k}
            for eps, k in zip(config.eps, tally.nonfinite, strict=True)
            if k
        ]
    return found


def _points(tally: AttackTally, config: EvalConfig, n: int, clean_correct: int, *, norms: bool) -> list[CurvePoint]:
    """A curve's point at each ε from its summed tally; ``norms``: with the mean and largest norm of
    the adversarial examples counted (an attack's curve; a certified curve has none)."""
    return [
        CurvePoint(
            eps=float(eps),
            accuracy=tally.robust[j] / n,
            robust=tally.robust[j],
            success_rate=(clean_correct - tally.robust[j]) / clean_correct if clean_correct else 0.0,
            mean_norm=float32_decimal(tally.norm_sum[j] / tally.norm_count[j])
            if norms and tally.norm_count[j]
            else None,
            max_norm=float32_decimal(tally.norm_max[j]) if norms and tally.norm_count[j] else None,
            robust_per_class=list(tally.robust_per_class[j]),
            eps_label=eps.label,
            falsified=None if tally.falsified is None else tally.falsified[j],
            forward_samples=tally.forward_per_eps[j] if tally.forward_per_eps else 0,
            backward_samples=tally.backward_per_eps[j] if tally.backward_per_eps else 0,
        )
        for j, eps in enumerate(config.eps)
    ]


def _run_passes(total: BatchTally) -> dict[str, int]:
    """The run's sample-passes: the clean predictions and the checks, every curve, the corruptions."""
    curves = [*total.attacks, *([] if total.certified is None else [total.certified])]
    corrupted = 0 if total.corruptions is None else total.corruptions.forward_samples
    return {
        "forward_samples": total.clean_forward + sum(t.forward_samples for t in curves) + corrupted,
        "backward_samples": total.clean_backward + sum(t.backward_samples for t in curves),
        "clean_forward_samples": total.clean_forward,
        "clean_backward_samples": total.clean_backward,
    }


def assemble_report(
    total: BatchTally, attacks: list[EvalAttack], config: EvalConfig, device: torch.device
) -> RobustnessReport:
    """The report from the summed tallies of every batch."""
    n, clean_correct = total.n, total.clean_correct
    curves = {}
    for attack, tally in zip(attacks, total.attacks, strict=True):
        curves[attack.name] = AttackCurve(
            attack=attack.spec.name,
            norm=config.norm,
            params=attack.params.to_dict(),
            target=config.target_text,
            points=_points(tally, config, n, clean_correct, norms=True),
            seconds=round(tally.seconds, 4),
            forward_samples=tally.forward_samples,
            backward_samples=tally.backward_samples,
            kind=attack.spec.kind,
            median_norm=float32_decimal(tally.median_norm()),
            stages=[
                {"name": name, "forward_samples": f, "backward_samples": b, "fooled": fooled}
                for name, (f, b, fooled) in tally.stages.items()
            ]
            or None,
        )
    if total.certified is not None and config.certify is not None:
        tally = total.certified
        smoothing = config.smoothing
        curves[config.certify] = AttackCurve(
            attack=config.certify,
            norm=config.norm,
            params={
                "method": config.certify,
                **({} if smoothing is None else smoothing.to_dict()),
                **({} if config.bab is None else config.bab.to_dict()),
            },
            target=None,
            points=_points(tally, config, n, clean_correct, norms=False),
            seconds=round(tally.seconds, 4),
            forward_samples=tally.forward_samples,
            backward_samples=tally.backward_samples,
            kind="certified",
            abstained=None if smoothing is None else tally.abstained,
            bounds_computed=tally.bounds if smoothing is None else None,
        )
    corruptions = None
    if total.corruptions is not None:
        tally = total.corruptions
        found = [
            CorruptionPoint(name, severity, tally.correct[i][s] / n, tally.correct[i][s])
            for i, name in enumerate(config.corruptions)
            for s, severity in enumerate(SEVERITIES)
        ]
        corruptions = CorruptionResults(
            severities=list(SEVERITIES),
            points=found,
            mean_accuracy=sum(p.correct for p in found) / (n * len(found)),  # the mean of the accuracies
            seconds=round(tally.seconds, 4),
            forward_samples=tally.forward_samples,
            sample=tally.sample,
        )
    return RobustnessReport(
        passes=_run_passes(total),
        corruptions=corruptions,
        n_samples=n,
        clean_correct=clean_correct,
        clean_accuracy=clean_correct / n,
        eps=[float(e) for e in config.eps],
        eps_labels=list(config.eps_labels),
        norm=config.norm,
        attacks=curves,
        class_counts=list(total.class_counts),
        clean_correct_per_class=list(total.clean_per_class),
        config={
            "early_stop": config.early_stop,
            **({"predictions": config.predictions} if (config.predictions or 1) > 1 else {}),
            **({"fixed": list(config.fixed)} if config.fixed else {}),
            **config.extra,
        },
        seed=config.seed,
        versions=versions(device),
        diagnostics={**total.evidence.to_dict(), "nonfinite_logits": _nonfinite_logits(attacks, total, config)},
        examples={
            attack.name: tally.examples[: config.examples]  # the first ones by batch order
            for attack, tally in zip(attacks, total.attacks, strict=True)
        },
        counterexamples=[] if total.certified is None else list(total.certified.counterexamples),
    )
