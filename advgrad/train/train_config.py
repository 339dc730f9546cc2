"""What one training run does: method, optimiser, schedule, threat model and their checks."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from advgrad.core.eps import Eps
from advgrad.core.errors import UsageError
from advgrad.core.geometry import L2, LINF, get_geometry, parse_norm
from advgrad.core.numeric import check_number

METHODS = ("standard", "pgd", "trades", "noise", "ibp", "crown-ibp")
CERTIFIED_METHODS = ("ibp", "crown-ibp")
OPTIMIZERS = ("sgd", "adam")
SCHEDULES = ("cosine", "step", "constant")
NORMS = (LINF, L2)  # the geometries training supports (advgrad.core.geometry)


@dataclass(frozen=True)
class TrainConfig:
    """A training run (see docs/train.md).

    ``method``: ``standard`` (cross-entropy), ``pgd`` (Madry et al. 2018: cross-entropy at a PGD
    adversarial example of ``steps`` steps), ``trades`` (Zhang et al. 2019: CE(f(x), y) +
    ``beta``·KL(f(x) ‖ f(x')) at the x' that maximises the KL), ``noise`` (Cohen et al. 2019:
    cross-entropy at x + N(0, ``sigma``²)), ``ibp`` (Gowal et al. 2018) and ``crown-ibp`` (Zhang et
    al. 2020): κ·CE(f(x), y) + (1 − κ)·CE(−m(x, ε), y) with m the certified margin lower bounds.

    ``warmup`` epochs ramp ε linearly (per batch) from 0 to ``eps``, κ from 1 to ``kappa`` and, for
    crown-ibp, the weight of the CROWN-IBP bound against plain IBP from 1 to 0; ``None`` is the
    method's default (0 for attacks, half the epochs for certified training). The learning rate
    follows ``schedule`` per epoch (cosine to 0; step: ×0.1 at 50% and 75% of the epochs).
    ``val_fraction`` of the training samples are held out (seeded) for the per-epoch validation.
    """

    method: str = "standard"
    epochs: int = 10
    batch_size: int = 128
    lr: float = 1e-3
    optimizer: str = "adam"
    momentum: float = 0.9
    weight_decay: float = 0.0
    schedule: str = "cosine"
    eps: float | Eps = 0.0
    norm: str = "inf"
    warmup: int | None = None
    steps: int = 7
    step_size: float | None = None
    beta: float = 6.0
    sigma: float = 0.25
    kappa: float = 0.5
    val_fraction: float = 0.1
    seed: int = 0
    precision: str = "fp32"

    def __post_init__(self) -> None:
        method = self.method.strip().lower()
        object.__setattr__(self, "method", method)
        if method not in METHODS:
            raise UsageError(
                f"unknown training `method` {self.method!r}; choose one of {', '.join(METHODS)}", params="method"
            )
        for name, choices in (("optimizer", OPTIMIZERS), ("schedule", SCHEDULES)):
            value = getattr(self, name).strip().lower()
            if value not in choices:
                raise UsageError(f"`{name}` must be one of {', '.join(choices)}, got {value!r}", params=name)
            object.__setattr__(self, name, value)
        check_number(self.epochs, "epochs", integer=True, minimum=1)
        check_number(self.batch_size, "batch_size", integer=True, minimum=1)
        check_number(self.steps, "steps", integer=True, minimum=1)
        check_number(self.seed, "seed", integer=True, minimum=0, maximum=2**63 - 1)
        for name in ("momentum", "weight_decay", "eps", "beta", "sigma"):
            check_number(getattr(self, name), name, minimum=0)
        check_number(self.lr, "lr", above=0)
        if self.step_size is not None:
            check_number(self.step_size, "step_size", above=0)
        check_number(self.kappa, "kappa", minimum=0, maximum=1)
        check_number(self.val_fraction, "val_fraction", minimum=0, maximum=0.9)
        object.__setattr__(self, "eps", Eps.of(self.eps))  # keeps how it was written, for messages and reports
        norm = parse_norm(self.norm)
        if get_geometry(norm) not in NORMS:
            raise UsageError(
                f"training supports the norms {' and '.join(g.name for g in NORMS)}, not {self.norm!r}", params="norm"
            )
        object.__setattr__(self, "norm", norm)
        if self.warmup is not None:
            check_number(self.warmup, "warmup", integer=True, minimum=0)
            if self.warmup > self.epochs:
                raise UsageError(
                    f"`warmup` of {self.warmup} epochs is longer than the run's {self.epochs} `epochs`",
                    params=("warmup", "epochs"),
                )
        if method in ("pgd", "trades", "ibp", "crown-ibp") and self.eps == 0:
            raise UsageError(
                f"`method` {method} trains against an ε-ball: give `eps` > 0 (e.g. 0.1)", params=("method", "eps")
            )
        if method == "noise" and self.sigma == 0:
            raise UsageError(
                "`method` noise needs `sigma` > 0 (the noise's standard deviation)", params=("method", "sigma")
            )
        if self.precision not in ("fp32", "bf16", "fp16"):
            raise UsageError(f"`precision` must be fp32, bf16 or fp16, got {self.precision!r}", params="precision")

    @property
    def certified(self) -> bool:
        return self.method in CERTIFIED_METHODS

    @property
    def warmup_epochs(self) -> int:
        """The ε ramp's length: as given, else half the epochs for certified training, else 0."""
        if self.warmup is not None:
            return self.warmup
        return self.epochs // 2 if self.certified else 0

    def ramp(self, epoch: int, batch: int, batches: int) -> float:
        """The share of the ramp done at the start of ``batch`` of ``epoch`` (0-based): in [0, 1]."""
        if self.warmup_epochs == 0:
            return 1.0
        return min(1.0, (epoch + batch / max(batches, 1)) / self.warmup_epochs)

    def to_dict(self) -> dict:
        return {**asdict(self), "eps": float(self.eps), "warmup": self.warmup_epochs}
