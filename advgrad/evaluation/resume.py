"""Resuming an interrupted evaluation from its saved state.

While ``evaluate`` runs, every finished batch's tally (:class:`advgrad.evaluation.tally.BatchTally`) is
written to the run's state folder, atomically, after the batch. If the run is interrupted (Ctrl-C, a
``kill``, a lost machine) the folder keeps what was finished; running the same evaluation again
restores those batches instead of running them and computes only the rest. Per-batch seeding
(:mod:`advgrad.core.seeding`) makes each batch's result independent of what ran before, so the report
is the same as an uninterrupted run's (timing aside).

The folder is named from a hash of everything that decides the result (:func:`run_key` of the
run's :meth:`~advgrad.evaluation.run_description.RunDescription.identity`): model and data (and the size and
modification time of their files), the selection of samples and the batch size, the attacks and
their parameters, ε, norm, target, seed and advgrad's version. A different run gets a different
folder, so a state can never be mixed into the wrong report.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import warnings
from pathlib import Path
from typing import Any

import torch

from advgrad import __version__
from advgrad.core.errors import AdvgradError, AdvgradWarning, UsageError, first_line
from advgrad.evaluation.eval_config import EvalAttack, EvalConfig
from advgrad.evaluation.run_description import RunDescription
from advgrad.evaluation.tally import BatchTally
from advgrad.io.files import write_tensors, write_text
from advgrad.io.paths import read_capped, require_file

STATE_FORMAT = "advgrad.eval-state"
STATE_VERSION = 2  # 2: each batch file names its run and its batch
HEADER_LIMIT = 1 << 20  # run.json is a few hundred bytes


def default_state_dir() -> Path:
    """``$ADVGRAD_STATE_DIR``, else ``$XDG_CACHE_HOME/advgrad/state``, else ``~/.cache/advgrad/state``."""
    if os.environ.get("ADVGRAD_STATE_DIR"):
        return Path(os.environ["ADVGRAD_STATE_DIR"])
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "advgrad" / "state"


def run_identity(
    inputs: dict[str, Any], attacks: list[EvalAttack], config: EvalConfig, device: torch.device | str
) -> dict[str, Any]:
    """Everything that decides an evaluation's result: ``inputs`` are the options that choose
    model, data and samples (every field counts, so options added later count too), plus the
    files they name, the attacks and their parameters, the sweep's settings, the device type and
    advgrad's version (:meth:`RunDescription.identity`)."""
    return RunDescription(attacks, config, inputs).identity(device)


