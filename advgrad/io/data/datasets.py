"""Datasets as data: an image folder (ImageFolder layout) and torchvision datasets by name.

An image folder is decoded image by image, so it streams: batches come from a torch
``DataLoader`` over the selected indices, with ``--num-workers`` processes decoding ahead of
the attack. Every batch is checked as it arrives (finite, in [0, 1], one size).

Named datasets (``mnist``, ``fashion-mnist``, ``cifar10``, ``cifar100``, ``svhn``) are read
from ``--data-root`` by torchvision's own classes, which keep them in memory as uint8 arrays
(at most a few hundred MB); advgrad converts them to float batch by batch. torchvision reads the
CIFAR files, which are pickles, only after checking their MD5 against the published files.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from advgrad.core.errors import DataError, UsageError, first_line
from advgrad.io.data.sources import Batch, DataOptions, DataSource, TensorSource, check_pixels, label_vector
from advgrad.io.paths import open_regular, walk_files


class _Guarded(Dataset):
    """Wraps a dataset so that a failing item becomes a message, not an exception.

    Items are decoded in DataLoader worker processes; an exception there would reach the main
    process as a multi-line traceback. A message travels back intact and is raised as a
    :class:`DataError` there.
    """

    def __init__(self, dataset: Dataset, name: str):
        self.dataset, self.name = dataset, name  # both picklable: workers may be spawned

    def describe(self, index: int) -> str:
        samples = getattr(self.dataset, "samples", None)  # ImageFolder: (path, label) pairs
        return f"image {samples[index][0]}" if samples is not None else f"sample {index} of {self.name}"

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int):
        try:
            x, y = self.dataset[index]
        except Exception as exc:
            return None, None, f"cannot read {self.describe(index)} ({type(exc).__name__}: {first_line(exc, 160)})"
        return x, y, None


def _collate(items: list) -> tuple:
    """Stack decoded samples, or report (as data) why they cannot be stacked."""
    for _, _, problem in items:
        if problem is not None:
            return ("error", problem)
    shapes = {tuple(x.shape) for x, _, _ in items}
    if len(shapes) > 1:
        a, b = sorted(shapes)[:2]
        return (
            "error",
            f"images of different sizes ({'×'.join(map(str, a))} and {'×'.join(map(str, b))}) "
            "cannot form a batch; give `image_size` N to resize and centre-crop them",
        )
    return ("ok", torch.stack([x for x, _, _ in items]), torch.tensor([int(y) for _, y, _ in items]))


class DatasetSource(DataSource):
    """A map-style dataset whose items (C×H×W float tensor, int label) are decoded on demand."""

    def __init__(
        self,
        dataset: Dataset,
        *,
        name: str,
        description: str,
        classes: list[str] | None = None,
        targets: list[int] | None = None,
    ):
        self.name, self.description, self.classes = name, description, classes
        self._targets = targets
        self._items = _Guarded(dataset, name)

    def __len__(self) -> int:
        return len(self._items)

    def labels(self) -> Tensor | None:
        return None if self._targets is None else label_vector(self._targets, len(self), self.name)

    def _checked(self, collated: tuple) -> Batch:
        if collated[0] == "error":
            raise DataError(f"{self.name}: {collated[1]}", params="image_size")
        _, x, y = collated
        check_pixels(x, self.name)
        return x.float(), y.long()

    def fetch(self, indices: Tensor) -> Batch:
        return self._checked(_collate([self._items[int(i)] for i in indices]))

    def stream(self, selection: Tensor, batch_size: int, num_workers: int) -> Iterator[Batch]:
        """Batches of ``selection`` decoded by ``num_workers`` processes (0: in this one)."""
        loader = DataLoader(
            self._items,
            batch_size=batch_size,
            sampler=selection.tolist(),
            num_workers=num_workers,
            collate_fn=_collate,
            shuffle=False,
        )
        for collated in loader:
            yield self._checked(collated)


# ---------------------------------------------------------------------------------------------
# Image folders


def read_image(path: str):
    """An image file as an RGB PIL image; opened as a regular file only (:func:`open_regular`),
    so a named pipe or a device put in the folder after it was listed cannot block or flood."""
    from PIL import Image

    with open_regular(path, "an image file", DataError) as fh:
        return Image.open(fh).convert("RGB")


class ImageFiles(Dataset):
    """The images of an image folder: ``samples`` (path, label) pairs, read and transformed on demand."""

    def __init__(self, samples: list[tuple[str, int]], transform: Callable):
        self.samples, self.transform = samples, transform  # both picklable: workers may be spawned

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        path, label = self.samples[index]
        return self.transform(read_image(path)), label


def image_samples(root: Path, classes: list[str]) -> tuple[list[tuple[str, int]], int]:
    """The (path, label) samples of an image folder in torchvision's ImageFolder order (class by class,
    folders sorted by path, files by name) and how many entries with an image's name were skipped
    for not being regular files. A symbolic-link loop, or a folder reached twice, is refused
    (:func:`advgrad.io.paths.walk_files`); a class without images too, as torchvision refuses it."""
    from torchvision.datasets.folder import IMG_EXTENSIONS

    def wanted(name: str) -> bool:
        return name.lower().endswith(IMG_EXTENSIONS)

    walked = walk_files(root, wanted, DataError, param="data")
    samples: list[tuple[str, int]] = []
    skipped, empty = 0, []
    for label, name in enumerate(classes):
        top = os.path.join(root, name)
        inside = [w for w in walked if w[0] == top or w[0].startswith(top + os.sep)]
        found = [(os.path.join(folder, file), label) for folder, files, _ in inside for file in files]
        skipped += sum(n for _, _, n in inside)
        samples += found
        empty += [] if found else [name]
    if empty:
        others = f"; {skipped} skipped, not regular files" if skipped else ""
        raise DataError(
            f"{root}: the dataset is empty, no images found in its class folders (none in {', '.join(empty[:5])}; "
            f"extensions read: {', '.join(IMG_EXTENSIONS)}{others})"
        )
    return samples, skipped


def load_image_folder(path: Path, options: DataOptions) -> DataSource:
    """A folder with one sub-folder per class (torchvision's ImageFolder layout).

    Labels are the class folders in sorted order, as torchvision numbers them. Images are read
    as RGB; ``options.image_size`` resizes the shorter side and centre-crops to a square. Only
    regular files are read: other entries with an image's name (named pipes, devices, broken
    links) are skipped, and the source's warning says how many.
    """
    from torchvision.datasets.folder import find_classes
    from torchvision.transforms import v2

    steps: list = []
    if options.image_size is not None:  # ≥ 1: DataOptions checks it
        steps += [v2.Resize(options.image_size), v2.CenterCrop(options.image_size)]
    transform = v2.Compose([*steps, v2.PILToTensor(), v2.ToDtype(torch.float32, scale=True)])
    try:
        classes, _ = find_classes(str(path))
    except FileNotFoundError:
        raise DataError(
            f"{path} is a directory without class folders; an image folder has one sub-folder of images per "
            "class (ImageFolder layout: ROOT/cat/1.png, ROOT/dog/2.png)"
        ) from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read the folder ({first_line(exc)})") from None
    samples, skipped = image_samples(path, classes)
    size = f", resized and centre-cropped to {options.image_size}×{options.image_size}" if options.image_size else ""
    source = DatasetSource(
        ImageFiles(samples, transform),
        name=path.name or str(path),
        description=f"image folder {path}: {len(samples)} images in {len(classes)} classes{size}",
        classes=classes,
        targets=[label for _, label in samples],
    )
    if skipped:
        source.warnings = (
            f"image folder {path}: skipped {skipped} entr{'y' if skipped == 1 else 'ies'} with an image's name that "
            f"{'is not a regular file' if skipped == 1 else 'are not regular files'} (named pipes, devices, sockets "
            "or broken links)",
        )
    return source


# ---------------------------------------------------------------------------------------------
# torchvision datasets by name


@dataclass(frozen=True)
class NamedDataset:
    """A torchvision dataset advgrad can open by name, and how to read its arrays."""

    name: str
    splits: tuple[str, ...]
    open: Callable[[str, str, bool], object]  # (root, split, download) → torchvision dataset
    arrays: Callable[[object], tuple]  # dataset → (uint8 N×C×H×W tensor, labels)


def _train_flag(cls_name: str) -> Callable[[str, str, bool], object]:
    """Constructor of a torchvision dataset that takes ``train=True|False`` (MNIST, CIFAR)."""

    def open_(root: str, split: str, download: bool):
        import torchvision.datasets as tvd

        return getattr(tvd, cls_name)(root, train=split == "train", download=download)

    return open_


def _svhn(root: str, split: str, download: bool):
    import importlib.util

    import torchvision.datasets as tvd

    if importlib.util.find_spec("scipy") is None:  # torchvision reads SVHN's .mat files with scipy
        raise UsageError("`data` svhn needs scipy to read SVHN's .mat files: pip install scipy", params="data")
    return tvd.SVHN(root, split=split, download=download)


def _hw_arrays(ds) -> tuple:  # MNIST family: data is an N×H×W uint8 tensor
    return ds.data.unsqueeze(1), ds.targets


def _hwc_arrays(ds) -> tuple:  # CIFAR: data is an N×H×W×C uint8 array
    return torch.from_numpy(ds.data).permute(0, 3, 1, 2), ds.targets


def _chw_arrays(ds) -> tuple:  # SVHN: data is an N×C×H×W uint8 array
    return torch.from_numpy(ds.data), ds.labels


NAMED: dict[str, NamedDataset] = {
    d.name: d
    for d in (
        NamedDataset("mnist", ("train", "test"), _train_flag("MNIST"), _hw_arrays),
        NamedDataset("fashion-mnist", ("train", "test"), _train_flag("FashionMNIST"), _hw_arrays),
        NamedDataset("cifar10", ("train", "test"), _train_flag("CIFAR10"), _hwc_arrays),
        NamedDataset("cifar100", ("train", "test"), _train_flag("CIFAR100"), _hwc_arrays),
        NamedDataset("svhn", ("train", "test", "extra"), _svhn, _chw_arrays),
    )
}


def is_named_dataset(spec: str) -> bool:
    return spec.lower() in NAMED


def default_data_root() -> Path:
    """Where named datasets live unless ``--data-root`` says otherwise."""
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "advgrad" / "datasets"


def load_named(spec: str, options: DataOptions) -> DataSource:
    """A torchvision dataset by name, from ``options.root`` (downloaded there if asked)."""
    entry = NAMED[spec.lower()]
    if options.split not in entry.splits:
        raise UsageError(
            f"{entry.name} has splits {' and '.join(entry.splits)}, not {options.split!r} (`split`)", params="split"
        )
    root = Path(options.root).expanduser() if options.root else default_data_root()
    if root.exists() and not root.is_dir():
        raise DataError(
            f"`data_root` {root} is a file; expected the folder that holds (or will hold) {entry.name}",
            params="data_root",
        )
    get = f"advgrad info --data {entry.name} --split {options.split} --data-root {root} --download"
    try:
        # torchvision prints download progress on stdout; stdout is for results only.
        with contextlib.redirect_stdout(sys.stderr):
            ds = entry.open(str(root), options.split, options.download)
    except RuntimeError as exc:
        text = first_line(exc)
        if "not found" in text.lower() and not options.download:
            damaged = " (or its files do not match the published checksums)" if "corrupt" in text.lower() else ""
            raise DataError(
                f"{entry.name} ({options.split} split) is not in {root}{damaged}; download it once with: {get}"
            ) from None
        raise DataError(
            f"{entry.name}: cannot read it from {root} ({text}); delete its folder and run: {get}"
        ) from None
    except ImportError as exc:
        raise DataError(f"{entry.name} needs a package that is not installed ({first_line(exc)})") from None
    except (DataError, UsageError):
        raise
    except Exception as exc:  # network errors while downloading, damaged files
        action = "download" if options.download else "read"
        raise DataError(
            f"{entry.name}: cannot {action} it in {root} ({type(exc).__name__}: {first_line(exc)})"
        ) from None
    x, y = entry.arrays(ds)
    classes = list(getattr(ds, "classes", None) or [str(i) for i in range(10)])
    c, h, w = x.shape[1:]
    return TensorSource.from_arrays(  # kept as uint8 (4× smaller than floats), converted per batch
        x,
        y,
        name=f"{entry.name}-{options.split}",
        classes=classes,
        convert_now=False,
        description=f"{entry.name} {options.split} split from {root}: {x.shape[0]} samples, {c}×{h}×{w}",
    )
