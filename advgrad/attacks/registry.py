"""The attack registry: names to :class:`AttackSpec`. Filled explicitly in ``advgrad.attacks``."""

from __future__ import annotations

import difflib
import fnmatch

from advgrad.attacks.base import AttackSpec
from advgrad.core.errors import UsageError

_REGISTRY: dict[str, AttackSpec] = {}
_ALIASES: dict[str, str] = {}


def register_attack(spec: AttackSpec) -> AttackSpec:
    """Add an attack; its name and aliases must be new."""
    for name in (spec.name, *spec.aliases):
        if name in _REGISTRY or name in _ALIASES:
            raise ValueError(f"an attack named {name!r} is already registered")
    _REGISTRY[spec.name] = spec
    for alias in spec.aliases:
        _ALIASES[alias] = spec.name
    return spec


def unregister_attack(name: str) -> AttackSpec:
    """Remove the attack registered as ``name`` (its aliases go with it) and return it: for tests
    and plugins that register an attack for a while."""
    spec = _REGISTRY.pop(name)
    for alias in spec.aliases:
        _ALIASES.pop(alias, None)
    return spec


def get_attack(name: str) -> AttackSpec:
    """The attack registered under ``name`` or one of its aliases (case-insensitive)."""
    key = name.strip().lower()
    key = _ALIASES.get(key, key)
    try:
        return _REGISTRY[key]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY))
        close = difflib.get_close_matches(key, [*_REGISTRY, *_ALIASES], n=1, cutoff=0.5)
        hint = f"; did you mean {_ALIASES.get(close[0], close[0])}?" if close else ""
        raise UsageError(f"unknown attack {name!r}{hint} (choose from {known}; see `advgrad attacks`)") from None


def list_attacks(pattern: str = "*") -> list[AttackSpec]:
    """Registered attacks whose name matches the shell-style ``pattern``, in name order."""
    return [spec for name, spec in sorted(_REGISTRY.items()) if fnmatch.fnmatch(name, pattern)]
