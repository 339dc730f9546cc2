"""A RobustBench leaderboard entry from a report (``advgrad eval --robustbench-json FILE``).

RobustBench (Croce et al. 2021, "RobustBench: a standardized adversarial robustness benchmark")
lists each model as one JSON file, ``model_info/<dataset>/<threat model>/<Name>.json``, whose fields
are the paper (``link``, ``name``, ``authors``, ``venue``), the model (``architecture``,
``additional_data``, ``number_forward_passes``), the threat (``dataset``, ``eps``) and the numbers as
percentages with two decimals in strings: ``clean_acc``, ``reported`` (the paper's own) and
``autoattack_acc`` (or ``corruptions_acc`` on the corruptions board). advgrad fills what the run
measured: the numbers, the dataset, ε and the forward passes per prediction; the rest is null and
named in ``advgrad.to_fill``, with what advgrad noticed in ``advgrad.notes`` (the key ``advgrad``
is advgrad's, not RobustBench's: drop it before submitting).

``autoattack_acc`` is filled only from a curve of ``--attack autoattack`` (or ``autoattack-rand``
for a randomized model): the leaderboard's number is AutoAttack's, not another attack's.
"""

from __future__ import annotations

from typing import Any

from advgrad.core.results import RobustnessReport

BOARD_DATASETS = ("cifar100", "cifar10", "imagenet")  # longest prefix first: cifar100 before cifar10
THREAT_MODELS = {"inf": "Linf", "2": "L2", "1": "L1"}
AUTOATTACK_NAMES = ("autoattack", "autoattack-rand")
FULL_TEST_SET = {"cifar10": 10_000, "cifar100": 10_000, "imagenet": 5_000}  # samples a leaderboard entry uses
ALL_CORRUPTIONS = 15 * 5  # corruptions × severities of the corruptions board
NAMED_ARCHITECTURES = ("torchvision", "timm")  # model kinds whose description names the architecture
PAPER_FIELDS = ("link", "name", "authors", "venue", "reported", "footnote")


def _share(value: float | None) -> str | None:
    """A share as RobustBench writes it: percent with two decimals, in a string (``"93.27"``)."""
    return None if value is None else f"{100 * value:.2f}"


def _dataset(report: RobustnessReport) -> str | None:
    source = str(report.data.get("source") or "").lower()
    return next((name for name in BOARD_DATASETS if source.startswith(name)), None)


def _autoattack(report: RobustnessReport):
    return next((c for name, c in report.attacks.items() if name.lower() in AUTOATTACK_NAMES), None)


def _architecture(report: RobustnessReport) -> str | None:
    if report.model.get("kind") in NAMED_ARCHITECTURES:
        return str(report.model.get("description", "")).split(" ", 1)[-1] or None
    return None


def _board(report: RobustnessReport, notes: list[str]) -> tuple[str | None, str | None, str | None, str | None]:
    """(threat model, ε label, autoattack_acc, corruptions_acc)."""
    corruptions = report.corruptions
    if corruptions is not None and not report.attacks:
        if len(corruptions.points) != ALL_CORRUPTIONS:
            notes.append(
                f"the corruptions board averages all 15 corruptions at 5 severities; this run has {len(corruptions.points)} "
                "points (use --corruptions all)"
            )
        return "corruptions", None, None, _share(corruptions.mean_accuracy)
    threat = THREAT_MODELS.get(report.norm, f"L{report.norm}")
    positive = [e for e in report.eps if e > 0]
    eps = report.eps_label(positive[-1]) if positive else None
    if len(positive) > 1:
        notes.append(f"the run has {len(positive)} values of ε > 0; the entry uses the largest, {eps}")
    curve = _autoattack(report)
    if curve is None:
        notes.append("autoattack_acc is AutoAttack's number: run `advgrad eval --attack autoattack` to fill it")
        return threat, eps, None, None
    if curve.params.get("as_published") is False:
        notes.append(f"{curve.attack} ran with budgets other than the published version's: not a leaderboard number")
    if report.config.get("target"):
        notes.append(
            "the run was targeted; the leaderboard's AutoAttack is untargeted (its own targeted stages inside)"
        )
    accuracy = curve.points[-1].accuracy if positive else None
    return threat, eps, _share(accuracy), None


def robustbench_entry(report: RobustnessReport) -> dict[str, Any]:
    """The leaderboard entry's fields in RobustBench's order, then ``advgrad``: the threat model, the
    file the entry goes to, the fields to fill by hand and notes on what would keep it off the board."""
    notes: list[str] = []
    threat, eps, autoattack_acc, corruptions_acc = _board(report, notes)
    dataset = _dataset(report)
    if dataset is None:
        notes.append(
            f"RobustBench's boards are {', '.join(sorted(BOARD_DATASETS))}; this run's data is "
            f"{report.data.get('source', 'unknown')}"
        )
    elif report.n_samples < FULL_TEST_SET[dataset]:
        notes.append(
            f"a leaderboard entry is measured on {FULL_TEST_SET[dataset]:,} test samples; this run used {report.n_samples:,}"
        )
    passes = int(report.config.get("predictions") or 1)
    entry: dict[str, Any] = {
        "link": None,
        "name": None,
        "authors": None,
        "additional_data": None,
        "number_forward_passes": passes,
        "dataset": dataset,
        "venue": None,
        "architecture": _architecture(report),
        "eps": eps,
        "clean_acc": _share(report.clean_accuracy),
        "reported": None,
    }
    if threat == "corruptions":
        entry["corruptions_acc"] = corruptions_acc
    else:
        entry["autoattack_acc"] = autoattack_acc
    entry["footnote"] = None
    to_fill = [k for k, v in entry.items() if v is None and not (k == "eps" and threat == "corruptions")]
    entry["advgrad"] = {
        "threat_model": threat,
        "file": f"model_info/{dataset or '<dataset>'}/{threat}/<Name>.json",
        "to_fill": to_fill,
        "notes": notes,
        "samples": report.n_samples,
        "model": report.model.get("description") or report.model.get("source"),
        "advgrad": report.versions.get("advgrad"),
    }
    return entry
