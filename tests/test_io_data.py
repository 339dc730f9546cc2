"""advgrad/io/data/load_data.py: the embedded digits, .pt and .npz files, and every way they can be wrong."""

from __future__ import annotations

from importlib import resources

import numpy as np
import pytest
import torch
from helpers import Trap

from advgrad.core.errors import DataError, UsageError
from advgrad.io.data.load_data import TensorSource, load_data, load_default

# ---------------------------------------------------------------- the embedded default


@pytest.mark.parametrize("split, n", [("test", 450), ("train", 1347)])
def test_embedded_digit_files_have_the_documented_form(split, n):
    """digits_{split}.npz: x uint8 N×1×8×8 (pixels 0..255), y int64 N labels 0..9; 1,797 in all."""
    asset = resources.files("advgrad") / "assets" / f"digits_{split}.npz"
    with resources.as_file(asset) as path, np.load(path, allow_pickle=False) as f:
        assert sorted(f.files) == ["x", "y"]
        x, y = f["x"], f["y"]
    assert x.shape == (n, 1, 8, 8) and x.dtype == np.uint8
    assert y.shape == (n,) and y.dtype == np.int64
    assert x.max() == 255 and x.min() == 0
    assert set(np.unique(y)) == set(range(10))
    assert np.bincount(y).min() >= n // 20  # every class present in a fair share


def test_embedded_splits_add_up_to_the_uci_digits():
    assert len(load_default("test")) + len(load_default("train")) == 1797


def test_load_default_gives_float_pixels_and_long_labels(digits_test):
    assert digits_test.x.shape == (450, 1, 8, 8) and digits_test.x.dtype == torch.float32
    assert digits_test.y.dtype == torch.int64
    assert float(digits_test.x.min()) == 0.0 and float(digits_test.x.max()) == 1.0
    assert load_data(None).x.shape == (450, 1, 8, 8)
    with pytest.raises(UsageError):
        load_default("valid")


# ---------------------------------------------------------------- files that load


def test_pt_and_npz_round_trip(tmp_path):
    x = torch.rand(6, 3, 4, 4)
    y = torch.tensor([0, 1, 2, 3, 4, 5])
    torch.save({"x": x, "y": y}, tmp_path / "d.pt")
    torch.save((x, y), tmp_path / "pair.pth")
    np.savez(tmp_path / "d.npz", x=(x * 255).round().to(torch.uint8).numpy(), y=y.numpy().astype(np.int32))
    np.savez(tmp_path / "gray.npz", x=np.full((6, 4, 4), 0.25, dtype=np.float64), y=y.numpy())

    for name in ("d.pt", "pair.pth"):
        source = load_data(str(tmp_path / name))
        assert torch.equal(source.x, x) and torch.equal(source.y, y) and len(source) == 6
    npz = load_data(str(tmp_path / "d.npz"))
    assert npz.x.dtype == torch.float32 and npz.y.dtype == torch.int64
    assert torch.allclose(npz.x, (x * 255).round() / 255, atol=1e-7)
    gray = load_data(str(tmp_path / "gray.npz"))
    assert gray.x.shape == (6, 1, 4, 4) and float(gray.x.max()) == 0.25  # channel axis added


def test_select_and_batches(digits_test):
    assert digits_test.select(limit=5).tolist() == [0, 1, 2, 3, 4]
    shuffled = digits_test.select(limit=10, shuffle=True, seed=1)
    assert torch.equal(shuffled, digits_test.select(limit=10, shuffle=True, seed=1))
    assert not torch.equal(shuffled, digits_test.select(limit=10, shuffle=True, seed=2))
    batches = list(digits_test.batches(4, limit=10))
    assert [b[0].shape[0] for b in batches] == [4, 4, 2]
    assert torch.equal(torch.cat([b[0] for b in batches]), digits_test.x[:10])
    assert len(list(digits_test.batches(64, limit=1000))) == 8  # 450 samples, limit beyond the end
    with pytest.raises(UsageError):
        digits_test.select(limit=0)
    with pytest.raises(UsageError):
        list(digits_test.batches(0))


# ---------------------------------------------------------------- files that must not load


def _save_pt(path, **arrays):
    torch.save(arrays, path)
    return str(path)


def _save_npz(path, **arrays):
    np.savez(path, **arrays)
    return str(path)


