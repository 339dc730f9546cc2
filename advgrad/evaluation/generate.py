"""Adversarial examples for a whole data source, with a summary: what ``advgrad attack`` does."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn

from advgrad.attacks.base import AttackParams, AttackSpec, eot_draws, run_attack
from advgrad.core.errors import UsageError
from advgrad.core.gradient import frozen
from advgrad.core.losses import finite_rows
from advgrad.core.numeric import check_number
from advgrad.core.results import float32_decimal
from advgrad.core.seeding import generator_for
from advgrad.core.targets import resolve_targets
from advgrad.core.threat import ThreatModel
from advgrad.evaluation.counting import CountingModel
from advgrad.evaluation.randomized import wrong_in_repeats
from advgrad.evaluation.records import clean_margin
from advgrad.execution.progress import Monitor, PassCounter
from advgrad.io.probe import check_logits


@dataclass
class AttackSummary:
    """What an attack did to a set of samples.

    ``accuracy`` is the accuracy under attack, under the same name as in ``advgrad eval``'s report.
    ``success_rate`` is over the ``attacked`` samples: those classified correctly before the
    attack (and, when targeted, whose label is not the target). Untargeted success means
    misclassified; targeted success means classified as the target. Norms are over every sample
    in the threat model's norm. A sample whose clean logits hold a NaN or ±∞ has no prediction
    (``pred_clean`` −1): it counts as misclassified and is not attacked (``nonfinite_clean``). A
    sample whose logits at its adversarial example are not finite is never a success: it keeps its
    clean input (``nonfinite_adversarial`` counts them). ``nonfinite_inputs`` counts the inputs the
    attack tried on which the logits were not finite.
    """

    attack: str
    norm: str
    eps: float
    n_samples: int
    clean_accuracy: float
    accuracy: float
    attacked: int
    successes: int
    success_rate: float
    mean_norm: float
    max_norm: float
    target: str | None
    seconds: float
    eps_label: str | None = None  # ε as the user wrote it (8/255)
    nonfinite_clean: int = 0
    nonfinite_inputs: int = 0
    nonfinite_adversarial: int = 0

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
    margin_clean: Tensor | None = None  # z_y − max_{k≠y} z_k at x (NaN for non-finite logits)
    margin_adv: Tensor | None = None  # the same at x_adv

    def to_dict(self) -> dict[str, Tensor]:
        out = {"x": self.x, "x_adv": self.x_adv, "y": self.y, "pred_clean": self.pred_clean, "pred_adv": self.pred_adv}
        if self.margin_clean is not None and self.margin_adv is not None:
            out.update(margin_clean=self.margin_clean, margin_adv=self.margin_adv)
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
    predictions: int | None = None,
) -> tuple[AdversarialSet, AttackSummary]:
    """Attack every sample of ``batches`` and summarise; tensors are returned on the CPU.

    Every sample is attacked (even one misclassified already) except, in a targeted attack,
    those whose label is the target: they are returned unchanged. ``progress`` is called with
    the samples done after each batch; ``monitor`` (:mod:`advgrad.execution.progress`) hears each batch's
    attack begin and end and every model call in between. ``predictions`` (default: the attack's
    ``eot``) forward passes decide each prediction of a randomized model (:mod:`advgrad.evaluation.randomized`).
    """
    device = torch.device(device)
    if predictions is not None:
        check_number(predictions, "predictions", integer=True, minimum=1)
    passes = predictions if predictions is not None else eot_draws(params)
    keys = ("x", "x_adv", "y", "pred_clean", "pred_adv", "target", "margin_clean", "margin_adv")
    parts: dict[str, list[Tensor]] = {k: [] for k in keys}
    started = time.perf_counter()
    n = 0
    nonfinite = [0, 0]  # samples with non-finite clean logits; with non-finite logits at x_adv
    counted = CountingModel(model)
    with frozen(model):
        for b, (x, y) in enumerate(batches):
            x, y = x.to(device), y.to(device)
            x_adv, logits, targets = attack_batch(
                counted,
                x,
                y,
                spec,
                params,
                threat,
                target=target,
                seed=seed,
                batch_index=b,
                early_stop=early_stop,
                monitor=monitor,
            )
            finite = finite_rows(logits)
            pred_clean = torch.where(finite, logits.argmax(dim=1), torch.full_like(y, -1))
            with torch.no_grad():
                logits_adv = counted(x_adv)
            lost = finite & ~finite_rows(logits_adv)  # never a success: back to the clean input
            x_adv[lost] = x[lost]
            pred_adv = torch.where(finite_rows(logits_adv), logits_adv.argmax(dim=1), pred_clean)
            pred_clean, pred_adv = _repeated(counted, x, x_adv, y, targets, pred_clean, pred_adv, passes)
            nonfinite[0] += int((~finite).sum())
            nonfinite[1] += int(lost.sum())
            for key, value in (
                ("x", x),
                ("x_adv", x_adv),
                ("y", y),
                ("pred_clean", pred_clean),
                ("pred_adv", pred_adv),
                ("target", targets),
                ("margin_clean", clean_margin(logits, y)),
                ("margin_adv", clean_margin(torch.where(lost[:, None], logits, logits_adv), y)),
            ):
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
        data["x"],
        data["x_adv"],
        data["y"],
        data["pred_clean"],
        data["pred_adv"],
        data.get("target"),
        data["margin_clean"],
        data["margin_adv"],
    )
    summary = summarise(result, spec.name, threat, target, time.perf_counter() - started)
    summary.nonfinite_clean, summary.nonfinite_adversarial = nonfinite
    summary.nonfinite_inputs = counted.nonfinite - nonfinite[0]  # the clean pass also ran through `counted`
    return result, summary


def _repeated(
    model: nn.Module,
    x: Tensor,
    x_adv: Tensor,
    y: Tensor,
    targets: Tensor | None,
    pred_clean: Tensor,
    pred_adv: Tensor,
    passes: int,
) -> tuple[Tensor, Tensor]:
    """The predictions of a randomized model judged over ``passes`` forward passes (the attack's EOT
    count, :mod:`advgrad.evaluation.randomized`): a clean prediction becomes the first wrong one among the
    further passes, an adversarial one the first that fools (≠ y, or = the target)."""
    if passes <= 1:
        return pred_clean, pred_adv
    wrong, first = wrong_in_repeats(model, x, y, passes - 1)
    pred_clean = torch.where((pred_clean == y) & wrong, first, pred_clean)
    hit, first = wrong_in_repeats(model, x_adv, y, passes - 1, targets)
    already = pred_adv != y if targets is None else pred_adv == targets
    return pred_clean, torch.where(hit & ~already, first, pred_adv)


def attack_batch(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    spec: AttackSpec,
    params: AttackParams,
    threat: ThreatModel,
    *,
    target: int | str | Tensor | None = None,
    seed: int = 0,
    batch_index: int = 0,
    early_stop: bool = False,
    monitor: Monitor | None = None,
) -> tuple[Tensor, Tensor, Tensor | None]:
    """Attack one batch as :func:`generate` attacks its batch ``batch_index``: ``(x_adv, clean
    logits, per-sample targets or None)``. ``target`` may also be a tensor of per-sample classes.

    Randomness is seeded by (``seed``, ``batch_index``); a sample whose label is its target is
    returned unchanged, and so is one whose clean logits are NaN or infinite. ``monitor`` hears the
    attack begin and end and every model call in between. The caller freezes the model
    (:func:`advgrad.core.gradient.frozen`).
    """
    with torch.no_grad():
        logits = model(x)
    check_logits(logits, y, allow_nonfinite=True)
    finite = finite_rows(logits)  # a sample with NaN/Inf clean logits is misclassified already: not attacked
    if isinstance(target, Tensor):
        targets: Tensor | None = target.to(device=y.device, dtype=torch.long)
    else:
        targets = resolve_targets(target, logits, y, generator_for(x.device, seed, "target", batch_index))
    x_adv = x.clone()
    todo = finite if targets is None else finite & (targets != y)
    idx = todo.nonzero().squeeze(1)
    if idx.numel():
        if monitor is not None:
            monitor.begin(
                spec.name,
                threat.eps,
                params.passes_per_sample(1),
                int(idx.numel()),
                y.shape[0] * params.passes_per_sample(logits.shape[1]),
                "query" if spec.kind == "score" else "step",
            )
        x_adv[idx] = run_attack(
            spec,
            model if monitor is None else PassCounter(model, monitor),
            x[idx],
            y[idx],
            threat=threat,
            params=params,
            target=None if targets is None else targets[idx],
            generator=generator_for(x.device, seed, batch_index),
            early_stop=early_stop,
        )
        if monitor is not None:
            monitor.end()
    return x_adv, logits, targets


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
        clean_accuracy=int(correct.sum()) / int(result.y.numel()),  # exact ratios, not float32 means
        accuracy=int((result.pred_adv == result.y).sum()) / int(result.y.numel()),
        attacked=n_attacked,
        successes=int(success.sum()),
        success_rate=float(success.sum()) / n_attacked if n_attacked else 0.0,
        mean_norm=float32_decimal(float(norms.double().mean())),
        max_norm=float32_decimal(float(norms.max())),
        target=None if target is None else str(target),
        seconds=round(seconds, 4),
    )
