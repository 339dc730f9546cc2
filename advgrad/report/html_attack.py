"""One attack's result as an HTML page (``advgrad attack --html``): the summary on top, then
adversarial examples (images) or the mean change per feature (a table), and the parameters."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from advgrad.evaluation.generate import AdversarialSet, AttackSummary
from advgrad.report.fmt import eps_label, norm_sub, norm_symbol, num, pct
from advgrad.report.html_gallery import Item, class_label, feature_chart, image_cards
from advgrad.report.html_page import facts, html_table, json_block, page
from advgrad.report.plot import MAX_EXAMPLES


def _shown(result: AdversarialSet) -> torch.Tensor:
    """Indices of the samples the page shows: the fooled ones (correct before, wrong after),
    or all of them when none was fooled; at most :data:`MAX_EXAMPLES` when they are images."""
    fooled = (result.pred_clean == result.y) & (result.pred_adv != result.y)
    rows = fooled if bool(fooled.any()) else torch.ones_like(fooled)
    return rows.nonzero().flatten()


def summary_rows(summary: AttackSummary) -> list[list[str]]:
    what = "reached target" if summary.target is not None else "fooled"
    sub = norm_sub(summary.norm)
    rows = [
        ["samples", str(summary.n_samples)],
        ["clean accuracy", pct(summary.clean_accuracy)],
        ["accuracy under attack", pct(summary.accuracy)],
        [f"success rate ({what})", f"{pct(summary.success_rate)} ({summary.successes}/{summary.attacked})"],
        [f"mean ‖δ‖{sub}", num(summary.mean_norm)],
        [f"max ‖δ‖{sub}", num(summary.max_norm)],
        ["seconds", f"{summary.seconds:.2f}"],
    ]
    if summary.target is not None:
        rows.append(["target", summary.target])
    return rows


def render_attack_html(
    summary: AttackSummary,
    result: AdversarialSet,
    *,
    model: str,
    data: str,
    params: dict,
    seed: int,
    class_names: Sequence[str] | None = None,
    table: tuple | None = None,
    title: str = "advgrad attack",
) -> str:
    """The page of one attack. ``table`` (a table's data): ``(names, x, x_adv, lower, upper,
    fixed)`` with x and x_adv in the features' own units."""
    eps = eps_label(summary.eps, summary.eps_label)
    items = [
        ("Model", model),
        ("Data", f"{data} ({summary.n_samples} samples)"),
        (
            "Threat model",
            f"{norm_symbol(summary.norm)}, ε = {eps}" + (f", targeted ({summary.target})" if summary.target else ""),
        ),
        ("Clean accuracy", pct(summary.clean_accuracy)),
        (f"Accuracy under {summary.attack}", pct(summary.accuracy)),
    ]
    headline = facts(items, ids={"Clean accuracy": "clean-accuracy"})
    rows = _shown(result)
    if table is not None:
        names, x, x_adv, lower, upper, fixed = table
        which = f"the {len(rows)} samples shown" if len(rows) < len(result.y) else f"all {len(rows)} samples"
        shown = feature_chart(
            names,
            x[rows],
            x_adv[rows],
            lower,
            upper,
            fixed,
            title=f"{summary.attack} at ε={eps}: mean change per feature over {which}",
            chart_id="bars",
        )
    else:
        picked = rows[:MAX_EXAMPLES].tolist()
        examples = [
            Item(
                result.x[i],
                result.x_adv[i],
                class_label(class_names, int(result.y[i])),
                class_label(class_names, int(result.pred_adv[i])),
                f"#{i}",
            )
            for i in picked
        ]
        shown = image_cards(examples, summary.norm, [10**9])
    sections = [
        (
            "summary",
            "Summary",
            html_table(
                ["measure", "value"],
                summary_rows(summary),
                caption=f"{summary.attack} at ε={eps}",
                sortable=False,
                text_columns=(0,),
            ),
        ),
        ("examples", "Examples", shown),
        (
            "config",
            "Parameters",
            json_block("The attack's parameters and seed", {"attack": summary.attack, "params": params, "seed": seed}),
        ),
    ]
    footer = "Written by advgrad attack. One self-contained file: it opens offline and fetches nothing."
    return page(f"{title}: {summary.attack}", f"{title}: {summary.attack}", sections, headline, footer)
