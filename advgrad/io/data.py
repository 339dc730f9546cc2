"""Data sources: where the (x, y) batches of a run come from.

Every source yields batches of ``x`` (N×C×H×W float32 pixels in [0, 1]) and ``y`` (N int64
labels). A source knows its length and which samples a run selects (``--limit``, ``--shuffle``);
its batches are consecutive chunks of that selection, so batch ``k`` is the same samples however
the batches are later shared out. New formats are a new :class:`DataFormat` in ``FORMATS``; the
attacks never see where data came from.
"""

from __future__ import annotations

import zipfile
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from advgrad.errors import DataError, UsageError

Batch = tuple[Tensor, Tensor]

DEFAULT_DATA = "digits"


@dataclass(frozen=True)
class DataOptions:
    """Options that shape how data is read (more come with more formats)."""

    split: str = "test"


class DataSource(ABC):
    """A finite, indexable collection of labelled inputs."""

    name: str
    description: str

    @abstractmethod
    def __len__(self) -> int: ...

    @abstractmethod
    def fetch(self, indices: Tensor) -> Batch:
        """The samples at ``indices`` as one batch (x float32 in [0, 1], y int64)."""

    def select(self, *, limit: int | None = None, shuffle: bool = False, seed: int = 0) -> Tensor:
        """Indices of the samples a run uses: all, or a seeded shuffle, cut to ``limit``."""
        n = len(self)
        if limit is not None and limit <= 0:
            raise UsageError(f"--limit must be at least 1, got {limit}")
        if shuffle:
            order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
        else:
            order = torch.arange(n)
        return order[:limit] if limit is not None else order

    def batches(
        self, batch_size: int, *, limit: int | None = None, shuffle: bool = False, seed: int = 0
    ) -> Iterator[Batch]:
        """Consecutive batches of the selected samples."""
        if batch_size <= 0:
            raise UsageError(f"--batch-size must be at least 1, got {batch_size}")
        selection = self.select(limit=limit, shuffle=shuffle, seed=seed)
        for start in range(0, len(selection), batch_size):
            yield self.fetch(selection[start : start + batch_size])


def _as_pixels(x: np.ndarray | Tensor, where: str) -> Tensor:
    """Turn stored inputs into float32 pixels in [0, 1] with a channel axis."""
    t = torch.as_tensor(np.asarray(x)) if not isinstance(x, Tensor) else x
    if t.dim() == 3:  # N×H×W: one channel
        t = t.unsqueeze(1)
    if t.dim() != 4:
        raise DataError(f"{where}: x must be N×C×H×W (or N×H×W), got shape {tuple(t.shape)}")
    if t.dtype == torch.uint8:
        return t.float().div_(255.0)
    if not t.is_floating_point():
        raise DataError(f"{where}: x must hold floats in [0, 1] or uint8 pixels, got {t.dtype}")
    t = t.float()
    if t.numel() and not torch.isfinite(t).all():
        raise DataError(f"{where}: x contains NaN or infinite values")
    if t.numel():
        lo, hi = float(t.min()), float(t.max())
        if lo < 0.0 or hi > 1.0:
            raise DataError(
                f"{where}: x has values in [{lo:.3g}, {hi:.3g}], outside [0, 1]; it looks normalised. "
                "advgrad attacks pixels in [0, 1] so that ε is in pixel units: save unnormalised "
                "pixels and put the normalisation inside the model"
            )
    return t


def _as_labels(y: np.ndarray | Tensor, n: int, where: str) -> Tensor:
    t = torch.as_tensor(np.asarray(y)) if not isinstance(y, Tensor) else y
    t = t.reshape(-1) if t.dim() > 1 and t.numel() == n else t
    if t.dim() != 1 or t.shape[0] != n:
        raise DataError(f"{where}: y must hold one label per sample ({n}), got shape {tuple(t.shape)}")
    if t.is_floating_point():
        if not torch.isfinite(t).all() or not torch.equal(t, t.round()):
            raise DataError(f"{where}: y must hold integer class labels")
    elif t.dtype == torch.bool:
        raise DataError(f"{where}: y must hold integer class labels, got booleans")
    t = t.long()
    if t.numel() and int(t.min()) < 0:
        raise DataError(f"{where}: y holds negative labels (min {int(t.min())}); labels are class indices 0..C-1")
    return t


