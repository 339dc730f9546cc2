"""ExportedProgram archives (``torch.export.save``, ``.pt2``): loaded without running file code.

A ``.pt2`` archive holds a graph of tensor operations (JSON) and tensors. torch's loader may
still unpickle parts of it with ``weights_only=False``; advgrad loads it with unpickling forced
to ``weights_only`` (``TORCH_FORCE_WEIGHTS_ONLY_LOAD``), first refuses archives from which torch
would deserialize anything but tensor data (:mod:`advgrad.io.model.exported_archive`), and refuses
graphs that call an operator not on the allow-list of pure tensor computations
(:mod:`advgrad.io.model.graph_ops`) — unless ``--unsafe-pickle``.

An exported graph keeps the train/eval behaviour it was exported with, so ``model.eval()``
cannot reach it; advgrad switches dropout and batch norm nodes to inference instead. A graph
exported with a fixed batch size runs on batches padded or split to that size.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import Tensor, nn

from advgrad.core.errors import ModelError, first_line
from advgrad.io.model.exported_archive import archive_refusals
from advgrad.io.model.graph_ops import fx_disallowed, operator_refusal
from advgrad.io.model.model_types import LoadedModel, ModelOptions
from advgrad.io.model.weights import refuse_pickle
from advgrad.io.pickles import needs_code


@contextlib.contextmanager
def _weights_only_unpickling() -> Iterator[None]:
    """Make every ``torch.load`` inside this block use ``weights_only=True``."""
    name = "TORCH_FORCE_WEIGHTS_ONLY_LOAD"
    before = os.environ.get(name)
    os.environ[name] = "1"
    try:
        yield
    finally:
        if before is None:
            del os.environ[name]
        else:
            os.environ[name] = before


def _refuse_unsafe_archive(path: Path) -> None:
    """Refuse an archive from which torch would deserialize more than tensor data."""
    try:
        reasons = archive_refusals(path)
    except ValueError as exc:
        raise ModelError(f"{path}: not an archive torch.export.load can read, truncated or corrupt ({exc})") from None
    if reasons:
        more = f" (and {len(reasons) - 1} more)" if len(reasons) > 1 else ""
        raise ModelError(
            f"{path}: {reasons[0]}{more}; loading it could run code from the file, so advgrad does not load it "
            "unless you pass `unsafe_pickle` (only for files you trust)",
            params="unsafe_pickle",
        )


def _to_inference(gm: torch.fx.GraphModule) -> int:
    """Switch dropout and batch-norm nodes exported in training mode to inference; count them."""
    switched = 0
    aten = torch.ops.aten
    where = {aten.dropout.default: 2, aten.batch_norm.default: 5, aten.native_dropout.default: 2}
    for node in gm.graph.nodes:
        index = where.get(node.target) if node.op == "call_function" else None
        if index is not None and len(node.args) > index and node.args[index] is True:
            node.update_arg(index, False)
            switched += 1
    if switched:
        gm.recompile()
    return switched


class ExportedModule(nn.Module):
    """An exported graph as a module advgrad can attack.

    ``train()``/``eval()`` stop here (the graph's mode is fixed; see :func:`_to_inference`).
    With ``fixed_batch`` set, inputs are padded with zeros or split to that batch size and the
    padding rows are dropped from the output; in inference mode samples do not interact, so
    this changes no sample's output or gradient.
    """

    def __init__(self, graph: nn.Module, input_shape: tuple, fixed_batch: int | None):
        super().__init__()
        self.graph = graph
        self.input_shape = input_shape  # C, H, W as exported (ints, or None where dynamic)
        self.fixed_batch = fixed_batch

    def train(self, mode: bool = True) -> ExportedModule:
        self.training = mode
        return self

    def _check_shape(self, x: Tensor) -> None:
        fixed = [(i, d) for i, d in enumerate(self.input_shape) if d is not None]
        if x.dim() != len(self.input_shape) + 1 or any(x.shape[i + 1] != d for i, d in fixed):
            want = "×".join("?" if d is None else str(d) for d in self.input_shape)
            raise ModelError(
                f"the exported model takes inputs of shape N×{want}; the data is {'×'.join(map(str, x.shape[1:]))}"
            )

    def forward(self, x: Tensor):
        self._check_shape(x)
        size = self.fixed_batch
        if size is None:
            return self.graph(x)
        outputs = []
        for chunk in x.split(size):
            n = chunk.shape[0]
            if n < size:
                chunk = torch.cat([chunk, chunk.new_zeros((size - n, *chunk.shape[1:]))])
            out = self.graph(chunk)
            if not isinstance(out, Tensor):
                raise ModelError(
                    f"the model was exported with a fixed batch size of {size} and returns {type(out).__name__}; "
                    "export it with a dynamic batch dimension (dynamic_shapes) or returning the logits tensor"
                )
            outputs.append(out[:n])
        return torch.cat(outputs)


def _user_input_shape(ep) -> tuple[tuple, int | None]:
    names = list(ep.graph_signature.user_inputs)
    if len(names) != 1:
        raise ModelError(f"the exported model takes {len(names)} inputs; advgrad feeds it one batch of images")
    node = next(n for n in ep.graph.nodes if n.op == "placeholder" and n.name == names[0])
    value = node.meta.get("val")
    if not isinstance(value, Tensor):
        raise ModelError("the exported model's input is not a tensor; advgrad feeds it one batch of images")
    dims = tuple(d if isinstance(d, int) else None for d in value.shape)
    return dims[1:], dims[0]


def load_exported(path: Path, options: ModelOptions) -> LoadedModel:
    """An ExportedProgram archive (see the module docstring for what is refused and why)."""
    guard = contextlib.nullcontext() if options.unsafe_pickle else _weights_only_unpickling()
    if not options.unsafe_pickle:
        _refuse_unsafe_archive(path)
    try:
        with guard:
            ep = torch.export.load(str(path))
    except Exception as exc:
        if needs_code(exc):
            raise refuse_pickle(
                path,
                "pickled Python objects besides its graph and tensors",
                "export the model again with torch.export.save",
            ) from None
        raise ModelError(f"{path}: cannot load the ExportedProgram ({type(exc).__name__}: {first_line(exc)})") from None
    shape, batch = _user_input_shape(ep)
    if not options.unsafe_pickle and (disallowed := fx_disallowed(ep.graph_module)):
        raise ModelError(operator_refusal(path, "exported graph", disallowed), params="unsafe_pickle")
    try:
        if options.device.type != "cpu":
            ep = torch.export.passes.move_to_device_pass(ep, options.device)
        graph = ep.module(check_guards=False)  # no guard code generated from the file and executed
    except Exception as exc:  # an archive whose parts do not fit together
        raise ModelError(
            f"{path}: cannot rebuild the exported model ({type(exc).__name__}: {first_line(exc)})"
        ) from None
    if not options.unsafe_pickle and (disallowed := fx_disallowed(graph)):  # and what unlifting made of it
        raise ModelError(operator_refusal(path, "exported graph", disallowed), params="unsafe_pickle")
    switched = _to_inference(graph)
    extra: dict = {"exported_batch": batch if batch is not None else "dynamic"}
    notes = []
    if switched:
        extra["switched_to_inference"] = switched
        notes.append(f"{switched} dropout/batch-norm node(s) exported in training mode switched to inference")
    if batch is not None:
        notes.append(f"exported with a fixed batch of {batch}: batches are padded or split to fit")
    description = f"ExportedProgram from {path.name}" + (f" ({'; '.join(notes)})" if notes else "")
    module = ExportedModule(graph, shape, batch).to(options.device)
    return LoadedModel(module, "exported-program", str(path), description, extra)
