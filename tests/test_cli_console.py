"""advgrad/cli/console.py, what reaches the terminal: other libraries' warnings only behind -v
(issue 21, item 14), and every string printed, alone or in a table, with its control characters
escaped and no Rich markup read (item 13)."""

from __future__ import annotations

import warnings

import factory_models as fm
import torch
from loading_fixtures import run_cli, save_tensors
from rich.table import Table

import advgrad
from advgrad.cli.console import err, out, route_warnings
from advgrad.core.errors import AdvgradWarning

MODEL = "factory_models:make_misbehaving"


def test_a_library_warning_stays_off_stderr_unless_verbose(tmp_path):
    """A library's deprecation notice (onnx2torch's, in the issue) is not advgrad's to show: off
    stderr by default, one line with -v; the command's filters end with it."""
    x = torch.rand(8, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    data = save_tensors(tmp_path / "data.pt", x, torch.arange(8) % 10)
    args = ["eval", "--model", MODEL, "--model-arg", "how=warn", "--model-arg", "fail_on=1", "--data", data]
    args += ["--attack", "fgsm", "--eps", "0,0.1", "--device", "cpu"]
    before = list(warnings.filters)
    quiet = run_cli(*args)
    assert quiet.exit_code == 0, quiet.stderr
    assert "deprecated" not in quiet.stderr and "FutureWarning" not in quiet.stderr, quiet.stderr
    verbose = run_cli(*args, "-v")
    assert verbose.exit_code == 0, verbose.stderr
    lines = [line for line in verbose.stderr.splitlines() if "deprecated" in line]
    assert lines == ["warning: Misbehaving.forward is deprecated and will be removed"], verbose.stderr
    assert warnings.filters == before


def test_advgrads_own_warnings_are_still_shown(capsys):
    with warnings.catch_warnings():
        route_warnings(False)
        warnings.warn_explicit(
            "discarded a saved batch", AdvgradWarning, "sweep.py", 1, module="advgrad.evaluation.sweep"
        )
        warnings.warn_explicit("old API", FutureWarning, "functional.py", 1, module="torch.nn.functional")
        # matplotlib and torch name their caller as the place of a warning: often advgrad
        warnings.warn_explicit("Glyph 27 missing", UserWarning, "features.py", 1, module="advgrad.report.feature_bars")
    assert capsys.readouterr().err.splitlines() == ["warning: discarded a saved batch"]


def test_the_python_api_leaves_the_callers_warning_filters_alone():
    model = fm.make_misbehaving(how="warn", fail_on=1)
    x = torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        advgrad.attack(model, x, torch.arange(4), "fgsm", eps=0.1)
    assert any("deprecated" in str(w.message) for w in seen)


def test_the_consoles_escape_control_characters_and_read_no_markup(capsys):
    table = Table()
    table.add_column("class")
    table.add_row("cat\x1b[2J\x9b31m\u202e[red]dog[/red][/bold]")
    out.print(table)
    out.print("title\x1b]0;pwned\x07 [/italic]\nsecond line")
    err.print("\rhidden\x1b[1A")
    captured = capsys.readouterr()
    assert not any(c in captured.out + captured.err for c in "\x1b\x07\r\x9b\u202e")
    assert "cat\\x1b[2J\\x9b31m\\u202e[red]dog[/red][/bold]" in captured.out.replace("\n", "").replace("│", "")
    assert "title\\x1b]0;pwned\\x07 [/italic]\nsecond line" in captured.out  # a table's lines stay lines
    assert captured.err == "\\x0dhidden\\x1b[1A\n"


def test_an_overlong_error_line_keeps_its_start_and_its_advice(capsys):
    """A name from a file that no message cut short still gives a line of bounded length."""
    from advgrad.cli.console import MESSAGE_WIDTH, print_error

    print_error("error: " + "n" * 1_000_000 + "\x1b[2J; give --fresh")
    line = capsys.readouterr().err
    assert line.count("\n") == 1 and len(line) < MESSAGE_WIDTH + 100
    assert line.startswith("error: nnn") and line.rstrip().endswith("\\x1b[2J; give --fresh")
    assert "characters left out" in line
