"""Damaged pickles against pickles that name code (advgrad/io/pickles.py and its use in the model,
weights and data loaders): bytes that are no pickle are called corrupt, and only a real pickle of
Python objects is told about --unsafe-pickle."""

from __future__ import annotations

import random
from pathlib import Path

import factory_models as fm
import pytest
import torch
from loading_fixtures import rewrite_zip

from advgrad.core.errors import AdvgradError, DataError, ModelError
from advgrad.io.data.load_data import load_data
from advgrad.io.model.load_model import ModelOptions, load_model
from advgrad.io.pickles import pickle_damage


def _random(n: int, seed: int) -> bytes:
    rng = random.Random(seed)
    return bytes(rng.randrange(256) for _ in range(n))


def header_then_noise(path: Path, seed: int = 0) -> Path:
    """A protocol-2 pickle header followed by random bytes: torch.load(weights_only=True) fails on
    it exactly as on a pickle that names a class ("Weights only load failed")."""
    path.write_bytes(b"\x80\x02" + _random(3000, seed))
    return path


def zip_with_noise(folder: Path) -> Path:
    """A torch.save archive, well-formed as a zip, whose data.pkl is a pickle header and noise."""
    good, bad = folder / "good.pt", folder / "zip-noise.pt"
    torch.save({"x": torch.rand(3, 1, 8, 8), "y": torch.zeros(3, dtype=torch.long)}, good)
    rewrite_zip(good, bad, lambda name, data: b"\x80\x02" + _random(400, 1) if name.endswith("/data.pkl") else data)
    return bad


DAMAGED = {"noise": lambda d: header_then_noise(d / "noise.pt"), "zip-noise": zip_with_noise}


def _loaders(path: Path):
    """Each loader that reads a torch.save file, with the error it raises."""
    return [
        (lambda: load_model(str(path)), ModelError, "model"),
        (lambda: load_model("factory_models:make", ModelOptions(weights=str(path))), ModelError, "weights"),
        (lambda: load_data(str(path)), DataError, "tensor"),
    ]


def test_weights_only_load_fails_alike_on_noise_and_on_code(tmp_path):
    """The premise: torch's own error does not tell the two apart."""
    noise = header_then_noise(tmp_path / "noise.pt")
    whole = tmp_path / "whole.pt"
    torch.save(fm.make(), whole)
    for path in (noise, whole):
        with pytest.raises(Exception, match="Weights only load failed"):
            torch.load(path, weights_only=True)


@pytest.mark.parametrize("kind", list(DAMAGED))
def test_noise_after_a_pickle_header_is_corrupt_and_never_invites_the_opt_in(tmp_path, kind):
    path = DAMAGED[kind](tmp_path)
    assert pickle_damage(path) is not None
    for load, error, what in _loaders(path):
        with pytest.raises(error) as info:
            load()
        message = str(info.value)
        assert f"not a readable {what} file, truncated or corrupt" in message and "damaged pickle data" in message
        assert (
            "unsafe_pickle" not in message
            and "--unsafe-pickle" not in message
            and "pickled" not in message.split("(")[0]
        )


@pytest.mark.parametrize("legacy", [False, True])
def test_a_real_pickle_naming_code_keeps_the_opt_in_message(tmp_path, legacy):
    path = tmp_path / "whole.pt"
    torch.save(fm.make(), path, _use_new_zipfile_serialization=not legacy)
    assert pickle_damage(path) is None
    with pytest.raises(ModelError, match="a whole pickled model.*`unsafe_pickle`"):
        load_model(str(path))
    with pytest.raises(ModelError, match="pickled Python objects, not just tensors.*`unsafe_pickle`"):
        load_model("factory_models:make", ModelOptions(weights=str(path)))
    data = tmp_path / "data.pt"
    torch.save({"x": torch.rand(2, 1, 8, 8), "y": fm.make()}, data, _use_new_zipfile_serialization=not legacy)
    with pytest.raises(DataError, match="holds pickled Python objects besides tensors"):
        load_data(str(data))


@pytest.mark.parametrize("seed", range(20))
def test_random_noise_is_never_taken_for_a_pickle_of_code(tmp_path, seed):
    path = header_then_noise(tmp_path / f"n{seed}.pt", seed)
    assert pickle_damage(path) is not None
    with pytest.raises(AdvgradError) as info:
        load_model(str(path))
    assert "unsafe_pickle" not in str(info.value) and "--unsafe-pickle" not in str(info.value)


def test_a_huge_length_field_is_read_no_further_than_the_file(tmp_path):
    path = tmp_path / "long.pt"
    path.write_bytes(b"\x80\x02X\xff\xff\xff\xffabc")  # BINUNICODE of 4 GiB, three bytes present
    assert "damaged pickle data" in pickle_damage(path)
