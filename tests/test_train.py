"""Training (advgrad/train/, advgrad/cli/commands/train.py): each method's promise on problems whose answer
is known, resume, outputs and bad input."""

from __future__ import annotations

import json

import pytest
import safetensors.torch
import torch
from helpers import assert_bad_input, invoke, torchscript
from train_models import margin_problem, mlp

from advgrad.attacks import PGDParams, get_attack, run_attack
from advgrad.bounds import certified, margin_bounds
from advgrad.bounds.trainable import TrainableBounds
from advgrad.core.threat import ThreatModel
from advgrad.io.data.sources import TensorSource
from advgrad.train import TrainConfig, Trainer

CPU = torch.device("cpu")


pytestmark = pytest.mark.usefixtures("one_thread")  # training on one thread (conftest)


def _train(method: str, n: int = 256, seed: int = 0, model=None, **config) -> tuple[torch.nn.Module, list]:
    x, y = margin_problem(n, seed)
    source = TensorSource(x, y, name="margin", description="margin problem")
    torch.manual_seed(seed)
    model = model or mlp()
    cfg = TrainConfig(method=method, batch_size=32, val_fraction=0.0, seed=seed, **config)
    trainer = Trainer(model, source, cfg, device=CPU, train_indices=torch.arange(n), val_indices=torch.arange(0))
    log = trainer.run()
    return model.eval(), log


def _robust_accuracy(model, x, y, eps: float) -> float:
    x_adv = run_attack(
        get_attack("pgd"),
        model,
        x,
        y,
        threat=ThreatModel("inf", eps),
        params=PGDParams(steps=20, restarts=2),
        generator=torch.Generator().manual_seed(1),
    )
    with torch.no_grad():
        return float((model(x_adv).argmax(1) == y).float().mean())


def test_pgd_training_is_far_more_robust_than_standard_training_below_the_margin():
    eps = 0.08  # below the problem's L∞ margin of 0.095
    x, y = margin_problem(256, seed=7)  # fresh samples of the same problem
    standard, _ = _train("standard", epochs=20, lr=0.05)
    robust, _ = _train("pgd", epochs=20, lr=0.05, eps=eps, warmup=5, steps=7, eps_scale=1.0)
    with torch.no_grad():
        assert float((standard(x).argmax(1) == y).float().mean()) == 1.0
        assert float((robust(x).argmax(1) == y).float().mean()) == 1.0
    robust_standard, robust_pgd = _robust_accuracy(standard, x, y, eps), _robust_accuracy(robust, x, y, eps)
    assert robust_pgd >= 0.95, robust_pgd
    assert robust_pgd - robust_standard >= 0.4, (robust_standard, robust_pgd)


