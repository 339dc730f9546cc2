"""Weights for an architecture built in code: reading state dicts safely and fitting them.

A ``.pt``/``.pth``/``.bin`` file is read with ``torch.load(weights_only=True)``, which refuses
anything but tensors and plain containers, so it cannot run code; a ``.safetensors`` file holds
only raw tensors. Tensors are always loaded onto the CPU first (``map_location``), so weights
saved on a GPU load on a machine without one. Common wrappings are undone: a checkpoint dict
holding the weights under ``state_dict``, ``model_state_dict`` or ``model``, and the ``module.``
prefix that ``nn.DataParallel``/``DistributedDataParallel`` add to every key (``_orig_mod.``
from ``torch.compile`` likewise). The weights must then fit the model exactly: the same keys, sizes
and kinds of dtype (:func:`cast_problem`: nothing is cast silently).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor, nn

from advgrad.core.errors import ModelError, first_line
from advgrad.core.text import some_names
from advgrad.io.paths import require_file
from advgrad.io.pickles import unreadable

WRAPPER_KEYS = ("state_dict", "model_state_dict", "model")
PREFIXES = ("module.", "_orig_mod.")
EXPECTED = "a weights file (.pt, .pth or .safetensors state dict)"


def _is_state_dict(obj: object) -> bool:
    return isinstance(obj, Mapping) and bool(obj) and all(isinstance(v, Tensor) for v in obj.values())


def pickled_globals(path: Path, limit: int = 4) -> str:
    """The classes and functions a pickle file names (what unpickling would import and run)."""
    try:
        found = torch.serialization.get_unsafe_globals_in_checkpoint(str(path))
    except Exception:  # legacy (non-zip) files cannot be scanned this way
        return ""
    names = sorted(found, key=lambda n: (n.startswith("torch."), n))  # code from outside torch first
    return f" (it names {some_names(names, limit)})" if names else ""


def refuse_pickle(path: Path, what: str, safer: str) -> ModelError:
    """The refusal for a file that only unpickling with code execution could read; ``safer`` may
    name the ```model``` and ```weights``` parameters."""
    return ModelError(
        f"{path} holds {what}{pickled_globals(path)}; unpickling it runs code from the file, so advgrad "
        f"does not load it unless you pass `unsafe_pickle` (only for files you trust); safer: {safer}",
        params=("unsafe_pickle", "model", "weights"),
    )


def read_state_dict(path: str | Path, *, unsafe_pickle: bool = False) -> tuple[dict[str, Tensor], list[str]]:
    """The state dict in a weights file, unwrapped; and notes on what was unwrapped."""
    path = require_file(path, EXPECTED, ModelError, param="weights")
    if path.suffix.lower() == ".safetensors":
        from safetensors.torch import load_file

        try:
            obj: object = load_file(str(path), device="cpu")
        except Exception as exc:
            raise ModelError(
                f"{path}: not a readable .safetensors file, truncated or corrupt ({first_line(exc)})"
            ) from None
    else:
        obj = load_torch_file(
            path,
            "weights",
            unsafe_pickle=unsafe_pickle,
            refusal=("pickled Python objects, not just tensors", "save model.state_dict() instead of the model"),
        )
        if isinstance(obj, nn.Module):  # a whole model, unpickled behind unsafe_pickle
            obj = obj.state_dict()
    return unwrap_state_dict(obj, path)


def load_torch_file(path: Path, what: str, *, unsafe_pickle: bool, refusal: tuple[str, str]) -> object:
    """A ``torch.save`` file read with ``weights_only=True``. Damaged bytes are called corrupt (``what``
    names the kind of file); a pickle that needs code is refused with ``refusal`` (what it holds, the
    safer way) unless ``unsafe_pickle``, which reads it with ``weights_only=False``: code from the file runs."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        damage = unreadable(path, exc)
        if damage is not None:
            raise ModelError(f"{path}: not a readable {what} file, truncated or corrupt ({damage})") from None
        if not unsafe_pickle:
            raise refuse_pickle(path, *refusal) from None
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # e.g. the pickled class cannot be imported here
        raise ModelError(f"{path}: cannot unpickle it ({type(exc).__name__}: {first_line(exc)})") from None


def unwrap_state_dict(obj: object, path: Path) -> tuple[dict[str, Tensor], list[str]]:
    """Find the tensors in a checkpoint: nested wrapper keys, then a shared key prefix."""
    notes: list[str] = []
    for _ in range(3):
        if _is_state_dict(obj) or not isinstance(obj, Mapping):
            break
        key = next((k for k in WRAPPER_KEYS if isinstance(obj.get(k), Mapping)), None)
        if key is None:
            break
        notes.append(f"took the {key!r} entry")
        obj = obj[key]
    if not _is_state_dict(obj):
        if isinstance(obj, Mapping):
            raise ModelError(
                f"{path} holds a dict with keys {some_names(obj, 6)}, not a state dict of tensors "
                f"(advgrad looks inside {', '.join(WRAPPER_KEYS)})"
            )
        raise ModelError(f"{path} holds a {type(obj).__name__}, not a state dict of tensors")
    state = {str(k): v for k, v in obj.items()}  # type: ignore[union-attr]
    for prefix in PREFIXES:
        if all(k.startswith(prefix) for k in state):
            state = {k[len(prefix) :]: v for k, v in state.items()}
            notes.append(f"removed the {prefix!r} key prefix")
    return state, notes


