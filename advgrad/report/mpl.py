"""matplotlib without a display, and atomic saving of figures."""

from __future__ import annotations

import os

from advgrad.core.text import printable
from advgrad.io.files import atomic_path, picture_format


def pyplot():
    """matplotlib.pyplot on the Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def figure_text(text: object) -> str:
    """A name from a file as a figure shows it: control characters escaped (:func:`printable`)
    and each ``$`` shown as itself, never the start of mathtext (``a$\\frac{$`` would make
    matplotlib's math parser fail when the figure is saved)."""
    return printable(text, newlines=True).replace("$", r"\$")


def save_figure(fig, path: str | os.PathLike, *, format: str | None = None) -> None:
    """Write ``fig`` atomically in the format its name asks for (:func:`picture_format`: PNG, PDF,
    SVG, EPS or JPEG), or ``format``, and close it."""
    try:
        kind = format or picture_format(path)
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=kind)
    finally:
        pyplot().close(fig)
