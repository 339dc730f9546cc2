"""Invariants every registered attack keeps, checked with hypothesis over random inputs.

The attacks are enumerated from the registry, so an attack added later is covered without
touching this file. For each attack and each norm it supports: the result lies in the ε-ball
(norm computed here, independently of advgrad.core.threat) and in [0, 1]; shape and dtype are kept;
the model's modes (module by module), its parameters' ``requires_grad``, its buffers and the
global RNG are unchanged; no weight gradient is left behind; the input is not modified; and the
same explicit generator seed gives the same result.
"""

from __future__ import annotations

import pytest
import torch
from helpers import assert_inside, tiny_net
from hypothesis import given, settings
from hypothesis import strategies as st

from advgrad.attacks import list_attacks, run_attack
from advgrad.core.errors import UsageError
from advgrad.core.threat import NORMS, ThreatModel

SUPPORTED = [(spec.name, norm) for spec in list_attacks() for norm in NORMS if norm in spec.norms]
UNSUPPORTED = [(spec.name, norm) for spec in list_attacks() for norm in NORMS if norm not in spec.norms]
MAX_EPS = {"inf": 0.5, "2": 2.0, "1": 6.0}
CLASSES = 4


def test_the_registry_is_not_empty():
    names = [spec.name for spec in list_attacks()]
    assert {"fgsm", "pgd"} <= set(names)
    assert names == sorted(names)


@st.composite
def cases(draw, norm: str):
    n = draw(st.integers(1, 4))
    channels = draw(st.integers(1, 2))
    height, width = draw(st.integers(2, 5)), draw(st.integers(2, 5))
    dtype = draw(st.sampled_from([torch.float32, torch.float64]))
    gen = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    x = torch.rand(n, channels, height, width, generator=gen, dtype=dtype)
    edges = torch.rand(x.shape, generator=gen) < draw(st.sampled_from([0.0, 0.3]))
    x[edges] = (torch.rand(x.shape, generator=gen, dtype=dtype)[edges] > 0.5).to(dtype)  # exact 0s and 1s
    eps = draw(st.one_of(st.just(0.0), st.floats(1e-4, MAX_EPS[norm])))
    y = torch.randint(0, CLASSES, (n,), generator=gen)
    target = (y + torch.randint(1, CLASSES, (n,), generator=gen)) % CLASSES if draw(st.booleans()) else None
    options = {
        "steps": draw(st.integers(1, 4)),
        "restarts": draw(st.integers(1, 2)),
        "random_start": draw(st.booleans()),
        "loss": draw(st.sampled_from(["ce", "margin", "dlr"])),
        "step_size": draw(st.one_of(st.none(), st.floats(0.0, 2 * max(eps, 1e-3)))),
        # budgets of the slower attacks, kept small: these tests check invariants, not strength
        "queries": draw(st.integers(1, 30)),
        "survivor_queries": draw(st.integers(1, 30)),
        "target_classes": draw(st.integers(1, 2)),
        "binary_steps": draw(st.integers(1, 3)),
        "eot": draw(st.integers(1, 2)),
    }
    return {
        "x": x,
        "y": y,
        "eps": eps,
        "target": target,
        "options": options,
        "early_stop": draw(st.booleans()),
        "model_seed": draw(st.integers(0, 50)),
        "x_requires_grad": draw(st.booleans()),
    }


def _mixed_model(seed: int, channels: int, dtype: torch.dtype):
    """Train mode overall with one submodule in eval mode; some parameters frozen, some not."""
    model = tiny_net(seed=seed, channels=channels, classes=CLASSES, dtype=dtype)
    model.train()
    model.head.eval()
    model.conv.weight.requires_grad_(False)
    model.bn.bias.requires_grad_(False)
    return model


def _snapshot(model):
    return (
        {name: m.training for name, m in model.named_modules()},
        {name: p.requires_grad for name, p in model.named_parameters()},
        {k: v.clone() for k, v in model.state_dict().items()},
    )


def _check_invariants(spec, norm, case, call):
    x, y, eps = case["x"], case["y"], case["eps"]
    model = _mixed_model(case["model_seed"], x.shape[1], x.dtype)
    modes, flags, state = _snapshot(model)
    x_in = x.clone().requires_grad_(case["x_requires_grad"])
    x_before = x.clone()
    params = spec.make_params(**case["options"])
    threat = ThreatModel(norm, eps)

    def attack(generator):
        return call(
            spec,
            model,
            x_in,
            y,
            threat=threat,
            params=params,
            target=case["target"],
            generator=generator,
            early_stop=case["early_stop"],
        )

    rng = torch.get_rng_state()
    first = attack(torch.Generator().manual_seed(123))
    second = attack(torch.Generator().manual_seed(123))
    unseeded = attack(None)
    assert torch.equal(torch.get_rng_state(), rng), "the global RNG was used"

    for result in (first, unseeded):
        assert result.shape == x.shape and result.dtype == x.dtype
        assert not result.requires_grad
        assert torch.isfinite(result).all()
        assert_inside(result, x_before, eps, norm)
    assert torch.equal(first, second), "same generator seed, different result"

    after_modes, after_flags, after_state = _snapshot(model)
    assert after_modes == modes
    assert after_flags == flags
    assert all(torch.equal(after_state[k], v) for k, v in state.items()), "parameters or buffers changed"
    assert all(p.grad is None for p in model.parameters()), "a weight gradient was computed"
    assert torch.equal(x_in.detach(), x_before) and x_in.grad is None


def _through_run_attack(spec, model, x, y, **kwargs):
    return run_attack(spec, model, x, y, **kwargs)


def _direct(spec, model, x, y, **kwargs):
    """The attack function itself, without run_attack's final clip: it must keep the budget too."""
    return spec.function(model, x, y, **kwargs)


@pytest.mark.parametrize("name, norm", SUPPORTED)
@settings(max_examples=25)
@given(data=st.data())
def test_run_attack_invariants(name, norm, data):
    from advgrad.attacks import get_attack

    case = data.draw(cases(norm))
    _check_invariants(get_attack(name), norm, case, _through_run_attack)


@pytest.mark.parametrize("name, norm", SUPPORTED)
@settings(max_examples=25)
@given(data=st.data())
def test_attack_function_invariants(name, norm, data):
    from advgrad.attacks import get_attack

    case = data.draw(cases(norm))
    case["eps"] = max(case["eps"], 1e-3)  # run_attack answers ε = 0 itself; the function need not
    _check_invariants(get_attack(name), norm, case, _direct)


@pytest.mark.parametrize("name, norm", UNSUPPORTED)
def test_unsupported_norms_are_refused(name, norm):
    from advgrad.attacks import get_attack

    x = torch.rand(2, 1, 3, 3)
    with pytest.raises(UsageError, match="does not support"):
        run_attack(
            get_attack(name),
            tiny_net(channels=1, classes=CLASSES),
            x,
            torch.tensor([0, 1]),
            threat=ThreatModel(norm, 0.1),
        )
