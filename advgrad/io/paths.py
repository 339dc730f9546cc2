"""Checks on the paths users give, shared by every reader of a file a user names.

A file advgrad reads (a model, weights, data, a table's bounds, a config, a report, a checkpoint)
must be a regular file, symbolic links followed. :func:`require_file` checks that with ``stat``,
before anything is opened: a character device (``/dev/zero`` would be read without end), a named
pipe (which blocks until a writer comes), a socket, a block device, a folder or a symbolic-link
loop is refused with one line naming the option and what the path is. Files advgrad reads itself
are opened by :func:`open_regular` (without blocking, and checked again on the open descriptor,
so a file swapped for a pipe after the check cannot block either); :func:`read_capped` reads one
whole up to a size limit. Folders of files (an image folder) are listed by :func:`walk_files`:
regular files only, and each folder once, so a symbolic-link loop is named and refused.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from advgrad.core.errors import AdvgradError

PathLike = str | os.PathLike
MISSING = "missing"

_KINDS = (
    (stat.S_ISDIR, "directory"),
    (stat.S_ISCHR, "character device"),
    (stat.S_ISBLK, "block device"),
    (stat.S_ISFIFO, "named pipe (FIFO)"),
    (stat.S_ISSOCK, "socket"),
)


def special_kind(mode: int) -> str | None:
    """What a file of ``st_mode`` ``mode`` is when it is not a regular file (``directory``,
    ``character device``, ``named pipe (FIFO)``…); None for a regular file."""
    return next((name for test, name in _KINDS if test(mode)), None if stat.S_ISREG(mode) else "special file")


def _named(path: PathLike, param: str | None) -> str:
    return f"`{param}` {path}" if param else str(path)


def _os_problem(exc: OSError) -> str:
    if exc.errno == errno.ENOENT:
        return MISSING
    if exc.errno == errno.ELOOP:
        return "a symbolic link loop"
    return f"unreadable ({exc.strerror or exc})"


def file_problem(path: PathLike) -> str | None:
    """What keeps ``path`` from being read as a regular file (links followed), in words that follow
    "it is": ``a named pipe (FIFO)``, ``a symbolic link loop``, ``missing``…; None for a regular file.
    Found by ``stat``: nothing is opened."""
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        return _os_problem(exc)
    return None if stat.S_ISREG(mode) else f"a {special_kind(mode)}"


def _refused(error: type[AdvgradError], path: PathLike, problem: str, expected: str, param: str | None) -> AdvgradError:
    who = _named(path, param)
    text = (
        f"{who}: no such file (expected {expected})"
        if problem == MISSING
        else f"{who} is {problem}; expected {expected}"
    )
    return error(text, params=param or ())


def require_file(path: PathLike, expected: str, error: type[AdvgradError], *, param: str | None = None) -> Path:
    """``path`` (``~`` expanded) when it is a regular file, links followed; else ``error``, one line.

    ``expected`` completes "expected ..." in the message, e.g. "a .pt or .npz file holding x and y";
    ``param``, the parameter that named the path, starts the message (and is the error's ``params``).
    Nothing is opened: a device, a named pipe, a socket or a folder is told apart by ``stat``.
    """
    p = Path(path).expanduser()
    problem = file_problem(p)
    if problem is not None:
        raise _refused(error, path, problem, expected, param)
    return p


def open_regular(path: PathLike, expected: str, error: type[AdvgradError], *, param: str | None = None) -> BinaryIO:
    """``path`` opened for reading in binary when it is a regular file; else ``error``, one line.

    Checked by :func:`require_file`, then opened without blocking (a named pipe swapped in since
    would otherwise wait for a writer; ``O_NOCTTY``: a terminal never becomes ours) and checked
    again on the descriptor, which is the file that is read."""
    p = require_file(path, expected, error, param=param)
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(p, flags)
    except OSError as exc:
        raise _refused(error, path, _os_problem(exc), expected, param) from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise _refused(error, path, f"a {special_kind(mode)}", expected, param)
    return os.fdopen(fd, "rb")  # O_NONBLOCK changes nothing for a regular file


def size_text(size: int) -> str:
    """``1 MiB``, ``64 KiB``, ``512 bytes``: a limit as people read it."""
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if size >= 1 << shift and size % (1 << shift) == 0:
            return f"{size >> shift} {unit}"
    return f"{size} bytes"


def read_capped(
    path: PathLike, limit: int, expected: str, error: type[AdvgradError], *, param: str | None = None
) -> bytes:
    """The bytes of the regular file ``path`` (:func:`open_regular`); ``error`` when it holds
    more than ``limit`` bytes, which are never read: at most ``limit + 1`` bytes are."""
    try:
        with open_regular(path, expected, error, param=param) as fh:
            data = fh.read(limit + 1)
    except OSError as exc:  # e.g. EIO
        raise _refused(error, path, _os_problem(exc), expected, param) from None
    if len(data) > limit:
        raise error(
            f"{_named(path, param)} is larger than {size_text(limit)}, the limit for {expected}", params=param or ()
        )
    return data


def walk_files(
    top: PathLike, wanted: Callable[[str], bool], error: type[AdvgradError], *, param: str | None = None
) -> list[tuple[str, list[str], int]]:
    """Every folder under ``top`` (itself included) with the names of the regular files in it that
    ``wanted`` (a file name → bool) and how many entries ``wanted`` names it skipped for not being
    regular files (named pipes, devices, sockets, broken or looping links); sorted by folder path,
    as ``sorted(os.walk(top, followlinks=True))`` orders them.

    Links to folders are followed, as torchvision's image folders follow them, but each folder
    (by device and inode) is visited once: a link back to a folder above it, a loop, is refused
    naming the link, and so is a second way to one folder (two links to one folder would list its
    files twice, and nested ones could multiply a small tree into millions of paths).
    """
    found: list[tuple[str, list[str], int]] = []
    seen: dict[tuple[int, int], str] = {}
    stack: list[tuple[str, tuple[tuple[int, int], ...]]] = [(os.fspath(top), ())]
    while stack:
        folder, above = stack.pop()
        try:
            info = os.stat(folder)
            key = (info.st_dev, info.st_ino)
            if key in seen:
                raise error(_reached_twice(folder, seen[key], key in above, param), params=param or ())
            seen[key] = folder
            with os.scandir(folder) as entries:
                listed = sorted(((entry, _mode(entry)) for entry in entries), key=lambda e: e[0].name)
        except OSError as exc:
            raise error(
                f"{_named(top, param)}: cannot list {folder} ({exc.strerror or exc})", params=param or ()
            ) from None
        files, folders, skipped = [], [], 0
        for entry, mode in listed:
            if mode is not None and stat.S_ISDIR(mode):
                folders.append((entry.path, (*above, key)))
            elif wanted(entry.name):
                if mode is not None and stat.S_ISREG(mode):
                    files.append(entry.name)
                else:
                    skipped += 1
        found.append((folder, files, skipped))
        stack.extend(reversed(folders))  # depth first, by name: which of two ways to a folder comes first is fixed
    return sorted(found)


def _mode(entry: os.DirEntry) -> int | None:
    """The mode of what ``entry`` leads to (links followed); None for a broken or looping link."""
    try:
        return entry.stat().st_mode
    except OSError:
        return None


def _reached_twice(folder: str, first: str, loop: bool, param: str | None) -> str:
    if loop:
        return (
            f"{_named(folder, param)} leads back to {first}, a folder that contains it: a symbolic link loop; "
            "remove the link"
        )
    return (
        f"{_named(folder, param)} and {first} are one folder, reached twice through a symbolic link; "
        "each folder must be reachable one way only"
    )
