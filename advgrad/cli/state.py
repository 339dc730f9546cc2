"""Resuming ``advgrad eval`` and ``advgrad certify``: where the state file lives, interrupts that
leave it usable, and the sweep run with its state and progress line."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from advgrad.cli.console import info, sweep_progress, warn
from advgrad.core.errors import Interrupted
from advgrad.evaluation.run import open_run_state, run_sweep
from advgrad.report.fmt import eps_label


def _open_state(identity: dict, path: Path | None, resume: bool):
    state, notes = open_run_state(identity, path, resume)
    for message in notes:
        warn(message)
    if state is not None and state.finished:
        info(
            f"resuming: {state.finished} finished batch{'es' if state.finished != 1 else ''} restored from {state.path}"
        )
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


def run_resumable(
    process,
    inputs,
    run,
    *,
    passes: int,
    state_file: Path | None,
    resume: bool,
    verbose: bool,
    records: Path | None = None,
    adversarial: Path | None = None,
):
    """The sweep of ``advgrad eval`` / ``advgrad certify`` for this process: finished batches are
    saved in the run's state (and restored from it with ``resume``), a progress line counts
    ``passes`` sample-passes for the whole run, and Ctrl-C or ``kill`` ends it with exit code 130
    saying what was saved. Rank 0 writes the per-sample ``records`` and the ``adversarial`` folder.
    Returns ``(report, state)``; the caller removes the state once the report is written."""
    with process.main_first():  # rank 0 opens (and with --no-resume clears) the state folder; the others then
        # only read it: clearing it again could delete a batch rank 0 has already saved
        state = _open_state(run.identity(inputs.device), state_file, resume or not process.is_main)
    try:
        batches = -(-inputs.n_samples // inputs.options.batch_size)
        share = -(-batches // process.world_size)  # this process runs batches rank, rank + W, …
        with sweep_progress(
            passes * share // max(batches, 1), batches=share, verbose=verbose, eps_text=eps_label
        ) as monitor:
            report = run_sweep(
                inputs.model.module,
                inputs.batches(process.rank, process.world_size),
                run,
                device=inputs.device,
                state=state,
                shard=process.shard,
                monitor=monitor,
                records=records if process.is_main else None,
                adversarial=adversarial if process.is_main else None,
            )
    except KeyboardInterrupt:
        saved = (
            "nothing was finished"
            if state is None or not state.saved_batches()
            else f"{state.saved_batches()} finished batches are saved in {state.path}; run the same command again to continue"
        )
        raise Interrupted(f"interrupted: {saved}") from None
    return report, state
