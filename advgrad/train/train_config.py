"""What one training run does: method, optimiser, schedule, threat model and their checks."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from advgrad.core.eps import Eps
from advgrad.core.errors import UsageError
from advgrad.core.geometry import L2, LINF, get_geometry, parse_norm
from advgrad.core.numeric import check_number

METHODS = (
    "standard", "pgd", "trades", "noise", "fgsm", "fgsm-rs", "n-fgsm", "gradalign", "ibp", "crown-ibp", "mtl-ibp", "sabr",
    "staps",
)  # fmt: skip
CERTIFIED_METHODS = ("ibp", "crown-ibp", "mtl-ibp", "sabr", "staps")
#: single-step methods, watched for catastrophic overfitting (Wong et al. 2020)
FAST_METHODS = ("fgsm", "fgsm-rs", "n-fgsm", "gradalign")
#: the options a recipe fills when they are left out (None)
RECIPE_FIELDS = (
    "epochs", "batch_size", "lr", "optimizer", "momentum", "weight_decay", "schedule", "steps", "step_size", "eps_scale",
    "beta", "sigma", "kappa", "alpha", "lam", "noise_radius", "ema",
)  # fmt: skip
OPTIMIZERS = ("sgd", "adam")
SCHEDULES = ("cosine", "step", "constant", "cyclic")
#: the share of the updates over which the cyclic schedule rises to its peak (Wong et al. 2020: 2/5)
CYCLIC_PEAK = 0.4
NORMS = (LINF, L2)  # the geometries training supports (advgrad.core.geometry)


@dataclass(frozen=True)
class TrainConfig:
    """A training run (see docs/train.md).

    ``method``: ``standard`` (cross-entropy), ``pgd`` (Madry et al. 2018: cross-entropy at a PGD
    adversarial example of ``steps`` steps), ``trades`` (Zhang et al. 2019: CE(f(x), y) +
    ``beta``·KL(f(x) ‖ f(x')) at the x' that maximises the KL), ``noise`` (Cohen et al. 2019:
    cross-entropy at x + N(0, ``sigma``²)), the single-step ``fgsm``, ``fgsm-rs`` (Wong et al. 2020),
    ``n-fgsm`` (de Jorge et al. 2022) and ``gradalign`` (Andriushchenko & Flammarion 2020), and the
    certified ``ibp`` (Gowal et al. 2018), ``crown-ibp`` (Zhang et al. 2020): κ·CE(f(x), y) + (1 − κ)·CE(−m(x,
    ε), y) with m the certified margin lower bounds, ``mtl-ibp`` (De Palma et al. 2024), ``sabr``
    (Müller et al. 2023) and ``staps`` (Mao et al. 2023).

    Every option left ``None`` comes from the ``recipe`` (default: the method's own, see
    :mod:`advgrad.train.recipes`) when :meth:`resolve` is given the number of training samples; an
    option given explicitly wins. ``warmup`` epochs ramp ε linearly (per batch) from 0 to the
    training ε (``eps_scale``·``eps``), κ from 1 to ``kappa`` and, for crown-ibp, the weight of the
    CROWN-IBP bound against plain IBP from 1 to 0. The learning rate follows ``schedule`` per epoch
    (cosine to 0; step: ×0.1 at 50% and 75% of the epochs) or, for ``cyclic``, per batch (linear from 0
    to ``lr`` over the first 40% of the updates, then linear to 0: Wong, Rice & Kolter 2020).
    ``val_fraction`` of the training samples (default: the recipe's) are held out (seeded) for the
    per-epoch validation, which also guards single-step training against catastrophic overfitting
    (``guard``).
    """

    method: str | None = None
    recipe: str | None = None
    epochs: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    optimizer: str | None = None
    momentum: float | None = None
    weight_decay: float | None = None
    schedule: str | None = None
    eps: float | Eps = 0.0
    norm: str = "inf"
    warmup: int | None = None
    steps: int | None = None
    step_size: float | None = None
    eps_scale: float | None = None
    beta: float | None = None
    sigma: float | None = None
    kappa: float | None = None
    alpha: float | None = None
    lam: float | None = None
    noise_radius: float | None = None
    ema: float | None = None
    val_fraction: float | None = None
    seed: int = 0
    precision: str = "fp32"
    guard: bool = True

    def __post_init__(self) -> None:
        self._check_method()
        for name, choices in (("optimizer", OPTIMIZERS), ("schedule", SCHEDULES)):
            if getattr(self, name) is None:
                continue
            value = getattr(self, name).strip().lower()
            if value not in choices:
                raise UsageError(f"`{name}` must be one of {', '.join(choices)}, got {value!r}", params=name)
            object.__setattr__(self, name, value)
        self._check_numbers()
        object.__setattr__(self, "eps", Eps.of(self.eps))  # keeps how it was written, for messages and reports
        norm = parse_norm(self.norm)
        if get_geometry(norm) not in NORMS:
            raise UsageError(
                f"training supports the norms {' and '.join(g.name for g in NORMS)}, not {self.norm!r}", params="norm"
            )
        object.__setattr__(self, "norm", norm)
        if self.warmup is not None and self.epochs is not None and self.warmup > self.epochs:
            raise UsageError(
                f"`warmup` of {self.warmup} epochs is longer than the run's {self.epochs} `epochs`",
                params=("warmup", "epochs"),
            )
        if self.method not in ("standard", "noise") and self.eps == 0:
            raise UsageError(
                f"`method` {self.method} trains against an ε-ball: give `eps` > 0 (e.g. 0.1)", params=("method", "eps")
            )
        if self.method == "noise" and self.sigma == 0:
            raise UsageError(
                "`method` noise needs `sigma` > 0 (the noise's standard deviation)", params=("method", "sigma")
            )
        if self.precision not in ("fp32", "bf16", "fp16"):
            raise UsageError(f"`precision` must be fp32, bf16 or fp16, got {self.precision!r}", params="precision")

    def _check_method(self) -> None:
        from advgrad.train.recipes import RECIPES

        method = self.method
        if method is None:
            recipe = RECIPES.get(str(self.recipe).strip().lower()) if self.recipe is not None else None
            method = recipe.method if recipe is not None else "standard"
        method = method.strip().lower()
        object.__setattr__(self, "method", method)
        if method not in METHODS:
            raise UsageError(
                f"unknown training `method` {self.method!r}; choose one of {', '.join(METHODS)}", params="method"
            )

    def _check_numbers(self) -> None:
        def given(name: str) -> bool:
            return getattr(self, name) is not None

        for name in ("epochs", "batch_size", "steps"):
            if given(name):
                check_number(getattr(self, name), name, integer=True, minimum=1)
        check_number(self.seed, "seed", integer=True, minimum=0, maximum=2**63 - 1)
        check_number(self.eps, "eps", minimum=0)
        for name in ("momentum", "weight_decay", "beta", "sigma", "noise_radius"):
            if given(name):
                check_number(getattr(self, name), name, minimum=0)
        for name in ("lr", "step_size", "eps_scale"):
            if given(name):
                check_number(getattr(self, name), name, above=0)
        for name in ("kappa", "alpha", "lam"):
            if given(name):
                check_number(getattr(self, name), name, minimum=0, maximum=1)
        if given("ema"):
            check_number(self.ema, "ema", minimum=0, maximum=0.9999)
        if self.val_fraction is not None:
            check_number(self.val_fraction, "val_fraction", minimum=0, maximum=0.9)
        if self.warmup is not None:
            check_number(self.warmup, "warmup", integer=True, minimum=0)

    def resolve(self, samples: int) -> TrainConfig:
        """This configuration with every option left out taken from the recipe, the epochs scaled
        to ``samples`` training samples (:meth:`advgrad.train.recipes.Recipe.epochs_for`)."""
        from advgrad.train.recipes import get_recipe

        recipe = get_recipe(self.recipe, self.method)
        values = {name: getattr(recipe, name) for name in RECIPE_FIELDS if hasattr(recipe, name)}
        values.update({k: v for k, v in recipe.extra.items() if k in RECIPE_FIELDS})
        values.update({name: getattr(self, name) for name in RECIPE_FIELDS if getattr(self, name) is not None})
        for name in RECIPE_FIELDS:
            values.setdefault(name, FALLBACKS.get(name))
        if self.epochs is None:
            values["epochs"] = recipe.epochs_for(samples, values["batch_size"])
        if self.step_size is None and recipe.step_size is not None:  # the recipe's is a multiple of the training ε
            values["step_size"] = recipe.step_size * float(self.eps) * values["eps_scale"]
        warmup = self.warmup if self.warmup is not None else round(recipe.warmup * values["epochs"])
        fields = {k: getattr(self, k) for k in ("method", "eps", "norm", "seed", "precision", "guard")}
        return TrainConfig(
            **fields, **values, recipe=recipe.name, warmup=min(warmup, values["epochs"]), val_fraction=self.held_out
        )

    @property
    def held_out(self) -> float:
        """The share of the training samples held out for validation: given, else the recipe's."""
        from advgrad.train.recipes import get_recipe

        return self.val_fraction if self.val_fraction is not None else get_recipe(self.recipe, self.method).val_fraction

    @property
    def resolved(self) -> bool:
        return (
            self.recipe is not None
            and all(getattr(self, n) is not None for n in RECIPE_FIELDS if n != "step_size")
            and self.warmup is not None
        )

    @property
    def certified(self) -> bool:
        return self.method in CERTIFIED_METHODS

    @property
    def bound(self) -> str:
        """The bound the per-epoch validation certifies with: the training's own (IBP for mtl-ibp, sabr, staps)."""
        return self.method if self.method in ("ibp", "crown-ibp") else "ibp"

    @property
    def train_eps(self) -> float:
        """The ε trained against: ``eps_scale``·``eps``."""
        return float(self.eps) * (1.0 if self.eps_scale is None else self.eps_scale)

    @property
    def warmup_epochs(self) -> int:
        return self.warmup or 0

    def ramp(self, epoch: int, batch: int, batches: int) -> float:
        """The share of the ramp done at the start of ``batch`` of ``epoch`` (0-based): in [0, 1]."""
        if self.warmup_epochs == 0:
            return 1.0
        return min(1.0, (epoch + batch / max(batches, 1)) / self.warmup_epochs)

    def to_dict(self) -> dict:
        return {**asdict(self), "eps": float(self.eps), "warmup": self.warmup_epochs}


#: what an option a recipe does not name falls back to
FALLBACKS = {"alpha": 0.5, "lam": 0.4, "noise_radius": 2.0, "ema": 0.0}
