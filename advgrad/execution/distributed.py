"""One evaluation shared among the processes torchrun starts, on torch's own distributed engine.

``torchrun --nproc_per_node N -m advgrad eval …`` starts N processes and gives each ``RANK``,
``WORLD_SIZE`` and ``LOCAL_RANK`` (and, with ``--nnodes``/``--rdzv-endpoint``, the same across
machines). advgrad reads them (:func:`launch_from_env`), joins the process group (NCCL when the
run is on CUDA, gloo on CPU) and shares the work out at batch granularity: batch ``k`` of the run
goes to rank ``k mod N``. Each batch's random starts and targets come from generators seeded by
its index (:mod:`advgrad.core.seeding`), so every batch gives the result it gives in one process.

The ranks advance in rounds: in round ``r`` rank ``i`` runs batch ``r·N + i``, then
``all_gather_object`` hands every rank the round's finished tallies, which each adds to its
totals in batch order — exactly the additions one process makes, so integer counts, float sums,
the checks' evidence and the first adversarial examples by batch index are those of a
single-process run. Memory stays flat: nothing is held beyond one round. A rank that runs out of
batches keeps joining rounds with nothing to add until every rank is done.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Protocol, TypeVar

import torch
import torch.distributed as dist
from torch.distributed.constants import default_pg_timeout

from advgrad.core.errors import InternalError, Notice, UsageError, first_line
from advgrad.core.numeric import check_number
from advgrad.execution.device import resolve_device

T = TypeVar("T")

JOIN_TIMEOUT = 60.0  # seconds every rank has to join the process group (`dist_timeout`)
MAX_JOIN_TIMEOUT = 7 * 24 * 3600.0
NOTICE_AFTER = 3.0  # seconds of waiting to join before saying so


@dataclass(frozen=True)
class Launch:
    """Where this process stands in a torchrun launch."""

    rank: int
    world_size: int
    local_rank: int

    @property
    def is_main(self) -> bool:
        """Rank 0 alone prints and writes the report."""
        return self.rank == 0


def launch_from_env(environ: Mapping[str, str] | None = None) -> Launch | None:
    """The torchrun launch this process belongs to, or None when it runs alone.

    torchrun sets ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``; a launch of one process is no
    launch at all (it runs exactly as without torchrun)."""
    env = os.environ if environ is None else environ
    if "WORLD_SIZE" not in env or "RANK" not in env:
        return None
    try:
        rank, world = int(env["RANK"]), int(env["WORLD_SIZE"])
        local = int(env.get("LOCAL_RANK", env["RANK"]))
    except ValueError:
        raise UsageError(
            f"RANK={env.get('RANK')!r}, WORLD_SIZE={env.get('WORLD_SIZE')!r} and LOCAL_RANK={env.get('LOCAL_RANK')!r} "
            "must be integers (they are set by torchrun)"
        ) from None
    if world < 1 or not 0 <= rank < world or local < 0:
        raise UsageError(f"RANK={rank} does not fit WORLD_SIZE={world} (they are set by torchrun)")
    if world == 1:
        return None
    return Launch(rank, world, local)


def process_device(requested: str | None, launch: Launch) -> torch.device:
    """The device of one process of a launch: ``cuda:LOCAL_RANK`` when the run uses CUDA
    (``--device cuda``, or ``auto`` on a machine with CUDA), else the CPU."""
    text = (requested or "auto").strip().lower()
    if text.startswith("cuda:"):
        raise UsageError(
            f"`device` {requested} names one GPU, but under torchrun each process takes the GPU of its LOCAL_RANK; "
            "set `device` to cuda (or auto), and choose the GPUs with CUDA_VISIBLE_DEVICES",
            params="device",
        )
    device = resolve_device(text)
    if device.type != "cuda":
        return device
    count = torch.cuda.device_count()
    if launch.local_rank >= count:
        raise UsageError(
            f"this process has LOCAL_RANK {launch.local_rank} but the machine has {count} CUDA device(s); "
            f"start at most {count} processes per machine (torchrun --nproc_per_node {count})"
        )
    return torch.device("cuda", launch.local_rank)


class Part(Protocol):
    """What processes exchange: a finished batch's counts (:class:`advgrad.evaluation.tally.P`),
    of which the exchange reads only how many samples it holds."""

    n: int


P = TypeVar("P", bound=Part)


class LocalExchange:
    """The exchange of a process that runs alone: every batch is its own, in order, and what it
    finishes is all there is. :func:`advgrad.evaluation.sweep.evaluate` uses it when no :class:`Shard` is
    given, so a single-process run and a distributed one take the same path through the sweep."""

    world_size = 1

    def __init__(self) -> None:
        self._samples = 0  # samples in the batches exchanged so far

    def number(self, batches: Iterable[T]) -> Iterator[tuple[int, T]]:
        """The batches with their indices ``0, 1, 2…``."""
        return enumerate(batches)

    def samples_before(self, batch_index: int) -> int:
        """Samples in the batches before ``batch_index``: all those exchanged so far."""
        return self._samples

    def exchange(self, batch_index: int, part: P) -> list[P]:
        """The finished batch, alone."""
        self._samples += part.n
        return [part]

    def drain(self) -> Iterator[P]:
        """Nothing is left to receive."""
        return iter(())

    def total(self, value: int) -> int:
        """``value``: this process is the whole run."""
        return value

    def main_first(self) -> AbstractContextManager[None]:
        """The block, at once: there is no other process to wait for."""
        return nullcontext()


class Shard:
    """This process's share of a distributed evaluation and the exchange of finished batches.

    :func:`advgrad.evaluation.sweep.evaluate` uses it through four calls: :meth:`number` gives this
    rank's batches their run-wide indices, :meth:`samples_before` says how many samples precede
    a batch in the whole run, :meth:`exchange` trades a finished batch for the round's finished
    batches (in batch order) and :meth:`drain` joins the remaining rounds once this rank is
    done. The batches of a run must all hold ``batch_size`` samples except the last one (they
    do: sources cut the selection into consecutive chunks); the exchange checks it.
    """

    def __init__(self, launch: Launch, batch_size: int, group: Any = None):
        self.rank, self.world_size = launch.rank, launch.world_size
        self.batch_size = batch_size
        self.group = group
        self._next = 0  # index of the next batch the totals expect
        self._short_seen: int | None = None  # a batch shorter than batch_size, which must be the last

    def number(self, batches: Iterable[T]) -> Iterator[tuple[int, T]]:
        """This rank's batches with their indices in the whole run: ``rank``, ``rank + N``, …"""
        for i, batch in enumerate(batches):
            yield self.rank + i * self.world_size, batch

    def samples_before(self, batch_index: int) -> int:
        """Samples in the batches before ``batch_index`` (all of them full)."""
        return batch_index * self.batch_size

    def exchange(self, batch_index: int, part: P) -> list[P]:
        """Give this rank's finished batch, get every rank's batch of this round, in batch order."""
        return self._round((batch_index, part))

    def drain(self) -> Iterator[P]:
        """Join rounds with nothing to give until no rank has anything left; yield what others give."""
        while True:
            parts = self._round(None)
            if not parts and self._all_done:
                return
            yield from parts

    def total(self, value: int) -> int:
        """The sum of ``value`` over the ranks (all_reduce)."""
        t = torch.tensor([value], dtype=torch.int64, device=_collective_device())
        dist.all_reduce(t, group=self.group)
        return int(t.item())

    def barrier(self) -> None:
        dist.barrier(group=self.group)

    @contextmanager
    def main_first(self) -> Iterator[None]:
        """Rank 0 runs the block before the others do (e.g. opening a state folder it may clear)."""
        if self.rank != 0:
            self.barrier()
        try:
            yield
        finally:
            if self.rank == 0:
                self.barrier()

    def _round(self, mine: tuple[int, P] | None) -> list[P]:
        gathered: list[Any] = [None] * self.world_size
        dist.all_gather_object(gathered, mine, group=self.group)
        self._all_done = all(item is None for item in gathered)
        found = sorted((item for item in gathered if item is not None), key=lambda item: item[0])
        for index, part in found:
            self._check(index, part)
        return [part for _, part in found]

    def _check(self, index: int, part: P) -> None:
        """Batches must arrive in order, each full except the last: else ``samples_before`` and
        the single-process equivalence would not hold (a bug, never the user's input)."""
        if index != self._next or self._short_seen is not None:
            raise InternalError(
                f"distributed evaluation received batch {index} when batch {self._next} was due "
                f"(after a short batch: {self._short_seen})"
            )
        if part.n != self.batch_size:
            self._short_seen = index
        self._next += 1


