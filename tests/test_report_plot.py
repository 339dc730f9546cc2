"""The report plot (advgrad/report/plot.py) and the few adversarial examples evaluate() keeps for it."""

from __future__ import annotations

from report_helpers import crafted, run_default

from advgrad.report.plot import plot_report, reference_point

PNG = b"\x89PNG\r\n\x1a\n"


def test_evaluate_keeps_only_the_examples_asked_for():
    report = run_default(limit=60, batch_size=10, eps=(0.0, 0.1, 0.3), examples=3)
    for name, examples in report.examples.items():
        assert len(examples) == 3, name  # memory stays flat: never more than asked, whatever the sample count
        for e in examples:
            assert e.pred != e.y and e.eps in (0.1, 0.3)
            assert float((e.x_adv - e.x).abs().max()) <= e.eps + 1e-6
            assert e.x.shape == (1, 8, 8) and e.x.device.type == "cpu"
    assert all(not v for v in run_default(limit=20, eps=(0.0, 0.1)).examples.values())


def test_plot_report_writes_a_png(tmp_path):
    report = run_default(limit=30, batch_size=10, eps=(0.0, 0.1, 0.3), examples=4)
    path = tmp_path / "sub" / "report.png"
    plot_report(report, path)
    assert path.read_bytes()[:8] == PNG
    assert [p.name for p in tmp_path.joinpath("sub").iterdir()] == ["report.png"]  # no temporary file left


def test_plot_without_examples_and_with_many_classes(tmp_path):
    report = crafted({"pgd": [90, 40, 10]}, class_counts=[4] * 25)  # 25 classes: a histogram, not bars
    plot_report(report, tmp_path / "many.png")
    assert (tmp_path / "many.png").read_bytes()[:8] == PNG
    assert reference_point(report) == ("pgd", 0.1)


def _with_examples(names, per_attack=3):
    import torch

    from advgrad.core.results import Example

    report = crafted({name: [95, 60, 20] for name in names}, eps=(0.0, 8 / 255, 0.1))
    report.eps_labels = ["0", "8/255", "0.1"]
    x = torch.full((1, 8, 8), 0.5)
    report.examples = {name: [Example(name, 8 / 255, x, x + 8 / 255, 8, 1)] * per_attack for name in names}
    return report


def test_example_grid_has_a_block_per_attack():
    from advgrad.report.plot import report_figure

    names = ["fgsm", "pgd", "bim", "mifgsm", "deepfool"]
    fig = report_figure(_with_examples(names))
    labels = [ax.get_ylabel() for ax in fig.axes]
    assert labels.count("original") == 5 and labels.count("adversarial") == 5  # every attack, not three
    perturbation = [label for label in labels if label.startswith("perturbation")]
    assert len(perturbation) == 5 and all("×16" in label for label in perturbation)  # 0.5 / (8/255) ≈ 16
    headings = [sub._suptitle.get_text() for sub in fig.subfigs[1:]]
    assert headings == [f"{name}: 3 adversarial examples" for name in names]
    titles = [ax.get_title() for ax in fig.axes]
    assert titles.count("ε=8/255: 8→1") == 15 and titles.count("true 8") == 15
    assert "true→predicted" in fig._supxlabel.get_text() and "8→1" in fig._supxlabel.get_text()
    import matplotlib.pyplot as plt

    plt.close(fig)


def test_curve_ticks_carry_the_labels_and_the_title_names_model_and_data():
    from advgrad.report.plot import report_figure, tick_labels

    report = _with_examples(["pgd"])
    report.model = {"description": "my ResNet"}
    fig = report_figure(report)
    curve, classes = fig.axes[0], fig.axes[1]
    assert [t.get_text() for t in curve.get_xticklabels()] == ["0", "8/255", "0.1"]
    assert "my ResNet" in fig._suptitle.get_text() and "crafted data" in fig._suptitle.get_text()
    assert classes.get_ylim() == (0.0, 100.0)
    legend = curve.get_legend()
    assert legend.get_bbox_to_anchor().x0 > curve.get_window_extent().x1  # off the data, to the right
    crowded = crafted({"pgd": [95, 90, 80, 10]}, eps=(0.0, 1 / 255, 2 / 255, 16 / 255))
    crowded.eps_labels = ["0", "1/255", "2/255", "16/255"]
    assert tick_labels(crowded) == ["0", "1/255", "", "16/255"]  # 2/255 would overlap 1/255
    import matplotlib.pyplot as plt

    plt.close(fig)


