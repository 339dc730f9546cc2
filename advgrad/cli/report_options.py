"""Options of ``advgrad eval`` for reports, gates, configs and resuming, named and documented once."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from advgrad.cli.config_file import load_config
from advgrad.cli.shared_options import OUTPUT_PANEL

RUN_PANEL = "Configuration, gates and resuming"

ConfigOpt = Annotated[
    Optional[Path],
    typer.Option(
        "--config",
        "-c",
        help="Read the run's options from a TOML file, or from a shipped config by name "
        "(quick, full, mnist, cifar10, imagenet: `advgrad config list`; a file of that name wins). Keys are the "
        'long option names, e.g. eps = ["0", "8/255"]; options on the command line override it.',
        is_eager=True,
        callback=load_config,
        rich_help_panel=RUN_PANEL,
        show_default=False,
    ),
]
FailUnderOpt = Annotated[
    Optional[list[str]],
    typer.Option(
        "--fail-under",
        help="Gate ATTACK@EPS=ACC, e.g. pgd@8/255=0.40 (or clean=0.95): exit 1 when the "
        "accuracy there is lower. Repeatable.",
        rich_help_panel=RUN_PANEL,
        show_default=False,
    ),
]
StrictOpt = Annotated[
    bool,
    typer.Option(
        "--strict/--no-strict",
        help="Exit 1 when a sanity check fires (see `advgrad docs checks`); by default it only warns.",
        rich_help_panel=RUN_PANEL,
    ),
]
StateOpt = Annotated[
    Optional[Path],
    typer.Option(
        "--state",
        help="Save progress after each batch in this folder and continue from it when it holds "
        "this run's progress; by default a folder named from a hash of the run, in $ADVGRAD_STATE_DIR or "
        "~/.cache/advgrad/state. Deleted once the run completes (`advgrad docs resume`).",
        rich_help_panel=RUN_PANEL,
        show_default=False,
        metavar="DIR",
    ),
]
ResumeOpt = Annotated[
    bool,
    typer.Option(
        "--resume/--no-resume",
        help="Continue an interrupted identical run from its saved progress (--no-resume starts afresh).",
        rich_help_panel=RUN_PANEL,
    ),
]
CsvOpt = Annotated[
    Optional[Path],
    typer.Option(
        "--csv",
        help="Write one row per attack and ε as CSV to FILE ('-' for stdout).",
        rich_help_panel=OUTPUT_PANEL,
        show_default=False,
    ),
]
MarkdownOpt = Annotated[
    Optional[Path],
    typer.Option(
        "--markdown",
        help="Write the report as Markdown to FILE, e.g. \"$GITHUB_STEP_SUMMARY\" ('-' for stdout).",
        rich_help_panel=OUTPUT_PANEL,
        show_default=False,
    ),
]
JunitOpt = Annotated[
    Optional[Path],
    typer.Option(
        "--junit",
        help="Write JUnit XML to FILE: one test case per --fail-under gate, and the sanity checks ('-' for stdout).",
        rich_help_panel=OUTPUT_PANEL,
        show_default=False,
    ),
]
PlotOpt = Annotated[
    Optional[Path],
    typer.Option(
        "--plot",
        help="Write a PNG with the accuracy-against-ε curve, per-class accuracy and a grid of adversarial examples.",
        rich_help_panel=OUTPUT_PANEL,
        show_default=False,
    ),
]
HtmlOpt = Annotated[
    Optional[Path],
    typer.Option(
        "--html",
        help="Write the report as one self-contained HTML page to FILE: curves, tables, sanity checks, examples "
        "and configuration; it opens offline (`advgrad docs ci`).",
        rich_help_panel=OUTPUT_PANEL,
        show_default=False,
    ),
]
RobustbenchOpt = Annotated[
    Optional[Path],
    typer.Option(
        "--robustbench-json",
        help="Write a RobustBench leaderboard entry (model_info JSON) to FILE, filled from the run; autoattack_acc "
        "needs --attack autoattack. advgrad.to_fill lists the fields to fill by hand.",
        rich_help_panel=OUTPUT_PANEL,
        show_default=False,
    ),
]
RecordsOpt = Annotated[
    Optional[Path],
    typer.Option(
        "--records",
        help="Write one row per sample to FILE: index, label, clean prediction and, per attack and ε, fooled, the "
        "adversarial prediction, perturbation norm, final margin and passes spent (certified verdicts where a run "
        "certifies). The suffix chooses the format: .jsonl, .csv, or .parquet when pyarrow is installed "
        "(`advgrad docs records`).",
        rich_help_panel=OUTPUT_PANEL,
        show_default=False,
        metavar="FILE",
    ),
]
SaveAdversarialOpt = Annotated[
    Optional[Path],
    typer.Option(
        "--save-adversarial",
        help="Keep every adversarial example the report counts in this folder (with the clean inputs), so that "
        "`advgrad rescore REPORT` can re-run the model on them and reproduce every accuracy.",
        rich_help_panel=OUTPUT_PANEL,
        show_default=False,
        metavar="DIR",
    ),
]
CheckOpt = Annotated[
    Optional[str],
    typer.Option(
        "--check",
        metavar="binarization|none",
        help="Opt-in sanity checks: binarization runs the binarization test (Zimmermann et al. 2022: do the attacks "
        "find adversarial examples planted where they provably exist?); none turns it off. By default it runs "
        "with an ensemble attack (strong, autoattack) when it costs at most a tenth of the run (`advgrad docs checks`).",
        rich_help_panel=RUN_PANEL,
        show_default=False,
    ),
]
