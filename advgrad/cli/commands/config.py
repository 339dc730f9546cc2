"""``advgrad config list|show``: the run configurations shipped with advgrad."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from advgrad.cli.console import handle_errors
from advgrad.cli.help import HelpCommand, HelpGroup
from advgrad.io.shipped import list_configs, listing, shipped_config

config_app = typer.Typer(
    name="config",
    cls=HelpGroup,
    help="The run configurations shipped with advgrad: list them, or print one to run or copy and edit.",
    no_args_is_help=True,
    add_completion=False,  # the root's --show-completion/--install-completion serve every command
    context_settings={"help_option_names": ["-h", "--help"]},
)


@config_app.command("list", cls=HelpCommand)
@handle_errors
def config_list() -> None:
    """List the shipped configs: name and what each runs. Run one with `advgrad eval --config NAME`.

    Example: advgrad config list
    """
    sys.stdout.write(listing(list_configs()))


@config_app.command("show", cls=HelpCommand)
@handle_errors
def config_show(
    name: Annotated[
        str, typer.Argument(help="A shipped config's name, e.g. quick (see `advgrad config list`).", show_default=False)
    ],
) -> None:
    """Print a shipped config (TOML): its header says what it needs; copy it to start your own.

    Example: advgrad config show quick > my-run.toml && advgrad eval --config my-run.toml
    """
    sys.stdout.write(shipped_config(name).read_text())
