"""Tensor files as data: ``.pt``, ``.npz`` and ``.safetensors`` holding ``x`` and ``y``.

None of these readers runs code from the file: ``.pt`` is read with ``weights_only=True``,
``.npz`` with ``allow_pickle=False``, and ``.safetensors`` holds raw bytes and a JSON header.
``.pt`` (zip format) and ``.safetensors`` are memory-mapped, so a large file is read batch by
batch and its pixels are checked as each batch is read; ``.npz`` is read into memory, each array
only after its header showed it within :data:`NPZ_MAX_ELEMENTS` and :data:`NPZ_MAX_BYTES`. A file
whose ``x`` is N×D holds a table (:mod:`advgrad.io.data.tables`), read into memory.
"""

from __future__ import annotations

import json
import math
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from advgrad.core.errors import DataError, first_line
from advgrad.core.text import some_names
from advgrad.io.data.sources import DataOptions, DataSource, TensorSource
from advgrad.io.data.tables import table_source
from advgrad.io.paths import require_file
from advgrad.io.pickles import unreadable

EXPECTED = "a .pt, .npz or .safetensors file holding x and y"
FEATURE_NAMES = "feature_names"  # optional in a file whose x is a table (N×D): one name per column

# An .npz array is read into memory whole: a header claiming more is refused before anything is read.
NPZ_MAX_ELEMENTS = 2**31
NPZ_MAX_BYTES = 8 * 2**30

# Memory-mapped files up to this size have every pixel checked when opened (an error shows
# before the run starts); larger ones are checked batch by batch as they are read.
EAGER_CHECK_BYTES = 256 * 2**20


def _pick(mapping, path: Path, keys: list[str]):
    if "x" not in keys or "y" not in keys:
        raise DataError(f"{path}: expected arrays named x and y, found {some_names(keys)}")  # maybe thousands
    return mapping["x"], mapping["y"]


def _table(x, y, path: Path, options: DataOptions, names=None) -> DataSource:
    """A tensor file whose ``x`` is N×D: a table (:mod:`advgrad.io.data.tables`); ``names``, the
    optional ``feature_names`` entry, names its columns."""
    if names is not None:
        try:
            count = len(names)
        except TypeError:  # a number or a 0-d array
            count = 0
        if count != x.shape[1]:  # refused before converting: a crafted entry may hold millions of names
            raise DataError(f"{path.name}: {count} feature names for {x.shape[1]} features")
        names = [str(n) for n in (names.tolist() if hasattr(names, "tolist") else names)]
    return table_source(x, y, name=path.name, options=options, names=names)


def load_npz(path: Path, options: DataOptions) -> DataSource:
    """``.npz`` with arrays ``x`` and ``y`` (read into memory with ``allow_pickle=False``); an N×D
    ``x`` is a table, its columns named by an optional string array ``feature_names``."""
    path = require_file(path, EXPECTED, DataError, param="data")
    try:
        arrays, found = read_npz(path)
    except DataError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile, EOFError, zlib.error, NotImplementedError, RuntimeError) as exc:
        # zlib.error: damaged compressed data; NotImplementedError: an unknown compression; RuntimeError: encrypted
        raise DataError(f"{path}: not a readable .npz file, truncated or corrupt ({first_line(exc)})") from None
    x, y = _pick(arrays, path, found)
    names = arrays[FEATURE_NAMES].reshape(-1) if FEATURE_NAMES in arrays else None
    if x.ndim == 2:
        return _table(x, y, path, options, names)
    return TensorSource.from_arrays(x, y, name=path.name)


def read_npz(path: Path) -> tuple[dict[str, np.ndarray], list[str]]:
    """The arrays ``x``, ``y`` and ``feature_names`` of an ``.npz`` file (those present), each read
    only after its ``.npy`` header passed :func:`_check_npy_claim`; and the names of every array.
    Members are found as ``np.load`` finds them: ``x``, else ``x.npy``."""
    arrays: dict[str, np.ndarray] = {}
    with zipfile.ZipFile(path) as z:
        members = z.namelist()
        for key in ("x", "y", FEATURE_NAMES):
            member = key if key in members else f"{key}.npy" if f"{key}.npy" in members else None
            if member is None:
                continue
            info = z.getinfo(member)
            with z.open(info) as fh:
                version = np.lib.format.read_magic(fh)  # ValueError when the member is no .npy array
                header = (
                    np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
                )
                shape, _, dtype = header(fh)
                _check_npy_claim(path, key, shape, dtype, info.file_size - fh.tell())
            with z.open(info) as fh:
                arrays[key] = np.lib.format.read_array(fh, allow_pickle=False)
    return arrays, [m.removesuffix(".npy") for m in members]


