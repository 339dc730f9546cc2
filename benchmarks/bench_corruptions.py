"""Time of each common corruption (advgrad/corruptions/) at its five severities, on a batch.

    python benchmarks/bench_corruptions.py [--samples 256] [--size 8] [--channels 1|3] [--threads 1] [--device cpu]

Prints the seconds each corruption takes for all five severities of ``--samples`` images of
``--channels``×``--size``×``--size`` (the embedded digits, enlarged bilinearly and repeated over
channels), and the total: the cost of ``advgrad eval --corruptions all`` besides the model. A first
untimed call warms up (imports, kernels).
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

import advgrad
from advgrad.corruptions import SEVERITIES, corrupt, list_corruptions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=256)
    parser.add_argument("--size", type=int, default=8)
    parser.add_argument("--channels", type=int, choices=[1, 3], default=1)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    x, _ = advgrad.load_data(limit=args.samples)
    x = F.interpolate(x, size=args.size, mode="bilinear").clamp(0, 1) if args.size != x.shape[-1] else x
    x = x.repeat(1, args.channels, 1, 1).to(args.device)
    for name in list_corruptions():  # warm-up
        corrupt(x[:2], name, 1)
    total = 0.0
    print(f"{x.shape[0]} images of {tuple(x.shape[1:])} on {args.device}, {args.threads} thread(s), severities 1-5")
    for name in list_corruptions():
        if x.device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        for severity in SEVERITIES:
            corrupt(x, name, severity)
        if x.device.type == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - t0
        total += seconds
        print(f"{name:18s} {seconds:8.3f} s")
    print(f"{'total':18s} {total:8.3f} s")


if __name__ == "__main__":
    main()
