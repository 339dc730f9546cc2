"""Training recipes: each method's defaults, as data, from a published recipe that works.

A recipe fills every training option the user left out (``None`` in :class:`TrainConfig`); an
option given explicitly always wins. Epochs scale with the data: a recipe names its epochs for a
large dataset and the optimiser updates a run needs at least, so a small dataset gets more epochs
(capped at ``max_epochs``): ``epochs = min(max_epochs, max(epochs, ⌈updates / batches per epoch⌉))``.
``val_fraction`` is the share held out for the per-epoch validation (0: train on every sample, as
the published PGD recipes do for their final run).
The ε warm-up is a share of the epochs. ``eps_scale`` trains at a larger ε than the one evaluated
(as Gowal et al. 2018 and their successors do); the run prints it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

from advgrad.core.errors import UsageError


@dataclass(frozen=True)
class Recipe:
    """One recipe: where it comes from and the values it gives the options left out."""

    name: str
    method: str
    source: str
    epochs: int
    updates: int = 0
    max_epochs: int = 200
    batch_size: int = 128
    optimizer: str = "adam"
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 0.0
    schedule: str = "cosine"
    warmup: float = 0.0  # share of the epochs over which ε ramps up
    steps: int = 7
    step_size: float | None = None  # × ε; None: the method's own default
    eps_scale: float = 1.0
    val_fraction: float = 0.1  # share of the training samples held out for the per-epoch validation
    kappa: float = 0.5
    beta: float = 6.0
    sigma: float = 0.25
    extra: dict = field(default_factory=dict)  # method-specific weights (alpha, lam, …)

    def epochs_for(self, samples: int, batch_size: int) -> int:
        """Epochs for ``samples`` training samples in batches of ``batch_size`` (see the module docstring)."""
        batches = max(1, math.ceil(samples / batch_size))
        return min(self.max_epochs, max(self.epochs, math.ceil(self.updates / batches)))

    def to_dict(self) -> dict:
        return asdict(self)


_R = Recipe
RECIPES: dict[str, Recipe] = {
    r.name: r
    for r in (
        _R("standard", "standard", "cross-entropy, Adam (Kingma & Ba 2015), cosine", epochs=10),
        _R(
            "madry-digits",
            "pgd",
            "PGD training, Madry et al. 2018, with Adam, a cosine schedule and a 10% ε warm-up; 10 steps of "
            "2.5·ε′/10 at ε′ = 1.5·ε (above the evaluated ε, as Gowal et al. 2018 do), on every training sample "
            "(no validation split), tuned on the digits",
            epochs=160,
            batch_size=64,
            lr=2e-3,
            warmup=0.1,
            steps=10,
            eps_scale=1.5,
            val_fraction=0.0,
        ),
        _R(
            "pgd-7",
            "pgd",
            "PGD training, Madry et al. 2018: 7 steps at ε, Adam, cosine, ε warm-up over a sixth "
            "(the former default-robust script)",
            epochs=60,
            batch_size=64,
            lr=2e-3,
            warmup=1 / 6,
        ),  # fmt: skip
        _R(
            "cifar-pgd",
            "pgd",
            "PGD training for 3×32×32 images as in Rice, Wong & Kolter 2020 and Pang et al. 2021: SGD 0.1, momentum "
            "0.9, weight decay 5e-4, ×0.1 at 50% and 75%, 10 steps of ε/4 (2/255 at 8/255), batch 128",
            epochs=100,
            batch_size=128,
            optimizer="sgd",
            lr=0.1,
            weight_decay=5e-4,
            schedule="step",
            steps=10,
            step_size=0.25,
        ),
        _R(
            "trades",
            "trades",
            "TRADES, Zhang et al. 2019: β = 6, 10 steps, trained at 1.25·ε (above the evaluated ε, as Gowal et al. "
            "2018 do), Adam, cosine, 10% ε warm-up, tuned on the digits",
            epochs=100,
            updates=2280,
            batch_size=64,
            lr=2e-3,
            warmup=0.1,
            steps=10,
            eps_scale=1.25,
        ),
        _R("noise", "noise", "Cohen et al. 2019: σ = 0.25", epochs=30, updates=600, batch_size=64),
        _R(
            "fgsm-rs",
            "fgsm-rs",
            "Wong, Rice & Kolter 2020 (Fast is better than free): step 1.25·ε from a uniform start, a cyclic rate "
            "(Adam, peak 5e-3 as in their MNIST runs)",
            epochs=30,
            updates=1200,
            batch_size=64,
            lr=5e-3,
            schedule="cyclic",
            step_size=1.25,
        ),  # fmt: skip
        _R(
            "n-fgsm",
            "n-fgsm",
            "de Jorge et al. 2022: noise 2·ε, step ε, no projection",
            epochs=30,
            updates=1200,
            batch_size=64,
            lr=2e-3,
            step_size=1.0,
            extra={"noise_radius": 2.0},
        ),  # fmt: skip
        _R(
            "gradalign",
            "gradalign",
            "Andriushchenko & Flammarion 2020: FGSM + λ·(1 − cos(∇, ∇ at a random point))",
            epochs=30,
            updates=1200,
            batch_size=64,
            lr=2e-3,
            step_size=1.0,
            extra={"lam": 0.2},
        ),  # fmt: skip
        _R(
            "fgsm",
            "fgsm",
            "Goodfellow et al. 2015: FGSM from x, step ε (prone to catastrophic overfitting)",
            epochs=30,
            updates=1200,
            batch_size=64,
            lr=2e-3,
            step_size=1.0,
        ),  # fmt: skip
        _R(
            "ibp",
            "ibp",
            "Gowal et al. 2018: κ 1 → 0.5 and ε ramped over half the run",
            epochs=60,
            updates=1200,
            batch_size=64,
            lr=2e-3,
            warmup=0.5,
        ),  # fmt: skip
        _R(
            "crown-ibp",
            "crown-ibp",
            "Zhang et al. 2020: as ibp, CROWN-IBP weight 1 → 0",
            epochs=40,
            updates=800,
            batch_size=64,
            lr=2e-3,
            warmup=0.5,
        ),  # fmt: skip
        _R(
            "mtl-ibp",
            "mtl-ibp",
            "De Palma et al. 2024: (1 − α)·CE at an FGSM point + α·IBP loss, ε ramped over a third",
            epochs=60,
            updates=1200,
            batch_size=64,
            lr=2e-3,
            warmup=0.33,
            steps=1,
            step_size=1.25,
            extra={"alpha": 0.5},
        ),  # fmt: skip
        _R(
            "sabr",
            "sabr",
            "Müller et al. 2023: IBP over a box of radius λ·ε around a PGD point, λ = 0.4",
            epochs=60,
            updates=1200,
            batch_size=64,
            lr=2e-3,
            warmup=0.33,
            steps=8,
            extra={"lam": 0.4},
        ),  # fmt: skip
        _R(
            "staps",
            "staps",
            "Mao et al. 2023: L_TAPS·L_IBP over SABR's box of radius λ·ε, λ = 0.6 (the authors' box is 0.4 of "
            "twice the ε; trained at ε, 0.6 comes nearer), IBP through the feature extractor, PGD-8 in the latent box",
            epochs=60,
            updates=1200,
            batch_size=64,
            lr=2e-3,
            warmup=0.33,
            steps=8,
            extra={"lam": 0.6},
        ),  # fmt: skip
    )
}

#: the recipe each method trains with unless ``--recipe`` names another: the first listed for it
DEFAULT_RECIPE: dict[str, str] = {}
for _recipe in RECIPES.values():
    DEFAULT_RECIPE.setdefault(_recipe.method, _recipe.name)


def get_recipe(name: str | None, method: str) -> Recipe:
    """The recipe ``name`` (default: ``method``'s own); one whose method differs is refused."""
    key = DEFAULT_RECIPE.get(method) if name is None else str(name).strip().lower()
    if key not in RECIPES:
        raise UsageError(f"unknown `recipe` {name!r}; choose one of {', '.join(RECIPES)}", params="recipe")
    recipe = RECIPES[key]
    if recipe.method != method:
        raise UsageError(
            f"`recipe` {key} is for `method` {recipe.method}, not {method}: give --method {recipe.method} or leave "
            "out --recipe",
            params=("recipe", "method"),
        )
    return recipe
