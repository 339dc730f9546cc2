"""Help screens that read cleanly at 80 columns.

Typer shows a type placeholder (``<bool>``, ``<list[str]>``, ``<str>``) beside every option; on a
flag that looks like a value it needs. :class:`HelpCommand` and :class:`HelpGroup` drop it from
flags and name the value of the others (``EPS``, ``FILE``, ``N``), so that each row says what
to type, whoever declared the option.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from typer.core import TyperCommand, TyperGroup

METAVARS = {  # options whose value has a better name than its type
    "eps": "EPS",
    "attack": "NAMES",
    "method": "NAME",
    "norm": "NORM",
    "step_size": "STEP",
    "target": "CLASS",
    "model": "MODEL",
    "weights": "WEIGHTS",
    "model_args": "KEY=VALUE",
    "model_arg": "KEY=VALUE",
    "bpda": "NAME[=MOD:FN]",
    "predictions": "K",
    "mean": "MEAN",
    "std": "STD",
    "data": "DATA",
    "split": "SPLIT",
    "data_root": "DIR",
    "bounds": "FILE",
    "eps_scale": "FILE",
    "label_column": "NAME",
    "device": "DEVICE",
    "precision": "PRECISION",
    "loss": "LOSS",
    "fail_under": "GATE",
    "max_drop": "SHARE",
    "images": "DIR",
}
TYPE_METAVARS = {int: "N", float: "NUMBER", str: "TEXT", Path: "FILE"}


def tidy_metavars(params: list[Any]) -> None:
    """Flags get no placeholder; options without a metavar get one from :data:`METAVARS` or their
    type (``N``, ``NUMBER``, ``TEXT``, ``FILE``)."""
    for param in params:
        if getattr(param, "param_type_name", None) != "option":  # Typer bundles its own click: duck-typed
            continue
        if getattr(param, "is_flag", False) or getattr(param, "count", False):
            param.metavar = ""
        elif param.metavar is None:
            name = METAVARS.get(param.name or "")
            if name is None:
                annotation = getattr(getattr(param, "type_descriptor", None), "annotation", None)
                name = TYPE_METAVARS.get(annotation, None) if isinstance(annotation, type) else None
            param.metavar = name or param.type.name.upper()


class HelpCommand(TyperCommand):
    """A Typer command whose help shows no type placeholders on flags (see module doc)."""

    def format_help(self, ctx: Any, formatter: Any) -> None:
        tidy_metavars(self.get_params(ctx))
        super().format_help(ctx, formatter)


class HelpGroup(TyperGroup):
    """The application group, with :class:`HelpCommand`'s help."""

    def format_help(self, ctx: Any, formatter: Any) -> None:
        tidy_metavars(self.get_params(ctx))
        super().format_help(ctx, formatter)
