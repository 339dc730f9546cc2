"""The root command's click group: commands loaded when they run, one-line usage errors with a
suggestion, and completion flags that take an optional shell name."""

from __future__ import annotations

import difflib
import sys
from typing import Any

import typer
from typer import completion as typer_completion

from advgrad.cli.catalog import COMMANDS, command_data
from advgrad.cli.completion import fill_shell
from advgrad.cli.help import HelpCommand, HelpGroup
from advgrad.cli.skeletons import completion_command, summary_command
from advgrad.core.errors import ExitCode
from advgrad.io.run_config import RENAMED_OPTIONS

try:  # Typer ≥ 0.20 vendors click
    from typer._click import exceptions as click_exceptions
except ImportError:  # pragma: no cover - older Typer runs on click itself
    from click import exceptions as click_exceptions  # type: ignore[no-redef]


def _long_options(command: Any) -> list[str]:
    names: list[str] = []
    for param in getattr(command, "params", []):
        if getattr(param, "param_type_name", "") == "option" and not getattr(param, "hidden", False):
            names += [o for o in (*param.opts, *getattr(param, "secondary_opts", ())) if o.startswith("--")]
    return names


def closest_option(name: str, command: Any) -> str | None:
    """The long option of ``command`` closest to the misspelt ``name`` (``--atack`` → ``--attack``), if any is
    close; an option that ``name`` spells out (``--epsilon`` for ``--eps``) before any other."""
    options = _long_options(command)
    spelt_out = [o for o in options if len(o) >= 5 and name.startswith(o) and name[len(o) : len(o) + 1].isalpha()]
    if spelt_out:
        return max(spelt_out, key=len)
    match = difflib.get_close_matches(name, options, n=1, cutoff=0.6)
    return match[0] if match else None


def renamed_option(name: str, command: Any) -> str | None:
    """What to say for an option of ``command`` that was renamed (``--version`` of eval is ``--aa-version``)."""
    new, what = RENAMED_OPTIONS.get(name, ("", ""))
    if new not in _long_options(command):
        return None
    return f"{name} is now {new} ({what})"


def usage_message(exc: Any) -> str:
    """One line for a click usage error: what was wrong, a suggestion where one fits, where help is."""
    ctx = getattr(exc, "ctx", None)
    where = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
    if isinstance(exc, click_exceptions.NoSuchOption):
        renamed = renamed_option(exc.option_name, ctx.command) if ctx is not None else None
        if renamed:
            return f"{renamed}{where}"
        close = closest_option(exc.option_name, ctx.command) if ctx is not None else None
        hint = f"; did you mean {close}?" if close else ""
        return f"no such option {exc.option_name}{hint}{where}"
    text = " ".join(exc.format_message().split())
    return f"{text[:1].lower()}{text[1:]}{where}" if isinstance(exc, click_exceptions.UsageError) else text


def load_command(name: str) -> Any:
    """The click command ``name`` of :data:`~advgrad.cli.catalog.COMMANDS`, imported and built."""
    import importlib

    import typer.main

    entry = COMMANDS[name]
    target = getattr(importlib.import_module(entry.module), entry.attr)
    if not isinstance(target, typer.Typer):
        app = typer.Typer(rich_markup_mode="markdown", add_completion=False, pretty_exceptions_enable=False)
        app.command(name, cls=HelpCommand)(target)
        target = app
    command = typer.main.get_command(target)
    command.name = name
    return command


class LazyCommands(dict):
    """The root's commands by name, each imported and built when first looked up with ``[name]``."""

    def __missing__(self, name: str) -> Any:
        if name not in COMMANDS:
            raise KeyError(name)
        self[name] = load_command(name)
        return self[name]


class AdvgradGroup(HelpGroup):
    """The root group: tidy help (:class:`HelpGroup`) and advgrad's conventions for usage errors: one line on
    stderr, exit 2.

    Commands load lazily (:data:`advgrad.cli.catalog.COMMANDS`): a command's module, which imports torch,
    is imported only to run the command or show its own help. The root's help and shell completion read
    the catalog instead (:func:`summary_command`, :func:`completion_command`), so that they start in a
    fraction of a second."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.commands = LazyCommands(self.commands)

    def load(self, name: str) -> Any:
        """The real click command ``name``, importing its module (built once per group: Typer builds the group
        anew at each run of the app, so an attack registered since then has its options)."""
        return self.commands[name]

    def list_commands(self, ctx: Any) -> list[str]:
        return [*COMMANDS, *(n for n in self.commands if n not in COMMANDS)]

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        if cmd_name in COMMANDS:
            return dict.get(self.commands, cmd_name) or summary_command(cmd_name, command_data(cmd_name))
        return super().get_command(ctx, cmd_name)

    def resolve_command(self, ctx: Any, args: list[str]) -> tuple[str | None, Any, list[str]]:
        name = args[0] if args else None
        if name in COMMANDS:  # completion walks the catalog; a run (or its --help) loads the command
            if ctx.resilient_parsing:
                return name, completion_command(name, command_data(name)), args[1:]
            return name, self.load(name), args[1:]
        try:
            return super().resolve_command(ctx, args)
        except click_exceptions.UsageError as exc:
            close = difflib.get_close_matches(name or "", list(COMMANDS), n=1)
            if close and "Did you mean" not in exc.message:
                exc.message = f"{exc.message.rstrip('.')}. Did you mean {close[0]!r}?"
            raise

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        return super().parse_args(ctx, fill_shell(list(args)))

    def main(
        self,
        args: Any = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        typer_completion.completion_init()  # Typer's completion classes answer $_ADVGRAD_COMPLETE requests
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        from advgrad.cli.console import err, print_error

        try:  # not standalone: errors come here instead of being drawn in a box
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click_exceptions.ClickException as exc:
            if type(exc).__name__ == "NoArgsIsHelpError":  # `advgrad` alone: the help, on stdout, is the answer
                sys.exit(int(ExitCode.OK))
            print_error(f"error: {usage_message(exc)}")
            sys.exit(int(ExitCode.BAD_INPUT))
        except typer.Abort:
            err.print("interrupted")
            sys.exit(int(ExitCode.INTERRUPTED))
        sys.exit(rv if type(rv) is int else 0)  # an Exit's code; a command's return value is not one
