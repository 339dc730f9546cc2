"""Optional packages a form of ``--model`` needs: ``advgrad[onnx]``, ``advgrad[timm]``, ``advgrad[hf]``.

advgrad's own dependencies stay small; a user who asks for an ONNX file, a timm architecture or a
Hugging Face folder installs the matching extra. Without it the run ends with one line naming it.
"""

from __future__ import annotations

import contextlib
import importlib
import os
from collections.abc import Iterator
from types import ModuleType

from advgrad.core.errors import ModelError

# The environment variables that keep huggingface_hub (used by transformers and timm) off the network.
OFFLINE = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}


def require(module: str, extra: str, what: str) -> ModuleType:
    """Import ``module``; when it (or a package it needs) is missing, a :class:`ModelError` saying
    that ``what`` needs ``pip install 'advgrad[extra]'``."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        missing = getattr(exc, "name", None) or module
        raise ModelError(
            f"{what} needs the optional extra {extra!r} ({missing} is not installed): pip install 'advgrad[{extra}]'",
            params="model" if "`model`" in what else (),
        ) from None


@contextlib.contextmanager
def offline() -> Iterator[None]:
    """huggingface_hub's offline switches set for the duration (restored after): whatever a model
    folder says, nothing is fetched. Loaders pass ``local_files_only=True`` as well, since a library
    imported earlier has read these variables already."""
    saved = {k: os.environ.get(k) for k in OFFLINE}
    os.environ.update(OFFLINE)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
