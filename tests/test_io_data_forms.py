"""Loading data (advgrad/io/data/load_data.py, sources.py, tensorfiles.py, datasets.py): tensor files, image
folders, torchvision datasets by name, selection and streaming."""

from __future__ import annotations

import io
import os
import re
import zipfile

import numpy as np
import pytest
import torch
from loading_fixtures import (
    assert_bad_input,
    run_cli,
    save_tensors,
    truncate,
    write_cifar10,
    write_cifar100,
    write_image_folder,
    write_mnist,
    write_svhn,
)
from safetensors.torch import save_file
from special_files import null_device

import advgrad.io.data.tensorfiles as tensorfiles
from advgrad.core.errors import DataError, UsageError
from advgrad.io.data.datasets import DatasetSource
from advgrad.io.data.load_data import DataOptions, load_data
from advgrad.io.data.sources import TensorSource


def everything(source):
    return source.fetch(torch.arange(len(source)))


def pixels_u8(n=10, c=1, h=5, w=4, seed=0):
    return torch.randint(0, 256, (n, c, h, w), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


# ---------------------------------------------------------------------------------------------
# tensor files


def write_all_formats(tmp_path, x, y) -> list:
    pt = save_tensors(tmp_path / "d.pt", x, y)
    npz = tmp_path / "d.npz"
    np.savez(npz, x=x.numpy(), y=y.numpy())
    st = tmp_path / "d.safetensors"
    save_file({"x": x.contiguous(), "y": y.contiguous()}, st)
    return [pt, npz, st]


def test_tensor_files_agree_uint8(tmp_path):
    x, y = pixels_u8(), torch.arange(10) % 3
    for path in write_all_formats(tmp_path, x, y):
        source = load_data(str(path))
        # memory-mapped files keep their stored uint8; only .npz is read (and converted) in full
        assert source.x.dtype == (torch.float32 if path.suffix == ".npz" else torch.uint8)
        xs, ys = everything(source)
        assert xs.dtype == torch.float32 and ys.dtype == torch.int64
        torch.testing.assert_close(xs, x.float() / 255)
        assert torch.equal(ys, y)


def test_tensor_files_agree_float_and_bf16(tmp_path):
    x = torch.rand(7, 3, 4, 4)
    y = torch.tensor([0, 1, 2, 0, 1, 2, 0])
    for path in write_all_formats(tmp_path, x, y):
        torch.testing.assert_close(everything(load_data(str(path)))[0], x)
    st = tmp_path / "bf16.safetensors"
    save_file({"x": x.to(torch.bfloat16), "y": y}, st)
    torch.testing.assert_close(everything(load_data(str(st)))[0], x.to(torch.bfloat16).float())


def test_nhw_gets_a_channel_axis(tmp_path):
    x = pixels_u8(4, 1, 6, 6)[:, 0]
    src = load_data(str(save_tensors(tmp_path / "d.pt", x, torch.zeros(4, dtype=torch.long))))
    assert everything(src)[0].shape == (4, 1, 6, 6)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_nan_or_infinite_inputs(tmp_path, bad):
    x = torch.rand(5, 1, 3, 3)
    x[3, 0, 1, 1] = bad
    for path in write_all_formats(tmp_path, x, torch.zeros(5, dtype=torch.long)):
        with pytest.raises(DataError, match="NaN or infinite"):
            load_data(str(path))


def test_normalised_data_is_explained(tmp_path):
    x = (torch.rand(5, 3, 3, 3) - 0.45) / 0.22
    for path in write_all_formats(tmp_path, x, torch.zeros(5, dtype=torch.long)):
        with pytest.raises(DataError, match=r"outside \[0, 1\].*looks normalised.*`mean`/`std`"):
            load_data(str(path))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_0_255_pixels_are_explained_as_such(tmp_path, dtype):
    x = (torch.rand(5, 3, 3, 3, generator=torch.Generator().manual_seed(0)) * 255).round().to(dtype)
    for path in write_all_formats(tmp_path, x, torch.zeros(5, dtype=torch.long)):
        with pytest.raises(
            DataError, match=r"outside \[0, 1\]; they look like 0–255 pixels.*divide x by 255.*uint8"
        ) as info:
            load_data(str(path))
        assert "normalised" not in str(info.value)


def test_large_mapped_files_are_checked_per_batch(tmp_path, monkeypatch):
    monkeypatch.setattr(tensorfiles, "EAGER_CHECK_BYTES", 0)  # treat every file as too big to scan up front
    x = torch.rand(8, 1, 3, 3)
    x[6, 0, 0, 0] = 1.7
    y = torch.zeros(8, dtype=torch.long)
    for path in (save_tensors(tmp_path / "d.pt", x, y), tmp_path / "d.safetensors"):
        save_file({"x": x, "y": y}, tmp_path / "d.safetensors")
        source = load_data(str(path))  # opens without reading the pixels
        assert isinstance(source, TensorSource) and not source.checked
        first = next(source.batches(4))
        torch.testing.assert_close(first[0], x[:4])
        with pytest.raises(DataError, match="outside"):
            list(source.batches(4))


def test_empty_dataset(tmp_path):
    for path in write_all_formats(tmp_path, torch.zeros(0, 1, 4, 4), torch.zeros(0, dtype=torch.long)):
        with pytest.raises(DataError, match="empty"):
            load_data(str(path))


def test_bad_tensor_files(tmp_path):
    x, y = pixels_u8(), torch.zeros(10, dtype=torch.long)
    for path in write_all_formats(tmp_path, x, y):
        with pytest.raises(DataError, match="truncated or corrupt"):
            load_data(str(truncate(path, tmp_path / f"cut{path.suffix}")))
    torch.save({"images": x}, tmp_path / "keys.pt")
    with pytest.raises(DataError, match="expected arrays named x and y, found images"):
        load_data(str(tmp_path / "keys.pt"))
    with pytest.raises(DataError, match="no such file"):
        load_data(str(tmp_path / "absent.pt"))
    (tmp_path / "folder.pt").mkdir()
    with pytest.raises(DataError, match="is a directory"):
        load_data(str(tmp_path / "folder.pt"))
    with pytest.raises(DataError, match="negative labels"):
        load_data(str(save_tensors(tmp_path / "neg.pt", x, -torch.ones(10, dtype=torch.long))))
    with pytest.raises(DataError, match="one label per sample"):
        load_data(str(save_tensors(tmp_path / "short.pt", x, torch.zeros(9, dtype=torch.long))))


def _npz_claiming(path, shape, dtype="|u1", data=b"\0" * 16):
    """An .npz whose ``x`` header claims ``shape`` but whose member holds only ``data``; ``y`` is real."""
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": dtype, "fortran_order": False, "shape": shape})
    labels = io.BytesIO()
    np.save(labels, np.zeros(4, dtype=np.int64))
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("x.npy", header.getvalue() + data)
        z.writestr("y.npy", labels.getvalue())
    return path


def test_npz_header_claiming_a_huge_array_is_refused_before_reading(tmp_path):
    path = _npz_claiming(tmp_path / "big.npz", (10**6, 1, 1000, 1000))
    needle = "x is 1000000×1×1000×1000 uint8 by its header (1,000,000,000,000 elements, 931.3 GiB)"
    with pytest.raises(DataError, match=re.escape(needle)) as info:
        load_data(str(path))
    assert "up to 2³¹ elements and 8 GiB" in str(info.value) and "memory-mapped" in str(info.value)
    # few elements, each of them huge: the bytes are capped too
    with pytest.raises(DataError, match=r"x is 5 \|V2000000000 by its header \(5 elements, 9\.3 GiB\)"):
        load_data(str(_npz_claiming(tmp_path / "wide.npz", (5,), dtype="|V2000000000")))


def test_npz_header_claiming_more_than_the_file_holds_is_refused(tmp_path):
    path = _npz_claiming(tmp_path / "short.npz", (4, 1, 8, 8))
    with pytest.raises(DataError, match=r"x is 4×1×8×8 uint8 by its header \(256 bytes\) but its member holds 16"):
        load_data(str(path))
    path = _npz_claiming(tmp_path / "raw.npz", (4, 1, 2, 2), data=b"\0" * 16)
    with zipfile.ZipFile(path, "a") as z:  # np.load takes a member "x" before "x.npy"; this one is no array
        z.writestr("x", b"raw bytes, no .npy header")
    with pytest.raises(DataError, match="not a readable .npz file"):
        load_data(str(path))


def _zip_edited(path, edit):
    """``path`` rewritten with ``edit(entry offset, bytearray)`` applied at each central-directory entry."""
    data = bytearray(path.read_bytes())
    at = data.find(b"PK\x01\x02")
    while at != -1:
        edit(at, data)
        at = data.find(b"PK\x01\x02", at + 1)
    path.write_bytes(bytes(data))
    return path


def test_npz_damaged_in_every_way_zipfile_knows_is_one_line(tmp_path):
    def compressed(name):
        path = tmp_path / name
        with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as z:
            for key, array in (("x", np.zeros((4, 1, 2, 2), np.uint8)), ("y", np.zeros(4, np.int64))):
                buffer = io.BytesIO()
                np.save(buffer, array)
                z.writestr(f"{key}.npy", buffer.getvalue())
        return path

    garbled = compressed("garbled.npz")
    data = bytearray(garbled.read_bytes())
    data[40:60] = bytes(b ^ 0xFF for b in data[40:60])  # inside x.npy's deflate stream: zlib.error
    garbled.write_bytes(bytes(data))
    unknown = _zip_edited(compressed("method.npz"), lambda at, d: d.__setitem__(slice(at + 10, at + 12), b"\x63\x00"))
    encrypted = _zip_edited(compressed("locked.npz"), lambda at, d: d.__setitem__(at + 8, d[at + 8] | 1))
    for path in (garbled, unknown, encrypted):
        with pytest.raises(DataError, match="not a readable .npz file, truncated or corrupt"):
            load_data(str(path))


def test_npz_without_x_lists_a_few_of_its_arrays(tmp_path):
    """The names a file holds are listed a few at a time with their count, each cut short (issue
    21, item 12: one helper, advgrad.core.text.some_names)."""
    path = tmp_path / "many.npz"
    np.savez(path, **{f"a{i}": np.zeros(1) for i in range(1000)}, **{"n" * 5000: np.zeros(1)})
    with pytest.raises(DataError, match=r"found a0, a1, a2, a3, a4, a5, a6, a7, … \(1,001 in all\)$") as caught:
        load_data(str(path))
    assert len(str(caught.value)) < 400


def test_feature_names_of_another_length_are_refused_before_conversion(tmp_path):
    path = tmp_path / "t.npz"
    np.savez(path, x=np.zeros((4, 3), np.float32), y=np.zeros(4, np.int64), feature_names=np.array(["a"] * 100_000))
    with pytest.raises(DataError, match="100000 feature names for 3 features"):
        load_data(str(path))


def test_image_size_is_bounded(tmp_path):
    with pytest.raises(UsageError, match=r"`image_size` must be at most 4096 \(pixels a side\), got 200000"):
        DataOptions(image_size=200_000)
    assert DataOptions(image_size=4096).image_size == 4096
    result = run_cli("info", "--data", "digits", "--image-size", "200000")
    assert_bad_input(result, "--image-size must be at most 4096 (pixels a side), got 200000")


def test_data_file_that_is_a_device_is_refused(tmp_path):
    with pytest.raises(DataError, match="is a character device; expected a .pt, .npz"):
        load_data(str(null_device(tmp_path / "d.npz")))


def test_unknown_spec(tmp_path):
    with pytest.raises(DataError, match="no such file, folder or dataset name"):
        load_data("imagenet")
    (tmp_path / "d.txt").write_text("1,2\n")  # .csv is a table (test_tabular.py)
    with pytest.raises(DataError, match="unrecognised data format"):
        load_data(str(tmp_path / "d.txt"))


# ---------------------------------------------------------------------------------------------
# selection


def test_shuffle_is_seeded_and_limit_takes_a_subset(tmp_path):
    source = load_data(str(save_tensors(tmp_path / "d.pt", pixels_u8(50), torch.arange(50) % 5)))
    a = source.select(shuffle=True, seed=3)
    assert torch.equal(a, source.select(shuffle=True, seed=3))
    assert not torch.equal(a, source.select(shuffle=True, seed=4))
    assert sorted(a.tolist()) == list(range(50))
    assert torch.equal(source.select(limit=7, shuffle=True, seed=3), a[:7])
    assert torch.equal(source.select(limit=7), torch.arange(7))
    batches = list(source.batches(3, limit=7, shuffle=True, seed=3))
    assert [b[0].shape[0] for b in batches] == [3, 3, 1]
    torch.testing.assert_close(torch.cat([b[0] for b in batches]), everything(source)[0][a[:7]])


def test_limit_zero():
    with pytest.raises(UsageError, match="`limit` must be at least 1"):
        load_data(None).select(limit=0)


# ---------------------------------------------------------------------------------------------
# image folders


def test_image_folder_labels_follow_sorted_class_folders(tmp_path):
    root = write_image_folder(tmp_path / "imgs", {"cat": 2, "ant": 3, "bee": 1})
    source = load_data(str(root))
    assert isinstance(source, DatasetSource)
    assert source.classes == ["ant", "bee", "cat"] and len(source) == 6
    x, y = everything(source)
    assert x.shape == (6, 3, 10, 12) and x.dtype == torch.float32
    assert y.tolist() == [0, 0, 0, 1, 2, 2]
    # every image of sorted class k was filled with grey 40·(k+1): label and pixels agree
    torch.testing.assert_close(x.amax(dim=(1, 2, 3)), (40 * (y + 1)).float() / 255)
    assert torch.equal(source.labels(), y)


def test_image_folder_resize_and_centre_crop(tmp_path):
    root = tmp_path / "imgs"
    write_image_folder(root, {"a": 1}, size=(20, 10))
    from PIL import Image

    Image.new("RGB", (8, 16), color=(200, 0, 0)).save(root / "a" / "tall.png")
    source = load_data(str(root), DataOptions(image_size=6))
    x, _ = everything(source)
    assert x.shape == (2, 3, 6, 6)
    with pytest.raises(DataError, match="different sizes.*`image_size`"):
        everything(load_data(str(root)))


def test_image_folder_streams_with_workers_in_selection_order(tmp_path):
    root = write_image_folder(tmp_path / "imgs", {"a": 3, "b": 4, "c": 2})
    source = load_data(str(root))
    order = source.select(shuffle=True, seed=1)
    expected = everything(source)
    for workers in (0, 2):
        got = list(source.batches(4, shuffle=True, seed=1, num_workers=workers))
        assert [b[0].shape[0] for b in got] == [4, 4, 1]
        torch.testing.assert_close(torch.cat([b[0] for b in got]), expected[0][order])
        assert torch.equal(torch.cat([b[1] for b in got]), expected[1][order])


def test_corrupt_image_is_named(tmp_path):
    root = write_image_folder(tmp_path / "imgs", {"a": 2})
    (root / "a" / "broken.png").write_bytes(b"\x89PNG not really")
    source = load_data(str(root))
    with pytest.raises(DataError, match=r"cannot read image .*broken.png"):
        list(source.batches(8, num_workers=1))


def test_empty_image_folders(tmp_path):
    (tmp_path / "nothing").mkdir()
    with pytest.raises(DataError, match="without class folders"):
        load_data(str(tmp_path / "nothing"))
    (tmp_path / "classes" / "a").mkdir(parents=True)
    (tmp_path / "classes" / "a" / "notes.txt").write_text("no images here")
    with pytest.raises(DataError, match="empty"):
        load_data(str(tmp_path / "classes"))


# ---------------------------------------------------------------------------------------------
# torchvision datasets by name, from files in their exact on-disk formats


@pytest.mark.parametrize(("name", "folder"), [("mnist", "MNIST"), ("fashion-mnist", "FashionMNIST")])
@pytest.mark.parametrize(("split", "prefix"), [("train", "train"), ("test", "t10k")])
def test_mnist_family(tmp_path, name, folder, split, prefix):
    written = write_mnist(tmp_path, folder)
    source = load_data(name, DataOptions(root=str(tmp_path), split=split))
    images, labels = written[prefix]
    assert source.x.dtype == torch.uint8  # no float copy of the dataset: converted batch by batch
    x, y = everything(source)
    assert x.shape == (len(labels), 1, 28, 28)
    torch.testing.assert_close(x[:, 0], torch.from_numpy(images).float() / 255)
    assert y.tolist() == labels.tolist()


@pytest.fixture
def trust_written_files(monkeypatch):
    """torchvision checks CIFAR/SVHN files against the published MD5s; these fixtures are not them."""
    import torchvision.datasets.cifar as cifar
    import torchvision.datasets.svhn as svhn

    def exists(fpath, md5=None):
        return os.path.isfile(fpath)

    monkeypatch.setattr(cifar, "check_integrity", exists)
    monkeypatch.setattr(svhn, "check_integrity", exists)


def test_cifar10(tmp_path, trust_written_files):
    written = write_cifar10(tmp_path)
    source = load_data("cifar10", DataOptions(root=str(tmp_path)))
    data, labels = written["test_batch"]
    x, y = everything(source)
    assert x.shape == (4, 3, 32, 32) and source.classes[:2] == ["airplane", "automobile"]
    # a CIFAR row holds the red plane, then green, then blue, each row-major
    torch.testing.assert_close(x, torch.from_numpy(data).reshape(4, 3, 32, 32).float() / 255)
    assert y.tolist() == labels
    train = load_data("cifar10", DataOptions(root=str(tmp_path), split="train"))
    assert len(train) == 20


def test_cifar100(tmp_path, trust_written_files):
    written = write_cifar100(tmp_path)
    x, y = everything(load_data("cifar100", DataOptions(root=str(tmp_path))))
    torch.testing.assert_close(x, torch.from_numpy(written["test"][0]).reshape(5, 3, 32, 32).float() / 255)
    assert y.tolist() == written["test"][1]


def test_svhn(tmp_path, trust_written_files):
    pytest.importorskip("scipy")
    images, labels = write_svhn(tmp_path)
    x, y = everything(load_data("svhn", DataOptions(root=str(tmp_path))))
    torch.testing.assert_close(x, torch.from_numpy(images).permute(3, 2, 0, 1).float() / 255)
    assert y.tolist() == [0 if v == 10 else int(v) for v in labels[:, 0]]


def test_svhn_without_scipy_says_what_is_missing(tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "scipy" else real(name, *a))
    with pytest.raises(UsageError, match="needs scipy"):
        load_data("svhn", DataOptions(root=str(tmp_path)))


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist", "cifar10", "cifar100", "svhn"])
def test_named_dataset_absent_says_how_to_get_it(tmp_path, name):
    root = tmp_path / "data"
    with pytest.raises(DataError) as info:
        load_data(name, DataOptions(root=str(root), split="train"))
    message = str(info.value)
    assert f"advgrad info --data {name} --split train --data-root {root} --download" in message
    assert "\n" not in message and not any(root.rglob("*.gz"))


def test_named_dataset_bad_split(tmp_path):
    with pytest.raises(UsageError, match="mnist has splits train and test, not 'extra'"):
        load_data("mnist", DataOptions(root=str(tmp_path), split="extra"))


def test_named_dataset_truncated_file(tmp_path):
    write_mnist(tmp_path)
    images = tmp_path / "MNIST" / "raw" / "t10k-images-idx3-ubyte"
    images.write_bytes(images.read_bytes()[:100])
    with pytest.raises(DataError, match="cannot read it from"):
        load_data("mnist", DataOptions(root=str(tmp_path)))


def test_download_flag_reaches_torchvision_and_keeps_stdout_clean(tmp_path, monkeypatch, capsys):
    import urllib.error

    import torchvision.datasets as tvd

    write_mnist(tmp_path / "present")
    calls = []

    def fake_download(self):  # stands in for the network: records the call, prints like torchvision
        calls.append(self.root)
        print("Downloading something")
        if not self._check_exists():
            raise urllib.error.URLError("no network here")

    monkeypatch.setattr(tvd.MNIST, "download", fake_download)
    source = load_data("mnist", DataOptions(root=str(tmp_path / "present"), download=True))
    assert len(source) == 10 and len(calls) == 1
    with pytest.raises(DataError, match=r"mnist: cannot download it in .*URLError"):
        load_data("mnist", DataOptions(root=str(tmp_path / "absent"), download=True))
    captured = capsys.readouterr()
    assert captured.out == "" and "Downloading something" in captured.err


def test_image_size_only_for_image_folders(tmp_path):
    path = save_tensors(tmp_path / "d.pt", pixels_u8(), torch.zeros(10, dtype=torch.long))
    with pytest.raises(UsageError, match="`image_size` resizes image folders only"):
        load_data(str(path), DataOptions(image_size=4))