class TensorSource(DataSource):
    """Inputs and labels held as tensors (small files, the embedded default)."""

    def __init__(self, x: Tensor, y: Tensor, *, name: str, description: str):
        self.x, self.y = x, y
        self.name, self.description = name, description

    @classmethod
    def from_arrays(cls, x, y, *, name: str, description: str | None = None) -> TensorSource:
        pixels = _as_pixels(x, name)
        labels = _as_labels(y, pixels.shape[0], name)
        if pixels.shape[0] == 0:
            raise DataError(f"{name}: the dataset is empty")
        c, h, w = pixels.shape[1:]
        desc = description or f"{name}: {pixels.shape[0]} samples, {c}×{h}×{w}"
        return cls(pixels, labels, name=name, description=desc)

    def __len__(self) -> int:
        return self.x.shape[0]

    def fetch(self, indices: Tensor) -> Batch:
        return self.x[indices], self.y[indices]


def _check_file(path: Path) -> None:
    if not path.exists():
        raise DataError(f"{path}: no such file")
    if path.is_dir():
        raise DataError(f"{path} is a directory; expected a .pt or .npz file holding x and y")


def _pick(mapping, path: Path, keys: list[str]):
    missing = [k for k in ("x", "y") if k not in keys]
    if missing:
        raise DataError(f"{path}: expected arrays named x and y, found {', '.join(keys) or 'none'}")
    return mapping["x"], mapping["y"]


def load_npz(path: Path, options: DataOptions) -> DataSource:
    """``.npz`` with arrays ``x`` and ``y`` (read with ``allow_pickle=False``)."""
    _check_file(path)
    try:
        with np.load(path, allow_pickle=False) as f:
            x, y = _pick(f, path, list(f.files))
            x, y = np.asarray(x), np.asarray(y)
    except DataError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise DataError(f"{path}: not a readable .npz file ({exc})") from None
    return TensorSource.from_arrays(x, y, name=path.name)


def load_pt(path: Path, options: DataOptions) -> DataSource:
    """``.pt`` holding a dict with tensors ``x`` and ``y`` (read with ``weights_only=True``)."""
    _check_file(path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many kinds for truncated or foreign files
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"{path}: not a readable tensor file ({first[:200]})") from None
    if isinstance(obj, (tuple, list)) and len(obj) == 2:
        obj = {"x": obj[0], "y": obj[1]}
    if not isinstance(obj, dict):
        raise DataError(f"{path}: expected a dict with tensors x and y, found {type(obj).__name__}")
    x, y = _pick(obj, path, [str(k) for k in obj])
    return TensorSource.from_arrays(x, y, name=path.name)


def load_default(split: str = "test") -> TensorSource:
    """The embedded UCI digits (8×8 grayscale, 10 classes), ``test`` (450) or ``train`` (1,347)."""
    if split not in ("test", "train"):
        raise UsageError(f"the embedded digits have splits test and train, not {split!r}")
    asset = resources.files("advgrad") / "assets" / f"digits_{split}.npz"
    with resources.as_file(asset) as path, np.load(path, allow_pickle=False) as f:
        x, y = f["x"], f["y"]
    return TensorSource.from_arrays(
        x, y, name=f"digits-{split}", description=f"embedded UCI digits, {split} split: {len(y)} samples, 1×8×8"
    )


@dataclass(frozen=True)
class DataFormat:
    """A way of reading data: ``matches(spec)`` says whether a ``--data`` value is of this form."""

    name: str
    matches: Callable[[str], bool]
    load: Callable[[str, DataOptions], DataSource]


def _suffix_is(*suffixes: str) -> Callable[[str], bool]:
    return lambda spec: Path(spec).suffix.lower() in suffixes


FORMATS: list[DataFormat] = [
    DataFormat("default", lambda s: s == DEFAULT_DATA, lambda s, o: load_default(o.split)),
    DataFormat("npz", _suffix_is(".npz"), lambda s, o: load_npz(Path(s), o)),
    DataFormat("pt", _suffix_is(".pt", ".pth"), lambda s, o: load_pt(Path(s), o)),
]


def load_data(spec: str | None = None, options: DataOptions | None = None) -> DataSource:
    """Load the data named by a ``--data`` value; ``None`` is the embedded digits test split."""
    options = options or DataOptions()
    spec = DEFAULT_DATA if spec is None else str(spec)
    for fmt in FORMATS:
        if fmt.matches(spec):
            return fmt.load(spec, options)
    _check_file(Path(spec))  # a missing file or a directory gets its own message
    accepted = ", ".join(f.name for f in FORMATS if f.name != "default")
    raise DataError(f"{spec}: unrecognised data format; accepted: {accepted} (x: N×C×H×W, y: N labels)")
