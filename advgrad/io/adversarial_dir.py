"""A folder of adversarial examples kept by ``advgrad eval --save-adversarial DIR``.

``manifest.json`` names the run (attacks, ε values and their labels, norm, batches); each batch is
one file ``batch-NNNNNN.pt`` (``torch.save``, loadable with ``weights_only=True``) holding
``first`` (the run's index of its first sample), the clean inputs ``x``, labels ``y`` and the run's
verdict ``clean_correct``, and per
attack the samples it counted as fooled: ``index`` (into the batch), ``fooled_at`` (the index of
the first ε at which each counts as fooled) and ``x_adv`` (the adversarial example counted there).
The manifest is written last, so a folder without one holds no finished run.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from advgrad.core.errors import UsageError
from advgrad.io.files import write_json, write_tensors
from advgrad.io.paths import read_capped

FORMAT = "advgrad.adversarial-examples"
MANIFEST = "manifest.json"


def check_folder(path: str | Path, option: str = "--save-adversarial") -> Path:
    """Refuse, before any work, a ``path`` that is a file or a folder holding other files than a
    previous run of advgrad wrote there (so that a wrong path never mixes into or deletes other files)."""
    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"{option} {folder} is not a folder; name a folder for the adversarial examples")
    if folder.is_dir():
        foreign = [
            p.name for p in folder.iterdir() if p.name != MANIFEST and not p.name.startswith(("batch-", ".batch-"))
        ]
        if foreign:
            raise UsageError(
                f"{option} {folder} holds other files ({foreign[0]}…); name an empty folder or one advgrad wrote"
            )
    return folder


def prepare_folder(path: str | Path, option: str = "--save-adversarial") -> Path:
    """``path`` ready to receive a run (:func:`check_folder`): created if missing, a previous run's files removed."""
    folder = check_folder(path, option)
    if folder.is_dir():
        for p in folder.glob("*batch-*"):
            p.unlink()
        (folder / MANIFEST).unlink(missing_ok=True)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create the folder {folder}: {exc.strerror or exc}") from None
    return folder


def write_batch(folder: Path, batch: int, content: dict[str, Any]) -> None:
    """One batch's file (atomically)."""
    write_tensors(folder / f"batch-{batch:06d}.pt", {"format": FORMAT, "batch": batch, **content})


def write_manifest(folder: Path, manifest: dict[str, Any]) -> None:
    """The run's description, written once every batch is."""
    write_json(folder / MANIFEST, {"format": FORMAT, **manifest})


def read_manifest(folder: str | Path) -> dict[str, Any]:
    path = Path(folder) / MANIFEST
    try:
        data = json.loads(read_capped(path, 1 << 20, "a manifest", UsageError))
    except (OSError, ValueError):
        data = None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise UsageError(
            f"{folder} holds no adversarial examples advgrad saved (no readable {MANIFEST}); "
            "run advgrad eval --save-adversarial DIR to keep them"
        )
    return data


def read_batches(folder: str | Path, count: int) -> Iterator[dict[str, Any]]:
    """The ``count`` batches of the folder, in order."""
    for b in range(count):
        path = Path(folder) / f"batch-{b:06d}.pt"
        try:
            data = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise UsageError(f"cannot read {path}: {type(exc).__name__}; the folder is incomplete or damaged") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT or data.get("batch") != b:
            raise UsageError(f"{path} is not batch {b} of advgrad's adversarial examples")
        yield data