def test_per_class_panel_picks_where_classes_differ():
    report = crafted(
        {"fgsm": [10, 10, 10, 6], "pgd": [10, 10, 10, 5]}, eps=(0.0, 0.1, 0.2, 0.3), n=10, clean=10, class_counts=[5, 5]
    )
    for curve in report.attacks.values():
        for point in curve.points:
            point.robust_per_class = [5, 5]  # every class at 100%...
    report.attacks["fgsm"].points[3].robust_per_class = [5, 1]  # ...except fgsm at 0.3: 100% and 20%
    report.attacks["pgd"].points[3].robust_per_class = [3, 2]
    assert reference_point(report) == ("fgsm", 0.3)  # not the middle ε (0.2), where all are 100%


def test_names_that_look_like_mathtext_or_hold_escapes_are_drawn_as_written(tmp_path):
    """Issue 21, item 13 (found by trying it): a feature, class or model named "a$\\frac{$" made
    matplotlib's math parser fail when the figure was saved (exit 3); "\x1b" drew a missing glyph."""
    import torch

    from advgrad.report.feature_bars import feature_bars
    from advgrad.report.images import adversarial_grid

    hostile = "a$\\frac{$\x1b[2J"
    x = torch.rand(2, 2)
    bars = feature_bars([hostile, "b"], x, x * 0.5, [0.0, 0.0], [1.0, 1.0], tmp_path / "bars.png")
    assert bars.read_bytes()[:8] == PNG
    images = torch.rand(2, 1, 4, 4)
    grid = adversarial_grid(
        images, images * 0.9, torch.tensor([0, 1]), torch.tensor([0, 1]), torch.tensor([1, 0]), tmp_path / "g.png",
        class_names=[hostile, "dog"],
    )  # fmt: skip
    assert grid.read_bytes()[:8] == PNG
    report = _with_examples(["pgd"])
    report.model = {"description": f"model from {hostile}"}
    plot_report(report, tmp_path / "report.png")
    assert (tmp_path / "report.png").read_bytes()[:8] == PNG


# Each format by its first bytes (a JPEG starts with the SOI marker, an EPS with its PostScript header).
MAGIC = {
    "png": PNG,
    "pdf": b"%PDF-",
    "svg": b"<?xml",
    "eps": b"%!PS-Adobe",
    "jpg": b"\xff\xd8\xff",
    "jpeg": b"\xff\xd8\xff",
}


def test_plot_report_writes_the_format_the_name_asks_for(tmp_path):
    """plot.pdf is a PDF, plot.svg an SVG (vector: its curves are paths, not one embedded bitmap),
    plot.jpg a JPEG; not PNG data under another name."""
    report = crafted({"pgd": [90, 40, 10]})
    for suffix, magic in MAGIC.items():
        path = tmp_path / f"plot.{suffix.upper() if suffix == 'jpeg' else suffix}"
        plot_report(report, path)
        assert path.read_bytes().startswith(magic), suffix
    assert "<path" in (tmp_path / "plot.svg").read_text()


def test_an_unknown_picture_suffix_is_refused_in_one_line(tmp_path):
    import pytest

    from advgrad.core.errors import UsageError

    for name in ("plot.gif", "plot"):
        with pytest.raises(UsageError, match=r"end the name with \.png, \.pdf, \.svg, \.eps, \.jpg"):
            plot_report(crafted({"pgd": [90, 40, 10]}), tmp_path / name)
    assert list(tmp_path.iterdir()) == []


