"""Loading the model under attack.

Every loader returns a :class:`LoadedModel` whose module is in eval mode on the requested device.
Loading never executes code from a file: the default model's weights are read with
``weights_only=True``, and TorchScript archives hold compiled graphs, not pickled Python.
New forms of ``--model`` are a new :class:`ModelFormat` in ``FORMATS``.
"""

from __future__ import annotations

import warnings
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import torch
from torch import nn

from advgrad.errors import ModelError

DEFAULT_MODEL = "digits-cnn"


@dataclass
class LoadedModel:
    """A model ready to attack, and what to say about it."""

    module: nn.Module
    kind: str
    source: str
    description: str
    extra: dict = field(default_factory=dict)

    @property
    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.module.parameters())

    def to_dict(self) -> dict:
        return {
            "kind": self.kind,
            "source": self.source,
            "description": self.description,
            "parameters": self.parameter_count,
            **self.extra,
        }


@dataclass(frozen=True)
class ModelOptions:
    """Options that shape how a model is loaded (more come with more formats)."""

    device: torch.device = torch.device("cpu")


def load_default_model(device: torch.device | str = "cpu") -> nn.Module:
    """The embedded DigitsCNN with its trained weights, in eval mode."""
    from advgrad.models.digits import DigitsCNN

    model = DigitsCNN()
    asset = resources.files("advgrad") / "assets" / "digits_cnn.pt"
    with resources.as_file(asset) as path:
        state = torch.load(path, map_location="cpu", weights_only=True)
    model.load_state_dict(state)
    return model.to(device).eval()


def _load_default(spec: str, options: ModelOptions) -> LoadedModel:
    module = load_default_model(options.device)
    return LoadedModel(
        module, "default", DEFAULT_MODEL, "embedded DigitsCNN trained on the UCI digits (99.6% held-out accuracy)"
    )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:200]


def load_torchscript(spec: str, options: ModelOptions) -> LoadedModel:
    """A TorchScript archive written by ``torch.jit.save``."""
    path = Path(spec)
    if not path.exists():
        raise ModelError(f"{spec}: no such file")
    if path.is_dir():
        raise ModelError(f"{spec} is a directory; expected a TorchScript file (torch.jit.save)")
    if not zipfile.is_zipfile(path):
        raise ModelError(f"{spec}: not a TorchScript archive (truncated, or not written by torch.jit.save)")
    try:
        with warnings.catch_warnings():  # TorchScript is the documented input; torch's notice is noise here
            warnings.filterwarnings("ignore", message=r"`torch\.jit\.load` is deprecated", category=FutureWarning)
            module = torch.jit.load(str(path), map_location=options.device)
    except Exception as exc:
        raise ModelError(
            f"{spec}: cannot load as TorchScript ({_first_line(exc)}); "
            "a plain state dict or pickled model needs its architecture, not supported here"
        ) from None
    module.eval()
    return LoadedModel(module, "torchscript", str(path), f"TorchScript model from {path.name}")


@dataclass(frozen=True)
class ModelFormat:
    """A way of reading a model: ``matches(spec)`` says whether a ``--model`` value is of this form."""

    name: str
    matches: Callable[[str], bool]
    load: Callable[[str, ModelOptions], LoadedModel]


FORMATS: list[ModelFormat] = [
    ModelFormat("default", lambda s: s == DEFAULT_MODEL, _load_default),
    ModelFormat("torchscript", lambda s: True, load_torchscript),
]


def load_model(spec: str | None = None, options: ModelOptions | None = None) -> LoadedModel:
    """Load the model named by a ``--model`` value; ``None`` is the embedded default."""
    options = options or ModelOptions()
    spec = DEFAULT_MODEL if spec is None else str(spec)
    for fmt in FORMATS:
        if fmt.matches(spec):
            loaded = fmt.load(spec, options)
            loaded.module.eval()
            return loaded
    raise ModelError(f"{spec}: unrecognised model")  # pragma: no cover - the last format matches all
