"""Cheap measurements on the clean batches that the sanity checks (:mod:`advgrad.verdicts.checks`) read.

Three things about a model can make every attack number meaningless, and each costs little to
measure while the clean predictions are computed:

* **input gradients**: ∇ₓJ (cross-entropy, true label) of the clean-correct samples, by one
  forward and one backward pass. A share of exactly zero or non-finite gradients means the
  gradient attacks had nothing to follow (gradient masking, or a saturated softmax);
* **repeatability**: the forward pass of that gradient computation is a second run of the model
  on the same inputs; outputs that differ from the first pass reveal a randomised model;
* **output scale**: rows of outputs that all lie in [0, 1] (and sum to 1) are probabilities, not
  logits, and cross-entropy on them gives attacks weak gradients;
* **loss saturation**: clean-correct samples whose cross-entropy is exactly 0 in float32 (a margin
  beyond about 17): the loss carries no information, and attacks that compare loss values (APGD's
  step-size schedule, the best of several restarts) are blind there;
* **gradient consistency**: along one random direction d, the directional derivative autograd gives
  for the margin z_y − max_{k≠y} z_k against central finite differences of the model's own outputs,
  (m(x + hd) − m(x − hd)) / 2h. A model that changes its computation at inference (test-time
  optimisation, input-dependent iterations, a purification step bypassed by a straight-through
  gradient) has a gradient that does not describe its outputs.

The gradient pass (and the consistency check: one more gradient pass and two forward passes) runs
on the first ``GRADIENT_SAMPLES`` samples (whole batches) only; the output scale and the loss
saturation are read from every batch's clean outputs, which are computed anyway. Counts merge by
addition, so per-batch evidence saved in a resume state adds up to the same totals.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

from advgrad.core.gradient import input_gradient
from advgrad.core.losses import margin
from advgrad.evaluation.counting import SampleCounter

GRADIENT_SAMPLES = 1024
REPEAT_RTOL = 1e-3  # outputs differing by more than this share of the row's largest |output| changed
SIMPLEX_ATOL = 1e-3  # a row whose entries sum to 1 within this looks like softmax probabilities
VANISHING = 1e-30  # a gradient whose largest |entry| is below this is numerically zero (float32 underflow)
FD_STEP = 1e-3  # finite-difference step along a direction with entries ±1 (inputs in [0, 1])
FD_RTOL = 0.5  # autograd and finite differences disagreeing by more than this share of the larger one
COST_SAMPLES = 8  # samples of the first batch run alone, each under an operation counter
FD_ATOL = 1e-4  # ... and by more than this, relative to the sample's largest |logit| (float32 rounding)


@dataclass
class Evidence:
    """Counts over the samples measured so far (see the module docstring)."""

    gradient_samples: int = 0
    gradient_zero: int = 0
    gradient_nonfinite: int = 0
    repeat_samples: int = 0
    repeat_changed: int = 0
    repeat_max_difference: float = 0.0
    output_rows: int = 0
    output_unit_rows: int = 0
    output_simplex_rows: int = 0
    clean_nonfinite: int = 0  # samples whose clean logits hold a NaN or ±∞ (counted as misclassified)
    loss_samples: int = 0  # clean-correct samples whose float32 cross-entropy was read
    loss_saturated: int = 0  # ... of which exactly 0
    consistency_samples: int = 0  # samples whose autograd derivative was compared with finite differences
    consistency_mismatched: int = 0  # ... of which the two disagree
    cost_samples: int = 0  # samples whose forward pass was counted in tensor operations
    cost_min: int = 0  # the fewest operations one of them took
    cost_max: int = 0  # the most
    input_shape: list[int] = field(default_factory=list)

    def merge(self, other: Evidence) -> None:
        """Add ``other``'s counts to these (in place)."""
        for name in (
            "gradient_samples",
            "gradient_zero",
            "gradient_nonfinite",
            "repeat_samples",
            "repeat_changed",
            "output_rows",
            "output_unit_rows",
            "output_simplex_rows",
            "clean_nonfinite",
            "loss_samples",
            "loss_saturated",
            "consistency_samples",
            "consistency_mismatched",
        ):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.repeat_max_difference = max(self.repeat_max_difference, other.repeat_max_difference)
        if other.cost_samples:
            self.cost_min = min(self.cost_min, other.cost_min) if self.cost_samples else other.cost_min
            self.cost_max = max(self.cost_max, other.cost_max)
            self.cost_samples += other.cost_samples
        self.input_shape = self.input_shape or list(other.input_shape)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Evidence:
        return cls(**data)


def loss_saturation(logits: Tensor, y: Tensor, correct: Tensor) -> tuple[int, int]:
    """Clean-correct samples, and those whose float32 cross-entropy is exactly 0."""
    index = correct.nonzero().squeeze(1)
    if not index.numel():
        return 0, 0
    loss = torch.nn.functional.cross_entropy(logits[index].float(), y[index], reduction="none")
    return int(index.numel()), int((loss == 0).sum())


class _OperationCounter(TorchFunctionMode):
    """Counts the torch functions and tensor methods called inside it (at the Python level: cheap,
    and every step of a Python loop over tensors counts)."""

    def __init__(self) -> None:
        super().__init__()
        self.operations = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001 - torch's protocol
        self.operations += 1
        return func(*args, **(kwargs or {}))