def _collective_device() -> torch.device:
    """Where tensors for collectives live: the current GPU under NCCL, else the CPU."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def check_join_timeout(timeout: float) -> None:
    """``dist_timeout`` must be a number of seconds > 0 (at most a week)."""
    check_number(timeout, "dist_timeout", above=0, maximum=MAX_JOIN_TIMEOUT)


@contextmanager
def process_group(
    launch: Launch,
    device: torch.device,
    timeout: float = JOIN_TIMEOUT,
    waiting: Callable[[str], None] | None = None,
) -> Iterator[None]:
    """Join the launch's process group for the block: NCCL when ``device`` is a GPU, gloo on CPU.
    The rendezvous (address, port, store) is the one torchrun set up in the environment.

    Every rank must have joined within ``timeout`` seconds (``dist_timeout``), else a
    :class:`UsageError` says so: a store that cannot be reached or a rank that never comes would
    otherwise keep the process waiting for torch's default half hour. Ctrl-C is heard while it
    waits. ``waiting`` (a message → None) hears once when the wait lasts more than a few seconds.
    Collectives during the run keep torch's default timeout: a rank may wait for a slow one's batch.
    """
    check_join_timeout(timeout)
    backend = "nccl" if device.type == "cuda" else "gloo"
    if backend == "nccl":
        if not dist.is_nccl_available():
            raise UsageError("this torch build has no NCCL; run the distributed evaluation with --device cpu (gloo)")
        torch.cuda.set_device(device)
    elif not dist.is_gloo_available():
        raise UsageError("this torch build has no gloo backend, which a distributed run on CPUs needs")
    notice = Notice(
        f"distributed: waiting for the {launch.world_size} processes of the launch to join (at most {timeout:g} s: "
        "`dist_timeout`)",
        "dist_timeout",
    )
    failure = _interruptible(lambda: _join(launch, backend, device, timeout), waiting, notice)
    if isinstance(failure, (RuntimeError, ValueError)):  # torch's DistError (a timeout included) is a RuntimeError
        reason = first_line(failure).rstrip(".")
        raise UsageError(
            f"could not join the torchrun process group ({backend}): {reason}; every process must join within "
            f"`dist_timeout` ({timeout:g} s): check MASTER_ADDR and MASTER_PORT, and that all {launch.world_size} "
            "processes start",
            params="dist_timeout",
        ) from None
    if failure is not None:
        raise failure
    try:
        yield
    finally:
        dist.destroy_process_group()


def _join(launch: Launch, backend: str, device: torch.device, timeout: float) -> None:
    """The rendezvous through the launch's store, every rank within ``timeout``, then the process group."""
    store, rank, world = next(
        dist.rendezvous("env://", launch.rank, launch.world_size, timeout=timedelta(seconds=timeout))
    )
    kwargs: dict[str, Any] = {}
    if backend == "nccl":
        torch.cuda.set_device(device)  # the current device is per thread
        kwargs["device_id"] = device
    dist.init_process_group(backend, store=store, rank=rank, world_size=world, **kwargs)
    store.set_timeout(default_pg_timeout)  # the run's own use of the store waits as long as collectives


