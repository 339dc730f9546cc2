"""Writing output files atomically: a temporary file in the same folder, then a rename.

An interrupted run never leaves a half-written report or tensor file behind. A file that is
replaced keeps its permission bits; a new file gets the usual ones (0666 less the umask), not the
0600 of a temporary file. A target that exists but is not a regular file — ``/dev/null``,
``/dev/stdout``, a named pipe — is never replaced: the finished content is written into it (a
pipe waits for its reader), so the special file stays what it was. Folders, block devices and
sockets are refused.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import stat
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from advgrad.core.errors import UsageError
from advgrad.io.paths import special_kind

# A picture's format, by the suffix of its name (matplotlib's name for it): vector where the name asks
# for one (PDF, SVG, EPS), pixels otherwise.
PICTURE_FORMATS = {".png": "png", ".pdf": "pdf", ".svg": "svg", ".eps": "eps", ".jpg": "jpeg", ".jpeg": "jpeg"}


def picture_format(path: str | os.PathLike, param: str = "path") -> str:
    """The format a picture named ``path`` is written in (``plot.pdf`` → ``pdf``); a UsageError naming
    ``param`` for a suffix that names no format advgrad writes."""
    suffix = Path(path).suffix.lower()
    if suffix not in PICTURE_FORMATS:
        what = f"{suffix} is not a picture format advgrad writes" if suffix else "it has no suffix to say the format"
        raise UsageError(
            f"`{param}` {path}: {what}; end the name with {', '.join(PICTURE_FORMATS)}",
            params=param,
        )
    return PICTURE_FORMATS[suffix]


def _prepare(path: Path) -> Path:
    path = Path(path)
    if path.is_dir():
        raise UsageError(f"{path} is a directory; give a file name to write")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create the folder {path.parent}: {exc.strerror or exc}") from None
    return path


def special_file(path: str | os.PathLike) -> str | None:
    """What ``path`` is when it exists and is not a regular file (links followed): ``character
    device``, ``named pipe (FIFO)``, ``block device``, ``socket``, ``directory``; else None."""
    try:
        mode = os.stat(path).st_mode
    except OSError:  # missing (or unreachable): written as a new file
        return None
    return special_kind(mode)


def _open_descriptor(path: str | os.PathLike) -> int | None:
    """The descriptor ``path`` names when it leads (through symbolic links) to an open file
    descriptor of this process, as ``/dev/stdout`` does (-1 for another process's); else None.
    Such a file is written through its descriptor, never replaced."""
    p = os.path.abspath(path)
    own = ("/proc/self/fd/", f"/proc/{os.getpid()}/fd/", "/dev/fd/")
    for _ in range(40):
        prefix = next((o for o in own if p.startswith(o)), None)
        if prefix is not None and p[len(prefix) :].isdigit():
            return int(p[len(prefix) :])
        if p.startswith("/proc/"):
            return -1
        if not os.path.islink(p):
            return None
        p = os.path.normpath(os.path.join(os.path.dirname(p), os.readlink(p)))
    return None


def current_umask() -> int:
    """The process's umask (read from /proc where it can be, so nothing is changed even briefly)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _mode_for(target: Path) -> int:
    """The permission bits ``target`` should have: its own when it exists, else 0666 less the umask."""
    try:
        return stat.S_IMODE(os.stat(target).st_mode)
    except OSError:
        return 0o666 & ~current_umask()


def _copy_into(tmp: Path, target: Path, fd: int | None) -> None:
    """Write the content of ``tmp`` into the existing special file ``target`` (no rename); through
    the descriptor ``fd`` when ``target`` names one of ours, so that ``--json /dev/stdout`` shares
    stdout's position with what else goes there."""
    try:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        sink = open(os.dup(fd), "ab") if fd is not None and fd >= 0 else open(target, "ab")  # never truncate
        with open(tmp, "rb") as src, sink:
            shutil.copyfileobj(src, sink)
    except OSError as exc:
        raise UsageError(f"cannot write to {target}: {exc.strerror or exc}") from None


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path to write; on success it becomes ``path``, else it is deleted.

    A regular (or new) ``path`` is replaced by a rename (through symbolic links: the link stays);
    an existing special file (a character device such as ``/dev/null``, a named pipe, an open
    descriptor such as ``/dev/stdout``) receives the content instead and stays as it was.
    """
    kind = special_file(path)
    if kind in ("directory", "block device", "socket"):
        raise UsageError(f"{path} is a {kind}; give a file name to write")
    descriptor = _open_descriptor(path)
    special = kind is not None or descriptor is not None
    # a symbolic link stays a link: the file it points to is the one replaced
    target = Path(path) if special else _prepare(Path(os.path.realpath(path)))
    try:  # beside the target (a rename never crosses file systems), or anywhere for a special file
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=None if special else target.parent)
    except OSError as exc:
        raise UsageError(f"cannot write to {target.parent}: {exc.strerror or exc}") from None
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        if special:
            _copy_into(tmp_path, target, descriptor)
        else:
            os.chmod(tmp_path, _mode_for(target))
            os.replace(tmp_path, target)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: str | os.PathLike, data: Any) -> None:
    """Write ``data`` as indented JSON atomically."""
    write_text(path, json.dumps(data, indent=2, allow_nan=False) + "\n")


def write_tensors(path: str | os.PathLike, data: dict[str, Any]) -> None:
    """``torch.save`` a dict of tensors and plain values atomically (loadable with weights_only=True)."""
    with atomic_path(path) as tmp:
        torch.save(data, tmp)
