"""Output paths checked before any work: no output overwrites an input, or another output.

Every command that writes files calls :func:`check_output_paths` with what it will write (option →
file) and what it reads (option → path). Two paths are the same file when they resolve to the same
inode (symbolic links and hard links included) or, for files not yet written, to the same real
path. A special file that already exists (``/dev/null``, a pipe) may take several outputs.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from pathlib import Path

from advgrad.core.errors import UsageError
from advgrad.io.files import PICTURE_FORMATS
from advgrad.io.inputs import InputOptions

STDOUT = "-"
PathLike = str | os.PathLike


def _identity(path: PathLike) -> tuple:
    """What decides whether two paths are one file: device and inode when it exists, else its real path."""
    try:
        info = os.stat(path)
    except OSError:
        return ("path", os.path.realpath(path))
    return ("inode", info.st_dev, info.st_ino)


def _is_special(path: PathLike) -> bool:
    """Whether ``path`` exists and is neither a regular file nor a folder (``/dev/null``, a pipe)."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return not stat.S_ISREG(mode) and not stat.S_ISDIR(mode)


def input_paths(options: InputOptions) -> dict[str, str | None]:
    """The files and folders the model and data options read, by option (values that name no
    existing path, such as ``torchvision:resnet18`` or ``mnist``, are skipped when checked)."""
    return {
        "--model": options.model,
        "--weights": options.weights,
        "--data": options.data,
        "--data-root": options.data_root,
        "--bounds": options.bounds,
        "--eps-scale": options.eps_scale,
    }


def _existing(paths: Mapping[str, PathLike | None]) -> list[tuple[str, str]]:
    found = []
    for option, value in paths.items():
        if value is None or str(value) in ("", STDOUT):
            continue
        path = os.path.expanduser(str(value))
        if os.path.exists(path):
            found.append((option, path))
    return found


def check_output_paths(
    outputs: Mapping[str, PathLike | None],
    inputs: Mapping[str, PathLike | None],
    folders: Mapping[str, PathLike | None] | None = None,
) -> None:
    """Raise :class:`UsageError` (one line naming both options) when an output file is an input,
    when two outputs are one file, or when an output folder (``folders``, e.g. ``--images``) is
    an input's path. ``outputs`` maps an option to the file it writes (None or ``-``: nothing to
    check); ``inputs`` maps an option to the path it reads."""
    read = [(option, path, _identity(path)) for option, path in _existing(inputs)]
    written: list[tuple[str, str, tuple]] = []
    for option, value in outputs.items():
        if value is None or str(value) == STDOUT:
            continue
        path, key = str(value), _identity(value)
        for in_option, in_path, in_key in read:
            if key == in_key:
                raise UsageError(
                    f"{option} {path} would overwrite the {in_option} input {in_path}; write the output to another path"
                )
        if not _is_special(path):
            for other_option, other_path, other_key in written:
                if key == other_key:
                    raise UsageError(
                        f"{other_option} {other_path} and {option} {path} are the same file; give each "
                        "output its own path"
                    )
        written.append((option, path, key))
    for option, value in (folders or {}).items():
        if value is None:
            continue
        key = _identity(value)
        for in_option, in_path, in_key in read:
            if key == in_key:
                raise UsageError(
                    f"{option} {value} is the {in_option} input {in_path}; give {option} a folder of its own"
                )


def images_file(folder: PathLike | None, name: str) -> Path | None:
    """The file ``--images`` writes, or None without it: ``FOLDER/name`` (``adversarial.png``), or the
    value itself when it names a picture (``adv.pdf``: :data:`~advgrad.io.files.PICTURE_FORMATS`)."""
    if folder is None:
        return None
    return Path(folder) if Path(folder).suffix.lower() in PICTURE_FORMATS else Path(folder) / name


def images_folder(value: PathLike | None) -> PathLike | None:
    """The folder ``--images`` fills (None where it names one picture file: :func:`images_file`)."""
    return None if value is None or Path(value).suffix.lower() in PICTURE_FORMATS else value
