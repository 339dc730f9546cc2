"""advgrad's `autoattack` preset against the reference implementation (pyautoattack), side by side.

    python benchmarks/bench_autoattack.py [--samples 200] [--eps 0.1] [--norm inf|2] [--threads 1]

Both run AutoAttack's standard version (APGD-CE, APGD-T, FAB-T, Square) on the same model and
data — the embedded digits CNN and the first ``--samples`` embedded test digits — with the same
number of threads. The script prints the seconds each takes (wall and CPU) and the robust accuracy
each reaches; the goal is advgrad no slower, at the same accuracy (within 1% of the samples).
"""

from __future__ import annotations

import argparse
import time

import torch

import advgrad
from advgrad.attacks import get_attack, run_attack
from advgrad.core.eps import parse_eps
from advgrad.core.threat import ThreatModel


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--eps", default="0.1")
    parser.add_argument("--norm", choices=["inf", "2"], default="inf")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    try:
        from pyautoattack import AutoAttack
    except ImportError:
        raise SystemExit("pyautoattack is not installed (pip install pyautoattack, or the `test` extra)") from None
    torch.set_num_threads(args.threads)
    eps = parse_eps(args.eps)
    model = advgrad.load_model().eval()
    x, y = advgrad.load_data(limit=args.samples)
    with torch.no_grad():
        clean = float((model(x).argmax(dim=1) == y).float().mean())

    def robust(x_adv: torch.Tensor) -> float:
        with torch.no_grad():
            return float((model(x_adv).argmax(dim=1) == y).float().mean())

    rows = []
    wall, cpu = time.perf_counter(), time.process_time()
    x_adv = run_attack(
        get_attack("autoattack"),
        model,
        x,
        y,
        threat=ThreatModel(args.norm, eps),
        generator=torch.Generator().manual_seed(args.seed),
    )
    rows.append(("advgrad autoattack", time.perf_counter() - wall, time.process_time() - cpu, robust(x_adv)))
    reference = AutoAttack(
        model, norm={"inf": "Linf", "2": "L2"}[args.norm], eps=eps, version="standard", seed=args.seed
    )
    wall, cpu = time.perf_counter(), time.process_time()
    x_ref, _ = reference.run_standard_evaluation(x, y, batch_size=args.samples)
    rows.append(("pyautoattack standard", time.perf_counter() - wall, time.process_time() - cpu, robust(x_ref)))

    print(
        f"digits CNN, {args.samples} samples, L{'∞' if args.norm == 'inf' else '2'} ε = {args.eps}, "
        f"{args.threads} thread(s), clean accuracy {clean:.1%}"
    )
    print(f"{'':24} {'wall s':>8} {'CPU s':>8} {'robust accuracy':>16}")
    for name, w, c, acc in rows:
        print(f"{name:24} {w:8.1f} {c:8.1f} {acc:16.1%}")
    print(f"advgrad / pyautoattack wall time: {rows[0][1] / rows[1][1]:.2f}")


if __name__ == "__main__":
    main()
