"""Output options that need no torch to declare: shared by every command, and by ``advgrad attacks``,
which lists without importing torch (:mod:`advgrad.cli.catalog`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

OUTPUT_PANEL = "Output"

JsonOpt = Annotated[
    Optional[Path],
    typer.Option(
        "--json",
        help="Write the results as JSON to FILE ('-' for stdout instead of the table).",
        rich_help_panel=OUTPUT_PANEL,
        show_default=False,
    ),
]
