"""What lower precision does to attack strength: FGSM and PGD accuracy under fp32, bf16 and fp16.

    python benchmarks/bench_precision.py [--model digits|resnet18] [--device cpu|cuda] [--steps 20]
                                         [--eps 0,0.02,0.05,0.1,0.15,0.2,0.3] [--precisions fp32,bf16,fp16]

For each precision the model runs under autocast (advgrad/execution/runtime.py: the input, gradient and
perturbation stay float32) and one evaluation (FGSM and PGD, the same seed) gives accuracy at each
ε. Beside it: how far the input gradient ∇ₓJ moves from its float32 value — the share of its
coordinates whose sign flips (FGSM and L∞ PGD step along sign(∇ₓJ)) and its cosine with the
float32 gradient — and the share of samples whose clean prediction changes. ``digits`` is the
embedded model on its 450 test samples; ``resnet18`` the CIFAR-shaped ResNet-18 of
bench_throughput.py on 256 synthetic samples (a deeper net, so more rounding to accumulate).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import fitted_resnet18, template_images  # noqa: E402

from advgrad.attacks import get_attack  # noqa: E402
from advgrad.core.eps import parse_eps_list  # noqa: E402
from advgrad.core.gradient import input_gradient  # noqa: E402
from advgrad.evaluation import EvalAttack, EvalConfig, evaluate  # noqa: E402
from advgrad.execution.runtime import RuntimeModel, RuntimeOptions, check_precision  # noqa: E402
from advgrad.io.data.load_data import load_default  # noqa: E402
from advgrad.io.model.load_model import load_default_model  # noqa: E402


def inputs(name: str, device: torch.device):
    if name == "digits":
        data = load_default()
        return load_default_model(device), data.x.to(device), data.y.to(device), "embedded digits CNN, 450 test digits"
    model, templates = fitted_resnet18(device, noise=0.1)
    x, y = template_images(256, templates, 0.1, torch.Generator().manual_seed(1))
    return model, x.to(device), y.to(device), "CIFAR-shaped ResNet-18 (bench_throughput.py), 256 synthetic samples"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=["digits", "resnet18"], default="digits")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument(
        "--eps",
        default=None,
        help="[default: 0,0.02,0.05,0.1,0.15,0.2,0.3 for digits; 0,0.5/255,1/255,2/255,4/255 for resnet18]",
    )
    parser.add_argument("--precisions", default="fp32,bf16,fp16")
    parser.add_argument("--batch", type=int, default=256)
    args = parser.parse_args()
    device = torch.device(args.device)
    model, x, y, what = inputs(args.model, device)
    eps = parse_eps_list(
        args.eps or ("0,0.02,0.05,0.1,0.15,0.2,0.3" if args.model == "digits" else "0,0.5/255,1/255,2/255,4/255")
    )
    attacks = [
        EvalAttack(get_attack("fgsm"), get_attack("fgsm").make_params()),
        EvalAttack(get_attack("pgd"), get_attack("pgd").make_params(steps=args.steps)),
    ]
    config = EvalConfig(eps=eps, seed=0)
    reference, _, logits32 = input_gradient(model, x, y)
    results = {}
    for precision in args.precisions.split(","):
        try:
            check_precision(precision, device)
        except Exception as exc:  # a precision this device cannot run is reported, not fatal
            print(f"{precision}: not run ({exc})")
            continue
        runner = model if precision == "fp32" else RuntimeModel(model, RuntimeOptions(precision).dtype)
        grad, _, logits = input_gradient(runner, x, y)
        flips = float((grad.sign() != reference.sign()).float().mean())
        cosine = float(torch.nn.functional.cosine_similarity(grad.flatten(1), reference.flatten(1)).mean())
        changed = float((logits.argmax(1) != logits32.argmax(1)).float().mean())
        batches = list(zip(x.split(args.batch), y.split(args.batch), strict=True))
        results[precision] = (evaluate(runner, batches, attacks, config, device=device), flips, cosine, changed)
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"{what}; FGSM and PGD-{args.steps} (L∞, seed 0) on {device_name}, torch {torch.__version__}")
    names = list(results)
    print(f"  {'ε':>9}  " + "  ".join(f"{a + ' ' + p:>11}" for a in ("fgsm", "pgd") for p in names))
    for j, e in enumerate(eps):
        cells = [f"{results[p][0].attacks[a].points[j].accuracy:11.1%}" for a in ("fgsm", "pgd") for p in names]
        print(f"  {e:9.4g}  " + "  ".join(cells))
    for p in names:
        _, flips, cosine, changed = results[p]
        print(
            f"  {p}: gradient signs flipped {flips:.2%}, mean cosine to fp32 gradient {cosine:.5f}, "
            f"clean predictions changed {changed:.2%}"
        )


if __name__ == "__main__":
    main()
