"""The vocabulary every layer speaks, importing nothing else of advgrad: errors and exit codes
(:mod:`~advgrad.core.errors`), ε values (:mod:`~advgrad.core.eps`), the per-norm geometry
(:mod:`~advgrad.core.geometry`, the only place that compares norm names) and the threat model over it
(:mod:`~advgrad.core.threat`), attack objectives (:mod:`~advgrad.core.losses`), targets, the input
gradient ∇ₓJ (:mod:`~advgrad.core.gradient`), seeding, numeric checks, text safe to print
(:mod:`~advgrad.core.text`) and the report's data model (:mod:`~advgrad.core.results`)."""
