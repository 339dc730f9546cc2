"""The command line's catalog (advgrad/cli/catalog.py): start-up without torch, completion of values.

`advgrad --help`, `--version`, `docs`, `config`, `attacks` and every TAB press read the catalog
instead of importing the commands (which import torch); the catalog must say what the commands and
registries say."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from advgrad.cli import app
from advgrad.cli.catalog import COMMANDS, build_catalog, catalog, complete

ROOT = Path(__file__).resolve().parent.parent


def test_the_catalog_says_what_the_commands_and_registries_say():
    """Run `python scripts/write_cli_catalog.py` when this fails: a command's help or options, or a
    registry (attacks, norms, losses, methods, corruptions), changed since catalog.json was written."""
    assert catalog() == json.loads(json.dumps(build_catalog())), "rewrite it: python scripts/write_cli_catalog.py"
    assert list(catalog()["commands"]) == list(COMMANDS)


def _complete(words: str) -> list[str]:
    """What bash gets for the command line ``words`` (TAB pressed after its last word)."""
    parts = words.split(" ")
    env = {"_ADVGRAD_COMPLETE": "complete_bash", "COMP_WORDS": words, "COMP_CWORD": str(len(parts) - 1)}
    result = CliRunner().invoke(app, [], env=env)
    assert result.exit_code == 0, result.output
    return result.stdout.split()


@pytest.mark.parametrize(
    ("words", "expected"),
    [
        ("advgrad eval --attack p", ["pgd"]),
        ("advgrad eval --attack fgsm,p", ["fgsm,pgd"]),
        ("advgrad eval --method fgsm,pgd,apgd-", ["fgsm,pgd,apgd-ce", "fgsm,pgd,apgd-dlr", "fgsm,pgd,apgd-t"]),
        ("advgrad attack --method cw", ["cw"]),
        ("advgrad eval --norm ", ["inf", "2", "1"]),
        ("advgrad certify --method c", ["crown", "crown-ibp"]),
        ("advgrad train --method t", ["trades"]),
        ("advgrad eval --config q", ["quick"]),
        ("advgrad config show c", ["cifar10"]),
        ("advgrad docs re", ["records", "report-schema", "resume"]),
        ("advgrad eval --corruptions fog,sn", ["fog,snow"]),
        ("advgrad eval --corruptions a", ["all"]),
        ("advgrad grad --loss m", ["margin"]),
        ("advgrad eval --fail-u", ["--fail-under"]),
        ("advgrad ev", ["eval"]),
    ],
    ids=lambda v: v if isinstance(v, str) else ",".join(v),
)
def test_tab_completes_values(words, expected):
    assert _complete(words) == expected


def test_a_list_never_offers_an_item_twice():
    assert "fgsm,fgsm" not in complete("attacks", "fgsm,")
    assert "fgsm,pgd" in complete("attacks", "fgsm,")


@pytest.mark.slow
def test_start_up_and_completion_import_no_torch():
    """In a fresh interpreter, `advgrad --help`, `--version`, `docs`, `config list`, `attacks` and a
    TAB press (one after the other) never import torch, and give their answers."""
    script = """
import contextlib, io, os, sys
from advgrad.cli import main
def run(args, env=None):
    os.environ.update(env or {})
    sys.argv = ["advgrad", *args]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        try:
            main()
        except SystemExit as exc:
            assert exc.code in (0, None), (args, exc.code)
    for key in env or {}:
        del os.environ[key]
    return out.getvalue()
seen = [run(["--help"]), run(["--version"]), run(["docs"]), run(["docs", "ci"]), run(["config", "list"]),
        run(["attacks"]), run(["attacks", "--json", "-"]), run(["config", "show", "quick"]),
        run([], {"_ADVGRAD_COMPLETE": "complete_bash", "COMP_WORDS": "advgrad eval --attack fgsm,p", "COMP_CWORD": "3"})]
print("torch" in sys.modules, "|".join(s[:40].replace("\\n", " ") for s in seen))
print(seen[-1].strip())
"""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "100"}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 0, result.stderr
    first, completion = result.stdout.splitlines()[-2:]
    assert first.startswith("False "), first
    assert "advgrad 0.1.0" in first and "apgd-ce" in first
    assert completion == "fgsm,pgd"
