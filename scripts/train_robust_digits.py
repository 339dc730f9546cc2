"""Train advgrad's robust default model (``--model default-robust``) with ``advgrad train``.

    python scripts/train_robust_digits.py

PGD training (Madry et al. 2018) with the default ``madry-digits`` recipe, nothing else given: L∞
ε = 0.1, trained at 1.5·ε with 10 steps, ε ramped over the first 16 of 160 epochs, Adam 2e-3 with a
cosine schedule, batch 64, every sample of the embedded train split (no validation split), seed 0,
one CPU thread: the command ``advgrad train --method pgd --eps 0.1`` a user types. Writes
advgrad/assets/digits_cnn_robust.safetensors, then measures it on the held-out test split with
``advgrad eval --attack autoattack`` at ε = 0.1.
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
    "--seed", "0",
    "--threads", "1",
    "--device", "cpu",
    "--no-report",
]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ASSETS / "digits_cnn_robust.safetensors")
    parser.add_argument("--log", type=Path, help="also write the per-epoch log (JSON) here")
    parser.add_argument("--no-eval", action="store_true", help="skip the evaluation with --attack autoattack")
    args = parser.parse_args()
    advgrad = [sys.executable, "-m", "advgrad"]
    with tempfile.TemporaryDirectory() as tmp:  # the per-epoch checkpoint stays out of the package
        extra = ["--checkpoint", str(Path(tmp) / "robust.ckpt")] + (["--log", str(args.log)] if args.log else [])
        subprocess.run([*advgrad, *TRAIN, "--out", str(args.out), *extra], check=True)
    if not args.no_eval and args.out == ASSETS / "digits_cnn_robust.safetensors":
        subprocess.run(
            [*advgrad, "eval", "--model", "default-robust", "--attack", "autoattack", "--eps", "0,0.1"], check=True
        )


if __name__ == "__main__":
    main()
