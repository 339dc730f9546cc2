"""Loading models (advgrad/io/model/load_model.py, model_files.py, exported.py, factories.py, weights.py,
normalize.py): every --model form, weights and their wrappings, refusals that keep code from running."""

from __future__ import annotations

import pathlib
import re

import factory_models as fm
import pytest
import torch
import torchvision
from loading_fixtures import as_if_saved_on_gpu, rewrite_zip, truncate
from safetensors.torch import save_file
from special_files import null_device

from advgrad.core.errors import ModelError, UsageError
from advgrad.io.model.exported import ExportedModule
from advgrad.io.model.factories import parse_model_args
from advgrad.io.model.graph_ops import fx_disallowed
from advgrad.io.model.load_model import ModelOptions, load_model
from advgrad.io.model.normalize import Normalization, Normalized, parse_channels

X = torch.rand(6, 1, 8, 8, generator=torch.Generator().manual_seed(1))


def reference(**kwargs) -> torch.nn.Module:
    return fm.make(**kwargs).eval()


def outputs(loaded, x=X) -> torch.Tensor:
    with torch.no_grad():
        return loaded.module(x)


def trained_mode_model() -> torch.nn.Module:
    """A model left in training mode: dropout active, batch norm using batch statistics."""
    return fm.make().train()


# ---------------------------------------------------------------------------------------------
# model files


def test_torchscript_loads_in_eval_mode(tmp_path):
    path = tmp_path / "m.ts"
    torch.jit.save(torch.jit.script(trained_mode_model()), path)
    loaded = load_model(str(path))
    assert loaded.kind == "torchscript" and not loaded.module.training
    torch.testing.assert_close(outputs(loaded), reference()(X))


@pytest.mark.parametrize("dynamic", [True, False])
def test_exported_program_any_batch_size(tmp_path, dynamic):
    path = tmp_path / "m.pt2"
    model = reference()
    shapes = {"x": {0: torch.export.Dim("batch")}} if dynamic else None
    torch.export.save(torch.export.export(model, (X[:4],), dynamic_shapes=shapes), path)
    loaded = load_model(str(path))
    assert loaded.kind == "exported-program"
    assert isinstance(loaded.module, ExportedModule) and loaded.module.fixed_batch == (None if dynamic else 4)
    for n in (1, 3, 4, 6):  # smaller and larger than a fixed export batch of 4
        torch.testing.assert_close(outputs(loaded, X[:n]), model(X[:n]))
    x = X.clone().requires_grad_(True)  # gradients flow through padding and splitting
    loaded.module(x)[:, 0].sum().backward()
    x_ref = X.clone().requires_grad_(True)
    model(x_ref)[:, 0].sum().backward()
    torch.testing.assert_close(x.grad, x_ref.grad)


def test_exported_in_training_mode_is_switched_to_inference(tmp_path):
    path = tmp_path / "train.pt2"
    torch.export.save(torch.export.export(trained_mode_model(), (X,)), path)
    loaded = load_model(str(path))
    assert loaded.extra["switched_to_inference"] == 2  # one dropout, one batch norm
    torch.testing.assert_close(outputs(loaded), reference()(X))
    torch.testing.assert_close(outputs(loaded), outputs(loaded))


def test_exported_wrong_input_shape_is_named(tmp_path):
    path = tmp_path / "m.pt2"
    torch.export.save(torch.export.export(reference(), (X,)), path)
    loaded = load_model(str(path))
    with pytest.raises(ModelError, match=r"takes inputs of shape N×1×8×8; the data is 3×8×8"):
        loaded.module(torch.rand(2, 3, 8, 8))


def exported_with(tmp_path, name: str, member: str, edit) -> pathlib.Path:
    """A valid .pt2 archive with one member (by path suffix) rewritten."""
    base = tmp_path / "base.pt2"
    torch.export.save(torch.export.export(reference(), (X,)), base)
    path = tmp_path / name
    rewrite_zip(base, path, lambda n, data: edit(data) if n.endswith(member) else data)
    return path


def test_exported_archive_with_a_code_running_pickle_never_runs_it(tmp_path):
    marker = tmp_path / "code-ran"
    payload = tmp_path / "payload.pt"
    torch.save({"inputs": Payload(marker)}, payload)
    # torch.export.load itself falls back to unpickling this part with weights_only=False
    path = exported_with(tmp_path, "evil.pt2", "data/sample_inputs/model.pt", lambda _: payload.read_bytes())
    with pytest.raises(ModelError, match="`unsafe_pickle`"):
        load_model(str(path))
    assert not marker.exists()


