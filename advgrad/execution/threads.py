"""How many CPU threads torch may use: ``--threads N|auto``.

torch's default is one intra-op thread per core it sees. On a machine whose cores are shared
(a CI runner, a container with a CPU quota, several ranks of a torchrun launch) those threads wait
on each other and a run gets several times slower; on small models (the 8×8 digits) even a quiet
machine runs faster with one thread, because splitting a small operation costs more than it saves.

``auto`` therefore takes the smallest of

* the CPUs this process may run on: its affinity mask (``os.sched_getaffinity``), the cgroup CPU
  quota (v2 ``cpu.max``, v1 ``cpu.cfs_quota_us ÷ cpu.cfs_period_us``, rounded down, at least 1),
  and an ``OMP_NUM_THREADS`` the user set; under torchrun these are split among the
  ``LOCAL_WORLD_SIZE`` processes of the machine (at least one each);
* the CPUs other processes leave idle: sampled from /proc/stat over :data:`IDLE_SAMPLE` seconds
  (only when the work could use more than one thread). Threads on a core that another process
  keeps busy do not add speed, they wait at every barrier for the one that lost its time slice;
* what the work can use: one thread per :data:`FLOPS_PER_THREAD` floating-point operations of a
  forward pass over one batch (counted once, on one sample, by hooks on the convolutions and
  linear layers: :func:`forward_flops`), at least 1.
  Measured on a 2-core machine: the digits CNN (0.7 MFLOP a sample, 0.2 GFLOP a batch of 256)
  runs fastest on one thread (two threads: 10× slower when the cores are shared); a CIFAR convnet
  of 1 GFLOP a batch still runs faster on one thread, one of 15 GFLOP a batch twice as fast on two.

On CUDA the CPU only feeds the GPU: ``auto`` takes at most :data:`CUDA_THREADS`. An explicit ``N``
is used as given (with a warning when it exceeds the CPUs available).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from advgrad.core.errors import Notice, UsageError

FLOPS_PER_THREAD = 4e9  # forward-pass FLOPs over one batch that make one more thread worth it
CUDA_THREADS = 4
CGROUP_ROOT = Path("/sys/fs/cgroup")
IDLE_SAMPLE = 0.1  # seconds over which the idle CPUs are measured


def parse_threads(value: object) -> int | None:
    """``auto`` → None; a whole number ≥ 1 → itself; anything else is a :class:`UsageError`."""
    text = str(value).strip().lower()
    if text == "auto":
        return None
    try:
        n = int(text)
    except ValueError:
        raise UsageError(f"`threads` must be a whole number ≥ 1 or auto, got {value!r}", params="threads") from None
    if n < 1:
        raise UsageError(f"`threads` must be a whole number ≥ 1 or auto, got {value!r}", params="threads")
    return n


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except (OSError, UnicodeDecodeError):
        return None


def _cgroup_v2_path(root: Path) -> Path:
    """This process's cgroup v2 folder (``0::/path`` in /proc/self/cgroup), else the root."""
    text = _read(Path("/proc/self/cgroup")) or ""
    for line in text.splitlines():
        if line.startswith("0::"):
            return root / line[3:].lstrip("/")
    return root


def cgroup_cpu_quota(root: Path = CGROUP_ROOT) -> float | None:
    """The CPU quota of this process's cgroup in CPUs (1.5 = one and a half), None when unlimited
    or unknown. Reads cgroup v2 ``cpu.max`` (``QUOTA PERIOD`` or ``max PERIOD``) from this process's
    folder up to the root, else v1 ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us`` (quota −1: none).
    Missing or unreadable files mean no limit."""
    quotas: list[float] = []
    folder = _cgroup_v2_path(root)
    for path in (folder, *folder.parents):
        if root not in (path, *path.parents):
            break
        text = _read(path / "cpu.max")
        if text:
            parts = text.split()
            try:
                if parts[0] != "max" and len(parts) == 2 and float(parts[1]) > 0:
                    quotas.append(float(parts[0]) / float(parts[1]))
            except ValueError:
                pass
    for v1 in (root / "cpu", root / "cpu,cpuacct", root):
        quota, period = _read(v1 / "cpu.cfs_quota_us"), _read(v1 / "cpu.cfs_period_us")
        try:
            if quota is not None and period is not None and float(quota) > 0 and float(period) > 0:
                quotas.append(float(quota) / float(period))
        except ValueError:
            pass
    return min(quotas) if quotas else None


