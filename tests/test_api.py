"""The Python API (advgrad/__init__.py, advgrad/api.py): discoverable, documented, and giving the
numbers the command line gives."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import assert_inside, invoke

import advgrad
from advgrad.core.errors import UsageError

ROOT = Path(__file__).resolve().parent.parent
LIMIT = 96


@pytest.fixture(scope="module")
def batch():
    return advgrad.load_data(limit=LIMIT)


@pytest.fixture(scope="module")
def model():
    return advgrad.load_model()


def test_all_entries_resolve_and_are_documented():
    assert {"attack", "evaluate", "load_model", "load_data", "write_report", "list_attacks", "ThreatModel"} <= set(
        advgrad.__all__
    )
    for name in advgrad.__all__:
        obj = getattr(advgrad, name)
        assert callable(obj) and (obj.__doc__ or "").strip(), name
        assert name in dir(advgrad)
    for name in ("attack", "evaluate", "certify", "load_model", "load_data", "write_report"):
        assert "Example" in getattr(advgrad, name).__doc__, name


def test_evaluate_is_the_function_and_the_sweep_module_does_not_shadow_it():
    from advgrad.evaluation.eval_config import EvalConfig  # imports the sweep's module  # noqa: F401

    assert callable(advgrad.evaluate) and advgrad.evaluate.__module__ == "advgrad.api"
    assert sys.modules["advgrad.evaluation.sweep"].evaluate is not advgrad.evaluate
    assert "advgrad.evaluate" not in sys.modules  # no submodule has the function's name


def test_import_is_cheap():
    code = "import sys, advgrad; print('torch' in sys.modules, sorted(advgrad.__all__) == sorted(set(dir(advgrad)) & set(advgrad.__all__)))"
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert result.stdout.split() == ["False", "True"], result.stderr


def test_load_data_and_model(batch, model):
    x, y = batch
    assert x.shape == (LIMIT, 1, 8, 8) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert 0 <= float(x.min()) and float(x.max()) <= 1
    assert not model.training
    assert (model(x).argmax(1) == y).float().mean() > 0.95


@pytest.mark.parametrize(("norm", "eps"), [("inf", 8 / 255), ("2", 0.5), ("1", 2.0)])
def test_attack_stays_in_the_ball_and_the_box(batch, model, norm, eps):
    x, y = batch
    x_adv = advgrad.attack(model, x, y, "pgd", eps=eps, norm=norm, steps=10)
    assert x_adv.shape == x.shape and x_adv.dtype == x.dtype
    assert_inside(x_adv, x, eps, norm)


def test_pgd_fools_at_least_as_many_as_fgsm(batch, model):
    x, y = batch
    fooled = {
        name: int((model(advgrad.attack(model, x, y, name, eps=0.1)).argmax(1) != y).sum()) for name in ("fgsm", "pgd")
    }
    assert fooled["pgd"] >= fooled["fgsm"] > 0


def test_attack_equals_the_cli(batch, model, tmp_path):
    x, y = batch
    out = tmp_path / "adv.pt"
    result = invoke(
        [
            "attack",
            "--method",
            "pgd",
            "--eps",
            "8/255",
            "--steps",
            "7",
            "--limit",
            LIMIT,
            "--batch-size",
            LIMIT,
            "--seed",
            "3",
            "--out",
            out,
        ]
    )
    assert result.exit_code == 0, result.stderr
    saved = torch.load(out, weights_only=True)
    x_adv = advgrad.attack(model, x, y, "pgd", eps="8/255", steps=7, seed=3)
    assert torch.equal(saved["x"], x) and torch.equal(saved["x_adv"], x_adv)


def test_targeted_attack(batch, model):
    x, y = batch
    x_adv = advgrad.attack(model, x, y, "pgd", eps=0.3, target=3, steps=20)
    assert torch.equal(x_adv[y == 3], x[y == 3])  # already "at" the target: unchanged
    hit = model(x_adv).argmax(1)[y != 3] == 3
    assert hit.float().mean() > 0.5
    per_sample = advgrad.attack(model, x, y, "pgd", eps=0.3, target=torch.full_like(y, 3), steps=20)
    assert torch.equal(per_sample, x_adv)


def test_bad_calls_say_what_is_wrong(batch, model):
    x, y = batch
    with pytest.raises(TypeError, match="stepz: not a parameter of pgd"):
        advgrad.attack(model, x, y, "pgd", eps=0.1, stepz=3)
    with pytest.raises(UsageError, match="did you mean pgd"):
        advgrad.attack(model, x, y, "pdg", eps=0.1)
    with pytest.raises(UsageError, match=r"\[0, 1\]"):
        advgrad.attack(model, x * 2 - 1, y, "fgsm", eps=0.1)
    with pytest.raises(TypeError, match="labels"):
        advgrad.evaluate(model, x)


def test_evaluate_equals_the_cli(batch, model):
    x, y = batch
    result = invoke(["eval", "--limit", LIMIT, "--eps", "0,0.05,0.1", "--steps", "5", "--json", "-"])
    assert result.exit_code == 0, result.stderr
    cli = json.loads(result.stdout)
    report = advgrad.evaluate(model, x, y, attacks="fgsm,pgd", eps=[0, 0.05, 0.1], steps=5)
    api = report.to_dict()
    assert api["clean_correct"] == cli["clean_correct"] and api["eps"] == cli["eps"]
    for name in ("fgsm", "pgd"):
        assert [p["robust"] for p in api["attacks"][name]["points"]] == [
            p["robust"] for p in cli["attacks"][name]["points"]
        ]
        assert api["attacks"][name]["params"] == cli["attacks"][name]["params"]
    assert [c["status"] for c in api["checks"]] == [c["status"] for c in cli["checks"]]
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=256)
    again = advgrad.evaluate(model, loader, attacks=["fgsm", "pgd"], eps=["0", "0.05", "0.1"], steps=5).to_dict()
    for name in ("fgsm", "pgd"):  # all but the timing
        assert again["attacks"][name]["points"] == api["attacks"][name]["points"]


def test_write_report_by_suffix(batch, model, tmp_path):
    x, y = batch
    report = advgrad.evaluate(model, x[:32], y[:32], attacks=["fgsm"], eps=[0, 0.1])
    assert json.loads(advgrad.write_report(report, tmp_path / "r.json").read_text()) == json.loads(
        json.dumps(report.to_dict())
    )
    assert "fgsm" in advgrad.write_report(report, tmp_path / "r.md").read_text()
    assert advgrad.write_report(report, tmp_path / "r.csv").read_text().count("\n") >= 2
    with pytest.raises(UsageError, match="png, pdf, svg, eps, jpg"):
        advgrad.write_report(report, tmp_path / "r.txt")
    assert advgrad.write_report(report, tmp_path / "r.pdf").read_bytes()[:5] == b"%PDF-"
    assert advgrad.write_report(report, tmp_path / "plot", format="svg").read_text().lstrip().startswith("<?xml")


def test_the_readme_python_api_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    section = (ROOT / "README.md").read_text().split("## Python API", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    assert len(blocks[0].strip().splitlines()) <= 4  # a PGD in no more lines than torchattacks' (with its import)
    assert len(blocks[1].strip().splitlines()) <= 3  # a sweep in no more lines than foolbox's
    namespace: dict = {}
    exec("\n".join(blocks), namespace)  # noqa: S102 - the README's own example
    assert_inside(namespace["x_adv"], namespace["x"], 8 / 255, "inf")
    assert list(namespace["report"].attacks) == ["fgsm", "pgd"] and (tmp_path / "report.md").exists()


def test_certify_equals_the_cli_and_evaluate_takes_the_sandwich(batch, model):
    x, y = batch
    report = advgrad.certify(model, x[:48], y[:48], method="crown", eps=[0, 0.01, 0.02], batch_size=16)
    cli = invoke(["certify", "--limit", "48", "--batch-size", "16", "--eps", "0,0.01,0.02", "--json", "-"])
    assert cli.exit_code == 0, cli.stderr
    expected = [p["robust"] for p in json.loads(cli.stdout)["attacks"]["crown"]["points"]]
    assert [p.robust for p in report.attacks["crown"].points] == expected
    assert report.attacks["crown"].kind == "certified" and report.config["certify"] == "crown"
    both = advgrad.evaluate(model, x[:48], y[:48], attacks="pgd", eps=[0, 0.02], certify="crown", steps=5)
    assert both.attacks["crown"].points[1].robust <= both.attacks["pgd"].points[1].robust
    with pytest.raises(UsageError):
        advgrad.evaluate(model, x[:8], y[:8], attacks="pgd", eps=[0, 0.5], norm=2, certify="smoothing")


def test_certify_with_smoothing_counts_abstentions(batch, model):
    x, y = batch
    report = advgrad.certify(model, x[:24], y[:24], method="smoothing", sigma=0.25, samples=100, eps=[0, 0.25])
    curve = report.attacks["smoothing"]
    assert report.norm == "2" and curve.params["sigma"] == 0.25 and curve.abstained is not None
    assert curve.points[0].robust + curve.abstained <= 24
    again = advgrad.certify(model, x[:24], y[:24], method="smoothing", sigma=0.25, samples=100, eps=[0, 0.25])
    assert [p.robust for p in again.attacks["smoothing"].points] == [p.robust for p in curve.points]
    with pytest.raises(UsageError):
        advgrad.certify(model, x[:8], y[:8], method="smoothing", sigma=0)


class _ThreadsSeen(torch.nn.Module):
    """The model, recording torch's intra-op threads at each forward pass."""

    def __init__(self, inner: torch.nn.Module):
        super().__init__()
        self.inner, self.seen = inner, []

    def forward(self, x):
        self.seen.append(torch.get_num_threads())
        return self.inner(x)


