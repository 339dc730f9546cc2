"""ONNX models through onnx2torch: same logits and the same FGSM examples as the torch model they
were exported from; unsupported operators, a conversion that disagrees with onnxruntime, external
data outside the model's folder and a missing extra are each one line and exit 2; node names that
would be Python code never run."""

from __future__ import annotations

import os
import sys
import warnings

import factory_models as fm
import pytest
import torch
from loading_fixtures import assert_bad_input, run_cli, save_tensors
from special_files import unblocking

from advgrad.io.model.onnx_file import is_onnx

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnx2torch")
pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper  # noqa: E402


def export_onnx(model: torch.nn.Module, path, example: torch.Tensor, dynamic: bool = True):
    """The legacy (TorchScript-based) exporter: it needs no network and writes opset 17, which
    onnx2torch converts."""
    axes = {"x": {0: "batch"}, "logits": {0: "batch"}} if dynamic else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model.eval(),
            (example,),
            str(path),
            dynamo=False,
            opset_version=17,
            input_names=["x"],
            output_names=["logits"],
            dynamic_axes=axes,
        )
    return path


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    d = tmp_path_factory.mktemp("onnx")
    model = fm.make(seed=1).eval()
    torch.save(model.state_dict(), d / "w.pt")
    x = torch.rand(12, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    y = model(x).argmax(1)
    y[6:] = (y[6:] + 1) % 10  # labels the model gets half wrong: only the others are attacked
    return {
        "dir": d,
        "model": model,
        "x": x,
        "y": y,
        "data": save_tensors(d / "data.pt", x, y),
        "onnx": export_onnx(model, d / "m.onnx", x[:2]),
    }


def graph_model(tmp_path, nodes, name="g.onnx", initializers=(), shape=(None, 1, 8, 8), out_shape=(None, 10)):
    """A hand-built ONNX model: ``nodes`` from input ``x`` to output ``logits``."""
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, list(out_shape))],
        initializer=list(initializers),
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def test_recognised_by_contents_not_name(setup, tmp_path):
    renamed = tmp_path / "model.bin"
    renamed.write_bytes(setup["onnx"].read_bytes())
    assert is_onnx(setup["onnx"]) and is_onnx(renamed)
    for other in (setup["data"], setup["dir"] / "w.pt"):  # torch.save files are not ONNX
        assert not is_onnx(other)
    noise = tmp_path / "noise.onnx"
    noise.write_bytes(bytes([8, 7]) + bytes(range(256)) * 4)
    assert not is_onnx(noise)
    result = run_cli("info", "--model", renamed, "--data", setup["data"], "--device", "cpu", "--json", "-")
    assert result.exit_code == 0, result.stderr
    assert_bad_input(run_cli("info", "--model", noise, "--data", setup["data"]), "not a readable ONNX model")


def test_same_logits_as_the_torch_model(setup):
    import advgrad

    module = advgrad.load_model(str(setup["onnx"]))
    with torch.no_grad():
        got, expected = module(setup["x"]), setup["model"](setup["x"])
    assert got.shape == expected.shape == (12, 10)
    assert torch.allclose(got, expected, atol=1e-5, rtol=1e-5)
    x = setup["x"].clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(module(x).logsumexp(1).sum(), x)
    x2 = setup["x"].clone().requires_grad_(True)
    (expected_grad,) = torch.autograd.grad(setup["model"](x2).logsumexp(1).sum(), x2)
    assert torch.allclose(grad, expected_grad, atol=1e-5)


def test_info_reports_kind_and_check(setup):
    result = run_cli("info", "--model", setup["onnx"], "--data", setup["data"], "--device", "cpu", "--json", "-")
    assert result.exit_code == 0, result.stderr
    import json

    summary = json.loads(result.stdout)
    assert summary["model"]["kind"] == "onnx"
    assert summary["model"]["onnx_batch"] == "dynamic"
    assert "onnxruntime" in summary["model"]["onnx_check"]