Y6 = torch.arange(6)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: str(p / "missing.pt"), "no such file"),
        (lambda p: str(p / "missing.npz"), "no such file"),
        (lambda p: str(p / "missing.csv"), "no such file"),
        (lambda p: str(p), "directory"),
        (lambda p: _save_pt(p / "nan.pt", x=torch.full((6, 1, 2, 2), float("nan")), y=Y6), "NaN"),
        (lambda p: _save_pt(p / "inf.pt", x=torch.full((6, 1, 2, 2), float("inf")), y=Y6), "NaN or infinite"),
        (
            lambda p: _save_pt(
                p / "norm.pt", x=torch.randn(6, 1, 2, 2, generator=torch.Generator().manual_seed(0)), y=Y6
            ),
            "normalised",
        ),
        (lambda p: _save_pt(p / "big.pt", x=torch.full((6, 1, 2, 2), 255.0), y=Y6), "outside \\[0, 1\\]"),
        (lambda p: _save_pt(p / "keys.pt", images=torch.rand(6, 1, 2, 2), labels=Y6), "x and y"),
        (lambda p: _save_pt(p / "short.pt", x=torch.rand(6, 1, 2, 2), y=torch.arange(5)), "one label per sample"),
        (lambda p: _save_pt(p / "frac.pt", x=torch.rand(6, 1, 2, 2), y=torch.full((6,), 0.5)), "integer"),
        (lambda p: _save_pt(p / "neg.pt", x=torch.rand(6, 1, 2, 2), y=-Y6), "negative"),
        (lambda p: _save_pt(p / "bool.pt", x=torch.rand(6, 1, 2, 2), y=Y6 > 2), "booleans"),
        (lambda p: _save_pt(p / "flat.pt", x=torch.rand(6), y=Y6), "N×C×H×W"),  # N×D is a table
        (lambda p: _save_pt(p / "int.pt", x=torch.ones(6, 1, 2, 2, dtype=torch.int32), y=Y6), "uint8"),
        (lambda p: _save_pt(p / "empty.pt", x=torch.rand(0, 1, 2, 2), y=torch.arange(0)), "empty"),
        (lambda p: _save_npz(p / "obj.npz", x=np.array([object()] * 6), y=np.arange(6)), "not a readable"),
        (lambda p: _save_npz(p / "none.npz", a=np.zeros(3)), "x and y"),
    ],
)
def test_bad_data_is_a_data_error(tmp_path, make, message):
    spec = make(tmp_path)
    with pytest.raises(DataError, match=message):
        load_data(spec)


def test_truncated_files(tmp_path):
    torch.save({"x": torch.rand(50, 1, 8, 8), "y": torch.arange(50)}, tmp_path / "full.pt")
    np.savez(tmp_path / "full.npz", x=np.zeros((50, 1, 8, 8), np.uint8), y=np.arange(50))
    for name in ("full.pt", "full.npz"):
        data = (tmp_path / name).read_bytes()
        cut = tmp_path / f"cut{(tmp_path / name).suffix}"
        cut.write_bytes(data[: len(data) // 2])
        with pytest.raises(DataError, match="not a readable"):
            load_data(str(cut))


def test_unknown_format(tmp_path):
    (tmp_path / "d.txt").write_text("1,2,3\n")  # .csv is a table (test_tabular.py)
    with pytest.raises(DataError, match="unrecognised data format"):
        load_data(str(tmp_path / "d.txt"))


def test_loading_never_runs_code_from_a_pt_file(tmp_path):
    marker = tmp_path / "ran.txt"
    torch.save({"x": torch.rand(2, 1, 2, 2), "y": torch.arange(2), "extra": Trap(marker)}, tmp_path / "evil.pt")
    with pytest.raises(DataError):
        load_data(str(tmp_path / "evil.pt"))
    assert not marker.exists()
    torch.load(tmp_path / "evil.pt", weights_only=False)  # the payload is real: unpickling runs it
    assert marker.exists()


def test_loading_never_runs_code_from_an_npz_file(tmp_path):
    marker = tmp_path / "ran.txt"
    np.savez(tmp_path / "evil.npz", x=np.array([Trap(marker)], dtype=object), y=np.arange(1))
    with pytest.raises(DataError):
        load_data(str(tmp_path / "evil.npz"))
    assert not marker.exists()
    with np.load(tmp_path / "evil.npz", allow_pickle=True) as f:
        f["x"]  # the payload is real: unpickling runs it
    assert marker.exists()


def test_tensor_source_from_arrays_checks_too():
    with pytest.raises(DataError):
        TensorSource.from_arrays(np.full((2, 1, 2, 2), 2.0), np.arange(2), name="arrays")
    source = TensorSource.from_arrays(np.zeros((2, 1, 2, 2), np.uint8), np.arange(2), name="arrays")
    assert "2 samples" in source.description
