"""``timm:NAME``: an architecture from timm (``advgrad[timm]``), with weights from a file.

The model is built with ``timm.create_model(NAME, pretrained=False, **model_args)``: timm never
downloads anything, and weights come only from ``--weights FILE`` through advgrad's own reader
(:mod:`advgrad.io.model.weights`, no code from the file runs). Arguments that would make timm
fetch or unpickle weights itself are refused. Unless ``--mean/--std`` are given, the model's
``pretrained_cfg`` (the normalisation its pretrained weights were trained with) gives the
normalisation put in front of it.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping

from torch import nn

from advgrad.core.errors import ModelError, Notice, UsageError, first_line
from advgrad.io.model.extras import offline, require
from advgrad.io.model.model_types import LoadedModel, ModelOptions, built_architecture
from advgrad.io.model.normalize import Normalization
from advgrad.io.model.weights import load_weights

PREFIX = "timm:"
EXTRA = "timm"
# create_model arguments that load or fetch weights, or a config from elsewhere: weights come from --weights only.
REFUSED_ARGS = ("pretrained", "pretrained_cfg", "pretrained_cfg_overlay", "checkpoint_path", "cache_dir")


def _check_name(timm, name: str, spec: str) -> None:
    arch = name.split(".", 1)[0]  # NAME or NAME.TAG (a pretrained tag picks that tag's config)
    if not arch or not timm.is_model(arch) or ":" in name:
        close = difflib.get_close_matches(arch, timm.list_models(), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ModelError(f"{spec}: timm has no architecture named {arch!r}{hint} (list them: timm.list_models())")


def _normalization(model: nn.Module, name: str) -> Normalization | None:
    cfg = getattr(model, "pretrained_cfg", None) or {}
    mean, std = cfg.get("mean"), cfg.get("std")
    if mean is None or std is None:
        return None
    try:
        return Normalization.from_options(tuple(mean), tuple(std), f"timm pretrained_cfg of {name}")
    except (TypeError, ValueError, UsageError):
        return None


def build_timm(name: str, args: Mapping[str, object], weights: str | None, *, unsafe_pickle: bool) -> tuple:
    """The timm model ``name`` built with ``args``, weights loaded from ``weights``; also the extra
    facts for the report and the pretrained_cfg normalisation (or None)."""
    spec = PREFIX + name
    refused = [k for k in REFUSED_ARGS if k in args]
    if refused:
        raise UsageError(
            f"`model_args` {', '.join(refused)}: advgrad builds timm models with pretrained=False and loads "
            "weights only from `weights` FILE (never a download, never timm's own checkpoint reader)",
            params=("model_args", "weights"),
        )
    timm = require("timm", EXTRA, f"`model` {spec}")
    _check_name(timm, name, spec)
    try:
        with offline():
            model = timm.create_model(name, pretrained=False, **dict(args))
    except TypeError as exc:
        given = ", ".join(f"{k}={v!r}" for k, v in args.items()) or "no arguments"
        raise UsageError(
            f"`model_args`: {spec} does not accept {given} ({first_line(exc)})", params="model_args"
        ) from None
    except Exception as exc:
        raise ModelError(f"timm could not build {name} ({type(exc).__name__}: {first_line(exc)})") from None
    extra: dict = {"model_args": dict(args)}
    if weights is None:
        extra["weights"] = "none (random initialisation)"
    else:
        extra["weights"] = str(weights)
        notes = load_weights(model, weights, spec, unsafe_pickle=unsafe_pickle)
        if notes:
            extra["weights_unwrapped"] = notes
    return model, extra, _normalization(model, name)


def load_timm(spec: str, options: ModelOptions) -> LoadedModel:
    name = spec[len(PREFIX) :]
    built = build_timm(name, options.model_args, options.weights, unsafe_pickle=options.unsafe_pickle)

    def from_pretrained_cfg(normalization: Normalization | None) -> Notice | None:
        if normalization is None:
            return None
        return Notice(
            f"no `mean`/`std` given: {spec} gets the normalisation of its timm pretrained_cfg (mean "
            f"{','.join(f'{v:g}' for v in normalization.mean)}, std {','.join(f'{v:g}' for v in normalization.std)}"
            "), which timm's pretrained weights were trained with; if yours were trained with another, give it "
            "with `mean`/`std`",
            ("mean", "std"),
        )

    return built_architecture("timm", spec, name, built, options, from_pretrained_cfg)
