"""Build advgrad's embedded digits data from scikit-learn's copy of the UCI handwritten digits.

Run once (needs scikit-learn, which advgrad itself does not):

    pip install scikit-learn && python scripts/build_digits.py

It writes advgrad/assets/digits_train.npz and digits_test.npz, each holding ``x`` (N×1×8×8 uint8,
pixels in 0..255) and ``y`` (N int64 labels). The split is fixed: 25% of each class held out,
drawn with seed 0. The source values are 0..16; they are scaled by 255/16 and rounded.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

ASSETS = Path(__file__).resolve().parents[1] / "advgrad" / "assets"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ASSETS)
    args = parser.parse_args()
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = np.rint(digits.images * (255.0 / 16.0)).clip(0, 255).astype(np.uint8)[:, None, :, :]
    y = digits.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.25, stratify=y, random_state=0)
    args.out.mkdir(parents=True, exist_ok=True)
    for name, xs, ys in (("train", x_train, y_train), ("test", x_test, y_test)):
        path = args.out / f"digits_{name}.npz"
        np.savez_compressed(path, x=xs, y=ys)
        print(f"{path}: x {xs.shape} {xs.dtype}, y {ys.shape}, classes {np.bincount(ys).tolist()}")


if __name__ == "__main__":
    main()
