"""Models from a file: TorchScript, ExportedProgram (``.pt2``), ONNX, or — opted in — a whole pickle.

The file's contents, not its name, decide how it is read:

- a TorchScript archive (``torch.jit.save``: compiled code and tensors, no Python pickles);
- an ExportedProgram archive (``torch.export.save``): see :mod:`advgrad.io.model.exported`;
- an ONNX model (a protobuf ``ModelProto``): see :mod:`advgrad.io.model.onnx_file`;
- a ``torch.save`` pickle. Holding only tensors, it is a state dict and needs its architecture
  (``--model module:callable --weights FILE``). Holding a whole model, it names Python classes
  that unpickling would import and run: refused unless ``--unsafe-pickle``.
"""

from __future__ import annotations

import re
import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from advgrad.core.errors import ModelError, first_line
from advgrad.io.model.exported import load_exported
from advgrad.io.model.graph_ops import operator_refusal, torchscript_disallowed
from advgrad.io.model.model_types import LoadedModel, ModelOptions
from advgrad.io.model.onnx_file import is_onnx, load_onnx
from advgrad.io.model.weights import load_torch_file
from advgrad.io.paths import open_regular, require_file

EXPECTED = "a model file: ExportedProgram (.pt2, torch.export.save), ONNX (.onnx) or TorchScript (torch.jit.save)"
_STORAGE = re.compile(r"data/[0-9]+")
STATE_DICT_HINT = (
    "give its architecture: `model` package.module:callable `weights` FILE, or `model` torchvision:NAME `weights` FILE"
)


def file_kind(path: Path) -> str:
    """``torchscript``, ``exported``, ``pickle`` (torch.save), ``zip`` (other archive) or ``unknown``."""
    with open_regular(path, EXPECTED, ModelError, param="model") as fh:
        try:
            with zipfile.ZipFile(fh) as z:
                names = z.namelist()
        except (zipfile.BadZipFile, OSError):
            fh.seek(0)
            head = fh.read(2)
            return "damaged-zip" if head == b"PK" else ("pickle" if head[:1] == b"\x80" else "unknown")
    inner = {n.split("/", 1)[1] for n in names if "/" in n}
    if "archive_format" in inner:
        return "exported"
    if "constants.pkl" in inner or any(n.startswith("code/") for n in inner):
        return "torchscript"
    if "data.pkl" in inner:
        return "pickle"
    return "zip"


def _load_time_code(path: Path) -> bool:
    """Whether a TorchScript archive defines ``__setstate__``, which ``torch.jit.load`` runs while loading.

    Every member is searched, whatever its name: torch's reader finds members without regard to
    case, so the code need not sit where ``torch.jit.save`` puts it. Members are read both as
    Python's zip reader and as torch's own reader sees them, in case the two disagree on a
    crafted archive; torch's view skips tensor storages (``data/<n>``), which it never compiles.
    """
    needle = b"__setstate__"
    with zipfile.ZipFile(path) as z:
        for info in z.infolist():
            with z.open(info) as fh:
                tail = b""
                while chunk := fh.read(1 << 20):
                    if needle in tail + chunk:
                        return True
                    tail = chunk[-len(needle) :]
    reader = torch._C.PyTorchFileReader(str(path))
    return any(needle in reader.get_record(name) for name in reader.get_all_records() if not _STORAGE.fullmatch(name))


def load_torchscript(path: Path, options: ModelOptions) -> LoadedModel:
    """A TorchScript archive written by ``torch.jit.save``; its graphs must call allowed operators only.

    TorchScript code is compiled, not Python, but it can still call operators that touch files
    (``aten::from_file``) or print; see :mod:`advgrad.io.model.graph_ops`. Code in ``__setstate__``
    would run during loading itself, so an archive defining one is refused before loading.
    """
    if not options.unsafe_pickle:
        try:
            setstate = _load_time_code(path)
        except (zipfile.BadZipFile, OSError, RuntimeError) as exc:
            raise ModelError(f"{path}: cannot load as TorchScript, truncated or corrupt ({first_line(exc)})") from None
        if setstate:
            raise ModelError(
                f"{path}: the TorchScript model defines __setstate__, code that torch.jit.load runs while loading; "
                "advgrad does not load it unless you pass `unsafe_pickle` (only for files you trust)",
                params="unsafe_pickle",
            )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # TorchScript's deprecation notice
            module = torch.jit.load(str(path), map_location=options.device)
    except Exception as exc:
        raise ModelError(f"{path}: cannot load as TorchScript, truncated or corrupt ({first_line(exc)})") from None
    disallowed = torchscript_disallowed(module)
    if disallowed and not options.unsafe_pickle:
        raise ModelError(operator_refusal(path, "TorchScript model", disallowed), params="unsafe_pickle")
    return LoadedModel(module, "torchscript", str(path), f"TorchScript model from {path.name}")


def load_pickle(path: Path, options: ModelOptions) -> LoadedModel:
    """A ``torch.save`` file: a state dict is explained; a whole model needs ``--unsafe-pickle``."""
    refusal = (
        "a whole pickled model (torch.save(model))",
        "save it with torch.jit.save or torch.export.save, or save model.state_dict() and use "
        "`model` package.module:callable `weights` FILE",
    )
    obj = load_torch_file(path, "model", unsafe_pickle=options.unsafe_pickle, refusal=refusal)
    if isinstance(obj, (Mapping, torch.Tensor, list, tuple)):  # what weights_only=True reads: never a model
        raise ModelError(
            f"{path} holds weights only ({type(obj).__name__} of tensors), not a model; {STATE_DICT_HINT}",
            params=("model", "weights"),
        )
    if not isinstance(obj, nn.Module):
        raise ModelError(f"{path} unpickles to a {type(obj).__name__}, not a torch.nn.Module")
    return LoadedModel(
        obj.to(options.device),
        "pickle",
        str(path),
        f"pickled {type(obj).__name__} from {path.name} (loaded with --unsafe-pickle)",
    )


def load_model_file(spec: str, options: ModelOptions) -> LoadedModel:
    """Read a model file of any kind advgrad accepts (see the module docstring)."""
    path = require_file(spec, EXPECTED, ModelError, param="model")
    if path.suffix.lower() == ".safetensors":
        raise ModelError(
            f"{path} holds weights only (safetensors), not a model; {STATE_DICT_HINT}", params=("model", "weights")
        )
    kind = file_kind(path)
    if kind == "exported":
        return load_exported(path, options)
    if kind == "torchscript":
        return load_torchscript(path, options)
    if kind == "pickle":
        return load_pickle(path, options)
    if kind == "damaged-zip":
        raise ModelError(f"{path}: a truncated or damaged archive; save the model again")
    if kind == "zip":
        raise ModelError(f"{path}: a zip archive but not a model advgrad reads; expected {EXPECTED}")
    if is_onnx(path):
        return load_onnx(path, options)
    if path.suffix.lower() == ".onnx":
        raise ModelError(f"{path}: not a readable ONNX model, truncated or corrupt")
    raise ModelError(f"{path}: not a TorchScript, ExportedProgram, ONNX or torch.save file (truncated or corrupt?)")
