"""Bit for bit: the same command twice gives byte-identical JSON (every time measured sits in
`timing`) and records, and so does an interrupted run continued with the same command."""

from __future__ import annotations

import hashlib
import json

from helpers import invoke
from test_resume import interrupting_after

import advgrad.cli.state as cli_state

ARGS = ["eval", "--limit", "50", "--batch-size", "10", "--attack", "fgsm,pgd,deepfool", "--steps", "5"]
ARGS += ["--eps", "0,0.05,0.1", "--threads", "1"]


def _hashes(tmp_path, name: str) -> tuple[str, str]:
    """sha256 of the JSON report less its `timing`, and of the records file, of the run called ``name``."""
    report = json.loads((tmp_path / f"{name}.json").read_text())
    assert set(report["timing"]["attack_seconds"]) == {"fgsm", "pgd", "deepfool"}
    assert all("seconds" not in curve for curve in report["attacks"].values())
    report.pop("timing")
    text = json.dumps(report, sort_keys=False)
    return hashlib.sha256(text.encode()).hexdigest(), hashlib.sha256((tmp_path / "r.jsonl").read_bytes()).hexdigest()


def _run(tmp_path, name: str):
    out = ["--json", tmp_path / f"{name}.json", "--records", tmp_path / "r.jsonl"]
    return invoke(ARGS + out + ["--state", tmp_path / "state"])


def test_two_runs_and_a_resumed_one_hash_the_same(tmp_path, monkeypatch):
    assert _run(tmp_path, "a").exit_code == 0
    first = _hashes(tmp_path, "a")
    (tmp_path / "a.json").rename(tmp_path / "first.json")  # the same command: the same output path
    assert _run(tmp_path, "a").exit_code == 0
    assert _hashes(tmp_path, "a") == first
    (tmp_path / "r.jsonl").unlink()
    (tmp_path / "a.json").unlink()
    with monkeypatch.context() as patch:
        patch.setattr(cli_state, "sweep_progress", interrupting_after(2))
        assert _run(tmp_path, "a").exit_code == 130
    assert not (tmp_path / "r.jsonl").exists()  # no half-written records from an interrupted run
    resumed = _run(tmp_path, "a")
    assert resumed.exit_code == 0 and "resuming: 2 finished batches restored" in resumed.stderr
    assert json.loads((tmp_path / "a.json").read_text())["timing"]["resumed_batches"] == 2
    assert _hashes(tmp_path, "a") == first
