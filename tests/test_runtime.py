"""How the model runs (advgrad/execution/runtime.py): autocast keeps the perturbation in float32 and inside
the ε-ball, channels-last changes the layout and not the numbers, torch.compile gives the eager
adversarial examples, and every unsupported choice is one clear line."""

from __future__ import annotations

import json
import os

import pytest
import torch
import typer
from helpers import assert_bad_input, invoke, tiny_net
from torch import nn

from advgrad.attacks import PGDParams, get_attack, run_attack
from advgrad.cli.console import handle_errors
from advgrad.core.errors import UsageError
from advgrad.core.gradient import input_gradient
from advgrad.core.threat import ThreatModel
from advgrad.execution.runtime import (
    RuntimeModel,
    RuntimeOptions,
    check_precision,
    compile_unavailable,
    has_conv2d,
    is_compile_error,
    parse_precision,
    prepare_model,
)
from advgrad.io.model.load_model import load_default_model

CPU = torch.device("cpu")


def digits(n: int = 16):
    from advgrad.io.data.load_data import load_default

    x, y = load_default().fetch(torch.arange(n))
    return x, y


class RecordDtypes(nn.Module):
    """The digits CNN, remembering the dtype of its first convolution's output."""

    def __init__(self):
        super().__init__()
        self.net = load_default_model()
        self.seen: list[torch.dtype] = []

    def forward(self, x):
        out = self.net.features[0](x)
        self.seen.append(out.dtype)
        return self.net.classifier(self.net.features[1:](out))


# ------------------------------------------------------------------------------ autocast


def test_bf16_autocast_runs_the_model_in_bf16_but_returns_float32_logits():
    model = RecordDtypes().eval()
    wrapped = RuntimeModel(model, torch.bfloat16)
    x, _ = digits()
    with torch.no_grad():
        low, full = wrapped(x), model(x)
    assert model.seen == [torch.bfloat16, torch.float32]  # the convolution ran in bf16, without the wrapper in fp32
    assert low.dtype == torch.float32
    assert not torch.equal(low, full)  # lower precision changed the numbers
    assert (low - full).abs().max() < 0.1 * full.abs().max()  # but not the function


def test_autocast_keeps_the_gradient_and_the_perturbation_float32_inside_the_ball():
    x, y = digits(32)
    wrapped = RuntimeModel(load_default_model(), torch.bfloat16)
    grad, _, _ = input_gradient(wrapped, x, y)
    assert grad.dtype == torch.float32
    eps, alpha = 0.1, 0.0173  # neither is a bf16 number: a bf16 perturbation would round them
    threat = ThreatModel("inf", eps)
    spec = get_attack("pgd")
    params = PGDParams(steps=7, step_size=alpha).resolve(threat)
    gen = torch.Generator().manual_seed(0)
    # the attack function itself, without run_attack's final clip: the loop must keep the budget
    x_adv = spec.function(wrapped, x, y, threat=threat, params=params, generator=gen)
    delta = x_adv - x
    assert x_adv.dtype == torch.float32
    assert float(delta.abs().max()) <= eps + 1e-7
    assert float(x_adv.min()) >= 0 and float(x_adv.max()) <= 1
    assert bool(threat.contains(x_adv, x).all())
    interior = (delta.abs() > 0) & (delta.abs() < eps - 1e-6)
    assert interior.any()
    rounded = delta.to(torch.bfloat16).float()
    assert not torch.equal(delta[interior], rounded[interior])  # values bf16 cannot hold: fp32 arithmetic
    fooled = wrapped(x_adv).argmax(1) != y
    assert fooled.float().mean() > 0.3  # the attack still works through the bf16 model


def test_fp16_on_cpu_runs_or_is_a_clear_usage_error():
    try:
        check_precision("fp16", CPU)
    except UsageError as exc:
        assert "fp16" in str(exc)
        return
    x, y = digits(8)
    with torch.no_grad():
        out = RuntimeModel(load_default_model(), torch.float16)(x)
    assert out.dtype == torch.float32 and torch.isfinite(out).all()