@pytest.mark.parametrize("call", ["attack", "evaluate"])
def test_the_api_chooses_threads_as_the_cli_and_puts_the_callers_back(batch, model, call):
    """auto gives the small digits CNN one thread (as `--threads auto`); the caller's setting is in force
    again after the call; threads=None runs on the caller's setting."""
    from advgrad.execution.threads import auto_threads

    x, y = batch[0][:16], batch[1][:16]
    expected = auto_threads(None, model, x, 16, 16, torch.device("cpu")).threads
    assert expected == 1
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        for threads, during in (("auto", expected), (None, 2), (1, 1)):
            seen = _ThreadsSeen(model)
            if call == "attack":
                advgrad.attack(seen, x, y, "fgsm", eps=0.1, threads=threads)
            else:
                advgrad.evaluate(seen, x, y, attacks="fgsm", eps=[0, 0.1], threads=threads)
            probe = 1 if threads == "auto" else 0  # auto counts the model's FLOPs in one pass before choosing
            assert set(seen.seen[probe:]) == {during}, threads
            assert torch.get_num_threads() == 2, threads
    finally:
        torch.set_num_threads(before)


def test_a_pixel_value_eps_warns_as_the_cli_does(batch, model):
    from advgrad.core.errors import AdvgradWarning

    x, y = batch[0][:4], batch[1][:4]
    with pytest.warns(AdvgradWarning, match=r"did you mean 8/255\?"):
        advgrad.attack(model, x, y, "fgsm", eps=8)
    with pytest.warns(AdvgradWarning, match=r"did you mean 16/255\?"):
        advgrad.evaluate(model, x, y, attacks="fgsm", eps=[0, 16])
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", AdvgradWarning)
        advgrad.attack(model, x, y, "fgsm", eps=8 / 255)
