"""Opening a run's inputs: device, model and data, checked against each other by a probe."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import Tensor

from advgrad.device import resolve_device
from advgrad.errors import UsageError
from advgrad.io.data import DataOptions, DataSource, load_data
from advgrad.io.models import LoadedModel, ModelOptions, load_model
from advgrad.io.probe import ProbeResult, probe


@dataclass(frozen=True)
class InputOptions:
    """Where a run's model and data come from and how the data is batched."""

    model: str | None = None
    data: str | None = None
    split: str = "test"
    limit: int | None = None
    batch_size: int = 256
    seed: int = 0
    device: str = "auto"

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class RunInputs:
    """A loaded model and data source that fit each other, on one device."""

    model: LoadedModel
    data: DataSource
    device: torch.device
    probe: ProbeResult
    options: InputOptions

    @property
    def n_samples(self) -> int:
        return len(self.data.select(limit=self.options.limit, seed=self.options.seed))

    def batches(self) -> Iterator[tuple[Tensor, Tensor]]:
        return self.data.batches(self.options.batch_size, limit=self.options.limit, seed=self.options.seed)


def open_inputs(options: InputOptions) -> RunInputs:
    """Resolve the device, load model and data, and probe them with the first batch."""
    if options.batch_size < 1:
        raise UsageError(f"--batch-size must be at least 1, got {options.batch_size}")
    if options.limit is not None and options.limit < 1:
        raise UsageError(f"--limit must be at least 1, got {options.limit}")
    device = resolve_device(options.device)
    data = load_data(options.data, DataOptions(split=options.split))
    model = load_model(options.model, ModelOptions(device=device))
    selection = data.select(limit=options.limit, seed=options.seed)
    x, y = data.fetch(selection[: min(len(selection), options.batch_size, 64)])
    result = probe(model.module, x.to(device), y.to(device))
    return RunInputs(model, data, device, result, options)