def affinity_cpus() -> int:
    """CPUs this process may run on (its affinity mask; ``os.cpu_count`` where there is none)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def _env_int(name: str) -> int | None:
    try:
        value = int(os.environ.get(name, ""))
    except ValueError:
        return None
    return value if value >= 1 else None


def available_cpus(root: Path = CGROUP_ROOT) -> int:
    """CPUs this process may use: affinity mask, cgroup quota (rounded down, at least 1) and a
    user's ``OMP_NUM_THREADS``, divided among torchrun's ``LOCAL_WORLD_SIZE`` ranks (at least 1)."""
    cpus = affinity_cpus()
    quota = cgroup_cpu_quota(root)
    if quota is not None:
        cpus = min(cpus, max(1, math.floor(quota)))
    omp = _env_int("OMP_NUM_THREADS")
    if omp is not None:
        cpus = min(cpus, omp)
    ranks = _env_int("LOCAL_WORLD_SIZE") or 1
    return max(1, cpus // ranks)


def _cpu_times(cpus: set[int]) -> dict[int, tuple[int, int]] | None:
    """(idle, total) jiffies of each CPU in ``cpus`` from /proc/stat; None when unreadable."""
    text = _read(Path("/proc/stat"))
    if not text:
        return None
    times: dict[int, tuple[int, int]] = {}
    for line in text.splitlines():
        name, *fields = line.split()
        if not name.startswith("cpu") or name == "cpu" or not name[3:].isdigit() or int(name[3:]) not in cpus:
            continue
        try:
            values = [int(v) for v in fields[:8]]
        except ValueError:
            return None
        idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
        times[int(name[3:])] = (idle, sum(values))
    return times or None


def idle_cpus(interval: float = IDLE_SAMPLE) -> float | None:
    """How many of this process's CPUs were idle over the next ``interval`` seconds (1.0: one
    whole CPU), measured from /proc/stat while this process sleeps; None where it cannot be read."""
    try:
        cpus = set(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = set(range(os.cpu_count() or 1))
    before = _cpu_times(cpus)
    if before is None:
        return None
    time.sleep(interval)
    after = _cpu_times(cpus)
    if after is None:
        return None
    idle = 0.0
    for cpu, (idle0, total0) in before.items():
        if cpu in after and after[cpu][1] > total0:
            idle += (after[cpu][0] - idle0) / (after[cpu][1] - total0)
        else:
            idle += 1.0  # no tick counted: nothing ran there
    return idle


@dataclass(frozen=True)
class ThreadChoice:
    """The thread count chosen, why, and a warning for an explicit count above the CPUs available."""

    threads: int
    reason: str
    warning: str | None = None


def choose_threads(
    requested: int | None,
    *,
    cpus: int,
    batch_flops: float | None = None,
    device_type: str = "cpu",
    idle: float | None = None,
) -> ThreadChoice:
    """Threads for a run: ``requested`` (None for auto) given ``cpus`` available, the FLOPs of
    one forward pass over a batch (None: unknown, taken as large) and the CPUs other processes
    leave ``idle`` (None: unknown, taken as all).

    auto = min(cpus, round(idle) (≥ 1), ⌊batch_flops / FLOPS_PER_THREAD⌋ (≥ 1)), and at most
    ``CUDA_THREADS`` on CUDA.
    """
    cpus = max(1, int(cpus))
    if requested is not None:
        warning = None
        if requested > cpus:
            warning = Notice(
                f"`threads` {requested} is more than the {cpus} CPU(s) this process may use; "
                "threads that share a core wait on each other (try `threads` auto)",
                "threads",
            )
        return ThreadChoice(requested, "as given", warning)
    if device_type == "cuda":
        return ThreadChoice(min(cpus, CUDA_THREADS), f"auto: CUDA device, {cpus} CPU(s) available")
    if batch_flops is None:
        threads, reason = cpus, f"auto: {cpus} CPU(s) available"
    else:
        threads = min(cpus, max(1, int(batch_flops // FLOPS_PER_THREAD)))
        reason = f"auto: {cpus} CPU(s) available, {batch_flops / 1e9:.2g} GFLOP a batch"
    if idle is not None and threads > 1:
        threads = min(threads, max(1, round(idle)))
        reason += f", {idle:.1f} CPU(s) idle"
    return ThreadChoice(threads, reason)


def forward_flops(model: nn.Module, x: Tensor) -> float | None:
    """Floating-point operations of one forward pass on ``x``, counted cheaply: forward hooks on
    the convolutions (2 · output elements · input channels per group · kernel size) and linear
    layers (2 · output elements · input features), which carry nearly all of a vision model's
    work. A model without such submodules (TorchScript, an ExportedProgram) is estimated from its
    parameter count p and the input's spatial size s as 2·p·s, what a network of stride-1
    convolutions would cost — an overestimate for most, so such a model never gets too few threads.
    None when the model cannot run on ``x``."""
    from advgrad.core.gradient import frozen

    total = [0]

    def conv(module: nn.Module, inputs: object, output: Tensor) -> None:
        if isinstance(output, Tensor):
            total[0] += 2 * output.numel() * (module.in_channels // module.groups) * math.prod(module.kernel_size)

    def linear(module: nn.Module, inputs: object, output: Tensor) -> None:
        if isinstance(output, Tensor):
            total[0] += 2 * output.numel() * module.in_features

    hooks = []
    for module in model.modules():
        if isinstance(module, nn.modules.conv._ConvNd):
            hooks.append(module.register_forward_hook(conv))
        elif isinstance(module, nn.Linear):
            hooks.append(module.register_forward_hook(linear))
    try:
        with frozen(model), torch.no_grad():
            model(x)
    except Exception:  # the probe that follows runs the model again and words its failure
        return None
    finally:
        for hook in hooks:
            hook.remove()
    if total[0]:
        return float(total[0]) / max(1, x.shape[0])
    parameters = sum(p.numel() for p in model.parameters())
    spatial = int(torch.Size(x.shape[2:]).numel()) if x.dim() > 2 else 1
    return float(2 * parameters * spatial) if parameters else None


def apply_threads(threads: int) -> None:
    """Set torch's intra-op threads (and inter-op threads, which torch allows only before any
    parallel work has started; afterwards that setting is left as it is)."""
    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(threads)
    except RuntimeError:
        pass


def auto_threads(
    requested: int | None, module: nn.Module, x: Tensor, samples: int, batch_size: int, device: torch.device
) -> ThreadChoice:
    """The threads for a run of ``module`` over ``samples`` samples in batches of ``batch_size`` (``x``:
    a first batch): ``requested`` as given, or ``auto`` from the CPUs available, the FLOPs of a forward
    pass over one batch (counted on one sample) and, when that asks for more than one thread, the CPUs
    other processes leave idle. The command line and the Python API both choose this way."""
    batch_flops = None
    if requested is None and device.type != "cuda" and x.shape[0]:
        per_sample = forward_flops(module, x[:1])
        batch_flops = None if per_sample is None else per_sample * max(1, min(batch_size, samples))
    cpus = available_cpus()
    choice = choose_threads(requested, cpus=cpus, batch_flops=batch_flops, device_type=device.type)
    if choice.threads > 1 and requested is None and device.type != "cuda":  # worth a look at the neighbours
        choice = choose_threads(None, cpus=cpus, batch_flops=batch_flops, idle=idle_cpus())
    return choice


@contextmanager
def threads_for_call(threads: int) -> Iterator[None]:
    """torch's intra-op threads set to ``threads`` inside the block and put back as they were after it:
    the Python API chooses threads for its call without changing the caller's setting for good
    (inter-op threads, which torch lets be set only once, are left alone)."""
    before = torch.get_num_threads()
    if threads != before:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)
