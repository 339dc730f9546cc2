"""Write the embedded digits upsampled to SIZE×SIZE pixels (bilinear), for ``advgrad train --data``.

The 8×8 digits have 64 pixels; at ε = 0.2 single-step training on them does not collapse. The same
images at 16×16 (256 pixels, same content) give an ε-ball of 4× the dimension, where plain FGSM
training does collapse (docs/train.md, "Fast training and its guard"):

    python scripts/upsample_digits.py --size 16 --out /tmp/digits16
    advgrad train --data /tmp/digits16/digits16_train.npz --model digits-cnn --model-arg size=16 \\
        --method fgsm --eps 0.2 ...

Each file holds ``x`` (N×1×SIZE×SIZE float32 pixels in [0, 1]) and ``y`` (N int64 labels).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from advgrad.io.data.load_data import load_default


def upsample(x: torch.Tensor, size: int) -> torch.Tensor:
    """Bilinear resize of (N, C, H, W) pixels to (N, C, size, size), kept in [0, 1]."""
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False).clamp(0, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=16, help="pixels per side (default 16)")
    parser.add_argument("--out", type=Path, required=True, help="folder for digits{SIZE}_train.npz and _test.npz")
    args = parser.parse_args()
    if args.size < 2:
        parser.error("--size must be at least 2")
    args.out.mkdir(parents=True, exist_ok=True)
    for split in ("train", "test"):
        source = load_default(split)
        x = upsample(source.x, args.size).numpy().astype(np.float32)
        path = args.out / f"digits{args.size}_{split}.npz"
        np.savez_compressed(path, x=x, y=source.y.numpy())
        print(f"{path}: x {x.shape} {x.dtype}, y {tuple(source.y.shape)}")


if __name__ == "__main__":
    main()
