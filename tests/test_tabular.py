"""Tables (N×D features): loading with per-feature bounds, ε as a fraction of each feature's range,
per-feature ε weights (0: immutable), every attack inside the per-feature box and the weighted ball,
closed forms on a linear model, bad inputs one line and exit 2, the per-feature plot, eval/certify.

Expected values come from the raw features and the models' weights, computed here in float64."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
import torch
from loading_fixtures import assert_bad_input, run_cli
from torch import nn

from advgrad.attacks import get_attack, list_attacks, run_attack
from advgrad.core.errors import UsageError
from advgrad.core.threat import ThreatModel
from advgrad.io.data.load_data import DataOptions, load_data
from advgrad.io.data.tables import FeatureSpace
from advgrad.io.model.features import FeatureScaled
from advgrad.report.feature_bars import feature_bars, mean_change

NAMES = ["age", "income", "score", "visits"]
LOWER = [18.0, 0.0, -4.0, 0.0]
UPPER = [90.0, 100000.0, 4.0, 20.0]
# the linear model's weights on raw features: class 1 − class 0 is W1 − W0 = 2·W1
W1 = [-1.0 / 72, 1.0 / 100000, 0.5, 0.05]


def make_table(n: int = 40, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Raw features within [LOWER, UPPER] and the labels of the linear model, so it is 100% right."""
    rng = np.random.default_rng(seed)
    lo, hi = np.array(LOWER), np.array(UPPER)
    x = lo + (hi - lo) * rng.uniform(0.15, 0.85, size=(n, len(NAMES)))
    x[:, 3] = np.round(x[:, 3])
    y = (x @ np.array(W1) - np.array(W1) @ ((lo + hi) / 2) > 0).astype(np.int64)
    return x, y


def linear_model() -> nn.Module:
    """2 classes: logit_1 = W1·(x − mid), logit_0 = −logit_1 (weights on raw features)."""
    w = torch.tensor(W1, dtype=torch.float32)
    mid = (torch.tensor(LOWER) + torch.tensor(UPPER)) / 2
    model = nn.Linear(len(NAMES), 2)
    with torch.no_grad():
        model.weight.copy_(torch.stack([-w, w]))
        model.bias.copy_(torch.stack([w @ mid, -(w @ mid)]))
    return model.eval()


def assert_close_in_range(actual: np.ndarray, expected: np.ndarray, tolerance: float) -> None:
    """|actual − expected| ≤ tolerance × the feature's range, feature by feature."""
    span = np.array(UPPER) - np.array(LOWER)
    gap = np.abs(actual - expected) / span
    assert (gap <= tolerance).all(), (gap.max(), np.unravel_index(gap.argmax(), gap.shape))


def write_csv(path, x, y, names=NAMES, label="label", label_first=False):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow([label, *names] if label_first else [*names, label])
        for row, lab in zip(x, y, strict=True):
            cells = [repr(float(v)) for v in row]
            w.writerow([lab, *cells] if label_first else [*cells, lab])
    return path


def write_bounds(path, lower=LOWER, upper=UPPER, names=NAMES):
    path.write_text(json.dumps({n: [lo, hi] for n, lo, hi in zip(names, lower, upper, strict=True)}))
    return path


def write_scale(path, weights, names=NAMES):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["feature", "scale"])
        w.writerows(zip(names, weights, strict=True))
    return path


@pytest.fixture
def table(tmp_path):
    x, y = make_table()
    model = tmp_path / "w.pt"
    torch.save(linear_model().state_dict(), model)
    return {
        "x": x,
        "y": y,
        "csv": write_csv(tmp_path / "t.csv", x, y),
        "bounds": write_bounds(tmp_path / "b.json"),
        "weights": model,
        "dir": tmp_path,
    }


def model_args(table):
    """``--model`` options for the linear table model with the fixture's weights (a state dict of
    an ``nn.Linear``, loaded into ``table_models:linear``'s ``fc``)."""
    state = torch.load(table["weights"], weights_only=True)
    path = table["dir"] / "linear_table.pt"
    torch.save({f"fc.{k}": v for k, v in state.items()}, path)
    return ["--model", "table_models:linear", "--weights", path, "--model-arg", "features=4", "--device", "cpu"]


# ---------------------------------------------------------------------------------------------- loading


