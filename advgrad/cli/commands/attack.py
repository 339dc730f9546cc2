"""``advgrad attack``: adversarial examples for a model and data, with a summary."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated, Optional

import torch
import typer

from advgrad.attacks import get_attack
from advgrad.attacks.base import eot_draws
from advgrad.cli import shared_options as o
from advgrad.cli.common import emit_json, emit_text, open_and_describe, warn_ignored, warn_large_eps
from advgrad.cli.console import handle_errors, info, out, sweep_progress, warn
from advgrad.cli.report_options import HtmlOpt, RecordsOpt
from advgrad.core.eps import eps_text, parse_eps
from advgrad.core.errors import UsageError
from advgrad.core.numeric import check_number
from advgrad.core.targets import parse_target
from advgrad.core.threat import ThreatModel, parse_norm
from advgrad.evaluation.generate import generate
from advgrad.evaluation.records import attack_records
from advgrad.io.files import write_tensors
from advgrad.io.inputs import InputOptions
from advgrad.io.output_paths import check_output_paths, images_file, images_folder, input_paths
from advgrad.io.records_file import RecordWriter, record_format
from advgrad.report.feature_bars import feature_bars
from advgrad.report.fmt import norm_symbol
from advgrad.report.html_attack import render_attack_html
from advgrad.report.images import adversarial_grid
from advgrad.report.table import summary_table

IMAGES_FILE = "adversarial.png"  # what --images FOLDER holds


@handle_errors
@o.with_inputs
@o.with_attack_options
def attack(
    method: Annotated[
        str,
        typer.Option(
            "--method",
            "--attack",
            "-a",
            help="Attack to run (see `advgrad attacks`); --attack is the same option, as in `advgrad eval`.",
            rich_help_panel=o.ATTACK_PANEL,
        ),
    ] = "pgd",
    eps: Annotated[
        str,
        typer.Option(
            "--eps", "-e", help="Budget ε: a number or a fraction such as 8/255.", rich_help_panel=o.ATTACK_PANEL
        ),
    ] = "0.1",
    norm: o.NormOpt = "inf",
    attack_opts: dict = None,  # type: ignore[assignment]  # --steps, --momentum…: see with_attack_options
    target: o.TargetOpt = None,
    predictions: o.PredictionsOpt = None,
    early_stop: Annotated[
        bool,
        typer.Option(
            "--early-stop/--no-early-stop",
            help="Stop attacking a sample once it is fooled (default: spend the full step budget).",
            rich_help_panel=o.ATTACK_PANEL,
        ),
    ] = False,
    out_file: Annotated[
        Optional[Path],
        typer.Option(
            "--out",
            "-o",
            help="Write x, x_adv, y, pred_clean, pred_adv and the parameters to this .pt file (a table's x and x_adv "
            "in the features' own units, with names and bounds).",
            rich_help_panel=o.OUTPUT_PANEL,
            show_default=False,
        ),
    ] = None,
    images: o.ImagesOpt = None,
    json_out: o.JsonOpt = None,
    html: HtmlOpt = None,
    records: RecordsOpt = None,
    verbose: o.VerboseOpt = False,
    io_options: InputOptions = InputOptions(),
) -> None:
    """Run one attack and report how many samples it fools.

    Options an attack does not take are ignored with a warning (`advgrad attacks` lists each
    attack's parameters). A minimal-perturbation attack (deepfool, cw, fab, fab-t) searches without a budget;
    its result is the minimal adversarial example where that is within ε, else that example
    projected onto the ε-ball (which then usually fails).

    Example: advgrad attack --method pgd --eps 8/255 --steps 40 --out adv.pt --images adv/ --html attack.html
    """
    if json_out is not None and html is not None and str(json_out) == str(html) == "-":
        raise UsageError("only one output can go to stdout ('-'), got --json and --html")
    if records is not None:
        record_format(records)
    picture = images_file(images, IMAGES_FILE)
    check_output_paths(
        {"--out": out_file, "--json": json_out, "--html": html, "--records": records, "--images": picture},
        input_paths(io_options),
        {"--images": images_folder(images)},
    )
    spec = get_attack(method)
    if predictions is not None:  # refused before anything is loaded
        check_number(predictions, "predictions", integer=True, minimum=1)
    threat = ThreatModel(parse_norm(norm), parse_eps(eps))
    spec.check_norm(threat.norm)
    warn_ignored(spec, attack_opts)
    params = spec.make_params(**attack_opts)
    goal = parse_target(target)
    inputs = open_and_describe(io_options)
    threat = dataclasses.replace(threat, fixed=inputs.fixed)  # a table's immutable features
    warn_large_eps(threat.norm, [threat.eps], inputs)
    total = inputs.n_samples * params.passes_per_sample(inputs.probe.num_classes) if threat.eps > 0 else None
    with sweep_progress(
        total, batches=-(-inputs.n_samples // io_options.batch_size), verbose=verbose, eps_text=lambda _: eps
    ) as monitor:
        result, summary = generate(
            inputs.model.module,
            inputs.batches(),
            spec,
            params,
            threat,
            target=goal,
            seed=io_options.seed,
            early_stop=early_stop,
            device=inputs.device,
            monitor=monitor,
            predictions=predictions,
        )
    summary.eps_label = eps_text(eps)
    if summary.nonfinite_clean or summary.nonfinite_inputs:
        warn(
            f"non-finite-logits: {summary.nonfinite_clean} samples have NaN or infinite clean logits (counted as "
            f"misclassified); {spec.name} at ε={threat.eps:g} met NaN or infinite logits on {summary.nonfinite_inputs} "
            "inputs it tried (never counted as fooled); see `advgrad docs checks`, section non-finite-logits"
        )
    resolved = params.resolve(threat).to_dict()
    space = inputs.space
    saved = result.to_dict()
    if space is not None:  # a table: x and x_adv in the features' own units, with names and bounds
        saved.update(x=space.to_raw(result.x), x_adv=space.to_raw(result.x_adv), table=space.to_dict())
    if out_file is not None:
        write_tensors(
            out_file,
            {
                **saved,
                "attack": spec.name,
                "params": resolved,
                "threat": threat.to_dict(),
                "target": result.target if result.target is not None else None,
                "seed": io_options.seed,
                "early_stop": early_stop,
                "inputs": io_options.to_dict(),  # how the model was loaded: advgrad rescore loads it again
            },
        )
        info(f"wrote {out_file}")
    if records is not None:
        found = attack_records(
            result,
            threat.norm_of(result.x_adv - result.x),
            params.passes_per_sample(inputs.probe.num_classes),
            result.target,
        )
        with RecordWriter(records) as writer:
            writer.write(found.rows([spec.name], [eps_text(eps)], None))
        info(f"wrote {records}")
    if images is not None and space is not None:
        path = _feature_plot(spec.name, eps_text(eps), saved, space, picture)
        info(f"wrote {path}")
    elif images is not None:
        path = adversarial_grid(
            result.x,
            result.x_adv,
            result.y,
            result.pred_clean,
            result.pred_adv,
            picture,
            class_names=inputs.class_names,
            norm=threat.norm,
            eps_label=eps_text(eps),
            title=f"{spec.name}, {norm_symbol(threat.norm)} ε = {eps_text(eps)} · {inputs.model.description}",
        )
        info(f"wrote {path}")
    report = {**summary.to_dict(), "params": resolved, "seed": io_options.seed, "early_stop": early_stop}
    passes = predictions if predictions is not None else eot_draws(params)
    if passes > 1:  # a randomized model's predictions were judged over this many passes
        report["predictions"] = passes
    used_stdout = emit_json(json_out, report)
    if html is not None:
        table = (
            None if space is None else (space.names, saved["x"], saved["x_adv"], space.lower, space.upper, space.fixed)
        )
        page = render_attack_html(
            summary,
            result,
            model=inputs.model.description,
            data=inputs.data.description,
            params=resolved,
            seed=io_options.seed,
            class_names=inputs.class_names,
            table=table,
        )
        used_stdout = emit_text(html, page) or used_stdout
    if not used_stdout:
        out.print(summary_table(summary))


def _feature_plot(attack: str, eps: str, saved: dict, space, path: Path) -> Path:
    """Per-feature perturbation bars of a table over the samples the attack fooled (all the samples
    when it fooled none)."""
    fooled = (saved["pred_clean"] == saved["y"]) & (saved["pred_adv"] != saved["y"])
    rows = fooled if bool(fooled.any()) else torch.ones_like(fooled)
    which = (
        f"the {int(rows.sum())} fooled samples"
        if bool(fooled.any())
        else f"all {int(rows.sum())} samples (none fooled)"
    )
    return feature_bars(
        space.names,
        saved["x"][rows],
        saved["x_adv"][rows],
        space.lower,
        space.upper,
        path,
        fixed=space.fixed,
        title=f"{attack} at ε={eps}: mean change per feature over {which}",
    )