def test_exported_graph_calling_python_is_refused(tmp_path):
    path = exported_with(
        tmp_path,
        "calls.pt2",
        "models/model.json",
        lambda data: data.replace(b"torch.ops.aten.linear.default", b"torch.hub.load"),
    )
    with pytest.raises(ModelError, match="calls.pt2"):
        load_model(str(path))


def test_foreign_calls_are_found():
    def python_function(x):
        return x

    graph = torch.fx.Graph()
    x = graph.placeholder("x")
    y = graph.call_function(torch.ops.aten.relu.default, (x,))
    z = graph.call_function(python_function, (y,))
    graph.output(graph.call_function(torch.ops.aten.add.Tensor, (z, y)))
    found = fx_disallowed(torch.fx.GraphModule(torch.nn.Module(), graph))
    assert len(found) == 1 and found[0].endswith(python_function.__qualname__)


def test_whole_pickle_refused_without_flag_and_loaded_with_it(tmp_path):
    path = tmp_path / "whole.pt"
    torch.save(reference(), path)
    with pytest.raises(ModelError, match="`unsafe_pickle`") as info:
        load_model(str(path))
    assert "TinyNet" in str(info.value)  # names the code the pickle would run
    loaded = load_model(str(path), ModelOptions(unsafe_pickle=True))
    assert loaded.kind == "pickle" and not loaded.module.training
    torch.testing.assert_close(outputs(loaded), reference()(X))


class Payload:
    """Unpickling this creates a file: proof of whether code from the file ran."""

    def __init__(self, marker: pathlib.Path):
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (self.marker,))


@pytest.mark.parametrize("as_weights", [False, True])
def test_malicious_pickle_never_runs_without_the_flag(tmp_path, as_weights):
    marker = tmp_path / "code-ran"
    path = tmp_path / "evil.pt"
    torch.save({"state_dict": Payload(marker)}, path)
    spec, options = (
        ("factory_models:make", ModelOptions(weights=str(path))) if as_weights else (str(path), ModelOptions())
    )
    with pytest.raises(ModelError, match="`unsafe_pickle`"):
        load_model(spec, options)
    assert not marker.exists()


def test_state_dict_given_as_model_is_explained(tmp_path):
    path = tmp_path / "sd.pt"
    torch.save(reference().state_dict(), path)
    with pytest.raises(ModelError, match=r"weights only.*`model` package.module:callable `weights` FILE"):
        load_model(str(path))


def test_damaged_model_files(tmp_path):
    good = tmp_path / "m.pt2"
    torch.export.save(torch.export.export(reference(), (X,)), good)
    with pytest.raises(ModelError, match="truncated"):
        load_model(str(truncate(good, tmp_path / "cut.pt2")))
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"this is not a model")
    with pytest.raises(ModelError, match="truncated or corrupt"):
        load_model(str(junk))
    with pytest.raises(ModelError, match="no such file"):
        load_model(str(tmp_path / "absent.pt"))
    with pytest.raises(ModelError, match="is a directory"):
        load_model(str(tmp_path))


def test_weights_and_model_args_only_for_built_models(tmp_path):
    path = tmp_path / "m.ts"
    torch.jit.save(torch.jit.script(reference()), path)
    with pytest.raises(UsageError, match="`weights` apply to models built in code"):
        load_model(str(path), ModelOptions(weights="w.pt"))
    with pytest.raises(UsageError, match="`model_args` build digits-cnn afresh, with random weights"):
        load_model(None, ModelOptions(model_args={"a": 1}))


# ---------------------------------------------------------------------------------------------
# package.module:callable and weights


def test_parse_model_args_types():
    parsed = parse_model_args(["a=3", "b=0.5", "c=true", "d=False", "e=resnet", "f='7'", "g=1e-3", "h=-2"])
    assert parsed == {"a": 3, "b": 0.5, "c": True, "d": False, "e": "resnet", "f": "7", "g": 0.001, "h": -2}
    assert type(parsed["a"]) is int and type(parsed["b"]) is float and type(parsed["f"]) is str


