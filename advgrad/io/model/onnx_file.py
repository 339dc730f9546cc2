"""ONNX models: converted to torch with onnx2torch, so that every gradient attack works, and checked
against onnxruntime on the probe batch.

An ONNX file is a protobuf ``ModelProto``; :func:`is_onnx` recognises one by walking its top-level
fields (no ``onnx`` package needed, so that a missing extra can be named). Loading needs the
``advgrad[onnx]`` extra: onnx, onnx2torch and onnxruntime.

What a crafted file could try, and what stops it:

- tensors kept in *external data* files name a path; a path that leaves the model's folder
  (``../``, an absolute path, a symbolic link pointing out) would read any file the user can read.
  Every location is checked before anything is read (:func:`check_external_data`);
- onnx2torch turns node names into module names and ``torch.fx`` writes them into Python source
  that it then executes (``getattr(self, "NAME")``): a name holding a quote could run code. Every
  node is renamed ``n0``, ``n1``… before conversion, and the converted graph may only call its own
  modules (:func:`_check_converted`);
- operators outside ONNX's standard domains have no converter and are refused by name.

Before conversion, what onnx2torch cannot read as weights but that computes the same is rewritten
(:func:`_inline_aliases`, :func:`_drop_idle_allowzero`); onnxruntime runs the file as it is, so the
check covers these rewrites too.
"""

from __future__ import annotations

import contextlib
import operator
import os
import re
import warnings
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import Tensor, nn

from advgrad.core.errors import ModelError, first_line
from advgrad.io.model.exported import ExportedModule
from advgrad.io.model.extras import require
from advgrad.io.model.model_types import LoadedModel, ModelOptions
from advgrad.io.paths import file_problem, open_regular

EXTRA = "onnx"
# Converted and onnxruntime logits agree when max |difference| ≤ RTOL · max(1, max |onnxruntime logit|).
RTOL = 1e-3
_MODEL_FIELDS = {1: 0, 2: 2, 3: 2, 4: 2, 5: 0, 6: 2, 7: 2, 8: 2, 14: 2, 20: 2, 25: 2, 26: 2}  # field → wire type
_MAX_FIELDS = 1 << 16
_UNSUPPORTED = re.compile(r"domain='([^']*)', operation_type='([^']*)', version=(\d+)")
_SAFE_TARGET = re.compile(r"^[A-Za-z0-9_/]+(\.[A-Za-z0-9_/]+)*$")
_FLOAT, _EXTERNAL = 1, 1  # TensorProto.FLOAT, TensorProto.EXTERNAL


# ---------------------------------------------------------------------------------------------
# recognising the file


def _varint(fh) -> int | None:
    value = shift = 0
    for _ in range(10):
        byte = fh.read(1)
        if not byte:
            return None
        value |= (byte[0] & 0x7F) << shift
        if byte[0] < 0x80:
            return value
        shift += 7
    return None


def is_onnx(path: Path) -> bool:
    """Whether ``path`` holds an ONNX ``ModelProto``: its top-level protobuf fields are all fields
    of ModelProto with their wire types, fill the file exactly, start with ``ir_version`` and
    include a graph. Reads field headers only (payloads are skipped)."""
    seen: set[int] = set()
    with open_regular(path, "an ONNX model", ModelError, param="model") as fh:
        size = os.fstat(fh.fileno()).st_size
        for _ in range(_MAX_FIELDS):
            if fh.tell() == size:
                return 1 in seen and 7 in seen
            key = _varint(fh)
            if key is None:
                return False
            number, wire = key >> 3, key & 7
            if _MODEL_FIELDS.get(number) != wire or (not seen and number != 1):
                return False
            value = _varint(fh)
            if value is None:
                return False
            if number == 1 and not 1 <= value <= 100:  # ir_version
                return False
            if wire == 2:
                if fh.tell() + value > size:
                    return False
                fh.seek(value, 1)
            seen.add(number)
    return False


# ---------------------------------------------------------------------------------------------
# what the file refers to and what conversion makes of it


def _graph_tensors(graph):
    """Every TensorProto of a graph and of the subgraphs in its nodes' attributes."""
    yield from graph.initializer
    for sparse in graph.sparse_initializer:
        yield from (sparse.values, sparse.indices)
    for node in graph.node:
        yield from _attribute_tensors(node.attribute)


