"""Whole-process wall time at 1, 2 and ``auto`` CPU threads, on an idle machine and beside a busy one.

    python benchmarks/bench_threads.py [--repeats 2] [--counts 1,2] [--samples 256] [--busy 1]

Two workloads, each run as its own process (``python -m advgrad …``), so the time includes what
a user waits for — start-up, loading, the run:

* ``eval``: ``advgrad eval`` with every default (the embedded 8×8 digits CNN, FGSM and PGD);
* ``pgd-10``: ``advgrad attack --method pgd --steps 10`` (a fixed budget: every sample gets every
  step) on a CIFAR-shaped convnet (``common.cifar_convnet``, 3×32×32 inputs, seeded weights) and
  ``--samples`` random images.

Each workload runs with ``--threads 1``, ``--threads 2`` (``--counts``) and ``--threads auto``,
first on the machine as it is ("idle"), then with ``--busy`` processes spinning on a core each
(``python -c "while True: pass"``, killed afterwards) — a CI runner's neighbours. A cell is the
median of ``--repeats`` runs, the counts interleaved so that noise hits every count alike. Each
row is printed as seconds and as ratios to the best count of the row, with the count ``auto``
chose; the last column says whether ``auto`` is within 10% of the best. OMP_NUM_THREADS is removed
from the children's environment (it would cap ``auto``); nothing else is pinned.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
TOLERANCE = 1.10


def cifar_model():
    """The factory the pgd-10 workload loads (``--model bench_threads:cifar_model``): seeded weights."""
    sys.path.insert(0, str(HERE))
    from common import cifar_convnet

    torch.manual_seed(0)
    return cifar_convnet(32)


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(HERE), *filter(None, [os.environ.get("PYTHONPATH")])])
    return env


def _run(args: list[str]) -> tuple[float, int | None]:
    """Wall seconds of one ``python -m advgrad`` process, and the threads it reported using."""
    t0 = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "advgrad", *args],
        env=_env(),
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    seconds = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"advgrad {' '.join(args)} failed ({done.returncode}): {done.stderr.strip()[-500:]}")
    first = done.stderr.splitlines()[0] if done.stderr else ""
    match = re.search(r"(\d+) threads?\b", first)
    return seconds, int(match.group(1)) if match else None


@contextmanager
def busy(n: int):
    """``n`` processes spinning on a core each, killed on exit."""
    spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]
    try:
        time.sleep(0.5)
        yield
    finally:
        for p in spinners:
            p.kill()
        for p in spinners:
            p.wait()


def measure(workload: list[str], counts: list[str], repeats: int) -> tuple[dict[str, float], int | None]:
    times: dict[str, list[float]] = {c: [] for c in counts}
    chosen = None
    for _ in range(repeats):
        for c in counts:
            seconds, used = _run([*workload, "--threads", c])
            times[c].append(seconds)
            if c == "auto":
                chosen = used
    return {c: statistics.median(ts) for c, ts in times.items()}, chosen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--counts", default="1,2", help="fixed thread counts to compare with auto")
    parser.add_argument("--samples", type=int, default=256, help="images of the pgd-10 workload")
    parser.add_argument("--busy", type=int, default=1, help="spinning processes in the busy rows")
    args = parser.parse_args()
    counts = [c.strip() for c in args.counts.split(",") if c.strip()] + ["auto"]

    from advgrad.execution.threads import available_cpus

    print(
        f"machine: {platform.platform()}, {os.cpu_count()} CPUs, this process may use {available_cpus()}; "
        f"torch {torch.__version__}, python {platform.python_version()}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "cifar.pt"
        gen = torch.Generator().manual_seed(0)
        torch.save(
            {
                "x": torch.rand(args.samples, 3, 32, 32, generator=gen),
                "y": torch.randint(0, 10, (args.samples,), generator=gen),
            },
            data,
        )
        workloads = {
            "eval (digits, defaults)": ["eval"],
            f"pgd-10 (CIFAR convnet, {args.samples} samples)": [
                "attack",
                "--model",
                "bench_threads:cifar_model",
                "--data",
                str(data),
                "--method",
                "pgd",
                "--steps",
                "10",
                "--eps",
                "8/255",
            ],
        }
        rows = []
        for load in ("idle", f"busy ×{args.busy}"):
            for name, workload in workloads.items():
                if load == "idle":
                    result = measure(workload, counts, args.repeats)
                else:
                    with busy(args.busy):
                        result = measure(workload, counts, args.repeats)
                rows.append((f"{name}, {load}", *result))
                print(".", end="", flush=True, file=sys.stderr)
    print(file=sys.stderr)

    width = max(len(r[0]) for r in rows)
    header = "".join(f"{'threads ' + c:>22}" for c in counts)
    print(f"{'workload':<{width}}{header}   auto chose   auto ≤ best + 10%")
    all_ok = True
    for name, times, chosen in rows:
        best = min(times.values())
        cells = "".join(f"{f'{times[c]:.2f} s ({times[c] / best:.2f}×)':>22}" for c in counts)
        ok = times["auto"] <= best * TOLERANCE
        all_ok &= ok
        print(f"{name:<{width}}{cells}   {str(chosen):>11}   {'yes' if ok else 'NO'}")
    print(f"auto within 10% of the best in every row: {'yes' if all_ok else 'NO'}")


if __name__ == "__main__":
    main()
