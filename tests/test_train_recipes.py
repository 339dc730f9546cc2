"""Recipes (advgrad/train/recipes.py), the catastrophic-overfitting guard and the newer training
methods (advgrad/train/methods.py): what a recipe fills, what overrides it, where it is kept."""

from __future__ import annotations

import json
import math

import pytest
import torch
from helpers import assert_bad_input, invoke
from train_models import margin_problem, mlp

from advgrad.attacks import PGDParams, get_attack, run_attack
from advgrad.bounds import margin_bounds
from advgrad.core.threat import ThreatModel
from advgrad.io.data.sources import TensorSource
from advgrad.train import TrainConfig, Trainer
from advgrad.train.loop import COLLAPSE_DROP, COLLAPSE_GAP, CollapseGuard, EpochLog
from advgrad.train.recipes import DEFAULT_RECIPE, RECIPES
from advgrad.train.train_config import METHODS, RECIPE_FIELDS

CPU = torch.device("cpu")


pytestmark = pytest.mark.usefixtures("one_thread")  # training on one thread (conftest)


def test_every_method_has_a_recipe_and_resolving_fills_every_option():
    assert set(DEFAULT_RECIPE) == set(METHODS)
    for method in METHODS:
        config = TrainConfig(method=method, eps=0.0 if method in ("standard", "noise") else 0.1).resolve(1000)
        assert config.resolved and config.recipe == DEFAULT_RECIPE[method]
        assert all(getattr(config, n) is not None for n in RECIPE_FIELDS if n != "step_size"), method


@pytest.mark.parametrize("samples", [10, 1000, 50_000])
def test_epochs_scale_with_the_data_as_the_recipe_says(samples):
    recipe = RECIPES["madry-digits"]
    config = TrainConfig(method="pgd", eps=0.1).resolve(samples)
    batches = math.ceil(samples / recipe.batch_size)
    expected = min(recipe.max_epochs, max(recipe.epochs, math.ceil(recipe.updates / batches)))
    assert config.epochs == expected and recipe.epochs <= config.epochs <= recipe.max_epochs
    assert config.warmup == round(recipe.warmup * expected)


def test_the_held_out_share_is_the_recipes_unless_given():
    assert TrainConfig(method="pgd", eps=0.1).held_out == RECIPES["madry-digits"].val_fraction == 0.0
    assert TrainConfig(method="pgd", eps=0.1).resolve(1000).val_fraction == 0.0
    assert TrainConfig(method="pgd", eps=0.1, val_fraction=0.2).resolve(1000).val_fraction == 0.2
    assert TrainConfig(method="pgd", eps=0.1, recipe="pgd-7").held_out == RECIPES["pgd-7"].val_fraction
    for method in ("fgsm", "fgsm-rs", "n-fgsm", "gradalign"):  # the guard needs validation samples
        assert TrainConfig(method=method, eps=0.1).held_out > 0, method


def test_an_explicit_option_overrides_its_field_and_the_rest_stays_the_recipes():
    recipe = RECIPES["madry-digits"]
    config = TrainConfig(method="pgd", eps=0.1, lr=0.5, steps=3, epochs=4, warmup=1).resolve(1000)
    assert (config.lr, config.steps, config.epochs, config.warmup) == (0.5, 3, 4, 1)
    assert (config.optimizer, config.batch_size, config.eps_scale) == (
        recipe.optimizer,
        recipe.batch_size,
        recipe.eps_scale,
    )
    other = TrainConfig(method="pgd", eps=0.1, recipe="pgd-7").resolve(1000)
    assert other.recipe == "pgd-7" and other.steps == RECIPES["pgd-7"].steps
    assert TrainConfig(recipe="sabr", eps=0.1).method == "sabr"  # a recipe names its method


