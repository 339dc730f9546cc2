"""Every output of ``advgrad eval`` from the one report: files, stdout, terminal view, messages."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import typer

from advgrad.cli.common import emit_text
from advgrad.cli.console import err, info, out, print_json, warn
from advgrad.core.errors import ExitCode, UsageError
from advgrad.core.results import RobustnessReport
from advgrad.evaluation.run_description import RunDescription, RunSettings
from advgrad.io.adversarial_dir import check_folder
from advgrad.io.files import picture_format, write_json
from advgrad.io.records_file import record_format
from advgrad.report.chart import text_chart
from advgrad.report.csvfile import render_csv
from advgrad.report.html import render_html
from advgrad.report.junit import render_junit
from advgrad.report.markdown import render_markdown
from advgrad.report.plot import plot_report
from advgrad.report.robustbench import robustbench_entry
from advgrad.report.table import corruption_table, cost_table, report_heading, report_table
from advgrad.verdicts.checks import fired
from advgrad.verdicts.gates import Gate, describe_gate, evaluate_gates

STDOUT = "-"


@dataclass(frozen=True)
class Outputs:
    """Where each rendering of the report goes (None: not written; ``-``: stdout)."""

    json: Path | None = None
    csv: Path | None = None
    markdown: Path | None = None
    junit: Path | None = None
    plot: Path | None = None
    counterexamples: Path | None = None
    html: Path | None = None
    robustbench_json: Path | None = None
    records: Path | None = None  # per-sample rows, written as the batches finish
    save_adversarial: Path | None = None  # a folder for the counted adversarial examples

    def __post_init__(self) -> None:
        to_stdout = [option(name) for name, path in self.to_dict().items() if path == STDOUT]
        if len(to_stdout) > 1:
            raise UsageError(f"only one output can go to stdout ('-'), got {' and '.join(to_stdout)}")
        for name in ("plot", "records", "save_adversarial", "counterexamples"):
            if str(getattr(self, name)) == STDOUT:
                raise UsageError(f"{option(name)} needs a {'folder' if name == 'save_adversarial' else 'file'} name")
        if self.records is not None:
            record_format(self.records)
        if self.save_adversarial is not None:
            check_folder(self.save_adversarial)
        for name, path in self.to_dict().items():  # found before the run, not after it
            if path not in (None, STDOUT) and name != "save_adversarial" and Path(path).is_dir():
                raise UsageError(f"{option(name)} {path} is a directory; give a file name")

    def to_dict(self) -> dict[str, str | None]:
        return {k: None if v is None else str(v) for k, v in self.__dict__.items()}

    @property
    def uses_stdout(self) -> bool:
        return STDOUT in self.to_dict().values()


def option(name: str) -> str:
    """The command-line option of an :class:`Outputs` field: ``robustbench_json`` → ``--robustbench-json``."""
    return "--" + name.replace("_", "-")


def _emit_json(path: Path, data: dict) -> None:
    if str(path) == STDOUT:
        print_json(data)
        return
    write_json(path, data)
    info(f"wrote {path}")


def write_outputs(report: RobustnessReport, outputs: Outputs, *, strict: bool) -> None:
    """Write every requested file (atomically) and, unless stdout is taken, the terminal view."""
    if outputs.json is not None:
        _emit_json(outputs.json, report.to_dict())
    if outputs.robustbench_json is not None:
        _emit_json(outputs.robustbench_json, robustbench_entry(report))
    renderers = {
        "csv": render_csv,
        "markdown": render_markdown,
        "junit": lambda r: render_junit(r, strict=strict),
        "html": render_html,
    }
    for name, render in renderers.items():
        path = getattr(outputs, name)
        if path is not None:
            emit_text(path, render(report))
    if outputs.plot is not None:
        plot_report(report, outputs.plot)
        info(f"wrote {outputs.plot}")
    if outputs.counterexamples is not None:
        write_counterexamples(outputs.counterexamples, report)
        info(f"wrote {outputs.counterexamples} ({len(report.counterexamples)} counterexamples)")
    if not outputs.uses_stdout:
        print_terminal(report)


def write_counterexamples(path: Path, report: RobustnessReport) -> None:
    """Branch and bound's counterexamples, atomically, as a ``torch.save`` dict (loadable with
    ``weights_only=True``): ``index`` (K,) the samples' places in the run, ``eps`` (K,) the smallest ε
    each was found at, ``x`` (K, *input) the inputs, ``label`` and ``prediction`` (K,)."""
    import torch

    from advgrad.io.files import write_tensors

    found = sorted(report.counterexamples, key=lambda c: c.index)
    shape = tuple(found[0].x.shape) if found else ()
    write_tensors(
        path,
        {
            "index": torch.tensor([c.index for c in found], dtype=torch.int64),
            "eps": torch.tensor([c.eps for c in found], dtype=torch.float64),
            "x": torch.stack([c.x for c in found]) if found else torch.zeros(0, *shape),
            "label": torch.tensor([c.label for c in found], dtype=torch.int64),
            "prediction": torch.tensor([c.prediction for c in found], dtype=torch.int64),
        },
    )


def print_terminal(report: RobustnessReport) -> None:
    """The table, the chart, the cost and a one-line summary of the checks, for people."""
    out.print(report_heading(report), markup=False)
    if report.attacks:
        out.print(report_table(report))
        out.print(text_chart(report), markup=False, highlight=False)
    corruptions = corruption_table(report)
    if corruptions is not None:
        out.print(corruptions)
    out.print("cost:", markup=False)
    out.print(cost_table(report))
    warned = [c["name"] for c in fired(report.checks)]
    applicable = sum(c["status"] != "not-applicable" for c in report.checks)
    if warned:
        out.print(
            f"sanity checks: {len(warned)} warning{'s' if len(warned) > 1 else ''} ({', '.join(warned)}); "
            "see `advgrad docs checks`",
            markup=False,
        )
    else:
        out.print(
            f"sanity checks: all {applicable} applicable checks passed "
            f"({len(report.checks) - applicable} not applicable)",
            markup=False,
        )


def exit_on_failures(report: RobustnessReport, *, strict: bool) -> None:
    """Say on stderr which checks fired and how each gate went; exit 1 when a gate failed, or a
    check fired under ``strict``."""
    warned = fired(report.checks)
    for check in warned:
        warn(f"check {check['name']}: {check['message']} (see `advgrad docs checks`, section {check['name']})")
    failed = [g for g in report.gates if not g["passed"]]
    for gate in report.gates:
        info(f"gate {'passed' if gate['passed'] else 'FAILED'}: {describe_gate(gate)}")
    reasons = []
    if failed:
        reasons.append(f"{len(failed)} gate{'s' if len(failed) > 1 else ''} failed")
    if strict and warned:
        reasons.append(f"--strict and {len(warned)} sanity check{'s' if len(warned) > 1 else ''} fired")
    if reasons:
        err.print(f"failed: {'; '.join(reasons)}", markup=False)
        raise typer.Exit(int(ExitCode.GATE_FAILED))


def check_report_paths(outputs: Outputs, io_options, config_file: str | None) -> None:
    """Refuse, before any work, report outputs that would overwrite an input or each other."""
    from advgrad.io.output_paths import check_output_paths, input_paths

    files = {option(name): path for name, path in outputs.to_dict().items() if name != "save_adversarial"}
    check_output_paths(
        files,
        {**input_paths(io_options), "--config": config_file},
        {"--save-adversarial": outputs.save_adversarial},
    )
    if outputs.plot is not None:
        picture_format(outputs.plot, "plot")  # plot.pdf is a PDF; plot.gif is refused before the run


def describe_run(
    attacks: list, config, inputs, gates: list[Gate], outputs: Outputs, *, strict: bool, config_file: str | None
) -> RunDescription:
    """The run's one description (report config and resume key) as ``eval`` and ``certify`` give it."""
    settings = RunSettings(
        gates=[g.text for g in gates],
        strict=strict,
        outputs=outputs.to_dict(),
        config_file=config_file,
        threads=None if inputs.threads is None else inputs.threads.threads,
    )
    return RunDescription(attacks, config, inputs.options.to_dict(), settings)


def finish_report(report: RobustnessReport, inputs, gates: list[Gate], outputs: Outputs, *, strict: bool) -> None:
    """Fill in what the sweep does not know (model, data, gates) and write
    every requested output."""
    report.model = inputs.model.to_dict()
    report.data = {"source": inputs.data.name, "description": inputs.data.description, **inputs.probe.to_dict()}
    if inputs.space is not None:  # a table: feature names, bounds, ε weights (the plot's bars use them)
        report.data["table"] = inputs.space.to_dict()
    report.gates = [g.to_dict() for g in evaluate_gates(report, gates)]
    write_outputs(report, outputs, strict=strict)
