"""Progress of a long run: which attack, which ε, which step, and how long it may still take.

The attack loops report nothing themselves and never synchronise with the host for it: the model
the sweep hands them is wrapped (:class:`PassCounter`) and every call of it — one per step of a
gradient attack, one per query of Square — calls :meth:`Monitor.on_pass`, plain Python with no
tensor in sight. Around each run of an attack at one ε the sweep calls :meth:`Monitor.begin` and
:meth:`Monitor.end`.

:class:`ProgressTracker` turns these events into text: a status line (for a terminal, redrawn at
most every :data:`MIN_INTERVAL` seconds) and, when asked, one line per finished attack × ε (for CI
logs). It knows no terminal library; the command line draws its lines. The clock is injected, so
the text can be tested.

The ETA leans high: the work is counted in model passes over one sample as each attack's
``cost_formula`` gives them (:mod:`advgrad.evaluation.cost`, an upper bound), a run that finished early
(early stop) counts as its whole budget, and the ETA is the budget left at the rate so far.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from torch import nn

MIN_INTERVAL = 0.2  # seconds between two redraws of the status line
CORRUPTION_UNIT = "severity"  # the unit of a run of a common corruption (its five severities)


class Monitor(Protocol):
    """What a sweep tells about its progress."""

    def begin(self, attack: str, eps: float | None, steps: int, samples: int, units: int, unit: str = "step") -> None:
        """A run of ``attack`` at ``eps`` (None: a minimal attack, all ε at once) on ``samples``
        samples starts: about ``steps`` model calls (``unit``: step, or query for a score
        attack; a few checking calls come on top), ``units`` sample-passes of budget."""

    def on_pass(self) -> None:
        """The model was called once (a step or a query)."""

    def end(self) -> None:
        """The run begun last has finished."""

    def next_batch(self) -> None:
        """A batch is finished; the runs that follow belong to the next one."""

    def skip(self, units: int) -> None:
        """Budget of work not run here (a batch restored by resume) that counts as done."""

    def note(self, text: str) -> None:
        """A word on the run begun last, shown beside its progress until it ends (branch and
        bound's verdicts so far)."""


class SilentMonitor:
    """The monitor of a sweep nobody watches: every event is ignored."""

    def begin(self, attack: str, eps: float | None, steps: int, samples: int, units: int, unit: str = "step") -> None:
        pass

    def on_pass(self) -> None:
        pass

    def end(self) -> None:
        pass

    def next_batch(self) -> None:
        pass

    def skip(self, units: int) -> None:
        pass

    def note(self, text: str) -> None:
        pass


class PassCounter(nn.Module):
    """Wraps a model; each call first tells ``monitor`` (a host-side counter, no tensor work)."""

    def __init__(self, model: nn.Module, monitor: Monitor):
        super().__init__()
        self.model = model
        self.monitor = monitor

    def forward(self, x):
        self.monitor.on_pass()
        return self.model(x)


def format_eta(seconds: float) -> str:
    """``0:07``, ``12:30``, ``2:05:00``."""
    seconds = max(0, int(round(seconds)))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


@dataclass
class _Run:
    attack: str
    eps: float | None
    steps: int
    samples: int
    units: int
    started: float
    unit: str = "step"
    calls: int = 0
    note: str = ""


class ProgressTracker:
    """Turns sweep events into lines.

    ``total`` is the whole run's budget in sample-passes (None: unknown, no ETA). ``status`` is
    called with the status line, at most every :data:`MIN_INTERVAL` seconds (and at each
    begin/end); ``finished`` with one line per finished run of an attack at one ε. ``batches``,
    when known, numbers the batches in the finished lines. ``clock`` gives seconds (monotonic).
    """

    def __init__(
        self,
        total: int | None,
        *,
        status: Callable[[str, float | None], None] | None = None,
        finished: Callable[[str], None] | None = None,
        batches: int | None = None,
        clock: Callable[[], float] = time.monotonic,
        eps_text: Callable[[float], str] = lambda eps: f"{eps:g}",
    ):
        self.total = total if total and total > 0 else None
        self.status = status
        self.finished = finished
        self.batches = batches
        self.clock = clock
        self.eps_text = eps_text
        self.started = clock()
        self.done = 0  # sample-passes of finished runs (their whole budget)
        self.batch = 0
        self.run: _Run | None = None
        self._last = float("-inf")

    # -- events -------------------------------------------------------------------------------

    def begin(self, attack: str, eps: float | None, steps: int, samples: int, units: int, unit: str = "step") -> None:
        self.run = _Run(attack, eps, max(1, steps), samples, units, self.clock(), unit=unit)
        self._draw(force=True)

    def on_pass(self) -> None:
        run = self.run
        if run is None:
            return
        run.calls += 1
        now = self.clock()
        if now - self._last >= MIN_INTERVAL:
            self._draw(now)

    def end(self) -> None:
        run = self.run
        if run is None:
            return
        self.done += run.units
        self.run = None
        now = self.clock()
        if self.finished is not None:
            self.finished(self.finished_line(run, now))
        self._draw(now, force=True)

    def next_batch(self) -> None:
        """A batch is done; the next runs belong to the next one."""
        self.batch += 1

    def skip(self, units: int) -> None:
        self.done += units

    def note(self, text: str) -> None:
        if self.run is not None:
            self.run.note = text
            self._draw()

    # -- text ---------------------------------------------------------------------------------

    def fraction(self) -> float | None:
        """Share of the budget spent (runs that finished early count whole), None without a total."""
        if self.total is None:
            return None
        current = 0.0
        if self.run is not None:
            current = self.run.units * min(self.run.calls / self.run.steps, 1.0)
        return min((self.done + current) / self.total, 1.0)

    def eta(self, now: float) -> float | None:
        """Seconds left at the rate so far; None before any work is measured or without a total."""
        fraction = self.fraction()
        elapsed = now - self.started
        if fraction is None or fraction <= 0 or elapsed <= 0:
            return None
        return elapsed * (1 - fraction) / fraction

    def status_line(self, now: float | None = None) -> str:
        """``pgd ε=8/255 · step 12/20 · 35% · ETA 0:41`` (what is known of it)."""
        now = self.clock() if now is None else now
        parts = []
        run = self.run
        if run is not None:
            parts.append(self._what(run))
            parts.append(run.note or f"{run.unit} {min(run.calls, run.steps):,}/{run.steps:,}")
        parts.extend(self._tail(now))
        return " · ".join(parts)

    def finished_line(self, run: _Run, now: float) -> str:
        """``pgd ε=8/255 done (batch 1/3, 256 attacked) in 2.3 s · 35% · ETA 0:41``."""
        what = self._what(run)
        where = f"batch {self.batch + 1}" + (f"/{self.batches}" if self.batches else "")
        verb = "corrupted" if run.unit == CORRUPTION_UNIT else "attacked"
        head = f"{what} done ({where}, {run.samples:,} {verb}) in {now - run.started:.1f} s"
        if run.note:
            head += f": {run.note}"
        return " · ".join([head, *self._tail(now)])

    def _what(self, run: _Run) -> str:
        return run.attack if run.eps is None else f"{run.attack} ε={self.eps_text(run.eps)}"

    def _tail(self, now: float) -> list[str]:
        fraction, eta = self.fraction(), self.eta(now)
        out = []
        if fraction is not None:
            out.append(f"{100 * fraction:.0f}%")
        if eta is not None:
            out.append(f"ETA {format_eta(eta)}")
        return out

    def _draw(self, now: float | None = None, force: bool = False) -> None:
        now = self.clock() if now is None else now
        if self.status is None or (not force and now - self._last < MIN_INTERVAL):
            return
        self._last = now
        self.status(self.status_line(now), self.fraction())
