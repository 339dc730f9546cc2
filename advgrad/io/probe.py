"""A probe before the run: one batch through the model to check that model and data fit.

The probe checks, in order, each failure being one clear message: the model accepts the data's
shape (a wrong number of input channels is named as such); its output holds logits (a tuple, a
mapping or an object with ``.logits`` is handled: see :mod:`advgrad.io.model.logits`); the logits are
N×classes and cover the labels; they are finite; they depend differentiably on the input (else
no gradient attack can work, and robustness would be overstated). It also warns when the
outputs change between two identical calls (randomness left on) or when a sample's output
depends on the rest of its batch (batch norm in training mode).

:func:`normalisation_hint` looks for a model trained on normalised inputs but given pixels: its
accuracy on the probe batch rises markedly once the batch is standardised.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from advgrad.core.errors import AdvgradError, InternalError, ModelError, Notice, first_line
from advgrad.io.model.guard import ModelFailure
from advgrad.io.model.logits import LogitsOf, OutputRule, logits_rule


@dataclass(frozen=True)
class ProbeResult:
    """What the probe learned: the input shape (C, H, W), the number of classes, how the logits
    are taken from the output, and the clean accuracy on the probe batch."""

    input_shape: tuple[int, ...]
    num_classes: int
    output: OutputRule = field(default_factory=lambda: OutputRule("tensor"))
    batch_size: int = 0
    correct: int = 0
    warnings: tuple[str, ...] = ()

    @property
    def accuracy(self) -> float:
        return self.correct / self.batch_size if self.batch_size else 0.0

    def to_dict(self) -> dict:
        return {
            "input_shape": list(self.input_shape),
            "num_classes": self.num_classes,
            "output": self.output.describe(),
            "probe_batch": self.batch_size,
            "probe_accuracy": self.accuracy,
            "warnings": list(self.warnings),
        }


def check_label_range(top: int, classes: int) -> None:
    """Labels are class indices: the largest must be below the number of logits."""
    if top >= classes:
        raise ModelError(
            f"labels go up to {top} but the model outputs {classes} classes (0..{classes - 1}); "
            "the model and the data do not fit"
        )


def check_logits(logits: object, y: Tensor, *, allow_nonfinite: bool = False) -> int:
    """Check model outputs for a batch with labels ``y``; return the number of classes.

    With ``allow_nonfinite`` rows holding NaN or ±∞ are accepted: the caller counts those samples
    as misclassified."""
    if not isinstance(logits, Tensor):
        raise ModelError(f"the model returned {type(logits).__name__}, expected a tensor of N×classes logits")
    n = y.shape[0]
    if logits.dim() != 2 or logits.shape[0] != n:
        raise ModelError(
            f"the model's output has shape {tuple(logits.shape)}; expected {n}×classes logits for a batch of {n}"
        )
    classes = logits.shape[1]
    if classes < 2:
        raise ModelError(f"the model outputs {classes} value per sample; a classifier needs at least 2 logits")
    check_label_range(int(y.max()) if y.numel() else 0, classes)
    if not allow_nonfinite and not torch.isfinite(logits).all():
        raise ModelError("the model's outputs contain NaN or infinite values on the probe batch")
    return classes


_CHANNELS = re.compile(r"to have (\d+) channels, but got (\d+) channels")
_MATMUL = re.compile(r"shapes cannot be multiplied")


def _explain_failure(exc: Exception, x: Tensor) -> ModelError:
    shape = "×".join(map(str, x.shape))
    text = first_line(exc)
    channels = _CHANNELS.search(str(exc))
    if channels:
        return ModelError(
            f"wrong number of input channels: the model expects {channels.group(1)} but the data has "
            f"{channels.group(2)} (inputs of shape {shape})"
        )
    hint = " (check the image size: `image_size`)" if _MATMUL.search(text) else ""
    return ModelError(
        f"the model failed on inputs of shape {shape} ({text}){hint}; check that the data has the shape the model expects",
        params="image_size",
    )


def _one_sample_failure(exc: Exception, x: Tensor) -> ModelError:
    return ModelError(
        f"the model fails on a batch of one sample ({first_line(exc)}); advgrad's batches shrink as samples "
        "are fooled, so the model must accept any batch size (batch norm in training mode?)"
    )


def _forward(model: nn.Module, x: Tensor, explain=_explain_failure):
    """``model(x)`` without gradients; a failure becomes the ModelError ``explain`` words."""
    try:
        with torch.no_grad():
            return model(x)
    except ModelFailure as failure:  # the guarded model's own exception: explained as any other
        if not isinstance(failure.cause, Exception):
            raise  # sys.exit: the guard's message says it all
        raise explain(failure.cause, x) from None
    except (AdvgradError, InternalError):  # advgrad's own: not the model's failure
        raise
    except Exception as exc:
        raise explain(exc, x) from None


def forward_or_explain(model: nn.Module, x: Tensor):
    """``model(x)`` without gradients; a failure (inputs of a shape the model does not take, …) is
    one :class:`ModelError` naming the inputs' shape."""
    return _forward(model, x)


def _close(a: Tensor, b: Tensor) -> bool:
    finite = a[torch.isfinite(a)]
    scale = float(finite.abs().max()) if finite.numel() else 0.0
    return torch.allclose(a, b, rtol=1e-3, atol=1e-5 * max(scale, 1.0), equal_nan=True)


