"""The parts of STAPS training (Mao, Müller, Fischer & Vechev, NeurIPS 2023, "TAPS: Connecting
Certified and Adversarial Training") that the loss in :mod:`advgrad.train.methods` composes.

The network is cut into a feature extractor g and a head h (:func:`split_model`). IBP bounds g
over SABR's small input box, giving a latent box [l, u]; PGD inside [l, u] on h then looks, for
every class j, for a latent point z_j that makes the margin h(z)_y − h(z)_j small
(:func:`latent_attack`). The loss's gradient reaches g's bounds through the gradient connector
(:func:`connect`): the gradient at each coordinate of z_j goes to l, to u, or is split between
them, by where z_j sits in [l, u].
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from advgrad.core.errors import ModelError
from advgrad.core.gradient import frozen

#: the connector's width c: 0.5 sends each coordinate's gradient wholly to the nearer end of its
#: interval (the paper's binary connector); c < 0.5 splits it linearly where z is within (c, 1 − c)
CONNECTOR_WIDTH = 0.5
#: the factor STAPS multiplies the gradient of its latent-attack loss by before the product with the IBP loss
#: (the paper's gradient expansion; 5 in the authors' MNIST and CIFAR-10 scripts)
GRADIENT_EXPANSION = 5.0
#: a latent PGD step is this share of the interval's width, over ``steps`` steps (as PGD's 2.5·ε/steps)
LATENT_STEP = 1.25

NEEDS = (
    "`method` staps cuts the model into a feature extractor and a head: it needs an nn.Sequential with a linear "
    "layer after at least one layer with weights, or a model whose forward is classifier(features(x)) with "
    "`features` and `classifier` children (as digits-cnn)"
)


def _sequential_cut(model: nn.Sequential) -> int:
    """Where the head starts: at the second-to-last linear layer (the linear layers of a small CNN)
    when weights remain before it, else at the last one; -1 when neither leaves weights before it."""
    linear = [i for i, layer in enumerate(model) if isinstance(layer, nn.Linear)]
    for start in linear[-2:]:
        if any(p.numel() for layer in list(model)[:start] for p in layer.parameters()):
            return start
    return -1


def split_model(model: nn.Module) -> tuple[nn.Module, nn.Module]:
    """(extractor, head) with model(x) = head(extractor(x)), sharing the model's parameters; a
    model advgrad cannot cut is refused (:class:`ModelError`, one line)."""
    if isinstance(model, nn.Sequential):
        cut = _sequential_cut(model)
        if cut > 0:
            return model[:cut], model[cut:]
    else:
        features, classifier = getattr(model, "features", None), getattr(model, "classifier", None)
        if isinstance(features, nn.Module) and isinstance(classifier, nn.Module):
            return features, classifier
    raise ModelError(f"{NEEDS}; {type(model).__name__} is neither", params="method")


def checked_split(model: nn.Module, x: Tensor) -> tuple[nn.Module, nn.Module]:
    """:func:`split_model`, with model(x) = head(extractor(x)) checked on ``x`` (eval mode)."""
    extractor, head = split_model(model)
    with frozen(model), torch.no_grad():
        whole, parts = model(x), head(extractor(x))
    if whole.shape != parts.shape or not torch.allclose(whole, parts, rtol=1e-4, atol=1e-5):
        raise ModelError(f"{NEEDS}; the forward of {type(model).__name__} is not that", params="method")
    return extractor, head


class LatentBounds:
    """IBP bounds of the feature extractor's output over an input box, differentiable in its weights
    (:class:`~advgrad.bounds.trainable.TrainableBounds` of the extractor, flattened for the graph),
    and the whole model's margin bounds (:meth:`margin_lower`)."""

    def __init__(self, model: nn.Module, extractor: nn.Module, example: Tensor):
        from advgrad.bounds.trainable import TrainableBounds

        with torch.no_grad():
            self.shape = tuple(extractor(example[:1]).shape[1:])
        self.bounds = TrainableBounds(nn.Sequential(extractor, nn.Flatten()), example[:1])
        self.margin_lower = TrainableBounds(model, example[:1]).margin_lower

    def box(self, centre: Tensor, radius: float, norm: str = "inf") -> tuple[Tensor, Tensor]:
        """(l, u), each (N, *latent shape): l ≤ extractor(x′) ≤ u for x′ in the ball ∩ [0, 1]."""
        low, high = self.bounds.output_interval(centre, radius, norm=norm)
        return low.view(-1, *self.shape), high.view(-1, *self.shape)


def head_margins(head: nn.Module, z: Tensor, y: Tensor, classes: int) -> Tensor:
    """(N, C): h(z_j)_y − h(z_j)_j for z of shape (N·C, …), row i·C + j holding z_j of sample i."""
    out = head(z).float().view(len(y), classes, -1)
    own = out.gather(2, y.view(-1, 1, 1).expand(-1, classes, 1)).squeeze(2)
    return own - out.diagonal(dim1=1, dim2=2)


def latent_attack(
    head: nn.Module, low: Tensor, high: Tensor, y: Tensor, classes: int, steps: int, generator: torch.Generator
) -> Tensor:
    """(N·C, …) latent points, row i·C + j in [low_i, high_i], found by ``steps`` signed-gradient
    steps from a uniform random point to make h(z)_{y_i} − h(z)_j small (row j = y_i is any point).
    The head's weights are frozen; the result is detached."""
    lo = low.detach().repeat_interleave(classes, dim=0)
    hi = high.detach().repeat_interleave(classes, dim=0)
    start = torch.rand(lo.shape, generator=generator, device=generator.device, dtype=lo.dtype).to(lo.device)
    z, size = lo + start * (hi - lo), LATENT_STEP * (hi - lo) / steps
    with frozen(head), torch.enable_grad():
        for _ in range(steps):
            z = z.detach().requires_grad_(True)
            (grad,) = torch.autograd.grad(head_margins(head, z, y, classes).sum(), z)
            z = torch.minimum(torch.maximum(z - size * grad.sign(), lo), hi)
    return z.detach()


def lower_share(z: Tensor, low: Tensor, high: Tensor, width: float = CONNECTOR_WIDTH) -> Tensor:
    """The share of the gradient at z that the connector sends to ``low`` (the rest goes to
    ``high``): 1 where t = (z − l)/(u − l) ≤ c, 0 where t ≥ 1 − c, (1 − c − t)/(1 − 2c) between (for
    c = 0.5: 1 below the middle, 0 above, ½ at it); ½ where l = u."""
    span = high - low
    t = ((z - low) / span.clamp(min=torch.finfo(span.dtype).tiny)).clamp(0, 1)
    if width >= 0.5:
        share = (t < 0.5).to(z.dtype) + 0.5 * (t == 0.5).to(z.dtype)
    else:
        share = ((1 - width - t) / (1 - 2 * width)).clamp(0, 1)
    return torch.where(span > 0, share, torch.full_like(share, 0.5)).detach()


def expand(loss: Tensor, factor: float = GRADIENT_EXPANSION) -> Tensor:
    """``loss``'s value with its gradient multiplied by ``factor``."""
    return factor * loss - (factor - 1) * loss.detach()


def connect(z: Tensor, low: Tensor, high: Tensor, width: float = CONNECTOR_WIDTH) -> Tensor:
    """z's value, with a gradient that reaches ``low`` and ``high`` (each of z's shape): ∂z/∂l =
    :func:`lower_share`, ∂z/∂u = 1 − that, so the two receive together the gradient at z."""
    share = lower_share(z, low, high, width)
    mix = share * low + (1 - share) * high
    return z.detach() + (mix - mix.detach())
