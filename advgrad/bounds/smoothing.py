"""Randomized smoothing: an L2 certificate for any classifier, from its votes under Gaussian noise.

Written from the description in Cohen, Rosenfeld & Kolter, "Certified Adversarial Robustness via
Randomized Smoothing" (ICML 2019). The *base* classifier ``f`` is the model (``f(x) = argmax``
of its logits); the *smoothed* classifier is

    g(x) = argmax_c P(f(x + δ) = c),   δ ~ N(0, σ² I).

If the top class c_A has probability p_A ≥ p̲_A > ½ under the noise, then g(x + e) = c_A for every
‖e‖₂ < R = σ·Φ⁻¹(p̲_A) (Cohen et al., Theorem 1, with p_B ≤ 1 − p̲_A). The certificate is about
``g``, not about the model itself, and it is statistical: p̲_A is a one-sided (1 − α) lower
confidence bound estimated from samples, so a certificate is wrong with probability at most α.

:func:`smoothed_certify` runs CERTIFY (the paper's Algorithm 1): ``n0`` noisy copies pick c_A (the
class with most votes), ``n`` further, independent copies count the votes n_A for c_A, p̲_A is the
Clopper–Pearson lower bound on n_A / n, and the sample is certified with radius σ·Φ⁻¹(p̲_A) when
p̲_A > ½; otherwise it abstains. :func:`smoothed_predict` is the paper's PREDICT (a two-sided
binomial test between the two top classes). :func:`certified_accuracy` counts, for each L2 radius,
the samples certified correctly at that radius.

Assumptions a reader should know:

- The radius is an L2 radius in the model's input space (after whatever the model applies itself,
  e.g. advgrad's normalisation wrapper sees noisy *unnormalised* inputs). L∞ certificates follow
  only through ‖e‖₂ ≤ √d·‖e‖∞, which this module does not claim.
- The noise is *not* clipped to the valid input range [0, 1], as in the paper: clipping would
  change the noise distribution the theorem is about.
- The base classifier should have been trained with noise of the same σ; on a model trained on
  clean inputs the smoothed classifier is usually poor and abstains a lot (that is correct, only
  unhelpful).
- A noisy copy whose logits are not all finite votes for no class: it counts against c_A.
- Ties in the logits go to the lowest class index (``argmax``); ties in the selection votes too.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from advgrad.core.errors import ModelError, UsageError
from advgrad.core.gradient import frozen
from advgrad.core.numeric import check_number

ABSTAIN = -1
METHOD = "smoothing"  # the certification method's name in advgrad certify and reports


@dataclass
class SmoothingResult:
    """The certificate of each sample, on the CPU.

    ``prediction``: (N,) int64, the smoothed classifier's class c_A, or ``-1`` (:data:`ABSTAIN`)
    where it abstains. ``radius``: (N,) float64, the certified L2 radius σ·Φ⁻¹(p̲_A), 0 where it
    abstains. ``p_lower``: (N,) float64, the (1 − α) lower confidence bound p̲_A on the probability
    of c_A (also where it abstains: there it is ≤ ½).
    """

    prediction: Tensor
    radius: Tensor
    p_lower: Tensor


@dataclass(frozen=True)
class SmoothingParams:
    """How ``advgrad certify --method smoothing`` runs CERTIFY: noise level ``sigma`` (σ), ``n0``
    selection samples, ``samples`` estimation samples (N) and the confidence ``alpha`` (α) of
    each certificate. Cohen et al. certify with n0 = 100, N = 100,000, α = 0.001; the default N =
    1,000 keeps a CPU run short at the price of smaller radii (at most σ·Φ⁻¹(α^(1/N)) ≈ 2.46σ)."""

    sigma: float = 0.25
    n0: int = 100
    samples: int = 1000
    alpha: float = 0.001

    def __post_init__(self) -> None:
        check_number(self.sigma, "sigma", above=0)
        check_number(self.n0, "n0", integer=True, minimum=1)
        check_number(self.samples, "samples", integer=True, minimum=1)
        check_number(self.alpha, "alpha", above=0)
        if self.alpha >= 1:
            raise UsageError(f"`alpha` must be < 1, got {self.alpha:g}", params="alpha")
        if self.samples < self.n0:
            raise UsageError(
                f"`samples` must be ≥ `n0`, got samples={self.samples} < n0={self.n0}", params=("samples", "n0")
            )

    def to_dict(self) -> dict[str, float | int]:
        return {"sigma": self.sigma, "n0": self.n0, "samples": self.samples, "alpha": self.alpha}

    def passes_per_sample(self) -> int:
        """Forward passes of the model per certified sample (n0 + N)."""
        return self.n0 + self.samples

    def model_calls(self, count: int, batch_size: int) -> int:
        """How many times :meth:`certify` calls the model for ``count`` samples (for progress)."""
        return _model_calls(count, self.n0, batch_size) + _model_calls(count, self.samples, batch_size)

    def certify(self, model: nn.Module, x: Tensor, *, batch_size: int, generator: torch.Generator) -> SmoothingResult:
        """:func:`smoothed_certify` with these parameters."""
        return smoothed_certify(
            model,
            x,
            sigma=self.sigma,
            n0=self.n0,
            n=self.samples,
            alpha=self.alpha,
            batch_size=batch_size,
            generator=generator,
        )


def smoothed_certify(
    model: nn.Module,
    x: Tensor,
    *,
    sigma: float,
    n0: int = 100,
    n: int = 10_000,
    alpha: float = 0.001,
    batch_size: int = 1000,
    generator: torch.Generator | None = None,
) -> SmoothingResult:
    """CERTIFY (Cohen et al. 2019, Algorithm 1) for every sample of ``x`` at once.

    For each sample: draw ``n0`` copies x + δ, δ ~ N(0, σ²I) (noise not clipped to [0, 1]), and take
    c_A = the class the model returns most often; draw ``n`` new copies and count n_A, how often it
    returns c_A; p̲_A = the one-sided Clopper–Pearson lower bound at level 1 − ``alpha``, i.e. the
    α-quantile of Beta(n_A, n − n_A + 1) (0 when n_A = 0). If p̲_A > ½ the sample gets c_A and the
    L2 radius σ·Φ⁻¹(p̲_A); otherwise it abstains (prediction −1, radius 0). With probability at
    least 1 − α (over the noise) the smoothed classifier returns c_A everywhere in that radius.

    Gradient-free (``torch.no_grad``); the model runs in eval mode and its modes and
    ``requires_grad`` flags are restored afterwards. The device comes from ``x``; the noise comes
    from ``generator`` only (an OS-seeded one when ``None``; the global RNG is never used). The noise
    is drawn one copy of the whole batch at a time, in a fixed order: selection copies first, then
    estimation copies. The results therefore do not depend on ``batch_size``, which only sets how
    many noisy rows (copies × samples) go through the model at once (up to the model's own
    batch-size-dependent rounding). Returns a :class:`SmoothingResult` on the CPU.

    Example::

        gen = generator_for(x.device, seed, batch_index, "smoothing")
        result = smoothed_certify(model, x, sigma=0.25, n0=100, n=10_000, alpha=0.001, generator=gen)
        certified_accuracy(result, y, [0.0, 0.25, 0.5])
    """
    _check_common(sigma=sigma, n=n, alpha=alpha, batch_size=batch_size)
    check_number(n0, "n0", integer=True, minimum=1)
    if n < n0:
        raise UsageError(f"`n` must be ≥ `n0`, got n={n} < n0={n0}", params=("n", "n0"))
    gen = _generator(x, generator)
    selection = _vote_counts(model, x, sigma=sigma, draws=n0, batch_size=batch_size, generator=gen)
    top = selection.argmax(1) if selection.shape[1] else selection.new_zeros(selection.shape[0])
    votes = _vote_counts(model, x, sigma=sigma, draws=n, batch_size=batch_size, generator=gen)
    votes = _pad_classes(votes, selection.shape[1])
    n_top = votes.gather(1, top[:, None])[:, 0] if votes.shape[1] else votes.new_zeros(votes.shape[0])
    p_lower = clopper_pearson_lower(n_top, n, alpha)
    certified = p_lower > 0.5
    radius = torch.where(certified, sigma * torch.special.ndtri(p_lower), torch.zeros_like(p_lower))
    prediction = torch.where(certified, top.cpu(), torch.full_like(top.cpu(), ABSTAIN))
    return SmoothingResult(prediction=prediction, radius=radius, p_lower=p_lower)


def smoothed_predict(
    model: nn.Module,
    x: Tensor,
    *,
    sigma: float,
    n: int = 10_000,
    alpha: float = 0.001,
    batch_size: int = 1000,
    generator: torch.Generator | None = None,
) -> Tensor:
    """PREDICT (Cohen et al. 2019): the smoothed classifier's class for each sample, or −1.

    Draws ``n`` noisy copies as :func:`smoothed_certify` does, takes the two classes with most
    votes n_A ≥ n_B, and returns the top one when the two-sided binomial test of n_A out of
    n_A + n_B against ½ rejects at level ``alpha`` (p-value = min(1, 2·P(X ≥ n_A)), X ~ Bin(n_A + n_B,
    ½)); otherwise it abstains. A returned class differs from g(x) with probability at most α.
    Returns (N,) int64 on the CPU.
    """
    _check_common(sigma=sigma, n=n, alpha=alpha, batch_size=batch_size)
    gen = _generator(x, generator)
    votes = _pad_classes(_vote_counts(model, x, sigma=sigma, draws=n, batch_size=batch_size, generator=gen), 2)
    best = votes.topk(2, dim=1)
    n_a, n_b = best.values[:, 0], best.values[:, 1]
    p_value = binomial_test_half(n_a, n_a + n_b)
    return torch.where(p_value <= alpha, best.indices[:, 0], torch.full_like(n_a, ABSTAIN))


def certified_accuracy(result: SmoothingResult, y: Tensor, radii: Sequence[float]) -> list[int]:
    """For each L2 radius r in ``radii``: how many samples the smoothed classifier classifies as
    ``y`` with a certified radius ≥ r. Abstentions never count (not even at r = 0)."""
    for r in radii:
        check_number(r, "radii", minimum=0)
    y = y.detach().cpu().reshape(-1)
    if y.shape != result.prediction.shape:
        raise UsageError(f"`y` has {y.numel()} labels for {result.prediction.numel()} certified samples", params="y")
    correct = (result.prediction != ABSTAIN) & (result.prediction == y.to(result.prediction.dtype))
    return [int((correct & (result.radius >= r)).sum()) for r in radii]


# -- noisy votes --------------------------------------------------------------------------------


def _check_common(*, sigma: float, n: int, alpha: float, batch_size: int) -> None:
    check_number(sigma, "sigma", above=0)
    check_number(n, "n", integer=True, minimum=1)
    check_number(alpha, "alpha", above=0)
    if alpha >= 1:
        raise UsageError(f"`alpha` must be < 1, got {alpha:g}", params="alpha")
    check_number(batch_size, "batch_size", integer=True, minimum=1)


def _generator(x: Tensor, generator: torch.Generator | None) -> torch.Generator:
    if not isinstance(x, Tensor) or not x.is_floating_point() or x.dim() < 1:
        raise UsageError("`x` must be a floating-point tensor with the samples along its first dimension", params="x")
    if generator is not None:
        return generator
    gen = torch.Generator(device=x.device)
    gen.seed()  # from the OS: a call without a generator never touches the global RNG
    return gen


def _pad_classes(counts: Tensor, classes: int) -> Tensor:
    """``counts`` (N, C) widened with zero columns to at least ``classes`` columns."""
    if counts.shape[1] >= classes:
        return counts
    return torch.cat([counts, counts.new_zeros(counts.shape[0], classes - counts.shape[1])], dim=1)


def _vote_counts(
    model: nn.Module, x: Tensor, *, sigma: float, draws: int, batch_size: int, generator: torch.Generator
) -> Tensor:
    """(N, C) int64 on the CPU: how often the model returns each class on ``draws`` copies of each
    sample with N(0, σ²I) noise.

    Copy j of the whole batch is one ``randn`` of x's shape, drawn in order j = 0, 1, ...; a chunk
    stacks ⌊batch_size / N⌋ copies (at least one) and the model sees at most ``batch_size`` rows
    per call, so neither the noise nor the counts depend on ``batch_size``.
    """
    count = x.shape[0]
    counts = torch.zeros(count, 0, dtype=torch.int64, device=x.device)
    if count == 0:
        return counts.cpu()
    x = x.detach()
    copies_per_chunk = max(1, batch_size // count)
    owner = torch.arange(count, device=x.device).repeat(copies_per_chunk)
    with frozen(model), torch.no_grad():
        for start in range(0, draws, copies_per_chunk):
            copies = min(copies_per_chunk, draws - start)
            noise = torch.stack([_gaussian(x, generator) for _ in range(copies)])
            rows = (x.unsqueeze(0) + sigma * noise).reshape(copies * count, *x.shape[1:])
            for first in range(0, rows.shape[0], batch_size):
                part = rows[first : first + batch_size]
                votes = _votes(model, part)
                counts = _add_votes(counts, owner[first : first + part.shape[0]], votes)
    return counts.cpu()


def _model_calls(count: int, draws: int, batch_size: int) -> int:
    """The model calls :func:`_vote_counts` makes for ``count`` samples and ``draws`` copies."""
    if count == 0:
        return 0
    per_chunk = max(1, batch_size // count)
    full, rest = divmod(draws, per_chunk)
    return full * -(-per_chunk * count // batch_size) + (-(-rest * count // batch_size) if rest else 0)


def _gaussian(x: Tensor, generator: torch.Generator) -> Tensor:
    """N(0, I) of x's shape and dtype, drawn on the generator's device and moved to x's."""
    noise = torch.randn(x.shape, generator=generator, device=generator.device, dtype=x.dtype)
    return noise.to(x.device)


