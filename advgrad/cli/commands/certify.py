"""``advgrad certify``: certified accuracy per ε, a lower bound on robust accuracy (IBP, CROWN),
or the certified accuracy of a smoothed classifier per L2 radius (randomized smoothing)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from advgrad.cli import report_options as r
from advgrad.cli import shared_options as o
from advgrad.cli.common import hold_fixed, open_and_describe
from advgrad.cli.config_file import META_KEY
from advgrad.cli.console import handle_errors, warn
from advgrad.cli.outputs import Outputs, check_report_paths, describe_run, exit_on_failures, finish_report
from advgrad.cli.state import run_resumable, sigterm_as_interrupt
from advgrad.cli.torchrun import join_run
from advgrad.core.errors import UsageError
from advgrad.evaluation.certified import certify_passes
from advgrad.evaluation.eval_config import EvalConfig, plan_certify
from advgrad.execution.distributed import JOIN_TIMEOUT
from advgrad.execution.runtime import parse_precision
from advgrad.io.inputs import InputOptions
from advgrad.verdicts.gates import CERTIFIED, check_gates_apply, parse_gates

DEFAULT_METHOD = "crown"
BOUNDS_PANEL = "Bounds"
SMOOTHING_PANEL = "Randomized smoothing (--method smoothing)"
BAB_PANEL = "Branch and bound (--method bab)"
SMOOTHING = "smoothing"

TimeoutOpt = Annotated[
    Optional[float],
    typer.Option(
        "--timeout",
        help="bab: seconds of branch and bound per sample; a sample still undecided then counts as unknown. "
        "(default: no limit)",
        rich_help_panel=BAB_PANEL,
        show_default=False,
        metavar="SECONDS",
    ),
]
BudgetOpt = Annotated[
    Optional[float],
    typer.Option(
        "--budget",
        help="bab: seconds of branch and bound for the whole run (each process's, under torchrun); the samples "
        "still undecided when it is spent count as unknown. (default: no limit)",
        rich_help_panel=BAB_PANEL,
        show_default=False,
        metavar="SECONDS",
    ),
]
CounterexamplesOpt = Annotated[
    Optional[Path],
    typer.Option(
        "--counterexamples",
        help="bab: save the counterexamples found, each with its sample's index in the run, the ε, label and "
        "prediction, to FILE (a torch.save dict, written atomically).",
        rich_help_panel=BAB_PANEL,
        show_default=False,
        metavar="FILE",
    ),
]


def bab_limits(config: EvalConfig, flag: str, timeout, budget, counterexamples) -> None:
    """Branch and bound's options apply to ``bab`` only: warn that they are ignored for another
    method (and refuse --counterexamples, an output that would never be written)."""
    if config.bab is not None:
        return
    if counterexamples is not None:
        raise UsageError(f"--counterexamples saves what branch and bound finds: use {flag} bab")
    given = [name for name, v in (("--timeout", timeout), ("--budget", budget)) if v is not None]
    if given:
        warn(f"{', '.join(given)} only apply to {flag} bab; ignored for {config.certify or 'a run without it'}")


def check_bounds_runtime(io_options: InputOptions, flag: str, config: EvalConfig | None = None) -> None:
    """Bounds are computed on the float32 model itself: refuse reduced precision (its rounding would
    make a certificate unsound) and --compile (the bounds read the model's graph, not compiled code).
    Randomized smoothing only runs the model forward, so it takes the model as it runs."""
    if config is not None and config.smoothing is not None:
        return
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
            help="ibp (interval bounds, fast, loose), crown (linear relaxation, tight), crown-ibp (CROWN with IBP "
            "intermediate bounds), alpha-crown (CROWN with optimised relaxations, tighter, slower), bab (branch and "
            "bound: each sample verified, falsified with a counterexample, or unknown) or smoothing (randomized "
            "smoothing: certifies a smoothed classifier, L2 only).",
            rich_help_panel=BOUNDS_PANEL,
        ),
    ] = DEFAULT_METHOD,
    eps: Annotated[
        Optional[str],
        typer.Option(
            "--eps",
            "-e",
            help="ε values, comma-separated; fractions allowed (0,1/255,2/255); for smoothing the L2 radii. "
            "(default: 0,0.02,0.05,0.1,0.2,0.3 for L∞; 0,0.25,0.5,1,1.5,2 for L2)",
            rich_help_panel=BOUNDS_PANEL,
            show_default=False,
        ),
    ] = None,
    norm: Annotated[
        Optional[str],
        typer.Option(
            "--norm",
            help="Threat model: inf or 2. (default: inf; 2 for smoothing, which certifies L2 radii only)",
            rich_help_panel=BOUNDS_PANEL,
            show_default=False,
        ),
    ] = None,
    sigma: Annotated[
        Optional[float],
        typer.Option(
            "--sigma",
            help="Standard deviation σ of the Gaussian noise, in [0, 1] pixel units; use the σ the model was "
            "trained with. (default: 0.25)",
            rich_help_panel=SMOOTHING_PANEL,
            show_default=False,
        ),
    ] = None,
    samples: Annotated[
        Optional[int],
        typer.Option(
            "--samples",
            help="Noisy copies per sample that estimate the top class's probability (N; the paper uses 100,000; "
            "larger N allows larger radii). (default: 1000)",
            rich_help_panel=SMOOTHING_PANEL,
            show_default=False,
        ),
    ] = None,
    n0: Annotated[
        Optional[int],
        typer.Option(
            "--n0",
            help="Noisy copies per sample that choose the top class, before the N that certify it. (default: 100)",
            rich_help_panel=SMOOTHING_PANEL,
            show_default=False,
        ),
    ] = None,
    alpha: Annotated[
        Optional[float],
        typer.Option(
            "--alpha",
            help="Each certificate is wrong with probability at most α. (default: 0.001)",
            rich_help_panel=SMOOTHING_PANEL,
            show_default=False,
        ),
    ] = None,
    timeout: TimeoutOpt = None,
    budget: BudgetOpt = None,
    counterexamples: CounterexamplesOpt = None,
    json_out: o.JsonOpt = None,
    csv_out: r.CsvOpt = None,
    markdown: r.MarkdownOpt = None,
    plot: r.PlotOpt = None,
    html: r.HtmlOpt = None,
    records: r.RecordsOpt = None,
    fail_under: r.FailUnderOpt = None,
    state_file: r.StateOpt = None,
    resume: r.ResumeOpt = True,
    verbose: o.VerboseOpt = False,
    dist_timeout: o.DistTimeoutOpt = JOIN_TIMEOUT,
    io_options: InputOptions = InputOptions(),
) -> None:
    """Certified accuracy per ε: the share of samples whose prediction provably cannot change.

    A sample counts when it is classified correctly and the lower bound of z_y − z_j over the
    ε-ball ∩ [0, 1] is positive for every class j ≠ y. Certified accuracy is a lower bound on the
    true robust accuracy, as an attack's accuracy is an upper bound (`advgrad eval --certify` shows
    both). A model with an operator the bounds do not support is refused (exit 2).

    --method smoothing (randomized smoothing, Cohen et al. 2019) works on any model: it certifies
    the smoothed classifier (the model's majority vote under Gaussian noise of scale --sigma) at
    each L2 radius, each certificate with confidence 1 − --alpha; samples where it abstains count
    as not certified. Gates: --fail-under certified@EPS=ACC. An interrupted run continues when run again.

    Example: advgrad certify --method crown --eps 0,0.01,0.02 --json certified.json

    --method bab (branch and bound) gives each sample a verdict: verified, falsified (a counterexample
    in the ball that a forward pass confirmed; --counterexamples FILE keeps them) or unknown (its
    --timeout or the run's --budget ran out). The report's curve counts the verified samples and the
    table shows the band verified ≤ true ≤ not falsified, "exact" where nothing is unknown.

    Example: advgrad certify --method smoothing --sigma 0.25 --samples 1000 --eps 0,0.25,0.5

    Example: advgrad certify --method bab --eps 0.02,0.03 --timeout 60 --counterexamples found.pt

    Example: advgrad eval --attack pgd --certify crown --eps 0,0.01,0.02 --plot sandwich.png
    """
    smoothing = {"sigma": sigma, "samples": samples, "n0": n0, "alpha": alpha}
    bab = {"timeout": timeout, "budget": budget}
    config = plan_certify(method, eps=eps, norm=norm, seed=io_options.seed, smoothing=smoothing, bab=bab)
    if config.smoothing is None and any(v is not None for v in smoothing.values()):
        unused = ", ".join(f"--{k}" for k, v in smoothing.items() if v is not None)
        warn(f"{unused} only apply to --method smoothing; ignored for {config.certify}")
    bab_limits(config, "--method", timeout, budget, counterexamples)
    check_bounds_runtime(io_options, "advgrad certify", config)
    gates = parse_gates(fail_under)
    check_gates_apply(gates, [config.certify, CERTIFIED], config.eps)
    outputs = Outputs(
        json=json_out,
        csv=csv_out,
        markdown=markdown,
        plot=plot,
        html=html,
        records=records,
        counterexamples=counterexamples,
    )
    check_report_paths(outputs, io_options, ctx.meta.get(META_KEY))
    with join_run(io_options, dist_timeout) as process, sigterm_as_interrupt():
        inputs = open_and_describe(io_options, process.device)
        hold_fixed(config, inputs)  # a table's immutable features (--eps-scale weight 0)
        run = describe_run([], config, inputs, gates, outputs, strict=False, config_file=ctx.meta.get(META_KEY))
        report, state = run_resumable(
            process,
            inputs,
            run,
            passes=certify_passes(config, inputs.n_samples),
            state_file=state_file,
            resume=resume,
            verbose=verbose,
            records=records,
        )
        if not process.is_main:
            return
        finish_report(report, inputs, gates, outputs, strict=False)
    if state is not None:
        state.remove()
    exit_on_failures(report, strict=False)
