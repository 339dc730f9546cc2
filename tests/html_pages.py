"""Crafted reports of every kind the HTML pages show, for the HTML tests: attacks with image
examples, gates and checks; an attack with a certified curve (the band); common corruptions; a
table's examples; and a comparison of two reports."""

from __future__ import annotations

import re

import torch
from report_helpers import crafted

from advgrad.core.results import CorruptionPoint, CorruptionResults, Example, RobustnessReport
from advgrad.verdicts.checks import run_checks
from advgrad.verdicts.regressions import compare_reports

EPS = (0.0, 8 / 255, 0.1)
POINT = re.compile(r'<(?:circle|rect) class="pt"')  # one per point of the robustness curves
CORRUPTION_POINT = re.compile(r'<(?:circle|rect) class="cpt"')


def image_examples(names, count: int = 3, shape=(1, 8, 8), seed: int = 0) -> dict[str, list[Example]]:
    """``count`` examples per attack: random images, each moved by 8/255 and misclassified 8 → 1."""
    g = torch.Generator().manual_seed(seed)
    found = {}
    for name in names:
        rows = []
        for _ in range(count):
            x = torch.rand(shape, generator=g) * 0.9
            rows.append(Example(name, 8 / 255, x, (x + 8 / 255).clamp(0, 1), 8, 1))
        found[name] = rows
    return found


def attack_report(names=("fgsm", "pgd"), *, examples: int = 3) -> RobustnessReport:
    """Two attacks over three ε, one gate passed and one failed, the checks run, image examples."""
    robust = {"fgsm": [95, 60, 20], "pgd": [95, 47, 0]}
    report = crafted({n: robust.get(n, [95, 50, 10]) for n in names}, eps=EPS, class_counts=[50, 50])
    report.eps_labels = ["0", "8/255", "0.1"]
    report.checks = run_checks(report)
    report.gates = [
        {"gate": "pgd@8/255=0.40", "attack": "pgd", "eps": 8 / 255, "threshold": 0.4, "accuracy": 0.47, "passed": True},
        {"gate": "fgsm@0.1=0.3", "attack": "fgsm", "eps": 0.1, "threshold": 0.3, "accuracy": 0.2, "passed": False},
    ]
    report.examples = image_examples(names, examples)
    return report


def certified_report() -> RobustnessReport:
    """An attack and a certified curve: the page draws the band between them."""
    report = crafted({"pgd": [95, 70, 40], "crown": [95, 50, 10]}, eps=EPS, kinds={"crown": "certified"})
    report.checks = run_checks(report)
    return report


def corruption_report(attacks: bool = True) -> RobustnessReport:
    """Two corruptions at three severities (and, with ``attacks``, one attack)."""
    report = crafted({"fgsm": [95, 60, 20]} if attacks else {}, eps=EPS if attacks else (0.0,))
    if not attacks:
        report.eps = []
    points = [
        CorruptionPoint(name, s, acc, round(100 * acc))
        for name, accs in (("gaussian_noise", (0.9, 0.7, 0.5)), ("brightness", (0.94, 0.93, 0.9)))
        for s, acc in zip((1, 2, 3), accs, strict=True)
    ]
    report.corruptions = CorruptionResults([1, 2, 3], points, sum(p.accuracy for p in points) / len(points))
    report.checks = run_checks(report)
    return report


def table_report() -> RobustnessReport:
    """A table's run: examples are vectors of 4 features, the data carries the feature space."""
    report = crafted({"fgsm": [95, 60, 20], "pgd": [95, 47, 0]}, eps=EPS)
    report.data["table"] = {
        "features": ["age", "income", "score", "visits"],
        "lower": [18.0, 0.0, -4.0, 0.0],
        "upper": [90.0, 100000.0, 4.0, 20.0],
        "stretch": [1.0, 1.0, 1.0, 0.0],
    }
    x = torch.tensor([0.5, 0.5, 0.5, 0.5])
    delta = torch.tensor([0.1, 0.0, 0.05, 0.0])
    report.examples = {name: [Example(name, 0.1, x, x + delta, 1, 0)] * 2 for name in ("fgsm", "pgd")}
    report.checks = run_checks(report)
    return report


def comparison():
    """A baseline and a new report where pgd at 8/255 regressed (47% → 30%) and the rest held."""
    baseline = attack_report()
    new = crafted({"fgsm": [95, 60, 20], "pgd": [95, 30, 0]}, eps=EPS, class_counts=[50, 50])
    new.checks = run_checks(new)
    return compare_reports(baseline, new, 0.02, names=("base.json", "new.json")), baseline, new
