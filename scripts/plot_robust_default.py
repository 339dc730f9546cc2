"""Draw the robustness curves of the standard and the robust default model side by side.

    python scripts/plot_robust_default.py [--out docs/robust-default.png]

Evaluates ``digits-cnn`` (standard training) and ``default-robust`` (PGD training at 1.5·ε,
scripts/train_robust_digits.py) on the 450 embedded test digits with PGD-20 and APGD-CE under L∞
at ε = 0…0.3 (advgrad's own sweep, seed 0), prints the figures and draws both models' curves in
one plot.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from advgrad.attacks import get_attack
from advgrad.evaluation import EvalAttack, EvalConfig, evaluate
from advgrad.io.data.load_data import load_default
from advgrad.io.model.load_model import load_model
from advgrad.report.mpl import pyplot, save_figure

EPS = [0.0, 0.02, 0.05, 0.08, 0.1, 0.12, 0.15, 0.2, 0.3]
MODELS = {"digits-cnn": "standard training (digits-cnn)", "default-robust": "PGD training, ε = 0.1 (default-robust)"}
ATTACKS = ("pgd", "apgd-ce")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "docs" / "robust-default.png")
    args = parser.parse_args()
    torch.set_num_threads(1)
    data = load_default("test")
    attacks = [EvalAttack(get_attack(a), get_attack(a).make_params()) for a in ATTACKS]
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    for (name, label), colour in zip(MODELS.items(), ("tab:red", "tab:blue"), strict=True):
        model = load_model(name).module
        report = evaluate(model, data.batches(256), attacks, EvalConfig(eps=EPS))
        for attack, style in zip(ATTACKS, ("-", "--"), strict=True):
            acc = [p.accuracy for p in report.attacks[attack].points]
            print(name, attack, " ".join(f"{e:g}:{100 * a:.1f}%" for e, a in zip(EPS, acc, strict=True)))
            ax.plot(EPS, [100 * a for a in acc], style, marker="o", ms=3, color=colour, label=f"{label}, {attack}")
    ax.axvline(0.1, color="grey", lw=0.8, ls=":")
    ax.set_xlabel("ε (L∞, pixels in [0, 1])")
    ax.set_ylabel("accuracy on the 450 test digits (%)")
    ax.set_ylim(0, 101)
    ax.set_title("advgrad eval: standard vs. PGD-trained DigitsCNN")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    save_figure(fig, args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
