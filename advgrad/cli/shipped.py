"""``advgrad config list|show`` and ``advgrad docs``: the configs and documentation shipped in the package."""

from __future__ import annotations

import sys
from typing import Annotated, Optional

import typer

from advgrad.cli.console import handle_errors
from advgrad.cli.help import HelpCommand, HelpGroup
from advgrad.shipped import ShippedFile, list_configs, list_docs, shipped_config, shipped_doc

config_app = typer.Typer(
    name="config",
    cls=HelpGroup,
    help="The run configurations shipped with advgrad: list them, or print one to run or copy and edit.",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _listing(files: list[ShippedFile]) -> str:
    width = max((len(f.name) for f in files), default=0)
    return "".join(f"{f.name:<{width}}  {f.description}\n" for f in files)


@config_app.command("list", cls=HelpCommand)
@handle_errors
def config_list() -> None:
    """List the shipped configs: name and what each runs. Run one with `advgrad eval --config NAME`.

    Example: advgrad config list
    """
    sys.stdout.write(_listing(list_configs()))


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


@handle_errors
def docs_command(
    topic: Annotated[
        Optional[str], typer.Argument(help="A topic, e.g. checks, ci, configs; none lists them.", show_default=False)
    ] = None,
) -> None:
    """Print advgrad's documentation on a topic (Markdown), e.g. the sanity checks or a CI job.

    The same pages as docs/ in the repository, shipped with the package.

    Example: advgrad docs checks   ·   advgrad docs ci > robustness-ci.md
    """
    if topic is None:
        sys.stdout.write(_listing(list_docs()))
        return
    sys.stdout.write(shipped_doc(topic).read_text())