def test_trades_with_beta_zero_is_standard_training():
    standard, log_s = _train("standard", n=96, epochs=2, lr=0.02)
    trades, log_t = _train("trades", n=96, epochs=2, lr=0.02, eps=0.05, beta=0.0)
    assert [e.loss for e in log_s] == [e.loss for e in log_t]
    for a, b in zip(standard.state_dict().values(), trades.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_trades_loss_is_ce_plus_beta_kl_at_its_example():
    from advgrad.train.methods import Step, trades_example, trades_loss

    torch.manual_seed(0)
    model = mlp().eval()
    x, y = margin_problem(16, 3)
    cfg = TrainConfig(method="trades", eps=0.05, beta=2.0, steps=3)

    def step():
        return Step(model, model, x, y, cfg, 0.05, 1.0, 0.0, torch.Generator().manual_seed(5))

    loss, _ = trades_loss(step())
    clean = model(x)
    x_adv = trades_example(step(), clean)
    assert (x_adv - x).abs().max() <= 0.05 + 1e-7 and 0 <= x_adv.min() and x_adv.max() <= 1
    p, q = torch.softmax(clean, 1), torch.softmax(model(x_adv), 1)
    expected = torch.nn.functional.cross_entropy(clean, y, reduction="none") + 2.0 * (p * (p.log() - q.log())).sum(1)
    assert torch.allclose(loss, expected, atol=1e-6)


def test_ibp_training_raises_certified_accuracy():
    eps = 0.08
    x, y = margin_problem(128, seed=7)
    standard, _ = _train("standard", n=128, epochs=20, lr=0.05)
    trained, log = _train("ibp", n=128, epochs=30, lr=0.05, eps=eps, warmup=10, kappa=0.0)
    assert log[-1].eps == eps
    before = float(certified(standard, x, y, [eps], method="ibp").float().mean())
    after = float(certified(trained, x, y, [eps], method="ibp").float().mean())
    assert after >= 0.95 and after - before >= 0.4, (before, after)


@pytest.mark.parametrize("method", ["ibp", "crown-ibp"])
def test_trainable_bounds_equal_the_certifying_bounds_and_carry_weight_gradients(method):
    torch.manual_seed(0)
    model = mlp(hidden=8, classes=3).double()
    x = torch.rand(5, 1, 1, 2, dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 0, 1])
    low = TrainableBounds(model, x).margin_lower(x, y, 0.03, method=method)
    assert torch.equal(low, margin_bounds(model, x, y, 0.03, method=method))
    finite = torch.isfinite(low)
    (grad,) = torch.autograd.grad(low[finite].sum(), model[1].weight)
    h = 1e-6  # central differences on the first weight; the bound is piecewise smooth in it
    with torch.no_grad():
        for i, j in [(0, 0), (3, 1), (7, 0)]:
            w = model[1].weight
            w[i, j] += h
            up = margin_bounds(model, x, y, 0.03, method=method)[finite].sum()
            w[i, j] -= 2 * h
            down = margin_bounds(model, x, y, 0.03, method=method)[finite].sum()
            w[i, j] += h
            assert abs((up - down) / (2 * h) - grad[i, j]) <= 1e-5 * (1 + abs(grad[i, j])), (i, j)