def _check_npy_claim(path: Path, key: str, shape: tuple[int, ...], dtype: np.dtype, stored: int) -> None:
    """Refuse an array whose header claims more than the member holds (``stored`` bytes) or more
    than :data:`NPZ_MAX_ELEMENTS` elements or :data:`NPZ_MAX_BYTES` bytes: reading allocates it whole."""
    count = math.prod(shape)
    size = count * dtype.itemsize
    claim = f"{key} is {'×'.join(map(str, shape)) or 'a scalar'} {dtype} by its header"
    if count > NPZ_MAX_ELEMENTS or size > NPZ_MAX_BYTES:
        raise DataError(
            f"{path}: {claim} ({count:,} elements, {size / 2**30:,.1f} GiB); advgrad reads .npz arrays into memory "
            f"only up to 2³¹ elements and 8 GiB: store larger data as .pt or .safetensors, which are memory-mapped"
        )
    if size > stored:
        raise DataError(
            f"{path}: {claim} ({size:,} bytes) but its member holds {max(stored, 0):,}: truncated or corrupt"
        )


def load_pt(path: Path, options: DataOptions) -> DataSource:
    """``.pt`` holding a dict with tensors ``x`` and ``y`` (``weights_only=True``, memory-mapped)."""
    path = require_file(path, EXPECTED, DataError, param="data")
    mapped = zipfile.is_zipfile(path)  # only the zip format (torch ≥ 1.6) can be memory-mapped
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True, mmap=mapped)
    except Exception as exc:  # torch raises many kinds for truncated or foreign files
        damage = unreadable(path, exc)
        if damage is None:
            raise DataError(
                f"{path} holds pickled Python objects besides tensors; advgrad reads data files without running "
                "code from them: save plain tensors x and y"
            ) from None
        raise DataError(f"{path}: not a readable tensor file, truncated or corrupt ({damage[:200]})") from None
    if isinstance(obj, (tuple, list)) and len(obj) == 2:
        obj = {"x": obj[0], "y": obj[1]}
    if not isinstance(obj, dict):
        raise DataError(f"{path}: expected a dict with tensors x and y, found {type(obj).__name__}")
    x, y = _pick(obj, path, [str(k) for k in obj])
    if isinstance(x, torch.Tensor) and x.dim() == 2:
        return _table(x, y, path, options, obj.get(FEATURE_NAMES))
    check_now = not mapped or path.stat().st_size <= EAGER_CHECK_BYTES
    return TensorSource.from_arrays(x, y, name=path.name, check_now=check_now, convert_now=not mapped)


# safetensors dtype → (numpy dtype to map the bytes with, torch dtype to view them as)
_SAFETENSORS_DTYPES = {
    "F64": (np.float64, None),
    "F32": (np.float32, None),
    "F16": (np.float16, None),
    "BF16": (np.uint16, torch.bfloat16),
    "U8": (np.uint8, None),
    "I8": (np.int8, None),
    "I16": (np.int16, None),
    "I32": (np.int32, None),
    "I64": (np.int64, None),
    "BOOL": (np.bool_, None),
}


def map_safetensors(path: Path) -> dict[str, Tensor]:
    """Memory-map every tensor of a ``.safetensors`` file (copy-on-write, nothing read yet).

    The safetensors library validates the header first (offsets, sizes, dtypes); the tensors
    are then mapped straight from the file's data section.
    """
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            names = list(f.keys())
        with open(path, "rb") as fh:
            (header_len,) = struct.unpack("<Q", fh.read(8))
            header = json.loads(fh.read(header_len))
    except Exception as exc:  # SafetensorError, OSError, JSON errors on damaged files
        raise DataError(
            f"{path}: not a readable .safetensors file, truncated or corrupt ({first_line(exc, 200)})"
        ) from None
    start = 8 + header_len
    tensors: dict[str, Tensor] = {}
    for name in names:
        entry = header[name]
        if entry["dtype"] not in _SAFETENSORS_DTYPES:
            raise DataError(f"{path}: tensor {name} has dtype {entry['dtype']}, which advgrad does not read")
        np_dtype, view = _SAFETENSORS_DTYPES[entry["dtype"]]
        shape = tuple(entry["shape"])
        begin = entry["data_offsets"][0]
        if int(np.prod(shape)) == 0:
            array = np.empty(shape, dtype=np_dtype)
        else:
            array = np.memmap(path, dtype=np_dtype, mode="c", offset=start + begin, shape=shape)
        t = torch.from_numpy(array)
        tensors[name] = t.view(view) if view is not None else t
    return tensors


def load_safetensors(path: Path, options: DataOptions) -> DataSource:
    """``.safetensors`` with tensors ``x`` and ``y`` (memory-mapped)."""
    path = require_file(path, EXPECTED, DataError, param="data")
    tensors = map_safetensors(path)
    x, y = _pick(tensors, path, list(tensors))
    if x.dim() == 2:
        return _table(x, y, path, options)
    check_now = path.stat().st_size <= EAGER_CHECK_BYTES
    return TensorSource.from_arrays(x, y, name=path.name, check_now=check_now, convert_now=False)