def _votes(model: nn.Module, rows: Tensor) -> Tensor:
    """The class the model returns for each row, or −1 where its logits are not all finite."""
    logits = model(rows)
    if not isinstance(logits, Tensor) or logits.dim() != 2 or logits.shape[0] != rows.shape[0]:
        shape = tuple(logits.shape) if isinstance(logits, Tensor) else type(logits).__name__
        raise ModelError(
            f"smoothing needs the model to return (batch, classes) logits; for {rows.shape[0]} inputs it returned {shape}"
        )
    finite = torch.isfinite(logits).all(dim=1)
    return torch.where(finite, logits.argmax(dim=1), torch.full_like(finite, ABSTAIN, dtype=torch.int64))


def _add_votes(counts: Tensor, owner: Tensor, votes: Tensor) -> Tensor:
    """``counts`` (N, C) plus one vote per row for class ``votes`` of sample ``owner`` (−1: none)."""
    classes = max(counts.shape[1], int(votes.max()) + 1 if votes.numel() else 0)
    counts = _pad_classes(counts, classes)
    valid = votes >= 0
    flat = (owner * classes + votes)[valid]
    counts.view(-1).index_add_(0, flat, torch.ones_like(flat))
    return counts


# -- binomial statistics (float64 on the CPU; scipy is not needed) ------------------------------