def test_precision_names():
    assert (
        parse_precision("BF16") == "bf16" and parse_precision("half") == "fp16" and parse_precision("float32") == "fp32"
    )
    with pytest.raises(UsageError, match="fp32, bf16 or fp16"):
        parse_precision("fp8")
    assert RuntimeOptions("bf16").dtype == torch.bfloat16 and RuntimeOptions().dtype is None


def test_fp32_without_other_options_leaves_the_model_untouched():
    model = load_default_model()
    x, _ = digits(4)
    same, notes = prepare_model(model, RuntimeOptions(), CPU, x)
    assert same is model and notes == []


# ------------------------------------------------------------------------------ channels-last


def test_channels_last_converts_the_inputs_the_model_sees_and_not_the_numbers():
    model, reference = tiny_net(channels=3).eval(), tiny_net(channels=3).eval()
    layouts = []
    model.conv.register_forward_pre_hook(
        lambda m, args: layouts.append(args[0].is_contiguous(memory_format=torch.channels_last))
    )
    x = torch.rand(6, 3, 5, 5, generator=torch.Generator().manual_seed(1))
    y = torch.arange(6) % 3
    wrapped, notes = prepare_model(model, RuntimeOptions(channels_last=True), CPU, x)
    assert notes == ["channels-last"]
    assert model.conv.weight.is_contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        out = wrapped(x)
    assert layouts == [True] and x.is_contiguous()  # the model saw channels-last; the caller's x is unchanged
    with torch.no_grad():
        assert torch.allclose(out, reference(x), atol=1e-5)
    grad, _, _ = input_gradient(wrapped, x, y)
    expected, _, _ = input_gradient(reference, x, y)
    assert torch.allclose(grad, expected, atol=1e-6)


def test_channels_last_is_off_by_default_on_cpu_and_only_for_conv_nets():
    assert has_conv2d(load_default_model())
    assert not has_conv2d(nn.Sequential(nn.Flatten(), nn.Linear(64, 10)))
    model = load_default_model()
    x, _ = digits(4)
    same, _ = prepare_model(model, RuntimeOptions(), CPU, x)
    assert same is model and not model.features[2].weight.is_contiguous(memory_format=torch.channels_last)


# ------------------------------------------------------------------------------ torch.compile


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        gen = torch.Generator().manual_seed(0)
        self.a = nn.Linear(64, 24)
        self.b = nn.Linear(24, 10)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=gen) * 0.3)

    def forward(self, x):
        return self.b(torch.tanh(self.a(x.flatten(1))))


@pytest.mark.slow
@pytest.mark.skipif(
    compile_unavailable(CPU) is not None, reason=f"torch.compile unavailable: {compile_unavailable(CPU)}"
)
def test_compiled_model_gives_the_eager_adversarial_examples():
    # A tiny MLP keeps the (cold) compile to seconds; the first smaller batch in the loop adds one
    # dynamic-shape recompile, as in a real run with early stop.
    eager = Tiny().eval()
    x, _ = digits(24)
    with torch.no_grad():
        y = eager(x).argmax(1)
    compiled, notes = prepare_model(Tiny().eval(), RuntimeOptions(compile=True), CPU, x)
    assert notes == ["compiled"]
    threat = ThreatModel("inf", 0.1)
    spec = get_attack("pgd")
    results = []
    for model in (eager, compiled):
        gen = torch.Generator().manual_seed(5)
        results.append(
            run_attack(spec, model, x, y, threat=threat, params=PGDParams(steps=5), generator=gen, early_stop=True)
        )
    with torch.no_grad():
        assert torch.allclose(compiled(x), eager(x), atol=1e-5)
    assert torch.allclose(results[0], results[1], atol=1e-5)


