"""Adversarial examples for a whole data source, with a summary: what ``advgrad attack`` does."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn

from advgrad.attacks.base import AttackParams, AttackSpec, run_attack
from advgrad.errors import UsageError
from advgrad.gradient import frozen
from advgrad.io.probe import check_logits
from advgrad.progress import Monitor, PassCounter
from advgrad.seeding import generator_for
from advgrad.targets import resolve_targets
from advgrad.threat import ThreatModel


@dataclass
class AttackSummary:
    """What an attack did to a set of samples.

    ``success_rate`` is over the ``attacked`` samples: those classified correctly before the
    attack (and, when targeted, whose label is not the target). Untargeted success means
    misclassified; targeted success means classified as the target. Norms are over every sample
    in the threat model's norm.
    """

    attack: str
    norm: str
    eps: float
    n_samples: int
    clean_accuracy: float
    adversarial_accuracy: float
    attacked: int
    successes: int
    success_rate: float
    mean_norm: float
    max_norm: float
    target: str | None
    seconds: float

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class AdversarialSet:
    """The tensors ``advgrad attack`` writes: inputs, adversarial inputs, labels, predictions."""

    x: Tensor
    x_adv: Tensor
    y: Tensor
    pred_clean: Tensor
    pred_adv: Tensor
    target: Tensor | None

    def to_dict(self) -> dict[str, Tensor]:
        out = {"x": self.x, "x_adv": self.x_adv, "y": self.y, "pred_clean": self.pred_clean, "pred_adv": self.pred_adv}
        if self.target is not None:
            out["target"] = self.target
        return out


def generate(
    model: nn.Module,
    batches: Iterable[tuple[Tensor, Tensor]],
    spec: AttackSpec,
    params: AttackParams,
    threat: ThreatModel,
    *,
    target: int | str | None = None,
    seed: int = 0,
    early_stop: bool = False,
    device: torch.device | str = "cpu",
    progress: Callable[[int], None] | None = None,
    monitor: Monitor | None = None,
) -> tuple[AdversarialSet, AttackSummary]:
    """Attack every sample of ``batches`` and summarise; tensors are returned on the CPU.

    Every sample is attacked (even one misclassified already) except, in a targeted attack,
    those whose label is the target: they are returned unchanged. ``progress`` is called with
    the samples done after each batch; ``monitor`` (:mod:`advgrad.progress`) hears each batch's
    attack begin and end and every model call in between.
    """
    device = torch.device(device)
    parts: dict[str, list[Tensor]] = {k: [] for k in ("x", "x_adv", "y", "pred_clean", "pred_adv", "target")}
    started = time.perf_counter()
    n = 0
    with frozen(model):
        for b, (x, y) in enumerate(batches):
            x, y = x.to(device), y.to(device)
            with torch.no_grad():
                logits = model(x)
            check_logits(logits, y)
            targets = resolve_targets(target, logits, y, generator_for(device, seed, "target", b))
            x_adv = x.clone()
            todo = torch.ones_like(y, dtype=torch.bool) if targets is None else targets != y
            idx = todo.nonzero().squeeze(1)
            if idx.numel():
                if monitor is not None:
                    per_call = params.passes_per_sample(1)
                    monitor.begin(spec.name, threat.eps, per_call, int(idx.numel()),
                                  y.shape[0] * params.passes_per_sample(logits.shape[1]),
                                  "query" if spec.kind == "score" else "step")
                x_adv[idx] = run_attack(
                    spec, model if monitor is None else PassCounter(model, monitor), x[idx], y[idx], threat=threat,
                    params=params, target=None if targets is None else targets[idx],
                    generator=generator_for(device, seed, b), early_stop=early_stop,
                )
                if monitor is not None:
                    monitor.end()
            with torch.no_grad():
                pred_adv = model(x_adv).argmax(dim=1)
            for key, value in (("x", x), ("x_adv", x_adv), ("y", y), ("pred_clean", logits.argmax(dim=1)),
                               ("pred_adv", pred_adv), ("target", targets)):
                if value is not None:
                    parts[key].append(value.detach().cpu())
            n += y.shape[0]
            if progress is not None:
                progress(n)
            if monitor is not None:
                monitor.next_batch()
    if n == 0:
        raise UsageError("no samples to attack: the data is empty")
    data = {k: torch.cat(v) for k, v in parts.items() if v}
    result = AdversarialSet(
        data["x"], data["x_adv"], data["y"], data["pred_clean"], data["pred_adv"], data.get("target")
    )
    return result, summarise(result, spec.name, threat, target, time.perf_counter() - started)


def summarise(
    result: AdversarialSet, attack: str, threat: ThreatModel, target: int | str | None, seconds: float
) -> AttackSummary:
    """The :class:`AttackSummary` of an :class:`AdversarialSet`."""
    correct = result.pred_clean == result.y
    if result.target is None:
        attacked = correct
        success = attacked & (result.pred_adv != result.y)
    else:
        attacked = correct & (result.target != result.y)
        success = attacked & (result.pred_adv == result.target)
    norms = threat.norm_of(result.x_adv - result.x)
    n_attacked = int(attacked.sum())
    return AttackSummary(
        attack=attack,
        norm=threat.norm,
        eps=threat.eps,
        n_samples=int(result.y.numel()),
        clean_accuracy=float(correct.float().mean()),
        adversarial_accuracy=float((result.pred_adv == result.y).float().mean()),
        attacked=n_attacked,
        successes=int(success.sum()),
        success_rate=float(success.sum()) / n_attacked if n_attacked else 0.0,
        mean_norm=float(norms.mean()),
        max_norm=float(norms.max()),
        target=None if target is None else str(target),
        seconds=round(seconds, 4),
    )
