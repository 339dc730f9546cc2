"""``advgrad docs [TOPIC]``: the documentation shipped with advgrad."""

from __future__ import annotations

import sys
from typing import Annotated, Optional

import typer

from advgrad.cli.console import handle_errors
from advgrad.io.shipped import list_docs, listing, shipped_doc


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
        sys.stdout.write(listing(list_docs()))
        return
    sys.stdout.write(shipped_doc(topic).read_text())
