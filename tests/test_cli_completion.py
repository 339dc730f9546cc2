"""Shell completion (advgrad/cli/completion.py): scripts for the named or detected shell, and the
completion requests a shell then sends."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import assert_bad_input, invoke
from typer.testing import CliRunner

from advgrad.cli import app
from advgrad.cli.completion import fill_shell

ROOT = Path(__file__).resolve().parent.parent


def run_module(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    environ = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "advgrad", *args], capture_output=True, text=True, timeout=120, env=environ
    )


@pytest.mark.parametrize(
    ("shell", "marker"),
    [
        ("bash", "complete -o default -F _advgrad_completion advgrad"),
        ("zsh", "#compdef advgrad"),
        ("fish", "complete --command advgrad"),
    ],
)
def test_show_completion_for_a_named_shell(shell, marker):
    result = CliRunner().invoke(app, ["--show-completion", shell], env={"SHELL": "/bin/sh"})
    assert result.exit_code == 0, result.output
    assert marker in result.stdout and "_ADVGRAD_COMPLETE" in result.stdout


def test_show_completion_takes_the_shell_from_SHELL():
    result = CliRunner().invoke(app, ["--show-completion"], env={"SHELL": "/usr/bin/zsh"})
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("#compdef advgrad")


@pytest.mark.slow
def test_python_dash_m_writes_the_script_for_the_advgrad_command():
    result = run_module("--show-completion", "bash")
    assert result.returncode == 0, result.stderr
    assert "complete -o default -F _advgrad_completion advgrad" in result.stdout
    assert "__main__" not in result.stdout and "python" not in result.stdout


@pytest.mark.slow
def test_completion_requests_are_answered():
    commands = run_module(env={"_ADVGRAD_COMPLETE": "complete_bash", "COMP_WORDS": "advgrad ev", "COMP_CWORD": "1"})
    assert commands.returncode == 0, commands.stderr
    assert commands.stdout.split() == ["eval"]
    options = run_module(
        env={"_ADVGRAD_COMPLETE": "complete_bash", "COMP_WORDS": "advgrad eval --fail-u", "COMP_CWORD": "2"}
    )
    assert options.stdout.split() == ["--fail-under"]


def test_install_completion_writes_to_the_home_folder(tmp_path):
    result = CliRunner().invoke(app, ["--install-completion", "bash"], env={"HOME": str(tmp_path)})
    assert result.exit_code == 0, result.output
    script = tmp_path / ".bash_completions" / "advgrad.sh"
    assert "_advgrad_completion" in script.read_text()
    assert f"source '{script}'" in (tmp_path / ".bashrc").read_text()


def test_an_unknown_shell_is_bad_usage():
    assert_bad_input(invoke(["--show-completion", "tcsh"]), "choose one of bash, zsh, fish")


def test_help_lists_the_completion_options():
    result = invoke(["--help"])
    assert "--show-completion" in result.stdout and "--install-completion" in result.stdout


@pytest.mark.parametrize(
    ("args", "filled"),
    [
        (["--show-completion"], ["--show-completion", "auto"]),
        (["--show-completion", "zsh"], ["--show-completion", "zsh"]),
        (["--debug", "--install-completion", "--version"], ["--debug", "--install-completion", "auto", "--version"]),
        (["eval", "--show-completion"], ["eval", "--show-completion"]),  # a command's own arguments are left alone
    ],
)
def test_fill_shell(args, filled):
    assert fill_shell(args) == filled
