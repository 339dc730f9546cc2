"""Resuming an interrupted evaluation from a state file.

While ``evaluate`` runs, every finished batch's tally (:class:`advgrad.tally.BatchTally`) is
written to a state file, atomically, after the batch. If the run is interrupted (Ctrl-C, a
``kill``, a lost machine) the file keeps what was finished; running the same evaluation again
restores those batches instead of running them and computes only the rest. Per-batch seeding
(:mod:`advgrad.seeding`) makes each batch's result independent of what ran before, so the report
is the same as an uninterrupted run's (timing aside).

The file is named from a hash of everything that decides the result (:func:`run_key`): model
and data (and the size and modification time of their files), the selection of samples and the
batch size, the attacks and their parameters, ε, norm, target, seed and advgrad's version. A
different run gets a different file, so a state can never be mixed into the wrong report.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch

from advgrad import __version__
from advgrad.errors import UsageError
from advgrad.evaluate import EvalAttack, EvalConfig
from advgrad.io.files import write_tensors
from advgrad.tally import BatchTally

STATE_FORMAT = "advgrad.eval-state"
STATE_VERSION = 1


def default_state_dir() -> Path:
    """``$ADVGRAD_STATE_DIR``, else ``$XDG_CACHE_HOME/advgrad/state``, else ``~/.cache/advgrad/state``."""
    if os.environ.get("ADVGRAD_STATE_DIR"):
        return Path(os.environ["ADVGRAD_STATE_DIR"])
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "advgrad" / "state"


def file_fingerprints(values: dict[str, Any]) -> dict[str, list[int]]:
    """Size and modification time of every string value that names an existing file or folder,
    so that a model retrained into the same path starts a new state."""
    found = {}
    for value in values.values():
        if isinstance(value, str) and value and os.path.exists(value):
            info = os.stat(value)
            found[os.path.abspath(value)] = [info.st_size if os.path.isfile(value) else 0, info.st_mtime_ns]
    return found


def run_identity(
    inputs: dict[str, Any], attacks: list[EvalAttack], config: EvalConfig, device: torch.device | str
) -> dict[str, Any]:
    """Everything that decides an evaluation's result: ``inputs`` are the options that choose
    model, data and samples (every field counts, so options added later count too), plus the
    files they name, the attacks and their parameters, the sweep's settings, the device type and
    advgrad's version."""
    return {
        "advgrad": __version__,
        "inputs": {k: v for k, v in inputs.items() if k != "device"},
        "device": torch.device(device).type,
        "files": file_fingerprints(inputs),
        "attacks": [[a.name, a.spec.name, a.params.to_dict()] for a in attacks],
        "eps": list(config.eps),
        "norm": config.norm,
        "target": None if config.target is None else str(config.target),
        "seed": config.seed,
        "early_stop": config.early_stop,
        "examples": config.examples,
    }


def run_key(identity: dict[str, Any]) -> str:
    """A short hash of ``identity`` (everything that decides the result), as canonical JSON."""
    text = json.dumps(identity, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def state_path(key: str, folder: Path | None = None) -> Path:
    """Where the state of the run ``key`` lives by default."""
    return (folder or default_state_dir()) / f"eval-{key}.pt"


class RunState:
    """The finished batches of one run, kept in ``path``. Use :meth:`open`."""

    def __init__(self, path: Path, key: str, batches: dict[int, dict[str, Any]] | None = None):
        self.path = Path(path)
        self.key = key
        self._batches: dict[int, dict[str, Any]] = dict(batches or {})
        self.discarded: str | None = None  # why an existing file was not used, if it was not

    @classmethod
    def open(cls, path: str | os.PathLike, key: str, *, resume: bool = True) -> RunState:
        """The state in ``path`` when it exists and belongs to the run ``key`` (and ``resume``);
        an empty state otherwise. A file that holds another run's state is an error, so that a
        wrong ``--state`` never overwrites it unasked."""
        path = Path(path)
        state = cls(path, key)
        if not path.exists():
            return state
        if path.is_dir():
            raise UsageError(f"{path} is a directory; --state needs a file name")
        try:
            data = torch.load(path, map_location="cpu", weights_only=True)
            ok = isinstance(data, dict) and data.get("format") == STATE_FORMAT
        except Exception as exc:  # a file from an older version, or not a state file at all
            ok, data = False, {}
            state.discarded = f"{path} is not a readable state file ({type(exc).__name__}); starting afresh"
        if ok and data.get("key") != key:
            if not resume:
                return state
            raise UsageError(
                f"{path} holds the state of a different run; delete it, choose another --state file, "
                "or pass --no-resume to overwrite it"
            )
        if ok and data.get("version") != STATE_VERSION:
            state.discarded = f"{path} was written by another version of advgrad; starting afresh"
        elif ok and resume:
            state._batches = {int(b): tally for b, tally in data["batches"]}
        elif not ok and state.discarded is None:
            state.discarded = f"{path} is not an advgrad state file; starting afresh"
        return state

    @property
    def finished(self) -> int:
        """How many batches are saved."""
        return len(self._batches)

    def restore(self, batch_index: int) -> BatchTally | None:
        data = self._batches.get(batch_index)
        return None if data is None else BatchTally.from_state(data)

    def save(self, batch_index: int, tally: BatchTally) -> None:
        """Add a finished batch and rewrite the file atomically."""
        self._batches[batch_index] = tally.to_state()
        write_tensors(self.path, {
            "format": STATE_FORMAT,
            "version": STATE_VERSION,
            "key": self.key,
            "batches": sorted(self._batches.items()),
        })

    def remove(self) -> None:
        """Delete the file (the run is complete and its report written)."""
        self.path.unlink(missing_ok=True)
