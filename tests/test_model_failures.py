"""A user model that fails is the model's failure: exit 2 with one line naming the model, never
exit 3 ("internal error") nor exit 0 without a report (issue 9, items 9 and 10).

``factory_models:make_misbehaving`` misbehaves from its ``fail_on``-th call: the probe makes four
calls (AFTER_PROBE is the first call after it, in the middle of the run), ``fail_on=1`` fails in
the probe.
"""

from __future__ import annotations

import pytest
import torch
from loading_fixtures import run_cli, save_tensors

from advgrad.core.errors import ModelError
from advgrad.io.model.guard import GuardedModel

MODEL = "factory_models:make_misbehaving"
AFTER_PROBE = 5


@pytest.fixture
def data(tmp_path):
    x = torch.rand(16, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    return save_tensors(tmp_path / "data.pt", x, torch.arange(16) % 10)


def run(command, data, how, fail_on, *extra):
    picks = ["--method", "pgd", "--eps", "0.1"] if command == "attack" else ["--attack", "pgd", "--eps", "0,0.1"]
    if command in ("grad", "info"):
        picks = []
    return run_cli(
        command,
        *picks,
        "--model",
        MODEL,
        "--model-arg",
        f"how={how}",
        "--model-arg",
        f"fail_on={fail_on}",
        "--data",
        data,
        "--device",
        "cpu",
        "--batch-size",
        "8",
        "--json",
        "-",
        *extra,
    )


def assert_model_failure(result, *needles):
    assert result.exit_code == 2, (result.exit_code, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr
    assert result.stdout == ""  # no report
    lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
    assert lines[-1].startswith("error: "), lines
    assert all(not line.startswith("error") for line in lines[:-1]), lines
    for needle in needles:
        assert needle in lines[-1], (needle, lines[-1])
    return lines[-1]


@pytest.mark.parametrize("command", ["eval", "attack", "grad"])
def test_a_model_that_raises_after_the_probe(data, command):
    line = assert_model_failure(run(command, data, "raise", AFTER_PROBE), MODEL, "RuntimeError", "failed on purpose")
    assert "second line" not in line


def test_control_characters_in_a_failure_text_are_shown_escaped(data):
    """Issue 21, item 13: torch's own error text (here a model's) quoting a name from a file reached
    the terminal raw; one such sequence clears the screen."""
    line = assert_model_failure(run("eval", data, "escapes", AFTER_PROBE), MODEL, "RuntimeError")
    assert "'\\x1b[2J\\x1b]0;pwned\\x07layer\\x9b31m\\u202e' is invalid" in line, line
    result = run("eval", data, "escapes", AFTER_PROBE)
    assert not any(c in result.stderr for c in "\x1b\x07\r\x9b\u202e"), repr(result.stderr)


@pytest.mark.parametrize("command", ["eval", "attack"])
def test_a_model_that_raises_on_its_second_call(data, command):
    assert_model_failure(run(command, data, "raise", 2), "failed on purpose")


@pytest.mark.parametrize("fail_on", [1, AFTER_PROBE])
@pytest.mark.parametrize("command", ["eval", "attack", "grad"])
def test_a_model_that_changes_its_input_in_place(data, command, fail_on):
    assert_model_failure(run(command, data, "inplace", fail_on), MODEL, "in place")


@pytest.mark.parametrize(
    ("command", "fail_on"),
    [("eval", 1), ("eval", AFTER_PROBE), ("attack", 1), ("attack", AFTER_PROBE), ("grad", AFTER_PROBE), ("info", 1)],
)
def test_a_model_that_calls_sys_exit(data, command, fail_on):
    assert_model_failure(run(command, data, "exit", fail_on), MODEL, "sys.exit(0)")


def test_a_factory_that_calls_sys_exit(data):
    result = run_cli("info", "--model", "factory_models:exits_while_building", "--data", data, "--device", "cpu")
    assert_model_failure(result, "factory_models:exits_while_building", "SystemExit")


def test_keyboard_interrupt_in_the_model_still_means_interrupted(tmp_path, monkeypatch):
    """Ctrl-C inside the model's forward is an interruption, not the model's failure: exit 130 and
    the finished batches kept for a resume (32 samples in batches of 8; the 45th call is in the
    second batch)."""
    monkeypatch.setenv("ADVGRAD_STATE_DIR", str(tmp_path / "state"))
    x = torch.rand(32, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    data = save_tensors(tmp_path / "data32.pt", x, torch.arange(32) % 10)
    result = run("eval", data, "interrupt", 45)
    assert result.exit_code == 130, (result.exit_code, result.stderr)
    assert "interrupted: 1 finished batches are saved" in result.stderr and "error" not in result.stderr
    assert result.stdout == ""
    assert len(list((tmp_path / "state").glob("eval-*/batch-*.pt"))) == 1


def test_guard_passes_results_and_names_failures():
    class Doubler(torch.nn.Module):
        def forward(self, x):
            return x * 2

    x = torch.ones(2, 3)
    assert torch.equal(GuardedModel(Doubler(), "m")(x), x * 2)

    class InPlace(torch.nn.Module):
        def forward(self, x):
            return x.add_(1)

    with pytest.raises(ModelError, match="the model m changes its input tensor in place"):
        GuardedModel(InPlace(), "m")(torch.ones(2, 3))

    class Interrupted(torch.nn.Module):
        def forward(self, x):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        GuardedModel(Interrupted(), "m")(x)

    class OutOfMemory(torch.nn.Module):
        def forward(self, x):
            raise MemoryError

    with pytest.raises(MemoryError):
        GuardedModel(OutOfMemory(), "m")(x)
