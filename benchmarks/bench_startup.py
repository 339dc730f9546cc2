"""Start-up time of the command line: what a user waits for before anything happens.

    python benchmarks/bench_startup.py [--repeats 7]

Each case runs as its own process (``python -m advgrad …``, this checkout first on the path), as a
shell runs the installed command: ``--version``, ``--help``, ``docs``, ``config list``, ``attacks``,
one TAB press (the request bash sends for ``advgrad eval --attack fgsm,p<TAB>``), and, for
comparison, ``eval --help`` (which loads the command and torch) and a bare ``python -c "import
torch"``. A cell is the median of ``--repeats`` runs, the cases interleaved so that noise from the
machine hits every case alike; the last column says whether the process imported torch. Target:
under 0.5 s for ``--version`` and the TAB press.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET = 0.5
COMPLETION = {"_ADVGRAD_COMPLETE": "complete_bash", "COMP_WORDS": "advgrad eval --attack fgsm,p", "COMP_CWORD": "3"}
CASES: list[tuple[str, list[str], dict[str, str]]] = [
    ("advgrad --version", ["--version"], {}),
    ("advgrad --help", ["--help"], {}),
    ("advgrad docs", ["docs"], {}),
    ("advgrad config list", ["config", "list"], {}),
    ("advgrad attacks", ["attacks"], {}),
    ("TAB: eval --attack fgsm,p", [], COMPLETION),
    ("advgrad eval --help", ["eval", "--help"], {}),
]
# Runs the CLI in-process, then says on stderr whether torch was imported.
PROBE = (
    "import sys\nfrom advgrad.cli import main\ntry:\n    main()\nexcept SystemExit:\n    pass\n"
    "sys.stderr.write('\\nTORCH=' + str('torch' in sys.modules) + '\\n')\n"
)


def run(args: list[str], extra: dict[str, str]) -> tuple[float, bool]:
    """Wall time of one process, and whether it imported torch."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), **extra}
    start = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-c", PROBE, *args], capture_output=True, text=True, env=env, timeout=300, check=False
    )
    seconds = time.perf_counter() - start
    return seconds, "TORCH=True" in result.stderr


def bare_torch() -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import torch"], check=True, timeout=300)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    repeats = parser.parse_args().repeats
    times: dict[str, list[float]] = {name: [] for name, _, _ in CASES}
    torch_seen: dict[str, bool] = {}
    torch_alone: list[float] = []
    for _ in range(repeats):
        for name, args, extra in CASES:
            seconds, imported = run(args, extra)
            times[name].append(seconds)
            torch_seen[name] = imported
        torch_alone.append(bare_torch())
    print(f"start-up, median of {repeats} runs, python {platform.python_version()}, {platform.machine()}")
    print(f"  {'case':<28} {'seconds':>8}  torch imported")
    for name, _, _ in CASES:
        median = statistics.median(times[name])
        flag = "yes" if torch_seen[name] else "no"
        print(f"  {name:<28} {median:>8.3f}  {flag}")
    bare = 'python -c "import torch"'
    print(f"  {bare:<28} {statistics.median(torch_alone):>8.3f}  yes")
    version, tab = statistics.median(times["advgrad --version"]), statistics.median(times["TAB: eval --attack fgsm,p"])
    verdict = "met" if max(version, tab) < TARGET else "NOT met"
    print(f"  target: --version and TAB under {TARGET} s: {verdict}")


if __name__ == "__main__":
    main()
