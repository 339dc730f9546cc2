"""The binarization test (Zimmermann et al. 2022) on the embedded models: what each attack finds, and
what the test costs.

    python benchmarks/bench_binarization.py [--attacks pgd,apgd-ce,fgsm,square,strong,deepfool] [--eps 0.05,0.1,0.3]

For the standard and the PGD-trained digits model, each attack runs (default parameters) on the
binarized models of the first 20 clean-correct test digits at each ε, plus PGD crippled on purpose
(one step of size 0). It prints the feasible samples, the adversarial examples found, the model
passes the attack spent and the seconds (building the binarized models included). A working attack
finds every feasible sample; the crippled one none.
"""

from __future__ import annotations

import argparse
import time

import torch

from advgrad.attacks import get_attack
from advgrad.attacks.pgd import PGDParams
from advgrad.evaluation.binarization import SAMPLES, attack_binarized
from advgrad.evaluation.eval_config import EvalAttack, EvalConfig
from advgrad.io.data.load_data import load_default
from advgrad.io.model.load_model import load_default_model, load_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--attacks", default="pgd,apgd-ce,fgsm,square,strong,deepfool")
    parser.add_argument("--eps", default="0.05,0.1,0.3")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data = load_default()
    models = {"digits-cnn": load_default_model(), "default-robust": load_model("default-robust").module.eval()}
    attacks = [EvalAttack(get_attack(n), get_attack(n).make_params()) for n in args.attacks.split(",")]
    attacks.append(EvalAttack(get_attack("pgd"), PGDParams(steps=1, step_size=0.0), label="pgd-crippled"))
    print(f"{'model':15} {'attack':13} {'ε':>5} {'found':>7} {'infeasible':>10} {'passes':>7} {'seconds':>8}")
    for name, model in models.items():
        x, y = data.x[:64], data.y[:64]
        with torch.no_grad():
            keep = model(x).argmax(dim=1) == y
        x, y = x[keep][:SAMPLES], y[keep][:SAMPLES]
        for attack in attacks:
            for eps in (float(e) for e in args.eps.split(",")):
                start = time.perf_counter()
                found = attack_binarized(model, attack, 0, x, y, eps, EvalConfig(eps=[0, eps]))
                seconds = time.perf_counter() - start
                print(
                    f"{name:15} {attack.name:13} {eps:5g} {found.found:>3}/{found.samples:<3} {found.infeasible:>10} "
                    f"{found.passes:>7} {seconds:8.2f}"
                )


if __name__ == "__main__":
    main()
