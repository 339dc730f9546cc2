"""scripts/eval-models.sh: evaluates several models and fails on a regression (via advgrad compare)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from advgrad.io.model.load_model import load_default_model

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "eval-models.sh"

pytestmark = [pytest.mark.slow, pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")]


def run_script(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "ADVGRAD": f"{sys.executable} -m advgrad",
        "ADVGRAD_STATE_DIR": str(tmp_path / "state"),
        "OMP_NUM_THREADS": "1",
    }
    return subprocess.run(
        [
            "bash",
            str(SCRIPT),
            "-c",
            str(tmp_path / "tiny.toml"),
            "-b",
            str(tmp_path / "base"),
            "-o",
            str(tmp_path / "out"),
            *args,
        ],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_script_evaluates_models_and_fails_on_regression(tmp_path):
    (tmp_path / "tiny.toml").write_text('attack = "fgsm"\neps = ["0", "0.1"]\nlimit = 30\n')
    scripted = tmp_path / "digits_copy.pt"  # a second model: the default one exported with TorchScript
    torch.jit.save(torch.jit.script(load_default_model()), str(scripted))

    first = run_script(tmp_path, "-u", "digits-cnn", str(scripted))
    assert first.returncode == 0, first.stderr
    for name in ("digits-cnn", "digits_copy"):
        assert json.loads((tmp_path / "out" / f"{name}.json").read_text())["n_samples"] == 30
        assert (tmp_path / "base" / f"{name}.json").exists()  # -u saved the baselines
        assert (tmp_path / "out" / f"{name}.md").exists()

    baseline = tmp_path / "base" / "digits_copy.json"
    data = json.loads(baseline.read_text())
    data["attacks"]["fgsm"]["points"][1]["accuracy"] += 0.10  # the baseline was 10 points more robust
    baseline.write_text(json.dumps(data))
    second = run_script(tmp_path, "-d", "0.02", str(scripted))
    assert second.returncode == 1, second.stderr
    assert "FAILED: digits_copy (regressed)" in second.stderr
    assert "regression: fgsm at ε=0.1" in second.stderr

    broken = run_script(tmp_path, str(tmp_path / "missing.pt"))
    assert broken.returncode == 2 and "ERROR: missing (eval exit 2)" in broken.stderr
    assert run_script(tmp_path).returncode == 2  # no model given: usage