def test_bounds_from_data_are_min_max_and_label_column(tmp_path):
    x, y = make_table()
    source = load_data(str(write_csv(tmp_path / "t.csv", x, y, label_first=True)))
    space = source.space
    assert space.names == tuple(NAMES)  # the label column is found by its name, wherever it is
    np.testing.assert_allclose(space.lower, x.min(axis=0))
    np.testing.assert_allclose(space.upper, x.max(axis=0))
    assert torch.equal(source.y, torch.from_numpy(y))
    z, _ = source.fetch(torch.arange(len(y)))
    assert float(z.min()) == 0.0 and float(z.max()) == 1.0  # each feature spans [0, 1] exactly
    # no column named label: the last one; string labels are numbered in sorted order
    write_csv(tmp_path / "s.csv", x, np.where(y == 1, "yes", "no"), label="outcome")
    source = load_data(str(tmp_path / "s.csv"))
    assert source.classes == ["no", "yes"] and torch.equal(source.y, torch.from_numpy(y))
    # --label-column picks another column: the column named label is then a feature
    source = load_data(str(tmp_path / "t.csv"), DataOptions(label_column="visits"))
    assert source.space.names == ("label", "age", "income", "score")
    assert torch.equal(source.y, torch.from_numpy(x[:, 3].astype(np.int64)))


def test_npz_table_with_bounds_and_names(tmp_path):
    x, y = make_table()
    np.savez(tmp_path / "t.npz", x=x, y=y, feature_names=np.array(NAMES))
    source = load_data(str(tmp_path / "t.npz"), DataOptions(bounds=str(write_bounds(tmp_path / "b.json"))))
    assert source.space.names == tuple(NAMES) and source.space.lower == tuple(LOWER)
    z, _ = source.fetch(torch.arange(len(y)))
    expected = (x - np.array(LOWER)) / (np.array(UPPER) - np.array(LOWER))
    np.testing.assert_allclose(z.numpy(), expected, rtol=0, atol=1e-6)
    assert_close_in_range(source.space.to_raw(z).numpy(), x, 1e-6)  # float32


# ---------------------------------------------------------------------------------------------- attacks


class Standardised(nn.Module):
    """A seeded MLP on standardised raw features (as a model trained on a table would be)."""

    def __init__(self):
        super().__init__()
        gen = torch.Generator().manual_seed(3)
        self.mid = (torch.tensor(LOWER) + torch.tensor(UPPER)) / 2
        self.scale = (torch.tensor(UPPER) - torch.tensor(LOWER)) / 4
        self.net = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 4))  # apgd-t needs 4 classes
        with torch.no_grad():
            for p in self.net.parameters():
                p.copy_(torch.randn(p.shape, generator=gen))

    def forward(self, x):
        return self.net((x - self.mid) / self.scale)


FAST = {"steps": 4, "restarts": 1, "queries": 40, "binary_steps": 2, "eot": 1}
WEIGHTS = (1.0, 3.0, 0.0, 2.0)  # relative: ε for age, 3ε for income, score immutable, 2ε for visits


def weighted_norm(delta_raw: np.ndarray, span: np.ndarray, stretch: np.ndarray, norm: str) -> np.ndarray:
    """‖(δ_i / (span_i·r_i))_i‖_p over the movable features (the threat model in raw units)."""
    movable = stretch > 0
    scaled = np.abs(delta_raw[:, movable]) / (span[movable] * stretch[movable])
    return {"inf": scaled.max(axis=1), "2": np.sqrt((scaled**2).sum(axis=1)), "1": scaled.sum(axis=1)}[norm]