@pytest.mark.parametrize("bad", ["novalue", "=3", "1x=2", "a-b=1"])
def test_parse_model_args_rejects(bad):
    with pytest.raises(UsageError, match="KEY=VALUE"):
        parse_model_args([bad])


def test_parse_model_args_rejects_repeats():
    with pytest.raises(UsageError, match="given twice"):
        parse_model_args(["a=1", "a=2"])


def test_factory_with_args_builds_what_was_asked():
    loaded = load_model("factory_models:make", ModelOptions(model_args={"classes": 4, "width": 3}))
    assert loaded.kind == "factory" and not loaded.module.training
    assert loaded.module.head.out_features == 4 and loaded.module.conv.out_channels == 3


@pytest.mark.parametrize(
    ("spec", "error", "message"),
    [
        ("no_such_module:make", ModelError, "cannot import no_such_module"),
        ("broken_module:make", ModelError, "importing broken_module failed: RuntimeError"),
        ("factory_models:nothing_here", ModelError, "has no attribute nothing_here"),
        ("factory_models:NOT_CALLABLE", ModelError, "is not callable"),
        ("factory_models:raises", ModelError, "raised RuntimeError: the factory failed on purpose"),
        ("factory_models:returns_number", ModelError, "not a torch.nn.Module"),
    ],
)
def test_factory_failures(spec, error, message):
    with pytest.raises(error, match=message):
        load_model(spec)


def test_factory_rejects_unknown_model_arg():
    with pytest.raises(UsageError, match=r"`model_args`: factory_models:make does not accept depth=3"):
        load_model("factory_models:make", ModelOptions(model_args={"depth": 3}))


def _weights_match(loaded, model) -> None:
    torch.testing.assert_close(outputs(loaded), model.eval()(X))


@pytest.mark.parametrize(
    "wrap",
    [
        lambda sd: sd,
        lambda sd: {"module." + k: v for k, v in sd.items()},  # nn.DataParallel
        lambda sd: {"state_dict": {"module." + k: v for k, v in sd.items()}, "epoch": 7},
        lambda sd: {"model": sd, "optimizer": {"lr": 0.1}},
        lambda sd: {"model_state_dict": {"_orig_mod." + k: v for k, v in sd.items()}},
    ],
    ids=["plain", "dataparallel", "checkpoint", "model-key", "compiled"],
)
def test_state_dict_wrappings_are_unwrapped(tmp_path, wrap):
    trained = fm.make(seed=5)
    path = tmp_path / "w.pth"
    torch.save(wrap(trained.state_dict()), path)
    loaded = load_model("factory_models:make", ModelOptions(weights=str(path)))
    _weights_match(loaded, trained)
    assert not torch.allclose(outputs(loaded), reference()(X))  # seed 5 differs from the default


def test_safetensors_weights(tmp_path):
    trained = fm.make(seed=3)
    path = tmp_path / "w.safetensors"
    save_file({k: v.contiguous() for k, v in trained.state_dict().items()}, path)
    _weights_match(load_model("factory_models:make", ModelOptions(weights=str(path))), trained)
    damaged = truncate(path, tmp_path / "cut.safetensors")
    with pytest.raises(ModelError, match="truncated or corrupt"):
        load_model("factory_models:make", ModelOptions(weights=str(damaged)))


def test_weights_saved_on_gpu_load_on_cpu(tmp_path):
    trained = fm.make(seed=2)
    cpu, gpu = tmp_path / "cpu.pt", tmp_path / "gpu.pt"
    torch.save(trained.state_dict(), cpu)
    as_if_saved_on_gpu(cpu, gpu)
    if not torch.cuda.is_available():  # the file really is one that needs map_location here
        with pytest.raises(RuntimeError, match="CUDA"):
            torch.load(gpu, weights_only=True)
    _weights_match(load_model("factory_models:make", ModelOptions(weights=str(gpu))), trained)


def test_pickled_module_as_weights_needs_flag(tmp_path):
    trained = fm.make(seed=4)
    path = tmp_path / "whole.pt"
    torch.save(trained, path)
    with pytest.raises(ModelError, match="`unsafe_pickle`"):
        load_model("factory_models:make", ModelOptions(weights=str(path)))
    _weights_match(load_model("factory_models:make", ModelOptions(weights=str(path), unsafe_pickle=True)), trained)