def _attribute_tensors(attributes):
    for attr in attributes:
        if attr.HasField("t"):
            yield attr.t
        yield from attr.tensors
        for sparse in [attr.sparse_tensor] if attr.HasField("sparse_tensor") else []:
            yield from (sparse.values, sparse.indices)
        for sparse in attr.sparse_tensors:
            yield from (sparse.values, sparse.indices)
        if attr.HasField("g"):
            yield from _graph_tensors(attr.g)
        for sub in attr.graphs:
            yield from _graph_tensors(sub)


def model_tensors(model):
    """Every TensorProto in ``model``: graph, subgraphs, functions and training graphs."""
    yield from _graph_tensors(model.graph)
    for function in model.functions:
        for node in function.node:
            yield from _attribute_tensors(node.attribute)
    for info in model.training_info:
        yield from _graph_tensors(info.initialization)
        yield from _graph_tensors(info.algorithm)


def check_external_data(model, path: Path) -> int:
    """Refuse any external-data location that is not a regular file inside the model's folder (after
    following symbolic links); return how many tensors keep their data outside the ``.onnx`` file."""
    folder = Path(os.path.realpath(path)).parent
    count = 0
    for tensor in model_tensors(model):
        if tensor.data_location != _EXTERNAL:
            continue
        count += 1
        location = next((e.value for e in tensor.external_data if e.key == "location"), "")
        problem = _location_problem(folder, location)
        if problem is not None:
            raise ModelError(
                f"{path}: tensor {tensor.name[:80]!r} keeps its data in {location[:120]!r}, which is not a file "
                f"inside the model's folder ({problem}); advgrad reads ONNX external data only from regular files "
                "beside the model"
            )
    return count


def _location_problem(folder: Path, location: str) -> str | None:
    """Why an external-data ``location`` cannot be read (a few words), or None. ``realpath`` never
    raises, a symbolic-link loop included: ``stat`` then names it (:func:`file_problem`)."""
    if not location or "\0" in location:
        return "an empty or invalid file name"
    if Path(location).is_absolute() or location.startswith(("/", "\\")):
        return "an absolute path"
    if not Path(os.path.realpath(folder / location)).is_relative_to(folder):
        return "it leads out of the folder"
    problem = file_problem(folder / location)
    return None if problem is None else f"it is {problem}"


def _rename_nodes(graph, counter: list[int]) -> None:
    """Give every node (subgraphs too) a plain name: node names end up in Python source (module docstring)."""
    for node in graph.node:
        node.name = f"n{counter[0]}"
        counter[0] += 1
        for attr in node.attribute:
            for sub in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs):
                _rename_nodes(sub, counter)


def _inline_aliases(graph, onnx) -> int:
    """Turn what onnx2torch cannot read as a weight into plain initializers: ``Constant`` nodes holding
    a tensor, and ``Identity`` nodes over an initializer (torch's exporter writes these for weights
    with equal values, e.g. the zero biases of convolutions with folded batch norm). The graph
    computes the same; the count of nodes removed is returned."""
    initializers = {t.name for t in graph.initializer}
    outputs = {o.name for o in graph.output}
    alias: dict[str, str] = {}
    keep = []
    for node in graph.node:
        plain = node.domain in ("", "ai.onnx") and len(node.output) == 1 and node.output[0] not in outputs
        value = next((a for a in node.attribute if a.name == "value" and a.HasField("t")), None)
        if plain and node.op_type == "Constant" and value is not None and len(node.attribute) == 1:
            tensor = onnx.TensorProto()
            tensor.CopyFrom(value.t)
            tensor.name = node.output[0]
            graph.initializer.append(tensor)
            initializers.add(tensor.name)
            continue
        source = alias.get(node.input[0], node.input[0]) if len(node.input) == 1 else None
        if plain and node.op_type == "Identity" and source in initializers:
            alias[node.output[0]] = source
            continue
        keep.append(node)
    if alias:
        for node in keep:
            for i, name in enumerate(node.input):
                node.input[i] = alias.get(name, name)
    removed = len(graph.node) - len(keep)
    if removed:
        del graph.node[:]
        graph.node.extend(keep)
    return removed


