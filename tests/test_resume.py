"""Resuming an interrupted evaluation (advgrad/evaluation/resume.py, advgrad/evaluation/tally.py, advgrad/cli/state.py):
a run stopped part-way and run again gives the same report as one that was never stopped."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from report_helpers import comparable, run_default, stop_after
from torch import nn
from typer.testing import CliRunner

import advgrad.cli.state as cli_state
from advgrad.attacks import get_attack
from advgrad.cli import app
from advgrad.core.errors import UsageError
from advgrad.evaluation.eval_config import EvalAttack, EvalConfig
from advgrad.evaluation.resume import RunState, run_identity, run_key
from advgrad.execution.progress import ProgressTracker
from advgrad.io.model.load_model import load_default_model

ROOT = Path(__file__).resolve().parent.parent
runner = CliRunner()


class Counting(nn.Module):
    def __init__(self, model: nn.Module):
        super().__init__()
        self.model, self.calls = model, 0

    def forward(self, x):
        self.calls += 1
        return self.model(x)


def test_interrupted_run_resumes_to_the_same_report(tmp_path):
    kwargs = dict(limit=60, batch_size=10, eps=(0.0, 0.05, 0.1, 0.3), examples=3)
    whole_model = Counting(load_default_model())
    whole = run_default(model=whole_model, **kwargs)
    path = tmp_path / "state"
    with pytest.raises(KeyboardInterrupt):
        run_default(state=RunState.open(path, "key"), progress=stop_after(2), **kwargs)
    assert sorted(p.name for p in path.iterdir()) == ["batch-000000.pt", "batch-000001.pt", "run.json"]
    state = RunState.open(path, "key")
    assert state.finished == 2
    resumed_model = Counting(load_default_model())
    resumed = run_default(model=resumed_model, state=state, **kwargs)
    assert resumed.timing["resumed_batches"] == 2
    assert 0 < resumed_model.calls < whole_model.calls  # the two saved batches did not run again
    assert comparable(resumed.to_dict()) == comparable(whole.to_dict())
    for name in whole.examples:  # the image grid's examples come back too
        assert [(e.y, e.pred, e.eps) for e in resumed.examples[name]] == [
            (e.y, e.pred, e.eps) for e in whole.examples[name]
        ]
        assert all(
            torch.equal(a.x_adv, b.x_adv) for a, b in zip(resumed.examples[name], whole.examples[name], strict=True)
        )
        assert 0 < len(whole.examples[name]) <= 3


def test_state_of_another_run_is_refused_or_ignored(tmp_path):
    path = tmp_path / "state"
    with pytest.raises(KeyboardInterrupt):
        run_default(state=RunState.open(path, "one"), progress=stop_after(1), limit=20, batch_size=10)
    with pytest.raises(UsageError, match="different run"):
        RunState.open(path, "two")
    assert RunState.open(path, "one").finished == 1
    assert RunState.open(path, "one", resume=False).finished == 0  # --no-resume starts afresh...
    assert not list(path.glob("batch-*"))  # ...and drops the old batches
    (tmp_path / "junk.pt").write_bytes(b"not a folder")
    with pytest.raises(UsageError, match="not a folder"):
        RunState.open(tmp_path / "junk.pt", "one")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(UsageError, match="holds no advgrad state"):
        RunState.open(tmp_path / "other", "one")


def test_a_damaged_batch_file_is_run_again(tmp_path):
    path = tmp_path / "state"
    with pytest.raises(KeyboardInterrupt):
        run_default(state=RunState.open(path, "k"), progress=stop_after(2), limit=40, batch_size=10)
    (path / "batch-000001.pt").write_bytes(b"garbage")
    state = RunState.open(path, "k")
    report = run_default(state=state, limit=40, batch_size=10)
    assert report.timing["resumed_batches"] == 1
    assert comparable(report.to_dict()) == comparable(run_default(limit=40, batch_size=10).to_dict())
    state.remove()
    assert not path.exists()


def _damage(path: Path, other_run: Path) -> dict[str, str]:
    """Damage four of the saved batch files in ``path`` four ways; what the warning for each says."""
    cut = path / "batch-000000.pt"
    cut.write_bytes(cut.read_bytes()[:150])  # truncated by a full disk
    (path / "batch-000001.pt").write_text('{"format": "advgrad.eval-state", "key": "k"', encoding="utf-8")  # garbage
    (path / "batch-000002.pt").write_bytes((other_run / "batch-000002.pt").read_bytes())  # another run's batch
    (path / "batch-000004.pt").write_bytes((path / "batch-000003.pt").read_bytes())  # batch 3 under batch 4's name
    return {
        "batch-000000.pt": "truncated",
        "batch-000001.pt": "truncated or damaged",
        "batch-000002.pt": "another run",
        "batch-000004.pt": "holds batch 3",
    }


def test_damaged_batch_files_are_discarded_when_opened_and_counted_exactly(tmp_path):
    path, other = tmp_path / "state", tmp_path / "other"
    for folder, key in ((path, "k"), (other, "other-key")):
        with pytest.raises(KeyboardInterrupt):
            run_default(state=RunState.open(folder, key), progress=stop_after(6), limit=70, batch_size=10)
    expected = _damage(path, other)
    state = RunState.open(path, "k")
    assert state.finished == 2  # batches 3 and 5: six saved, four damaged
    assert len(state.discarded_files) == 4
    for name, reason in expected.items():
        [line] = [m for m in state.discarded_files if name in m]
        assert reason in line and "runs again" in line and "\n" not in line
        assert not (path / name).exists()
    report = run_default(state=state, limit=70, batch_size=10)
    assert report.timing["resumed_batches"] == 2
    assert comparable(report.to_dict()) == comparable(run_default(limit=70, batch_size=10).to_dict())


def test_cli_says_how_many_batches_it_really_restores_and_warns_per_discarded_file(tmp_path, monkeypatch):
    args = ["eval", "--attack", "fgsm", "--eps", "0,0.1", "--limit", "70", "--batch-size", "10", "--json", "-"]
    state, other = tmp_path / "state", tmp_path / "other"

    with monkeypatch.context() as patch:
        patch.setattr(cli_state, "sweep_progress", interrupting_after(6))
        assert runner.invoke(app, args + ["--state", str(state)]).exit_code == 130
        assert (
            runner.invoke(app, args[:-4] + ["--limit", "71", "--batch-size", "10", "--state", str(other)]).exit_code
            == 130
        )
    expected = _damage(state, other)
    resumed = runner.invoke(app, args + ["--state", str(state)])
    assert resumed.exit_code == 0, resumed.output
    assert "resuming: 2 finished batches restored" in resumed.stderr
    assert json.loads(resumed.stdout)["timing"]["resumed_batches"] == 2
    warnings = [line for line in resumed.stderr.splitlines() if line.startswith("warning: discarded")]
    assert len(warnings) == 4
    for name, reason in expected.items():
        assert sum(name in w and reason in w for w in warnings) == 1


def test_the_key_covers_everything_that_decides_the_result(tmp_path):
    fgsm, pgd = get_attack("fgsm"), get_attack("pgd")
    inputs = {"model": None, "data": None, "split": "test", "limit": 100, "batch_size": 50, "seed": 0, "device": "auto"}
    attacks = [EvalAttack(pgd, pgd.make_params(steps=10))]
    config = EvalConfig(eps=[0.0, 0.1])
    key = run_key(run_identity(inputs, attacks, config, "cpu"))
    assert key == run_key(
        run_identity(dict(inputs), [EvalAttack(pgd, pgd.make_params(steps=10))], EvalConfig(eps=[0.1, 0.0]), "cpu")
    )
    changed = [
        run_identity({**inputs, "limit": 99}, attacks, config, "cpu"),
        run_identity({**inputs, "batch_size": 25}, attacks, config, "cpu"),
        run_identity({**inputs, "split": "train"}, attacks, config, "cpu"),
        run_identity(inputs, [EvalAttack(pgd, pgd.make_params(steps=11))], config, "cpu"),
        run_identity(inputs, [EvalAttack(fgsm, fgsm.make_params())], config, "cpu"),
        run_identity(inputs, attacks, EvalConfig(eps=[0.0, 0.2]), "cpu"),
        run_identity(inputs, attacks, EvalConfig(eps=[0.0, 0.1], norm="2"), "cpu"),
        run_identity(inputs, attacks, EvalConfig(eps=[0.0, 0.1], seed=1), "cpu"),
        run_identity(inputs, attacks, EvalConfig(eps=[0.0, 0.1], target="random"), "cpu"),
        run_identity(inputs, attacks, config, "cuda"),
    ]
    assert len({run_key(i) for i in changed} | {key}) == len(changed) + 1
    model = tmp_path / "m.pt"
    model.write_bytes(b"x")
    first = run_key(run_identity({**inputs, "model": str(model)}, attacks, config, "cpu"))
    model.write_bytes(b"xy")  # retrained into the same path
    assert run_key(run_identity({**inputs, "model": str(model)}, attacks, config, "cpu")) != first


ARGS = [
    "eval",
    "--attack",
    "fgsm,pgd",
    "--steps",
    "5",
    "--eps",
    "0,0.05,0.1,0.3",
    "--limit",
    "50",
    "--batch-size",
    "10",
    "--json",
    "-",
]


def interrupting_after(batches: int):
    """The sweep's progress, interrupting the run (KeyboardInterrupt) after ``batches`` batches."""

    @contextlib.contextmanager
    def progress(total, **options):
        tracker = ProgressTracker(total)
        tick = stop_after(batches)
        tracker.next_batch = lambda: tick(0)
        yield tracker

    return progress


