"""Size and render time of the HTML report (advgrad/report/html.py): the page must stay small
enough to attach to a CI run (the issue's bound: a 450-sample eval's page under 2 MB).

    python benchmarks/bench_html.py [--attacks 4] [--threads 1]

Prints, for a real eval of the 450 embedded digits (fgsm and pgd, six ε, 8 examples each) and for
reports with ``--attacks`` attacks × 8 kept examples of random images of CIFAR (3×32×32) and
ImageNet (3×224×224) size — noise, the worst case for PNG — the page's bytes, how many example
cards it holds, the bytes of its images and the seconds ``render_html`` takes (best of 3).
"""

from __future__ import annotations

import argparse
import re
import time

import torch

import advgrad
from advgrad.core.results import Example
from advgrad.report.html import render_html

SHAPES = {"cifar 3×32×32": (3, 32, 32), "imagenet 3×224×224": (3, 224, 224)}


def measure(label: str, report) -> None:
    seconds = []
    for _ in range(3):
        start = time.perf_counter()
        page = render_html(report)
        seconds.append(time.perf_counter() - start)
    images = sum(len(m) for m in re.findall(r'src="(data:[^"]+)"', page))
    cards = page.count('<figure class="ex">')
    print(
        f"{label:<34} {len(page.encode()):>10,} bytes  {cards:>3} cards  {images:>9,} bytes of images  "
        f"{min(seconds):.3f} s"
    )


def noise_examples(report, shape, seed: int = 0) -> dict[str, list[Example]]:
    g = torch.Generator().manual_seed(seed)
    found = {}
    for name in report.attacks:
        rows = []
        for _ in range(8):
            x = torch.rand(shape, generator=g)
            rows.append(
                Example(name, report.eps[-1], x, (x + 8 / 255 * torch.randn(shape, generator=g)).clamp(0, 1), 3, 5)
            )
        found[name] = rows
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--attacks", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = advgrad.load_model()
    x, y = advgrad.load_data()
    report = advgrad.evaluate(model, x, y, attacks=["fgsm", "pgd"], eps=[0, 0.02, 0.05, 0.1, 0.2, 0.3])
    measure(f"digits eval, {report.n_samples} samples", report)
    names = ["fgsm", "pgd", "bim", "mifgsm", "apgd-ce", "deepfool", "cw", "square"][: args.attacks]
    wide = advgrad.evaluate(model, x[:64], y[:64], attacks=names, eps=[0, 0.1, 0.3])
    for label, shape in SHAPES.items():
        wide.examples = noise_examples(wide, shape)
        measure(f"{label}, {len(names)} attacks × 8", wide)


if __name__ == "__main__":
    main()
