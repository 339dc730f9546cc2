"""Models built in code: ``torchvision:NAME`` and ``package.module:callable``.

``package.module:callable`` imports ``package.module`` — which runs that module's code, as any
import does — and calls ``callable(**model_args)``. This is code the user names on the command
line, not code from a data file. The working directory is on the import path, as with
``python -m``. Weights (``--weights``) are read without running code: see :mod:`advgrad.io.model.weights`.

``torchvision:NAME`` builds a torchvision classifier. ``--weights DEFAULT`` (or a weights enum
member such as ``IMAGENET1K_V1``) loads torchvision's pretrained weights from the local torch hub
cache only: advgrad never downloads weights; when they are not cached it says where they belong
and how to get them.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import math
import os
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from urllib.parse import urlparse

import torch
from torch import nn

from advgrad.core.errors import ModelError, UsageError, first_line
from advgrad.io.model.normalize import Normalization
from advgrad.io.model.weights import load_weights

_DOTTED = r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*"
FACTORY = re.compile(rf"^({_DOTTED}):({_DOTTED})$")
_KEY = re.compile(r"^[A-Za-z_]\w*$")


def parse_model_args(items: Sequence[str] | Mapping[str, object] | None) -> dict[str, object]:
    """``["depth=18", "pretrained=false", "name='10'"]`` → ``{"depth": 18, "pretrained": False, "name": "10"}``.

    Values become int, float or bool when they read as one (``true``/``false`` in any case),
    else strings; quotes force a string.
    """
    if items is None:
        return {}
    if isinstance(items, Mapping):
        return dict(items)
    args: dict[str, object] = {}
    for item in items:
        key, sep, raw = str(item).partition("=")
        key = key.strip()
        if not sep or not _KEY.match(key):
            raise UsageError(f"`model_args` takes KEY=VALUE with KEY a Python name, got {item!r}", params="model_args")
        if key in args:
            raise UsageError(f"`model_args` {key} is given twice", params="model_args")
        args[key] = _parse_value(raw.strip())
        if isinstance(args[key], float) and not math.isfinite(args[key]):  # no report could record it
            raise UsageError(
                f"`model_args` {key}={raw.strip()}: a number must be finite "
                f"(quote it, {key}='{raw.strip()}', to pass the text)",
                params="model_args",
            )
    return args


def _parse_value(raw: str) -> object:
    if len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "'\"":
        return raw[1:-1]
    if raw.lower() in ("true", "false"):
        return raw.lower() == "true"
    for kind in (int, float):
        try:
            return kind(raw)
        except ValueError:
            pass
    return raw


def _describe_args(args: Mapping[str, object]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in args.items())


# ---------------------------------------------------------------------------------------------
# package.module:callable


def is_factory(spec: str) -> bool:
    return FACTORY.match(spec) is not None and not Path(spec).exists()


def _import(module_name: str) -> object:
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and (module_name == exc.name or module_name.startswith(exc.name + ".")):
            raise ModelError(
                f"cannot import {module_name}: no module named {exc.name} (run from the folder that holds it, "
                "or add its folder to PYTHONPATH)"
            ) from None
        raise ModelError(f"importing {module_name} failed: {type(exc).__name__}: {first_line(exc)}") from None
    except (Exception, SystemExit) as exc:  # the user's module raised (or called sys.exit) while being imported
        raise ModelError(f"importing {module_name} failed: {type(exc).__name__}: {first_line(exc)}") from None


def _attribute(module: object, path: str, module_name: str) -> object:
    obj = module
    for part in path.split("."):
        if not hasattr(obj, part):
            names = [n for n in dir(obj) if not n.startswith("_")]
            close = difflib.get_close_matches(part, names, n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise ModelError(f"{module_name} has no attribute {path}{hint}")
        obj = getattr(obj, part)
    return obj


def _call(fn: object, args: dict[str, object], spec: str) -> nn.Module:
    if not callable(fn):
        raise ModelError(
            f"{spec} is not callable (it is of type {type(fn).__name__}); name a function or class that builds the model"
        )
    try:
        inspect.signature(fn).bind(**args)
    except TypeError as exc:
        given = _describe_args(args) or "no arguments"
        raise UsageError(
            f"`model_args`: {spec} does not accept {given} ({first_line(exc)})", params="model_args"
        ) from None
    except ValueError:  # no signature to check (builtins); the call itself will tell
        pass
    try:
        model = fn(**args)
    except (Exception, SystemExit) as exc:  # sys.exit in the factory must not end the run with its code
        raise ModelError(f"{spec}({_describe_args(args)}) raised {type(exc).__name__}: {first_line(exc)}") from None
    if not isinstance(model, nn.Module):
        raise ModelError(f"{spec} returned an object of type {type(model).__name__}, not a torch.nn.Module")
    return model


def build_factory(
    spec: str, args: Mapping[str, object], weights: str | None, *, unsafe_pickle: bool
) -> tuple[nn.Module, dict]:
    """Import and call ``package.module:callable``; load ``weights`` into the result."""
    match = FACTORY.match(spec)
    if match is None:  # pragma: no cover - dispatch checks this first
        raise UsageError(f"{spec}: expected package.module:callable")
    module_name, attr = match.groups()
    fn = _attribute(_import(module_name), attr, module_name)
    model = _call(fn, dict(args), spec)
    extra: dict = {"model_args": dict(args)}
    if weights is not None:
        extra["weights"] = str(weights)
        notes = load_weights(model, weights, spec, unsafe_pickle=unsafe_pickle)
        if notes:
            extra["weights_unwrapped"] = notes
    return model, extra


# ---------------------------------------------------------------------------------------------
# torchvision:NAME


def _torchvision_builder(name: str):
    from torchvision import models

    available = models.list_models(module=models)
    if name not in available:
        close = difflib.get_close_matches(name, available, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ModelError(
            f"torchvision has no classifier named {name!r}{hint} (list them: "
            'python -c "import torchvision; print(torchvision.models.list_models(module=torchvision.models))")'
        )
    return models.get_model_builder(name), models.get_model_weights(name)


def cached_weights_path(entry) -> Path:
    """Where torch hub keeps the file of a torchvision weights entry (``$TORCH_HOME/hub/checkpoints``)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(entry.url).path).name


