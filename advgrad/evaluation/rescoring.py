"""Re-scoring a report from the adversarial inputs it kept: every accuracy again, from a fresh
forward pass of the model, with the samples named where a verdict differs.

For ``advgrad eval --save-adversarial DIR`` a sample counts as correct cleanly when the model
classifies its clean input correctly (with finite logits), and as fooled by an attack from the
first ε at which its kept example counts: the example must lie in that ε-ball (and [0, 1]) and be
misclassified. Robust at ε: correct cleanly and not fooled at ε. Each count is compared with the
report's, and each sample's verdict with the one the run saved. For ``advgrad attack --out`` the
clean and adversarial predictions are made again and compared with those saved.

A model that is deterministic reproduces every number exactly; one that is not (randomized
defences, non-deterministic GPU kernels near a decision boundary) shows where it differs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from advgrad.core.errors import UsageError
from advgrad.core.losses import finite_rows
from advgrad.core.results import RobustnessReport
from advgrad.core.threat import ThreatModel
from advgrad.io.adversarial_dir import read_batches, read_manifest


@dataclass
class Rescored:
    """One number of the report: ``name`` (``clean`` or ``ATTACK@EPS``), the count of correct samples
    the report gives and the one re-scoring gives, and the samples whose verdict differs."""

    name: str
    reported: int
    rescored: int
    differing: list[int] = field(default_factory=list)

    @property
    def same(self) -> bool:
        return self.reported == self.rescored and not self.differing

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "reported": self.reported, "rescored": self.rescored, "differing": self.differing}


def _predict(model: nn.Module, x: Tensor, device: torch.device) -> Tensor:
    """The model's predictions on ``x`` (−1 where the logits are not finite)."""
    with torch.no_grad():
        logits = model(x.to(device))
    return torch.where(finite_rows(logits), logits.argmax(dim=1), -1).cpu()


class _Counts:
    """Running counts and differing samples, per number, in the order first seen."""

    def __init__(self) -> None:
        self.items: dict[str, Rescored] = {}

    def add(self, name: str, first: int, saved: Tensor, again: Tensor) -> None:
        item = self.items.setdefault(name, Rescored(name, 0, 0))
        item.reported += int(saved.sum())
        item.rescored += int(again.sum())
        item.differing += (first + (saved != again).nonzero().squeeze(1)).tolist()


def rescore_eval(
    model: nn.Module, report: RobustnessReport, folder: str | Path, device: torch.device
) -> list[Rescored]:
    """Every clean and attack accuracy of ``report`` again from the examples kept in ``folder``."""
    manifest = read_manifest(folder)
    attacks = [name for name in manifest["attacks"] if name in report.attacks]
    if attacks != list(manifest["attacks"]) or not _same_eps(manifest["eps"], report.eps):
        raise UsageError(f"{folder} holds the examples of another run than this report (attacks or ε differ)")
    counts = _Counts()
    labels = manifest["eps_labels"]
    fixed = tuple(manifest.get("fixed", ()))
    for batch in read_batches(folder, manifest["batches"]):
        first, x, y = batch["first"], batch["x"], batch["y"]
        correct = _predict(model, x, device) == y
        counts.add("clean", first, batch["clean_correct"], correct)
        for name in attacks:
            saved = batch["attacks"][name]
            fooled_at = _fooled_at(model, x, y, saved, manifest, fixed, device)
            kept = torch.full_like(y, -1)
            if saved["index"] is not None:
                kept[saved["index"]] = saved["fooled_at"]
            for j, label in enumerate(labels):
                was = batch["clean_correct"] & ~((kept >= 0) & (kept <= j))
                now = correct & ~((fooled_at >= 0) & (fooled_at <= j))
                counts.add(f"{name}@{label}", first, was, now)
    found = list(counts.items.values())
    _against_report(found, report, attacks, labels)
    return found


def _fooled_at(
    model: nn.Module, x: Tensor, y: Tensor, saved: dict, manifest: dict, fixed: tuple, device: torch.device
) -> Tensor:
    """Per sample, the first ε index at which its kept example fools the model (in the ball), else −1."""
    out = torch.full_like(y, -1)
    index = saved["index"]
    if index is None or not index.numel():
        return out
    pred = _predict(model, saved["x_adv"], device)
    inside = torch.zeros_like(index, dtype=torch.bool)
    for j in saved["fooled_at"].unique().tolist():  # one check per ε, not per sample
        at = saved["fooled_at"] == j
        threat = ThreatModel(manifest["norm"], manifest["eps"][j], fixed=fixed)
        inside[at] = threat.contains(saved["x_adv"][at], x[index][at]).cpu()
    hit = (pred >= 0) & (pred != y[index]) & inside
    out[index[hit]] = saved["fooled_at"][hit]
    return out


def _same_eps(a: list[float], b: list[float]) -> bool:
    return len(a) == len(b) and all(abs(u - v) <= 1e-12 * max(1.0, abs(u)) for u, v in zip(a, b, strict=True))


def _against_report(found: list[Rescored], report: RobustnessReport, attacks: list[str], labels: list[str]) -> None:
    """The report's own counts take the place of the saved ones: a folder that sums to other counts
    than the report's shows as a difference too."""
    by_name = {r.name: r for r in found}
    if "clean" in by_name:
        by_name["clean"].reported = report.clean_correct
    for name in attacks:
        for j, point in enumerate(report.attacks[name].points):
            if f"{name}@{labels[j]}" in by_name:
                by_name[f"{name}@{labels[j]}"].reported = point.robust


def rescore_attack(
    model: nn.Module, saved: dict[str, Any], device: torch.device, batch_size: int = 256
) -> list[Rescored]:
    """The clean accuracy and the accuracy under attack of an ``advgrad attack --out`` file again."""
    for key in ("x", "x_adv", "y", "pred_clean", "pred_adv"):
        if not isinstance(saved.get(key), Tensor):
            raise UsageError(f"the file holds no tensor {key!r}: not written by advgrad attack --out")
    counts = _Counts()
    eps = saved.get("threat", {}).get("eps", "?")
    name = f"{saved.get('attack', 'attack')}@{eps:g}" if isinstance(eps, float) else f"{saved.get('attack')}@{eps}"
    y = saved["y"]
    for start in range(0, y.shape[0], batch_size):
        part = slice(start, start + batch_size)
        clean = _predict(model, saved["x"][part], device)
        adv = _predict(model, saved["x_adv"][part], device)
        adv = torch.where(adv >= 0, adv, clean)  # as advgrad attack counts non-finite logits
        counts.add("clean", start, saved["pred_clean"][part] == y[part], clean == y[part])
        counts.add(name, start, saved["pred_adv"][part] == y[part], adv == y[part])
    return list(counts.items.values())