@pytest.mark.parametrize("name", [spec.name for spec in list_attacks()])
def test_every_attack_stays_in_the_feature_box_and_the_weighted_ball(name):
    spec = get_attack(name)
    x, _ = make_table(n=12, seed=1)
    space = FeatureSpace(tuple(NAMES), tuple(LOWER), tuple(UPPER), weights=WEIGHTS, weights_source="test")
    model = FeatureScaled(Standardised(), space).eval()
    raw = torch.tensor(x, dtype=torch.float32)
    z = space.to_attack(raw)
    y = model(z).argmax(dim=1)  # attack every sample (all correct by construction)
    span, stretch = np.array(UPPER) - np.array(LOWER), np.array(WEIGHTS) / 1.0
    for norm in spec.norms:
        eps = {"inf": 0.1, "2": 0.2, "1": 0.4}[norm]
        threat = ThreatModel(norm, eps, fixed=space.fixed)
        params = spec.make_params(**FAST)
        gen = torch.Generator().manual_seed(0)
        z_adv = run_attack(spec, model, z, y, threat=threat, params=params, generator=gen)
        adv = space.to_raw(z_adv).double().numpy()
        assert (adv >= np.array(LOWER)).all() and (adv <= np.array(UPPER)).all(), (name, norm)
        start = space.to_raw(z).double().numpy()
        assert np.array_equal(adv[:, 2], start[:, 2]), (name, norm)  # the immutable feature never moves
        size = weighted_norm(adv - start, span, stretch, norm)
        assert (size <= eps * (1 + 1e-4) + 1e-6).all(), (name, norm, size.max())


def test_fgsm_on_a_linear_model_is_the_closed_form_in_raw_units():
    """For a 2-class linear model ∇CE points along ±(w_other − w_y) per feature: FGSM moves each
    feature i by r_i·ε·(hi_i − lo_i) in the direction of sign((w_other − w_y)_i), clipped to
    [lo_i, hi_i]; an immutable feature stays."""
    x, y = make_table(n=30, seed=2)
    space = FeatureSpace(tuple(NAMES), tuple(LOWER), tuple(UPPER), weights=WEIGHTS, weights_source="test")
    model = FeatureScaled(linear_model(), space).eval()
    raw = torch.tensor(x, dtype=torch.float32)
    eps = 0.2
    z_adv = run_attack(
        get_attack("fgsm"),
        model,
        space.to_attack(raw),
        torch.from_numpy(y),
        threat=ThreatModel("inf", eps, fixed=space.fixed),
    )
    w = np.array(W1)
    direction = np.where(y[:, None] == 1, -np.sign(w), np.sign(w))  # raise the other class's logit
    span = np.array(UPPER) - np.array(LOWER)
    move = np.array(WEIGHTS) * eps * span
    expected = np.clip(x + direction * move, LOWER, UPPER)
    assert_close_in_range(space.to_raw(z_adv).double().numpy(), expected, 1e-5)


def test_pgd_l2_on_a_linear_model_reaches_the_closed_form():
    """Without weights, the L2 ball of radius ε in the unit box: PGD on a linear 2-class model ends at
    δu = ε·g/‖g‖ with g_i = (w_other − w_y)_i·(hi_i − lo_i) (samples far enough from the box's faces)."""
    x, y = make_table(n=20, seed=4)
    x = np.array(LOWER) + (np.array(UPPER) - np.array(LOWER)) * (0.4 + 0.2 * (x - LOWER) / (np.array(UPPER) - LOWER))
    y = (x @ np.array(W1) - np.array(W1) @ ((np.array(LOWER) + UPPER) / 2) > 0).astype(np.int64)
    space = FeatureSpace(tuple(NAMES), tuple(LOWER), tuple(UPPER))
    model = FeatureScaled(linear_model(), space).eval()
    eps = 0.05
    spec = get_attack("pgd")
    z_adv = run_attack(
        spec,
        model,
        space.to_attack(torch.tensor(x, dtype=torch.float32)),
        torch.from_numpy(y),
        threat=ThreatModel("2", eps),
        params=spec.make_params(steps=20, random_start=False),
    )
    span = np.array(UPPER) - np.array(LOWER)
    g = np.where(y[:, None] == 1, -1.0, 1.0) * np.array(W1) * span
    expected = x + span * eps * g / np.linalg.norm(g, axis=1, keepdims=True)
    assert_close_in_range(space.to_raw(z_adv).double().numpy(), expected, 2e-5)


# ---------------------------------------------------------------------------------------------- command line


