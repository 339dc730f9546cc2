"""Where a run's per-sample evidence goes as its batches finish: the records file (``--records``) and
the folder of adversarial examples (``--save-adversarial``), both written in batch order."""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path
from types import TracebackType
from typing import Any

from advgrad.evaluation.eval_config import EvalAttack, EvalConfig
from advgrad.evaluation.records import BatchRecords
from advgrad.io.adversarial_dir import prepare_folder, write_batch, write_manifest
from advgrad.io.records_file import RecordWriter


class RecordOutputs:
    """A context manager that receives every batch's :class:`BatchRecords` (call it with them) and
    writes the rows to ``records`` and the adversarial examples into ``adversarial``; either may be
    None. The records file appears, and the folder's manifest is written, only when the run ends
    without an error."""

    def __init__(
        self, attacks: list[EvalAttack], config: EvalConfig, records: Path | None, adversarial: Path | None = None
    ):
        self.names = [a.name for a in attacks]
        self.config = config
        self.records = records
        self.adversarial = adversarial
        self.batches = 0
        self._stack = ExitStack()
        self._writer: RecordWriter | None = None

    def __enter__(self) -> RecordOutputs:
        if self.records is not None:
            self._writer = self._stack.enter_context(RecordWriter(self.records))
        if self.adversarial is not None:
            self.adversarial = prepare_folder(self.adversarial)
        return self

    def __call__(self, batch: BatchRecords) -> None:
        if self._writer is not None:
            self._writer.write(batch.rows(self.names, self.config.eps_labels, self.config.certify))
        if self.adversarial is not None:
            write_batch(self.adversarial, self.batches, adversarial_content(batch, self.names))
        self.batches += 1

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        if kind is None and self.adversarial is not None:
            write_manifest(
                self.adversarial,
                {
                    "attacks": self.names,
                    "eps": [float(e) for e in self.config.eps],
                    "eps_labels": self.config.eps_labels,
                    "norm": self.config.norm,
                    "fixed": list(self.config.fixed),
                    "batches": self.batches,
                },
            )
        self._stack.__exit__(kind, error, trace)


def adversarial_content(batch: BatchRecords, names: list[str]) -> dict[str, Any]:
    """What one batch file of the adversarial folder holds (:mod:`advgrad.io.adversarial_dir`)."""
    attacks = {}
    for name, attack in zip(names, batch.attacks, strict=True):
        index = attack.adv_index
        attacks[name] = {
            "index": index,
            "fooled_at": None if index is None else attack.fooled_at[index],
            "x_adv": attack.x_adv,
        }
    return {
        "first": batch.first,
        "x": batch.x,
        "y": batch.label,
        "clean_correct": batch.clean_correct,
        "attacks": attacks,
    }