def test_state_dict_key_mismatch_lists_keys(tmp_path):
    sd = fm.make().state_dict()
    sd["extra.weight"] = torch.zeros(1)
    del sd["head.bias"]
    path = tmp_path / "w.pt"
    torch.save(sd, path)
    with pytest.raises(ModelError, match=r"1 missing \(head.bias\); 1 unexpected \(extra.weight\)"):
        load_model("factory_models:make", ModelOptions(weights=str(path)))


def test_state_dict_size_mismatch_names_tensor(tmp_path):
    path = tmp_path / "w.pt"
    torch.save(fm.make(classes=10).state_dict(), path)
    with pytest.raises(ModelError, match=r"head.weight is 10×16 in the file but 5×16 in the model"):
        load_model("factory_models:make", ModelOptions(weights=str(path), model_args={"classes": 5}))


def _with(key: str, value: torch.Tensor) -> dict:
    state = fm.make().state_dict()
    state[key] = value
    return state


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
@pytest.mark.parametrize(
    "key, value, needle",
    [
        ("head.weight", torch.ones(10, 16, dtype=torch.int64), "head.weight is stored as integer (torch.int64)"),
        ("conv.bias", torch.ones(4, dtype=torch.bool), "conv.bias is stored as boolean (torch.bool)"),
        ("bn.weight", torch.ones(4, dtype=torch.uint8), "bn.weight is stored as integer (torch.uint8)"),
        ("head.bias", torch.full((10,), 1e300, dtype=torch.float64), "head.bias holds values too large for"),
        ("bn.num_batches_tracked", torch.tensor(2.5), "num_batches_tracked holds values that the model's torch.int64"),
        ("bn.num_batches_tracked", torch.tensor(2**40), None),  # int64 in the model too: loads
    ],
)
def test_weights_cast_silently_are_refused(tmp_path, suffix, key, value, needle):
    path = tmp_path / f"w{suffix}"
    state = _with(key, value)
    if suffix == ".safetensors":
        save_file(state, path)
    else:
        torch.save(state, path)
    if needle is None:
        load_model("factory_models:make", ModelOptions(weights=str(path)))
        return
    with pytest.raises(ModelError, match=re.escape(needle)):
        load_model("factory_models:make", ModelOptions(weights=str(path)))


def test_weights_in_other_float_precisions_and_integer_counters_load(tmp_path):
    trained = fm.make(seed=6)
    state = {k: v.half() if v.is_floating_point() else v.int() for k, v in trained.state_dict().items()}
    save_file(state, tmp_path / "half.safetensors")
    loaded = load_model("factory_models:make", ModelOptions(weights=str(tmp_path / "half.safetensors")))
    inner = loaded.module.state_dict()
    assert inner["bn.num_batches_tracked"].dtype == torch.int64 and inner["head.weight"].dtype == torch.float32
    assert torch.equal(inner["head.weight"], trained.state_dict()["head.weight"].half().float())


def test_weights_that_are_a_device_are_refused(tmp_path):
    device = null_device(tmp_path / "w.pt")
    with pytest.raises(ModelError, match="is a character device; expected a weights file"):
        load_model("factory_models:make", ModelOptions(weights=str(device)))


def test_weights_file_holding_no_state_dict(tmp_path):
    path = tmp_path / "w.pt"
    torch.save({"epoch": 3, "lr": 0.1}, path)
    with pytest.raises(ModelError, match="not a state dict"):
        load_model("factory_models:make", ModelOptions(weights=str(path)))


# ---------------------------------------------------------------------------------------------
# torchvision:NAME


def test_torchvision_with_weights_file(tmp_path):
    torch.manual_seed(0)
    trained = torchvision.models.get_model("mobilenet_v3_small", weights=None, num_classes=10).eval()
    path = tmp_path / "mnv3.pth"
    torch.save(trained.state_dict(), path)
    loaded = load_model(
        "torchvision:mobilenet_v3_small", ModelOptions(weights=str(path), model_args={"num_classes": 10})
    )
    assert loaded.kind == "torchvision" and not loaded.module.training and loaded.normalization is None
    x = torch.rand(2, 3, 32, 32)
    torch.testing.assert_close(outputs(loaded, x), trained(x))


def test_torchvision_default_weights_not_cached_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    with pytest.raises(ModelError) as info:
        load_model("torchvision:squeezenet1_1", ModelOptions(weights="DEFAULT"))
    message = str(info.value)
    expected = tmp_path / "torch-home" / "hub" / "checkpoints"
    assert str(expected) in message and "never downloads" in message and "`weights` FILE" in message
    assert "\n" not in message and not expected.exists()


