"""The small CNN shipped as advgrad's default model, trained on the 8×8 UCI digits."""

from __future__ import annotations

from torch import Tensor, nn


class DigitsCNN(nn.Module):
    """Two 3×3 convolutions, a 2×2 max-pool and two linear layers: (N, 1, 8, 8) → (N, 10) logits;
    ``size`` (even) takes (N, 1, size, size) instead, e.g. the digits upsampled to 16×16.

    Inputs are pixels in [0, 1]; no normalisation layer is needed.
    """

    def __init__(self, channels: int = 16, hidden: int = 64, classes: int = 10, size: int = 8):
        super().__init__()
        if size < 2 or size % 2:
            raise ValueError(f"size must be an even number of pixels ≥ 2, got {size}")
        self.features = nn.Sequential(
            nn.Conv2d(1, channels, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(channels, 2 * channels, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(2 * channels * (size // 2) ** 2, hidden),
            nn.ReLU(),
            nn.Linear(hidden, classes),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x))
