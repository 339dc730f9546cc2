"""The time ``advgrad eval`` announces before a big run, against the time the run takes.

    python benchmarks/bench_cost_estimate.py [--limit N] [--only K]

Runs the ``advgrad eval`` commands of the README's tour, each as its own process (this checkout
first on the path, ``--no-resume`` so that nothing is restored), reads the estimate from the line
``cost: up to … passes …; about T here, measured by …`` on stderr and the sweep's own time from the
JSON report (``timing.total_seconds``), and prints both with their ratio, and the whole process's
wall time (start-up, loading and the pilot run included). A command whose upper bound stays under
a million sample-passes announces nothing (``—``). Target: every ratio within 2× (0.5 to 2).
``--limit N`` passes ``--limit N`` to every command (a quicker look); ``--only K`` runs the K-th
command alone (1-based).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TOUR = [  # the README's "A short tour" eval commands, as written there
    "--attack fgsm,pgd,apgd-ce,square --eps 0,2/255,4/255,8/255,16/255 --steps 40 --restarts 2",
    "--attack strong --eps 0,0.05,0.1",
    "--attack autoattack --eps 0,0.05,0.1",
    "--attack deepfool,cw --norm 2 --eps 0,0.25,0.5,1",
    "--corruptions all --fail-under corruption@mean=0.8",
]
UNITS = {"s": 1.0, "min": 60.0, "h": 3600.0}


def announced(stderr: str) -> float | None:
    """Seconds in the ``about T here`` part of the cost line, or None when there is none."""
    match = re.search(r"about ([0-9.]+) (s|min|h) here", stderr)
    return None if match is None else float(match.group(1)) * UNITS[match.group(2)]


def run(args: str, limit: int | None) -> tuple[float | None, float, float]:
    """(announced seconds, the sweep's seconds, the process's wall seconds) of one eval command."""
    with tempfile.TemporaryDirectory() as folder:
        report = Path(folder) / "report.json"
        command = [sys.executable, "-m", "advgrad", "eval", *args.split(), "--no-resume", "--json", str(report)]
        command += [] if limit is None else ["--limit", str(limit)]
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        start = time.perf_counter()
        result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=folder, timeout=3600)
        wall = time.perf_counter() - start
        if result.returncode not in (0, 1):  # 1: a gate failed, the run itself finished
            raise SystemExit(f"advgrad eval {args} failed ({result.returncode}):\n{result.stderr}")
        sweep = json.loads(report.read_text())["timing"]["total_seconds"]
        return announced(result.stderr), sweep, wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--only", type=int, default=None)
    options = parser.parse_args()
    commands = TOUR if options.only is None else [TOUR[options.only - 1]]
    print(f"announced vs taken, python {platform.python_version()}, {os.cpu_count()} CPUs, limit {options.limit}")
    print(f"  {'advgrad eval …':<86} {'announced':>9} {'sweep':>8} {'ratio':>6} {'process':>8}")
    for args in commands:
        estimate, sweep, wall = run(args, options.limit)
        shown = "—" if estimate is None else f"{estimate:.0f} s"
        ratio = "—" if estimate is None else f"{estimate / max(sweep, 1e-9):.2f}"
        print(f"  {args:<86} {shown:>9} {sweep:>6.0f} s {ratio:>6} {wall:>6.0f} s", flush=True)


if __name__ == "__main__":
    main()
