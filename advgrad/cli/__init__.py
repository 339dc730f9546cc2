"""The ``advgrad`` command line: one Typer app, one module per command, each loaded when it runs.

This module imports no command and no torch: the root group (:class:`~advgrad.cli.group.AdvgradGroup`)
finds each command in :data:`advgrad.cli.catalog.COMMANDS` and imports its module only to run it or
show its own help, so ``advgrad --help``, ``--version``, ``docs``, ``config`` and a TAB press start at
once."""

from __future__ import annotations

import os
from typing import Annotated, Optional

import typer

from advgrad import __version__
from advgrad.cli.completion import install_completion, show_completion
from advgrad.cli.console import set_debug
from advgrad.cli.group import AdvgradGroup

app = typer.Typer(
    name="advgrad",
    rich_markup_mode="markdown",
    help=(
        "Adversarial examples and robustness evaluation for trained PyTorch classifiers.\n\n"
        "Every command runs on the embedded digits model and data when --model and --data are not given. "
        "Results go to stdout, messages to stderr. Exit codes: 0 success, 1 a gate or check failed, "
        "2 bad usage or input."
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,  # ours take an optional shell name: advgrad/cli/completion.py
    cls=AdvgradGroup,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"advgrad {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    debug: Annotated[
        bool,
        typer.Option(
            "--debug", help="Show tracebacks instead of one-line errors, and the warnings of other libraries."
        ),
    ] = False,
    version: Annotated[
        Optional[bool], typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = None,
    show: Annotated[
        Optional[str],
        typer.Option(
            "--show-completion",
            metavar="[SHELL]",
            callback=show_completion,
            is_eager=True,
            expose_value=False,
            help="Print the shell completion script for SHELL (bash, zsh, fish, powershell; default: your $SHELL), "
            'e.g. eval "$(advgrad --show-completion bash)".',
            show_default=False,
        ),
    ] = None,
    install: Annotated[
        Optional[str],
        typer.Option(
            "--install-completion",
            metavar="[SHELL]",
            callback=install_completion,
            is_eager=True,
            expose_value=False,
            help="Install shell completion for SHELL (default: your $SHELL) in its start-up files; takes effect "
            "in a new shell.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Adversarial examples and robustness evaluation for trained PyTorch classifiers."""
    set_debug(debug)
    if "WORLD_SIZE" in os.environ and "RANK" in os.environ:  # under torchrun: only rank 0 speaks
        from advgrad.cli.torchrun import setup_process

        setup_process(ctx.invoked_subcommand)


def main() -> None:
    """Console-script entry point."""
    app(prog_name="advgrad")
