"""Errors that the command line turns into one clear line and an exit code.

Anything the user can fix (a missing file, a negative ε, a model whose output does not fit the
labels) raises a subclass of :class:`AdvgradError`; the CLI prints its message on stderr and exits
with :attr:`ExitCode.BAD_INPUT`. Other exceptions are bugs and are reported as such.
"""

from __future__ import annotations

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


class AdvgradError(Exception):
    """A problem with what the user asked for; the message says what and how to fix it."""

    exit_code = ExitCode.BAD_INPUT


class UsageError(AdvgradError):
    """An option value that cannot be used (a negative ε, an unknown attack name...)."""


class DataError(AdvgradError):
    """Data that cannot be read or does not have the expected form."""


class ModelError(AdvgradError):
    """A model that cannot be loaded or does not fit the data."""


class InternalError(AdvgradError):
    """A check inside advgrad failed: a bug, never the user's input."""

    exit_code = ExitCode.INTERNAL
