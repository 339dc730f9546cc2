"""The model a training run starts from, and what it writes: weights and an ExportedProgram."""

from __future__ import annotations

import io
from pathlib import Path

import torch
from torch import nn

from advgrad.core.errors import ModelError, UsageError
from advgrad.io.files import atomic_path
from advgrad.io.model.factories import build_factory, build_torchvision, is_factory
from advgrad.io.model.weights import load_weights
from advgrad.models import ARCHITECTURES

DEFAULT_ARCHITECTURE = "digits-cnn"


def build_model(spec: str | None, model_args: dict, weights: str | None) -> tuple[nn.Module, str]:
    """A trainable module and its description from a ``--model`` value of ``advgrad train``:
    an architecture shipped with advgrad by name (fresh weights), ``package.module:callable`` or
    ``torchvision:NAME`` (as everywhere), each with optional ``weights`` to fine-tune. A model
    file is refused: TorchScript and ExportedPrograms are fixed graphs, not code to train."""
    spec = DEFAULT_ARCHITECTURE if spec is None else str(spec).strip()
    if spec in ARCHITECTURES:
        try:
            module = ARCHITECTURES[spec](**model_args)
        except (TypeError, ValueError) as exc:
            raise UsageError(f"`model_args` do not fit {spec}: {exc}", params="model_args") from None
        if weights is not None:
            load_weights(module, weights, spec)
        kind = "fine-tuned from " + str(weights) if weights else "fresh weights"
        return module, f"{type(module).__name__} ({spec}, {kind})"
    if spec.startswith("torchvision:"):
        module, _, _ = build_torchvision(spec.split(":", 1)[1], model_args, weights, unsafe_pickle=False)
        return module, f"torchvision {spec.split(':', 1)[1]}"
    if is_factory(spec):
        module, _ = build_factory(spec, model_args, weights, unsafe_pickle=False)
        return module, f"{type(module).__name__} built by {spec}"
    _refuse_file(spec)
    raise AssertionError("unreachable")  # pragma: no cover


def _refuse_file(spec: str) -> None:
    from advgrad.io.model.model_files import file_kind

    names = ", ".join(ARCHITECTURES)
    hint = f"give its architecture as package.module:callable (with --weights to fine-tune) or a name ({names})"
    path = Path(spec).expanduser()
    if not path.exists():
        raise ModelError(f"{spec}: not an architecture name ({names}), package.module:callable or torchvision:NAME")
    kind = file_kind(path) if path.is_file() else None
    if kind == "torchscript":
        raise ModelError(f"{spec} is a TorchScript model, which cannot be trained; {hint}", params="model")
    if kind == "exported":
        raise ModelError(
            f"{spec} is an ExportedProgram, a fixed graph that advgrad does not train; {hint}", params="model"
        )
    raise ModelError(f"{spec}: a model file cannot be trained; {hint}", params="model")


def save_weights(module: nn.Module, path: str | Path, metadata: dict[str, str] | None = None) -> None:
    """The state dict as ``.safetensors`` (tensors only: loads without running code), atomically,
    with ``metadata`` (strings) in its header."""
    from safetensors.torch import save_file

    state = {k: v.detach().cpu().contiguous().clone() for k, v in module.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata=metadata)


def export_program(
    module: nn.Module, example: torch.Tensor, path: str | Path, metadata: dict[str, str] | None = None
) -> None:
    """``torch.export`` the model in eval mode with a dynamic batch dimension and save it
    atomically, ``metadata`` as the archive's extra files: ``advgrad eval --model PATH`` loads it."""
    from advgrad.bounds.graph import export_model

    try:
        program = export_model(module, example)
    except Exception as exc:  # noqa: BLE001 -- torch.export raises many kinds; one line
        raise ModelError(f"cannot export the trained model: {str(exc).splitlines()[0]}") from None
    buffer = io.BytesIO()  # torch.export.save wants a .pt2 name or a buffer; the temporary file has neither
    torch.export.save(program, buffer, extra_files=metadata)
    with atomic_path(path) as tmp:
        tmp.write_bytes(buffer.getvalue())