def _interruptible(
    work: Callable[[], None], waiting: Callable[[str], None] | None, notice: str
) -> BaseException | None:
    """Run ``work`` in a helper thread and wait for it here, where Ctrl-C raises KeyboardInterrupt:
    torch waits for the other ranks in C++, which would not return to Python (or hear a signal)
    before it is done. What ``work`` raised is returned; ``waiting`` hears ``notice`` when it takes
    over :data:`NOTICE_AFTER` seconds. Meanwhile the C++ log lines torch writes on each failed
    connection (with a stack trace) are kept off stderr, which is advgrad's."""
    outcome: list[BaseException | None] = []

    def run() -> None:
        try:
            work()
            outcome.append(None)
        except BaseException as exc:  # handed to the waiting thread
            outcome.append(exc)

    helper = threading.Thread(target=run, name="advgrad-join", daemon=True)  # left behind on Ctrl-C
    with _native_stderr_hidden() as show:
        helper.start()
        helper.join(NOTICE_AFTER)
        if helper.is_alive() and waiting is not None:
            with show():
                waiting(notice)
        helper.join()
    return outcome[0]


@contextmanager
def _native_stderr_hidden() -> Iterator[Callable[[], AbstractContextManager[None]]]:
    """File descriptor 2 goes to the null device for the block; it yields a context manager that
    gives it back meanwhile (for a message of ours). Python's own stderr is flushed at each switch."""
    sys.stderr.flush()
    saved = os.dup(2)
    null = os.open(os.devnull, os.O_WRONLY)

    @contextmanager
    def show() -> Iterator[None]:
        os.dup2(saved, 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(null, 2)

    try:
        os.dup2(null, 2)
        yield show
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)
