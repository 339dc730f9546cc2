"""Shared fixtures: the embedded default model and data, and input files for the CLI tests.

Everything here is built in memory or under pytest's temporary folders; nothing is downloaded.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import torchscript
from hypothesis import HealthCheck, settings
from torch import nn

# The tests use tiny tensors: one intra-op thread avoids thread hand-off costs that dominate on a
# shared 2-core machine (each tiny op otherwise waits for a busy second core).
torch.set_num_threads(1)

# Few examples and no deadline: the suite runs on 2 shared CPU cores.
settings.register_profile("advgrad", max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "advgrad"))


@pytest.fixture
def one_thread():
    """torch on one thread for the test (the training tests: their runs are those of one thread)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def digits_model() -> nn.Module:
    from advgrad.io.model.load_model import load_default_model

    return load_default_model()


@pytest.fixture(scope="session")
def digits_test():
    from advgrad.io.data.load_data import load_default

    return load_default("test")


# ---------------------------------------------------------------- files for the CLI tests


@dataclass
class Files:
    folder: Path
    digits_pt: Path  # a valid .pt with 32 digits test samples
    digits_npz: Path  # the same as .npz, uint8 pixels
    truncated_pt: Path
    nan_pt: Path
    normalised_npz: Path
    three_class_model: Path  # TorchScript, 3 outputs: does not fit 10-class labels
    digits_script: Path  # TorchScript copy of the default model


@pytest.fixture(scope="session")
def files(tmp_path_factory, digits_model, digits_test) -> Files:
    folder = tmp_path_factory.mktemp("inputs")
    x, y = digits_test.x[:32].clone(), digits_test.y[:32].clone()

    digits_pt = folder / "digits.pt"
    torch.save({"x": x, "y": y}, digits_pt)
    digits_npz = folder / "digits.npz"
    np.savez(digits_npz, x=(x * 255).round().to(torch.uint8).numpy(), y=y.numpy())

    truncated = folder / "truncated.pt"
    truncated.write_bytes(digits_pt.read_bytes()[: digits_pt.stat().st_size // 2])

    nan_x = x.clone()
    nan_x[3, 0, 2, 2] = float("nan")
    nan_pt = folder / "nan.pt"
    torch.save({"x": nan_x, "y": y}, nan_pt)

    normalised = folder / "normalised.npz"
    np.savez(normalised, x=((x - 0.3) / 0.2).numpy(), y=y.numpy())

    three = nn.Sequential(nn.Flatten(), nn.Linear(64, 3)).eval()
    three_path = folder / "three.ts"
    torchscript(three, three_path)

    script_path = folder / "digits_cnn.ts"
    torchscript(digits_model, script_path)

    return Files(folder, digits_pt, digits_npz, truncated, nan_pt, normalised, three_path, script_path)