def test_torchvision_default_weights_from_cache_bring_their_normalisation(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    entry = torchvision.models.get_model_weights("squeezenet1_1").DEFAULT
    cache = tmp_path / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    torch.manual_seed(0)
    stand_in = torchvision.models.get_model("squeezenet1_1", weights=None).eval()  # random, not the real weights
    torch.save(stand_in.state_dict(), cache / entry.url.rsplit("/", 1)[-1])
    loaded = load_model("torchvision:squeezenet1_1", ModelOptions(weights="DEFAULT"))
    assert loaded.normalization == Normalization(
        (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), loaded.normalization.source
    )
    x = torch.rand(2, 3, 64, 64)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    torch.testing.assert_close(outputs(loaded, x), stand_in((x - mean) / std))
    # --mean/--std given by the user win over the weights' own
    mine = load_model("torchvision:squeezenet1_1", ModelOptions(weights="DEFAULT", mean=(0.5,), std=(0.5,)))
    torch.testing.assert_close(outputs(mine, x), stand_in((x - 0.5) / 0.5))


def test_torchvision_unknown_name_suggests():
    with pytest.raises(ModelError, match="did you mean resnet18"):
        load_model("torchvision:resnet81")


def test_torchvision_unknown_weights_entry():
    with pytest.raises(UsageError, match="has no such entry"):
        load_model("torchvision:squeezenet1_1", ModelOptions(weights="IMAGENET9K"))


# ---------------------------------------------------------------------------------------------
# normalisation


def test_normalised_model_predicts_as_model_on_normalised_inputs():
    mean, std = (0.2, 0.4, 0.6), (0.25, 0.5, 0.125)
    loaded = load_model("factory_models:make", ModelOptions(model_args={"channels": 3}, mean=mean, std=std))
    assert isinstance(loaded.module, Normalized)
    x = torch.rand(16, 3, 8, 8)
    manual = torch.empty_like(x)
    for c in range(3):  # written out per channel, independently of the Normalized layer
        manual[:, c] = (x[:, c] - mean[c]) / std[c]
    plain = reference(channels=3)
    torch.testing.assert_close(outputs(loaded, x), plain(manual))
    assert torch.equal(outputs(loaded, x).argmax(1), plain(manual).argmax(1))


def test_single_value_applies_to_every_channel():
    n = Normalization.from_options((0.5,), (0.25, 0.5, 1.0))
    assert n.mean == (0.5, 0.5, 0.5) and n.std == (0.25, 0.5, 1.0)


@pytest.mark.parametrize(
    ("mean", "std", "message"),
    [
        ((0.5,), None, "`mean` needs `std`"),
        (None, (0.5,), "`std` needs `mean`"),
        ((0.1, 0.2), (0.1, 0.2, 0.3), "`mean` has 2 values but `std` has 3"),
        ((0.5,), (0.0,), "must be positive"),
    ],
)
def test_bad_normalisation(mean, std, message):
    with pytest.raises(UsageError, match=message):
        load_model(None, ModelOptions(mean=mean, std=std))


@pytest.mark.parametrize("text", ["a,b", "", "0.5,,0.2", "nan"])
def test_parse_channels_rejects(text):
    with pytest.raises(UsageError, match="--mean"):
        parse_channels(text, "--mean")


def test_parse_channels():
    assert parse_channels("0.485, 0.456,0.406", "--mean") == (0.485, 0.456, 0.406)
    assert parse_channels(None, "--mean") is None


def test_torchvision_warnings_for_random_weights_and_missing_normalisation(tmp_path):
    random = load_model("torchvision:squeezenet1_1", ModelOptions(model_args={"num_classes": 3}))
    assert any("random weights" in w for w in random.warnings)
    path = tmp_path / "w.pth"
    torch.save(random.module.state_dict(), path)
    plain = load_model("torchvision:squeezenet1_1", ModelOptions(weights=str(path), model_args={"num_classes": 3}))
    assert any("no `mean`/`std` given" in w for w in plain.warnings)
    normalised = load_model(
        "torchvision:squeezenet1_1",
        ModelOptions(weights=str(path), model_args={"num_classes": 3}, mean=(0.5,), std=(0.5,)),
    )
    assert normalised.warnings == []
