"""``advgrad certify``: certified accuracy per ε, a lower bound on robust accuracy (IBP, CROWN)."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from advgrad.cli import options as o
from advgrad.cli import report_options as r
from advgrad.cli.common import open_and_describe
from advgrad.cli.config_file import META_KEY
from advgrad.cli.console import handle_errors
from advgrad.cli.distributed import join_run
from advgrad.cli.outputs import Outputs, check_report_paths, describe_run, exit_on_failures, finish_report
from advgrad.cli.state import sigterm_as_interrupt
from advgrad.errors import UsageError
from advgrad.gates import CERTIFIED, check_gates_apply, parse_gates
from advgrad.geometry import get_geometry
from advgrad.io.inputs import InputOptions
from advgrad.runtime import parse_precision
from advgrad.sweep import EvalConfig, evaluate
from advgrad.threat import parse_eps_labelled, parse_norm

DEFAULT_METHOD = "crown"
BOUNDS_PANEL = "Bounds"


def check_bounds_runtime(io_options: InputOptions, flag: str) -> None:
    """Bounds are computed on the float32 model itself: refuse reduced precision (its rounding would
    make a certificate unsound) and --compile (the bounds read the model's graph, not compiled code)."""
    if parse_precision(io_options.precision) != "fp32":
        raise UsageError(f"{flag} computes bounds in float32 only; drop --precision {io_options.precision}")
    if io_options.compile:
        raise UsageError(f"{flag} reads the model's graph, not compiled code; drop --compile")


@handle_errors
@o.with_inputs
def certify_command(
    ctx: typer.Context,
    config_file: r.ConfigOpt = None,
    method: Annotated[
        str,
        typer.Option(
            "--method",
            help="Bound method: ibp (interval bounds, fast, loose), crown (linear relaxation, tight) or crown-ibp "
            "(CROWN with IBP intermediate bounds).",
            rich_help_panel=BOUNDS_PANEL,
        ),
    ] = DEFAULT_METHOD,
    eps: Annotated[
        Optional[str],
        typer.Option(
            "--eps",
            "-e",
            help="ε values, comma-separated; fractions allowed (0,1/255,2/255). (default: 0,0.02,0.05,0.1,0.2,0.3 for L∞; 0,0.25,0.5,1,1.5,2 for L2)",
            rich_help_panel=BOUNDS_PANEL,
            show_default=False,
        ),
    ] = None,
    norm: Annotated[
        str,
        typer.Option("--norm", help="Threat model: inf or 2.", rich_help_panel=BOUNDS_PANEL),
    ] = "inf",
    json_out: o.JsonOpt = None,
    csv_out: r.CsvOpt = None,
    markdown: r.MarkdownOpt = None,
    plot: r.PlotOpt = None,
    fail_under: r.FailUnderOpt = None,
    io_options: InputOptions = InputOptions(),
) -> None:
    """Certified accuracy per ε: the share of samples whose prediction provably cannot change.

    A sample counts when it is classified correctly and the lower bound of z_y − z_j over the
    ε-ball ∩ [0, 1] is positive for every class j ≠ y. Certified accuracy is a lower bound on the
    true robust accuracy, as an attack's accuracy is an upper bound (`advgrad eval --certify` shows
    both). A model with an operator the bounds do not support is refused (exit 2). Gates:
    --fail-under certified@EPS=ACC.

    Example: advgrad certify --method crown --eps 0,0.01,0.02 --json certified.json

    Example: advgrad eval --attack pgd --certify crown --eps 0,0.01,0.02 --plot sandwich.png
    """
    threat_norm = parse_norm(norm)
    eps_given = parse_eps_labelled(eps if eps is not None else get_geometry(threat_norm).default_eps)
    config = EvalConfig(
        eps=[v for v, _ in eps_given],
        eps_labels=[t for _, t in eps_given],
        norm=threat_norm,
        seed=io_options.seed,
        gradient_evidence=False,
        certify=method.strip().lower(),
    )
    check_bounds_runtime(io_options, "advgrad certify")
    gates = parse_gates(fail_under)
    check_gates_apply(gates, [config.certify, CERTIFIED], config.eps)
    outputs = Outputs(json=json_out, csv=csv_out, markdown=markdown, plot=plot)
    check_report_paths(outputs, io_options, ctx.meta.get(META_KEY))
    with join_run(io_options) as process, sigterm_as_interrupt():
        inputs = open_and_describe(io_options, process.device)
        run = describe_run([], config, inputs, gates, outputs, strict=False, config_file=ctx.meta.get(META_KEY))
        report = evaluate(
            inputs.model.module,
            inputs.batches(process.rank, process.world_size),
            [],
            config,
            device=inputs.device,
            shard=process.shard,
        )
        if not process.is_main:
            return
        finish_report(report, inputs, run, gates, outputs, strict=False)
    exit_on_failures(report, strict=False)