def run_key(identity: dict[str, Any]) -> str:
    """A short hash of ``identity`` (everything that decides the result), as canonical JSON."""
    text = json.dumps(identity, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def state_path(key: str, folder: Path | None = None) -> Path:
    """Where the state of the run ``key`` lives by default (a folder)."""
    return (folder or default_state_dir()) / f"eval-{key}"


class RunState:
    """The finished batches of one run, kept in the folder ``path``: ``run.json`` names the run,
    and each finished batch is one file ``batch-NNNNNN.pt`` written atomically once, naming the
    run and the batch it holds. Writing a batch costs the same whether it is the first or the
    thousandth. Every saved batch is checked when the state is opened (a damaged or foreign file
    is deleted and its batch runs again, and ``discarded_files`` says why), so :attr:`finished`
    is the number of batches the run will restore. Use :meth:`open`."""

    def __init__(self, path: Path, key: str):
        self.path = Path(path)
        self.key = key
        self._done: set[int] = set()
        self.discarded: str | None = None  # why an existing state was not used, if it was not
        self.discarded_files: list[str] = []  # one line per saved batch file that was not usable, and why

    @classmethod
    def open(cls, path: str | os.PathLike, key: str, *, resume: bool = True) -> RunState:
        """The state in ``path`` when it exists and belongs to the run ``key`` (and ``resume``);
        an empty one otherwise (its old batches are deleted). A folder that holds another run's
        state is an error, so that a wrong ``--state`` never overwrites it unasked."""
        state = cls(Path(path), key)
        if not state.path.exists():
            return state
        if not state.path.is_dir():
            raise UsageError(f"{state.path} is not a folder; --state names a folder for the run's progress")
        header = state._header()
        if header is None:
            if any(state.path.iterdir()):
                raise UsageError(
                    f"{state.path} is a folder that holds no advgrad state; choose another `state`", params="state"
                )
            return state
        if header.get("key") != key and resume:
            raise UsageError(
                f"{state.path} holds the state of a different run; delete it, choose another `state` folder, "
                "or turn `resume` off to start afresh over it",
                params=("state", "resume"),
            )
        if header.get("version") != STATE_VERSION:
            state.discarded = f"{state.path} was written by another version of advgrad; starting afresh"
        elif header.get("key") == key and resume:
            state._done = state._usable_batches()
            return state
        state._clear()
        return state

    def _header(self) -> dict[str, Any] | None:
        try:
            data = json.loads(read_capped(self.path / "run.json", HEADER_LIMIT, "a state header", UsageError))
        except (AdvgradError, OSError, ValueError):  # missing, not a regular file, too large or damaged
            return None
        return data if isinstance(data, dict) and data.get("format") == STATE_FORMAT else None

    def _file(self, batch_index: int) -> Path:
        return self.path / f"batch-{batch_index:06d}.pt"

    def _read(self, path: Path, batch_index: int | None) -> BatchTally | str:
        """The tally a batch file holds, or why it cannot be used (a short reason)."""
        try:
            data = torch.load(require_file(path, "a batch file", UsageError), map_location="cpu", weights_only=True)
        except UsageError:  # a named pipe would block, a device might never end: never opened
            return "not a regular file"
        except Exception as exc:  # truncated, garbage, not a torch file
            return f"unreadable, truncated or damaged ({first_line(exc, 120)})"
        if not isinstance(data, dict) or data.get("format") != STATE_FORMAT or "tally" not in data:
            return "not an advgrad batch file"
        if data.get("key") != self.key:
            return "it belongs to another run"
        if batch_index is not None and data.get("batch") != batch_index:
            return f"it holds batch {data.get('batch')!r}, not batch {batch_index}"
        try:
            return BatchTally.from_state(data["tally"])
        except Exception as exc:  # missing or mistyped fields
            return f"an incomplete batch record ({type(exc).__name__})"

    def _usable_batches(self) -> set[int]:
        """The indices of the saved batches that can be restored; every other batch file is deleted
        and named in :attr:`discarded_files` (its batch runs again)."""
        usable = set()
        for path in sorted(self.path.glob("batch-*.pt")):
            try:
                index = int(path.stem.split("-", 1)[1])
            except ValueError:
                index = None
            found = self._read(path, index) if index is not None else "not a batch file name advgrad writes"
            if isinstance(found, BatchTally):
                usable.add(index)
                continue
            self.discarded_files.append(f"discarded {path}: {found}; its batch runs again")
            _remove(path)
        return usable

    def _clear(self) -> None:
        # batch files, the header, and temporary files a hard kill may have left mid-write
        for pattern in ("batch-*.pt", ".batch-*.tmp", ".run.json.*.tmp", "run.json"):
            for p in self.path.glob(pattern):
                _remove(p)

    @property
    def finished(self) -> int:
        """How many batches are saved."""
        return len(self._done)

    def saved_batches(self) -> int:
        """How many batch files the folder holds now (in a distributed run, every rank's)."""
        return sum(1 for _ in self.path.glob("batch-*.pt")) if self.path.is_dir() else 0

    def restore(self, batch_index: int) -> BatchTally | None:
        if batch_index not in self._done:
            return None
        found = self._read(self._file(batch_index), batch_index)
        if isinstance(found, BatchTally):
            return found
        # damaged since the state was opened: say so, and run the batch again
        self._done.discard(batch_index)
        warnings.warn(
            f"discarded {self._file(batch_index)}: {found}; its batch runs again", AdvgradWarning, stacklevel=2
        )
        return None

    def save(self, batch_index: int, tally: BatchTally) -> None:
        """Write a finished batch (atomically; the run's header first)."""
        if not (self.path / "run.json").exists():
            write_text(
                self.path / "run.json",
                json.dumps({"format": STATE_FORMAT, "version": STATE_VERSION, "key": self.key, "advgrad": __version__})
                + "\n",
            )
        write_tensors(
            self._file(batch_index),
            {"format": STATE_FORMAT, "key": self.key, "batch": batch_index, "tally": tally.to_state()},
        )
        self._done.add(batch_index)

    def remove(self) -> None:
        """Delete the saved progress (the run is complete and its report written): the files this
        class wrote, then the folder if nothing else is in it."""
        if self.path.is_dir():
            self._clear()
            with contextlib.suppress(OSError):
                self.path.rmdir()


def _remove(path: Path) -> None:
    """Delete a file of a state folder; a folder of that name (advgrad never writes one) stays."""
    if path.is_symlink() or not path.is_dir():
        path.unlink(missing_ok=True)
