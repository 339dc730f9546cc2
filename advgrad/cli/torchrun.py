"""The command line under torchrun: which process speaks, which device each takes, the process group.

``torchrun --nproc_per_node N -m advgrad eval …`` runs N copies of the command. Rank 0 prints,
shows progress and writes every output; the other ranks stay silent except for their own errors
(prefixed ``[rank K]``). Only ``eval`` and ``train`` share their work out; the other commands refuse to run
under a launch of several processes rather than repeat the same work N times.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field

import torch
import typer

from advgrad.cli.console import err, error_text, info, quiet_rank
from advgrad.core.errors import AdvgradError, ExitCode, UsageError
from advgrad.execution.distributed import (
    JOIN_TIMEOUT,
    Launch,
    LocalExchange,
    Shard,
    check_join_timeout,
    launch_from_env,
    process_device,
    process_group,
)
from advgrad.io.inputs import InputOptions

DISTRIBUTED_COMMANDS = ("eval", "certify", "train")


def setup_process(command: str | None) -> None:
    """Called before any command: silence ranks other than 0, and refuse commands that do not
    run distributed when torchrun started several processes."""
    try:
        launch = launch_from_env()
        if launch is None:
            return
        if not launch.is_main:
            quiet_rank(launch.rank)
        if command is not None and command not in DISTRIBUTED_COMMANDS:
            raise UsageError(
                f"only `advgrad eval`, `advgrad certify` and `advgrad train` share their work among torchrun's processes; run `advgrad {command}` "
                "as one process, without torchrun"
            )
    except AdvgradError as exc:
        err.print(f"error: {error_text(exc)}", style="red")  # every rank refuses; rank 0 alone says so
        raise typer.Exit(int(ExitCode.BAD_INPUT)) from None


@dataclass
class Process:
    """This process's part in a run: alone (``launch`` None), or one rank of a torchrun launch."""

    launch: Launch | None = None
    device: torch.device | None = None  # None: the device --device resolves to
    shard: Shard | LocalExchange = field(default_factory=LocalExchange)  # how its finished batches are shared

    @property
    def is_main(self) -> bool:
        return self.launch is None or self.launch.is_main

    @property
    def rank(self) -> int:
        return 0 if self.launch is None else self.launch.rank

    @property
    def world_size(self) -> int:
        return 1 if self.launch is None else self.launch.world_size

    def main_first(self) -> AbstractContextManager[None]:
        """Rank 0 runs the block before the others (alone: just the block)."""
        return self.shard.main_first()


@contextmanager
def join_run(options: InputOptions, timeout: float = JOIN_TIMEOUT) -> Iterator[Process]:
    """This process's part of the run; under torchrun, inside the launch's process group
    (NCCL on GPUs, gloo on CPUs), each rank on ``cuda:LOCAL_RANK`` when the run uses CUDA, which
    every rank joins within ``timeout`` seconds (``--dist-timeout``)."""
    check_join_timeout(timeout)
    launch = launch_from_env()
    if launch is None:
        yield Process()
        return
    device = process_device(options.device, launch)
    with process_group(launch, device, timeout, waiting=info):
        backend = "NCCL" if device.type == "cuda" else "gloo"
        info(
            f"distributed: {launch.world_size} processes ({backend}), batch k runs on rank k mod {launch.world_size}; "
            "rank 0 writes the report"
        )
        yield Process(launch, device, Shard(launch, options.batch_size))
