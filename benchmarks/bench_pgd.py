"""Fixed-budget PGD against the limit: a bare loop of the same forward+backward passes.

    python benchmarks/bench_pgd.py [--device cpu|cuda] [--batch 128] [--steps 10] [--repeats 5]

The bare loop is the least work any PGD implementation can do: ``steps`` forward passes and
``steps`` backward passes to the input, with the weights frozen and nothing else. advgrad's PGD
adds the random start, the sign step, the projection and the box clamp. The script prints both
times and their ratio (target ≤ 1.05), and, for reference, a naive loop that also computes weight
gradients (what ``loss.backward()`` on an unfrozen model does).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import cifar_convnet, interleaved_medians  # noqa: E402

from advgrad.attacks import PGDParams, get_attack, run_attack  # noqa: E402
from advgrad.core.gradient import frozen  # noqa: E402
from advgrad.core.threat import ThreatModel  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    model = cifar_convnet(args.width).to(device)
    x = torch.rand(args.batch, 3, 32, 32, device=device)
    y = torch.randint(0, 10, (args.batch,), device=device)
    threat = ThreatModel("inf", 8 / 255)
    spec = get_attack("pgd")
    params = PGDParams(steps=args.steps)

    def bare_loop() -> None:
        with frozen(model), torch.enable_grad():
            xv = x.clone()
            for _ in range(args.steps):
                xv.requires_grad_(True)
                loss = F.cross_entropy(model(xv), y, reduction="none").sum()
                (g,) = torch.autograd.grad(loss, xv)
                xv = xv.detach()

    def naive_loop() -> None:
        xv = x.clone()
        for _ in range(args.steps):
            xv.requires_grad_(True)
            F.cross_entropy(model(xv), y).backward()
            xv = xv.detach()
        model.zero_grad(set_to_none=True)

    def advgrad_pgd() -> None:
        gen = torch.Generator(device=device).manual_seed(0)
        run_attack(spec, model, x, y, threat=threat, params=params, generator=gen)

    times = interleaved_medians({"bare": bare_loop, "advgrad": advgrad_pgd, "naive": naive_loop}, args.repeats, device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(
        f"PGD-{args.steps}, batch {args.batch}×3×32×32, convnet width {args.width}, {name}, torch {torch.__version__}"
    )
    print(f"  bare loop (forward + input-gradient backward, frozen weights): {times['bare'] * 1000:8.1f} ms")
    print(f"  advgrad PGD (fixed budget, no early stop):                     {times['advgrad'] * 1000:8.1f} ms")
    print(f"  naive loop (loss.backward(), weight gradients too):            {times['naive'] * 1000:8.1f} ms")
    print(f"  ratio advgrad / bare loop: {times['advgrad'] / times['bare']:.3f}  (target ≤ 1.05)")
    print(f"  ratio naive / bare loop:   {times['naive'] / times['bare']:.3f}")


if __name__ == "__main__":
    main()
