"""Train advgrad's robust default model (``--model default-robust``) with ``advgrad train``.

    python scripts/train_robust_digits.py

PGD adversarial training (Madry et al. 2018; L∞, ε = 0.1, 7 steps, ε ramped up over the first 10
epochs) of the DigitsCNN on the whole embedded train split, 60 epochs of Adam with a cosine schedule,
seed 0, one CPU thread (the loop took 396 s on one core of a busy 2-core machine). Writes
advgrad/assets/digits_cnn_robust.safetensors, then measures it on the held-out test split with
``advgrad eval --attack strong`` (APGD-CE, APGD-T and Square) at ε = 0.1.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

ASSETS = Path(__file__).resolve().parents[1] / "advgrad" / "assets"

TRAIN = [
    "train",
    "--model", "digits-cnn",
    "--method", "pgd",
    "--eps", "0.1",
    "--steps", "7",
    "--warmup", "10",
    "--epochs", "60",
    "--batch-size", "64",
    "--lr", "2e-3",
    "--optimizer", "adam",
    "--schedule", "cosine",
    "--val-fraction", "0",
    "--seed", "0",
    "--threads", "1",
    "--device", "cpu",
    "--no-report",
]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ASSETS / "digits_cnn_robust.safetensors")
    parser.add_argument("--log", type=Path, help="also write the per-epoch log (JSON) here")
    parser.add_argument("--no-eval", action="store_true", help="skip the evaluation with --attack strong")
    args = parser.parse_args()
    advgrad = [sys.executable, "-m", "advgrad"]
    with tempfile.TemporaryDirectory() as tmp:  # the per-epoch checkpoint stays out of the package
        extra = ["--checkpoint", str(Path(tmp) / "robust.ckpt")] + (["--log", str(args.log)] if args.log else [])
        subprocess.run([*advgrad, *TRAIN, "--out", str(args.out), *extra], check=True)
    if not args.no_eval and args.out == ASSETS / "digits_cnn_robust.safetensors":
        subprocess.run(
            [*advgrad, "eval", "--model", "default-robust", "--attack", "strong", "--eps", "0,0.1"], check=True
        )


if __name__ == "__main__":
    main()
