"""Text that came from a file, made safe to show: control characters escaped, long names and long
lists cut short.

A name read from a file (a CSV header, a Hugging Face ``id2label``, a state-dict key, an operator
type that onnxruntime echoes in its error) may hold anything: an escape sequence that clears the
terminal or sets its title (``ESC [2J``, ``ESC ]0;…BEL``, the one-byte CSI U+009B), a carriage
return that hides what came before it, a bidirectional override (U+202E) that shows text in
another order, characters that cannot be written as UTF-8, or a million characters. What advgrad
shows (messages and tables on the terminal, Markdown, JUnit and CSV reports) goes through
:func:`printable`; names and lists of names in messages through :func:`short` and
:func:`some_names`. JSON needs none of this: ``json.dumps`` escapes every such character itself.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

# Written as escapes: C0 controls, DEL and C1 controls (ESC, CSI U+009B, OSC U+009D…); the
# bidirectional marks, embeddings, overrides and isolates; invisible separators and joiners that
# make two names look alike (zero width space, word joiner, byte order mark); the line and
# paragraph separators; lone surrogates (undecodable file names); U+FFFE and U+FFFF, which XML
# does not allow. Zero width (non-)joiners stay: scripts and emoji need them.
_UNSAFE = re.compile(
    "[\x00-\x1f\x7f-\x9f\u061c\u200b\u200e\u200f\u2028-\u202e\u2060\u2066-\u2069\ud800-\udfff\ufeff\ufffe\uffff]"
)
_UNSAFE_BUT_NEWLINE = re.compile(_UNSAFE.pattern.replace("\x00-\x1f", "\x00-\x09\x0b-\x1f"))

#: characters of one name a message shows; the rest is replaced by its length
NAME_WIDTH = 80
#: names a list in a message shows; the rest is replaced by their count
LIST_LENGTH = 8


def _escape(match: re.Match) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: object, *, newlines: bool = False) -> str:
    """``str(text)`` with every control character written as an escape (``\\x1b``, ``\\x9b``,
    ``\\u202e``; see :data:`_UNSAFE`), so that showing it cannot move the cursor, clear the screen,
    reorder what follows or break a one-line message. ``newlines`` keeps line feeds (for a whole
    document or table). Applying it twice changes nothing more."""
    return (_UNSAFE_BUT_NEWLINE if newlines else _UNSAFE).sub(_escape, str(text))


def short(name: object, width: int = NAME_WIDTH) -> str:
    """One name for a message: :func:`printable`, and beyond ``width`` characters cut, with its
    length: ``aaaa… (1,000,000 characters)``."""
    text = str(name)
    if len(text) <= width:
        return printable(text)
    return f"{printable(text[:width])}… ({len(text):,} characters)"


def some_names(names: Iterable[object], limit: int = LIST_LENGTH, width: int = NAME_WIDTH) -> str:
    """A list of names for a message: the first ``limit``, each :func:`short`, and the count when
    there are more (``a, b, c, … (1,000,000 in all)``); ``none`` when there are none."""
    names = list(names)
    shown = ", ".join(short(n, width) for n in names[:limit])
    if len(names) > limit:
        shown += f", … ({len(names):,} in all)"
    return shown or "none"