def test_attack_images_are_titled_and_worded_as_evals():
    """`attack --images`: a title naming the attack, ε and the model, wrapped at word boundaries; the
    adversarial row titled 'ε: true→predicted' as eval's blocks are."""
    import torch

    from advgrad.report.images import adversarial_figure

    x = torch.rand(3, 1, 8, 8)
    title = "pgd, L∞ ε = 8/255 · " + "a model whose description is long enough to need wrapping " * 3
    fig = adversarial_figure(
        x,
        x.clamp(0.1, 0.9),
        torch.tensor([1, 2, 3]),
        torch.tensor([1, 2, 0]),
        torch.tensor([4, 2, 0]),
        eps_label="8/255",
        title=title,
    )
    heading = fig._suptitle.get_text()
    assert heading.startswith("pgd, L∞ ε = 8/255") and "\n" in heading
    assert all(
        line == line.strip() and " ".join(line.split()) in " ".join(title.split()) for line in heading.split("\n")
    )
    titles = [ax.get_title() for ax in fig.axes]
    assert titles[0] == "true 1" and titles[2] == "true 3 (pred 0)"
    assert titles[6:] == ["ε=8/255: 1→4", "ε=8/255: 2→2", "ε=8/255: 3→0"]


def test_curves_that_coincide_stay_visible_and_the_band_is_readable():
    """Each curve has its own marker and dashes, hollow and each smaller than the one before; with a
    certified band high up the axis zooms to the data; the legend says which side each curve bounds."""
    from advgrad.report.plot import curve_styles, report_figure, y_limits

    styles = curve_styles(8)
    assert len({(s["marker"], s["linestyle"]) for s in styles}) == 8
    assert [s["markersize"] for s in styles] == sorted((s["markersize"] for s in styles), reverse=True)
    assert all(s["markerfacecolor"] == "none" for s in styles)
    report = crafted({"pgd": [95, 93, 90], "crown": [95, 90, 85]}, kinds={"crown": "certified"})
    low, high = y_limits(report, ([0.1, 0.2], [90, 85], [93, 90]))
    assert 70 <= low <= 83 and high > 100
    labels = report_figure(report).axes[0].get_legend_handles_labels()[1]
    assert "pgd: attack (upper bound)" in labels and "crown: certified (lower bound)" in labels
    assert report_figure(report).axes[0].get_ylim()[0] > 50
    plain = crafted({"pgd": [95, 40, 10]})
    assert report_figure(plain).axes[0].get_ylim() == (-2, 102)


def test_the_corruption_figure_has_a_row_of_examples_and_15_distinguishable_styles():
    import torch

    from advgrad.core.results import CorruptionPoint, CorruptionResults
    from advgrad.corruptions import list_corruptions
    from advgrad.report.plot import corruption_style, report_figure

    styles = [corruption_style(k) for k in range(15)]
    assert len({(s["color"], s["marker"]) for s in styles}) == 15
    assert len({s["color"] for s in styles}) == 10  # tab10: no two shades of one hue, as tab20 pairs them
    names = list_corruptions()
    report = crafted({"pgd": [95, 40, 10]})
    points = [CorruptionPoint(n, s, 0.5, 50) for n in names for s in range(1, 6)]
    report.corruptions = CorruptionResults(list(range(1, 6)), points, 0.5, sample=torch.rand(1, 8, 8))
    titles = [ax.get_title() for ax in report_figure(report).axes]
    assert "clean" in titles and all(n.replace("_", " ") in titles for n in names)


def test_bar_labels_never_overlap(tmp_path):
    import torch

    from advgrad.report.feature_bars import draw_bars
    from advgrad.report.mpl import pyplot

    fig, ax = pyplot().subplots(figsize=(8, 3))
    values = torch.linspace(0.1, 1.0, 30)
    draw_bars(ax, [f"f{i}" for i in range(30)], values, [f"{12345.678 * v:.6g}" for v in values.tolist()])
    renderer = fig.canvas.get_renderer()
    boxes = [t.get_window_extent(renderer) for t in ax.texts]
    assert len(boxes) == 30
    assert not any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1 :])
    assert all(b.y1 <= ax.get_window_extent(renderer).y1 + 1 for b in boxes)  # inside the axes