def _drop_idle_allowzero(graph, onnx) -> None:
    """Remove ``allowzero=1`` from ``Reshape`` nodes whose target shape is an initializer without a 0
    (torch's newer exporter writes it everywhere; onnx2torch refuses it, and without a 0 in the shape
    it changes nothing)."""
    shapes = {t.name: t for t in graph.initializer}
    for node in graph.node:
        if node.op_type != "Reshape" or len(node.input) < 2 or node.input[1] not in shapes:
            continue
        flag = next((a for a in node.attribute if a.name == "allowzero"), None)
        if flag is not None and flag.i == 1 and 0 not in onnx.numpy_helper.to_array(shapes[node.input[1]]).tolist():
            node.attribute.remove(flag)


def _check_converted(gm: torch.fx.GraphModule, path: Path) -> None:
    """The converted graph calls its own submodules and buffers and ``getitem`` only."""
    for node in gm.graph.nodes:
        if node.op in ("placeholder", "output"):
            continue
        ok = (node.op in ("call_module", "get_attr") and _SAFE_TARGET.match(str(node.target))) or (
            node.op == "call_function" and node.target is operator.getitem
        )
        if not ok:
            raise ModelError(f"{path}: the converted ONNX graph holds an unexpected {node.op} node ({node.target!r})")


def _convert(model, path: Path) -> nn.Module:
    onnx2torch = require("onnx2torch", EXTRA, "an ONNX model")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            gm = onnx2torch.convert(model)
    except NotImplementedError as exc:
        found = _UNSUPPORTED.search(str(exc))
        if found:
            domain, op, version = found.groups()
            name = f"{domain}.{op}" if domain else op
            raise ModelError(
                f"{path}: onnx2torch has no converter for the ONNX operator {name} (opset {version}), so advgrad "
                "cannot compute gradients through the model; export it again with operators onnx2torch supports "
                "(e.g. a lower opset_version) or as an ExportedProgram (.pt2)"
            ) from None
        raise ModelError(f"{path}: onnx2torch cannot convert the model ({first_line(exc)})") from None
    except Exception as exc:
        raise ModelError(
            f"{path}: onnx2torch cannot convert the model ({type(exc).__name__}: {first_line(exc)})"
        ) from None
    _check_converted(gm, path)
    return gm.eval()


# ---------------------------------------------------------------------------------------------
# inputs, the onnxruntime check and loading


def _input(model, path: Path) -> tuple[str, tuple, int | None]:
    """The graph's one image input: its name, C×H×W (None where symbolic) and fixed batch size."""
    initializers = {t.name for t in model.graph.initializer}
    inputs = [v for v in model.graph.input if v.name not in initializers]
    if len(inputs) != 1:
        raise ModelError(f"{path}: the ONNX model takes {len(inputs)} inputs; advgrad feeds it one batch of images")
    tensor = inputs[0].type.tensor_type
    if tensor.elem_type != _FLOAT:
        raise ModelError(
            f"{path}: the ONNX model's input has element type {tensor.elem_type} (see onnx.TensorProto), "
            "not float32; advgrad feeds it float32 pixels"
        )
    dims = tuple(d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None for d in tensor.shape.dim)
    if not dims:
        return inputs[0].name, (), None
    return inputs[0].name, dims[1:], dims[0]


