"""Peak memory of ``eval`` at 1,000 and 10,000 samples: it must stay flat in the number of samples.

    python benchmarks/bench_memory.py [--sizes 1000,10000] [--device cpu|cuda] [--steps 10] [--batch 250] [--threads 1]

Each size runs in a fresh process, so each high-water mark is its own:

* ``library``: :func:`advgrad.evaluation.sweep.evaluate` over a streamed synthetic source (the embedded
  digits test images cycled to any length, fetched batch by batch: the data takes no memory that
  grows with N), with FGSM and PGD over four ε and 8 adversarial examples kept per attack, as
  ``advgrad eval`` keeps for its image grid. The process reports its Python allocations' peak
  (tracemalloc: per-sample lists would show here) and, on CUDA, ``torch.cuda.max_memory_allocated``.
* ``cli``: the unmodified command ``python -m advgrad eval --data FILE.npz --limit N …`` on one
  file of the largest size (uint8, 64 bytes a sample), so the loaded data is the same at every N.

For both, the peak resident set size (RSS high-water, ``ru_maxrss`` of the finished child, read
with ``os.wait4``) covers everything: Python, torch's CPU allocator, the libraries. On CPU the
library run is repeated with ``ONEDNN_PRIMITIVE_CACHE_CAPACITY=0``: oneDNN keeps a compiled
convolution per input shape it has seen (up to 1,024), and early stop shrinks batches to every
size from the batch size down to 1, so that cache grows until it has seen them all — bounded by
the batch size and the number of layers, not by the number of samples. With it off, what
remains is advgrad's own memory.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EPS = "0,0.05,0.1,0.2"


def child_library(n: int, device: str, steps: int, batch: int) -> None:
    """Run one evaluation over ``n`` streamed samples and print what this process measured."""
    import time
    import tracemalloc

    import torch
    from common import CycledSource  # benchmarks/ is on the path: this file runs as a script

    from advgrad.attacks import get_attack
    from advgrad.core.eps import parse_eps_list
    from advgrad.evaluation import EvalAttack, EvalConfig, evaluate
    from advgrad.io.data.load_data import load_default
    from advgrad.io.model.load_model import load_default_model

    dev = torch.device(device)
    model = load_default_model(dev)
    attacks = [
        EvalAttack(get_attack("fgsm"), get_attack("fgsm").make_params()),
        EvalAttack(get_attack("pgd"), get_attack("pgd").make_params(steps=steps)),
    ]
    config = EvalConfig(eps=parse_eps_list(EPS), examples=8)
    tracemalloc.start()
    started = time.perf_counter()
    report = evaluate(model, CycledSource(load_default(), n).batches(batch), attacks, config, device=dev)
    seconds = time.perf_counter() - started
    _, python_peak = tracemalloc.get_traced_memory()
    print(
        json.dumps(
            {
                "python_peak": python_peak,
                "seconds": seconds,
                "samples": report.n_samples,
                "cuda_peak": torch.cuda.max_memory_allocated(dev) if dev.type == "cuda" else None,
                "pgd_at_0.1": report.attacks["pgd"].accuracy_at(0.1),
            }
        )
    )


def run_child(args: list[str], threads: int, extra_env: dict[str, str] | None = None) -> tuple[int, str]:
    """Run a child to its end; return its peak RSS in bytes (Linux reports KiB) and its stdout."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
        "OMP_NUM_THREADS": str(threads),
        **(extra_env or {}),
    }
    with tempfile.TemporaryFile("w+") as out:
        process = subprocess.Popen(args, stdout=out, stderr=subprocess.DEVNULL, env=env, cwd=ROOT)
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        if process.returncode != 0:
            raise SystemExit(f"child failed ({process.returncode}): {' '.join(args)}")
        out.seek(0)
        scale = 1 if sys.platform == "darwin" else 1024
        return usage.ru_maxrss * scale, out.read()


def write_data(path: Path, n: int) -> None:
    import numpy as np

    from advgrad.io.data.load_data import load_default

    base = load_default()
    index = np.arange(n) % len(base)
    x = (base.x.numpy()[index] * 255).round().astype(np.uint8)
    np.savez(path, x=x, y=base.y.numpy()[index])


def mib(n: float) -> str:
    return f"{n / 2**20:.1f} MiB"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--batch", type=int, default=250)
    parser.add_argument(
        "--threads", type=int, default=1, help="CPU threads of each run (1: steady on a shared machine)"
    )
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        child_library(args.child, args.device, args.steps, args.batch)
        return
    import torch

    sizes = [int(s) for s in args.sizes.split(",")]
    machine = torch.cuda.get_device_name(0) if args.device.startswith("cuda") else f"CPU, {args.threads} thread(s)"
    print(
        f"eval peak memory: digits CNN, fgsm + pgd-{args.steps}, ε {EPS}, batch {args.batch}, {machine}, "
        f"torch {torch.__version__}"
    )
    rows: dict[str, list[float]] = {}
    speed = []
    library = [
        sys.executable,
        __file__,
        "--device",
        args.device,
        "--steps",
        str(args.steps),
        "--batch",
        str(args.batch),
    ]
    no_cache = {"ONEDNN_PRIMITIVE_CACHE_CAPACITY": "0"}
    with tempfile.TemporaryDirectory() as folder:
        data = Path(folder) / "digits-cycled.npz"
        write_data(data, max(sizes))
        for n in sizes:
            rss, text = run_child([*library, "--child", str(n)], args.threads)
            measured = json.loads(text.strip().splitlines()[-1])
            rows.setdefault("library: RSS peak", []).append(rss)
            rows.setdefault("library: Python allocations peak (tracemalloc)", []).append(measured["python_peak"])
            if measured["cuda_peak"] is not None:
                rows.setdefault("library: CUDA peak (max_memory_allocated)", []).append(measured["cuda_peak"])
            else:
                rss_plain, _ = run_child([*library, "--child", str(n)], args.threads, no_cache)
                rows.setdefault("library: RSS peak, oneDNN primitive cache off", []).append(rss_plain)
            speed.append(measured["samples"] / measured["seconds"])
            cli_rss, _ = run_child(
                [
                    sys.executable,
                    "-m",
                    "advgrad",
                    "eval",
                    "--data",
                    str(data),
                    "--limit",
                    str(n),
                    "--attack",
                    "fgsm,pgd",
                    "--steps",
                    str(args.steps),
                    "--eps",
                    EPS,
                    "--batch-size",
                    str(args.batch),
                    "--device",
                    args.device,
                    "--no-resume",
                    "--state",
                    str(Path(folder) / f"state-{n}"),
                    "--json",
                    str(Path(folder) / "r.json"),
                ],
                args.threads,
            )
            rows.setdefault(f"advgrad eval (CLI, one {max(sizes):,}-sample file): RSS peak", []).append(cli_rss)
    width = max(len(k) for k in rows)
    print(f"  {'':{width}}" + "".join(f"{n:>14,}" for n in sizes) + f"{'change':>14}")
    for name, values in rows.items():
        print(f"  {name:{width}}" + "".join(f"{mib(v):>14}" for v in values) + f"{mib(values[-1] - values[0]):>14}")
    print(f"  {'samples per second (library run)':{width}}" + "".join(f"{v:>14,.0f}" for v in speed))


if __name__ == "__main__":
    main()
