"""advgrad/io/model/load_model.py and advgrad/io/probe.py: the embedded model, TorchScript files, probing."""

from __future__ import annotations

import re
from importlib import resources
from types import SimpleNamespace

import pytest
import torch
from helpers import Trap, torchscript
from safetensors.torch import save_file
from special_files import null_device
from torch import nn

import advgrad.io.model.load_model as load_module
from advgrad.core.errors import ModelError
from advgrad.io.model.load_model import (
    CERTIFIED_ASSET,
    ROBUST_ASSET,
    load_certified_model,
    load_default_model,
    load_model,
    load_robust_model,
)
from advgrad.io.probe import check_logits, probe
from advgrad.models.digits import DigitsCNN


def test_shipped_model_reaches_97_percent_on_the_held_out_split(digits_model, digits_test):
    with torch.no_grad():
        pred = digits_model(digits_test.x).argmax(1)
    accuracy = float((pred == digits_test.y).float().mean())
    assert accuracy >= 0.97
    assert len(digits_test) == 450


def test_shipped_weights_are_a_plain_state_dict():
    asset = resources.files("advgrad") / "assets" / "digits_cnn.pt"
    with resources.as_file(asset) as path:
        state = torch.load(path, map_location="cpu", weights_only=True)
    assert isinstance(state, dict) and all(isinstance(v, torch.Tensor) for v in state.values())
    model = DigitsCNN()
    model.load_state_dict(state)  # strict: every key matches the architecture
    assert model(torch.zeros(2, 1, 8, 8)).shape == (2, 10)


def test_load_model_default():
    loaded = load_model(None)
    assert loaded.kind == "default" and not loaded.module.training
    assert loaded.parameter_count == sum(p.numel() for p in load_default_model().parameters())
    assert set(loaded.to_dict()) >= {"kind", "source", "description", "parameters"}


def test_torchscript_round_trip(tmp_path, digits_model, digits_test):
    path = tmp_path / "model.ts"
    torchscript(digits_model, path)
    loaded = load_model(str(path))
    assert loaded.kind == "torchscript" and not loaded.module.training
    x = digits_test.x[:16]
    with torch.no_grad():
        assert torch.allclose(loaded.module(x), digits_model(x), atol=1e-6)


def test_torchscript_module_saved_in_train_mode_is_loaded_in_eval_mode(tmp_path):
    model = nn.Sequential(nn.Flatten(), nn.Dropout(0.5), nn.Linear(4, 2)).train()
    path = tmp_path / "train.ts"
    torchscript(model, path)
    assert not load_model(str(path)).module.training


def _garbage(folder):
    (folder / "garbage.pt").write_bytes(b"not a model at all")
    return str(folder / "garbage.pt")


def _state_dict_file(folder):
    torch.save(nn.Linear(2, 2).state_dict(), folder / "state.pt")
    return str(folder / "state.pt")


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: str(p / "missing.ts"), "no such file"),
        (lambda p: str(p), "directory"),
        (_garbage, "not a TorchScript"),
        (_state_dict_file, "holds weights only"),
    ],
)
def test_bad_model_files(tmp_path, make, message):
    with pytest.raises(ModelError, match=message):
        load_model(make(tmp_path))


def test_a_model_file_that_is_a_device_is_refused_before_any_read(tmp_path):
    with pytest.raises(ModelError, match=r"model\.pt is a character device; expected a model file"):
        load_model(str(null_device(tmp_path / "model.pt")))


@pytest.mark.parametrize(
    "load, asset",
    [(load_default_model, "digits_cnn.pt"), (load_robust_model, ROBUST_ASSET), (load_certified_model, CERTIFIED_ASSET)],
    ids=["default", "robust", "certified"],
)
def test_shipped_weights_are_checked_as_any_weights_file(tmp_path, monkeypatch, load, asset):
    """The embedded models' assets go through the same reader: a float weight stored as integers
    (here a crafted stand-in for the asset) is refused, not cast."""
    state = {k: v.contiguous() for k, v in DigitsCNN().state_dict().items()}
    key = next(k for k, v in state.items() if v.is_floating_point())
    state[key] = state[key].round().to(torch.int64)
    (tmp_path / "assets").mkdir()
    path = tmp_path / "assets" / asset
    if asset.endswith(".safetensors"):
        save_file(state, path)
    else:
        torch.save(state, path)
    monkeypatch.setattr(load_module, "resources", SimpleNamespace(files=lambda _: tmp_path, as_file=resources.as_file))
    with pytest.raises(ModelError, match=re.escape(f"{key} is stored as integer (torch.int64)")):
        load()


def test_truncated_torchscript(tmp_path):
    path = tmp_path / "model.ts"
    torchscript(nn.Linear(3, 2), path)
    cut = tmp_path / "cut.ts"
    cut.write_bytes(path.read_bytes()[:200])
    with pytest.raises(ModelError):
        load_model(str(cut))


def test_loading_never_runs_code_from_a_pickled_model(tmp_path):
    marker = tmp_path / "ran.txt"
    torch.save(Trap(marker), tmp_path / "evil.pt")
    with pytest.raises(ModelError):
        load_model(str(tmp_path / "evil.pt"))
    assert not marker.exists()


# ---------------------------------------------------------------- probe


class _Returns(nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, x):
        return self.fn(x)


X = torch.rand(4, 1, 8, 8)
Y = torch.tensor([0, 3, 9, 1])


@pytest.mark.parametrize(
    "fn, message",
    [
        (lambda x: torch.zeros(x.shape[0], 3), "labels go up to 9"),
        (lambda x: torch.zeros(x.shape[0], 1), "at least 2"),
        (lambda x: ("not logits",), "tuple"),
        (lambda x: torch.zeros(x.shape[0], 10, 2), "shape"),
        (lambda x: torch.zeros(x.shape[0] + 1, 10), "shape"),
        (lambda x: torch.full((x.shape[0], 10), float("nan")), "NaN"),
        (lambda x: x.reshape(x.shape[0], 3, -1), "failed on inputs"),
    ],
)
def test_probe_rejects_models_that_do_not_fit(fn, message):
    with pytest.raises(ModelError, match=message):
        probe(_Returns(fn), X, Y)


def test_probe_accepts_a_fitting_model(digits_model):
    result = probe(digits_model, X, Y)
    assert result.input_shape == (1, 8, 8) and result.num_classes == 10
    assert check_logits(torch.zeros(4, 10), Y) == 10