@pytest.mark.parametrize("schedule", ["cosine", "cyclic"])
def test_resumed_training_equals_the_uninterrupted_run(tmp_path, schedule):
    kwargs = dict(epochs=3, lr=0.02, eps=0.05, schedule=schedule)
    x, y = margin_problem(96, 0)
    source = TensorSource(x, y, name="margin", description="margin problem")

    def trainer():
        torch.manual_seed(0)
        model = mlp(dropout=0.2)  # dropout draws from the global RNG: the checkpoint keeps it
        cfg = TrainConfig(method="pgd", batch_size=32, val_fraction=0.0, **kwargs)
        return Trainer(model, source, cfg, device=CPU, train_indices=torch.arange(96), val_indices=torch.arange(0))

    whole = trainer()
    whole.run()
    torch.manual_seed(123)  # the global RNG moves on in between

    def stop(entry):
        if entry.epoch == 1:
            raise KeyboardInterrupt

    first = trainer()
    with pytest.raises(KeyboardInterrupt):
        first.run(checkpoint=tmp_path / "ckpt", on_epoch=stop)
    torch.manual_seed(456)
    resumed = trainer()
    resumed.load(tmp_path / "ckpt")
    assert resumed.epoch == 1
    resumed.run(checkpoint=tmp_path / "ckpt")
    for a, b in zip(whole.module.state_dict().values(), resumed.module.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert [e.loss for e in whole.log] == [e.loss for e in resumed.log]
    assert [e.lr for e in whole.log] == [e.lr for e in resumed.log]


def test_the_cyclic_rate_rises_linearly_to_the_peak_at_two_fifths_and_falls_to_zero_per_batch():
    """Wong et al. 2020: lr(t) = peak · t/(0.4·T) up to 0.4·T, then peak · (T − t)/(0.6·T)."""
    x, y = margin_problem(40, 0)
    source = TensorSource(x, y, name="margin", description="margin problem")
    cfg = TrainConfig(method="standard", epochs=5, batch_size=10, lr=0.1, schedule="cyclic", val_fraction=0.0)
    trainer = Trainer(mlp(), source, cfg, device=CPU, train_indices=torch.arange(40), val_indices=torch.arange(0))
    seen = []
    trainer.run(on_batch=lambda *_: seen.append(trainer.optimizer.param_groups[0]["lr"]))
    updates = 5 * 4  # the rate after update t (1-based) is the one update t + 1 uses
    expected = [0.1 * min(t / (0.4 * updates), (updates - t) / (0.6 * updates)) for t in range(1, updates + 1)]
    assert seen == pytest.approx(expected, abs=1e-12)
    assert [e.lr for e in trainer.log] == pytest.approx([expected[4 * k - 1] if k else 0.0 for k in range(5)])


# ------------------------------------------------------------------------ the command line


@pytest.fixture
def margin_file(tmp_path):
    x, y = margin_problem(120, 0)
    path = tmp_path / "margin.pt"
    torch.save({"x": x, "y": y}, path)
    return path


def test_train_writes_weights_program_log_and_checkpoint_and_prints_the_report(tmp_path, margin_file):
    from safetensors.torch import load_file

    out, program, log = tmp_path / "w.safetensors", tmp_path / "m.pt2", tmp_path / "log.json"
    args = ["train", "--model", "train_models:mlp", "--data", margin_file, "--method", "pgd", "--eps", "0.05"]
    args += ["--epochs", "2", "--batch-size", "32", "--lr", "0.05", "--steps", "3", "--device", "cpu"]
    args += ["--val-fraction", "0.1"]  # pgd's recipe holds out nothing
    result = invoke([*args, "--out", out, "--export", program, "--log", log])
    assert result.exit_code == 0, (result.stderr, result.exception)
    assert "epoch 2/2" in result.stderr and "val pgd-10@0.05" in result.stderr
    assert "clean accuracy" in result.stdout and "pgd" in result.stdout  # the eval report
    document = json.loads(log.read_text())
    assert document["schema"] == "advgrad.train-log" and [e["epoch"] for e in document["epochs"]] == [1, 2]
    entry = document["epochs"][-1]
    for key in ("loss", "train_accuracy", "val_accuracy", "val_robust_accuracy", "seconds"):
        assert isinstance(entry[key], float)
    state = load_file(str(out))
    model = mlp()
    model.load_state_dict(state)
    checkpoint = torch.load(str(out) + ".ckpt", weights_only=True)
    assert checkpoint["epoch"] == 2
    for key, value in model.state_dict().items():
        assert torch.equal(checkpoint["model"][key], value)
    report = invoke(
        ["eval", "--model", program, "--data", margin_file, "--eps", "0,0.05", "--json", tmp_path / "r.json"]
    )
    assert report.exit_code == 0, report.stderr
    x, y = margin_problem(120, 0)
    with torch.no_grad():
        expected = float((model.eval()(x).argmax(1) == y).float().mean())
    assert json.loads((tmp_path / "r.json").read_text())["clean_accuracy"] == pytest.approx(expected)
    certify = invoke(["certify", "--model", program, "--data", margin_file, "--method", "ibp", "--eps", "0.01"])
    assert certify.exit_code == 0, certify.stderr  # the exported graph module keeps its mode (it refuses train())


def test_an_interrupted_train_resumes_to_the_uninterrupted_weights(tmp_path, margin_file, monkeypatch):
    from safetensors.torch import load_file

    from advgrad.train import loop

    args = ["train", "--model", "train_models:mlp", "--data", margin_file, "--method", "noise", "--sigma", "0.1"]
    args += ["--epochs", "3", "--batch-size", "32", "--lr", "0.05", "--device", "cpu", "--no-report"]
    whole = invoke([*args, "--out", tmp_path / "whole.safetensors"])
    assert whole.exit_code == 0, whole.stderr
    original = loop.Trainer._epoch

    def interrupted(self, epoch, on_batch):
        if epoch == 2:
            raise KeyboardInterrupt
        return original(self, epoch, on_batch)

    monkeypatch.setattr(loop.Trainer, "_epoch", interrupted)
    stopped = invoke([*args, "--out", tmp_path / "part.safetensors"])
    assert stopped.exit_code == 130 and "2 finished epochs" in stopped.stderr
    assert not (tmp_path / "part.safetensors").exists()
    monkeypatch.setattr(loop.Trainer, "_epoch", original)
    resumed = invoke([*args, "--out", tmp_path / "part.safetensors", "--resume"])
    assert resumed.exit_code == 0 and "2 of 3 epochs done" in resumed.stderr, resumed.stderr
    a, b = load_file(str(tmp_path / "whole.safetensors")), load_file(str(tmp_path / "part.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    other = invoke([*args, "--lr", "0.01", "--out", tmp_path / "part.safetensors", "--resume"])
    assert other.exit_code == 2 and other.stdout == ""
    assert other.stderr.strip().splitlines()[-1].startswith("error: the checkpoint") and "(lr differs)" in other.stderr


def test_a_rerun_continues_its_own_checkpoint_and_never_overwrites_another(tmp_path, margin_file, monkeypatch):
    """Issue 21, item 4: after an interruption the same command continues from the checkpoint
    (no --resume needed); a changed run, changed data or a file that is not a checkpoint is refused
    with one line naming --resume and --fresh, and the file is left as it was; --fresh replaces it."""
    from advgrad.train import loop

    out = tmp_path / "w.safetensors"
    ckpt = tmp_path / "w.safetensors.ckpt"
    args = ["train", "--model", "train_models:mlp", "--data", margin_file, "--method", "noise", "--sigma", "0.1"]
    args += ["--epochs", "2", "--batch-size", "32", "--lr", "0.05", "--device", "cpu", "--no-report", "--out", out]
    original = loop.Trainer._epoch

    def interrupted(self, epoch, on_batch):
        if epoch == 1:
            raise KeyboardInterrupt
        return original(self, epoch, on_batch)

    monkeypatch.setattr(loop.Trainer, "_epoch", interrupted)
    stopped = invoke(args)
    assert stopped.exit_code == 130 and "run the same command again" in stopped.stderr, stopped.stderr
    monkeypatch.setattr(loop.Trainer, "_epoch", original)
    saved = ckpt.read_bytes()
    for extra, why in ((["--lr", "0.01"], "(lr differs)"), (["--epochs", "3"], "(epochs differs)")):
        text = assert_bad_input(invoke([*args, *extra]))
        assert why in text and "--resume" in text and "--fresh" in text, text
        assert ckpt.read_bytes() == saved and not out.exists()
    resumed = invoke(args)  # the same command: it continues after epoch 1
    assert resumed.exit_code == 0 and "1 of 2 epochs done" in resumed.stderr, resumed.stderr
    assert "epoch 1/2" not in resumed.stderr and "epoch 2/2" in resumed.stderr
    assert torch.load(ckpt, weights_only=True)["epoch"] == 2
    x, y = margin_problem(120, 0)
    torch.save({"x": x, "y": 1 - y}, margin_file)  # other data at the same path
    assert "(data file differs)" in assert_bad_input(invoke(args))
    fresh = invoke([*args, "--fresh", "--lr", "0.01"])
    assert fresh.exit_code == 0 and "epoch 1/2" in fresh.stderr, fresh.stderr
    assert torch.load(ckpt, weights_only=True)["config"]["lr"] == 0.01
    foreign = tmp_path / "notes.txt"
    foreign.write_text("not a checkpoint")
    text = assert_bad_input(invoke([*args, "--checkpoint", foreign]))
    assert "not a readable training checkpoint" in text and "--fresh" in text and "--resume" in text, text
    assert foreign.read_text() == "not a checkpoint"
    missing = tmp_path / "none.ckpt"
    assert "no checkpoint at" in assert_bad_input(invoke([*args, "--checkpoint", missing, "--resume"]))
    assert "give one of them" in assert_bad_input(invoke([*args, "--resume", "--fresh"]))
    assert not missing.exists()


def test_a_checkpoint_that_no_longer_fits_is_refused_and_a_special_file_is_never_read(tmp_path, margin_file):
    out, ckpt = tmp_path / "w.safetensors", tmp_path / "w.safetensors.ckpt"
    args = ["train", "--model", "train_models:mlp", "--data", margin_file, "--epochs", "1", "--batch-size", "32"]
    args += ["--device", "cpu", "--no-report", "--out", out]
    assert invoke(args).exit_code == 0
    state = torch.load(ckpt, weights_only=True)
    state["model"] = {k: v[:1] for k, v in state["model"].items()}  # as if the model's code had changed
    torch.save(state, ckpt)
    refused = invoke(args)
    assert refused.exit_code == 2 and "Traceback" not in refused.stderr
    last = refused.stderr.strip().splitlines()[-1]
    assert last.startswith("error: the checkpoint") and "does not fit this run" in last and "--fresh" in last, last
    for _ in range(2):  # /dev/null takes every checkpoint and holds none: nothing to resume, nothing refused
        assert invoke([*args, "--checkpoint", "/dev/null"]).exit_code == 0


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--method", "adversarial"], "unknown training --method"),
        (["--epochs", "3", "--warmup", "5"], "--warmup of 5 epochs is longer"),
        (["--method", "pgd"], "give --eps > 0"),
        (["--out", "w.pt"], ".safetensors"),
        (["--resume"], "--resume needs a checkpoint"),
    ],
)
def test_bad_training_options_exit_2_with_one_line(extra, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = invoke(["train", "--limit", "20", *extra])
    text = assert_bad_input(result)
    assert message in text, text


def test_a_torchscript_model_cannot_be_trained(tmp_path):
    path = tmp_path / "model.ts"
    torchscript(mlp(), path)
    text = assert_bad_input(invoke(["train", "--model", path, "--limit", "20"]))
    assert "TorchScript model, which cannot be trained" in text


@pytest.mark.slow
def test_two_gloo_processes_reach_the_weights_of_one_process(tmp_path, margin_file):
    import os
    import subprocess
    import sys
    from pathlib import Path

    from safetensors.torch import load_file

    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([str(root), str(root / "tests")])}
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        env.pop(key, None)
    # 108 training samples in global batches of 32: the last batch (12) is split 6 + 6
    args = ["train", "--model", "train_models:mlp", "--data", str(margin_file), "--epochs", "2", "--batch-size", "32"]
    args += ["--lr", "0.05", "--device", "cpu", "--threads", "1", "--no-report"]
    single = subprocess.run(
        [sys.executable, "-m", "advgrad", *args, "--out", str(tmp_path / "one.safetensors")],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert single.returncode == 0, single.stderr
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "advgrad"]
    launched = subprocess.run(
        [*launcher, *args, "--out", str(tmp_path / "two.safetensors")],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert launched.returncode == 0, launched.stderr
    assert launched.stderr.count("epoch 2/2") == 1 and "distributed: 2 processes" in launched.stderr
    one, two = load_file(str(tmp_path / "one.safetensors")), load_file(str(tmp_path / "two.safetensors"))
    assert one.keys() == two.keys()
    for key in one:
        assert torch.allclose(one[key], two[key], atol=1e-5, rtol=1e-5), key
    assert not all(torch.equal(one[k], mlp().state_dict()[k]) for k in one)  # it did train


def test_a_config_file_sets_training_options_and_the_command_line_overrides_it(tmp_path, margin_file):
    config = tmp_path / "train.toml"
    config.write_text('method = "noise"\nsigma = 0.1\nepochs = 1\nlr = 0.05\nmodel = "train_models:mlp"\n')
    log = tmp_path / "log.json"
    args = ["train", "--config", config, "--data", margin_file, "--epochs", "2", "--no-report", "--log", log]
    result = invoke([*args, "--device", "cpu"])
    assert result.exit_code == 0, result.stderr
    document = json.loads(log.read_text())
    assert document["config"]["method"] == "noise" and document["config"]["sigma"] == 0.1
    assert len(document["epochs"]) == 2


def test_the_robust_default_model_resists_pgd_where_the_standard_one_does_not():
    from advgrad.io.data.load_data import load_default
    from advgrad.io.model.load_model import load_model

    test = load_default("test")
    x, y = test.fetch(torch.arange(len(test)))
    robust, standard = load_model("default-robust"), load_model()
    assert "adversarially trained" in robust.description
    with torch.no_grad():  # the target: clean ≥ 99% of the 450 test digits
        assert float((robust.module(x).argmax(1) == y).float().mean()) >= 0.99
    x, y = x[:150], y[:150]
    robust_pgd, standard_pgd = _robust_accuracy(robust.module, x, y, 0.1), _robust_accuracy(standard.module, x, y, 0.1)
    assert robust_pgd >= 0.8 and standard_pgd <= 0.5, (robust_pgd, standard_pgd)


def test_a_diverging_run_stops_with_one_line_and_writes_no_weights(tmp_path, margin_file):
    out = tmp_path / "w.safetensors"
    args = ["train", "--model", "train_models:mlp", "--data", margin_file, "--lr", "1e30", "--epochs", "2"]
    result = invoke([*args, "--device", "cpu", "--out", out])
    assert result.exit_code == 2 and result.stdout == "", result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("error: training diverged") and "--lr" in result.stderr
    assert not out.exists()


def test_what_train_out_wrote_is_evaluated_by_its_architecture_name(tmp_path):
    """`train --out w.safetensors` without ε ends with a line of clean accuracy (it crashed there), and
    `--model digits-cnn --weights w.safetensors` evaluates those weights, not the embedded ones: the
    clean accuracy of eval equals the one of the saved module on the same samples."""
    weights = tmp_path / "w.safetensors"
    result = invoke(["train", "--limit", "60", "--epochs", "1", "--val-fraction", "0.5", "--out", weights])
    assert result.exit_code == 0, (result.stdout, result.stderr)
    assert "clean accuracy" in result.stdout
    args = ["--weights", weights, "--limit", "40", "--attack", "fgsm", "--eps", "0", "--json", "-"]
    report = json.loads(invoke(["eval", "--model", "digits-cnn", *args]).stdout)
    from advgrad.io.data.load_data import load_default
    from advgrad.models import DigitsCNN

    module = DigitsCNN()
    module.load_state_dict(safetensors.torch.load_file(weights))
    x, y = next(load_default().batches(40))
    with torch.no_grad():
        assert report["clean_correct"] == int((module.eval()(x).argmax(1) == y).sum())
    assert "w.safetensors" in report["model"]["description"]
    assert_bad_input(invoke(["eval", "--model", "cifar-resnet", "--limit", "4"]), "ships without weights")


def test_the_certified_default_model_is_certified_where_the_standard_one_is_not():
    from advgrad.io.data.load_data import load_default
    from advgrad.io.model.load_model import load_model

    x, y = load_default("test").fetch(torch.arange(100))
    model, standard = load_model("default-certified"), load_model()
    assert "certified robustness" in model.description
    ours = float(certified(model.module, x, y, [0.1], method="crown").float().mean())
    theirs = float(certified(standard.module, x, y, [0.1], method="crown").float().mean())
    assert ours >= 0.6 and theirs == 0.0, (ours, theirs)


def test_a_model_argument_the_architecture_refuses_is_one_line():
    result = invoke(["train", "--model", "digits-cnn", "--model-arg", "size=7", "--epochs", "1", "--no-report"])
    assert "size must be an even number" in assert_bad_input(result)


def test_data_of_a_shape_the_model_does_not_take_is_one_line():
    # a DigitsCNN for 16×16 inputs against the embedded 8×8 digits
    result = invoke(["train", "--model", "digits-cnn", "--model-arg", "size=16", "--epochs", "1", "--no-report"])
    assert "the model failed on inputs of shape 8×1×8×8" in assert_bad_input(result)
