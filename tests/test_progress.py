"""Progress of a run (advgrad/execution/progress.py and its use by eval): attack, ε, step and an ETA from the
rate so far, redrawn at most every 0.2 s; quiet off a terminal unless --verbose asks for a line per
finished attack × ε."""

from __future__ import annotations

import torch
from helpers import invoke

from advgrad.attacks import PGDParams, get_attack
from advgrad.evaluation.eval_config import EvalAttack, EvalConfig
from advgrad.evaluation.sweep import evaluate
from advgrad.execution.progress import MIN_INTERVAL, PassCounter, ProgressTracker, format_eta
from advgrad.io.data.load_data import load_default
from advgrad.io.model.load_model import load_default_model


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_status_lines_for_a_fake_clock():
    clock = FakeClock()
    lines: list[tuple[str, float | None]] = []
    finished: list[str] = []
    # two runs of 20 steps on 100 samples: a budget of 2 × 100 × 20 sample-passes
    tracker = ProgressTracker(
        4000,
        status=lambda line, f: lines.append((line, f)),
        finished=finished.append,
        batches=1,
        clock=clock,
        eps_text=lambda e: "8/255" if abs(e - 8 / 255) < 1e-12 else f"{e:g}",
    )
    tracker.begin("pgd", 8 / 255, 20, 100, 2000)
    assert lines[-1][0] == "pgd ε=8/255 · step 0/20 · 0%"  # no rate yet, no ETA
    # steps at t=0.1 (×4), 0.5, 0.6 (×4), 1.2: redrawn at 0.5 and 1.2 only (at most every 0.2 s)
    for t in [0.1] * 4 + [0.5] + [0.6] * 4 + [1.2]:
        clock.now = t
        tracker.on_pass()
    # at t=0.5: 5/20 of the first run = 500 of 4000 = 12.5% in 0.5 s → 3.5 s to go
    # at t=1.2: 10/20 → 25% in 1.2 s → 3.6 s to go
    assert [line for line, _ in lines[1:]] == [
        "pgd ε=8/255 · step 5/20 · 12% · ETA 0:04",
        "pgd ε=8/255 · step 10/20 · 25% · ETA 0:04",
    ]
    assert lines[-1][1] == 0.25
    clock.now = 2.0
    tracker.end()
    assert finished == ["pgd ε=8/255 done (batch 1/1, 100 attacked) in 2.0 s · 50% · ETA 0:02"]
    assert lines[-1][0] == "50% · ETA 0:02"
    tracker.begin("square", 0.1, 300, 40, 2000, unit="query")
    assert lines[-1][0].startswith("square ε=0.1 · query 0/300 · 50%")


def test_redraws_are_throttled_but_every_step_counts():
    clock = FakeClock()
    lines: list[str] = []
    tracker = ProgressTracker(None, status=lambda line, f: lines.append(line), clock=clock)
    tracker.begin("fgsm", 0.1, 1000, 10, 10)
    for i in range(1000):  # 1000 steps within 0.1 s: no redraw beyond the one at begin
        clock.now = i * 1e-4
        tracker.on_pass()
    assert len(lines) == 1
    clock.now = MIN_INTERVAL
    tracker.on_pass()
    assert lines[-1] == "fgsm ε=0.1 · step 1,000/1,000"  # no total: no share, no ETA; steps capped at the budget


def test_format_eta():
    assert [format_eta(s) for s in (0, 7.4, 61, 750, 7500)] == ["0:00", "0:07", "1:01", "12:30", "2:05:00"]


class Recorder:
    """A monitor that records what the sweep tells it."""

    def __init__(self):
        self.events: list[tuple] = []
        self.passes = 0

    def begin(self, attack, eps, steps, samples, units, unit="step"):
        self.events.append(("begin", attack, eps, steps, samples, units, unit))

    def on_pass(self):
        self.passes += 1

    def end(self):
        self.events.append(("end",))

    def next_batch(self):
        self.events.append(("batch",))

    def skip(self, units):
        self.events.append(("skip", units))


def test_evaluate_tells_each_run_and_counts_passes_without_changing_the_report():
    model = load_default_model()
    x, y = load_default().fetch(torch.arange(40))
    attacks = [EvalAttack(get_attack("pgd"), PGDParams(steps=5))]
    config = EvalConfig(eps=[0.0, 0.1, 0.3])
    plain = evaluate(model, [(x[:20], y[:20]), (x[20:], y[20:])], attacks, config)
    recorder = Recorder()
    watched = evaluate(model, [(x[:20], y[:20]), (x[20:], y[20:])], attacks, config, monitor=recorder)
    assert [p.robust for p in watched.attacks["pgd"].points] == [p.robust for p in plain.attacks["pgd"].points]
    begins = [e for e in recorder.events if e[0] == "begin"]
    assert [(e[1], e[2], e[3], e[5], e[6]) for e in begins] == [
        ("pgd", 0.1, 5, 100, "step"),
        ("pgd", 0.3, 5, 100, "step"),
    ] * 2
    assert [e[0] for e in recorder.events] == ["begin", "end", "begin", "end", "batch"] * 2
    # a call per step and a check per run at most, and the sanity checks' evidence: per batch a gradient
    # pass and the consistency check's three calls, and the first batch's 8 samples one at a time
    assert 0 < recorder.passes <= 2 * 2 * (5 + 2) + 2 * 4 + 8


def test_pass_counter_calls_the_monitor_per_call():
    recorder = Recorder()
    counted = PassCounter(torch.nn.Identity(), recorder)
    counted(torch.zeros(3))
    counted(torch.zeros(3))
    assert recorder.passes == 2


def _progress_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if " done (batch " in line]


def test_no_progress_off_a_terminal_but_one_line_per_attack_and_eps_with_verbose():
    args = ["eval", "--attack", "fgsm,pgd", "--steps", "3", "--eps", "0,0.05,0.1,0.2", "--limit", "30", "--json", "-"]
    quiet = invoke(args)
    assert quiet.exit_code == 0, quiet.stderr
    assert _progress_lines(quiet.stderr) == [] and "ETA" not in quiet.stderr and "step " not in quiet.stderr
    verbose = invoke(args + ["--verbose"])
    assert verbose.exit_code == 0, verbose.stderr
    lines = _progress_lines(verbose.stderr)
    assert [line.split(" done")[0] for line in lines] == [
        "fgsm ε=0.05",
        "fgsm ε=0.1",
        "fgsm ε=0.2",
        "pgd ε=0.05",
        "pgd ε=0.1",
        "pgd ε=0.2",
    ]
    assert all("(batch 1/1," in line for line in lines) and lines[-1].endswith("100% · ETA 0:00")
    short = invoke(args + ["-v", "--batch-size", "20"])
    assert len(_progress_lines(short.stderr)) == 12  # two batches