@pytest.mark.slow
def test_the_recipe_is_printed_logged_and_kept_in_both_written_models(tmp_path):
    x, y = margin_problem(120, 0)
    data = tmp_path / "margin.pt"
    torch.save({"x": x, "y": y}, data)
    out, program, log = tmp_path / "w.safetensors", tmp_path / "m.pt2", tmp_path / "log.json"
    args = ["train", "--model", "train_models:mlp", "--data", data, "--method", "pgd", "--eps", "0.05"]
    args += ["--epochs", "1", "--steps", "2", "--device", "cpu", "--no-report"]
    result = invoke([*args, "--out", out, "--export", program, "--log", log])
    assert result.exit_code == 0, result.stderr
    assert "recipe madry-digits (" in result.stderr and "given: epochs, steps" in result.stderr
    document = json.loads(log.read_text())
    assert document["recipe"]["name"] == "madry-digits" and document["config"]["recipe"] == "madry-digits"
    assert document["config"]["eps_scale"] == RECIPES["madry-digits"].eps_scale
    from safetensors import safe_open

    with safe_open(str(out), "pt") as f:
        kept = json.loads(f.metadata()["advgrad.train"])
    assert kept["config"] == document["config"]
    extra = {"advgrad.train": ""}
    torch.export.load(str(program), extra_files=extra)
    assert json.loads(extra["advgrad.train"])["config"] == document["config"]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--recipe", "nonsense"], "unknown --recipe"),
        (["--method", "pgd", "--eps", "0.1", "--recipe", "sabr"], "is for --method sabr"),
        (["--method", "mtl-ibp", "--alpha", "2", "--eps", "0.1"], "--alpha"),
    ],
)
def test_bad_recipes_exit_2_with_one_line(extra, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    text = assert_bad_input(invoke(["train", "--limit", "20", "--epochs", "1", *extra]))
    assert message in text, text


def _entry(epoch: int, robust: float, fgsm: float | None = None) -> EpochLog:
    return EpochLog(epoch, 0.1, 0.1, 1.0, 0.5, 0.9, robust, None, 0.0, 10, val_fgsm_accuracy=fgsm)


def test_the_guard_rolls_back_to_the_best_epoch_at_a_collapse_and_says_what_to_change():
    model, guard, config = mlp(), CollapseGuard(), TrainConfig(method="fgsm", eps=0.1)
    best = {k: v.clone() for k, v in model.state_dict().items()}
    assert guard.watch(_entry(1, 0.5), model, config) is None
    assert guard.watch(_entry(2, 0.6), model, config) is None
    best = {k: v.clone() for k, v in model.state_dict().items()}
    for p in model.parameters():
        p.data.add_(1.0)
    assert guard.watch(_entry(3, 0.6 - COLLAPSE_DROP + 0.01), model, config) is None  # a dip, not a collapse
    line = guard.watch(_entry(4, 0.6 - COLLAPSE_DROP - 0.01), model, config)
    assert line is not None and "catastrophic overfitting in epoch 4" in line and "epoch 2" in line
    assert "n-fgsm" in line and "\n" not in line
    assert all(torch.equal(v, best[k]) for k, v in model.state_dict().items())


def test_the_guard_calls_a_gap_between_fgsm_and_pgd_a_collapse_after_the_warm_up_even_if_pgd_never_fell():
    """FGSM accuracy more than COLLAPSE_GAP above PGD-10's: robust to its own single step only. The
    best epoch is the best by PGD-10 among the epochs without the gap."""
    model, guard = mlp(), CollapseGuard()
    config = TrainConfig(method="fgsm", eps=0.1, warmup=2, epochs=10)
    assert guard.watch(_entry(1, 0.10, 0.10 + COLLAPSE_GAP + 0.05), model, config) is None  # in the warm-up
    best = {k: v.clone() for k, v in model.state_dict().items()}
    assert guard.watch(_entry(2, 0.20, 0.20 + COLLAPSE_GAP - 0.01), model, config) is None  # under the threshold
    for p in model.parameters():
        p.data.add_(1.0)
    line = guard.watch(_entry(3, 0.25, 0.25 + COLLAPSE_GAP + 0.01), model, config)  # PGD-10 rose, yet a collapse
    assert line is not None and "catastrophic overfitting in epoch 3" in line and "epoch 2" in line
    assert f"more than {100 * COLLAPSE_GAP:.0f} points apart" in line and "\n" not in line
    assert all(torch.equal(v, best[k]) for k, v in model.state_dict().items())


def test_a_gap_in_the_first_epoch_keeps_the_weights_and_says_there_was_nothing_to_go_back_to():
    model, guard = mlp(), CollapseGuard()
    line = guard.watch(_entry(1, 0.0, COLLAPSE_GAP + 0.1), model, TrainConfig(method="fgsm", eps=0.1, warmup=0))
    assert line is not None and "no earlier epoch" in line


def _fit(method: str, **options):
    x, y = margin_problem(128, 0)
    source = TensorSource(x, y, name="margin", description="margin problem")
    torch.manual_seed(0)
    model = mlp()
    options.setdefault("schedule", "cosine")  # the rate 0.05 is tuned for it (fgsm-rs's recipe is cyclic)
    config = TrainConfig(method=method, eps=0.05, epochs=12, batch_size=32, lr=0.05, val_fraction=0.25, **options)
    trainer = Trainer(
        model, source, config, device=CPU, train_indices=torch.arange(96), val_indices=torch.arange(96, 128)
    )
    trainer.run()
    return model.eval(), trainer, x[96:], y[96:]


def _pgd_accuracy(model, x, y, eps: float) -> float:
    threat, params = ThreatModel("inf", eps), PGDParams(steps=20, restarts=2)
    x_adv = run_attack(get_attack("pgd"), model, x, y, threat=threat, params=params, generator=torch.Generator())
    with torch.no_grad():
        return float((model(x_adv).argmax(1) == y).float().mean())


@pytest.mark.parametrize("method", ["fgsm", "fgsm-rs", "n-fgsm", "gradalign"])
def test_single_step_methods_end_robust_on_the_margin_problem_with_the_guard(method):
    """ε = 0.05 is below the margin (0.095): each method reaches full robustness on the held-out
    samples; where the last epochs lose it, the guard stops the run and keeps the robust weights."""
    model, trainer, x, y = _fit(method)
    assert _pgd_accuracy(model, x, y, 0.05) == 1.0, (trainer.log[-1], trainer.collapse)
    assert float((model(x).argmax(1) == y).float().mean()) == 1.0


@pytest.mark.parametrize("method", ["mtl-ibp", "sabr"])
def test_mtl_ibp_and_sabr_certify_the_margin_problem(method):
    model, trainer, x, y = _fit(method, warmup=2)
    low = margin_bounds(model, x, y, 0.05, method="ibp")
    certified = float((low.min(dim=1).values > 0).float().mean())
    assert certified == 1.0, certified


@pytest.mark.slow
def test_the_cifar_recipe_trains_a_cifar_resnet_on_random_images(tmp_path):
    """A smoke test of the 3×32×32 recipe: SGD, step schedule, PGD-10 of ε/4 on 8 random images."""
    g = torch.Generator().manual_seed(0)
    data = tmp_path / "random.pt"
    torch.save({"x": torch.rand(8, 3, 32, 32, generator=g), "y": torch.randint(0, 10, (8,), generator=g)}, data)
    args = ["train", "--recipe", "cifar-pgd", "--eps", "8/255", "--model", "cifar-resnet", "--model-arg", "width=4"]
    args += [
        "--data",
        data,
        "--epochs",
        "1",
        "--steps",
        "2",
        "--val-fraction",
        "0",
        "--device",
        "cpu",
        "--log",
        tmp_path / "l.json",
    ]
    result = invoke(args)
    assert result.exit_code == 0, result.stderr
    assert "recipe cifar-pgd" in result.stderr and "sgd lr 0.1 momentum 0.9" in result.stderr
    config = json.loads((tmp_path / "l.json").read_text())["config"]
    assert config["method"] == "pgd" and config["step_size"] == pytest.approx(0.25 * 8 / 255)


def test_the_weight_average_follows_its_formula():
    """w̄ ← d·w̄ + (1 − d)·w with d = min(decay, (1 + t)/(10 + t)): 0.1 at the first step."""
    from advgrad.train.loop import WeightAverage

    model = torch.nn.Linear(2, 1)
    w0 = model.weight.detach().clone()
    average = WeightAverage(model, 0.9)
    model.weight.data.add_(1.0)
    average.update(model)
    assert torch.allclose(average.values["weight"], 0.1 * w0 + 0.9 * (w0 + 1))
    before = average.values["weight"].clone()
    model.weight.data.add_(1.0)
    average.update(model)  # t = 1: d = 2/11
    assert torch.allclose(average.values["weight"], 2 / 11 * before + 9 / 11 * (w0 + 2))
    with average.swapped(model):
        assert torch.equal(model.weight, average.values["weight"])
    assert torch.equal(model.weight, w0 + 2)


def _upsampled_digits_run(method: str, epochs: int):
    """``method`` at ε = 0.2 on the embedded digits' train split upsampled to 16×16 (bilinear, as
    scripts/upsample_digits.py writes them), the digits CNN for that size, Adam with a cyclic rate
    peaking at 5e-3, guard on; returns the trainer and each epoch's weights as on_epoch saw them."""
    import torch.nn.functional as F

    from advgrad.io.data.load_data import load_default
    from advgrad.models import DigitsCNN
    from advgrad.train.loop import split_indices

    digits = load_default("train")
    x = F.interpolate(digits.x, size=(16, 16), mode="bilinear", align_corners=False).clamp(0, 1)
    source = TensorSource(x, digits.y, name="digits16", description="digits at 16×16")
    train, val = split_indices(torch.arange(len(source)), 0.1, 0)
    torch.manual_seed(0)
    model = DigitsCNN(size=16)
    config = TrainConfig(
        method=method, eps=0.2, epochs=epochs, batch_size=64, lr=5e-3, schedule="cyclic", warmup=0, val_fraction=0.1
    )
    trainer = Trainer(model, source, config, device=CPU, train_indices=train, val_indices=val)
    weights = {}
    trainer.run(on_epoch=lambda e: weights.setdefault(e.epoch, {k: v.clone() for k, v in model.state_dict().items()}))
    return trainer, weights


@pytest.mark.slow
def test_fgsm_collapses_on_the_upsampled_digits_and_the_guard_keeps_the_best_epoch_while_n_fgsm_does_not():
    """A real catastrophic overfitting (docs/train.md): plain FGSM at ε = 0.2 on 16×16 digits becomes
    robust to its own step and not to PGD-10; the guard stops it and puts back the best epoch's
    weights. N-FGSM with the same ε, epochs, rate and model runs to the end and stays more robust."""
    fgsm, weights = _upsampled_digits_run("fgsm", 16)
    assert fgsm.collapse is not None and "catastrophic overfitting" in fgsm.collapse, fgsm.log[-1]
    last = fgsm.log[-1]
    assert last.epoch < 16 and last.val_fgsm_accuracy - last.val_robust_accuracy > COLLAPSE_GAP
    healthy = [e for e in fgsm.log[:-1] if e.val_fgsm_accuracy - e.val_robust_accuracy <= COLLAPSE_GAP]
    best = max(healthy, key=lambda e: (e.val_robust_accuracy, e.epoch))  # the guard keeps the latest of ties
    assert f"kept the weights of epoch {best.epoch}" in fgsm.collapse
    assert all(torch.equal(v, weights[best.epoch][k]) for k, v in fgsm.module.state_dict().items())
    assert fgsm.validate(0)[1] == best.val_robust_accuracy  # the kept weights validate as that epoch did
    n_fgsm, _ = _upsampled_digits_run("n-fgsm", 16)
    assert n_fgsm.collapse is None and len(n_fgsm.log) == 16
    assert n_fgsm.log[-1].val_robust_accuracy >= last.val_robust_accuracy + 0.1, (n_fgsm.log[-1], last)