def _uncounted(model: nn.Module, samples: int) -> nn.Module:
    """The model inside a :class:`~advgrad.evaluation.counting.SampleCounter`, which is charged the
    ``samples`` forward passes about to be made on the model alone (a counter's own bookkeeping is no
    operation of the model and must not be counted as one); any other model itself."""
    if not isinstance(model, SampleCounter):
        return model
    model.samples += samples
    return model.model


def operation_counts(model: nn.Module, x: Tensor) -> list[int]:
    """The tensor operations of one forward pass of ``model`` on each sample of ``x`` alone."""
    counts = []
    with torch.no_grad():
        for i in range(x.shape[0]):
            with _OperationCounter() as counter:
                model(x[i : i + 1])
            counts.append(counter.operations)
    return counts


def consistency(model: nn.Module, x: Tensor, y: Tensor, generator: torch.Generator) -> tuple[int, int]:
    """(samples, mismatched): autograd's directional derivative of the margin against central finite
    differences along a random ±1 direction, at x moved :data:`FD_STEP` into the interior of [0, 1]."""
    centre = x.clamp(FD_STEP, 1 - FD_STEP)
    d = torch.randint(0, 2, x.shape, generator=generator, device=generator.device).to(x) * 2 - 1
    grad, _, logits = input_gradient(model, centre, y, loss="margin")
    with torch.no_grad():
        ends = model(torch.cat([centre + FD_STEP * d, centre - FD_STEP * d]))
    up, down = margin(ends[: x.shape[0]].double(), y), margin(ends[x.shape[0] :].double(), y)
    fd = (up - down) / (2 * FD_STEP)
    ad = (grad.double() * d.double()).reshape(x.shape[0], -1).sum(dim=1)
    scale = logits.double().abs().amax(dim=1) / FD_STEP
    wrong = (fd - ad).abs() > FD_RTOL * torch.maximum(fd.abs(), ad.abs()) + FD_ATOL * scale
    finite = torch.isfinite(fd) & torch.isfinite(ad)
    return int(finite.sum()), int((wrong & finite).sum())


def output_scale(logits: Tensor) -> tuple[int, int]:
    """Rows of ``logits`` with every entry in [0, 1], and those of them that also sum to 1."""
    unit = ((logits >= 0) & (logits <= 1)).all(dim=1)
    simplex = unit & ((logits.sum(dim=1) - 1).abs() <= SIMPLEX_ATOL)
    return int(unit.sum()), int(simplex.sum())


def measure(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    logits: Tensor,
    correct: Tensor,
    *,
    gradients: bool = True,
    generator: torch.Generator | None = None,
    cost: bool = True,
) -> Evidence:
    """Evidence from one clean batch: ``logits`` are the model's outputs on ``x`` (already
    computed), ``correct`` marks the clean-correct samples. With ``gradients`` the clean-correct
    samples also get a gradient pass (whose forward pass doubles as the repeat check) and the
    consistency check, whose direction comes from ``generator`` (a fixed seed when None), and with
    ``cost`` too (the run's first batch) the first :data:`COST_SAMPLES` samples are counted in operations."""
    unit, simplex = output_scale(logits)
    evidence = Evidence(
        output_rows=logits.shape[0], output_unit_rows=unit, output_simplex_rows=simplex, input_shape=list(x.shape[1:])
    )
    evidence.loss_samples, evidence.loss_saturated = loss_saturation(logits, y, correct)
    index = correct.nonzero().squeeze(1)
    if not gradients or index.numel() == 0:
        return evidence
    grad, _, again = input_gradient(model, x[index], y[index])
    flat = grad.reshape(index.numel(), -1)
    finite = torch.isfinite(flat).all(dim=1)
    zero = finite & (flat.abs().amax(dim=1) <= VANISHING)  # exact zeros and float32 underflow alike
    first = logits[index].float()
    difference = (again.float() - first).abs().amax(dim=1) / first.abs().amax(dim=1).clamp_min(1e-6)
    difference = torch.nan_to_num(difference, nan=1e30, posinf=1e30)  # JSON has no inf
    evidence.gradient_samples = int(index.numel())
    evidence.gradient_zero = int(zero.sum())
    evidence.gradient_nonfinite = int((~finite).sum())
    evidence.repeat_samples = int(index.numel())
    evidence.repeat_changed = int((difference > REPEAT_RTOL).sum())
    evidence.repeat_max_difference = float(difference.max())
    if evidence.repeat_changed:  # a randomized model: finite differences and counts say nothing (and would
        return evidence  # draw from its randomness); the randomized-model check speaks for it
    if generator is None:
        generator = torch.Generator(device=x.device).manual_seed(0)
    evidence.consistency_samples, evidence.consistency_mismatched = consistency(model, x[index], y[index], generator)
    if cost:
        sample = x[:COST_SAMPLES]
        counts = operation_counts(_uncounted(model, sample.shape[0]), sample)
        evidence.cost_samples, evidence.cost_min, evidence.cost_max = len(counts), min(counts), max(counts)
    return evidence
