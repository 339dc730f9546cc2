"""BPDA: the backward pass of a submodule replaced by a differentiable stand-in.

Athalye, Carlini & Wagner (ICML 2018, "Obfuscated Gradients Give a False Sense of Security")
break defences whose gradient is useless — quantisation, JPEG compression, thresholding, any
preprocessing with zero or undefined derivatives — by Backward Pass Differentiable Approximation:
on the forward pass the real layer f runs, on the backward pass a differentiable g ≈ f takes its
place (for a preprocessor that keeps its input close, g = identity). The straight-through form

    y = f(x).detach() + g(x) − g(x).detach()

has the value f(x) and the gradient ∂g/∂x. ``--bpda NAME`` applies it to the submodule ``NAME``
(as ``model.named_modules()`` names it) with g = identity; ``--bpda NAME=package.module:callable``
with g the callable (called on the layer's input; a class is instantiated first, without
arguments). Only a module tree can be changed so: TorchScript and ExportedProgram files are refused.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from advgrad.core.errors import ModelError, UsageError
from advgrad.core.text import some_names

# The wrapper advgrad puts in front of a model for --mean/--std names the model ``model``: a name
# copied from the wrapped module tree starts with it.
WRAPPER_PREFIX = "model."
_STANDIN = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")
_REFUSED_KINDS = {
    "torchscript": "a TorchScript model",
    "exported-program": "an ExportedProgram",
    "onnx": "an ONNX model (converted to a graph)",
}


@dataclass(frozen=True)
class BPDARequest:
    """One ``--bpda`` value: the submodule's name and the stand-in (``package.module:callable``, or
    None for the identity)."""

    name: str
    standin: str | None = None

    @property
    def text(self) -> str:
        return self.name if self.standin is None else f"{self.name}={self.standin}"


def parse_bpda(values: Iterable[str] | None) -> tuple[BPDARequest, ...]:
    """``--bpda`` values (repeatable, each comma-separated) → requests. ``NAME`` or
    ``NAME=package.module:callable``; a name given twice is refused."""
    requests: list[BPDARequest] = []
    for value in values or ():
        for part in str(value).split(","):
            part = part.strip()
            if not part:
                continue
            name, sep, standin = (s.strip() for s in part.partition("="))
            if not name or (sep and not _STANDIN.match(standin)):
                raise UsageError(
                    f"`bpda` takes NAME or NAME=package.module:callable (a submodule of the model, and a "
                    f"differentiable stand-in for its backward pass), got {part!r}",
                    params="bpda",
                )
            if any(r.name == name for r in requests):
                raise UsageError(f"`bpda` names the submodule {name!r} twice", params="bpda")
            requests.append(BPDARequest(name, standin if sep else None))
    return tuple(requests)


class BackwardReplaced(nn.Module):
    """Runs ``module`` forward; differentiates as ``standin`` (the identity when None):
    y = f(x).detach() + g(x) − g(x).detach()."""

    def __init__(self, module: nn.Module, standin: Callable[[Tensor], Tensor] | None, name: str):
        super().__init__()
        self.module = module
        self.standin = standin
        self.bpda_name = name

    def forward(self, x: Tensor, *args, **kwargs) -> Tensor:
        y = self.module(x, *args, **kwargs)
        if not (torch.is_grad_enabled() and isinstance(x, Tensor) and x.requires_grad):
            return y
        g = x if self.standin is None else self.standin(x)
        if not isinstance(y, Tensor) or not isinstance(g, Tensor) or g.shape != y.shape:
            what = "the identity" if self.standin is None else "its stand-in"
            got = tuple(g.shape) if isinstance(g, Tensor) else type(g).__name__
            out = tuple(y.shape) if isinstance(y, Tensor) else type(y).__name__
            raise ModelError(
                f"`bpda` {self.bpda_name}: the layer returns {out} but {what} gives {got}; BPDA needs a stand-in "
                f"with the layer's output shape (give {self.bpda_name}=package.module:callable)",
                params="bpda",
            )
        return y.detach() + (g - g.detach()).to(y.dtype)


def _standin(text: str) -> Callable[[Tensor], Tensor]:
    """Import ``package.module:callable``; a class (an ``nn.Module`` type) is instantiated."""
    from advgrad.io.model.factories import _attribute, _import

    module_name, attr = text.split(":", 1)
    obj = _attribute(_import(module_name), attr, module_name)
    if isinstance(obj, type):
        try:
            obj = obj()
        except Exception as exc:
            raise ModelError(f"`bpda` stand-in {text}() raised {type(exc).__name__}: {exc}", params="bpda") from None
    if not callable(obj):
        raise ModelError(f"`bpda` stand-in {text} is not callable", params="bpda")
    return obj


def _resolve(name: str, modules: dict[str, nn.Module]) -> str:
    """The submodule name as the model knows it; a name written with advgrad's wrapper prefix
    (``model.``) is accepted too. Unknown names are refused with the closest ones."""
    if name in modules and name:
        return name
    if name.startswith(WRAPPER_PREFIX) and name[len(WRAPPER_PREFIX) :] in modules:
        return name[len(WRAPPER_PREFIX) :]
    names = [n for n in modules if n]
    close = difflib.get_close_matches(name, names, n=5, cutoff=0.5)
    listing = some_names(close or names)
    which = "close names" if close else "its submodules"
    if not names:
        raise UsageError(f"`bpda`: the model has no submodules to replace ({name!r} given)", params="bpda")
    raise UsageError(f"`bpda`: the model has no submodule {name!r}; {which}: {listing}", params="bpda")


def apply_bpda(module: nn.Module, requests: Iterable[BPDARequest], kind: str, source: str) -> nn.Module:
    """Wrap each requested submodule of ``module`` in :class:`BackwardReplaced`, in place; returns
    ``module``. ``kind`` is the loader's (a TorchScript or ExportedProgram model is refused: its
    graph is not a tree of modules advgrad can change)."""
    requests = tuple(requests)
    if not requests:
        return module
    if kind in _REFUSED_KINDS or isinstance(module, torch.jit.ScriptModule):
        what = _REFUSED_KINDS.get(kind, "a TorchScript model")
        raise UsageError(
            f"`bpda` needs a module tree (a model built in code: package.module:callable, torchvision:NAME, or a "
            f"pickled module); {source} is {what}",
            params="bpda",
        )
    modules = dict(module.named_modules())
    targets = [(r, _resolve(r.name, modules)) for r in requests]
    for request, name in targets:
        parent_name, _, child = name.rpartition(".")
        standin = None if request.standin is None else _standin(request.standin)
        setattr(modules[parent_name], child, BackwardReplaced(modules[name], standin, request.name))
    return module
