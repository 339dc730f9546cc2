"""Loading data: a ``--data`` value → a :class:`DataSource`.

Accepted: the embedded digits (default, or ``digits``); a tensor file (``.pt``, ``.npz``,
``.safetensors`` holding ``x`` and ``y``; an N×D ``x`` is a table); a ``.csv`` table
(:mod:`advgrad.io.data.tables`); an image folder (ImageFolder layout); a torchvision
dataset by name (``mnist``, ``fashion-mnist``, ``cifar10``, ``cifar100``, ``svhn``). New formats
are a new :class:`DataFormat` in ``FORMATS``; the attacks never see where data came from.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from advgrad.core.errors import DataError, UsageError
from advgrad.io.data.datasets import NAMED, is_named_dataset, load_image_folder, load_named
from advgrad.io.data.sources import (
    Batch,
    DataOptions,
    DataSource,
    TensorSource,
    check_pixels,
    label_vector,
    pixel_array,
    to_pixels,
)
from advgrad.io.data.tables import load_csv
from advgrad.io.data.tensorfiles import load_npz, load_pt, load_safetensors

__all__ = [
    "DEFAULT_DATA",
    "FORMATS",
    "Batch",
    "DataFormat",
    "DataOptions",
    "DataSource",
    "TensorSource",
    "check_pixels",
    "label_vector",
    "load_data",
    "load_default",
    "pixel_array",
    "to_pixels",
]

DEFAULT_DATA = "digits"


def load_default(split: str = "test") -> TensorSource:
    """The embedded UCI digits (8×8 grayscale, 10 classes), ``test`` (450) or ``train`` (1,347)."""
    if split not in ("test", "train"):
        raise UsageError(f"the embedded digits have splits test and train, not {split!r}")
    asset = resources.files("advgrad") / "assets" / f"digits_{split}.npz"
    with resources.as_file(asset) as path, np.load(path, allow_pickle=False) as f:
        x, y = f["x"], f["y"]
    return TensorSource.from_arrays(
        x,
        y,
        name=f"digits-{split}",
        classes=[str(i) for i in range(10)],
        description=f"embedded UCI digits, {split} split: {len(y)} samples, 1×8×8",
    )


@dataclass(frozen=True)
class DataFormat:
    """A way of reading data: ``matches(spec)`` says whether a ``--data`` value is of this form."""

    name: str
    matches: Callable[[str], bool]
    load: Callable[[str, DataOptions], DataSource]


def _suffix_is(*suffixes: str) -> Callable[[str], bool]:
    return lambda spec: Path(spec).suffix.lower() in suffixes


def _is_folder(spec: str) -> bool:
    return Path(spec).expanduser().is_dir()


FORMATS: list[DataFormat] = [
    DataFormat("default", lambda s: s == DEFAULT_DATA, lambda s, o: load_default(o.split)),
    DataFormat("named", is_named_dataset, load_named),
    DataFormat("npz", _suffix_is(".npz"), lambda s, o: load_npz(Path(s), o)),
    DataFormat("pt", _suffix_is(".pt", ".pth"), lambda s, o: load_pt(Path(s), o)),
    DataFormat("safetensors", _suffix_is(".safetensors"), lambda s, o: load_safetensors(Path(s), o)),
    DataFormat("csv", _suffix_is(".csv"), lambda s, o: load_csv(Path(s), o)),
    DataFormat("image-folder", _is_folder, lambda s, o: load_image_folder(Path(s).expanduser(), o)),
]


def data_format(spec: str | None) -> str | None:
    """The name of the form a ``--data`` value takes (``image-folder``, ``pt``…); None when none fits."""
    spec = DEFAULT_DATA if spec is None else str(spec)
    return next((fmt.name for fmt in FORMATS if fmt.matches(spec)), None)


def load_data(spec: str | None = None, options: DataOptions | None = None) -> DataSource:
    """Load the data named by a ``--data`` value; ``None`` is the embedded digits test split.

    A dataset name wins over a folder of the same name in the working directory: write
    ``./mnist`` to mean the folder.
    """
    options = options or DataOptions()
    spec = DEFAULT_DATA if spec is None else str(spec)
    for fmt in FORMATS:
        if fmt.matches(spec):
            if options.image_size is not None and fmt.name != "image-folder":
                raise UsageError(
                    f"`image_size` resizes image folders only; {spec} is read at its stored size", params="image_size"
                )
            source = fmt.load(spec, options)
            given = options.table_options_given()
            if given and getattr(source, "space", None) is None:
                flags = " and ".join(f"`{g}`" for g in given)
                raise UsageError(
                    f"{flags} apply to tables (a .csv file, or a tensor file whose x is N×D); {spec} holds images",
                    params=given,
                )
            if options.label_column is not None and fmt.name != "csv":
                raise UsageError(
                    f"`label_column` picks the label column of a .csv file; {spec} holds its labels in y",
                    params="label_column",
                )
            return source
    names = ", ".join([DEFAULT_DATA, *NAMED])
    if not Path(spec).expanduser().exists():
        raise DataError(f"{spec}: no such file, folder or dataset name (names: {names})")
    raise DataError(
        f"{spec}: unrecognised data format; accepted: .pt, .npz or .safetensors files holding x (N×C×H×W, or "
        f"N×D for a table) and y (N labels), a .csv table, an image folder, or a dataset name ({names})"
    )
