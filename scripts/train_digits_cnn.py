"""Train advgrad's default model (DigitsCNN) on the embedded digits train split.

    python scripts/train_digits_cnn.py

Writes advgrad/assets/digits_cnn.pt (a state dict, loadable with ``weights_only=True``) and
prints the accuracy on the held-out test split, which must be at least 97%. Deterministic on a
CPU for a given seed. Training uses random one-pixel shifts as augmentation.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from advgrad.models.digits import DigitsCNN

ASSETS = Path(__file__).resolve().parents[1] / "advgrad" / "assets"


def _load(split: str) -> tuple[torch.Tensor, torch.Tensor]:
    with np.load(ASSETS / f"digits_{split}.npz") as f:
        return torch.from_numpy(f["x"]).float() / 255.0, torch.from_numpy(f["y"]).long()


def _shift(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Shift each image by up to one pixel in each direction (zero padding)."""
    padded = F.pad(x, (1, 1, 1, 1))
    dy, dx = torch.randint(0, 3, (2,), generator=gen).tolist()
    return padded[:, :, dy : dy + 8, dx : dx + 8]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=ASSETS / "digits_cnn.pt")
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    x_train, y_train = _load("train")
    x_test, y_test = _load("test")
    model = DigitsCNN()
    opt = torch.optim.Adam(model.parameters(), lr=2e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, args.epochs)
    for epoch in range(args.epochs):
        model.train()
        order = torch.randperm(len(y_train), generator=gen)
        for i in range(0, len(order), 64):
            idx = order[i : i + 64]
            loss = F.cross_entropy(model(_shift(x_train[idx], gen)), y_train[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        sched.step()
        if (epoch + 1) % 10 == 0:
            model.eval()
            with torch.no_grad():
                acc = (model(x_test).argmax(1) == y_test).float().mean().item()
            print(f"epoch {epoch + 1}: loss {loss.item():.4f}, test accuracy {acc:.4f}")
    model.eval()
    with torch.no_grad():
        acc = (model(x_test).argmax(1) == y_test).float().mean().item()
    print(f"held-out accuracy: {acc:.4f} ({len(y_test)} samples)")
    if acc < 0.97:
        raise SystemExit("accuracy below 97%: not writing the weights")
    state = {k: v.clone() for k, v in model.state_dict().items()}
    torch.save(state, args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
