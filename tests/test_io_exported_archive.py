"""Crafted .pt2 archives (advgrad/io/model/exported_archive.py): whatever torch.export.load would
deserialize beyond tensor data is refused before torch reads it, however the members are spelled."""

from __future__ import annotations

import contextlib
import json
import pathlib
import pickle
import zipfile

import factory_models as fm
import pytest
import torch
from loading_fixtures import assert_bad_input, run_cli, save_tensors

from advgrad.core.errors import ModelError
from advgrad.io.model.exported_archive import archive_refusals, safe_sympy_expression
from advgrad.io.model.load_model import ModelOptions, load_model

X = torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(0))


class Touch:
    """Unpickling this creates ``marker``: proof that code from the file ran."""

    def __init__(self, marker: pathlib.Path):
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (self.marker,))


def exported(path: pathlib.Path, dynamic: bool = False) -> pathlib.Path:
    shapes = {"x": {0: torch.export.Dim("batch")}} if dynamic else None
    torch.export.save(torch.export.export(fm.make().eval(), (X,), dynamic_shapes=shapes), path)
    return path


def rebuild(src: pathlib.Path, dst: pathlib.Path, edit_json=None, extra: dict | None = None) -> pathlib.Path:
    """Copy an archive; ``edit_json(name, parsed)`` may change JSON members; ``extra`` adds members
    (named below the archive's root folder)."""
    with zipfile.ZipFile(src) as zin:
        members = {n: zin.read(n) for n in zin.namelist()}
    root = next(iter(members)).split("/", 1)[0]
    with zipfile.ZipFile(dst, "w") as zout:
        for name, data in members.items():
            if edit_json is not None and name.endswith(".json"):
                data = json.dumps(edit_json(name.split("/", 1)[1], json.loads(data))).encode()
            zout.writestr(name, data)
        for name, data in (extra or {}).items():
            zout.writestr(f"{root}/{name}", data)
    return dst


def with_pickled_constant(tmp_path, member: str, path_name: str, marker: pathlib.Path) -> pathlib.Path:
    """An archive whose constants config names ``path_name`` (read from ``member``), a pickle
    that creates ``marker`` when unpickled."""

    def edit(name, parsed):
        if name == "data/constants/model_constants_config.json":
            parsed["config"]["evil"] = {
                "path_name": path_name,
                "is_param": False,
                "use_pickle": True,
                "tensor_meta": None,
            }
        return parsed

    base = exported(tmp_path / "base.pt2")
    return rebuild(base, tmp_path / "evil.pt2", edit, {member: pickle.dumps(Touch(marker))})


# member spellings torch's case-insensitive reader resolves to data/constants/opaque_obj_0
SPELLINGS = [
    "data/constants/opaque_obj_0",
    "data/constants/Opaque_obj_0",
    "data/CONSTANTS/opaque_obj_0",
    "DATA/Constants/OPAQUE_OBJ_0",
]


@pytest.mark.parametrize("member", SPELLINGS)
def test_torch_unpickles_the_crafted_constant(tmp_path, member):
    """The fixture is real: torch.export.load itself runs the pickle, whatever the spelling."""
    marker = tmp_path / "code-ran"
    path = with_pickled_constant(tmp_path, member, "opaque_obj_0", marker)
    torch.export.load(str(path))
    assert marker.exists()


@pytest.mark.parametrize("member", SPELLINGS)
def test_opaque_constant_refused_however_spelled(tmp_path, member):
    marker = tmp_path / "code-ran"
    path = with_pickled_constant(tmp_path, member, "opaque_obj_0", marker)
    with pytest.raises(
        ModelError, match=r"'evil' \(stored as 'opaque_obj_0'\) is a pickled Python object.*`unsafe_pickle`"
    ):
        load_model(str(path))
    assert not marker.exists()


@pytest.mark.parametrize("path_name", ["custom_obj_0", "tensor_7", "something_else"])
def test_other_pickled_constants_refused(tmp_path, path_name):
    marker = tmp_path / "code-ran"
    path = with_pickled_constant(tmp_path, f"data/constants/{path_name}", path_name, marker)
    with pytest.raises(ModelError, match="`unsafe_pickle`"):
        load_model(str(path))
    assert not marker.exists()


def test_pickled_weight_refused(tmp_path):
    def edit(name, parsed):
        if name == "data/weights/model_weights_config.json":
            first = next(iter(parsed["config"].values()))
            first["use_pickle"] = True
        return parsed

    path = rebuild(exported(tmp_path / "base.pt2"), tmp_path / "w.pt2", edit)
    with pytest.raises(ModelError, match="is a pickle, not raw tensor data"):
        load_model(str(path))