def _fgsm_out(setup, tmp_path, *model_args):
    out = tmp_path / f"adv{len(model_args)}.pt"
    result = run_cli(
        "attack", "--method", "fgsm", "--eps", "0.1", "--data", setup["data"], "--device", "cpu", "--out", out,
        *model_args,
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    return torch.load(out, weights_only=True)


def test_same_fgsm_examples_as_the_torch_model(setup, tmp_path):
    via_onnx = _fgsm_out(setup, tmp_path, "--model", setup["onnx"])
    via_torch = _fgsm_out(setup, tmp_path, "--model", "factory_models:make", "--model-arg", "seed=1",
                          "--weights", setup["dir"] / "w.pt")  # fmt: skip
    # FGSM's closed form on the torch model: x + ε·sign(∇ₓCE) clipped to [0, 1] (advgrad attack
    # attacks every sample)
    x = setup["x"].clone().requires_grad_(True)
    loss = torch.nn.functional.cross_entropy(setup["model"](x), setup["y"], reduction="sum")
    (grad,) = torch.autograd.grad(loss, x)
    expected = (setup["x"] + 0.1 * grad.sign()).clamp(0, 1)
    clear = grad.abs() > 1e-6  # where the sign of the gradient cannot flip by rounding
    assert clear.float().mean() > 0.9
    for data in (via_onnx, via_torch):
        assert torch.equal(data["x"], setup["x"])
        assert torch.allclose(data["x_adv"][clear], expected[clear], atol=1e-6)
    assert torch.equal(via_onnx["pred_adv"], via_torch["pred_adv"])


def test_unsupported_operator(setup, tmp_path):
    det = graph_model(
        tmp_path, [helper.make_node("Det", ["x"], ["logits"])], shape=(None, 1, 8, 8), out_shape=(None, 1)
    )
    onnx.save(det, tmp_path / "det.onnx")
    message = assert_bad_input(run_cli("info", "--model", tmp_path / "det.onnx", "--data", setup["data"]))
    assert "no converter for the ONNX operator Det" in message, message


def test_an_operator_type_with_escape_sequences_is_echoed_escaped(setup, tmp_path):
    """Issue 21, item 13: onnxruntime's error quotes the operator type as the file spells it."""
    op = "Relu\x1b[2J\x1b]0;pwned\x07\x9b31m\u202e"
    evil = graph_model(tmp_path, [helper.make_node(op, ["x"], ["h"]), helper.make_node("Flatten", ["h"], ["logits"])])
    onnx.save(evil, tmp_path / "evil.onnx")
    result = run_cli("info", "--model", tmp_path / "evil.onnx", "--data", setup["data"])
    message = assert_bad_input(result, "Relu\\x1b[2J\\x1b]0;pwned\\x07\\x9b31m\\u202e")
    assert not any(c in result.stderr for c in "\x1b\x07\x9b\u202e"), message


def test_weights_behind_identity_and_constant_nodes(setup, tmp_path):
    """torch's exporter writes equal weights once and Identity nodes for the copies; onnx2torch reads
    a convolution's weights only from initializers."""
    gen = torch.Generator().manual_seed(4)
    weight, bias, scale = torch.randn(3, 1, 3, 3, generator=gen), torch.randn(3, generator=gen), torch.rand(1, 3, 1, 1)
    nodes = [
        helper.make_node("Identity", ["B"], ["B_copy"]),
        helper.make_node("Constant", [], ["S"], value=onnx.numpy_helper.from_array(scale.numpy(), "S")),
        helper.make_node("Conv", ["x", "W", "B_copy"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Mul", ["c", "S"], ["m"]),
        helper.make_node("Flatten", ["m"], ["logits"]),
    ]
    initializers = [onnx.numpy_helper.from_array(t.numpy(), n) for t, n in ((weight, "W"), (bias, "B"))]
    onnx.save(graph_model(tmp_path, nodes, initializers=initializers, out_shape=(None, 192)), tmp_path / "a.onnx")
    import advgrad

    module = advgrad.load_model(str(tmp_path / "a.onnx"))
    expected = (torch.nn.functional.conv2d(setup["x"], weight, bias, padding=1) * scale).flatten(1)
    assert torch.allclose(module(setup["x"]), expected, atol=1e-5)


def test_conversion_that_disagrees_with_onnxruntime(setup, monkeypatch):
    import onnx2torch

    convert = onnx2torch.convert

    def shifted(model):  # a conversion whose logits are off by 0.05
        gm = convert(model)
        head = [m for m in gm.modules() if isinstance(m, torch.nn.Linear)][-1]
        with torch.no_grad():
            head.bias += 0.05
        return gm

    monkeypatch.setattr(onnx2torch, "convert", shifted)
    message = assert_bad_input(run_cli("info", "--model", setup["onnx"], "--data", setup["data"]))
    assert "disagrees with onnxruntime" in message and "difference 0.05" in message, message


def test_missing_extra(setup, monkeypatch):
    for module in ("onnx", "onnx2torch", "onnxruntime"):
        with monkeypatch.context() as patch:
            patch.setitem(sys.modules, module, None)  # import raises ImportError
            message = assert_bad_input(run_cli("info", "--model", setup["onnx"], "--data", setup["data"]))
            assert "pip install 'advgrad[onnx]'" in message and module in message, message


def save_external(tmp_path, path, location: str):
    """A flatten-and-matmul model at ``path`` whose 64×10 weight W keeps its data at ``location``;
    returns W's TensorProto and the nodes, to save it again with another location."""
    weight = TensorProto(name="W", data_type=TensorProto.FLOAT, dims=[64, 10])
    weight.data_location = TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", "0"), ("length", str(4 * 640))):
        entry = weight.external_data.add()
        entry.key, entry.value = key, value
    nodes = [helper.make_node("Flatten", ["x"], ["f"]), helper.make_node("MatMul", ["f", "W"], ["logits"])]
    onnx.save(graph_model(tmp_path, nodes, initializers=[weight]), path)
    return weight, nodes


def test_external_data_outside_the_folder_is_refused(tmp_path, setup):
    inside = tmp_path / "model"
    inside.mkdir()
    secret = tmp_path / "secret.bin"
    secret.write_bytes(torch.zeros(10 * 64).numpy().tobytes())
    (inside / "link.bin").symlink_to(secret)
    for location in ("../secret.bin", str(secret), "link.bin"):
        weight, nodes = save_external(tmp_path, inside / "m.onnx", location)
        message = assert_bad_input(run_cli("info", "--model", inside / "m.onnx", "--data", setup["data"]))
        assert "not a file inside the model's folder" in message, message
    # the same tensor beside the model loads, and its values are used
    values = torch.randn(64, 10, generator=torch.Generator().manual_seed(3))
    (inside / "w.bin").write_bytes(values.numpy().tobytes())
    weight.external_data[0].value = "w.bin"
    onnx.save(graph_model(tmp_path, nodes, initializers=[weight]), inside / "m.onnx")
    import advgrad

    module = advgrad.load_model(str(inside / "m.onnx"))
    assert torch.allclose(module(setup["x"]), setup["x"].flatten(1) @ values, atol=1e-5)


def test_external_data_that_is_no_regular_file_is_refused(tmp_path, setup):
    """A symbolic-link loop used to end as an internal error (exit 3); a named pipe or a device is
    refused before anything reads it."""
    inside = tmp_path / "model"
    inside.mkdir()
    (inside / "loop.bin").symlink_to("loop.bin")
    os.mkfifo(inside / "pipe.bin")
    (inside / "device.bin").symlink_to("/dev/null")
    for location, words in (
        ("loop.bin", "it is a symbolic link loop"),
        ("pipe.bin", "it is a named pipe (FIFO)"),
        ("folder", "it is a directory"),
        ("device.bin", "it leads out of the folder"),
    ):
        (inside / "folder").mkdir(exist_ok=True)
        save_external(tmp_path, inside / "m.onnx", location)
        result = unblocking(
            lambda: run_cli("info", "--model", inside / "m.onnx", "--data", setup["data"]), inside / "pipe.bin"
        )
        message = assert_bad_input(result)
        assert f"keeps its data in {location!r}, which is not a file inside the model's folder ({words})" in message


def test_node_names_never_run_as_code(setup, tmp_path):
    """onnx2torch writes node names into the Python source torch.fx executes; advgrad renames them."""
    import builtins

    assert not hasattr(builtins, "ADVGRAD_RAN")
    evil = 'x") if setattr(__import__("builtins"), "ADVGRAD_RAN", 1) else getattr(self, "Relu'  # no dots: kept as is
    nodes = [helper.make_node("Flatten", ["x"], ["f"], name=evil), helper.make_node("Relu", ["f"], ["logits"])]
    path = tmp_path / "evil.onnx"
    onnx.save(graph_model(tmp_path, nodes, out_shape=(None, 64)), path)
    result = run_cli("info", "--model", path, "--data", setup["data"], "--device", "cpu")
    assert not hasattr(builtins, "ADVGRAD_RAN")
    assert result.exit_code == 0, result.stderr
    import onnx2torch  # the control: converted as it is, the name runs as code

    onnx2torch.convert(str(path))(setup["x"])
    assert getattr(builtins, "ADVGRAD_RAN", None) == 1
    del builtins.ADVGRAD_RAN


def test_fixed_batch_and_bpda_refused(setup, tmp_path):
    fixed = export_onnx(setup["model"], tmp_path / "fixed.onnx", setup["x"][:4], dynamic=False)
    import advgrad

    module = advgrad.load_model(str(fixed))
    assert torch.allclose(module(setup["x"][:7]), setup["model"](setup["x"][:7]), atol=1e-5)  # padded, split
    message = assert_bad_input(run_cli("info", "--model", fixed, "--data", setup["data"], "--bpda", "n0"))
    assert "ONNX" in message
