"""``--config FILE.toml``: a run's options from a file, with the command line taking precedence.

The option is eager: its callback reads the file before the other options are parsed and puts
the values in click's ``default_map``, so each option the command line does not give takes its
value from the file, and one that it gives overrides the file. Any option of the command can be
set this way (the loading options included), with no list to keep in step.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from advgrad.cli.console import error_text, print_error
from advgrad.core.errors import AdvgradError, ExitCode, UsageError
from advgrad.io.run_config import OptionInfo, map_config, read_config

META_KEY = "advgrad.config_file"
_NOT_IN_FILES = ("--config", "--help")


def _long_flag(param: Any) -> str:
    longs = [o for o in param.opts if o.startswith("--")] or list(param.opts)
    return max(longs, key=len)


def _kind(param: Any) -> str:
    """``integer``, ``float`` or ``text``: what the option takes (click's type name, or the
    annotation where Typer ≥ 0.20 converts values itself)."""
    name = getattr(getattr(param, "type", None), "name", None)
    if name is None and hasattr(param, "get_runtime_param"):
        annotation = getattr(param.get_runtime_param(), "annotation", None)
        name = {int: "integer", float: "float"}.get(annotation)
    return name if name in ("integer", "float") else "text"


def command_options(command: Any) -> list[OptionInfo]:
    """The options of a (Typer-built click) ``command`` that a config file may set."""
    return [
        OptionInfo(
            p.name,
            _long_flag(p),
            multiple=p.multiple,
            is_flag=p.is_flag,
            kind=_kind(p),
            aliases=tuple(o for o in p.opts if o.startswith("--") and o != _long_flag(p)),
        )
        for p in command.params
        if p.param_type_name == "option" and p.name and not p.hidden and _long_flag(p) not in _NOT_IN_FILES
    ]


def _coerce(param: Any, ctx: typer.Context, value: Any) -> None:
    """Convert ``value`` as the option would (click's ``type_cast_value``; Typer ≥ 0.20 vendors
    click and converts with its runtime parameter instead)."""
    if hasattr(param, "type_cast_value"):
        param.type_cast_value(ctx, value)
    elif hasattr(param, "get_runtime_param"):
        param.get_runtime_param().coerce(value, param=param, ctx=ctx)


def _check_values(ctx: typer.Context, mapped: dict, path: Path) -> None:
    params = {p.name: p for p in ctx.command.params}
    for name, value in mapped.items():
        try:
            _coerce(params[name], ctx, value)
        except Exception as exc:  # click's or Typer's BadParameter, depending on the version
            detail = getattr(exc, "message", None) or str(exc)
            raise UsageError(f"{path}: bad value for {_long_flag(params[name]).lstrip('-')}: {detail}") from None


def load_config(ctx: typer.Context, param: typer.CallbackParam, value: Path | None) -> Path | None:
    """Callback of ``--config``: read the file (or the shipped config of that name) into
    ``ctx.default_map`` (one-line error, exit 2)."""
    if value is None or ctx.resilient_parsing:
        return value
    try:
        data, source = read_config(value)
        mapped = map_config(data, command_options(ctx.command), source)
        _check_values(ctx, mapped, Path(source))
    except AdvgradError as exc:
        print_error(f"error: {error_text(exc)}")
        raise typer.Exit(int(ExitCode.BAD_INPUT)) from None
    ctx.default_map = {**(ctx.default_map or {}), **mapped}
    ctx.meta[META_KEY] = source
    return value
