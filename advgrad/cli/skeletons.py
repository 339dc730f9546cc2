"""Commands built from the catalog (:mod:`advgrad.cli.catalog`) without importing them: one that holds
a command's help, for the root's help to list, and one with its options, for shell completion to
walk. Neither ever runs; :class:`advgrad.cli.group.AdvgradGroup` loads the real command for that."""

from __future__ import annotations

import functools
import inspect
from typing import Annotated, Any, Optional

import typer

from advgrad.cli.catalog import complete
from advgrad.cli.help import HelpCommand, HelpGroup


def _completer(kind: str) -> Any:
    def completions(incomplete: str) -> list[str]:
        return complete(kind, incomplete)

    return completions


def _completion_parameter(k: int, data: dict[str, Any]) -> inspect.Parameter:
    """One parameter of a completion-only command: the option's flags (or the argument), and what its
    value completes to (:func:`advgrad.cli.catalog.complete`)."""
    kind = data["complete"]
    auto = None if kind is None else _completer(kind)
    if "argument" in data:
        annotation: Any = Annotated[Optional[str], typer.Argument(autocompletion=auto, show_default=False)]
    else:
        decls = list(data["opts"])
        if data["secondary"]:  # an on/off pair: --random-start/--no-random-start
            decls = [f"{decls[0]}/{data['secondary'][0]}", *decls[1:]]
        value: Any = Optional[bool] if data["flag"] else Optional[list[str]] if data["multiple"] else Optional[str]
        annotation = Annotated[value, typer.Option(*decls, autocompletion=auto, hidden=data["hidden"])]
    return inspect.Parameter(f"p{k}", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=annotation)


def _never_run(**_: Any) -> None:  # pragma: no cover - completion parses, it never invokes
    raise AssertionError("a completion-only command does not run")


def _completion_function(data: dict[str, Any]) -> Any:
    params = [_completion_parameter(k, p) for k, p in enumerate(data["params"])]
    function = functools.partial(_never_run)
    function.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    function.__annotations__ = {p.name: p.annotation for p in params}  # type: ignore[attr-defined]
    function.__doc__ = data["help"]
    return function


def completion_command(name: str, data: dict[str, Any]) -> Any:
    """A command built from its catalog entry (:mod:`advgrad.cli.catalog`) without importing its module:
    its options, each value completing as the real one does. Shell completion walks it; it never runs."""
    import typer.main

    if "commands" in data:
        app = typer.Typer(name=name, cls=HelpGroup, add_completion=False)
        for sub, subdata in data["commands"].items():
            app.command(sub, cls=HelpCommand)(_completion_function(subdata))
    else:
        app = typer.Typer(add_completion=False)
        app.command(name, cls=HelpCommand)(_completion_function(data))
    command = typer.main.get_command(app)
    command.name = name
    return command


def summary_command(name: str, data: dict[str, Any]) -> Any:
    """A command that holds only the help of the catalog's entry: what the root's help lists."""
    return HelpCommand(name=name, help=data["help"], short_help=data["short_help"])
