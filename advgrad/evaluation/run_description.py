"""The one description of an evaluation run: what the report's ``config`` records and what the
resume key hashes.

A :class:`RunDescription` holds the options that chose model, data and samples (``inputs``),
the attacks with their parameters, the sweep's settings (:class:`advgrad.evaluation.sweep.EvalConfig`) and
what a command adds around them (:class:`RunSettings`). :meth:`RunDescription.to_dict` is the
report's ``config``. :meth:`RunDescription.identity`, which :func:`advgrad.evaluation.resume.run_key`
hashes to name a run's saved state, is that same description less what changes no number
(:data:`NOT_IDENTITY`: the command's settings, and :data:`WHERE_IT_RUNS` among the inputs), plus
what decides the numbers but lives elsewhere in the report: the attacks' parameters, the seed,
the examples kept, the device type, advgrad's version, and the size and modification time of the
files the inputs name. A field added to the description therefore counts in the identity unless
it is declared here as changing no number.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, fields
from typing import Any

import torch

from advgrad import __version__
from advgrad.evaluation.eval_config import EvalAttack, EvalConfig

WHERE_IT_RUNS = ("device", "threads")  # inputs that choose where the run happens, not what it computes


@dataclass(frozen=True)
class RunSettings:
    """What a command adds around the sweep without changing a number: the gates it judges the
    report by, ``--strict``, where the outputs go, the config file its options came from and the
    number of threads it resolved. The report records them; the identity leaves them out."""

    gates: list[str]
    strict: bool
    outputs: dict[str, Any]
    config_file: str | None
    threads: int | None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


NOT_IDENTITY = tuple(f.name for f in fields(RunSettings))


def file_fingerprints(values: dict[str, Any]) -> dict[str, list[int]]:
    """Size and modification time of every string value that names an existing file or folder,
    so that a model retrained into the same path starts a new state."""
    found = {}
    for value in values.values():
        if isinstance(value, str) and value and os.path.exists(value):
            info = os.stat(value)
            found[os.path.abspath(value)] = [info.st_size if os.path.isfile(value) else 0, info.st_mtime_ns]
    return found


@dataclass
class RunDescription:
    """An evaluation run, described once. ``inputs`` are the options that choose model, data and
    samples (:meth:`advgrad.io.inputs.InputOptions.to_dict`; every field counts, so options added
    later count too), ``settings`` what the command adds; either is None when the caller has none
    (the Python API passes tensors and writes no outputs)."""

    attacks: list[EvalAttack]
    config: EvalConfig
    inputs: dict[str, Any] | None = None
    settings: RunSettings | None = None

    def to_dict(self) -> dict[str, Any]:
        """The run as the report's ``config`` records it."""
        config = self.config
        described: dict[str, Any] = {"early_stop": config.early_stop}
        if self.inputs is not None:
            described["inputs"] = dict(self.inputs)
        described.update(
            {
                "attacks": [a.name for a in self.attacks],
                "target": config.target_text,
                "eps": [float(e) for e in config.eps],
                "norm": config.norm,
            }
        )
        if config.certify is not None:  # part of the identity: a resumed run keeps its certified counts
            described["certify"] = config.certify
            if config.smoothing is not None:
                described["smoothing"] = config.smoothing.to_dict()
            if config.bab is not None:  # its limits decide which samples end unknown
                described["bab"] = config.bab.to_dict()
        if config.corruptions:  # part of the identity: a resumed run keeps its corruption counts
            described["corruptions"] = list(config.corruptions)
        if config.predictions is not None:  # part of the identity: it decides who counts as correct
            described["predictions"] = config.predictions
        if config.fixed:  # part of the identity: the threat model holds these input coordinates
            described["fixed"] = list(config.fixed)
        if config.keep_adversarial:  # part of the identity: saved batches must hold the examples
            described["keep_adversarial"] = True
        if self.settings is not None:
            described.update(self.settings.to_dict())
        return described

    def identity(self, device: torch.device | str) -> dict[str, Any]:
        """Everything that decides the run's result (on ``device``): :meth:`to_dict` less
        :data:`NOT_IDENTITY` and :data:`WHERE_IT_RUNS`, the attacks with their parameters, and the
        facts the report keeps elsewhere."""
        inputs = self.inputs or {}
        return {
            **{k: v for k, v in self.to_dict().items() if k not in NOT_IDENTITY},
            "inputs": {k: v for k, v in inputs.items() if k not in WHERE_IT_RUNS},
            "attacks": [[a.name, a.spec.name, a.params.to_dict()] for a in self.attacks],
            "seed": self.config.seed,
            "examples": self.config.examples,
            "device": torch.device(device).type,
            "files": file_fingerprints(inputs),
            "advgrad": __version__,
        }
