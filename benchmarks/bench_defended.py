"""Adaptive attacks on the two toy defences of :mod:`advgrad.io.model.defended`: accuracy under attack
without and with EOT or BPDA, the figures of the "Defended models" section of docs/attacks.md.

    python benchmarks/bench_defended.py [--samples 450] [--eps 0.1] [--threads 1]

* ``noisy``: the digits CNN behind Gaussian input noise (σ = 0.15): PGD-20 with one gradient per
  step, PGD-20 with EOT over 20 passes and ``autoattack-rand`` (defaults: APGD-CE and APGD-DLR, 100
  steps, EOT 20), each judged over 1 prediction and over 20 (a sample robust only when all 20
  predictions are correct, what ``--eot 20`` does by default).
* ``quantized``: the digits CNN behind a rounding of its input to 8 grey levels: PGD-20 without and
  with BPDA (the rounding differentiated as the identity), APGD-CE with BPDA, and Square (5,000
  queries), which needs no gradient.

Every figure is the accuracy at ε (L∞) on the first ``--samples`` embedded test digits, in batches
of 256 as ``advgrad eval`` runs them; each model is seeded, so the figures repeat exactly. The same
runs from the command line: ``advgrad eval --model advgrad.io.model.defended:noisy_digits --attack pgd
--eps 0,0.1 --eot 20`` and ``advgrad eval --model advgrad.io.model.defended:quantized_digits --bpda
quantize --attack pgd --eps 0,0.1``.
"""

from __future__ import annotations

import argparse
import time

import torch

from advgrad.attacks import get_attack
from advgrad.evaluation import EvalAttack, EvalConfig, evaluate
from advgrad.io.data.load_data import load_default
from advgrad.io.model.bpda import apply_bpda, parse_bpda
from advgrad.io.model.defended import noisy_digits, quantized_digits


def _run(model, name: str, attack: EvalAttack, samples: int, eps: float, predictions: int | None) -> None:
    data = load_default()
    batches = [data.fetch(idx) for idx in torch.arange(samples).split(256)]
    start = time.perf_counter()
    report = evaluate(model, batches, [attack], EvalConfig(eps=[0.0, eps], predictions=predictions))
    seconds = time.perf_counter() - start
    curve = report.attacks[attack.name]
    judged = report.config.get("predictions", 1)
    print(
        f"{name:<10} {attack.name:<16} predictions {judged:>2}  clean {100 * report.clean_accuracy:5.1f}%  "
        f"at ε={eps:g} {100 * curve.points[-1].accuracy:5.1f}%  ({seconds:.1f} s)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=450)
    parser.add_argument("--eps", type=float, default=0.1)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    pgd, apgd, square, rand = (get_attack(n) for n in ("pgd", "apgd-ce", "square", "autoattack-rand"))
    print(f"{args.samples} embedded test digits, L∞, {args.threads} thread(s), torch {torch.__version__}")
    for predictions in (1, 20):
        for attack in (
            EvalAttack(pgd, pgd.make_params(), "pgd"),
            EvalAttack(pgd, pgd.make_params(eot=20), "pgd --eot 20"),
            EvalAttack(rand, rand.make_params(), "autoattack-rand"),
        ):
            _run(noisy_digits(), "noisy", attack, args.samples, args.eps, predictions)
    bpda = parse_bpda(["quantize"])
    _run(quantized_digits(), "quantized", EvalAttack(pgd, pgd.make_params(), "pgd"), args.samples, args.eps, None)
    _run(
        quantized_digits(),
        "quantized",
        EvalAttack(square, square.make_params(), "square"),
        args.samples,
        args.eps,
        None,
    )
    for attack in (
        EvalAttack(pgd, pgd.make_params(), "pgd --bpda"),
        EvalAttack(apgd, apgd.make_params(), "apgd-ce --bpda"),
    ):
        model = apply_bpda(quantized_digits(), bpda, "factory", "quantized_digits")
        _run(model, "quantized", attack, args.samples, args.eps, None)


if __name__ == "__main__":
    main()
