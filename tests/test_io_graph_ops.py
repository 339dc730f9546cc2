"""The operator allow-list (advgrad/io/model/graph_ops.py): graphs that touch files are refused, named,
before they run; the graphs of real models are entirely on the list."""

from __future__ import annotations

import pathlib
import time
import warnings

import factory_models as fm
import pytest
import torch
import torchvision
from loading_fixtures import assert_bad_input, run_cli, save_tensors

from advgrad.core.errors import ModelError
from advgrad.io.model.exported_archive import archive_refusals
from advgrad.io.model.graph_ops import fx_disallowed, torchscript_disallowed, torchscript_kind_allowed
from advgrad.io.model.load_model import ModelOptions, load_model
from advgrad.models.digits import DigitsCNN

X = torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(0))


@pytest.fixture(autouse=True)
def _quiet_torchscript():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # TorchScript's deprecation notices
        yield


@pytest.fixture
def victim(tmp_path) -> pathlib.Path:
    """A file the crafted graphs write into when they run."""
    path = tmp_path / "victim.bin"
    path.write_bytes(b"xxxx")
    return path


class Filler(torch.nn.Module):
    def forward(self, x):
        t = torch.zeros(4, dtype=torch.uint8)
        t.fill_(65)
        return x + t.sum() * 0


def file_writing_export(tmp_path, victim: pathlib.Path) -> pathlib.Path:
    """An ExportedProgram whose graph maps ``victim`` with aten.from_file(shared=True) and fills it.

    Export cannot trace from_file, so a zeros node is turned into it before saving.
    """
    ep = torch.export.export(Filler(), (X,))
    for node in ep.graph.nodes:
        if node.target is torch.ops.aten.zeros.default:
            node.target = torch.ops.aten.from_file.default
            node.args, node.kwargs = (str(victim), True, 4), {"dtype": torch.uint8}
    ep.graph_module.recompile()
    path = tmp_path / "writes.pt2"
    torch.export.save(ep, path)
    return path


def test_crafted_export_writes_the_file_when_torch_runs_it(tmp_path, victim):
    """The fixture is real: torch itself loads and runs the graph, and the file changes."""
    torch.export.load(str(file_writing_export(tmp_path, victim))).module()(X)
    assert victim.read_bytes() == b"AAAA"


def test_exported_graph_touching_files_is_refused(tmp_path, victim):
    path = file_writing_export(tmp_path, victim)
    with pytest.raises(ModelError, match=r"calls aten\.from_file\.default.*`unsafe_pickle`"):
        load_model(str(path))
    assert victim.read_bytes() == b"xxxx"


def test_exported_graph_refusal_on_the_cli(tmp_path, victim):
    path = file_writing_export(tmp_path, victim)
    data = save_tensors(tmp_path / "data.pt", torch.rand(4, 1, 8, 8), torch.arange(4))
    result = run_cli("eval", "--model", path, "--data", data, "--eps", "0.1", "--device", "cpu")
    assert_bad_input(result, "aten.from_file.default", "--unsafe-pickle")
    assert victim.read_bytes() == b"xxxx"


def test_unsafe_pickle_lets_the_graph_load(tmp_path, victim):
    loaded = load_model(str(file_writing_export(tmp_path, victim)), ModelOptions(unsafe_pickle=True))
    assert loaded.kind == "exported-program"


class ScriptedFiller(torch.nn.Module):
    def __init__(self, path: str):
        super().__init__()
        self.path = path

    def forward(self, x):
        t = self.helper()
        return x + t.sum() * 0

    def helper(self):  # the call hides in a second method
        return torch.from_file(self.path, shared=True, size=4, dtype=torch.uint8).fill_(65)


class Printer(torch.nn.Module):
    def forward(self, x):
        if x.sum() > -1:
            print("hello from the model")
        return x


def test_torchscript_touching_files_is_refused(tmp_path, victim):
    path = tmp_path / "writes.ts"
    torch.jit.save(torch.jit.script(ScriptedFiller(str(victim))), path)
    torch.jit.load(str(path))(X)  # the fixture is real
    assert victim.read_bytes() == b"AAAA"
    victim.write_bytes(b"xxxx")
    with pytest.raises(ModelError, match=r"TorchScript model calls aten::from_file.*`unsafe_pickle`"):
        load_model(str(path))
    assert victim.read_bytes() == b"xxxx"


