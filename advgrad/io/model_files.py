"""Models from a file: TorchScript, ExportedProgram (``.pt2``), or — opted in — a whole pickle.

The file's contents, not its name, decide how it is read:

- a TorchScript archive (``torch.jit.save``: compiled code and tensors, no Python pickles);
- an ExportedProgram archive (``torch.export.save``): see :mod:`advgrad.io.exported`;
- a ``torch.save`` pickle. Holding only tensors, it is a state dict and needs its architecture
  (``--model module:callable --weights FILE``). Holding a whole model, it names Python classes
  that unpickling would import and run: refused unless ``--unsafe-pickle``.
"""

from __future__ import annotations

import warnings
import zipfile
from pathlib import Path

import torch
from torch import nn

from advgrad.errors import ModelError
from advgrad.io.exported import load_exported
from advgrad.io.model_types import LoadedModel, ModelOptions
from advgrad.io.paths import first_line, require_file
from advgrad.io.weights import refuse_pickle, unreadable

EXPECTED = "a model file: TorchScript (torch.jit.save) or ExportedProgram (.pt2, torch.export.save)"
STATE_DICT_HINT = (
    "give its architecture: --model package.module:callable --weights FILE, or --model torchvision:NAME --weights FILE"
)


def file_kind(path: Path) -> str:
    """``torchscript``, ``exported``, ``pickle`` (torch.save), ``zip`` (other archive) or ``unknown``."""
    try:
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
    except (zipfile.BadZipFile, OSError):
        with open(path, "rb") as fh:
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


def load_torchscript(path: Path, options: ModelOptions) -> LoadedModel:
    """A TorchScript archive written by ``torch.jit.save``."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # TorchScript's deprecation notice
            module = torch.jit.load(str(path), map_location=options.device)
    except Exception as exc:
        raise ModelError(f"{path}: cannot load as TorchScript, truncated or corrupt ({first_line(exc)})") from None
    return LoadedModel(module, "torchscript", str(path), f"TorchScript model from {path.name}")


def load_pickle(path: Path, options: ModelOptions) -> LoadedModel:
    """A ``torch.save`` file: a state dict is explained; a whole model needs ``--unsafe-pickle``."""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        damage = unreadable(path, exc)
        if damage is not None:
            raise ModelError(f"{path}: not a readable model file, truncated or corrupt ({damage})") from None
        if not options.unsafe_pickle:
            raise refuse_pickle(
                path, "a whole pickled model (torch.save(model))",
                "save it with torch.jit.save or torch.export.save, or save model.state_dict() and use "
                "--model package.module:callable --weights FILE",
            ) from None
        return _load_whole_pickle(path, options)
    raise ModelError(f"{path} holds weights only ({type(obj).__name__} of tensors), not a model; {STATE_DICT_HINT}")


def _load_whole_pickle(path: Path, options: ModelOptions) -> LoadedModel:
    """``torch.load(weights_only=False)``: runs code from the file. Only behind --unsafe-pickle."""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # e.g. the pickled class cannot be imported here
        raise ModelError(f"{path}: cannot unpickle it ({type(exc).__name__}: {first_line(exc)})") from None
    if not isinstance(obj, nn.Module):
        raise ModelError(f"{path} unpickles to a {type(obj).__name__}, not a torch.nn.Module")
    return LoadedModel(
        obj.to(options.device), "pickle", str(path),
        f"pickled {type(obj).__name__} from {path.name} (loaded with --unsafe-pickle)",
    )


def load_model_file(spec: str, options: ModelOptions) -> LoadedModel:
    """Read a model file of any kind advgrad accepts (see the module docstring)."""
    path = require_file(spec, EXPECTED, ModelError)
    if path.suffix.lower() == ".safetensors":
        raise ModelError(f"{path} holds weights only (safetensors), not a model; {STATE_DICT_HINT}")
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
    raise ModelError(f"{path}: not a TorchScript, ExportedProgram or torch.save file (truncated or corrupt?)")
