"""Invariants every registered attack must keep, checked with hypothesis over random inputs.

The tests enumerate the registry, so a newly registered attack is checked without a new test:
inside the ε-ball and the box (a minimal attack: inside the box, and the norm it reports is the
real one), shape and dtype kept, model mode and ``requires_grad`` restored, no weight gradients
left behind, the global RNGs untouched, and the same result twice with the same seed.
"""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from advgrad.attacks import find_minimal, list_attacks, run_attack
from advgrad.core.threat import ThreatModel

ATTACKS = list_attacks()
CLASSES = 5  # targeted DLR needs at least 4
# The smallest budgets that still run every code path (restarts and several targets included).
FAST = {
    "steps": 3,
    "queries": 12,
    "survivor_queries": 6,
    "binary_steps": 2,
    "target_classes": 2,
    "restarts": 2,
    "eot": 2,
}


class Tiny(nn.Module):
    """A small conv net with dropout and batch norm, so that train and eval mode differ."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 4, 3, padding=1)
        self.norm = nn.BatchNorm2d(4)
        self.drop = nn.Dropout(0.5)
        self.head = nn.Linear(4 * 4 * 4, CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.drop(torch.relu(self.norm(self.conv(x))))
        return self.head(h.flatten(1))


def _model(dtype: torch.dtype) -> Tiny:
    torch.manual_seed(0)  # the test's own model weights; the RNG check starts after this
    model = Tiny().to(dtype)
    with torch.no_grad():
        model.head.weight.mul_(4)
    model.train()
    model.norm.eval()  # a mix of modes must come back as it was
    model.conv.bias.requires_grad_(False)  # and so must a mix of requires_grad
    return model


def _eps(norm: str, scale: float) -> float:
    return scale * {"inf": 0.3, "2": 2.0, "1": 6.0}[norm]


def _run_twice_and_check(spec, dtype, norm, eps, seed, targeted) -> None:
    model = _model(dtype)
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(6, 2, 4, 4, generator=gen).to(dtype)
    x[0] = 0.0  # samples on the edges of the box
    x[1] = 1.0
    y = torch.randint(0, CLASSES, (6,), generator=gen)
    target = (y + 1 + torch.randint(0, CLASSES - 1, (6,), generator=gen)) % CLASSES if targeted else None
    threat = ThreatModel(norm, eps)
    params = spec.make_params(**FAST)
    modes = [m.training for m in model.modules()]
    flags = [p.requires_grad for p in model.parameters()]
    state = torch.get_rng_state(), random.getstate(), np.random.get_state()[1].copy()

    results = []
    for _ in range(2):
        out = spec.function(
            model,
            x,
            y,
            threat=threat,
            params=params.resolve(threat),
            target=target,
            generator=torch.Generator().manual_seed(1234),
        )
        results.append(out)
    out = results[0]
    assert torch.equal(results[0], results[1]), "same seed, different result"
    assert out.shape == x.shape and out.dtype == x.dtype
    assert bool(torch.isfinite(out).all())
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    if spec.kind != "minimal":
        assert bool(threat.contains(out, x).all()), "outside the ε-ball"
    clipped = run_attack(
        spec, model, x, y, threat=threat, params=params, target=target, generator=torch.Generator().manual_seed(1234)
    )
    assert bool(threat.contains(clipped, x).all())
    if spec.kind != "minimal":
        assert torch.allclose(clipped, out, rtol=0, atol=1e-5)  # run_attack's clip had nothing (but rounding) to do

    assert [m.training for m in model.modules()] == modes
    assert [p.requires_grad for p in model.parameters()] == flags
    assert all(p.grad is None for p in model.parameters())
    assert torch.equal(torch.get_rng_state(), state[0])
    assert random.getstate() == state[1]
    assert np.array_equal(np.random.get_state()[1], state[2])


@pytest.mark.parametrize("spec", ATTACKS, ids=[s.name for s in ATTACKS])
@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=st.data(),
    scale=st.floats(0.05, 1.0),
    seed=st.integers(0, 2**31 - 1),
    targeted=st.booleans(),
    double=st.booleans(),
)
def test_invariants(spec, data, scale: float, seed: int, targeted: bool, double: bool) -> None:
    norm = data.draw(st.sampled_from(spec.norms), label="norm")
    dtype = torch.float64 if double else torch.float32
    _run_twice_and_check(spec, dtype, norm, _eps(norm, scale), seed, targeted)


@pytest.mark.parametrize("spec", [s for s in ATTACKS if s.kind == "minimal"], ids=lambda s: s.name)
@settings(max_examples=5, deadline=None)
@given(data=st.data(), seed=st.integers(0, 2**31 - 1))
def test_minimal_attacks_report_the_real_norm(spec, data, seed: int) -> None:
    norm = data.draw(st.sampled_from(spec.norms), label="norm")
    model = _model(torch.float32).eval()
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(8, 2, 4, 4, generator=gen)
    with torch.no_grad():
        y = model(x).argmax(1)
    result = find_minimal(spec, model, x, y, norm=norm, params=spec.make_params(**FAST))
    delta = (result.x_adv - x).flatten(1).double()
    real = {"2": delta.norm(dim=1), "inf": delta.abs().amax(dim=1), "1": delta.abs().sum(dim=1)}[norm]
    assert torch.allclose(result.norm.double(), real, rtol=1e-6, atol=1e-7)
    with torch.no_grad():
        assert torch.equal(result.fooled, model(result.x_adv).argmax(1) != y)
    assert float(result.x_adv.min()) >= 0 and float(result.x_adv.max()) <= 1


def test_registry_is_complete_and_described() -> None:
    names = {s.name for s in ATTACKS}
    required = {"fgsm", "bim", "mifgsm", "pgd", "apgd-ce", "apgd-dlr", "apgd-t", "cw", "deepfool", "square", "strong"}
    assert required <= names
    for spec in ATTACKS:
        doc = spec.function.__doc__ or ""
        assert ">>>" in doc, f"{spec.name}: the docstring needs a short example"
        assert "Threat model" in doc, f"{spec.name}: the docstring needs the threat model"
        assert spec.reference and spec.summary
        for row in spec.params_type.describe():
            assert row["help"], f"{spec.name}.{row['name']} has no help text"


def test_empty_batch() -> None:
    model = _model(torch.float32)
    x = torch.rand(0, 2, 4, 4)
    y = torch.zeros(0, dtype=torch.long)
    for spec in ATTACKS:
        threat = ThreatModel(spec.norms[0], 0.1)
        out = run_attack(spec, model, x, y, threat=threat, params=spec.make_params(**FAST))
        assert out.shape == x.shape
