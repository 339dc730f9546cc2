"""advgrad: adversarial examples and robustness evaluation for trained PyTorch classifiers.

The main entry points, each with a docstring (``help(advgrad.attack)``)::

    import advgrad
    model = advgrad.load_model()                          # the embedded digits CNN, or yours
    x, y = advgrad.load_data(limit=256)                   # x in [0, 1], y labels
    x_adv = advgrad.attack(model, x, y, "pgd", eps=8/255)
    report = advgrad.evaluate(model, x, y, attacks=["fgsm", "pgd"], eps=[0, 4/255, 8/255])
    advgrad.write_report(report, "report.md")

``advgrad.list_attacks()`` lists the attacks, ``advgrad.corrupt(x, "fog", 3)`` applies a common
corruption (``advgrad.list_corruptions()``; ``evaluate(..., corruptions="all")`` measures them),
``advgrad.ThreatModel`` is the ε-ball with its projection, ``advgrad.input_gradient`` computes ∇ₓJ.
They are loaded on first use, so ``import advgrad`` stays cheap; the modules below them (:mod:`advgrad.attacks`,
:mod:`advgrad.evaluation.sweep`, :mod:`advgrad.io`, :mod:`advgrad.report`) give the full power.
"""

from __future__ import annotations

import importlib as _importlib
from typing import Any as _Any

__version__ = "0.1.0"

# name → module that defines it; loaded on first access (PEP 562).
_EXPORTS = {
    "attack": "advgrad.api",
    "evaluate": "advgrad.api",
    "certify": "advgrad.api",
    "load_model": "advgrad.api",
    "load_data": "advgrad.api",
    "write_report": "advgrad.api",
    "list_attacks": "advgrad.attacks",
    "get_attack": "advgrad.attacks",
    "ThreatModel": "advgrad.core.threat",
    "RobustnessReport": "advgrad.core.results",
    "input_gradient": "advgrad.core.gradient",
    "corrupt": "advgrad.corruptions",
    "list_corruptions": "advgrad.corruptions",
    "render_markdown": "advgrad.report.markdown",
    "render_csv": "advgrad.report.csvfile",
    "render_junit": "advgrad.report.junit",
    "plot_report": "advgrad.report.plot",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> _Any:
    if name in _EXPORTS:
        return getattr(_importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'advgrad' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*(n for n in globals() if not n.startswith("_") and n != "annotations"), *__all__, "__version__"})