def _behaviour_warnings(model: nn.Module, x: Tensor, logits: Tensor) -> list[str]:
    found = []
    if not _close(_forward(model, x), logits):
        found.append(
            "the model's outputs differ between two identical calls: something random is active (dropout, noise); "
            "gradient attacks on a random model overstate robustness unless they average many passes "
            "(`--eot 20`, or `--attack autoattack-rand`)"
        )
    if x.shape[0] > 1:  # attacks shrink batches as samples are fooled: a batch of one must work
        alone = _forward(model, x[:1], _one_sample_failure)
        if not found and not _close(alone, logits[:1]):
            found.append(
                Notice(
                    "a sample's output depends on the rest of its batch (batch norm in training mode?); "
                    "results would depend on `batch_size`",
                    "batch_size",
                )
            )
    return found


def _gradient_check(model: nn.Module, x: Tensor, y: Tensor) -> list[str]:
    """The true-class logits must depend differentiably on the input."""
    x = x.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        out = model(x)
        if not out.requires_grad:
            raise ModelError(
                "the model's output does not depend differentiably on its input (no gradient reaches x: "
                "detached, quantised or computed without autograd); attacks that use ∇ₓJ cannot work on it"
            )
        (grad,) = torch.autograd.grad(out.gather(1, y[:, None]).sum(), x, allow_unused=True)
    if grad is None or not torch.any(grad != 0):
        return [
            "the input gradient is zero on the whole probe batch (gradient masking?): gradient attacks will "
            "find nothing and accuracy under attack would overstate robustness"
        ]
    if not torch.isfinite(grad).all():
        return ["the input gradient has NaN or infinite values on the probe batch"]
    return []


def probe(model: nn.Module, x: Tensor, y: Tensor) -> ProbeResult:
    """Run one batch through ``model`` and check its outputs against the labels.

    The model is used as it is (its mode is not changed): callers give it in eval mode.
    """
    raw = _forward(model, x)
    rule = logits_rule(raw)
    logits = rule.take(raw)
    classes = check_logits(logits, y, allow_nonfinite=True)
    finite = torch.isfinite(logits).all(dim=1)
    if not bool(finite.any()):  # one bad sample is counted as misclassified; all of them is a broken model
        raise ModelError("the model's outputs contain NaN or infinite values on the probe batch")
    found = []
    if not bool(finite.all()):
        found.append(
            f"{int((~finite).sum())} of {finite.numel()} samples of the probe batch have NaN or infinite "
            "logits; such samples count as misclassified (see the non-finite-logits check)"
        )
    wrapped = model if rule.kind == "tensor" else LogitsOf(model, rule)
    found += _behaviour_warnings(wrapped, x, logits)
    found += _gradient_check(wrapped, x[finite], y[finite])
    correct = int(((logits.argmax(dim=1) == y) & finite).sum())
    return ProbeResult(tuple(x.shape[1:]), classes, rule, int(y.shape[0]), correct, tuple(found))


IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
HINT_MIN_SAMPLES = 20  # below this a rise of 20 points is a handful of samples
HINT_MIN_RISE = 0.20  # accuracy points gained by standardising before the hint is given


def _standardisations(x: Tensor) -> list[tuple[str, Tensor, Tensor]]:
    """Candidate (name, mean, std) per channel: the probe batch's own statistics, ImageNet's
    constants (3 channels), and 0.5/0.5 (inputs in [-1, 1])."""
    dims = [d for d in range(x.dim()) if d != 1]
    own = (x.mean(dim=dims), x.std(dim=dims).clamp_min(1e-6))
    channels = x.shape[1]
    found = [("the probe batch's own per-channel mean and std", *own)]
    if channels == 3:
        found.append(("ImageNet's mean and std", x.new_tensor(IMAGENET_MEAN), x.new_tensor(IMAGENET_STD)))
    found.append(
        ("mean 0.5 and std 0.5 (inputs in [-1, 1])", x.new_full((channels,), 0.5), x.new_full((channels,), 0.5))
    )
    return found


def normalisation_hint(model: nn.Module, x: Tensor, y: Tensor, classes: int) -> str | None:
    """A warning when ``model`` (giving logits) looks trained on normalised inputs but gets pixels.

    The probe batch ``x`` (pixels in [0, 1]) is standardised, (x − mean)/std per channel, with each
    of :func:`_standardisations`; when the best of them raises the accuracy by more than 20 points
    and to at least twice chance, the model most likely expects normalised inputs and the attacks
    would run in the wrong units. None otherwise, or when the batch is too small to tell."""
    n = y.shape[0]
    if n < HINT_MIN_SAMPLES or x.dim() != 4 or not x.is_floating_point():
        return None
    try:
        with torch.no_grad():
            raw = float((model(x).argmax(dim=1) == y).float().mean())
            scored = []
            for name, mean, std in _standardisations(x):
                z = (x - mean[None, :, None, None]) / std[None, :, None, None]
                scored.append((float((model(z).argmax(dim=1) == y).float().mean()), name, mean, std))
    except Exception:  # a model that fails on shifted inputs gives no hint; the run decides
        return None
    best, name, mean, std = max(scored, key=lambda s: s[0])
    if best - raw <= HINT_MIN_RISE or best < 2 / classes:
        return None
    values = ",".join(f"{v:.3g}" for v in mean.tolist()), ",".join(f"{v:.3g}" for v in std.tolist())
    return Notice(
        f"no `mean`/`std` given, yet the model classifies the probe batch much better once it is standardised "
        f"with {name} ({100 * raw:.0f}% → {100 * best:.0f}%): it was probably trained on normalised inputs; give "
        f"the normalisation it was trained with, e.g. `mean` {values[0]} `std` {values[1]}, so that attacks and ε "
        "are in pixel units",
        ("mean", "std"),
    )