def test_torchscript_print_in_a_branch_is_refused(tmp_path):
    path = tmp_path / "prints.ts"
    torch.jit.save(torch.jit.script(Printer()), path)
    with pytest.raises(ModelError, match="prim::Print"):
        load_model(str(path))


class SetState(torch.nn.Module):
    """TorchScript runs __setstate__ inside torch.jit.load: before any graph can be checked."""

    def __init__(self, path: str):
        super().__init__()
        self.path = path
        self.n = 0

    def forward(self, x):
        return x * 2

    @torch.jit.export
    def __getstate__(self) -> tuple[str, bool]:
        return (self.path, self.training)

    @torch.jit.export
    def __setstate__(self, state: tuple[str, bool]) -> None:
        self.path = state[0]
        self.training = state[1]
        self.n = int(torch.from_file(self.path, shared=True, size=4, dtype=torch.uint8).fill_(66).sum())


def test_torchscript_load_time_code_is_refused(tmp_path, victim):
    path = tmp_path / "setstate.ts"
    torch.jit.save(torch.jit.script(SetState(str(victim))), path)
    victim.write_bytes(b"xxxx")
    with pytest.raises(ModelError, match="__setstate__.*`unsafe_pickle`"):
        load_model(str(path))
    assert victim.read_bytes() == b"xxxx"
    torch.jit.load(str(path))  # the fixture is real: loading alone writes the file
    assert victim.read_bytes() == b"BBBB"


@pytest.mark.parametrize(
    "kind, allowed",
    [
        ("aten::conv2d", True),
        ("aten::relu_", True),
        ("prim::If", True),
        ("aten::view_copy", True),
        ("aten::from_file", False),
        ("prim::Print", False),
        ("aten::set_", False),
        ("aten::__setitem__", False),
        ("quantized::linear", False),
        ("prim::PythonOp", False),
    ],
)
def test_torchscript_kinds(kind, allowed):
    assert torchscript_kind_allowed(kind) is allowed


# ---------------------------------------------------------------------------------------------
# The list is not too narrow: every operator of the models people attack is on it.


def _digits():
    return DigitsCNN().eval(), torch.rand(2, 1, 8, 8)


def _torchvision(name: str, size: int = 64):
    def build():
        return torchvision.models.get_model(name, weights=None, num_classes=10).eval(), torch.rand(2, 3, size, size)

    return build


def _tiny_vit():
    # torchvision's VisionTransformer (the class of vit_b_16: the same operators), a few layers
    # wide: vit_b_16 itself takes 20 s to export for no operator more
    vit = torchvision.models.VisionTransformer(
        image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=16, mlp_dim=32, num_classes=10
    )
    return vit.eval(), torch.rand(2, 3, 32, 32)


REAL_MODELS = {
    "factory": lambda: (fm.make().eval(), X),
    "factory-training-mode": lambda: (fm.make().train(), X),
    "digits-cnn": _digits,
    "resnet18": _torchvision("resnet18"),
    "mobilenet_v3_small": _torchvision("mobilenet_v3_small"),
    "efficientnet_b0": _torchvision("efficientnet_b0"),
    "vit": _tiny_vit,
}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(REAL_MODELS))
def test_real_exported_models_are_allowed(tmp_path, name):
    model, x = REAL_MODELS[name]()
    started = time.perf_counter()
    path = tmp_path / "m.pt2"
    torch.export.save(torch.export.export(model, (x,), dynamic_shapes={"x": {0: torch.export.Dim("batch")}}), path)
    assert archive_refusals(path) == []  # symbolic sizes of a dynamic batch pass the sympy check
    loaded = load_model(str(path))
    assert fx_disallowed(loaded.module.graph) == []
    if time.perf_counter() - started > 20:  # do not script what is slow to build
        return
    script = tmp_path / "m.ts"
    torch.jit.save(torch.jit.script(model), script)
    assert torchscript_disallowed(torch.jit.load(str(script))) == []
    assert load_model(str(script)).kind == "torchscript"


@pytest.mark.parametrize("name", ["factory", "resnet18"])
def test_real_traced_models_are_allowed(tmp_path, name):
    model, x = REAL_MODELS[name]()
    path = tmp_path / "m.ts"
    torch.jit.save(torch.jit.trace(model, x), path)
    assert load_model(str(path)).kind == "torchscript"
