"""What an evaluation costs: advgrad's `strong` and `autoattack` against pyautoattack's standard AutoAttack.

    python benchmarks/bench_cost.py [--quick] [--samples 450] [--norms inf,2] [--digits-only] [--threads 1]
                                    [--workdir DIR] [--no-reference] [--sweep | --sweep-only]

On the same models and the same samples, in one run, per model and threat model: robust accuracy,
the samples AutoAttack (pyautoattack) breaks that each advgrad attack does not, forward and backward
sample-passes (counted by wrapping the model: a call on B samples is B forward sample-passes, a
backward pass through it B backward ones) and seconds. Models: the embedded digits CNN (`default`),
`default-robust`, a second digits CNN trained here with `advgrad train --method pgd` (ε = 0.12, 40
epochs), and a CIFAR-shaped network (`cifar-resnet`, width 8, 3×32×32 inputs) trained here with
`advgrad train --method pgd` at ε = 8/255. There is no CIFAR-10 data offline, so the CIFAR-shaped
data are the digits scaled to 32×32 and repeated over three channels (a CIFAR-shaped input, not
CIFAR's difficulty). Threat models: L∞ at ε = 0.1 (8/255 for the CIFAR-shaped net) and L2 at ε = 1.0
(0.5 for the CIFAR-shaped net, which gets only its first 100 samples). ``--quick`` uses 100 digits,
the robust models only, L∞ only. ``--sweep`` adds a six-ε sweep of `strong` against six runs at one ε
each, on `default-robust`. Pin one thread: figures are for one CPU core.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

import advgrad
from advgrad.attacks import get_attack, run_attack
from advgrad.core.threat import ThreatModel
from advgrad.evaluation.counting import SampleCounter
from advgrad.evaluation.eval_config import EvalAttack, EvalConfig
from advgrad.evaluation.sweep import evaluate
from advgrad.io.model.load_model import load_model
from advgrad.io.model.model_types import ModelOptions

ROOT = Path(__file__).resolve().parent.parent
SWEEP_EPS = [0.02, 0.05, 0.08, 0.1, 0.15, 0.2]


@dataclass
class Row:
    """One attack on one model and threat model."""

    attack: str
    robust: Tensor  # bool per sample: still classified correctly
    forward: int
    backward: int
    seconds: float


def _train(args: list[str], out: Path, log: Path) -> None:
    """``advgrad train`` in a subprocess (the command users run), unless ``out`` exists."""
    if out.exists():
        return
    command = [sys.executable, "-m", "advgrad", "train", *args, "--threads", "1", "--fresh", "--no-report"]
    with log.open("w") as handle:
        subprocess.run([*command, "--out", str(out)], check=True, stdout=handle, stderr=subprocess.STDOUT, cwd=ROOT)


def _cifar_shaped(workdir: Path) -> tuple[Path, Path]:
    """The digits scaled to 3×32×32 (bilinear, the grey value in every channel), as .npz files."""
    paths = []
    for split in ("train", "test"):
        path = workdir / f"cifar_shaped_{split}.npz"
        if not path.exists():
            data = np.load(ROOT / "advgrad" / "assets" / f"digits_{split}.npz")
            x = torch.from_numpy(data["x"]).float() / 255
            x = F.interpolate(x, size=32, mode="bilinear", align_corners=False).repeat(1, 3, 1, 1)
            np.savez(path, x=(x * 255).round().to(torch.uint8).numpy(), y=data["y"])
        paths.append(path)
    return paths[0], paths[1]


def _models(workdir: Path, quick: bool) -> list[tuple[str, nn.Module, str]]:
    """(name, model, data) per model: data is None for the embedded digits, else a file."""
    digits_pgd = workdir / "digits_pgd.safetensors"
    _train(
        ["--method", "pgd", "--eps", "0.12", "--steps", "7", "--epochs", "40", "--seed", "3"],
        digits_pgd,
        workdir / "train_digits_pgd.log",
    )
    train, test = _cifar_shaped(workdir)
    cifar = workdir / "cifar_pgd.safetensors"
    cifar_args = ["--model", "cifar-resnet", "--model-arg", "width=8", "--data", str(train), "--method", "pgd"]
    cifar_args += ["--eps", "8/255", "--steps", "3", "--epochs", "12", "--lr", "2e-3", "--warmup", "3", "--seed", "0"]
    _train(cifar_args, cifar, workdir / "train_cifar_pgd.log")
    models = [
        ("default-robust", load_model("default-robust").module, None),
        ("digits-cnn pgd (trained here)", load_model("digits-cnn", ModelOptions(weights=str(digits_pgd))).module, None),
        ("cifar-resnet pgd (trained here)", _cifar_model(cifar), str(test)),
    ]
    if not quick:
        models.insert(0, ("default", load_model(None).module, None))
    return models


def _cifar_model(weights: Path) -> nn.Module:
    return load_model("cifar-resnet", ModelOptions(weights=str(weights), model_args={"width": 8})).module


def _advgrad(name: str, model: nn.Module, x: Tensor, y: Tensor, threat: ThreatModel) -> Row:
    counter = SampleCounter(model)
    started = time.perf_counter()
    x_adv = run_attack(get_attack(name), counter, x, y, threat=threat, generator=torch.Generator().manual_seed(0))
    seconds = time.perf_counter() - started
    return Row(f"advgrad {name}", _still_correct(model, x_adv, y), counter.samples, counter.backward_samples, seconds)


def _reference(model: nn.Module, x: Tensor, y: Tensor, threat: ThreatModel) -> Row:
    try:
        from autoattack import AutoAttack  # the package's import name where it is installed from source
    except ImportError:
        from pyautoattack import AutoAttack
    counter = SampleCounter(model)
    norm = {"inf": "Linf", "2": "L2"}[threat.norm]
    reference = AutoAttack(counter, norm=norm, eps=threat.eps, version="standard", seed=0)
    started = time.perf_counter()
    x_adv = reference.run_standard_evaluation(x, y, batch_size=x.shape[0])
    x_adv = x_adv[0] if isinstance(x_adv, tuple) else x_adv
    seconds = time.perf_counter() - started
    return Row(
        "pyautoattack standard", _still_correct(model, x_adv, y), counter.samples, counter.backward_samples, seconds
    )


def _still_correct(model: nn.Module, x_adv: Tensor, y: Tensor) -> Tensor:
    with torch.no_grad():
        return model(x_adv).argmax(dim=1) == y


def _table(title: str, clean: int, n: int, rows: list[Row]) -> None:
    print(f"\n{title}: clean {clean}/{n}")
    print(f"{'':24} {'robust':>8} {'AA breaks, not this':>20} {'forward':>12} {'backward':>12} {'seconds':>9}")
    reference = next((r for r in rows if r.attack.startswith("pyautoattack")), None)
    base = next(r for r in rows if r.attack == "advgrad autoattack")
    for r in rows:
        missed = "" if reference is None else str(int((r.robust & ~reference.robust).sum()))
        print(
            f"{r.attack:24} {int(r.robust.sum()):>8} {missed:>20} {r.forward:>12,} {r.backward:>12,} {r.seconds:>9.1f}"
        )
    strong = next(r for r in rows if r.attack == "advgrad strong")
    print(
        f"strong / advgrad autoattack: forward {strong.forward / base.forward:.3f}, "
        f"backward {strong.backward / max(base.backward, 1):.3f}"
        + (
            ""
            if reference is None
            else f"; strong / pyautoattack: forward {strong.forward / reference.forward:.3f}, "
            f"backward {strong.backward / max(reference.backward, 1):.3f}"
        )
    )


def _compare(models: list, samples: int, norms: list[str], with_reference: bool) -> None:
    for name, model, data in models:
        model = model.eval()
        x, y = advgrad.load_data(data, limit=samples if data is None else min(samples, 100))
        with torch.no_grad():
            correct = model(x).argmax(dim=1) == y
        x, y, n = x[correct], y[correct], x.shape[0]
        for norm in norms:
            eps = {"inf": 8 / 255, "2": 0.5}[norm] if data is not None else {"inf": 0.1, "2": 1.0}[norm]
            threat = ThreatModel(norm, eps)
            rows = [_advgrad("strong", model, x, y, threat), _advgrad("autoattack", model, x, y, threat)]
            if with_reference:
                rows.append(_reference(model, x, y, threat))
            label = "L∞" if norm == "inf" else "L2"
            _table(f"{name}, {label} ε = {eps:.4g}, {n} samples", int(correct.sum()), n, rows)


def _sweep(samples: int) -> None:
    """A six-ε sweep of strong against six runs at one ε each (the sweep's own code path, one ε)."""
    model = load_model("default-robust").module.eval()
    x, y = advgrad.load_data(limit=samples)
    attack = [EvalAttack(get_attack("strong"), get_attack("strong").params_type())]

    def run(eps: list[float]):
        counter = SampleCounter(model)
        started = time.perf_counter()
        report = evaluate(counter, [(x, y)], attack, EvalConfig(eps=eps, gradient_evidence=False))
        return report.attacks["strong"], counter, time.perf_counter() - started

    sweep, counted, seconds = run(SWEEP_EPS)
    alone = [run([eps]) for eps in SWEEP_EPS]
    print(f"\nsix-ε sweep of strong on default-robust, {samples} samples, L∞ ε = {SWEEP_EPS}")
    print(f"{'ε':>6} {'sweep robust':>13} {'alone robust':>13}")
    for point, (single, _, _) in zip(sweep.points, alone, strict=True):
        print(f"{point.eps:>6g} {point.robust:>13} {single.points[0].robust:>13}")
    forward, backward = sum(c.samples for _, c, _ in alone), sum(c.backward_samples for _, c, _ in alone)
    print(
        f"sweep: {counted.samples:,} forward, {counted.backward_samples:,} backward, {seconds:.1f} s; "
        f"six runs: {forward:,} forward, {backward:,} backward, {sum(s for _, _, s in alone):.1f} s; "
        f"ratio forward {counted.samples / forward:.3f}, backward {counted.backward_samples / backward:.3f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100 digits, the robust models, L∞ only")
    parser.add_argument("--samples", type=int, default=None, help="digits per model (450 by default, 100 quick)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/advgrad-bench-cost"))
    parser.add_argument("--no-reference", action="store_true", help="skip pyautoattack")
    parser.add_argument("--sweep", action="store_true", help="also the six-ε sweep against six single-ε runs")
    parser.add_argument("--sweep-only", action="store_true", help="only the six-ε sweep")
    parser.add_argument("--norms", default=None, help="threat models, e.g. inf or inf,2 (default: inf,2; quick: inf)")
    parser.add_argument("--digits-only", action="store_true", help="leave out the CIFAR-shaped network")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    args.workdir.mkdir(parents=True, exist_ok=True)
    samples = args.samples or (100 if args.quick else 450)
    print(f"{args.threads} thread(s); counts are sample-passes; AutoAttack = pyautoattack's standard version")
    if not args.sweep_only:
        norms = (args.norms or ("inf" if args.quick else "inf,2")).split(",")
        models = _models(args.workdir, args.quick)
        if args.digits_only:
            models = [m for m in models if m[2] is None]
        _compare(models, samples, norms, not args.no_reference)
    if args.sweep or args.sweep_only:
        _sweep(samples)


if __name__ == "__main__":
    main()
