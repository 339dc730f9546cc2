"""Help screens at 80 columns: no type placeholders on flags, nothing wider than the terminal,
paragraphs wrapped to the width (not broken where the source line ended)."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

COMMANDS = ["", "attack", "attacks", "eval", "grad", "info", "compare", "train"]


def _help(command: str) -> list[str]:
    """The help screen as an 80-column terminal shows it (in-process: the same text as
    ``COLUMNS=80 advgrad COMMAND --help`` writes, without paying a Python start-up per screen)."""
    from advgrad.cli import app

    env = {"COLUMNS": "80", "NO_COLOR": "1", "TERM": "dumb"}
    result = CliRunner().invoke(app, [*([command] if command else []), "--help"], env=env)
    assert result.exit_code == 0, result.output
    return result.stdout.splitlines()


@pytest.mark.parametrize("command", COMMANDS)
def test_help_fits_80_columns_without_placeholders(command):
    lines = _help(command)
    assert max(len(line) for line in lines) <= 80
    text = "\n".join(lines)
    for placeholder in ("<bool>", "<list[", "<int>", "<float>"):
        assert placeholder not in text, (placeholder, command)
    description = lines[: next(i for i, line in enumerate(lines) if line.startswith("╭"))]
    for line, after in zip(description, description[1:], strict=False):
        if line.strip() and after.strip():  # a line inside a paragraph is filled to the width
            assert len(line.rstrip()) >= 50, (command, line)


def test_flags_show_no_value_and_values_are_named():
    lines = _help("eval")
    rows = {line.split()[1]: line for line in lines if line.startswith("│ --")}
    assert "--no-strict" in rows["--strict"] and "<" not in rows["--strict"]
    assert " EPS " in rows["--eps"] and " GATE " in rows["--fail-under"]
