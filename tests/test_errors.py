"""advgrad/core/errors.py and the CLI's rendering of them: the library names its parameters, the
command line names its flags; internal errors are no user errors (exit 3, not 2)."""

from __future__ import annotations

import pytest
import torch
import typer
from helpers import assert_bad_input, invoke

from advgrad.cli.console import error_text, flag, handle_errors
from advgrad.core.eps import parse_eps_list
from advgrad.core.errors import AdvgradError, DataError, InternalError, ModelError, UsageError, param_label
from advgrad.core.losses import dlr, get_loss
from advgrad.core.numeric import check_number
from advgrad.core.targets import parse_target, resolve_targets
from advgrad.execution.runtime import compile_failed
from advgrad.execution.threads import parse_threads
from advgrad.io.data.load_data import load_default
from advgrad.io.data.sources import DataOptions, check_at_least
from advgrad.io.model.factories import parse_model_args
from advgrad.io.model.normalize import Normalization, parse_channels


def test_render_spells_only_the_named_parameters():
    exc = UsageError("`mean` has 2 values but `std` has 3; see `other`", params=("mean", "std"))
    assert exc.param == "mean" and exc.params == ("mean", "std")
    assert exc.render(lambda p: p.upper()) == "MEAN has 2 values but STD has 3; see `other`"
    assert str(exc) == "`mean` has 2 values but `std` has 3; see `other`"
    assert UsageError("plain").param is None and UsageError("plain").render(flag) == "plain"


def test_params_survive_pickling():  # DataLoader workers and torchrun ranks send errors between processes
    import pickle

    exc = pickle.loads(pickle.dumps(DataError("`limit` is wrong", params="limit")))
    assert exc.params == ("limit",) and error_text(exc) == "--limit is wrong"


def test_the_cli_maps_parameters_to_flags():
    assert flag("batch_size") == "--batch-size" and flag("num_workers") == "--num-workers"
    assert flag("model_args") == "--model-arg"  # the one flag not spelled like its parameter
    assert param_label("steps") == ("`steps`", ("steps",)) and param_label("--steps") == ("--steps", ())


def _throw(exc: Exception):
    raise exc


def _raised(fn, *args, **kwargs) -> AdvgradError:
    with pytest.raises(AdvgradError) as info:
        fn(*args, **kwargs)
    return info.value


@pytest.mark.parametrize(
    "call, param",
    [
        (lambda: dlr(torch.zeros(1, 2), torch.tensor([0])), "loss"),
        (lambda: dlr(torch.zeros(1, 3), torch.tensor([0]), torch.tensor([1])), "loss"),
        (lambda: parse_target("-1"), "target"),
        (lambda: parse_target("two"), "target"),
        (lambda: resolve_targets(7, torch.zeros(2, 3), torch.tensor([0, 1])), "target"),
        (lambda: parse_eps_list(","), "eps"),
        (lambda: load_default().select(limit=0), "limit"),
        (lambda: next(load_default().batches(0)), "batch_size"),
        (lambda: next(load_default().batches(4, num_workers=-1)), "num_workers"),
        (lambda: DataOptions(image_size=0), "image_size"),
        (lambda: Normalization.from_options((0.5,), None), "mean"),
        (lambda: Normalization.from_options((0.5, 0.5), (0.1, 0.2, 0.3)), "mean"),
        (lambda: parse_channels("a,b", "std"), "std"),
        (lambda: parse_model_args(["not an arg"]), "model_args"),
        (lambda: check_number(2.5, "steps", integer=True), "steps"),
        (lambda: parse_threads("0"), "threads"),
        (lambda: _throw(compile_failed(RuntimeError("no compiler"))), "compile"),
    ],
)
def test_library_errors_name_parameters_not_flags(call, param):
    exc = _raised(call)
    assert exc.param == param
    assert "--" not in str(exc), str(exc)
    shown = error_text(exc)
    assert flag(param) in shown and "`" not in shown.replace("`other`", ""), shown


