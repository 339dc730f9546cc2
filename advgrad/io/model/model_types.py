"""What a model loader returns, and the options every loader reads."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import torch
from torch import nn

from advgrad.core.errors import Notice
from advgrad.io.model.normalize import Normalization


@dataclass
class LoadedModel:
    """A model ready to attack, and what to say about it.

    ``module`` takes pixels in [0, 1] (any normalisation is inside it) and is in eval mode on
    the requested device. ``normalization`` is what :func:`advgrad.io.model.load_model.load_model` put in
    front of it (a loader may propose one, e.g. pretrained weights' own); ``extra`` holds facts a
    loader found worth reporting, ``warnings`` what the user should know before trusting results.
    ``class_names``: the names of the model's outputs, when the model file carries them (a Hugging
    Face ``id2label``). ``verify``: a check the loader asks for on the probe batch (pixels in [0, 1]),
    raising :class:`advgrad.core.errors.ModelError` when the model is not what the file describes (an ONNX
    model converted to torch against onnxruntime).
    """

    module: nn.Module
    kind: str
    source: str
    description: str
    extra: dict = field(default_factory=dict)
    normalization: Normalization | None = None
    warnings: list[str] = field(default_factory=list)
    class_names: list[str] | None = None
    verify: Callable[[torch.Tensor], None] | None = None

    @property
    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.module.parameters())

    def to_dict(self) -> dict:
        return {
            "kind": self.kind,
            "source": self.source,
            "description": self.description,
            "parameters": self.parameter_count,
            "normalization": None if self.normalization is None else self.normalization.to_dict(),
            **self.extra,
            **({} if self.class_names is None else {"class_names": list(self.class_names)}),
        }


@dataclass(frozen=True)
class ModelOptions:
    """How a model is loaded.

    ``weights``: a weights file, or ``DEFAULT``/an enum entry for ``torchvision:NAME``;
    ``model_args``: keyword arguments for ``package.module:callable`` or a torchvision builder;
    ``unsafe_pickle``: allow unpickling that runs code from the file (trusted files only);
    ``mean``/``std``: per-channel normalisation put in front of the model;
    ``bpda``: ``--bpda`` values, submodules whose backward pass a stand-in replaces (:mod:`advgrad.io.model.bpda`).
    """

    device: torch.device = torch.device("cpu")
    weights: str | None = None
    model_args: Mapping[str, object] = field(default_factory=dict)
    unsafe_pickle: bool = False
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    bpda: tuple[str, ...] = ()


def random_weights_notice(spec: str) -> Notice:
    """The warning of a built architecture given no ``--weights`` (torchvision, timm)."""
    return Notice(f"{spec} has random weights (no `weights` given): its results describe a random network", "weights")


def built_architecture(
    kind: str,
    spec: str,
    name: str,
    built: tuple[nn.Module, dict, Normalization | None],
    options: ModelOptions,
    normalization_notice: Callable[[Normalization | None], Notice | None],
) -> LoadedModel:
    """An architecture built by name (``torchvision:NAME``, ``timm:NAME``) as a :class:`LoadedModel` on
    the device: without ``--weights`` it warns that the weights are random; with them and no
    ``--mean``, ``normalization_notice`` may say what the normalisation is (or that there is none)."""
    module, extra, normalization = built
    loaded = LoadedModel(module.to(options.device), kind, spec, f"{kind} {name}", extra, normalization)
    if options.weights is None:
        loaded.warnings.append(random_weights_notice(spec))
    elif options.mean is None and (notice := normalization_notice(normalization)) is not None:
        loaded.warnings.append(notice)
    return loaded
