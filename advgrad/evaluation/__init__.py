"""Evaluation: what a run measures and how its numbers are gathered.

- :mod:`~advgrad.evaluation.eval_config`: what one sweep runs (:class:`EvalAttack`, :class:`EvalConfig`)
  and :func:`~advgrad.evaluation.eval_config.plan_eval` / ``plan_certify``, the one place where the API
  and the commands turn their arguments into them.
- :mod:`~advgrad.evaluation.sweep`: batches × attacks × ε → a report; one module per part of a batch's
  work: :mod:`~advgrad.evaluation.attack_sweep` (an attack over the ε values),
  :mod:`~advgrad.evaluation.certified` (bounds and smoothing), :mod:`~advgrad.evaluation.corrupted`
  (common corruptions), and :mod:`~advgrad.evaluation.assemble` (the report from the summed tallies).
- :mod:`~advgrad.evaluation.run`: the run as the API and the commands execute it (its description, its
  saved state for resuming, its interruption).
- Counting and evidence: :mod:`~advgrad.evaluation.tally`, :mod:`~advgrad.evaluation.evidence`,
  :mod:`~advgrad.evaluation.randomized`, :mod:`~advgrad.evaluation.cost`; describing and resuming:
  :mod:`~advgrad.evaluation.run_description`, :mod:`~advgrad.evaluation.resume`;
  :mod:`~advgrad.evaluation.generate`: adversarial examples for a whole data source (``advgrad attack``).

``from advgrad.evaluation import EvalAttack, EvalConfig, evaluate`` gives the sweep itself; its
``evaluate`` is the low-level sweep, not :func:`advgrad.evaluate`.
"""

from advgrad.evaluation.eval_config import EXAMPLES_KEPT, EvalAttack, EvalConfig
from advgrad.evaluation.sweep import evaluate

__all__ = ["EXAMPLES_KEPT", "EvalAttack", "EvalConfig", "evaluate"]
