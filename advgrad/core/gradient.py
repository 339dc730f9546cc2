"""The input gradient ∇ₓJ and the context that makes computing it cheap and side-effect free.

Training differentiates the loss J with respect to the weights W with the input held fixed; an
attack holds W fixed and differentiates with respect to the input x. :func:`frozen` puts a model
in eval mode and turns off ``requires_grad`` on its parameters so autograd never builds the
weight-gradient graph, and restores both afterwards.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from advgrad.core.losses import get_loss


@contextmanager
def frozen(model: nn.Module) -> Iterator[nn.Module]:
    """Eval mode and frozen parameters inside the block; the previous state is restored after.

    Modes are restored module by module (a model may mix train and eval submodules), and
    ``requires_grad`` parameter by parameter.
    """
    modes = [(m, m.training) for m in model.modules()]
    grads = [(p, p.requires_grad) for p in model.parameters()]
    try:
        model.eval()
        for p, _ in grads:
            p.requires_grad_(False)
        yield model
    finally:
        for m, mode in modes:
            m.training = mode
        for p, flag in grads:
            p.requires_grad_(flag)


def expectation(draws: int, compute: Callable[[], tuple[Tensor, ...]]) -> tuple[Tensor, ...]:
    """Expectation over transformation (Athalye, Carlini & Wagner, ICML 2018): the mean of ``draws``
    calls of ``compute``, tensor by tensor (float tensors of half precision are averaged in float32).

    For a randomized model f(x; ξ) an attack needs ∇ₓ E_ξ[J(f(x; ξ), y)] = E_ξ[∇ₓ J(f(x; ξ), y)],
    which the mean of ``draws`` independent gradients estimates without bias; each call of
    ``compute`` runs the model anew (a forward and a backward pass). With ``draws`` = 1 it is
    ``compute()`` itself, unchanged.
    """
    first = compute()
    if draws <= 1:
        return first
    totals = [t.float() if t.is_floating_point() and t.dtype != torch.float64 else t for t in first]
    for _ in range(draws - 1):
        totals = [total + t for total, t in zip(totals, compute(), strict=True)]
    return tuple(total / draws for total in totals)


def input_gradient(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    loss: str = "ce",
    target: Tensor | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """∇ₓJ for a batch: the gradient of each sample's loss J(f(x_i), y_i) with respect to x_i.

    Returns ``(grad, loss, logits)``: ``grad`` has the shape of ``x``; ``loss`` and ``logits`` are
    the per-sample loss (N,) and the model outputs (N, classes) at ``x``. The model runs in eval
    mode with frozen parameters; both are restored afterwards. Because the summed loss
    Σ_i J_i has ∂/∂x_i = ∂J_i/∂x_i (samples do not interact in eval mode), one backward pass
    gives every sample's gradient.
    """
    objective = get_loss(loss)
    with frozen(model), torch.enable_grad():
        x_var = x.detach().clone().requires_grad_(True)
        logits = model(x_var)
        per_sample = objective(logits, y, target)
        (grad,) = torch.autograd.grad(per_sample.sum(), x_var)
    return grad.detach(), per_sample.detach(), logits.detach()


@dataclass(frozen=True)
class GradientCheck:
    """Result of comparing autograd against central finite differences."""

    max_relative_error: float
    max_absolute_error: float
    n_coordinates: int
    dtype: str
    step: float

    @property
    def default_tolerance(self) -> float:
        """What a correct gradient reaches: 1e-4 in float64, 1e-2 in float32."""
        return 1e-4 if self.dtype == "float64" else 1e-2

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def finite_difference_check(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    loss: str = "ce",
    coordinates: int = 16,
    jitter: float = 1e-4,
    generator: torch.Generator | None = None,
) -> GradientCheck:
    """Compare ∇ₓJ from autograd with central differences (J(x+h·e_k) − J(x−h·e_k)) / 2h.

    ``coordinates`` input coordinates are sampled per sample. The check runs in float64 on a copy
    of the model when the model allows it (h = 1e-6), else in float32 (h = 1e-3). The relative
    error of a coordinate is |fd − ad| / max(|fd|, |ad|, s), where s is the sample's largest
    |∂J/∂x_k|: errors are measured on the scale of the sample's gradient, so a coordinate whose
    gradient is a millionth of the others' is not judged by rounding noise (the loss of a
    confidently classified sample is a difference of nearly equal numbers).

    The check runs at x moved by up to ``jitter`` per coordinate, towards the inside of [0, 1].
    Images with exact zeros put ReLU and max-pool units exactly on ties, where the loss is not
    differentiable and autograd's tie-breaking legitimately differs from finite differences; a
    random point next to x has no ties, almost surely. ``jitter=0`` checks at x itself.
    """
    if generator is None:
        generator = torch.Generator().manual_seed(0)
    objective = get_loss(loss)
    if jitter > 0:
        noise = torch.rand(x.shape, generator=generator, dtype=torch.float64).to(x.device)
        inward = torch.where(x > 0.5, -1.0, 1.0).to(torch.float64)
        x = x.double() + jitter * noise * inward
    try:
        # Converted under no_grad so the copy's parameters are leaves (a TorchScript module's
        # .double() otherwise records the cast and `frozen` cannot switch requires_grad off).
        with torch.no_grad():
            work = copy.deepcopy(model).double()
            xd = x.detach().double()
            work.eval()(xd[:1])
        dtype, h = torch.float64, 1e-6
    except Exception:  # the model cannot run in float64 (e.g. hard-coded float32 constants)
        work, xd, dtype, h = model, x.detach().float(), torch.float32, 1e-3
    grad, _, _ = input_gradient(work, xd, y, loss=loss)
    n = xd.shape[0]
    numel = xd[0].numel()
    k = min(coordinates, numel)
    idx = torch.stack([torch.randperm(numel, generator=generator)[:k] for _ in range(n)])
    idx = idx.to(xd.device)
    rows = torch.arange(n, device=xd.device)[:, None].expand(n, k)
    fd = torch.empty(n, k, dtype=dtype, device=xd.device)
    with frozen(work), torch.no_grad():
        flat = xd.reshape(n, -1)
        for j in range(k):  # k is small; every sample's coordinate j is perturbed in one batch
            plus, minus = flat.clone(), flat.clone()
            plus[rows[:, j], idx[:, j]] += h
            minus[rows[:, j], idx[:, j]] -= h
            j_plus = objective(work(plus.reshape(xd.shape)), y, None)
            j_minus = objective(work(minus.reshape(xd.shape)), y, None)
            fd[:, j] = (j_plus - j_minus) / (2 * h)
    ad = grad.reshape(n, -1).gather(1, idx)
    scale = grad.reshape(n, -1).abs().amax(dim=1, keepdim=True).clamp_min(1e-30)
    abs_err = (fd - ad).abs()
    rel_err = abs_err / torch.maximum(torch.maximum(fd.abs(), ad.abs()), scale)
    return GradientCheck(
        max_relative_error=float(rel_err.max()) if rel_err.numel() else 0.0,
        max_absolute_error=float(abs_err.max()) if abs_err.numel() else 0.0,
        n_coordinates=int(n * k),
        dtype=str(dtype).replace("torch.", ""),
        step=h,
    )
