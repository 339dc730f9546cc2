"""The attack options of the command line, read from the registered attacks' parameters.

Each attack declares its parameters once, as fields of its :class:`AttackParams` dataclass
(``param(default, help, shown=, parse=)``). A field's name is an option's name (``step_size`` is
``--step-size``): the options of ``advgrad attack`` and ``advgrad eval`` are the union of every
registered attack's fields, each with its type, the help text most attacks give it and every
attack's default. Nothing here knows the command line's library; the CLI turns each
:class:`AttackOption` into one option (``advgrad/cli/shared_options.py``), so an attack registered with a
new parameter gets its option, its config key and its help line without an edit there.
"""

from __future__ import annotations

import fnmatch
import re
import typing
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, fields
from typing import Any

from advgrad.attacks.base import AttackParams, AttackSpec
from advgrad.attacks.registry import list_attacks

_TYPES = (bool, int, float, str)  # bool first: it is an int too


@dataclass(frozen=True)
class AttackOption:
    """One attack option: the field ``name`` that attacks declare, the ``type`` its value has
    (``bool`` for an on/off flag), the ``help`` most of them give it, each attack's ``defaults``
    as ``(attack, default)`` pairs (the ``shown`` text where it depends on ε), and ``parse``, the
    reader of a value written as text where the type is not enough."""

    name: str
    type: type
    help: str
    defaults: tuple[tuple[str, Any], ...]
    parse: Callable[[str, str], Any] | None = None
    other_helps: tuple[tuple[str, str], ...] = ()  # (attacks, help) where an attack means something else by it
    spelled: str | None = None  # the option's name where it is not the field's (``param(flag=...)``)

    @property
    def flag(self) -> str:
        return "--" + (self.spelled or self.name.replace("_", "-"))

    def defaults_text(self) -> str:
        """Which attacks take it and their defaults, grouped by value: ``cw; default: 9`` for one
        value, else ``default: apgd-*, strong: 100; bim, mifgsm: 10``, where a value more than
        half of the attacks share goes first, without names (``default: ce; apgd-dlr, apgd-t: dlr``)."""
        groups: dict[str, list[str]] = {}
        for attack, default in self.defaults:
            groups.setdefault(_shown(default), []).append(attack)
        if len(groups) == 1:
            value, names = next(iter(groups.items()))
            return f"{', '.join(_families(names))}; default: {value}"
        common = max(groups, key=lambda v: len(groups[v]))
        parts = []
        if 2 * len(groups[common]) > len(self.defaults):
            parts.append(common)
            del groups[common]
        parts += [f"{', '.join(_families(names))}: {value}" for value, names in groups.items()]
        return "default: " + "; ".join(parts)

    def help_text(self) -> str:
        """The option's help line: ``Iterations N (default: apgd-*, strong: 100; …).``"""
        text = self.help[:1].upper() + self.help[1:] if self.help[:1].isascii() else self.help
        others = "".join(f"; for {attacks}: {help}" for attacks, help in self.other_helps)
        return f"{text}{others} ({self.defaults_text()})."


def _unrelated(text: str, other: str) -> bool:
    """Whether two help texts share less than half of the shorter one's words (MI-FGSM's decay factor
    against APGD's step weight, both ``momentum``), so that the option's help must give both."""
    a, b = (set(re.findall(r"\w+", t.lower())) for t in (text, other))
    return 2 * len(a & b) < min(len(a), len(b))


def _shown(value: Any) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _families(names: list[str]) -> list[str]:
    """``apgd-ce, apgd-dlr, apgd-t`` as ``apgd-*`` when they are every registered ``apgd-`` attack."""
    registered = [spec.name for spec in list_attacks()]
    out: list[str] = []
    for name in names:
        if "-" in name:
            pattern = name.split("-", 1)[0] + "-*"
            family = fnmatch.filter(registered, pattern)
            if len(family) > 1 and all(member in names for member in family):
                if pattern not in out:
                    out.append(pattern)
                continue
        out.append(name)
    return out


def field_type(params_type: type[AttackParams], name: str) -> type:
    """The value type of a field (``float | None`` is ``float``): bool, int, float or str."""
    hint = typing.get_type_hints(params_type)[name]
    args = [a for a in typing.get_args(hint) if a is not type(None)] or [hint]
    for candidate in _TYPES:
        if candidate in args:
            return candidate
    raise TypeError(f"{params_type.__name__}.{name}: an attack parameter is a bool, int, float or str, not {hint}")


def collect_options(specs: Iterable[AttackSpec] | None = None) -> list[AttackOption]:
    """Every parameter of the given attacks (default: all registered), merged by name; the most
    widely taken first, then in the order the attacks (by name) declare them.

    Raises TypeError when two attacks declare one name with different types or parsers: one
    option cannot read its value two ways.
    """
    declared: dict[str, list[tuple[AttackSpec, Any]]] = {}
    for spec in list(list_attacks() if specs is None else specs):
        for f in fields(spec.params_type):
            declared.setdefault(f.name, []).append((spec, f))
    options = []
    for name, decls in declared.items():
        types = {field_type(spec.params_type, name) for spec, _ in decls}
        parsers = {f.metadata.get("parse") for _, f in decls} - {None}
        spellings = {f.metadata.get("flag") for _, f in decls}
        if len(types) > 1 or len(parsers) > 1 or len(spellings) > 1:
            owners = ", ".join(spec.name for spec, _ in decls)
            raise TypeError(f"attacks {owners} declare the parameter {name!r} with different types, parsers or flags")
        helps = Counter(f.metadata.get("help", "") for _, f in decls)
        top = max(helps.values())
        main = next(f.metadata.get("help", "") for _, f in decls if helps[f.metadata.get("help", "")] == top)
        others: dict[str, list[str]] = {}  # helps that mean something else, not a rewording or refinement
        for spec, f in decls:
            text = f.metadata.get("help", "")
            if _unrelated(text, main):
                others.setdefault(text, []).append(spec.name)
        options.append(
            AttackOption(
                name=name,
                type=types.pop(),
                help=main,
                other_helps=tuple((", ".join(_families(names)), text) for text, names in others.items()),
                defaults=tuple(
                    (spec.name, f.metadata["shown"] if f.metadata.get("shown") is not None else f.default)
                    for spec, f in decls
                ),
                parse=parsers.pop() if parsers else None,
                spelled=spellings.pop(),
            )
        )
    order = list(declared)
    return sorted(options, key=lambda o: (-len(o.defaults), order.index(o.name)))


def read_options(given: dict[str, Any], specs: Iterable[AttackSpec] | None = None) -> dict[str, Any]:
    """The attack options as given (``None``: not given), each parsed (its ``parse``) and checked
    by every attack that declares it (:meth:`AttackParams.check_value`), also where no chosen
    attack takes it: a bad number is refused whatever the attacks."""
    specs = list(list_attacks() if specs is None else specs)
    options = {o.name: o for o in collect_options(specs)}
    values = {}
    for name, value in given.items():
        option = options.get(name)
        if value is not None and option is not None and option.parse is not None and isinstance(value, str):
            value = option.parse(value, option.name)
        for spec in specs:
            spec.params_type.check_value(name, value)
        values[name] = value
    return values
