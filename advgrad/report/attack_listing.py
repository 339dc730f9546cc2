"""The attack listing of ``advgrad attacks``, from plain rows: it imports no torch, so that the
listing also prints from the command line's catalog (:mod:`advgrad.cli.catalog`)."""

from __future__ import annotations

import re
from collections.abc import Callable

from rich.console import Group, RenderableType
from rich.padding import Padding
from rich.table import Table
from rich.text import Text


def attacks_listing(rows: list[dict], norm_label: Callable[[str], str]) -> Group:
    """The registry as ``advgrad attacks`` prints it, one block per attack: name, kind, threat
    models (each named by ``norm_label``: ``inf`` → ``L∞``), what it does, the paper, and each
    parameter's option, default and meaning. ``rows`` are as
    ``advgrad.cli.commands.attacks.describe_attack`` gives them."""
    blocks: list[RenderableType] = []
    for row in rows:
        aliases = f" (also: {', '.join(row['aliases'])})" if row["aliases"] else ""
        norms = ", ".join(norm_label(n) for n in row["norms"])
        blocks.append(Text.assemble((row["name"], "bold"), f"{aliases} · {row['kind']} · {norms}"))
        cost = row.get("cost")
        cost_line = (
            ""
            if cost is None
            else (
                f"\ncost per sample: {cost['formula']} model passes ({cost['default']:,} with the defaults"
                + (f", {cost['classes']} classes)" if re.search(r"\bclasses\b", cost["formula"]) else ")")
            )
        )
        blocks.append(Padding(Text(f"{row['summary']}\npaper: {row['reference']}{cost_line}"), (0, 0, 0, 2)))
        params = Table(box=None, show_header=False, padding=(0, 2, 0, 4))
        params.add_column("option", no_wrap=True)
        params.add_column("default", no_wrap=True)
        params.add_column("meaning")
        for p in row["params"]:
            params.add_row(p["option"], _default(p["default"]), p["help"])
        blocks.append(params)
        blocks.append(Text(""))
    return Group(*blocks)


def _default(value: object) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    return str(value)
