"""A report in, pass/fail and messages out: the named sanity checks (:mod:`~advgrad.verdicts.checks`),
robustness gates (:mod:`~advgrad.verdicts.gates`) and the comparison of two reports
(:mod:`~advgrad.verdicts.regressions`)."""
