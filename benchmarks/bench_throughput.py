"""PGD-10 throughput on a CIFAR-shaped ResNet-18: advgrad and its peers against the bare loop.

    python benchmarks/bench_throughput.py [--device cpu|cuda] [--batch N] [--steps 10] [--repeats 3]
                                          [--threads N] [--precision fp32|bf16|fp16] [--channels-last] [--compile]

One run, one machine, the same model and the same inputs for every candidate:

* bare loop: ``steps`` forward passes and input-gradient backward passes with frozen weights, and
  nothing else: the least work any PGD-``steps`` can do;
* advgrad, fixed budget: ``advgrad.attacks.run_attack`` (PGD, every sample gets every step);
* advgrad, evaluation with early exit: ``advgrad.evaluation.sweep.evaluate`` at one ε — the clean pass,
  the sanity checks' gradient pass, PGD in which a fooled sample leaves the batch, and the
  verification pass of every adversarial example;
* torchattacks ``PGD`` and foolbox ``LinfPGD``, when installed, with the same ε, step size, steps
  and random start (given the model with frozen weights, their best case).

Each is printed in samples per second and as its time over the bare loop's. The model is
torchvision's ResNet-18 with a 3×3 stem and no max-pool, made to classify a synthetic task (see
``common.fitted_resnet18``): early exit only means something on a model that is right to begin
with. What early exit saves depends on how soon samples are fooled, so the evaluation is timed at
two ε (``--eps``): 1/255, where PGD-10 leaves about a third of the samples robust and fools the
rest at various steps, and 4/255, where every sample falls within a few steps. ``--precision``,
``--channels-last`` and ``--compile`` apply advgrad's runtime options (advgrad/execution/runtime.py) to the
model every candidate uses.
"""

from __future__ import annotations

import argparse
import importlib
import platform
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import fitted_resnet18, interleaved_medians, template_images  # noqa: E402

from advgrad.attacks import PGDParams, get_attack, run_attack  # noqa: E402
from advgrad.core.eps import parse_eps_list
from advgrad.core.gradient import frozen  # noqa: E402
from advgrad.core.threat import ThreatModel  # noqa: E402
from advgrad.evaluation import EvalAttack, EvalConfig, evaluate  # noqa: E402
from advgrad.execution.runtime import RuntimeOptions, prepare_model  # noqa: E402

NOISE = 0.1  # the synthetic task's noise share: clean accuracy 100%


def machine(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} (CUDA {torch.version.cuda})"
    name = platform.processor() or "CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{name}, {torch.get_num_threads()} thread(s)"


def installed(name: str):
    try:
        return importlib.import_module(name)
    except Exception:  # not installed, or broken: either way not measured
        return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int, help="samples per batch [default: 32 on CPU, 256 on CUDA]")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument(
        "--eps", default="1/255,4/255", help="ε values; the first is the attacks', each times an evaluation"
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, help="CPU threads [default: torch's]")
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None)
    parser.add_argument("--compile", action="store_true")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    batch = args.batch or (256 if device.type == "cuda" else 32)
    model, templates = fitted_resnet18(device, noise=NOISE)
    x, y = template_images(batch, templates, NOISE, torch.Generator().manual_seed(1))
    x, y = x.to(device), y.to(device)
    options = RuntimeOptions(args.precision, args.compile, args.channels_last)
    model, notes = prepare_model(model, options, device, x)
    for p in model.parameters():
        p.requires_grad_(False)

    eps_values = parse_eps_list(args.eps)
    eps, steps = eps_values[0], args.steps
    alpha = 2.5 * eps / steps  # advgrad's default PGD step, given to the peers too
    threat = ThreatModel("inf", eps)
    spec = get_attack("pgd")
    params = PGDParams(steps=steps)  # step 2.5·ε/steps at each ε

    def bare_loop() -> None:
        with frozen(model), torch.enable_grad():
            xv = x
            for _ in range(steps):
                xv = xv.detach().requires_grad_(True)
                loss = F.cross_entropy(model(xv), y, reduction="sum")
                (grad,) = torch.autograd.grad(loss, xv)

    def advgrad_fixed() -> None:
        run_attack(spec, model, x, y, threat=threat, params=params, generator=torch.Generator(device).manual_seed(0))

    def advgrad_eval(at: float):
        return lambda: evaluate(
            model, [(x, y)], [EvalAttack(spec, params)], EvalConfig(eps=[at], seed=0), device=device
        )

    candidates = {"bare": bare_loop, "advgrad-fixed": advgrad_fixed}
    labels = {
        "bare": f"bare loop ({steps} × forward + input-gradient backward)",
        "advgrad-fixed": "advgrad PGD, fixed budget (run_attack)",
    }
    context = []
    for at in eps_values:
        report = evaluate(model, [(x, y)], [EvalAttack(spec, params)], EvalConfig(eps=[at], seed=0), device=device)
        curve = report.attacks["pgd"]
        key = f"advgrad-eval-{at}"
        candidates[key] = advgrad_eval(at)
        labels[key] = f"advgrad eval, early exit (evaluate, ε={at * 255:g}/255)"
        context.append(
            f"at ε={at * 255:g}/255 PGD-{steps} leaves {curve.points[0].accuracy:.0%} correct and the "
            f"evaluation runs {curve.forward_samples:,} sample-forwards in the attack (fixed budget: {steps * batch:,})"
        )
    missing = []
    torchattacks = installed("torchattacks")
    if torchattacks is not None:
        peer_pgd = torchattacks.PGD(model, eps=eps, alpha=alpha, steps=steps, random_start=True)
        candidates["torchattacks"] = lambda: peer_pgd(x, y)
        labels["torchattacks"] = f"torchattacks {torchattacks.__version__} PGD"
    else:
        missing.append("torchattacks")
    foolbox = installed("foolbox")
    if foolbox is not None:
        fmodel = foolbox.PyTorchModel(model, bounds=(0, 1), device=device)
        fb_pgd = foolbox.attacks.LinfPGD(abs_stepsize=alpha, steps=steps, random_start=True)
        candidates["foolbox"] = lambda: fb_pgd(fmodel, x, y, epsilons=eps)
        labels["foolbox"] = f"foolbox {foolbox.__version__} LinfPGD"
    else:
        missing.append("foolbox")

    with torch.no_grad():
        clean = float((model(x).argmax(1) == y).float().mean())
    times = interleaved_medians(candidates, args.repeats, device)

    runtime = ", ".join(notes) or "fp32"
    print(
        f"PGD-{steps}, L∞ ε={eps * 255:g}/255, step 2.5·ε/{steps} = {alpha * 255:.3g}/255, random start; batch {batch}×3×32×32; "
        f"CIFAR-shaped ResNet-18 ({sum(p.numel() for p in model.parameters()) / 1e6:.1f}M parameters, {runtime})"
    )
    print(
        f"model: random conv weights, batch norm calibrated, linear head fitted on a synthetic 10-class task; "
        f"clean accuracy {clean:.0%}; " + "; ".join(context)
    )
    print(f"machine: {machine(device)}, torch {torch.__version__}, median of {args.repeats}")
    width = max(len(v) for v in labels.values())
    print(f"  {'':{width}}  {'ms/batch':>9}  {'samples/s':>10}  {'× bare loop':>11}")
    for key, seconds in times.items():
        print(
            f"  {labels[key]:{width}}  {seconds * 1000:9.1f}  {batch / seconds:10.1f}  {seconds / times['bare']:11.3f}"
        )
    for name in missing:
        print(f"  {name + ' PGD':{width}}  not installed")


if __name__ == "__main__":
    main()
