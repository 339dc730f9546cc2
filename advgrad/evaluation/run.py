"""A run as the API and the commands execute it: the sweep of a :class:`RunDescription`, whose
report records that description, optionally saved batch by batch so that an interrupted run
continues where it stopped (:mod:`advgrad.evaluation.resume`)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import torch
from torch import Tensor, nn

from advgrad.core.results import RobustnessReport
from advgrad.evaluation.record_outputs import RecordOutputs
from advgrad.evaluation.resume import RunState, run_key, state_path
from advgrad.evaluation.run_description import RunDescription
from advgrad.evaluation.sweep import BatchExchange, evaluate
from advgrad.execution.progress import Monitor


def run_sweep(
    model: nn.Module,
    batches: Iterable[tuple[Tensor, Tensor]],
    run: RunDescription,
    *,
    device: torch.device | str,
    state: RunState | None = None,
    shard: BatchExchange | None = None,
    monitor: Monitor | None = None,
    records: Path | None = None,
    adversarial: Path | None = None,
) -> RobustnessReport:
    """The sweep of ``run`` over ``batches`` (:func:`advgrad.evaluation.sweep.evaluate`); the report's
    ``config`` is the run's description. ``advgrad.evaluate``, ``advgrad.certify``, ``advgrad eval``,
    ``advgrad certify`` and ``advgrad train``'s closing report all run through here. With ``records``
    the per-sample rows are written there, with ``adversarial`` (which needs the run's
    ``keep_adversarial``) the counted adversarial examples (:mod:`advgrad.evaluation.record_outputs`)."""
    if adversarial is not None and not run.config.keep_adversarial:
        raise ValueError("saving adversarial examples needs a run that keeps them (EvalConfig.keep_adversarial)")
    with RecordOutputs(run.attacks, run.config, records, adversarial) as sink:
        report = evaluate(
            model,
            batches,
            run.attacks,
            run.config,
            device=device,
            state=state,
            shard=shard,
            monitor=monitor,
            records=sink if records is not None or adversarial is not None else None,
        )
    report.config.update(run.to_dict())
    return report


def open_run_state(identity: dict, path: Path | None, resume: bool) -> tuple[RunState | None, list[str]]:
    """The run's saved state (restoring saved batches when ``resume``) and what to tell the user
    about it; no state when none can be written (the run still works, it just cannot be resumed).
    The state lives at ``path``, or where :func:`advgrad.evaluation.resume.state_path` puts the run's key."""
    key = run_key(identity)
    target = Path(path) if path is not None else state_path(key)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        return None, [
            f"cannot save progress in {target.parent} ({exc.strerror or exc}); this run cannot be resumed "
            "(choose a folder with --state DIR or ADVGRAD_STATE_DIR)"
        ]
    state = RunState.open(target, key, resume=resume)
    notes = [state.discarded] if state.discarded else []
    return state, notes + list(state.discarded_files)