def test_attack_writes_raw_units_keeps_immutable_features_and_plots(table):
    scale = write_scale(table["dir"] / "scale.csv", WEIGHTS)
    out, images = table["dir"] / "adv.pt", table["dir"] / "img"
    args = ["--data", table["csv"], "--bounds", table["bounds"], "--eps-scale", scale, "--eps", "0.1"]
    result = run_cli(
        "attack", "--method", "pgd", "--steps", "5", *args, "--out", out, "--images", images, *model_args(table)
    )
    assert result.exit_code == 0, result.stderr
    saved = torch.load(out, weights_only=True)
    assert_close_in_range(saved["x"].double().numpy(), table["x"], 1e-6)  # raw units, as in the file
    span = np.array(UPPER) - np.array(LOWER)
    assert torch.equal(saved["x_adv"][:, 2], saved["x"][:, 2])  # score has weight 0
    delta = (saved["x_adv"] - saved["x"]).double().abs().numpy()
    assert (delta <= np.array(WEIGHTS) * 0.1 * span * (1 + 1e-4) + 1e-6 * span).all()
    assert saved["table"]["features"] == NAMES and saved["threat"]["fixed"] == [2]
    assert (images / "adversarial.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_feature_bars_show_the_mean_change_per_feature(tmp_path):
    x = torch.tensor([[0.0, 10.0], [2.0, 20.0]])
    x_adv = torch.tensor([[1.0, 10.0], [2.0, 26.0]])
    raw, share = mean_change(x, x_adv, [0.0, 10.0], [4.0, 30.0])
    assert raw.tolist() == [0.5, 3.0] and share.tolist() == [0.125, 0.15]
    path = feature_bars(["a", "b"], x, x_adv, [0.0, 10.0], [4.0, 30.0], tmp_path / "bars.png", fixed=[0])
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_eval_and_certify_on_a_table(table):
    """A linear model on a table with ε weights (one feature immutable): clean accuracy 100% (labels
    are its decisions); at each ε FGSM is the exact worst case of a 2-class linear model in the
    weighted L∞ ball ∩ box, and IBP is exact for this model (the weights' clip at 1 is monotone,
    then one linear layer) only if it holds the immutable feature as the attacks do, so the certified
    curve equals FGSM's (no sample certified and fooled)."""
    report_path, plot = table["dir"] / "r.json", table["dir"] / "r.png"
    scale = write_scale(table["dir"] / "scale.csv", WEIGHTS)
    args = ["--data", table["csv"], "--bounds", table["bounds"], "--eps-scale", scale, "--eps", "0,0.05,0.1"]
    result = run_cli(
        "eval", "--attack", "fgsm", "--certify", "ibp", *args, "--json", report_path, "--plot", plot, *model_args(table)
    )
    assert result.exit_code == 0, result.stderr
    report = json.loads(report_path.read_text())
    assert report["clean_accuracy"] == 1.0
    assert report["data"]["table"]["features"] == NAMES and report["config"]["fixed"] == [2]
    fgsm, certified = ([p["robust"] for p in report["attacks"][k]["points"]] for k in ("fgsm", "ibp"))
    assert fgsm[0] == len(table["y"]) and fgsm[-1] < fgsm[0]
    assert fgsm == certified
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    info = run_cli("info", "--data", table["csv"], "--json", "-", *model_args(table))
    assert info.exit_code == 0, info.stderr
    assert json.loads(info.stdout)["table"]["lower"] == pytest.approx(table["x"].min(axis=0).tolist())


# ---------------------------------------------------------------------------------------------- bad input


def bad_cases(table):
    d = table["dir"]
    narrow = write_bounds(d / "narrow.json", upper=[50.0, *UPPER[1:]])
    inverted = write_bounds(d / "inv.json", lower=[18.0, 5.0, -4.0, 0.0], upper=[90.0, 1.0, 4.0, 20.0])
    unknown = d / "unknown.json"
    unknown.write_text(
        json.dumps({**{n: [lo, hi] for n, lo, hi in zip(NAMES, LOWER, UPPER, strict=True)}, "height": [0, 1]})
    )
    text = d / "text.csv"
    text.write_text("age,income,label\n30,abc,1\n")
    images = d / "img.pt"
    torch.save({"x": torch.rand(4, 1, 2, 2), "y": torch.zeros(4, dtype=torch.long)}, images)
    return [
        (["--data", table["csv"], "--bounds", narrow], ["age", "outside its bounds"]),
        (["--data", table["csv"], "--bounds", inverted], ["income", "lower 5 > upper 1"]),
        (["--data", table["csv"], "--bounds", unknown], ["height"]),
        (["--data", table["csv"], "--bounds", d / "missing.json"], ["--bounds", "no such file"]),
        (["--data", table["csv"], "--eps-scale", write_scale(d / "neg.csv", [1, -1, 1, 1])], ["negative"]),
        (["--data", table["csv"], "--eps-scale", write_scale(d / "zero.csv", [0, 0, 0, 0])], ["every weight is 0"]),
        (["--data", table["csv"], "--label-column", "nope"], ["--label-column", "nope"]),
        (["--data", text], ["abc", "not a number"]),
        (["--data", images, "--bounds", table["bounds"]], ["--bounds", "tables"]),
    ]


def test_bad_bounds_and_table_files_are_one_line_exit_2(table):
    out = table["dir"] / "never.pt"
    for args, needles in bad_cases(table):
        result = run_cli("attack", "--method", "fgsm", *args, "--out", out, *model_args(table))
        assert_bad_input(result, *needles)
        assert not out.exists()
    trained = table["dir"] / "t.safetensors"
    result = run_cli("train", "--data", table["csv"], "--model", "table_models:mlp", "--out", trained)
    assert_bad_input(result, "table")
    assert not trained.exists()
    y = table["y"]
    write_csv(table["dir"] / "nan.csv", np.where(np.arange(len(y))[:, None] == 3, np.nan, table["x"]), y)
    assert_bad_input(run_cli("info", "--data", table["dir"] / "nan.csv", *model_args(table)), "sample 3", "NaN")


def test_a_wrong_label_column_of_a_wide_csv_names_a_few_columns_and_the_count(tmp_path):
    """Issue 21, item 12: a 10⁶-column CSV printed an 8.9 MB error line (10⁵ columns here)."""
    path = tmp_path / "wide.csv"
    path.write_text(",".join([f"f{j}" for j in range(100_000)] + ["label"]) + "\n" + ",".join(["0"] * 100_001) + "\n")
    result = run_cli("info", "--data", path, "--label-column", "nope")
    text = assert_bad_input(result, "--label-column 'nope'", "f0, f1, f2", "… (100,001 in all)")
    assert len(text) < 300, len(text)


def test_ranges_and_weight_ratios_beyond_float32_are_refused_naming_the_feature(table):
    """Issue 21, item 10: bounds of ±1e308 (an infinite width in float32), data whose min/max span
    more than float32 holds, and an ε weight 10^300 times smaller than another all ended in "the
    model's outputs contain NaN"; each is one line naming the feature at fault."""
    d = table["dir"]
    huge = write_bounds(d / "huge.json", lower=[18.0, -1e308, -4.0, 0.0], upper=[90.0, 1e308, 4.0, 20.0])
    tiny = write_scale(d / "tiny.csv", [1.0, 1e-300, 1.0, 1.0])
    x = table["x"].copy()
    x[:, 2] = np.where(np.arange(len(x)) % 2 == 0, -3e38, 3e38)  # each value float32, the width not
    wide = write_csv(d / "wide.csv", x, table["y"])
    cases = [
        (["--data", table["csv"], "--bounds", huge], ["feature 2 of 4 ('income')", "huge.json", "float32"]),
        (["--data", table["csv"], "--eps-scale", tiny], ["'income'", "1e-300", "1e+06 times", "tiny.csv"]),
        (["--data", wide], ["feature 3 of 4 ('score')", "the data's min/max", "float32"]),
    ]
    for args, needles in cases:
        result = run_cli("eval", "--attack", "fgsm", "--eps", "0,0.1", *args, *model_args(table))
        assert_bad_input(result, *needles)
    with pytest.raises(UsageError, match="beyond float32"):
        FeatureSpace(("a",), (-1e300,), (1e300,))
    with pytest.raises(UsageError, match="more than 1e\\+06 times"):
        FeatureSpace(("a", "b"), (0.0, 0.0), (1.0, 1.0), weights=(1.0, 1e-7))
    FeatureSpace(("a", "b"), (-1e38, 0.0), (1e38, 1.0), weights=(1.0, 1e-6))  # within both limits
    with pytest.raises(UsageError, match="finite lower < upper"):
        ThreatModel("inf", 0.1, lower=-math.inf, upper=math.inf)
    with pytest.raises(UsageError, match="wider than float32"):
        ThreatModel("inf", 0.1, lower=-3e38, upper=3e38)


@pytest.mark.parametrize("norm", ["inf", "2", "1"])
def test_threat_model_holds_fixed_coordinates(norm):
    """Projecting with fixed coordinates is projecting the other coordinates alone (L∞ and L2 in
    closed form here) and leaves the fixed ones at 0; a result that moves one is not contained."""
    gen = torch.Generator().manual_seed(5)
    delta = torch.randn(6, 5, generator=gen, dtype=torch.float64)
    eps, free = 0.3, [0, 2, 4]
    projected = ThreatModel(norm, eps, fixed=(1, 3)).project(delta)
    assert (projected[:, [1, 3]] == 0).all()
    d = delta[:, free]
    if norm == "inf":
        expected = d.clamp(-eps, eps)
    elif norm == "2":
        expected = d * (eps / d.norm(dim=1, keepdim=True)).clamp(max=1.0)
    else:  # the L1 projection of the free part alone, without fixed coordinates
        expected = ThreatModel(norm, eps).project(d)
    torch.testing.assert_close(projected[:, free], expected)
    x = torch.full((6, 5), 0.5, dtype=torch.float64)
    threat = ThreatModel(norm, eps, fixed=(1, 3))
    inside = threat.clip(x + delta, x)
    assert threat.contains(inside, x).all() and torch.equal(inside[:, [1, 3]], x[:, [1, 3]])
    moved = inside.clone()
    moved[0, 3] += 1e-3
    assert not bool(threat.contains(moved, x)[0])


def test_the_model_sees_the_raw_features_that_are_reported():
    """FeatureScaled gives the model lo + (hi − lo)·min(r·z, 1), the values to_raw reports (and
    `advgrad attack --out` saves), also where the weights clip; the raw values are checked against
    the formula here."""
    space = FeatureSpace(tuple(NAMES), tuple(LOWER), tuple(UPPER), weights=WEIGHTS, weights_source="test")
    z = torch.rand(50, 4, generator=torch.Generator().manual_seed(2), dtype=torch.float32)
    seen = FeatureScaled(nn.Identity(), space)(z)  # the model is the identity: its input comes back
    r = np.array([1.0, 3.0, 1.0, 2.0])  # weight 0 maps like weight 1; the threat model holds it
    u = np.minimum(z.double().numpy() * r, 1.0)
    expected = np.array(LOWER) + (np.array(UPPER) - np.array(LOWER)) * u
    assert_close_in_range(seen.double().numpy(), expected, 1e-6)
    assert_close_in_range(space.to_raw(z).double().numpy(), expected, 1e-6)


def test_evaluate_a_table_source_matches_the_linear_worst_case(tmp_path):
    """advgrad.evaluate on a table's source (the Python API) wraps the model itself. For a 2-class
    linear model the worst case in the L∞ ball ∩ box moves each movable feature against the margin
    by min(r_i·ε·span_i, room to its bound): a sample survives iff that margin stays positive."""
    import advgrad

    x, y = make_table(n=60, seed=6)
    csv_path = write_csv(tmp_path / "t.csv", x, y)
    (tmp_path / "b.csv").write_text(
        "lower,upper\n" + "".join(f"{lo},{hi}\n" for lo, hi in zip(LOWER, UPPER, strict=True))
    )
    scale = write_scale(tmp_path / "s.csv", WEIGHTS)
    source = load_data(str(csv_path), DataOptions(bounds=str(tmp_path / "b.csv"), eps_scale=str(scale)))
    assert source.space.lower == tuple(LOWER)  # a bounds file without a feature column: rows in order
    eps = [0.0, 0.02, 0.05]
    report = advgrad.evaluate(linear_model(), source, attacks="fgsm", eps=eps)
    w = 2 * np.array(W1)  # logit_1 − logit_0 = 2·W1·(x − mid)
    sign = np.where(y == 1, 1.0, -1.0)
    margin = sign * ((x - (np.array(LOWER) + UPPER) / 2) @ w)
    span = np.array(UPPER) - np.array(LOWER)
    against = -sign[:, None] * np.sign(w)  # the direction that lowers the margin, per feature
    room = np.where(against > 0, np.array(UPPER) - x, x - np.array(LOWER))
    for j, e in enumerate(eps):
        move = np.minimum(np.array(WEIGHTS) * e * span, room)
        worst = margin - (np.abs(w) * move).sum(axis=1)
        assert report.attacks["fgsm"].points[j].robust == int((worst > 0).sum()), e
    assert 0 < report.attacks["fgsm"].points[-1].robust < len(y)  # the largest ε fools some, not all
    assert report.config["fixed"] == [2]


def test_l2_bounds_spend_the_radius_on_the_movable_features():
    """For a linear model inside the box the L2 margin bound is exact: m(x) − ε·‖(w_y − w_j)‖ over
    the movable coordinates only, when the others are fixed."""
    from advgrad.bounds import BoundedModel

    gen = torch.Generator().manual_seed(8)
    w = torch.randn(3, 5, generator=gen, dtype=torch.float64)
    model = nn.Linear(5, 3, bias=False).double()
    with torch.no_grad():
        model.weight.copy_(w)
    x = 0.4 + 0.2 * torch.rand(4, 5, generator=gen, dtype=torch.float64)  # far from the box's faces
    y = torch.tensor([0, 1, 2, 0])
    eps, fixed, free = 0.05, (1, 4), [0, 2, 3]
    low = BoundedModel(model.eval(), x).margin_bounds(x, y, eps, norm="2", method="crown", fixed=fixed)
    logits = x @ w.T
    for i in range(4):
        for j in range(3):
            if j != int(y[i]):
                diff = w[y[i]] - w[j]
                expected = float(logits[i, y[i]] - logits[i, j]) - eps * float(diff[free].norm())
                assert float(low[i, j]) == pytest.approx(expected, abs=1e-9)


def test_grad_draws_bars_per_feature_for_a_table(table):
    """``grad --images`` on a table draws the gradient per feature (it was refused). For the 2-class
    linear model, ∂J/∂x = 2·(p₁ − y₁)·W1 on raw features, so the mean |∂J/∂x_i| the bars label is
    mean |2(p₁ − y₁)| · |W1_i|, and the bar, with respect to the share of the range, that × (hi_i − lo_i)."""
    from advgrad.report.feature_bars import mean_gradient

    out, images = table["dir"] / "g.pt", table["dir"] / "img"
    args = ["--data", table["csv"], "--bounds", table["bounds"], "--out", out, "--images", images]
    result = run_cli("grad", *args, *model_args(table))
    assert result.exit_code == 0, result.stderr
    assert (images / "saliency.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    saved = torch.load(out, weights_only=True)
    per_range, per_unit = mean_gradient(saved["grad"], LOWER, UPPER)
    x = torch.tensor(table["x"], dtype=torch.float64)
    w, mid = torch.tensor(W1, dtype=torch.float64), (torch.tensor(LOWER) + torch.tensor(UPPER)).double() / 2
    p1 = torch.sigmoid(2 * (x - mid) @ w)
    factor = (2 * (p1 - torch.tensor(table["y"], dtype=torch.float64))).abs().mean()
    span = torch.tensor(UPPER, dtype=torch.float64) - torch.tensor(LOWER, dtype=torch.float64)
    torch.testing.assert_close(per_unit, factor * w.abs(), rtol=1e-4, atol=0)
    torch.testing.assert_close(per_range, factor * w.abs() * span, rtol=1e-4, atol=0)


def test_a_partial_eps_scale_file_weighs_unlisted_features_1(tmp_path):
    x, y = make_table()
    data = str(write_csv(tmp_path / "t.csv", x, y))
    (tmp_path / "s.json").write_text(json.dumps({"score": 0, "income": 3}))
    write_scale(tmp_path / "s.csv", [2.0], names=["visits"])
    for scale, weights in (("s.json", (1.0, 3.0, 0.0, 1.0)), ("s.csv", (1.0, 1.0, 1.0, 2.0))):
        space = load_data(data, DataOptions(eps_scale=str(tmp_path / scale))).space
        assert space.weights == weights, scale
    assert load_data(data, DataOptions(eps_scale=str(tmp_path / "s.json"))).space.fixed == (2,)
    (tmp_path / "rows.csv").write_text("scale\n1\n2\n")  # bare rows name no feature: one per feature still
    with pytest.raises(UsageError, match="2 rows; the data has 4 features"):
        load_data(data, DataOptions(eps_scale=str(tmp_path / "rows.csv")))
