"""Rendering results: terminal tables, JSON, plots and image grids. Every renderer reads the same
plain-data objects (:class:`advgrad.core.results.RobustnessReport`,
:class:`advgrad.evaluation.generate.AttackSummary`)."""
