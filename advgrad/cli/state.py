"""Resuming ``advgrad eval``: where its state file lives, and interrupts that leave it usable."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from advgrad.cli.console import info, warn
from advgrad.resume import RunState, run_key, state_path


def open_run_state(identity: dict, path: Path | None, resume: bool) -> RunState | None:
    """The run's state (restoring saved batches when ``resume``), or None when no state file can
    be written (then the run still works, it just cannot be resumed)."""
    key = run_key(identity)
    target = Path(path) if path is not None else state_path(key)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        warn(
            f"cannot save progress in {target.parent} ({exc.strerror or exc}); this run cannot be resumed "
            "(choose a folder with --state DIR or ADVGRAD_STATE_DIR)"
        )
        return None
    state = RunState.open(target, key, resume=resume)
    if state.discarded:
        warn(state.discarded)
    for message in state.discarded_files:
        warn(message)
    if state.finished:
        info(f"resuming: {state.finished} finished batch{'es' if state.finished != 1 else ''} restored from {target}")
    return state


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Treat SIGTERM (``kill``) like Ctrl-C inside the block, so an interrupted run stops between
    writes and says where its progress is. Outside the main thread nothing changes."""

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, interrupt)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