def clopper_pearson_lower(successes: Tensor, trials: int, alpha: float) -> Tensor:
    """The one-sided (1 − α) Clopper–Pearson lower confidence bound on a binomial proportion.

    For k successes in n trials it is the α-quantile of Beta(k, n − k + 1) (scipy:
    ``beta.ppf(alpha, k, n - k + 1)``): the p at which P(X ≥ k) = α for X ~ Bin(n, p). It is 0 for
    k = 0 and α^(1/n) for k = n. Solved by safeguarded Newton iteration on the regularized
    incomplete beta function, then nudged down to a point where the computed I_p(k, n − k + 1) ≤ α;
    it agrees with scipy to about 1e-12 relative for n ≤ 10⁴ (2e-10 for n = 10⁵, the precision of
    ``lgamma`` there), far below the statistical slack of the bound. Returns float64 on the CPU, shaped like
    ``successes``.
    """
    k = successes.detach().to("cpu", torch.float64)
    n = float(trials)
    if bool(((k < 0) | (k > n)).any()):
        raise UsageError(f"`successes` must lie in [0, {trials}]", params="successes")
    result = torch.zeros_like(k)
    result = torch.where(k == n, torch.full_like(k, alpha ** (1.0 / n)), result)
    inner = (k > 0) & (k < n)
    if bool(inner.any()):
        values, where = torch.unique(k[inner], return_inverse=True)  # many samples share a count
        result[inner] = _beta_quantile(values, n - values + 1.0, alpha)[where]
    return result


