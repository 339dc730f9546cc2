"""Run configurations in TOML: everything ``advgrad eval`` needs, in one file.

A key is the long name of a command-line option, without the dashes (``batch-size`` or
``batch_size``); its value is what the option would take. Lists are written as TOML arrays
(``eps = ["0", "4/255", "8/255"]``, ``fail-under = ["pgd@8/255=0.40"]``). Keys may be grouped
under the tables ``[inputs]``, ``[attacks]``, ``[gates]`` and ``[outputs]`` for readability; the
grouping does not change their meaning. An unknown key is an error that names it, so a typo never
silently falls back to a default. Options given on the command line override the file. Relative
paths are relative to the current folder, as on the command line.

This module knows nothing about the command line: the CLI describes its options as
:class:`OptionInfo` and receives the values keyed by parameter name.
"""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from advgrad.core.errors import UsageError
from advgrad.core.numeric import check_number
from advgrad.io.paths import read_capped

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

SECTIONS = ("inputs", "attacks", "gates", "outputs")
# Options that were renamed, old flag → (new flag, what it is): the command line and config files say so.
RENAMED_OPTIONS = {"--version": ("--aa-version", "AutoAttack's version; `advgrad --version` prints advgrad's")}
CONFIG_LIMIT = 1 << 20  # a run's options take a few hundred bytes; the limit keeps a device or a huge file out


@dataclass(frozen=True)
class OptionInfo:
    """A command option a config key can set: its parameter ``name``, its long ``flag``
    (``--batch-size``), whether it is repeatable and whether it is an on/off flag."""

    name: str
    flag: str
    multiple: bool = False
    is_flag: bool = False
    aliases: tuple[str, ...] = ()  # other long flags of the same option (--method for --attack)
    kind: str = "text"  # "integer", "float" or anything else (text, paths: taken as written)

    @property
    def key(self) -> str:
        return self.flag.lstrip("-")

    @property
    def keys(self) -> tuple[str, ...]:
        """Every key that sets this option: its long name and its aliases, without dashes."""
        return (self.key, *(a.lstrip("-") for a in self.aliases))


def read_config(value: str | os.PathLike) -> tuple[dict[str, Any], str]:
    """The config ``--config`` names, parsed, and where it came from: the file ``value`` when
    one exists, else the shipped config of that name (``quick``: ``advgrad config list``)."""
    from advgrad.io.shipped import is_shipped_config, shipped_config

    path = Path(value)
    if path.is_file() or not is_shipped_config(str(value)):
        return read_toml(path), str(path)
    shipped = shipped_config(str(value))
    try:
        return tomllib.loads(shipped.read_text()), str(shipped.location)
    except tomllib.TOMLDecodeError as exc:  # pragma: no cover - the shipped files are tested
        raise UsageError(f"shipped config {shipped.name}: not valid TOML ({exc})") from None


def read_toml(path: str | os.PathLike) -> dict[str, Any]:
    """Parse a TOML file; a clear UsageError when it is missing or malformed."""
    path = Path(path)
    if not path.exists() and not path.is_symlink():
        from advgrad.io.shipped import list_configs

        names = ", ".join(c.name for c in list_configs())
        raise UsageError(f"{path}: no such config file or shipped config (shipped: {names}; see `advgrad config list`)")
    data = read_capped(path, CONFIG_LIMIT, "a config file (.toml)", UsageError, param="config")
    try:
        return tomllib.loads(data.decode("utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{path}: not valid TOML ({exc})") from None
    except UnicodeDecodeError as exc:  # a binary file, or text in another encoding than UTF-8
        raise UsageError(
            f"{path}: not a TOML text file (byte {exc.start} is not UTF-8); --config needs a UTF-8 .toml file"
        ) from None


def _flatten(data: dict[str, Any], path: Path) -> dict[str, tuple[str, Any]]:
    """``{key: (where, value)}`` with the grouping tables opened; ``where`` names the key for messages."""
    flat: dict[str, tuple[str, Any]] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            if key not in SECTIONS:
                raise UsageError(
                    f"{path}: unknown table [{key}]; keys may be grouped under {', '.join(f'[{s}]' for s in SECTIONS)}"
                )
            items = [(f"{key}.{k}", k, v) for k, v in value.items()]
        else:
            items = [(key, key, value)]
        for where, name, v in items:
            norm = name.replace("_", "-")
            if norm in flat:
                raise UsageError(f"{path}: {where} is set twice (also as {flat[norm][0]})")
            flat[norm] = (where, v)
    return flat


def _value(option: OptionInfo, value: Any, where: str, path: Path) -> Any:
    """The value in the form the option takes: a list for repeatable options, a comma-separated
    string where a list is given for a single option (``eps``, ``attack``)."""
    if isinstance(value, dict):
        raise UsageError(f"{path}: {where} must be a value, not a table")
    if option.is_flag:
        if not isinstance(value, bool):
            raise UsageError(f"{path}: {where} must be true or false, got {value!r}")
        return value
    if option.kind in ("integer", "float") and not option.multiple:
        # TOML has types: a bool, a string or (for a whole-number option) a float is a mistake, not a number
        check_number(value, f"{path}: bad value for {where}:", integer=option.kind == "integer")
        return value
    if isinstance(value, bool) or (isinstance(value, list) and any(isinstance(v, bool) for v in value)):
        raise UsageError(f"{path}: bad value for {where}: it takes what --{option.key} takes, not true/false")
    if option.multiple:
        return [str(v) for v in value] if isinstance(value, list) else [str(value)]
    if isinstance(value, list):
        if any(isinstance(v, (list, dict)) for v in value):
            raise UsageError(f"{path}: {where} must be a flat list")
        return ",".join(str(v) for v in value)
    return value


def map_config(data: dict[str, Any], options: list[OptionInfo], path: str | os.PathLike) -> dict[str, Any]:
    """``{parameter name: value}`` for the keys of a parsed config; unknown keys are errors."""
    path = Path(path)
    by_key = {key: o for o in options for key in o.keys}
    mapped = {}
    seen: dict[str, str] = {}
    for key, (where, value) in _flatten(data, path).items():
        option = by_key.get(key)
        renamed, what = RENAMED_OPTIONS.get(f"--{key}", ("", ""))
        if option is None and renamed.lstrip("-") in by_key:
            raise UsageError(f"{path}: the key {where!r} is now {renamed.lstrip('-')!r} ({what})")
        if option is None:
            close = difflib.get_close_matches(key, list(by_key), n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise UsageError(
                f"{path}: unknown key {where!r}{hint}; keys are the long option names of `advgrad eval --help`"
            )
        if option.name in seen:
            raise UsageError(f"{path}: {where} is set twice (also as {seen[option.name]}; they are the same option)")
        seen[option.name] = where
        mapped[option.name] = _value(option, value, where, path)
    return mapped
