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