interrupting_progress = interrupting_after(3)


def test_cli_interrupt_then_rerun(tmp_path, monkeypatch):
    monkeypatch.setenv("ADVGRAD_STATE_DIR", str(tmp_path / "state"))
    whole = runner.invoke(app, ARGS + ["--no-resume"])
    assert whole.exit_code == 0, whole.output
    assert not list((tmp_path / "state").iterdir()), "a finished run removes its state"
    with monkeypatch.context() as patch:
        patch.setattr(cli_state, "sweep_progress", interrupting_progress)
        stopped = runner.invoke(app, ARGS)
    assert stopped.exit_code == 130
    assert "3 finished batches are saved" in stopped.stderr and "run the same command again" in stopped.stderr
    assert stopped.stdout == ""  # no report from an unfinished run
    [folder] = list((tmp_path / "state").glob("eval-*"))
    assert len(list(folder.glob("batch-*.pt"))) == 3
    resumed = runner.invoke(app, ARGS)
    assert resumed.exit_code == 0, resumed.output
    assert "resuming: 3 finished batches restored" in resumed.stderr
    assert comparable(json.loads(resumed.stdout)) == comparable(json.loads(whole.stdout))
    assert not list((tmp_path / "state").iterdir())


def test_cli_explicit_state_file_and_no_resume(tmp_path, monkeypatch):
    state = tmp_path / "my-state"
    with monkeypatch.context() as patch:
        patch.setattr(cli_state, "sweep_progress", interrupting_progress)
        assert runner.invoke(app, ARGS + ["--state", str(state)]).exit_code == 130
    assert state.exists()
    fresh = runner.invoke(app, ARGS + ["--state", str(state), "--no-resume"])
    assert fresh.exit_code == 0 and "resuming" not in fresh.stderr
    other = ARGS[:-4] + ["--limit", "40", "--batch-size", "10", "--json", "-"]
    with monkeypatch.context() as patch:
        patch.setattr(cli_state, "sweep_progress", interrupting_progress)
        assert runner.invoke(app, ARGS + ["--state", str(state)]).exit_code == 130
    refused = runner.invoke(app, other + ["--state", str(state)])
    assert refused.exit_code == 2 and "different run" in refused.stderr


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_real_signal_then_rerun(tmp_path, signum):
    """A real process stopped by a signal once its first batches are saved, then run again."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "ADVGRAD_STATE_DIR": str(tmp_path / "state"), "OMP_NUM_THREADS": "1"}
    args = [
        sys.executable,
        "-m",
        "advgrad",
        "eval",
        "--attack",
        "pgd",
        "--steps",
        "10",
        "--eps",
        "0,0.05,0.1",
        "--limit",
        "120",
        "--batch-size",
        "5",
        "--seed",
        "3",
        "--json",
        str(tmp_path / "r.json"),
    ]
    process = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while (
        not list((tmp_path / "state").glob("eval-*/batch-*.pt"))
        and process.poll() is None
        and time.monotonic() < deadline
    ):
        time.sleep(0.02)
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=60)
    if process.returncode == 0:
        pytest.skip("the run finished before the signal arrived (a very fast machine)")
    assert process.returncode == 130, stderr
    assert "finished batches are saved" in stderr or "finished batch" in stderr
    assert not (tmp_path / "r.json").exists(), "an interrupted run writes no report"
    rerun = subprocess.run(args, env=env, capture_output=True, text=True, timeout=120)
    assert rerun.returncode == 0, rerun.stderr
    assert "resuming:" in rerun.stderr
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the subprocesses: tiny batches run faster without threads fighting over cores
    try:
        whole = runner.invoke(app, args[3:-2] + ["--json", "-", "--no-resume", "--state", str(tmp_path / "other")])
    finally:
        torch.set_num_threads(threads)
    assert whole.exit_code == 0, whole.output
    resumed = json.loads((tmp_path / "r.json").read_text())
    expected = json.loads(whole.stdout)
    assert comparable(resumed) == comparable(expected)
    assert not list((tmp_path / "state").iterdir())  # no state, no temporary file left behind
