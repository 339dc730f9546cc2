"""Seconds, certified accuracy and peak memory of IBP, CROWN-IBP, CROWN and α-CROWN; branch and bound's
verdicts; auto_LiRPA's α-CROWN on the same network when it is importable.

    python benchmarks/bench_certify.py [--samples 450] [--eps 0.02] [--norm inf] [--threads 1]
                                       [--methods ibp,crown-ibp,crown,alpha-crown]
                                       [--cifar-samples 2] [--cifar-width 8]   (0 samples: skip that model)
    python benchmarks/bench_certify.py --bab [--eps 0.02] [--timeout 60] [--budget 1800]
    python benchmarks/bench_certify.py --auto-lirpa [--model default|mlp] [--eps 0.02]
                                       [--lirpa-method CROWN-Optimized|CROWN]
                                       (needs auto_LiRPA: PYTHONPATH=its source tree works on torch 2.14)

* ``--bab``: branch and bound (``advgrad.bounds.BoundedModel.verify``) on the default model, all
  ``--samples`` in one call: verified, falsified and unknown shares, decided = verified + falsified,
  and the whole call's seconds (attack, CROWN, α-CROWN and branching included).
* ``--auto-lirpa``: auto_LiRPA's ``CROWN-Optimized`` (α-CROWN, its default 20 iterations) bound of the
  margins z_y − z_j on the default model, for comparison with advgrad's ``alpha-crown`` row (same
  samples, ε and box); ``--lirpa-method CROWN`` its plain CROWN, beside advgrad's ``crown``.

* ``default``: the embedded digits CNN on the first ``--samples`` embedded test digits (the issue's
  figure: a reference CROWN took 20–28 s per ε for 450 samples on a 2-core machine).
* ``cifar``: :func:`benchmarks.common.cifar_convnet` (random weights, eval mode, batch-norm
  statistics randomised) on random 3×32×32 inputs labelled with the model's own prediction, at
  ε = 1/255: its certified fraction only says how much of the ball the bounds can cover.

Each (model, method) runs in a fresh process, so that its peak resident set size (``ru_maxrss``
of the finished child) is its own; the bound computation is one batch of all samples. ``seconds``
is :func:`advgrad.bounds.certified` (tracing the model to a graph, then the bounds);
``first trace s`` is the one-time start-up of torch.export in a fresh process, paid before it
and not included.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
METHODS = "ibp,crown-ibp,crown,alpha-crown"


def child(kind: str, method: str, samples: int, eps: float, norm: str, width: int) -> None:
    import torch

    from advgrad.bounds import certified

    if kind in ("default", "mlp"):
        from advgrad.io.data.load_data import load_default
        from advgrad.io.model.load_model import load_default_model

        model = load_default_model() if kind == "default" else _mlp()
        x, y = load_default().fetch(torch.arange(samples))
    else:
        sys.path.insert(0, str(ROOT))
        from benchmarks.common import cifar_convnet

        torch.manual_seed(0)
        model = cifar_convnet(width=width)
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
        x = torch.rand(samples, 3, 32, 32)
        with torch.no_grad():
            y = model(x).argmax(1)
    from advgrad.bounds import BoundedModel

    start = time.perf_counter()
    BoundedModel(model, x[:1])  # torch.export's one-time start-up cost in a fresh process
    first = time.perf_counter() - start
    start = time.perf_counter()
    if method == "bab":
        result = _bab(model, x, y, eps, norm)
    elif method == "auto-lirpa":
        result = {"certified": _auto_lirpa(model, x, y, eps, os.environ.get("BENCH_LIRPA", "CROWN-Optimized"))}
    else:
        result = {"certified": certified(model, x, y, [eps], norm=norm, method=method)[0].float().mean().item()}
    seconds = time.perf_counter() - start
    print(json.dumps({"seconds": seconds, "first": first, "samples": len(y), **result}))


def _mlp():
    """A max-pool-free comparison: a 64-128-128-10 ReLU MLP trained (seed 0, 20 epochs of Adam, plain
    cross-entropy) on the embedded digits' training split, so that only the ReLU relaxations differ."""
    import torch

    from advgrad.io.data.load_data import load_default

    torch.manual_seed(0)
    layers = [torch.nn.Linear(64, 128), torch.nn.ReLU(), torch.nn.Linear(128, 128), torch.nn.ReLU()]
    model = torch.nn.Sequential(torch.nn.Flatten(), *layers, torch.nn.Linear(128, 10))
    data = load_default(split="train")
    x, y = data.fetch(torch.arange(len(data)))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(20):
        for idx in torch.randperm(len(y)).split(64):
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
            optimizer.step()
    return model.eval()


def _bab(model, x, y, eps: float, norm: str) -> dict:
    """Branch and bound's shares of verified, falsified and unknown samples."""
    from advgrad.bounds import BoundedModel
    from advgrad.bounds.bab import BabParams

    limits = json.loads(os.environ["BENCH_BAB"])
    verdicts = BoundedModel(model, x[:1]).verify(x, y, eps, norm=norm, params=BabParams(**limits))
    share = lambda v: (verdicts.status == v).float().mean().item()  # noqa: E731
    return {"certified": share(1), "falsified": share(-1), "unknown": share(0), "domains": int(verdicts.domains.sum())}


