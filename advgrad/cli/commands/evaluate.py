"""``advgrad eval``: the robustness curve, accuracy under attack as ε grows."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from advgrad.cli import report_options as r
from advgrad.cli import shared_options as o
from advgrad.cli.commands.certify import BudgetOpt, CounterexamplesOpt, TimeoutOpt, bab_limits, check_bounds_runtime
from advgrad.cli.common import announce_cost, attacks_from, hold_fixed, open_and_describe, warn_large_eps, warn_unused
from advgrad.cli.config_file import META_KEY
from advgrad.cli.console import handle_errors
from advgrad.cli.outputs import Outputs, check_report_paths, describe_run, exit_on_failures, finish_report
from advgrad.cli.state import run_resumable, sigterm_as_interrupt
from advgrad.cli.torchrun import join_run
from advgrad.evaluation.certified import certify_passes
from advgrad.evaluation.corrupted import corruption_passes
from advgrad.evaluation.eval_config import plan_eval
from advgrad.execution.distributed import JOIN_TIMEOUT
from advgrad.io.inputs import InputOptions
from advgrad.verdicts.checks import parse_optional_checks
from advgrad.verdicts.gates import check_gates_apply, parse_gates

DEFAULT_ATTACKS = "fgsm,pgd"


@handle_errors
@o.with_inputs
@o.with_attack_options
def eval_command(
    ctx: typer.Context,
    config_file: r.ConfigOpt = None,
    attack: Annotated[
        Optional[str],
        typer.Option(
            "--attack",
            "--method",
            "-a",
            help="Attacks to run, comma-separated (see `advgrad attacks`); --method is the same option, as in "
            "`advgrad attack`. (default: fgsm,pgd; none when --corruptions is given)",
            rich_help_panel=o.ATTACK_PANEL,
            show_default=False,
        ),
    ] = None,
    eps: Annotated[
        Optional[str],
        typer.Option(
            "--eps",
            "-e",
            help="ε values, comma-separated; fractions allowed (0,1/255,2/255). (default: 0,0.02,0.05,0.1,0.2,0.3 for L∞; 0,0.25,0.5,1,1.5,2 for L2)",
            rich_help_panel=o.ATTACK_PANEL,
            show_default=False,
        ),
    ] = None,
    norm: o.NormOpt = "inf",
    attack_opts: dict = None,  # type: ignore[assignment]  # --steps, --momentum…: see with_attack_options
    target: o.TargetOpt = None,
    predictions: o.PredictionsOpt = None,
    early_stop: Annotated[
        bool,
        typer.Option(
            "--early-stop/--no-early-stop",
            help="Stop attacking a sample once it is fooled (the result is the same; it only saves time).",
            rich_help_panel=o.ATTACK_PANEL,
        ),
    ] = True,
    json_out: o.JsonOpt = None,
    csv_out: r.CsvOpt = None,
    markdown: r.MarkdownOpt = None,
    junit: r.JunitOpt = None,
    plot: r.PlotOpt = None,
    html: r.HtmlOpt = None,
    robustbench_json: r.RobustbenchOpt = None,
    records: r.RecordsOpt = None,
    save_adversarial: r.SaveAdversarialOpt = None,
    fail_under: r.FailUnderOpt = None,
    strict: r.StrictOpt = False,
    check: r.CheckOpt = None,
    state_file: r.StateOpt = None,
    resume: r.ResumeOpt = True,
    certify: Annotated[
        Optional[str],
        typer.Option(
            "--certify",
            help="Also certify each sample with a bound method (ibp, crown, crown-ibp, alpha-crown, or bab: branch "
            "and bound; see `advgrad certify`): the report gets a curve of kind certified, a lower bound under the "
            "attacks' upper bounds (bab also counts the samples it falsified). A sample certified yet fooled is an "
            "internal error (exit 3).",
            rich_help_panel=o.ATTACK_PANEL,
            show_default=False,
        ),
    ] = None,
    corruptions: Annotated[
        Optional[str],
        typer.Option(
            "--corruptions",
            metavar="all|NAMES",
            help="Also measure accuracy under common corruptions (Hendrycks & Dietterich 2019) at severities 1-5: "
            "all, or names, comma-separated (gaussian_noise, shot_noise, impulse_noise, defocus_blur, glass_blur, "
            "motion_blur, zoom_blur, snow, frost, fog, brightness, contrast, elastic_transform, pixelate, "
            "jpeg_compression). Without --attack only the corruptions run.",
            rich_help_panel=o.ATTACK_PANEL,
            show_default=False,
        ),
    ] = None,
    timeout: TimeoutOpt = None,
    budget: BudgetOpt = None,
    counterexamples: CounterexamplesOpt = None,
    verbose: o.VerboseOpt = False,
    dist_timeout: o.DistTimeoutOpt = JOIN_TIMEOUT,
    io_options: InputOptions = InputOptions(),
) -> None:
    """Measure accuracy under each attack at each ε: the robustness curve, with sanity checks.

    Each attack runs over the ε values in increasing order on the samples still classified
    correctly, and a sample leaves an attack as soon as it is fooled. Every report carries sanity
    checks that warn when the numbers are probably too good (`advgrad docs checks`). Gates make CI fail
    (exit 1) when robustness is too low; an interrupted run continues when run again.

    A minimal-perturbation attack (deepfool, cw, fab, fab-t) runs once and gives every ε from each sample's
    smallest adversarial example, and the median of those norms. Each attack takes the options it has parameters for
    (`advgrad attacks`); an option no chosen attack takes is ignored with a warning.

    Example: advgrad eval --attack fgsm,pgd --eps 0,4/255,8/255 --fail-under pgd@8/255=0.40 --json r.json --plot r.png

    Example (common corruptions only, 15 × 5 severities): advgrad eval --corruptions all --json c.json

    Example: advgrad eval --config quick --junit junit.xml --html report.html   (shipped configs: `advgrad config list`)

    Example (a process per GPU): torchrun --standalone --nproc_per_node 4 -m advgrad eval --config full
    """
    specs = [] if attack is None and corruptions is not None else attacks_from(attack or DEFAULT_ATTACKS)
    warn_unused(specs, attack_opts)
    attacks, config = plan_eval(
        specs,
        attack_opts,
        eps=eps,
        norm=norm,
        target=target,
        seed=io_options.seed,
        early_stop=early_stop,
        certify=certify,
        corruptions=corruptions,
        predictions=predictions,
        bab={"timeout": timeout, "budget": budget},
    )
    config.keep_adversarial = save_adversarial is not None
    config.binarization = parse_optional_checks(check)
    if config.certify is not None:
        check_bounds_runtime(io_options, "--certify", config)
    bab_limits(config, "--certify", timeout, budget, counterexamples)
    gates = parse_gates(fail_under)
    curves = [a.name for a in attacks] + ([] if config.certify is None else [config.certify, "certified"])
    check_gates_apply(gates, curves, config.eps, corruptions=bool(config.corruptions))
    outputs = Outputs(
        json=json_out,
        csv=csv_out,
        markdown=markdown,
        junit=junit,
        plot=plot,
        html=html,
        robustbench_json=robustbench_json,
        records=records,
        save_adversarial=save_adversarial,
        counterexamples=counterexamples,
    )
    check_report_paths(outputs, io_options, ctx.meta.get(META_KEY))
    with join_run(io_options, dist_timeout) as process, sigterm_as_interrupt():  # `kill` stops as cleanly as Ctrl-C
        inputs = open_and_describe(io_options, process.device)
        hold_fixed(config, inputs)  # a table's immutable features (--eps-scale weight 0)
        warn_large_eps(config.norm, config.eps, inputs)
        estimate = announce_cost(inputs, attacks, config, process.world_size, announce=process.is_main)
        run = describe_run(attacks, config, inputs, gates, outputs, strict=strict, config_file=ctx.meta.get(META_KEY))
        passes = (
            estimate.passes + certify_passes(config, inputs.n_samples) + corruption_passes(config, inputs.n_samples)
        )
        report, state = run_resumable(
            process,
            inputs,
            run,
            passes=passes,
            state_file=state_file,
            resume=resume,
            verbose=verbose,
            records=records,
            adversarial=save_adversarial,
        )
        if not process.is_main:  # rank 0 alone writes the report and decides the exit code
            return
        finish_report(report, inputs, gates, outputs, strict=strict)
    if state is not None:
        state.remove()
    exit_on_failures(report, strict=strict)
