"""Errors that the command line turns into one clear line and an exit code.

Anything the user can fix (a missing file, a negative ε, a model whose output does not fit the
labels) raises a subclass of :class:`AdvgradError`; the CLI prints its message on stderr and exits
with :attr:`ExitCode.BAD_INPUT`. :class:`InternalError` and other exceptions are bugs and are
reported as such (:attr:`ExitCode.INTERNAL`).

The library speaks in its own words: a message names a parameter as the library spells it, in
backquotes (```batch_size` must be at least 1, got 0``), and the error lists the parameters it
names in :attr:`AdvgradError.params`. The command line, which calls them options, renders the
same message with its flags (``--batch-size must be at least 1, got 0``) through
:meth:`AdvgradError.render`; the mapping from parameter to flag lives in the CLI alone.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from enum import IntEnum


class ExitCode(IntEnum):
    """Process exit codes shared by every command."""

    OK = 0
    GATE_FAILED = 1  # a robustness gate or a requested check failed
    BAD_INPUT = 2  # bad usage or bad input: one clear line on stderr
    INTERNAL = 3  # a bug in advgrad: please report it
    INTERRUPTED = 130


def first_line(exc: BaseException, limit: int = 240) -> str:
    """The first line of an exception's message (its type name when it has none), for one-line errors."""
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:limit]


def param_label(name: str) -> tuple[str, tuple[str, ...]]:
    """How a message names ``name``, and the ``params`` of its error: a Python name (``steps``) is
    a parameter, written ```steps``` and listed; other text (``--steps``, a config key) is shown as
    given and lists nothing."""
    return (f"`{name}`", (name,)) if name.isidentifier() else (name, ())


class AdvgradError(Exception):
    """A problem with what the user asked for; the message says what and how to fix it.

    ``params``: the parameters the message names, each written in backquotes (```loss```), first
    the one at fault; :meth:`render` spells them another way (the CLI: as its flags).
    """

    exit_code = ExitCode.BAD_INPUT

    def __init__(self, message: str = "", *, params: str | Sequence[str] = ()):
        super().__init__(message)
        self.params: tuple[str, ...] = (params,) if isinstance(params, str) else tuple(params)

    @property
    def param(self) -> str | None:
        """The parameter at fault, when the error is about one."""
        return self.params[0] if self.params else None

    def render(self, spell: Callable[[str], str]) -> str:
        """The message with each named parameter ```name``` written as ``spell(name)``."""
        return _spelled(str(self), self.params, spell)


class Notice(str):
    """A warning's text that names parameters as errors do (```mean```), with the ``params`` it
    names; it is a plain ``str`` to everyone else. The CLI renders it with its flags."""

    params: tuple[str, ...]

    def __new__(cls, text: str, params: str | Sequence[str] = ()) -> Notice:
        self = super().__new__(cls, text)
        self.params = (params,) if isinstance(params, str) else tuple(params)
        return self

    def render(self, spell: Callable[[str], str]) -> str:
        """The text with each named parameter ```name``` written as ``spell(name)``."""
        return _spelled(str(self), self.params, spell)


def _spelled(text: str, params: tuple[str, ...], spell: Callable[[str], str]) -> str:
    for name in params:
        text = text.replace(f"`{name}`", spell(name))
    return text


class UsageError(AdvgradError):
    """An option value that cannot be used (a negative ε, an unknown attack name...)."""


class DataError(AdvgradError):
    """Data that cannot be read or does not have the expected form."""


class ModelError(AdvgradError):
    """A model that cannot be loaded or does not fit the data."""


class AdvgradWarning(UserWarning):
    """A warning of advgrad's own, through :mod:`warnings` (the Python API, a damaged saved batch):
    the command line shows these as one line each and hides other libraries' warnings unless asked
    (``-v``), so advgrad's own must be told apart by their category, not by the module that warns
    (torch and matplotlib name their caller, often advgrad, as the warning's place)."""


class Interrupted(KeyboardInterrupt):
    """A run stopped by the user (Ctrl-C, ``kill``), saying what it kept: ``"interrupted: 3 finished
    epochs are in run.ckpt; …"``. It is a KeyboardInterrupt, so nothing that catches exceptions
    swallows it; the CLI prints the message and exits 130."""


class InternalError(Exception):
    """A check inside advgrad failed: a bug, never the user's input, so not an :class:`AdvgradError`:
    the CLI reports it as an internal error (:attr:`ExitCode.INTERNAL`)."""