def _dims(shape: torch.Size) -> str:
    return "×".join(map(str, shape)) or "a scalar"


def key_mismatch(missing: list[str], unexpected: list[str]) -> str | None:
    """The keys that keep ``state`` from fitting a model, a few of each named with their counts
    (``state-dict keys 3 missing (a, b, c); 1 unexpected (d)``); None when there are none. Old
    checkpoints lack BatchNorm's step counter, so a missing ``num_batches_tracked`` is no mismatch."""
    missing = sorted(k for k in missing if not k.endswith("num_batches_tracked"))
    unexpected = sorted(unexpected)
    named = (("missing", missing), ("unexpected", unexpected))
    parts = [f"{len(keys)} {what} ({some_names(keys, 4)})" for what, keys in named if keys]
    return f"state-dict keys {'; '.join(parts)}" if parts else None


def _kind(dtype: torch.dtype) -> str:
    if dtype.is_complex:
        return "complex"
    return "floating-point" if dtype.is_floating_point else "boolean" if dtype == torch.bool else "integer"


def cast_problem(value: Tensor, target: torch.dtype) -> str | None:
    """Why loading ``value`` into a tensor of dtype ``target`` would change it silently, or None.

    A floating-point (or complex) tensor of the model must be stored as one: integers or booleans in
    its place are not the trained weights (``load_state_dict`` would cast them without a word), and a
    value too large for ``target`` would become infinite. An integer or boolean tensor of the model
    (BatchNorm's ``num_batches_tracked``) takes any stored value that it holds exactly."""
    source = value.dtype
    if source == target:
        return None
    try:
        return _changed(value, target)
    except (RuntimeError, TypeError):  # a dtype torch cannot cast this way (quantised, ...)
        return f"is stored as {source}, which the model's {target} cannot take"


def _changed(value: Tensor, target: torch.dtype) -> str | None:
    source = value.dtype
    if target.is_floating_point or target.is_complex:
        if _kind(source) != _kind(target):
            return f"is stored as {_kind(source)} ({source}) but the model's tensor is {target}"
        narrower = torch.finfo(source).max > torch.finfo(target).max  # float64 into float32 can overflow
        if narrower and bool((torch.isfinite(value.to(target)) != torch.isfinite(value)).any()):
            return f"holds values too large for the model's {target} (they would become infinite)"
        return None
    if not bool((value.to(target).to(source) == value).all()):  # NaN never equals itself: refused too
        return f"holds values that the model's {target} cannot hold exactly"
    return None


def _others(keys: list[str]) -> str:
    return f" (and {len(keys)} more: {some_names(keys, 3)})" if keys else ""


def _check_dtypes(state: dict[str, Tensor], expected: dict[str, Tensor], path: Path | str, name: str) -> None:
    problems = [(k, p) for k in state if (p := cast_problem(state[k], expected[k].dtype)) is not None]
    if problems:
        (k, why), others = problems[0], [k for k, _ in problems[1:]]
        raise ModelError(
            f"the weights in {path} do not fit {name}: {k} {why}{_others(others)}; save the trained model's own "
            "state_dict()"
        )


def fit_state_dict(model: nn.Module, state: dict[str, Tensor], path: Path | str, name: str) -> None:
    """Load ``state`` into ``model`` strictly; mismatches of keys, sizes or kinds of dtype become one
    line naming a few keys."""
    expected = model.state_dict()
    mismatch = key_mismatch([k for k in expected if k not in state], [k for k in state if k not in expected])
    if mismatch:
        raise ModelError(f"the weights in {path} do not fit {name}: {mismatch}")
    wrong = [k for k in state if tuple(state[k].shape) != tuple(expected[k].shape)]
    if wrong:
        k = wrong[0]
        raise ModelError(
            f"tensor sizes in {path} do not match {name}: {k} is {_dims(state[k].shape)} in the file but "
            f"{_dims(expected[k].shape)} in the model{_others(wrong[1:])}; check the architecture and its "
            "`model_args` values",
            params="model_args",
        )
    _check_dtypes(state, expected, path, name)
    for k, v in expected.items():  # fill what old checkpoints lack
        state.setdefault(k, v)
    try:
        model.load_state_dict(state, strict=True)
    except (RuntimeError, TypeError, ValueError) as exc:
        raise ModelError(f"cannot load the weights in {path} into {name} ({first_line(exc)})") from None


def load_weights(model: nn.Module, path: str | Path, name: str, *, unsafe_pickle: bool = False) -> list[str]:
    """Read, unwrap and load the weights in ``path`` into ``model``; return notes on unwrapping."""
    state, notes = read_state_dict(path, unsafe_pickle=unsafe_pickle)
    fit_state_dict(model, state, path, name)
    return notes
