"""Shell completion: ``advgrad --show-completion [SHELL]`` and ``--install-completion [SHELL]``.

Typer generates the scripts (and answers the shell's completion requests through the
``_ADVGRAD_COMPLETE`` variable); this module chooses the shell — the one named, else ``$SHELL``,
else the parent shell — and always writes them for the command ``advgrad``, also when it runs
as ``python -m advgrad``, since the shell completes the installed command.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import typer
from typer import completion as typer_completion

from advgrad.core.errors import UsageError

PROG_NAME = "advgrad"
COMPLETE_VAR = "_ADVGRAD_COMPLETE"
SHELLS = ("bash", "zsh", "fish", "powershell", "pwsh")
AUTO = "auto"  # the value of a completion flag given without a shell
FLAGS = ("--show-completion", "--install-completion")


def detect_shell() -> str | None:
    """The user's shell: the basename of ``$SHELL``, else the shell this process runs under."""
    name = Path(os.environ.get("SHELL", "")).name
    if not name:
        try:
            import shellingham

            name = shellingham.detect_shell()[0]
        except Exception:  # not installed, or no shell among the parent processes
            return None
    return name.lower().removesuffix(".exe")


def resolve_shell(value: str | None) -> str:
    """The shell to write completion for: ``value`` unless it is empty or ``auto``, else the detected one."""
    shell = detect_shell() if value in (None, "", AUTO) else value.strip().lower()
    if shell is None:
        raise UsageError(
            f"cannot tell which shell you use; name it, e.g. advgrad --show-completion bash "
            f"(one of {', '.join(SHELLS)})"
        )
    if shell not in SHELLS:
        raise UsageError(f"no completion for the shell {shell!r}; choose one of {', '.join(SHELLS)}")
    return shell


def completion_script(shell: str) -> str:
    """The script that makes ``shell`` complete advgrad's commands and options."""
    typer_completion.completion_init()
    return typer_completion.get_completion_script(prog_name=PROG_NAME, complete_var=COMPLETE_VAR, shell=shell)


def _fail(exc: UsageError) -> None:
    from advgrad.cli.console import print_error
    from advgrad.core.errors import ExitCode

    print_error(f"error: {exc}")
    raise typer.Exit(int(ExitCode.BAD_INPUT))


def show_completion(ctx: typer.Context, param: Any, value: str | None) -> None:
    """Callback of ``--show-completion``: print the script and exit."""
    if value is None or ctx.resilient_parsing:
        return
    try:
        typer.echo(completion_script(resolve_shell(value)))
    except UsageError as exc:
        _fail(exc)
    raise typer.Exit()


def install_completion(ctx: typer.Context, param: Any, value: str | None) -> None:
    """Callback of ``--install-completion``: add the script to the shell's start-up files and exit."""
    if value is None or ctx.resilient_parsing:
        return
    try:
        shell = resolve_shell(value)
    except UsageError as exc:
        _fail(exc)
    typer_completion.completion_init()
    shell, path = typer_completion.install(shell=shell, prog_name=PROG_NAME, complete_var=COMPLETE_VAR)
    typer.echo(f"{shell} completion for advgrad installed in {path}; it takes effect in a new shell", err=True)
    raise typer.Exit()


def fill_shell(args: list[str]) -> list[str]:
    """Give a completion flag written without a shell the value ``auto``, so that both
    ``--show-completion`` and ``--show-completion zsh`` parse (click has no optional values).
    Only the root's options are looked at: the arguments before the command's name."""
    filled = list(args)
    i = 0
    while i < len(filled):
        arg = filled[i]
        if arg in FLAGS:
            if i + 1 == len(filled) or filled[i + 1].startswith("-"):
                filled.insert(i + 1, AUTO)
            i += 2
            continue
        if not arg.startswith("-"):
            break  # the command: what follows is its own
        i += 1
    return filled
