"""advgrad/evaluation/sweep.py: the robustness sweep against independent computations.

Most tests use "beacon" data: sample i is a grey 5×5 image (0.5) whose pixel i is bright (0.95).
Any two samples differ by 0.45 in L∞, so every input a model sees within ε ≤ 0.2 of a sample
can be traced back to that sample: a recording wrapper tells which samples were attacked and
how often. The model is linear, so FGSM has a closed form computed here by hand:
x' = clip(x + ε·sign(Wᵀ(softmax(z) − e_y)), 0, 1).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from helpers import Recorder, linear_model, tiny_net
from torch import Tensor

from advgrad.attacks import AttackSpec, FGSMParams, PGDParams, get_attack
from advgrad.core.errors import UsageError
from advgrad.evaluation.attack_sweep import AttackSweep, CleanBatch
from advgrad.evaluation.counting import CountingModel
from advgrad.evaluation.eval_config import EvalAttack, EvalConfig
from advgrad.evaluation.evidence import COST_SAMPLES
from advgrad.evaluation.sweep import evaluate
from advgrad.evaluation.tally import AttackTally

N, CLASSES = 24, 3
EPS = [0.0, 0.003, 0.006, 0.012, 0.025]


def _beacons(flip: tuple[int, ...] = (2, 9, 17, 20)):
    """Beacon inputs, a linear model, labels = the model's predictions except at ``flip``
    (those samples are misclassified before any attack)."""
    x = torch.full((N, 1, 5, 5), 0.5, dtype=torch.float64)
    x.view(N, -1)[torch.arange(N), torch.arange(N)] = 0.95
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(CLASSES, 25, generator=gen, dtype=torch.float64)
    w[:, :N] *= 6
    b = -0.5 * w.sum(1)
    model = linear_model(w, b)
    with torch.no_grad():
        y = model(x).argmax(1)
    for i in flip:
        y[i] = (y[i] + 1) % CLASSES
    return model, x, y, w, b


def _fgsm_by_hand(x: Tensor, y: Tensor, w: Tensor, b: Tensor, eps: float) -> Tensor:
    z = x.flatten(1) @ w.T + b
    grad = (torch.softmax(z, 1) - F.one_hot(y, CLASSES)) @ w
    return (x + eps * grad.sign().reshape(x.shape)).clamp(0, 1)


def _predict(x: Tensor, w: Tensor, b: Tensor) -> Tensor:
    return (x.flatten(1) @ w.T + b).argmax(1)


def _batches(x, y, size):
    return [(x[i : i + size], y[i : i + size]) for i in range(0, x.shape[0], size)]


def _fgsm(early_stop=False, eps=EPS, **config):
    return [EvalAttack(get_attack("fgsm"), FGSMParams())], EvalConfig(
        eps=list(eps), early_stop=early_stop, **{"gradient_evidence": False, **config}
    )


def test_cascade_equals_an_independent_per_eps_computation():
    """robust(ε_j) = #{i : clean-correct and FGSM at every ε_k ≤ ε_j leaves it correct}.

    This is lower than or equal to the accuracy under FGSM at ε_j alone: an adversarial example
    found at ε_k < ε_j lies in the ε_j-ball too, so counting it at ε_j is sound (and FGSM, not
    being optimal, can miss at ε_j what it found at ε_k)."""
    model, x, y, w, b = _beacons()
    attacks, config = _fgsm()
    report = evaluate(model, _batches(x, y, 7), attacks, config)

    clean = _predict(x, w, b) == y
    survives = clean.clone()
    for j, eps in enumerate(EPS):
        alone = clean & (_predict(_fgsm_by_hand(x, y, w, b, eps), w, b) == y)
        survives &= alone
        point = report.attacks["fgsm"].points[j]
        assert point.eps == eps
        assert point.robust == int(survives.sum())
        assert point.accuracy == pytest.approx(int(survives.sum()) / N)
        assert point.accuracy <= int(alone.sum()) / N
    assert report.clean_correct == int(clean.sum()) == N - 4
    assert report.n_samples == N and report.clean_accuracy == pytest.approx((N - 4) / N)
    robust = [p.robust for p in report.attacks["fgsm"].points]
    assert robust[0] > robust[-1] > 0  # the curve is not trivial: it drops but not to zero


def test_one_attack_sweep_on_one_batch_is_the_cascade_by_hand():
    """AttackSweep, the sweep of one attack on one batch: its tally holds the cascade computed by
    hand, its remaining samples are those never fooled, and the norms are those of the fooled."""
    model, x, y, w, b = _beacons()
    with torch.no_grad():
        logits = model(x)
    correct = logits.argmax(1) == y
    attacks, config = _fgsm()
    tally = AttackTally.empty(len(EPS), CLASSES)
    sweep = AttackSweep(
        CountingModel(model), attacks[0], config, CleanBatch(x, y, logits, correct, 0, CLASSES), 0, tally
    )
    sweep.run()
    survives = correct.clone()
    for j, eps in enumerate(EPS):
        survives &= _predict(_fgsm_by_hand(x, y, w, b, eps), w, b) == y
        assert tally.robust[j] == int(survives.sum()), eps
    assert sweep.active.tolist() == survives.nonzero().squeeze(1).tolist()
    fooled = correct & ~survives
    assert fooled.any() and torch.equal(~torch.isnan(sweep.found_norm), fooled)
    assert tally.norm_count[-1] == int(fooled.sum()) and tally.norm_max[-1] <= EPS[-1] * (1 + 1e-6)


def test_misclassified_samples_are_never_attacked_and_fooled_samples_leave_the_sweep():
    """Without early stop FGSM costs 2 forward passes per attacked sample and ε (the gradient
    step and the re-verification), plus 1 clean pass per sample: a sample fooled first at the
    k-th positive ε is seen 1 + 2k times; a clean-misclassified sample exactly once."""
    model, x, y, w, b = _beacons()
    recorder = Recorder(model)
    attacks, config = _fgsm(early_stop=False)
    evaluate(recorder, _batches(x, y, 10), attacks, config)
    visits = recorder.visits(x, radius=0.2)

    clean = _predict(x, w, b) == y
    positive = [e for e in EPS if e > 0]
    expected = torch.ones(N, dtype=torch.long)
    for i in range(N):
        if not clean[i]:
            continue
        for k, eps in enumerate(positive, start=1):
            fooled = _predict(_fgsm_by_hand(x[i : i + 1], y[i : i + 1], w, b, eps), w, b) != y[i]
            if bool(fooled) or k == len(positive):
                expected[i] = 1 + 2 * k
                break
    assert visits[~clean].tolist() == [1] * 4
    assert torch.equal(visits, expected)


def test_misclassified_samples_are_never_attacked_by_pgd_either():
    model, x, y, w, b = _beacons()
    recorder = Recorder(model)
    attacks = [EvalAttack(get_attack("pgd"), PGDParams(steps=3)), EvalAttack(get_attack("fgsm"), FGSMParams())]
    evaluate(recorder, _batches(x, y, 8), attacks, EvalConfig(eps=EPS, gradient_evidence=False))
    visits = recorder.visits(x, radius=0.2)
    clean = _predict(x, w, b) == y
    assert visits[~clean].tolist() == [1] * 4
    assert bool((visits[clean] > 1).all())


def test_targeted_sweep_skips_samples_already_labelled_with_the_target():
    model, x, y, w, b = _beacons()
    recorder = Recorder(model)
    attacks, config = _fgsm(target=1)
    report = evaluate(recorder, _batches(x, y, 8), attacks, config)
    visits = recorder.visits(x, radius=0.2)
    clean = _predict(x, w, b) == y
    is_target = y == 1
    assert visits[is_target | ~clean].eq(1).all()
    assert bool((visits[clean & ~is_target] > 1).all())
    # they can never be fooled towards their own class: they stay robust at every ε
    assert all(p.robust >= int((clean & is_target).sum()) for p in report.attacks["fgsm"].points)


def test_early_stop_changes_nothing_for_fgsm():
    model, x, y, _, _ = _beacons()
    attacks, early = _fgsm(early_stop=True)
    _, full = _fgsm(early_stop=False)
    a = evaluate(model, _batches(x, y, 8), attacks, early)
    b = evaluate(model, _batches(x, y, 8), attacks, full)
    assert [p.robust for p in a.attacks["fgsm"].points] == [p.robust for p in b.attacks["fgsm"].points]
    assert a.attacks["fgsm"].forward_samples != b.attacks["fgsm"].forward_samples  # different work, same answer


def test_early_stop_changes_nothing_for_fgsm_on_the_default_model(digits_model, digits_test):
    x, y = digits_test.x[:96], digits_test.y[:96]
    eps = [0.0, 0.05, 0.1, 0.2]
    attacks = [EvalAttack(get_attack("fgsm"), FGSMParams())]
    a = evaluate(digits_model, _batches(x, y, 32), attacks, EvalConfig(eps=eps, early_stop=True))
    b = evaluate(digits_model, _batches(x, y, 32), attacks, EvalConfig(eps=eps, early_stop=False))
    assert [p.robust for p in a.attacks["fgsm"].points] == [p.robust for p in b.attacks["fgsm"].points]


def test_early_stop_never_weakens_pgd_at_one_eps():
    """At a single ε both runs attack the same samples with the same generators; a sample early
    stop keeps follows the full-budget trajectory, and one it stops is already fooled. So early
    stop can only count fewer samples robust, never more."""
    model = tiny_net(seed=4, dtype=torch.float64)
    x = torch.rand(48, 2, 4, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    with torch.no_grad():
        y = model(x).argmax(1)
    y[:5] = (y[:5] + 1) % 3
    attacks = [EvalAttack(get_attack("pgd"), PGDParams(steps=8))]
    for eps in (0.02, 0.05):
        a = evaluate(model, _batches(x, y, 16), attacks, EvalConfig(eps=[eps], early_stop=True, seed=3))
        b = evaluate(model, _batches(x, y, 16), attacks, EvalConfig(eps=[eps], early_stop=False, seed=3))
        robust_early, robust_full = a.attacks["pgd"].points[0].robust, b.attacks["pgd"].points[0].robust
        assert robust_early <= robust_full
        assert 0 < robust_full < 43


@pytest.mark.parametrize("early_stop", [True, False])
def test_accuracy_never_rises_with_eps(early_stop, digits_model, digits_test):
    x, y = digits_test.x[:64], digits_test.y[:64]
    attacks = [EvalAttack(get_attack("fgsm"), FGSMParams()), EvalAttack(get_attack("pgd"), PGDParams(steps=5))]
    config = EvalConfig(eps=[0.3, 0.0, 0.05, 0.1, 0.02, 0.05], early_stop=early_stop)
    report = evaluate(digits_model, _batches(x, y, 32), attacks, config)
    assert report.eps == [0.0, 0.02, 0.05, 0.1, 0.3]  # sorted, duplicates dropped
    for curve in report.attacks.values():
        accuracy = [p.accuracy for p in curve.points]
        assert accuracy[0] == report.clean_accuracy
        assert all(a >= b for a, b in zip(accuracy, accuracy[1:], strict=False))
        assert accuracy[-1] < accuracy[0]
        for p in curve.points:
            if p.max_norm is not None:
                assert p.max_norm <= p.eps + 1e-6
                assert p.mean_norm <= p.max_norm + 1e-9
            assert sum(p.robust_per_class) == p.robust
            assert p.success_rate == pytest.approx((report.clean_correct - p.robust) / report.clean_correct)
    assert sum(report.class_counts) == 64
    assert sum(report.clean_correct_per_class) == report.clean_correct


def test_norm_statistics_are_those_of_the_counted_examples():
    """On beacons FGSM's L∞ perturbation is exactly ε (the box binds on one pixel at most), so the
    mean norm at ε_j is the mean of the first fooling ε over the samples fooled by ε_j."""
    model, x, y, w, b = _beacons()
    attacks, config = _fgsm()
    report = evaluate(model, _batches(x, y, 8), attacks, config)
    clean = _predict(x, w, b) == y
    first = torch.full((N,), float("nan"), dtype=torch.float64)
    for eps in EPS[1:]:
        fooled = clean & first.isnan() & (_predict(_fgsm_by_hand(x, y, w, b, eps), w, b) != y)
        first[fooled] = eps
    for j, eps in enumerate(EPS):
        counted = first[~first.isnan() & (first <= eps)]
        point = report.attacks["fgsm"].points[j]
        if counted.numel() == 0:
            assert point.mean_norm is None and point.max_norm is None
        else:
            assert point.mean_norm == pytest.approx(float(counted.mean()), rel=1e-5)
            assert point.max_norm == pytest.approx(float(counted.max()), rel=1e-5)


def test_results_do_not_depend_on_batch_size_for_fgsm():
    model, x, y, _, _ = _beacons()
    attacks, config = _fgsm()
    robust = [
        [p.robust for p in evaluate(model, _batches(x, y, size), attacks, config).attacks["fgsm"].points]
        for size in (1, 5, 24)
    ]
    assert robust[0] == robust[1] == robust[2]


def test_same_settings_same_report(digits_model, digits_test):
    x, y = digits_test.x[:48], digits_test.y[:48]
    attacks = [EvalAttack(get_attack("pgd"), PGDParams(steps=4, restarts=2))]
    config = EvalConfig(eps=[0.0, 0.05, 0.1], seed=5)

    def run():
        report = evaluate(digits_model, _batches(x, y, 16), attacks, config).to_dict()
        report.pop("timing")  # every measured time sits there, and nothing else that may differ
        return report

    assert run() == run()


def _cheat(model, x, y, *, threat, params=None, target=None, generator=None, early_stop=False):
    """An 'attack' that returns points far outside the ball: everything up by 1."""
    return x + 1.0


CHEAT = AttackSpec("cheat", _cheat, FGSMParams, ("inf",), "gradient", "test only", "none")


def test_results_outside_the_ball_are_clipped_and_reverified_before_counting():
    model, x, y, w, b = _beacons(flip=())
    eps = 0.1
    report = evaluate(model, _batches(x, y, 8), [EvalAttack(CHEAT, FGSMParams())], EvalConfig(eps=[eps]))
    clipped = (x + eps).clamp(0, 1)  # the projection of x + 1 onto the ball and the box
    expected = int((_predict(clipped, w, b) == y).sum())
    assert report.attacks["cheat"].points[0].robust == expected
    assert 0 < expected < N


def test_evaluate_restores_the_model_and_leaves_the_global_rng_alone():
    model = tiny_net(seed=2)
    model.train()
    model.head.eval()
    model.conv.weight.requires_grad_(False)
    x = torch.rand(10, 2, 4, 4, generator=torch.Generator().manual_seed(0))
    y = torch.arange(10) % 3
    rng = torch.get_rng_state()
    calls: list[int] = []
    attacks = [EvalAttack(get_attack("pgd"), PGDParams(steps=2)), EvalAttack(get_attack("fgsm"), FGSMParams())]
    report = evaluate(model, _batches(x, y, 4), attacks, EvalConfig(eps=[0.0, 0.1]), progress=calls.append)
    assert torch.equal(torch.get_rng_state(), rng)
    assert model.training and model.conv.training and not model.head.training
    assert not model.conv.weight.requires_grad and model.conv.bias.requires_grad
    assert calls == [4, 8, 10]
    assert report.versions["torch"] == torch.__version__
    assert set(report.attacks) == {"pgd", "fgsm"}


def test_forward_pass_accounting():
    model, x, y, _, _ = _beacons()
    recorder = Recorder(model)
    attacks = [EvalAttack(get_attack("pgd"), PGDParams(steps=3)), EvalAttack(get_attack("fgsm"), FGSMParams())]
    report = evaluate(recorder, _batches(x, y, 8), attacks, EvalConfig(eps=EPS))
    seen = sum(r.shape[0] for r in recorder.rows)
    # one clean pass per sample; for the sanity checks, per clean-correct sample (all N samples are among
    # the first GRADIENT_SAMPLES) one gradient pass, one more and two forward passes for the consistency
    # check, and the first batch's samples alone for the cost; then what the attacks spent
    attacked = sum(curve.forward_samples for curve in report.attacks.values())
    assert seen == N + 4 * report.clean_correct + min(COST_SAMPLES, 8) + attacked
    recorder.rows.clear()
    report = evaluate(recorder, _batches(x, y, 8), attacks, EvalConfig(eps=EPS, gradient_evidence=False))
    assert sum(r.shape[0] for r in recorder.rows) == N + sum(c.forward_samples for c in report.attacks.values())


def test_bad_configurations():
    fgsm = EvalAttack(get_attack("fgsm"), FGSMParams())
    model, x, y, _, _ = _beacons()
    with pytest.raises(UsageError):
        EvalConfig(eps=[])
    with pytest.raises(UsageError):
        EvalConfig(eps=[0.1, -0.1])
    with pytest.raises(UsageError, match="once"):
        evaluate(model, _batches(x, y, 8), [fgsm, fgsm], EvalConfig(eps=[0.1]))
    with pytest.raises(UsageError, match="empty"):
        evaluate(model, [], [fgsm], EvalConfig(eps=[0.1]))
    labelled = EvalAttack(get_attack("fgsm"), FGSMParams(step_size=0.01), label="fgsm-small")
    report = evaluate(model, _batches(x, y, 8), [fgsm, labelled], EvalConfig(eps=[0.1]))
    assert list(report.attacks) == ["fgsm", "fgsm-small"]
