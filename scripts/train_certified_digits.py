"""Train advgrad's certified default model (``--model default-certified``) with ``advgrad train``.

    python scripts/train_certified_digits.py

SABR training (Müller et al. 2023; L∞ ε = 0.1, the ``sabr`` recipe: λ = 0.4, PGD-8, Adam 2e-3,
cosine, 60 epochs with ε ramped over the first 20) of the DigitsCNN on the whole embedded train
split, seed 0, one CPU thread (the loop took 376 s on one core of a busy 2-core machine). Writes
advgrad/assets/digits_cnn_certified.safetensors, then certifies it on the held-out test split with
``advgrad certify --method crown`` at ε = 0, 0.05 and 0.1.
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
    "--method", "sabr",
    "--eps", "0.1",
    "--val-fraction", "0",
    "--seed", "0",
    "--threads", "1",
    "--device", "cpu",
    "--no-report",
]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ASSETS / "digits_cnn_certified.safetensors")
    parser.add_argument("--log", type=Path, help="also write the per-epoch log (JSON) here")
    parser.add_argument("--no-certify", action="store_true", help="skip the certification with CROWN")
    args = parser.parse_args()
    advgrad = [sys.executable, "-m", "advgrad"]
    with tempfile.TemporaryDirectory() as tmp:  # the per-epoch checkpoint stays out of the package
        extra = ["--checkpoint", str(Path(tmp) / "certified.ckpt")] + (["--log", str(args.log)] if args.log else [])
        subprocess.run([*advgrad, *TRAIN, "--out", str(args.out), *extra], check=True)
    if not args.no_certify and args.out == ASSETS / "digits_cnn_certified.safetensors":
        certify = ["certify", "--model", "default-certified", "--method", "crown", "--eps", "0,0.05,0.1"]
        subprocess.run([*advgrad, *certify], check=True)


if __name__ == "__main__":
    main()