def _pretrained(name: str, enum, member: str):
    """The weights enum entry that ``--weights DEFAULT`` (or a member name) means."""
    key = member.upper()
    try:
        return enum[key]
    except KeyError:
        names = ", ".join(["DEFAULT", *(m for m in enum.__members__ if m != "DEFAULT")])
        raise UsageError(
            f"`weights` {member}: not a file, and {enum.__name__} has no such entry (entries: {names})",
            params="weights",
        ) from None


def build_torchvision(
    name: str, args: Mapping[str, object], weights: str | None, *, unsafe_pickle: bool
) -> tuple[nn.Module, dict, Normalization | None]:
    """A torchvision classifier; weights from a file, or torchvision's own from the local cache."""
    builder, enum = _torchvision_builder(name)
    spec = f"torchvision:{name}"
    model = _call(builder, {"weights": None, **args}, spec)
    extra: dict = {"model_args": dict(args)}
    normalization = None
    if weights is None:
        extra["weights"] = "none (random initialisation)"
        return model, extra, None
    if Path(weights).expanduser().exists() or not re.match(r"^[A-Za-z]\w*$", weights):
        extra["weights"] = str(weights)
        notes = load_weights(model, Path(weights).expanduser(), spec, unsafe_pickle=unsafe_pickle)
        if notes:
            extra["weights_unwrapped"] = notes
        return model, extra, None
    entry = _pretrained(name, enum, weights)
    path = cached_weights_path(entry)
    label = f"{type(entry).__name__}.{entry.name}"
    if not path.is_file():
        raise ModelError(
            f"the {name} weights {label} are not in the local torch hub cache ({path}) and advgrad never downloads "
            f'weights; on a machine with internet run: python -c "import torchvision; '
            f"torchvision.models.get_model('{name}', weights='{entry.name}')\" and copy {path.name} to {path.parent} "
            "(TORCH_HOME sets the cache folder), or give `weights` FILE",
            params="weights",
        )
    extra["weights"] = f"{label} ({path})"
    load_weights(model, path, spec, unsafe_pickle=False)
    transforms = entry.transforms()
    if hasattr(transforms, "mean") and hasattr(transforms, "std"):
        normalization = Normalization(tuple(transforms.mean), tuple(transforms.std), f"{label} weights")
    return model, extra, normalization
