"""FAB and FAB-T (advgrad/attacks/fab.py) and the projection onto a hyperplane inside the box
(advgrad/attacks/hyperplane.py): closed forms on affine classifiers, optimality of the projection
by convexity, the ε contract and the command line."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from advgrad.attacks import FABParams, FABTParams, find_minimal, get_attack, run_attack
from advgrad.attacks.hyperplane import PROJECTIONS
from advgrad.cli import app
from advgrad.core.geometry import L1, L2, LINF
from advgrad.core.threat import ThreatModel

NORMS = {"inf": (LINF, 1.0), "2": (L2, 2.0), "1": (L1, float("inf"))}  # norm → geometry, dual p


def _norm(d: torch.Tensor, norm: str) -> torch.Tensor:
    d = d.flatten(1).double()
    return {"inf": d.abs().amax(dim=1), "2": d.norm(dim=1), "1": d.abs().sum(dim=1)}[norm]


@pytest.mark.parametrize("norm", ["inf", "2", "1"])
def test_projection_without_the_box_is_the_closed_form(norm: str) -> None:
    """Far from the box's faces the projection onto ⟨w, d⟩ = c is the textbook one: L∞ c·sign(w)/‖w‖₁,
    L2 c·w/‖w‖₂², L1 all of c/w_k on the largest |w_k|."""
    gen = torch.Generator().manual_seed(1)
    t = 0.4 + 0.2 * torch.rand(6, 30, generator=gen, dtype=torch.float64)
    w = torch.randn(6, 30, generator=gen, dtype=torch.float64)
    c = 0.01 * torch.randn(6, generator=gen, dtype=torch.float64)
    d = PROJECTIONS[NORMS[norm][0]](t, w, c, 0.0, 1.0)
    if norm == "inf":
        expected = (c / w.abs().sum(dim=1))[:, None] * w.sign()
    elif norm == "2":
        expected = (c / (w * w).sum(dim=1))[:, None] * w
    else:
        k = w.abs().argmax(dim=1)
        expected = torch.zeros_like(w)
        expected[torch.arange(6), k] = c / w[torch.arange(6), k]
    assert torch.allclose(d, expected, atol=1e-12)


@pytest.mark.parametrize("norm", ["inf", "2", "1"])
def test_projection_inside_the_box_is_feasible_and_optimal(norm: str) -> None:
    """With the box binding: ⟨w, d⟩ = c, t + d in [0, 1], and no feasible point nearby is shorter —
    the problem is convex, so a local minimum is the global one. Feasible neighbours: d + s·v with
    v ⟂ w (staying on the hyperplane), kept where the box allows."""
    gen = torch.Generator().manual_seed(2)
    n, dim = 8, 12
    t = torch.rand(n, dim, generator=gen, dtype=torch.float64)
    t[:, :4] = torch.where(t[:, :4] > 0.5, 1.0, 0.0)  # some coordinates on the box's faces
    w = torch.randn(n, dim, generator=gen, dtype=torch.float64)
    reach = (torch.where(w > 0, 1 - t, t) * w.abs()).sum(dim=1)
    c = reach * (0.2 + 0.6 * torch.rand(n, generator=gen, dtype=torch.float64))  # reachable, box binds
    c = torch.where(torch.rand(n, generator=gen) < 0.5, c, -torch.where(w < 0, 1 - t, t).mul(w.abs()).sum(dim=1) * 0.5)
    d = PROJECTIONS[NORMS[norm][0]](t, w, c, 0.0, 1.0)
    assert torch.allclose((w * d).sum(dim=1), c, atol=1e-9)
    assert float((t + d).min()) >= -1e-12 and float((t + d).max()) <= 1 + 1e-12
    base = _norm(d, norm)
    for _ in range(300):
        v = torch.randn(n, dim, generator=gen, dtype=torch.float64)
        v = v - ((v * w).sum(dim=1) / (w * w).sum(dim=1))[:, None] * w  # on the hyperplane
        for s in (1e-3, 1e-2, 1e-1):
            moved = d + s * v
            feasible = ((t + moved) >= 0).all(dim=1) & ((t + moved) <= 1).all(dim=1)
            assert bool((_norm(moved, norm)[feasible] >= base[feasible] - 1e-9).all())


def _affine_binary(dim: int = 20):
    torch.manual_seed(0)
    model = nn.Linear(dim, 2).double()
    x = 0.3 + 0.4 * torch.rand(40, dim, dtype=torch.float64)
    with torch.no_grad():
        y = model(x).argmax(dim=1)
    w = (model.weight[1] - model.weight[0]).detach()
    f = (x @ w + (model.bias[1] - model.bias[0]).detach()).abs()
    return model, x, y, w, f


@pytest.mark.parametrize("name", ["fab", "fab-t"])
@pytest.mark.parametrize("norm", ["inf", "2", "1"])
def test_fab_finds_the_closed_form_minimum_of_an_affine_classifier(name: str, norm: str) -> None:
    """The minimal perturbation of a two-class affine model is |w·x + b|/‖w‖_* (‖·‖_* the dual norm)
    when the box does not bind: FAB's example fools, is never shorter (that is the minimum) and is
    within 1% of it (η = 1.05 overshoots, the β back-steps take most of it back)."""
    model, x, y, w, f = _affine_binary()
    distance = f / w.norm(p=NORMS[norm][1])
    # Samples whose minimal perturbation stays inside [0, 1] (x is in [0.3, 0.7]).
    step = {"inf": distance, "2": distance * w.abs().max() / w.norm(), "1": distance}[norm]
    keep = step < 0.25
    assert int(keep.sum()) >= 10
    result = find_minimal(get_attack(name), model, x[keep], y[keep], norm=norm)
    assert bool(result.fooled.all())
    ratio = result.norm.double() / distance[keep]
    assert float(ratio.min()) >= 1 - 1e-6 and float(ratio.max()) <= 1.01


def test_fab_with_a_finite_eps_keeps_only_what_lies_within_it() -> None:
    """Through run_attack with ε: inside the ball; a sample whose minimal perturbation is below ε is
    fooled, and it is the same example the unbounded search finds."""
    model, x, y, w, f = _affine_binary()
    distance = f / w.norm(p=1.0)
    eps = float(distance.median())
    threat = ThreatModel("inf", eps)
    x_adv = run_attack(get_attack("fab"), model, x, y, threat=threat)
    assert bool(threat.contains(x_adv, x).all())
    with torch.no_grad():
        fooled = model(x_adv).argmax(dim=1) != y
    near = distance < eps / 1.02
    assert bool(fooled[near].all())
    assert not bool(fooled[distance > eps].any())  # nothing beats the minimum


def test_fab_t_on_the_digits_is_no_worse_than_deepfool() -> None:
    """On the embedded digits CNN, FAB-T's median minimal L2 norm is at most DeepFool's (FAB-T is
    the stronger minimal attack; the paper reports the same on MNIST), with a 5% margin."""
    import advgrad

    model = advgrad.load_model()
    x, y = advgrad.load_data(limit=12)
    fab_t = find_minimal(get_attack("fab-t"), model, x, y, norm="2", params=FABTParams(steps=30, target_classes=3))
    deepfool = find_minimal(get_attack("deepfool"), model, x, y, norm="2")
    assert bool(fab_t.fooled.all())
    assert float(fab_t.norm.median()) <= 1.05 * float(deepfool.norm[deepfool.fooled].median())


def test_fab_params_are_checked() -> None:
    from advgrad.core.errors import UsageError

    for bad in ({"eta": 0.5}, {"beta": 0}, {"alpha_max": 2.0}, {"steps": 0}):
        with pytest.raises(UsageError):
            FABParams(**bad).validate()


def test_cli_attack_fab_end_to_end(tmp_path) -> None:
    """`advgrad attack --attack fab --norm 1` writes examples inside the L1 ball and fools some."""
    out = tmp_path / "adv.pt"
    result = CliRunner().invoke(
        app,
        ["attack", "--attack", "fab", "--norm", "1", "--eps", "3", "--steps", "20", "--limit", "10"]
        + ["--out", str(out), "--json", "-"],
    )
    assert result.exit_code == 0, result.stdout + result.stderr
    summary = json.loads(result.stdout)
    assert summary["attack"] == "fab" and summary["params"]["alpha_max"] == 0.1
    assert summary["max_norm"] <= 3 * (1 + 1e-5)
    saved = torch.load(out, weights_only=False)
    assert float((saved["x_adv"] - saved["x"]).flatten(1).abs().sum(dim=1).max()) <= 3 * (1 + 1e-5)
    assert bool((saved["pred_adv"] != saved["y"]).any())
