"""ε values as people write them: ``0.03``, ``8/255``, lists ``0,1/255,2/255``, and the label each
keeps in reports.

An :class:`Eps` is a float that remembers how it was written: it computes and compares as the number
and prints in reports as the text (``8/255``, not ``0.03137254901960784``). Everything that carries ε
values from the user to a report carries ``Eps`` values, so no list of labels runs beside a list of
numbers.
"""

from __future__ import annotations

import math
from fractions import Fraction

from advgrad.core.errors import UsageError, param_label


def default_eps_label(eps: float) -> str:
    """The label of an ε nobody wrote down: a fraction of 255 (or 127, 510, 1020) when ``eps`` is
    one to double precision (``8/255``), else the shortest decimal that gives ``eps`` (``0.1``)."""
    frac = Fraction(eps).limit_denominator(1020)
    if eps != 0 and frac.denominator in (255, 127, 510, 1020) and float(frac) == eps:
        return f"{frac.numerator}/{frac.denominator}"
    text = repr(float(eps))
    return text[:-2] if text.endswith(".0") else text


class Eps(float):
    """A budget ε with its label: the text it was given as (``8/255``), or :func:`default_eps_label`.

    >>> e = Eps(8 / 255, "8/255")
    >>> e > 0.03, e.label
    (True, '8/255')
    """

    label: str

    def __new__(cls, value: float, label: str | None = None) -> Eps:
        self = super().__new__(cls, value)
        self.label = default_eps_label(float(value)) if label is None else label
        return self

    def __repr__(self) -> str:
        return f"Eps({float(self)!r}, {self.label!r})"

    def __reduce__(self):  # pickles (resume state, distributed exchange) keep the label
        return (Eps, (float(self), self.label))

    @classmethod
    def of(cls, value: float | str | Eps) -> Eps:
        """``value`` as an Eps: an Eps as it is, a number with its default label, text parsed and kept."""
        if isinstance(value, Eps):
            return value
        if isinstance(value, (int, float)):
            return cls(parse_eps(value), None)
        return cls(parse_eps(value), eps_text(value))


def parse_eps(text: str | float, what: str = "ε") -> float:
    """One ε: a decimal (``0.03``) or a fraction (``8/255``); must be finite and ≥ 0.

    ``what`` names the quantity in error messages: ε, or a parameter (``step_size``), which the CLI
    shows as its flag."""
    what, params = param_label(what) if what.isascii() else (what, ())
    raw = str(text).strip()
    try:
        if "/" in raw:
            num, den = raw.split("/", 1)
            value = float(num) / float(den)
        else:
            value = float(raw)
    except (ValueError, ZeroDivisionError):
        raise UsageError(
            f"bad {what} {raw!r}: write a number such as 0.03 or a fraction such as 8/255", params=params
        ) from None
    if not math.isfinite(value):
        raise UsageError(f"bad {what} {raw!r}: it must be finite", params=params)
    if value < 0:
        raise UsageError(f"bad {what} {raw!r}: it must be ≥ 0", params=params)
    return value


def parse_eps_list(text: str | list[str]) -> list[float]:
    """A comma-separated list of ε values (``0,1/255,2/255``), or several such strings."""
    return [float(value) for value in parse_eps_labelled(text)]


def parse_eps_labelled(text: str | float | list) -> list[Eps]:
    """:func:`parse_eps_list` as :class:`Eps` values, each labelled with the text the user wrote
    (``8/255`` stays ``8/255``, spaces removed), which reports print instead of the decimal; a
    number given as a float gets :func:`default_eps_label`, an Eps keeps its own."""
    parts = [text] if isinstance(text, (str, int, float)) else list(text)
    values = [
        Eps.of(p)
        for chunk in parts
        for p in (str(chunk).split(",") if isinstance(chunk, str) and not isinstance(chunk, Eps) else [chunk])
        if not isinstance(p, str) or p.strip()
    ]
    if not values:
        raise UsageError("give at least one ε value, e.g. `eps` 8/255", params="eps")
    return values


def eps_text(text: str | float) -> str:
    """How a report labels an ε the user wrote: their text without spaces (``8/255``, ``0.1``);
    a number given as a float gets :func:`default_eps_label`."""
    if isinstance(text, (int, float)):
        return default_eps_label(float(text))
    return "".join(str(text).split())