def test_compile_unavailable_is_a_usage_error(monkeypatch):
    monkeypatch.delenv("CXX", raising=False)
    monkeypatch.setattr("advgrad.execution.runtime.shutil.which", lambda name: None)
    reason = compile_unavailable(CPU)
    assert reason is not None and "C++ compiler" in reason
    with pytest.raises(UsageError, match="run without `compile`"):
        prepare_model(Tiny(), RuntimeOptions(compile=True), CPU, torch.rand(2, 1, 8, 8))


def test_a_compile_error_is_one_line_and_exit_2(capsys):
    Failure = type("BackendCompilerFailed", (RuntimeError,), {"__module__": "torch._dynamo.exc"})
    assert is_compile_error(Failure("boom")) and not is_compile_error(RuntimeError("boom"))

    @handle_errors
    def command():
        raise Failure("backend 'inductor' raised:\nCppCompileError: ...")

    with pytest.raises(typer.Exit) as info:
        command()
    assert info.value.exit_code == 2
    message = capsys.readouterr().err
    assert (
        "torch.compile failed" in message and "without --compile" in message and len(message.strip().splitlines()) == 1
    )


# ------------------------------------------------------------------------------ command line


def test_eval_with_bf16_records_the_precision_and_stays_close_to_fp32():
    reports = {}
    for precision in ("fp32", "bf16"):
        result = invoke(
            [
                "eval",
                "--limit",
                "40",
                "--eps",
                "0,0.1",
                "--attack",
                "pgd",
                "--steps",
                "5",
                "--precision",
                precision,
                "--json",
                "-",
            ]
        )
        assert result.exit_code == 0, result.stderr
        reports[precision] = json.loads(result.stdout)
    assert reports["bf16"]["config"]["inputs"]["precision"] == "bf16"
    assert "bf16 autocast" in result.stderr
    a = reports["fp32"]["attacks"]["pgd"]["points"][1]["accuracy"]
    b = reports["bf16"]["attacks"]["pgd"]["points"][1]["accuracy"]
    assert abs(a - b) <= 0.15


@pytest.mark.parametrize(
    "args, message",
    [
        (["--precision", "fp8"], "fp32, bf16 or fp16"),
        (["--device", "cuda"], "no CUDA GPU") if not torch.cuda.is_available() else (["--precision", "x"], "fp32"),
    ],
)
def test_bad_runtime_options_are_one_line(args, message):
    assert_bad_input(invoke(["eval", "--limit", "4", *args]), message)


def test_grad_and_attack_take_the_same_options():
    for command in (["grad", "--limit", "4"], ["attack", "--limit", "4", "--steps", "2"]):
        result = invoke([*command, "--precision", "bf16", "--no-channels-last"])
        assert result.exit_code == 0, result.stderr


def test_runtime_options_change_the_resume_key():
    from advgrad.attacks import get_attack as attack
    from advgrad.evaluation.eval_config import EvalAttack, EvalConfig
    from advgrad.evaluation.resume import run_identity, run_key
    from advgrad.io.inputs import InputOptions

    attacks = [EvalAttack(attack("pgd"), attack("pgd").make_params())]
    config = EvalConfig(eps=[0.1])
    keys = {
        run_key(run_identity(InputOptions(**kw).to_dict(), attacks, config, CPU))
        for kw in ({}, {"precision": "bf16"}, {"compile": True}, {"channels_last": True})
    }
    assert len(keys) == 4


def test_deterministic_kernels_are_switched_on_and_noted(monkeypatch):
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    before = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled())
    benchmark, deterministic = torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic
    try:
        model = nn.Linear(4, 3)
        _, notes = prepare_model(model, RuntimeOptions(deterministic=True), torch.device("cpu"), torch.rand(2, 4))
        assert notes == ["deterministic kernels"]
        assert torch.are_deterministic_algorithms_enabled() and torch.is_deterministic_algorithms_warn_only_enabled()
        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8" and torch.backends.cudnn.deterministic
    finally:
        torch.use_deterministic_algorithms(before[0], warn_only=before[1])
        torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = benchmark, deterministic
