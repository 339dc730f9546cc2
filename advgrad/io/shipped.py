"""Files that ship inside the package: example run configurations and the documentation.

Both live at the top of the repository, each in one copy: the run configurations in
``configs/NAME.toml`` and the documentation in ``docs/*.md``. A wheel carries them as
``advgrad/configs/`` and ``advgrad/docs/`` (see ``setup.py``), so a pip-installed advgrad finds a
configuration by name (``advgrad eval --config quick``); a checkout (or an editable install) reads
the repository's folders themselves.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from importlib import resources
from importlib.abc import Traversable
from pathlib import Path

from advgrad.core.errors import UsageError

CONFIG_SUFFIX = ".toml"


@dataclass(frozen=True)
class ShippedFile:
    """A file shipped with advgrad: its ``name`` (no suffix), one-line ``description`` and ``location``."""

    name: str
    description: str
    location: Traversable

    def read_text(self) -> str:
        return self.location.read_text(encoding="utf-8")


def _shipped_folder(name: str) -> Traversable | Path | None:
    """``configs`` or ``docs``: inside the installed package (a wheel), else beside the package in the
    repository (a checkout or an editable install); None when neither holds it."""
    package = resources.files("advgrad")
    packaged = package / name
    if packaged.is_dir():  # an installed wheel
        return packaged
    checkout = Path(str(package)).parent / name
    return checkout if checkout.is_dir() else None


def _toml_description(text: str) -> str:
    """The first line of a config's leading comment, without its ``#``."""
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped.startswith("#"):
            break
        if stripped.lstrip("#").strip():
            return stripped.lstrip("#").strip()
    return ""


def _markdown_description(text: str) -> str:
    """A document's title: its first heading, without the ``#`` marks."""
    for line in text.splitlines():
        if line.startswith("#"):
            return line.lstrip("#").strip().replace("`", "")
    return ""


def list_configs() -> list[ShippedFile]:
    """The example configurations shipped with advgrad, by name."""
    folder = _shipped_folder("configs")
    found = [] if folder is None else [entry for entry in folder.iterdir() if entry.name.endswith(CONFIG_SUFFIX)]
    return [
        ShippedFile(e.name[: -len(CONFIG_SUFFIX)], _toml_description(e.read_text(encoding="utf-8")), e)
        for e in sorted(found, key=lambda e: e.name)
    ]


def list_docs() -> list[ShippedFile]:
    """The documentation topics (``checks``, ``ci``, ``configs``…), by name; empty if none shipped."""
    folder = _shipped_folder("docs")
    if folder is None:
        return []
    found = [entry for entry in folder.iterdir() if entry.name.endswith(".md")]
    return [
        ShippedFile(e.name[:-3], _markdown_description(e.read_text(encoding="utf-8")), e)
        for e in sorted(found, key=lambda e: e.name)
    ]


def listing(files: list[ShippedFile]) -> str:
    """One line per file, name and description, the names in one column (``advgrad config list``)."""
    width = max((len(f.name) for f in files), default=0)
    return "".join(f"{f.name:<{width}}  {f.description}\n" for f in files)


def _pick(kind: str, name: str, files: list[ShippedFile], suffix: str, listing: str) -> ShippedFile:
    key = name.strip().lower().removesuffix(suffix)
    for shipped in files:
        if shipped.name == key:
            return shipped
    names = [f.name for f in files]
    close = difflib.get_close_matches(key, names, n=1)
    hint = f"; did you mean {close[0]}?" if close else ""
    raise UsageError(
        f"no shipped {kind} named {name!r}{hint} (there are: {', '.join(names) or 'none'}; see `{listing}`)"
    )


def shipped_config(name: str) -> ShippedFile:
    """The shipped configuration ``name`` (``quick`` or ``quick.toml``); a UsageError naming the
    closest one otherwise."""
    return _pick("config", name, list_configs(), CONFIG_SUFFIX, "advgrad config list")


def shipped_doc(topic: str) -> ShippedFile:
    """The documentation page ``topic`` (``checks`` or ``checks.md``)."""
    return _pick("documentation topic", topic, list_docs(), ".md", "advgrad docs")


def is_shipped_config(name: str) -> bool:
    """Whether ``name`` (``quick``, ``quick.toml``) names a shipped configuration."""
    key = name.strip().lower().removesuffix(CONFIG_SUFFIX)
    return any(c.name == key for c in list_configs())
