"""An ε sweep in ``advgrad eval`` against what peer libraries do: independent full-budget runs.

    python benchmarks/bench_sweep.py [--steps 20] [--eps 0.02,0.05,0.1,0.15,0.2,0.3] [--repeats 3]

On the embedded default (digits CNN, 450 test samples) it times
  * advgrad's sweep: clean-misclassified samples skipped, ε in increasing order on the samples
    that survived the previous ε, early stop inside the attack;
  * the peers' way: one full-budget PGD run over every sample at each ε, then a forward pass;
and prints both, their ratio (target ≤ 0.5), the accuracies each finds (advgrad's must be ≤ the
independent runs' up to random-start noise: the cascade only adds adversarial examples), and the
number of samples × forward passes each spends.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import interleaved_medians  # noqa: E402

from advgrad.attacks import PGDParams, get_attack, run_attack  # noqa: E402
from advgrad.core.eps import parse_eps_list
from advgrad.core.seeding import generator_for  # noqa: E402
from advgrad.core.threat import ThreatModel  # noqa: E402
from advgrad.evaluation import EvalAttack, EvalConfig, evaluate
from advgrad.evaluation.counting import CountingModel  # noqa: E402
from advgrad.io.data.load_data import load_default  # noqa: E402
from advgrad.io.model.load_model import load_default_model  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--eps", default="0.02,0.05,0.1,0.15,0.2,0.3")
    parser.add_argument("--batch", type=int, default=450)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    device = torch.device("cpu")
    eps_values = parse_eps_list(args.eps)
    model = CountingModel(load_default_model(device))
    data = load_default("test")
    batches = list(data.batches(args.batch))
    spec = get_attack("pgd")
    params = PGDParams(steps=args.steps)
    results: dict[str, list[float]] = {}

    def sweep() -> None:
        report = evaluate(model, batches, [EvalAttack(spec, params)], EvalConfig(eps=eps_values), device=device)
        results["advgrad"] = [p.accuracy for p in report.attacks["pgd"].points]

    def independent() -> None:
        accs = []
        for j, eps in enumerate(eps_values):
            correct = 0
            for b, (x, y) in enumerate(batches):
                gen = generator_for(device, 0, b, j)
                x_adv = run_attack(spec, model, x, y, threat=ThreatModel("inf", eps), params=params, generator=gen)
                with torch.no_grad():
                    correct += int((model(x_adv).argmax(1) == y).sum())
            accs.append(correct / len(data))
        results["independent"] = accs

    counts = {}
    for name, fn in (("advgrad", sweep), ("independent", independent)):
        model.samples = 0
        fn()
        counts[name] = model.samples
    times = interleaved_medians({"advgrad": sweep, "independent": independent}, args.repeats, device)
    print(
        f"PGD-{args.steps} sweep over ε = {args.eps} on the embedded digits CNN, {len(data)} samples, "
        f"CPU {torch.get_num_threads()} threads, torch {torch.__version__}"
    )
    print(f"  {'ε':>6} {'advgrad acc':>12} {'independent acc':>16}")
    for eps, a, b in zip(eps_values, results["advgrad"], results["independent"], strict=True):
        print(f"  {eps:>6.3g} {100 * a:>11.1f}% {100 * b:>15.1f}%")
    print(
        f"  advgrad eval sweep:            {times['advgrad'] * 1000:8.1f} ms, {counts['advgrad']:>9,} sample-forwards"
    )
    print(
        f"  six independent full-budget:   {times['independent'] * 1000:8.1f} ms, {counts['independent']:>9,} sample-forwards"
    )
    print(f"  ratio advgrad / independent: {times['advgrad'] / times['independent']:.3f}  (target ≤ 0.5)")


if __name__ == "__main__":
    main()
