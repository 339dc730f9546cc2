"""Data sources: where the (x, y) batches of a run come from.

Every source yields batches of ``x`` (N×C×H×W float32 pixels in [0, 1]) and ``y`` (N int64
labels). A source knows its length and which samples a run selects (``--limit``, ``--shuffle``);
its batches are consecutive chunks of that selection, so batch ``k`` is the same samples however
the batches are later shared out. Sources convert and check pixels batch by batch, so nothing
needs the whole dataset as float32 in memory.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from advgrad.core.errors import DataError, UsageError

Batch = tuple[Tensor, Tensor]

# The largest image side advgrad resizes to (`image_size`, or a model's own preprocessing): one
# 3×4096×4096 float32 image is 201 MB; a larger side is a mistake, not a classifier's input.
MAX_IMAGE_SIZE = 4096

# Samples checked at a time when a whole tensor is validated, so a check never copies it all.
CHECK_CHUNK = 4096

NORMALISED_HINT = (
    "it looks normalised already. advgrad attacks pixels in [0, 1] so that ε is in pixel units: "
    "give unnormalised pixels and pass the model's normalisation with `mean`/`std` "
    "(e.g. `mean` 0.485,0.456,0.406 `std` 0.229,0.224,0.225), which puts it inside the model"
)

PIXELS_255_HINT = (
    "they look like 0–255 pixels. advgrad attacks pixels in [0, 1] so that ε is in pixel units: divide x by 255, "
    "or store x as uint8, which advgrad scales to [0, 1] itself"
)


def check_at_least(**bounds: tuple[int | None, int]) -> None:
    """The one check of the sizes that select and batch data (``batch_size``, ``limit``,
    ``num_workers``, ``image_size``): each ``name=(value, least)`` needs ``value ≥ least``
    (``None``: not given). Loaders and :func:`advgrad.io.inputs.open_inputs` all call it."""
    for name, (value, least) in bounds.items():
        if value is not None and value < least:
            bound = "0 or more" if least == 0 else f"at least {least}"
            raise UsageError(f"`{name}` must be {bound}, got {value}", params=name)


@dataclass(frozen=True)
class DataOptions:
    """How data is read: the split, where named datasets live, how images are sized, and for
    tables their per-feature bounds, ε weights and label column (:mod:`advgrad.io.data.tables`).

    ``root`` is the folder of named datasets (``None``: advgrad's cache folder); ``download``
    allows fetching a named dataset that is not there; ``image_size`` resizes (shorter side)
    and centre-crops the images of an image folder.
    """

    split: str = "test"
    root: str | None = None
    download: bool = False
    image_size: int | None = None
    bounds: str | None = None  # tables: a file of per-feature bounds (else the data's min/max)
    eps_scale: str | None = None  # tables: a file of per-feature ε weights (0: immutable)
    label_column: str | None = None  # CSV tables: the column of labels

    def __post_init__(self) -> None:
        check_at_least(image_size=(self.image_size, 1))
        if self.image_size is not None and self.image_size > MAX_IMAGE_SIZE:
            raise UsageError(
                f"`image_size` must be at most {MAX_IMAGE_SIZE} (pixels a side), got {self.image_size}",
                params="image_size",
            )

    def table_options_given(self) -> list[str]:
        """The options that apply to tables only and were given."""
        return [name for name in ("bounds", "eps_scale", "label_column") if getattr(self, name) is not None]


class DataSource(ABC):
    """A finite, indexable collection of labelled inputs."""

    name: str
    description: str
    classes: list[str] | None = None  # class names, when the source knows them
    warnings: tuple[str, ...] = ()  # what a reader of the data should hear about it (e.g. files skipped)

    @abstractmethod
    def __len__(self) -> int: ...

    @abstractmethod
    def fetch(self, indices: Tensor) -> Batch:
        """The samples at ``indices`` as one batch (x float32 in [0, 1], y int64)."""

    def labels(self) -> Tensor | None:
        """Every label, when the source knows them without reading the inputs; else ``None``."""
        return None

    def select(self, *, limit: int | None = None, shuffle: bool = False, seed: int = 0) -> Tensor:
        """Indices of the samples a run uses: all, or a seeded shuffle, cut to ``limit``."""
        n = len(self)
        check_at_least(limit=(limit, 1))
        if shuffle:
            order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
        else:
            order = torch.arange(n)
        return order[:limit] if limit is not None else order

    def batches(
        self,
        batch_size: int,
        *,
        limit: int | None = None,
        shuffle: bool = False,
        seed: int = 0,
        num_workers: int = 0,
    ) -> Iterator[Batch]:
        """Consecutive batches of the selected samples.

        ``num_workers`` processes prepare batches ahead for sources that decode files; sources
        held in memory ignore it.
        """
        check_at_least(batch_size=(batch_size, 1), num_workers=(num_workers, 0))
        return self.stream(self.select(limit=limit, shuffle=shuffle, seed=seed), batch_size, num_workers)

    def stream(self, selection: Tensor, batch_size: int, num_workers: int) -> Iterator[Batch]:
        """The batches of ``selection``, in order (sources that decode files override this)."""
        for start in range(0, len(selection), batch_size):
            yield self.fetch(selection[start : start + batch_size])


def pixel_array(x: np.ndarray | Tensor, where: str) -> Tensor:
    """Stored inputs as an N×C×H×W tensor (a view where possible): uint8 or floating point.

    N×H×W inputs get a channel axis. Values are not checked here: see :func:`check_pixels`.
    """
    if isinstance(x, Tensor):
        t = x
    else:
        array = np.asarray(x)
        try:
            t = torch.from_numpy(array)
        except (TypeError, ValueError):  # negative strides, or a dtype torch lacks
            try:
                t = torch.from_numpy(np.ascontiguousarray(array))
            except TypeError:
                raise DataError(f"{where}: x has dtype {array.dtype}; expected floats in [0, 1] or uint8") from None
    if t.dim() == 3:  # N×H×W: one channel
        t = t.unsqueeze(1)
    if t.dim() != 4:
        raise DataError(f"{where}: x must be N×C×H×W (or N×H×W; N×D for a table), got shape {tuple(t.shape)}")
    if t.dtype != torch.uint8 and not t.is_floating_point():
        raise DataError(f"{where}: x must hold floats in [0, 1] or uint8 pixels, got {t.dtype}")
    return t


def check_pixels(x: Tensor, where: str) -> None:
    """Raise :class:`DataError` unless ``x`` is uint8 or finite floats within [0, 1].

    Large tensors are checked in chunks of :data:`CHECK_CHUNK` samples, so the check never
    holds a converted copy of the whole tensor.
    """
    if x.dtype == torch.uint8 or x.numel() == 0:
        return
    lo, hi = float("inf"), float("-inf")
    for chunk in x.split(CHECK_CHUNK):
        if not torch.isfinite(chunk).all():
            raise DataError(f"{where}: x contains NaN or infinite values")
        lo, hi = min(lo, float(chunk.min())), max(hi, float(chunk.max()))
    if lo < 0.0 or hi > 1.0:
        raise DataError(
            f"{where}: x has values in [{lo:.3g}, {hi:.3g}], outside [0, 1]; {range_hint(lo, hi)}",
            params=("mean", "std"),
        )


def range_hint(lo: float, hi: float) -> str:
    """What inputs with values in [lo, hi] (not within [0, 1]) most likely are, and what to do."""
    if lo < 0.0:
        return NORMALISED_HINT
    if 2.0 < hi <= 255.0:
        return PIXELS_255_HINT
    return "advgrad attacks pixels in [0, 1] so that ε is in pixel units: rescale x to [0, 1]"


def to_pixels(x: Tensor) -> Tensor:
    """uint8 pixels → float32 in [0, 1]; floating point → float32."""
    if x.dtype == torch.uint8:
        return x.float().div_(255.0)
    return x.float()


def label_vector(y: np.ndarray | Tensor | list, n: int, where: str) -> Tensor:
    """Stored labels as an int64 vector of length ``n``; integer class indices ≥ 0 only."""
    t = y if isinstance(y, Tensor) else torch.as_tensor(np.asarray(y))
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
    """Inputs and labels held as tensors: in memory, or memory-mapped from a file.

    ``x`` is either float32 pixels (small data held in memory) or the stored form (uint8 or
    floats, e.g. a memory-mapped file or a dataset torchvision keeps as uint8), converted
    batch by batch. When ``checked`` is False (a large memory-mapped file not read in full)
    each fetched batch is checked for NaN, infinities and values outside [0, 1].
    """

    def __init__(
        self,
        x: Tensor,
        y: Tensor,
        *,
        name: str,
        description: str,
        classes: list[str] | None = None,
        checked: bool = True,
    ):
        self.x, self.y = x, y
        self.name, self.description = name, description
        self.classes = classes
        self.checked = checked

    @classmethod
    def from_arrays(
        cls,
        x,
        y,
        *,
        name: str,
        description: str | None = None,
        classes: list[str] | None = None,
        check_now: bool = True,
        convert_now: bool = True,
    ) -> TensorSource:
        """Validate shapes and labels; check pixel values now (``check_now``) or per batch, and
        convert them to float32 now (``convert_now``, for data already in memory) or per batch."""
        pixels = pixel_array(x, name)
        labels = label_vector(y, pixels.shape[0], name)
        if pixels.shape[0] == 0:
            raise DataError(f"{name}: the dataset is empty (0 samples)")
        if check_now or convert_now:
            check_pixels(pixels, name)
        if convert_now:
            pixels = to_pixels(pixels)
        c, h, w = pixels.shape[1:]
        desc = description or f"{name}: {pixels.shape[0]} samples, {c}×{h}×{w}"
        return cls(pixels, labels, name=name, description=desc, classes=classes, checked=check_now or convert_now)

    def __len__(self) -> int:
        return self.x.shape[0]

    def fetch(self, indices: Tensor) -> Batch:
        x = self.x[indices]
        if not self.checked:
            check_pixels(x, self.name)
        return to_pixels(x), self.y[indices]

    def labels(self) -> Tensor:
        return self.y