def binomial_test_half(successes: Tensor, trials: Tensor) -> Tensor:
    """The two-sided binomial test's p-value for k ≥ m/2 successes out of m trials against p = ½:
    min(1, 2·P(X ≥ k)), X ~ Bin(m, ½), with P(X ≥ k) = I_½(k, m − k + 1). float64 on the CPU."""
    k = successes.detach().to("cpu", torch.float64)
    m = trials.detach().to("cpu", torch.float64)
    tail = torch.ones_like(k)
    some = k > 0
    if bool(some.any()):
        tail[some] = _betainc(k[some], m[some] - k[some] + 1.0, torch.full_like(k[some], 0.5))
    return torch.clamp(2.0 * tail, max=1.0)


_TINY = 1e-300
_CF_EPS = 4e-16  # two units in the last place of 1.0


def _log_beta(a: Tensor, b: Tensor) -> Tensor:
    return torch.lgamma(a) + torch.lgamma(b) - torch.lgamma(a + b)


def _betainc(a: Tensor, b: Tensor, x: Tensor) -> Tensor:
    """The regularized incomplete beta function I_x(a, b) for a, b > 0 and 0 < x < 1, elementwise.

    Uses the continued fraction for I_x(a, b) where x < (a + 1)/(a + b + 2), where it converges
    fast, and I_x(a, b) = 1 − I_{1−x}(b, a) elsewhere (modified Lentz evaluation).
    """
    swap = x > (a + 1.0) / (a + b + 2.0)
    aa, bb = torch.where(swap, b, a), torch.where(swap, a, b)
    xx = torch.where(swap, 1.0 - x, x)
    log_front = aa * torch.log(xx) + bb * torch.log1p(-xx) - _log_beta(aa, bb) - torch.log(aa)
    part = torch.exp(log_front) * _beta_fraction(aa, bb, xx)
    return torch.where(swap, 1.0 - part, part)