def _auto_lirpa(model, x, y, eps: float, method: str) -> float:
    """auto_LiRPA's bound ``method``: the share of samples classified correctly with every margin bound > 0."""
    import torch
    from auto_LiRPA import BoundedModule, BoundedTensor
    from auto_LiRPA.perturbations import PerturbationLpNorm

    classes = 10
    bounded = BoundedModule(model.eval(), torch.zeros_like(x[:1]))
    eye = torch.eye(classes)
    c = eye[y].unsqueeze(1) - eye.unsqueeze(0)  # (N, classes, classes): row j = e_y − e_j (row y is zero)
    ptb = PerturbationLpNorm(eps=eps, norm=float("inf"), x_L=(x - eps).clamp(0, 1), x_U=(x + eps).clamp(0, 1))
    lower, _ = bounded.compute_bounds(x=(BoundedTensor(x, ptb),), C=c, method=method, bound_upper=False)
    lower = lower.scatter(1, y[:, None], float("inf"))
    with torch.no_grad():
        correct = model(x).argmax(1) == y
    return (correct & (lower > 0).all(1)).float().mean().item()


def run(kind: str, method: str, args) -> dict:
    path = os.pathsep.join(
        p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p
    )  # keep the caller's (auto_LiRPA from source)
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "PYTHONPATH": path}
    env["BENCH_LIRPA"] = args.lirpa_method
    env["BENCH_BAB"] = json.dumps({"timeout": args.timeout, "budget": args.budget, "max_domains": args.max_domains})
    samples = args.samples if kind != "cifar" else args.cifar_samples
    eps = args.eps if kind != "cifar" else 1 / 255
    cmd = [sys.executable, __file__, "--child", kind, method, str(samples), str(eps), args.norm, str(args.cifar_width)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, env=env, text=True)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)  # this child's own resource use
    if status != 0:
        raise SystemExit(f"{kind} {method}: the child process failed")
    result = json.loads(out.strip().splitlines()[-1])
    result["peak_rss_mib"] = usage.ru_maxrss / 1024
    return result


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        kind, method, samples, eps, norm, width = sys.argv[2:8]
        child(kind, method, int(samples), float(eps), norm, int(width))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=450)
    parser.add_argument("--model", default="default", choices=["default", "mlp"], help="mlp: a max-pool-free MLP")
    parser.add_argument("--eps", type=float, default=0.02)
    parser.add_argument("--norm", default="inf", choices=["inf", "2"])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--cifar-samples", type=int, default=2)
    parser.add_argument("--cifar-width", type=int, default=8)
    parser.add_argument("--methods", default=METHODS)
    parser.add_argument("--bab", action="store_true", help="branch and bound's verdicts on the default model")
    parser.add_argument("--timeout", type=float, default=None, help="--bab: seconds per sample")
    parser.add_argument("--budget", type=float, default=None, help="--bab: seconds for the whole run")
    parser.add_argument("--max-domains", type=int, default=100_000, help="--bab: sub-domains per sample")
    parser.add_argument("--auto-lirpa", action="store_true", help="auto_LiRPA's α-CROWN on the default model")
    parser.add_argument("--lirpa-method", default="CROWN-Optimized", help="--auto-lirpa: its bound method")
    args = parser.parse_args()
    print(f"threads={args.threads} norm={args.norm}")
    if args.bab or args.auto_lirpa:
        method = "bab" if args.bab else f"auto-lirpa {args.lirpa_method}"
        if args.auto_lirpa and importlib.util.find_spec("auto_LiRPA") is None:
            raise SystemExit("auto_LiRPA is not importable here: install it (from source for current torch)")
        r = run(args.model, "bab" if args.bab else "auto-lirpa", args)
        extra = f" falsified {r['falsified']:.1%} unknown {r['unknown']:.1%}" if method == "bab" else ""
        decided = f" decided {r['certified'] + r['falsified']:.1%}" if method == "bab" else ""
        limits = f" timeout={args.timeout} budget={args.budget} max_domains={args.max_domains}" if args.bab else ""
        print(
            f"{args.model} {method} samples={r['samples']} eps={args.eps}{limits}: verified {r['certified']:.1%}{extra}"
            f"{decided} in {r['seconds']:.1f} s (peak RSS {r['peak_rss_mib']:.0f} MiB)",
            flush=True,
        )
        return
    print(
        f"{'model':<9} {'method':<10} {'samples':>7} {'eps':>8} {'seconds':>8} {'certified':>9} "
        f"{'peak RSS MiB':>12} {'first trace s':>13}"
    )
    for kind in (args.model, "cifar"):
        if (args.samples if kind != "cifar" else args.cifar_samples) <= 0:
            continue  # --cifar-samples 0: the default model only
        for method in args.methods.split(","):
            r = run(kind, method, args)
            eps = args.eps if kind != "cifar" else 1 / 255
            print(
                f"{kind:<9} {method:<10} {r['samples']:>7} {eps:>8.4f} {r['seconds']:>8.2f} "
                f"{r['certified']:>9.1%} {r['peak_rss_mib']:>12.0f} {r['first']:>13.2f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
