"""Reading the structure of a ``torch.save`` pickle without running it.

``torch.load(weights_only=True)`` fails the same way ("Weights only load failed") for a real pickle
that names Python classes — a whole model, which only unpickling with code execution could read —
and for bytes that are no pickle at all: random data after a pickle header, a damaged archive
member. The two need different answers (``--unsafe-pickle`` for the first, "corrupt" for the
second), so :func:`pickle_damage` walks the pickle's opcodes with :mod:`pickletools`, which decodes
them without executing or importing anything, and says what is wrong with it, if anything.
"""

from __future__ import annotations

import pickle
import pickletools
import zipfile
from pathlib import Path
from typing import BinaryIO

from advgrad.core.errors import first_line

# Opcodes that import a name: a pickle that fails weights_only loading because of code has one.
IMPORTING = {"GLOBAL", "STACK_GLOBAL", "INST"}
# torch.save's legacy (non-zip) format is a run of pickles (magic number, protocol, system info,
# the object, storage keys) followed by raw tensor bytes; the object is in the first four.
LEGACY_PICKLES = 4
LINE_LIMIT = 1 << 16  # a GLOBAL's module or name line; a longer one is not a real pickle


class _Bounded:
    """A read-only view of ``size`` bytes of a stream: reads never ask for more than is left, so a
    damaged length field cannot make the scan allocate gigabytes."""

    def __init__(self, stream: BinaryIO, size: int):
        self.stream, self.size, self.left = stream, size, size

    def tell(self) -> int:  # positions in pickletools' messages
        return self.size - self.left

    def read(self, n: int = -1) -> bytes:
        data = self.stream.read(self.left if n < 0 else min(n, self.left))
        self.left -= len(data)
        return data

    def readline(self) -> bytes:
        line = self.stream.readline(min(self.left, LINE_LIMIT))
        self.left -= len(line)
        return line


def _scan(stream: _Bounded) -> bool:
    """Walk one pickle to its STOP; whether it imports a name. Raises on anything malformed."""
    imports = False
    for opcode, _arg, _pos in pickletools.genops(stream):
        imports = imports or opcode.name in IMPORTING
    return imports


def _data_member(z: zipfile.ZipFile) -> zipfile.ZipInfo | None:
    """The ``<archive>/data.pkl`` record torch reads the object from."""
    return next((i for i in z.infolist() if i.filename.count("/") == 1 and i.filename.endswith("/data.pkl")), None)


def pickle_damage(path: str | Path) -> str | None:
    """``None`` when ``path`` holds a well-formed pickle that imports names (so it needs code to
    load); otherwise a short reason why it is not readable as a pickle (for a "corrupt" message)."""
    path = Path(path)
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as z:
                info = _data_member(z)
                if info is None:
                    return "the archive holds no data.pkl"
                with z.open(info) as member:
                    imports = _scan(_Bounded(member, info.file_size))  # type: ignore[arg-type]
        else:
            with open(path, "rb") as fh:
                stream = _Bounded(fh, path.stat().st_size)
                imports = False
                for _ in range(LEGACY_PICKLES):
                    imports = _scan(stream) or imports
                    if not stream.left:
                        break
    except Exception as exc:  # pickletools' ValueError, EOF, zip and decompression errors
        return f"damaged pickle data: {first_line(exc, 160)}"
    return None if imports else "damaged pickle data"


def needs_code(exc: BaseException) -> bool:
    """Whether ``torch.load(weights_only=True)`` failed because the pickle names Python code."""
    return isinstance(exc, pickle.UnpicklingError) and "weights only load failed" in str(exc).lower()


def unreadable(path: Path, exc: BaseException) -> str | None:
    """Why ``torch.load(weights_only=True)`` could not read ``path``, when the file is damaged or
    foreign; ``None`` when it is a well-formed pickle that names Python code (see :func:`needs_code`).
    Random bytes after a pickle header fail like a pickle of a class does, so the pickle itself is
    examined (without running it) before anyone is told to opt in to unpickling."""
    if not needs_code(exc):
        return first_line(exc)
    return pickle_damage(path)
