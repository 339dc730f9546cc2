"""Loading the model under attack: a ``--model`` value → a :class:`LoadedModel`.

Accepted: the embedded digits CNN (default, or ``digits-cnn``), its adversarially trained twin
(``default-robust``) and its certifiably trained one (``default-certified``); a model file
(TorchScript, ExportedProgram ``.pt2``, ONNX, or a whole pickle with ``--unsafe-pickle``:
:mod:`advgrad.io.model.model_files`); ``torchvision:NAME`` and ``package.module:callable``
(:mod:`advgrad.io.model.factories`); ``timm:NAME`` (:mod:`advgrad.io.model.timm_models`) and
``hf:DIR`` (:mod:`advgrad.io.model.hf_models`). Every loader
returns a module in eval mode on the requested device; ``--mean``/``--std`` (or the
normalisation of torchvision's pretrained weights) is put in front of it, so that it takes
pixels in [0, 1]; ``--bpda`` replaces the backward pass of named submodules before that
(:mod:`advgrad.io.model.bpda`). Loading never executes code from a file unless ``--unsafe-pickle`` says so.
New forms of ``--model`` are a new :class:`ModelFormat` in ``FORMATS``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import torch
from torch import nn

from advgrad.core.errors import ModelError, Notice, UsageError
from advgrad.io.model.bpda import apply_bpda, parse_bpda
from advgrad.io.model.factories import build_factory, build_torchvision, is_factory
from advgrad.io.model.hf_models import load_hf, processor_image_size
from advgrad.io.model.model_files import load_model_file
from advgrad.io.model.model_types import LoadedModel, ModelOptions, built_architecture
from advgrad.io.model.normalize import Normalization, Normalized
from advgrad.io.model.timm_models import load_timm
from advgrad.io.model.weights import load_weights

__all__ = [
    "DEFAULT_MODEL",
    "FORMATS",
    "ROBUST_MODEL",
    "LoadedModel",
    "ModelFormat",
    "ModelOptions",
    "load_default_model",
    "load_model",
    "load_robust_model",
    "load_certified_model",
    "preferred_image_size",
]

DEFAULT_MODEL = "digits-cnn"
ROBUST_MODEL = "default-robust"
ROBUST_ASSET = "digits_cnn_robust.safetensors"
CERTIFIED_MODEL = "default-certified"
CERTIFIED_ASSET = "digits_cnn_certified.safetensors"
TORCHVISION = "torchvision:"
TIMM = "timm:"
HF = "hf:"


def load_default_model(device: torch.device | str = "cpu") -> nn.Module:
    """The embedded DigitsCNN with its trained weights, in eval mode."""
    from advgrad.models.digits import DigitsCNN

    return _embedded(DigitsCNN(), "digits_cnn.pt", device)


def load_robust_model(device: torch.device | str = "cpu") -> nn.Module:
    """The embedded DigitsCNN adversarially trained (PGD, L∞ ε = 0.1) by scripts/train_robust_digits.py,
    in eval mode."""
    from advgrad.models.digits import DigitsCNN

    return _embedded(DigitsCNN(), ROBUST_ASSET, device)


def load_certified_model(device: torch.device | str = "cpu") -> nn.Module:
    """The embedded DigitsCNN trained for certified robustness (SABR, L∞ ε = 0.1) by
    scripts/train_certified_digits.py, in eval mode."""
    from advgrad.models.digits import DigitsCNN

    return _embedded(DigitsCNN(), CERTIFIED_ASSET, device)


def _embedded(model: nn.Module, asset: str, device: torch.device | str) -> nn.Module:
    """``model`` with the weights of a shipped asset, read and checked as any `weights` file is."""
    with resources.as_file(resources.files("advgrad") / "assets" / asset) as path:
        load_weights(model, path, f"the embedded {type(model).__name__}")
    return model.to(device).eval()


def _load_robust(spec: str, options: ModelOptions) -> LoadedModel:
    return LoadedModel(
        load_robust_model(options.device),
        "default",
        ROBUST_MODEL,
        "embedded DigitsCNN adversarially trained on the UCI digits (PGD, L∞ ε = 0.1)",
    )


def _load_certified(spec: str, options: ModelOptions) -> LoadedModel:
    return LoadedModel(
        load_certified_model(options.device),
        "default",
        CERTIFIED_MODEL,
        "embedded DigitsCNN trained for certified robustness on the UCI digits (SABR, L∞ ε = 0.1)",
    )


def _load_default(spec: str, options: ModelOptions) -> LoadedModel:
    module = load_default_model(options.device)
    return LoadedModel(
        module, "default", DEFAULT_MODEL, "embedded DigitsCNN trained on the UCI digits (99.6% held-out accuracy)"
    )


def _load_architecture(spec: str, options: ModelOptions) -> LoadedModel:
    """An architecture ``advgrad train --model NAME`` builds (:data:`advgrad.models.ARCHITECTURES`),
    with ``--weights`` (what ``train --out`` wrote) and ``--model-arg``; ``digits-cnn`` alone is the
    embedded default. An architecture that ships no weights needs ``--weights``."""
    from advgrad.models import ARCHITECTURES

    if options.weights is None and options.model_args:
        raise UsageError(
            f"`model_args` build {spec} afresh, with random weights: give the `weights` trained for it too",
            params=("model_args", "weights"),
        )
    if options.weights is None and spec == DEFAULT_MODEL:
        return _load_default(spec, options)
    if options.weights is None:
        raise UsageError(
            f"{spec} ships without weights: give the file `advgrad train --model {spec} --out FILE` wrote as `weights`",
            params="weights",
        )
    module, extra = build_factory(
        f"advgrad.models:{ARCHITECTURES[spec].__name__}", options.model_args, options.weights, unsafe_pickle=False
    )
    weights = Path(str(options.weights)).name
    description = f"{type(module).__name__} ({spec}) with the weights of {weights}"
    return LoadedModel(module.to(options.device), "architecture", spec, description, extra)


def _is_architecture(spec: str) -> bool:
    from advgrad.models import ARCHITECTURES

    return spec in ARCHITECTURES


def _load_torchvision(spec: str, options: ModelOptions) -> LoadedModel:
    name = spec[len(TORCHVISION) :]
    built = build_torchvision(name, options.model_args, options.weights, unsafe_pickle=options.unsafe_pickle)

    def unnormalised(normalization: Normalization | None) -> Notice | None:
        if normalization is not None:
            return None
        return Notice(
            f"no `mean`/`std` given: {spec} gets pixels in [0, 1] as they are; torchvision models are usually "
            "trained on normalised inputs (ImageNet: `mean` 0.485,0.456,0.406 `std` 0.229,0.224,0.225)",
            ("mean", "std"),
        )

    return built_architecture("torchvision", spec, name, built, options, unnormalised)


def _load_factory(spec: str, options: ModelOptions) -> LoadedModel:
    module, extra = build_factory(spec, options.model_args, options.weights, unsafe_pickle=options.unsafe_pickle)
    return LoadedModel(module.to(options.device), "factory", spec, f"{type(module).__name__} built by {spec}", extra)


@dataclass(frozen=True)
class ModelFormat:
    """A way of reading a model: ``matches(spec)`` says whether a ``--model`` value is of this form.

    ``builds`` is True for forms that build an architecture in code and so take ``--weights``
    and ``--model-arg``. ``image_size``, when given, is the side the model's own preprocessing
    feeds it (or None): the ``--image-size`` of an image folder that the user leaves unset.
    """

    name: str
    matches: Callable[[str], bool]
    load: Callable[[str, ModelOptions], LoadedModel]
    builds: bool = False
    image_size: Callable[[str], int | None] | None = None


FORMATS: list[ModelFormat] = [
    ModelFormat("architecture", _is_architecture, _load_architecture, builds=True),
    ModelFormat("default-robust", lambda s: s == ROBUST_MODEL, _load_robust),
    ModelFormat("default-certified", lambda s: s == CERTIFIED_MODEL, _load_certified),
    ModelFormat("torchvision", lambda s: s.startswith(TORCHVISION), _load_torchvision, builds=True),
    ModelFormat("timm", lambda s: s.startswith(TIMM), load_timm, builds=True),
    ModelFormat("hf", lambda s: s.startswith(HF), load_hf, image_size=processor_image_size),
    ModelFormat("factory", is_factory, _load_factory, builds=True),
    ModelFormat("file", lambda s: True, load_model_file),
]


def _normalize(loaded: LoadedModel, options: ModelOptions) -> None:
    """Put --mean/--std (else the pretrained weights' own normalisation) in front of the model; a
    loader's ``verify`` (written for the model's own inputs) then gets pixels too."""
    loaded.normalization = Normalization.from_options(options.mean, options.std) or loaded.normalization
    if loaded.normalization is not None:
        wrapped = Normalized(loaded.module, loaded.normalization).to(options.device)
        loaded.module = wrapped
        if loaded.verify is not None:
            check = loaded.verify
            loaded.verify = lambda x: check((x - wrapped.mean.to(x.dtype)) / wrapped.std.to(x.dtype))


def preferred_image_size(spec: str | None) -> int | None:
    """The image side the model named by a ``--model`` value is fed by its own preprocessing
    (a Hugging Face image processor's), when its form knows one; else None."""
    if spec is None:
        return None
    fmt = next(f for f in FORMATS if f.matches(str(spec)))
    return None if fmt.image_size is None else fmt.image_size(str(spec))


def load_model(spec: str | None = None, options: ModelOptions | None = None) -> LoadedModel:
    """Load the model named by a ``--model`` value; ``None`` is the embedded default."""
    options = options or ModelOptions()
    spec = DEFAULT_MODEL if spec is None else str(spec)
    Normalization.from_options(options.mean, options.std)  # bad --mean/--std fail before any loading
    bpda = parse_bpda(options.bpda)  # so does a badly written --bpda
    for fmt in FORMATS:
        if fmt.matches(spec):
            if not fmt.builds and (options.weights is not None or options.model_args):
                given = [p for p, v in (("weights", options.weights), ("model_args", options.model_args)) if v]
                raise UsageError(
                    f"{' and '.join(f'`{p}`' for p in given)} apply to models built in code (torchvision:NAME, "
                    f"timm:NAME, package.module:callable), not to {spec}",
                    params=given,
                )
            loaded = fmt.load(spec, options)
            if bpda:  # on the user's own module tree, before the normalisation wrapper is put in front
                apply_bpda(loaded.module, bpda, loaded.kind, spec)
                loaded.extra["bpda"] = [r.text for r in bpda]
            _normalize(loaded, options)
            loaded.module.eval()
            return loaded
    raise ModelError(f"{spec}: unrecognised model")  # pragma: no cover - the last format matches all
