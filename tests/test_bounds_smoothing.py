"""Randomized smoothing (advgrad/bounds/smoothing.py): on a linear classifier the smoothed
classifier is known in closed form, p_A = Φ(|w·x + b| / (σ‖w‖)), and its exact certified radius is
the distance to the hyperplane; the Clopper–Pearson bound is checked against scipy."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor, nn

from advgrad.bounds.smoothing import (
    SmoothingResult,
    binomial_test_half,
    certified_accuracy,
    clopper_pearson_lower,
    smoothed_certify,
    smoothed_predict,
)
from advgrad.core.errors import ModelError, UsageError

stats = pytest.importorskip("scipy.stats")

DIM = 5
SIGMA = 0.5


def linear_classifier(w: Tensor, b: float) -> nn.Module:
    """Two logits (0, w·x + b): class 1 exactly where w·x + b > 0."""
    layer = nn.Linear(w.numel(), 2).double()
    with torch.no_grad():
        layer.weight.copy_(torch.stack([torch.zeros_like(w), w]))
        layer.bias.copy_(torch.tensor([0.0, b], dtype=torch.float64))
    return layer


def points_at(w: Tensor, b: float, distances: list[float]) -> Tensor:
    """Points at signed L2 distance d from the hyperplane w·x + b = 0 (positive side: class 1)."""
    gen = torch.Generator().manual_seed(1)
    base = torch.randn(len(distances), w.numel(), generator=gen, dtype=torch.float64)
    unit = w / w.norm()
    on_plane = base - ((base @ w + b) / w.norm())[:, None] * unit  # projected onto the plane
    return on_plane + torch.tensor(distances, dtype=torch.float64)[:, None] * unit


@pytest.fixture
def linear() -> tuple[nn.Module, Tensor, float]:
    w = torch.tensor([1.0, -2.0, 0.5, 0.0, 3.0], dtype=torch.float64)
    b = 0.3
    return linear_classifier(w, b), w, b


def seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def cp_lower(k: int, n: int, alpha: float) -> float:
    return 0.0 if k == 0 else float(stats.beta.ppf(alpha, k, n - k + 1))


def test_radius_matches_the_closed_form_within_the_clopper_pearson_slack(linear) -> None:
    model, w, b = linear
    distances = [0.3, 0.6, -0.45, 1.0, -0.2]
    x = points_at(w, b, distances)
    n, alpha = 4000, 0.001
    result = smoothed_certify(model, x, sigma=SIGMA, n0=100, n=n, alpha=alpha, generator=seeded())
    for i, d in enumerate(distances):
        p_a = stats.norm.cdf(abs(d) / SIGMA)  # the smoothed classifier's true top-class probability
        assert result.prediction[i] == (1 if d > 0 else 0)
        # n_A ~ Bin(n, p_A): the count lies in its central 1 − 2e-7 range, so p̲_A and the radius
        # lie between the Clopper–Pearson bounds of the range's ends.
        k_low, k_high = stats.binom.ppf(1e-7, n, p_a), stats.binom.isf(1e-7, n, p_a)
        p_low, p_high = cp_lower(int(k_low), n, alpha), cp_lower(int(k_high), n, alpha)
        assert p_low <= result.p_lower[i] <= p_high
        assert SIGMA * stats.norm.ppf(p_low) <= result.radius[i] <= SIGMA * stats.norm.ppf(p_high)
        # The bound is below the truth (with probability 1 − α each; the seed is fixed).
        assert result.p_lower[i] < p_a
        assert result.radius[i] < abs(d)  # the exact radius: the distance to the hyperplane
        assert result.radius[i] == pytest.approx(SIGMA * stats.norm.ppf(float(result.p_lower[i])), rel=1e-12)


def test_unanimous_votes_give_the_exact_bound_alpha_to_the_one_over_n(linear) -> None:
    model, w, b = linear
    x = points_at(w, b, [20 * SIGMA, -20 * SIGMA])  # p_A = Φ(20): every copy votes the same way
    n, alpha = 500, 0.01
    result = smoothed_certify(model, x, sigma=SIGMA, n0=10, n=n, alpha=alpha, generator=seeded())
    p = alpha ** (1 / n)
    assert result.prediction.tolist() == [1, 0]
    assert torch.allclose(result.p_lower, torch.full((2,), p, dtype=torch.float64), rtol=0, atol=1e-15)
    expected = SIGMA * stats.norm.ppf(p)
    assert torch.allclose(result.radius, torch.full((2,), expected, dtype=torch.float64), rtol=1e-12)


def test_points_on_the_decision_boundary_abstain(linear) -> None:
    model, w, b = linear
    x = points_at(w, b, [0.0] * 6)  # p_A = ½ exactly
    result = smoothed_certify(model, x, sigma=SIGMA, n0=50, n=2000, alpha=0.001, generator=seeded())
    assert result.prediction.tolist() == [-1] * 6
    assert result.radius.tolist() == [0.0] * 6
    assert (result.p_lower <= 0.5).all()
    assert (result.p_lower > 0.4).all()  # about 1000 votes of 2000, not zero


def test_a_fixed_seed_gives_identical_results_and_batch_size_does_not_matter(linear) -> None:
    model, w, b = linear
    x = points_at(w, b, [0.1, 0.25, -0.3])
    runs = [
        smoothed_certify(model, x, sigma=SIGMA, n0=20, n=300, batch_size=size, generator=seeded(7))
        for size in (1, 7, 1000, 1000)
    ]
    for other in runs[1:]:
        assert torch.equal(other.prediction, runs[0].prediction)
        assert torch.equal(other.p_lower, runs[0].p_lower)
        assert torch.equal(other.radius, runs[0].radius)
    another = smoothed_certify(model, x, sigma=SIGMA, n0=20, n=300, generator=seeded(8))
    assert not torch.equal(another.p_lower, runs[0].p_lower)


class Counting(nn.Module):
    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.rows: list[int] = []

    def forward(self, x: Tensor) -> Tensor:
        assert not torch.is_grad_enabled()
        self.rows.append(x.shape[0])
        return self.model(x)


def test_noise_is_batched_over_draws_and_samples(linear) -> None:
    model, w, b = linear
    counting = Counting(model)
    x = points_at(w, b, [0.5, -0.5, 1.0, 0.2])
    smoothed_certify(counting, x, sigma=SIGMA, n0=100, n=1000, batch_size=400, generator=seeded())
    # 100 copies of 4 samples per call: one call selects, ten estimate.
    assert counting.rows == [400] * 11
    counting.rows.clear()
    smoothed_certify(counting, x, sigma=SIGMA, n0=3, n=5, batch_size=2, generator=seeded())
    assert max(counting.rows) <= 2 and sum(counting.rows) == 4 * (3 + 5)


def test_model_modes_and_flags_are_restored_and_the_global_rng_untouched(linear) -> None:
    model, w, b = linear
    model.train()
    state = torch.get_rng_state()
    smoothed_certify(model, points_at(w, b, [0.5]), sigma=SIGMA, n0=5, n=20)  # no generator: OS-seeded
    assert model.training
    assert all(p.requires_grad for p in model.parameters())
    assert torch.equal(torch.get_rng_state(), state)


@pytest.mark.parametrize(
    "kwargs,param",
    [
        ({"sigma": 0.0}, "sigma"),
        ({"sigma": -0.25}, "sigma"),
        ({"sigma": math.nan}, "sigma"),
        ({"sigma": math.inf}, "sigma"),
        ({"n0": 0}, "n0"),
        ({"n0": 2.5}, "n0"),
        ({"n": 50, "n0": 100}, "n"),
        ({"n": 0}, "n"),
        ({"alpha": 0.0}, "alpha"),
        ({"alpha": 1.0}, "alpha"),
        ({"alpha": -0.1}, "alpha"),
        ({"batch_size": 0}, "batch_size"),
    ],
)
def test_bad_inputs_raise_a_usage_error_naming_the_parameter(linear, kwargs: dict, param: str) -> None:
    model, w, b = linear
    args = {"sigma": SIGMA, "n0": 10, "n": 100, "alpha": 0.001, **kwargs}
    with pytest.raises(UsageError) as info:
        smoothed_certify(model, points_at(w, b, [0.5]), **args)
    assert info.value.param == param
    assert f"`{param}`" in str(info.value)


def test_the_sigma_message_reads_as_the_library_writes_it(linear) -> None:
    model, w, b = linear
    with pytest.raises(UsageError, match=r"^`sigma` must be > 0, got 0$"):
        smoothed_certify(model, points_at(w, b, [0.5]), sigma=0)


def test_a_model_with_non_finite_logits_votes_for_nothing_and_every_sample_abstains() -> None:
    class Broken(nn.Module):
        def forward(self, x: Tensor) -> Tensor:
            return torch.full((x.shape[0], 3), math.nan)

    result = smoothed_certify(Broken(), torch.zeros(2, 4), sigma=SIGMA, n0=5, n=50, generator=seeded())
    assert result.prediction.tolist() == [-1, -1]
    assert result.p_lower.tolist() == [0.0, 0.0]


def test_a_model_without_batch_by_class_logits_is_a_model_error() -> None:
    class Flat(nn.Module):
        def forward(self, x: Tensor) -> Tensor:
            return x.sum(dim=1)

    with pytest.raises(ModelError, match="logits"):
        smoothed_certify(Flat(), torch.zeros(2, 4), sigma=SIGMA, n0=5, n=50)


def test_an_empty_batch_gives_an_empty_result(linear) -> None:
    model, _, _ = linear
    result = smoothed_certify(model, torch.zeros(0, DIM, dtype=torch.float64), sigma=SIGMA, n0=5, n=50)
    assert result.prediction.shape == result.radius.shape == result.p_lower.shape == (0,)


def test_certified_accuracy_counts_correct_certified_samples_per_radius() -> None:
    result = SmoothingResult(
        prediction=torch.tensor([1, 0, -1, 2, 1, 0]),
        radius=torch.tensor([0.5, 0.25, 0.0, 1.0, 0.75, 0.1], dtype=torch.float64),
        p_lower=torch.tensor([0.9, 0.7, 0.4, 0.98, 0.93, 0.6], dtype=torch.float64),
    )
    y = torch.tensor([1, 0, 2, 1, 1, 0])  # sample 2 abstains, sample 3 is certified but wrong
    assert certified_accuracy(result, y, [0.0, 0.1, 0.25, 0.5, 0.75, 1.0]) == [4, 4, 3, 2, 1, 0]
    y_abstained = torch.full((6,), -1)  # an abstention never counts, even against a label of -1
    assert certified_accuracy(result, y_abstained, [0.0]) == [0]
    with pytest.raises(UsageError, match="`radii`"):
        certified_accuracy(result, y, [-0.1])
    with pytest.raises(UsageError, match="`y`"):
        certified_accuracy(result, y[:3], [0.0])


def test_certified_accuracy_of_a_run_is_at_most_its_clean_accuracy(linear) -> None:
    model, w, b = linear
    distances = [0.8, -0.6, 0.05, -0.02, 1.2]
    x = points_at(w, b, distances)
    y = torch.tensor([1, 0, 1, 0, 1])
    result = smoothed_certify(model, x, sigma=SIGMA, n0=50, n=1000, generator=seeded())
    counts = certified_accuracy(result, y, [0.0, 0.2, 0.5, 10.0])
    assert counts == sorted(counts, reverse=True)
    assert counts[0] <= 5 and counts[-1] == 0
    assert counts[1] >= 3  # the three far points are certified beyond 0.2 (exact radii 0.8, 0.6, 1.2)


@pytest.mark.parametrize("n", [1, 2, 10, 100, 1000, pytest.param(10_000, marks=pytest.mark.slow)])
@pytest.mark.parametrize("alpha", [1e-6, 0.001, 0.05, 0.5])
def test_the_clopper_pearson_bound_matches_scipy(n: int, alpha: float) -> None:
    ks = torch.unique(torch.cat([torch.arange(min(n, 12) + 1), torch.linspace(0, n, 40).round().long()]))
    ks = torch.unique(torch.cat([ks, n - ks]))
    got = clopper_pearson_lower(ks, n, alpha)
    expected = torch.tensor([cp_lower(int(k), n, alpha) for k in ks], dtype=torch.float64)
    assert torch.allclose(got, expected, rtol=1e-10, atol=0)
    assert got[0] == 0.0 and got[-1] == pytest.approx(alpha ** (1 / n), rel=1e-15)


def test_the_binomial_test_matches_scipy() -> None:
    cases = [(5, 10), (6, 10), (10, 10), (60, 100), (65, 100), (520, 1000), (560, 1000), (1, 1), (0, 0)]
    k = torch.tensor([c[0] for c in cases])
    m = torch.tensor([c[1] for c in cases])
    got = binomial_test_half(k, m)
    for (kk, mm), value in zip(cases, got.tolist(), strict=True):
        expected = 1.0 if mm == 0 else stats.binomtest(kk, mm, 0.5).pvalue
        assert value == pytest.approx(expected, rel=1e-10)


def test_predict_returns_the_side_of_the_hyperplane_or_abstains_on_it(linear) -> None:
    model, w, b = linear
    x = points_at(w, b, [0.5, -0.5, 0.0, 0.0])
    prediction = smoothed_predict(model, x, sigma=SIGMA, n=2000, alpha=0.001, generator=seeded())
    assert prediction.tolist() == [1, 0, -1, -1]
    again = smoothed_predict(model, x, sigma=SIGMA, n=2000, alpha=0.001, batch_size=3, generator=seeded())
    assert torch.equal(prediction, again)