def test_refusal_through_the_cli_is_one_line_exit_2(tmp_path):
    marker = tmp_path / "code-ran"
    path = with_pickled_constant(tmp_path, "data/CONSTANTS/Opaque_obj_0", "opaque_obj_0", marker)
    data = save_tensors(tmp_path / "data.pt", X, torch.arange(4))
    result = run_cli("eval", "--model", path, "--data", data, "--eps", "0.1", "--device", "cpu")
    assert_bad_input(result, "evil.pt2", "pickled Python object", "--unsafe-pickle")
    assert not marker.exists()


def test_unsafe_pickle_opts_in(tmp_path):
    marker = tmp_path / "code-ran"
    path = with_pickled_constant(tmp_path, "data/constants/Opaque_obj_0", "opaque_obj_0", marker)
    with contextlib.suppress(ModelError):  # the object is no tensor, so the graph cannot use it
        load_model(str(path), ModelOptions(unsafe_pickle=True))
    assert marker.exists()  # what the flag allows, and why it is dangerous


def test_symbolic_size_that_is_code_refused(tmp_path):
    """torch parses graph size expressions with sympy.sympify, which evaluates Python."""
    marker = tmp_path / "code-ran"
    code = f"__import__('pathlib').Path({str(marker)!r}).touch() or "

    def edit(name, parsed):
        if name == "models/model.json":
            text = json.dumps(parsed).replace(
                '"expr_str": "Symbol(', '"expr_str": "' + code.replace('"', '\\"') + "Symbol(", 1
            )
            return json.loads(text)
        return parsed

    path = rebuild(exported(tmp_path / "base.pt2", dynamic=True), tmp_path / "sym.pt2", edit)
    assert "__import__" in zipfile.ZipFile(path).read("base/models/model.json").decode()
    with pytest.raises(ModelError, match="symbolic size that is Python code"):
        load_model(str(path))
    assert not marker.exists()


@pytest.mark.parametrize(
    "text, safe",
    [
        ("Symbol('s77', positive=True, integer=True)", True),
        ("2*s0 + FloorDiv(s1, 2)", True),
        ("Max(1, s77) <= 64", True),
        ("Mul(Float('0.5', precision=53), Symbol('s0', integer=True))", True),
        ("Float('1.5; x')", False),
        ("__import__('os').system('id')", False),
        ("open('s0', 'w')", False),
        ("s0.__class__", False),
        ("Symbol('x; import os')", False),
        ("sympify('open')", False),
    ],
)
def test_safe_sympy_expression(text, safe):
    assert safe_sympy_expression(text) is safe


def test_guard_code_never_runs(tmp_path):
    """Guard code in the graph is Python that ExportedProgram.module() would execute; advgrad
    unlifts the graph without guards, so it never runs."""
    marker = tmp_path / "code-ran"

    def edit(name, parsed):
        if name == "models/model.json":
            parsed["guards_code"] = [f"__import__('pathlib').Path({str(marker)!r}).touch() is None"]
        return parsed

    path = rebuild(exported(tmp_path / "base.pt2"), tmp_path / "guards.pt2", edit)
    torch.export.load(str(path)).module()(X)  # the fixture is real: torch runs the guard
    assert marker.exists()
    marker.unlink()
    loaded = load_model(str(path))
    with torch.no_grad():
        loaded.module(X)
    assert not marker.exists()


def test_compiled_code_refused(tmp_path):
    path = rebuild(
        exported(tmp_path / "base.pt2"), tmp_path / "aoti.pt2", extra={"data/AOTInductor/model/model.so": b"\x7fELF"}
    )
    with pytest.raises(ModelError, match="compiled code"):
        load_model(str(path))


def test_old_format_members_refused(tmp_path):
    """A member outside the archive's folder: torch's reader fails and torch reads the old layout."""
    base = exported(tmp_path / "base.pt2")
    path = tmp_path / "old.pt2"
    with zipfile.ZipFile(base) as zin, zipfile.ZipFile(path, "w") as zout:
        for name in zin.namelist():
            zout.writestr(name, zin.read(name))
        zout.writestr("version", b"8.20")
    with pytest.raises(ModelError, match="old.pt2"):
        load_model(str(path))


def test_plain_export_has_nothing_to_refuse(tmp_path):
    assert archive_refusals(exported(tmp_path / "m.pt2")) == []
    assert archive_refusals(exported(tmp_path / "d.pt2", dynamic=True)) == []