@contextlib.contextmanager
def _full_float32() -> Iterator[None]:
    """CUDA convolutions and matrix products in full float32 (no TF32), as onnxruntime on the CPU
    computes them, so that the comparison measures the conversion and not the arithmetic."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


class OnnxCheck:
    """Compares the converted model with onnxruntime on a batch (the probe's)."""

    def __init__(self, model, path: Path, name: str, batch: int | None):
        ort = require("onnxruntime", EXTRA, "checking an ONNX model")
        options = ort.SessionOptions()
        options.log_severity_level = 3
        options.intra_op_num_threads = max(1, torch.get_num_threads())
        source = model.SerializeToString() if model.ByteSize() < (1 << 31) - 1 else str(path)
        try:
            self.session = ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
        except Exception as exc:
            raise ModelError(f"{path}: onnxruntime cannot load the model ({first_line(exc)})") from None
        self.path, self.name, self.batch = path, name, batch

    def reference(self, x: Tensor) -> Tensor:
        """onnxruntime's first output on ``x`` (padded or split to a fixed batch size)."""
        size = self.batch or x.shape[0]
        outputs = []
        for chunk in x.detach().float().cpu().split(size):
            n = chunk.shape[0]
            if n < size:
                chunk = torch.cat([chunk, chunk.new_zeros((size - n, *chunk.shape[1:]))])
            try:
                out = torch.as_tensor(self.session.run(None, {self.name: chunk.numpy()})[0])
            except Exception as exc:  # a failure, or a first output that is no tensor (a sequence, a map)
                raise ModelError(f"{self.path}: onnxruntime failed on the probe batch ({first_line(exc)})") from None
            outputs.append(out[:n])
        return torch.cat(outputs)

    def __call__(self, module: nn.Module, x: Tensor) -> None:
        """Raise when ``module`` (the converted model) and onnxruntime disagree on ``x``."""
        with torch.no_grad(), _full_float32():
            converted = module(x)
        if isinstance(converted, (tuple, list)):
            converted = next((t for t in converted if isinstance(t, Tensor)), None)
        expected = self.reference(x)
        if not isinstance(converted, Tensor) or converted.shape != expected.shape:
            got = tuple(converted.shape) if isinstance(converted, Tensor) else type(converted).__name__
            raise ModelError(
                f"{self.path}: the converted model's output {got} does not match onnxruntime's {tuple(expected.shape)}"
            )
        converted = converted.detach().float().cpu()
        scale = max(1.0, float(expected.abs().max())) if expected.numel() else 1.0
        gap = float((converted - expected).abs().max()) if expected.numel() else 0.0
        if not gap <= RTOL * scale:  # NaN fails too
            raise ModelError(
                f"{self.path}: onnx2torch's conversion disagrees with onnxruntime on the probe batch (largest logit "
                f"difference {gap:.3g}, tolerance {RTOL:g} × {scale:.3g}); advgrad would attack a different model, "
                "so it stops: export the model as an ExportedProgram (.pt2) instead"
            )


def load_onnx(path: Path, options: ModelOptions) -> LoadedModel:
    """An ONNX file (see the module docstring): converted, checked, on ``options.device``."""
    onnx = require("onnx", EXTRA, "an ONNX model")
    require("onnx.numpy_helper", EXTRA, "an ONNX model")
    require("onnx2torch", EXTRA, "an ONNX model")
    require("onnxruntime", EXTRA, "checking an ONNX model")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:
        raise ModelError(f"{path}: not a readable ONNX model, truncated or corrupt ({first_line(exc)})") from None
    external = check_external_data(model, path)
    if external:
        try:
            onnx.load_external_data_for_model(model, os.path.dirname(os.path.realpath(path)))
        except Exception as exc:
            raise ModelError(f"{path}: cannot read its external data ({first_line(exc)})") from None
    name, shape, batch = _input(model, path)
    check = OnnxCheck(model, path, name, batch)  # onnxruntime runs the graph as the file has it
    _rename_nodes(model.graph, [0])
    _inline_aliases(model.graph, onnx)
    _drop_idle_allowzero(model.graph, onnx)
    graph = _convert(model, path)
    module = ExportedModule(graph, shape, batch).to(options.device) if shape else graph.to(options.device)
    notes = [f"opset {max((o.version for o in model.opset_import if o.domain in ('', 'ai.onnx')), default=0)}"]
    if batch is not None:
        notes.append(f"a fixed batch of {batch}: batches are padded or split to fit")
    if external:
        notes.append(f"{external} tensor(s) in external data files")
    extra = {
        "onnx_batch": batch if batch is not None else "dynamic",
        "onnx_check": f"converted by onnx2torch; logits checked against onnxruntime on the probe batch (tolerance "
        f"{RTOL:g} × max(1, largest |logit|))",
    }
    loaded = LoadedModel(module, "onnx", str(path), f"ONNX model from {path.name} ({'; '.join(notes)})", extra)
    loaded.verify = lambda x: check(module, x)
    return loaded
