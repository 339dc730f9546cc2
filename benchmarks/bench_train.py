"""Training throughput against the limit: a bare loop of the same forward and backward passes.

    python benchmarks/bench_train.py [--device cpu|cuda] [--samples 512] [--batch 128] [--steps 7] [--repeats 3]

One epoch of ``advgrad train``'s loop (:class:`advgrad.train.Trainer`, no validation) on random
3×32×32 data with a small CIFAR convnet, for PGD-7 adversarial training and for standard training,
each beside a bare loop that does only the passes it needs: for PGD, ``steps`` forward passes and
input-gradient backward passes with frozen weights in eval mode, then one forward and backward
pass in train mode and an optimiser step; for standard training the last part alone. Prints
samples per second of each and the ratio of times (target ≤ 1.05).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import cifar_convnet, interleaved_medians  # noqa: E402

from advgrad.core.gradient import frozen  # noqa: E402
from advgrad.io.data.sources import TensorSource  # noqa: E402
from advgrad.train import TrainConfig, Trainer  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--samples", type=int, default=512)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=7)
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    gen = torch.Generator().manual_seed(0)
    x_all = torch.rand(args.samples, 3, 32, 32, generator=gen)
    y_all = torch.randint(0, 10, (args.samples,), generator=gen)
    source = TensorSource(x_all, y_all, name="random", description="random 3×32×32")
    eps = 8 / 255
    step_size = 2.5 * eps / args.steps

    def advgrad_epoch(method: str):
        def run() -> None:
            torch.manual_seed(0)
            model = cifar_convnet(args.width)
            config = TrainConfig(
                method=method, epochs=1, batch_size=args.batch, eps=eps if method == "pgd" else 0.0, steps=args.steps, eps_scale=1.0,
                val_fraction=0.0, lr=1e-3,
            )  # fmt: skip
            Trainer(
                model,
                source,
                config,
                device=device,
                train_indices=torch.arange(args.samples),
                val_indices=torch.arange(0),
            ).run()

        return run

    def bare_epoch(adversarial: bool):
        def run() -> None:
            torch.manual_seed(0)
            model = cifar_convnet(args.width).to(device)
            opt = torch.optim.Adam(model.parameters(), lr=1e-3)
            order = torch.randperm(args.samples, generator=torch.Generator().manual_seed(1))
            for idx in order.split(args.batch):
                x, y = x_all[idx].to(device), y_all[idx].to(device)
                if adversarial:
                    with frozen(model), torch.enable_grad():
                        xv = (x + torch.empty_like(x).uniform_(-eps, eps)).clamp(0, 1)
                        for _ in range(args.steps):
                            xv.requires_grad_(True)
                            loss = F.cross_entropy(model(xv), y, reduction="none").sum()
                            (g,) = torch.autograd.grad(loss, xv)
                            xv = torch.min(torch.max(xv.detach() + step_size * g.sign(), x - eps), x + eps).clamp(0, 1)
                    x = xv
                model.train()
                opt.zero_grad(set_to_none=True)
                F.cross_entropy(model(x), y).backward()
                opt.step()

        return run

    times = interleaved_medians(
        {
            "pgd": advgrad_epoch("pgd"),
            "bare pgd": bare_epoch(True),
            "standard": advgrad_epoch("standard"),
            "bare standard": bare_epoch(False),
        },
        args.repeats,
        device,
    )
    n = args.samples
    print(
        f"one epoch of {n} samples 3×32×32, batch {args.batch}, convnet width {args.width}, {device.type.upper()}, "
        f"{args.threads} thread(s), torch {torch.__version__}"
    )
    for name in ("pgd", "standard"):
        label = f"PGD-{args.steps} training" if name == "pgd" else "standard training"
        print(f"  advgrad {label + ':':<24} {n / times[name]:8.1f} samples/s")
        print(f"  bare loop {label + ':':<22} {n / times['bare ' + name]:8.1f} samples/s")
        print(f"  ratio advgrad / bare loop (time): {times[name] / times['bare ' + name]:.3f}  (target ≤ 1.05)")


if __name__ == "__main__":
    main()