def _beta_fraction(a: Tensor, b: Tensor, x: Tensor) -> Tensor:
    """The continued fraction of the incomplete beta function (modified Lentz), elementwise."""

    def guarded(v: Tensor) -> Tensor:
        return torch.where(v.abs() < _TINY, torch.full_like(v, _TINY), v)

    c = torch.ones_like(x)
    d = 1.0 / guarded(1.0 - (a + b) * x / (a + 1.0))
    h = d.clone()
    limit = 100 + 20 * int(math.isqrt(int(max(a.max().item(), b.max().item())) + 1))
    for m in range(1, limit + 1):
        even = m * (b - m) * x / ((a + 2 * m - 1.0) * (a + 2 * m))
        d = 1.0 / guarded(1.0 + even * d)
        c = guarded(1.0 + even / c)
        h = h * d * c
        odd = -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1.0))
        d = 1.0 / guarded(1.0 + odd * d)
        c = guarded(1.0 + odd / c)
        step = d * c
        h = h * step
        if bool(((step - 1.0).abs() <= _CF_EPS).all()):
            return h
    return h


def _beta_quantile(a: Tensor, b: Tensor, q: float) -> Tensor:
    """The q-quantile of Beta(a, b) elementwise (a, b ≥ 1), taken just below the computed root.

    Safeguarded Newton: each element keeps a bracket [lo, hi] with I_lo ≤ q < I_hi and takes the
    Newton step when it stays inside, the bisection step otherwise; only unfinished elements are
    evaluated again.
    """
    lo = torch.zeros_like(a)
    hi = torch.ones_like(a)
    log_norm = _log_beta(a, b)
    # Start from the normal approximation to the Beta distribution, kept inside (0, 1).
    mean = a / (a + b)
    sd = torch.sqrt(a * b / ((a + b) ** 2 * (a + b + 1.0)))
    z = torch.special.ndtri(torch.tensor(q, dtype=torch.float64))
    x = torch.clamp(mean + z * sd, mean * 1e-3, 1.0 - (1.0 - mean) * 1e-3)
    active = torch.arange(a.shape[0])
    for _ in range(300):
        aa, bb, xx = a[active], b[active], x[active]
        f = _betainc(aa, bb, xx) - q
        low, high = torch.where(f <= 0, xx, lo[active]), torch.where(f > 0, xx, hi[active])
        lo[active], hi[active] = low, high
        density = torch.exp((aa - 1.0) * torch.log(xx) + (bb - 1.0) * torch.log1p(-xx) - log_norm[active])
        newton = xx - f / density
        # A Newton step this small means x is the root to the precision I_x(a, b) is computed in.
        done = ((newton - xx).abs() <= 1e-13 * xx) | (high - low <= 1e-15 * high)
        inside = torch.isfinite(newton) & (newton > low) & (newton < high)
        x[active] = torch.where(done, xx, torch.where(inside, newton, 0.5 * (low + high)))
        active = active[~done]
        if active.numel() == 0:
            break
    # Conservative: the first of a few points just below the root where I_x(a, b) ≤ q.
    for shrink in (1e-13, 1e-11, 1e-9, 1e-7):
        candidate = x * (1.0 - shrink)
        below = (_betainc(a, b, candidate) <= q) & (candidate > lo)
        lo = torch.where(below, candidate, lo)
        if bool((lo >= candidate).all()):
            break
    return lo
