"""Steps several commands share: opening inputs with a message, writing JSON, choosing attacks."""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any

import torch

from advgrad.attacks import AttackSpec, get_attack
from advgrad.cli.console import flag, info, notice_text, print_json, warn
from advgrad.core.errors import UsageError
from advgrad.core.threat import Norm, eps_beyond_box
from advgrad.evaluation.cost import NOTICE_PASSES, PILOT_SAMPLES, CostEstimate, estimate_cost, pilot_seconds
from advgrad.io.files import write_json, write_text
from advgrad.io.inputs import InputOptions, RunInputs, open_inputs


def open_and_describe(options: InputOptions, device: torch.device | None = None) -> RunInputs:
    """Open model and data (on ``device`` when given) and say on stderr what was loaded."""
    inputs = open_inputs(options, device)
    shape = "×".join(str(s) for s in inputs.probe.input_shape)
    normalization = "" if inputs.model.normalization is None else f" · normalisation {inputs.model.normalization}"
    runtime = "".join(f", {note}" for note in inputs.runtime)
    if inputs.threads is not None:
        runtime += f", {inputs.threads.threads} thread{'s' if inputs.threads.threads > 1 else ''}"
    info(
        f"model: {inputs.model.description}{normalization} · data: {inputs.data.description} · "
        f"{inputs.n_samples} samples of {shape}, {inputs.probe.num_classes} classes · device: {inputs.device}{runtime}"
    )
    for message in inputs.warnings:
        warn(notice_text(message))
    return inputs


def hold_fixed(config, inputs: RunInputs) -> None:
    """Give an :class:`advgrad.evaluation.sweep.EvalConfig` the input coordinates a table holds fixed (features
    of ε weight 0): the attacks and the IBP/CROWN bounds hold them; randomized smoothing cannot,
    which the user hears about."""
    config.fixed = inputs.fixed
    if inputs.fixed and config.smoothing is not None:
        warn(
            f"randomized smoothing adds noise to the {len(inputs.fixed)} immutable feature(s) (--eps-scale weight 0) "
            "too and certifies L2 radii over every feature: a certificate for a larger set, still valid"
        )


def warn_large_eps(norm: Norm, eps_values: list[float], inputs: RunInputs) -> None:
    """Warn (the run goes on) when an ε is larger than the input box itself: a k/255 slip."""
    message = eps_beyond_box(norm, eps_values, math.prod(inputs.probe.input_shape))
    if message is not None:
        warn(message)


def announce_cost(inputs: RunInputs, attacks: list, config, world_size: int = 1, announce: bool = True) -> CostEstimate:
    """What a sweep will cost at most; said on stderr (with ``announce``) when that is above
    :data:`advgrad.evaluation.cost.NOTICE_PASSES` model passes over one sample, with the time it should
    take, measured by a pilot run on the first samples (:func:`advgrad.evaluation.cost.pilot_seconds`;
    the run shared by ``world_size`` processes)."""
    estimate = estimate_cost(attacks, config.eps, inputs.n_samples, inputs.probe.num_classes)
    if not announce or estimate.passes <= NOTICE_PASSES:
        return estimate
    x, y = inputs.data.fetch(inputs.selection()[:PILOT_SAMPLES])
    seconds = pilot_seconds(
        inputs.model.module,
        x.to(inputs.device),
        y.to(inputs.device),
        attacks,
        config,
        inputs.n_samples,
        inputs.options.batch_size,
        inputs.device,
    )
    info(notice_text(estimate.describe(seconds / max(1, world_size), pilot=x.shape[0])))
    return estimate


def emit_json(path: Path | None, data: Any) -> bool:
    """Write JSON to ``path``; ``-`` prints it on stdout. Returns True when stdout was used."""
    if path is None:
        return False
    if str(path) == "-":
        print_json(data)
        return True
    write_json(path, data)
    info(f"wrote {path}")
    return False


def emit_text(path: Path, text: str) -> bool:
    """Write ``text`` to ``path`` atomically; ``-`` prints it on stdout. Returns True when stdout was used."""
    if str(path) == "-":
        sys.stdout.write(text)
        sys.stdout.flush()
        return True
    write_text(path, text)
    info(f"wrote {path}")
    return False


def attacks_from(names: str) -> list[AttackSpec]:
    """``fgsm,pgd`` → registry entries, in the given order, each once."""
    specs: list[AttackSpec] = []
    for name in names.split(","):
        if name.strip():
            spec = get_attack(name)
            if spec not in specs:
                specs.append(spec)
    if not specs:
        raise UsageError("give at least one attack, e.g. --attack pgd (see `advgrad attacks`)")
    return specs


def warn_ignored(spec: AttackSpec, options: dict[str, Any]) -> None:
    ignored = spec.ignored_options(**options)
    if ignored:
        flags = ", ".join(flag(k) for k in ignored)
        warn(f"{spec.name} does not use {flags}; ignored")


def warn_unused(specs: list[AttackSpec], options: dict[str, Any]) -> None:
    """Warn about options that none of the chosen attacks takes."""
    unused = set.intersection(*(set(spec.ignored_options(**options)) for spec in specs)) if specs else set()
    if unused:
        flags = ", ".join(flag(k) for k in sorted(unused))
        names = ", ".join(spec.name for spec in specs)
        warn(f"no chosen attack ({names}) uses {flags}; ignored")