def test_an_unknown_loss_names_its_parameter():
    exc = _raised(get_loss, "hinge")
    assert exc.param == "loss" and str(exc) == "unknown loss 'hinge': use one of ce, margin, dlr"


def test_size_checks_are_one_check():
    with pytest.raises(UsageError, match="`batch_size` must be at least 1, got 0"):
        check_at_least(batch_size=(0, 1))
    with pytest.raises(UsageError, match="`num_workers` must be 0 or more, got -2"):
        check_at_least(num_workers=(-2, 0))
    check_at_least(limit=(None, 1), batch_size=(1, 1), num_workers=(0, 0))  # None: not given


def test_the_api_checks_batch_size_with_the_same_check():
    import advgrad

    x, y = load_default().fetch(torch.arange(4))
    with pytest.raises(UsageError, match="`batch_size` must be at least 1, got 0") as info:
        advgrad.evaluate(
            torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10)),
            x,
            y,
            attacks=["fgsm"],
            eps=[0.1],
            batch_size=0,
        )
    assert info.value.param == "batch_size"


def test_internal_error_is_not_a_user_error():
    assert not issubclass(InternalError, AdvgradError)
    for user in (UsageError, DataError, ModelError):
        assert issubclass(user, AdvgradError)


def test_an_internal_error_exits_3_as_a_bug(capsys):
    @handle_errors
    def command():
        raise InternalError("batch 2 arrived when batch 1 was due")

    with pytest.raises(typer.Exit) as info:
        command()
    assert info.value.exit_code == 3
    message = capsys.readouterr().err.strip()
    assert message.startswith("internal error:") and "batch 2 arrived" in message and "report it" in message
    assert len(message.splitlines()) == 1


def test_a_user_error_is_shown_with_flags(capsys):
    @handle_errors
    def command():
        raise UsageError("`model_args` takes KEY=VALUE; `image_size` too", params=("model_args", "image_size"))

    with pytest.raises(typer.Exit) as info:
        command()
    assert info.value.exit_code == 2
    assert capsys.readouterr().err.strip() == "error: --model-arg takes KEY=VALUE; --image-size too"


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--mean", "0.5"], "error: --mean needs --std too (one value per channel, e.g. --mean 0.5 --std 0.5)"),
        (["--mean", "0.5,0.5", "--std", "0.1,0.2,0.3"], "error: --mean has 2 values but --std has 3"),
        (["--target", "-1"], "error: --target must be a class index ≥ 0, got -1"),
        (["--seed", "-1"], "error: --seed must be ≥ 0, got -1"),
        (["--batch-size", "0"], "error: --batch-size must be at least 1, got 0"),
        (["--num-workers", "-1"], "error: --num-workers must be 0 or more, got -1"),
        (["--image-size", "0"], "error: --image-size must be at least 1, got 0"),
        (["--image-size", "8"], "error: --image-size resizes image folders only"),
        (["--weights", "w.pt"], "error: --weights w.pt: no such file"),
        (
            ["--model-arg", "channels=8"],
            "error: --model-arg build digits-cnn afresh, with random weights: give the --weights",
        ),
    ],
)
def test_cli_messages_name_the_flags(args, needle):
    result = invoke(["attack", "--limit", "4", *args, "--out", "never-written.pt"])
    message = assert_bad_input(result)
    assert message.startswith(needle) and "`" not in message, message


def test_warnings_name_parameters_and_the_cli_shows_flags():
    from advgrad.cli.console import notice_text
    from advgrad.core.errors import Notice
    from advgrad.execution.threads import choose_threads

    warning = choose_threads(8, cpus=2).warning
    assert isinstance(warning, Notice) and warning.params == ("threads",) and "--" not in warning
    assert notice_text(warning).startswith("--threads 8 is more than the 2 CPU(s)")
    assert notice_text(warning).endswith("(try --threads auto)")
    assert notice_text("a plain warning") == "a plain warning"
