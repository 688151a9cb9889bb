"""Paired per-fold comparison of a model against a baseline (a guide vs. TML).

Every configuration of a comparison is trained on the same folds, from the same initial weights,
so the fold-to-fold spread (which split is hard) is shared: the question "is the guide better?"
is about the *per-fold differences* ``candidate_k - baseline_k``, not about two overlapping
mean ± std bars. This module gives the mean difference with a 95 % interval over folds —
Student's t (default; exact under normal differences, and what few folds allow) or a bootstrap
(``scipy.stats.bootstrap``, BCa; needs more folds than a t interval to mean much) — and a verdict
that says "better" only when the interval excludes 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np

METHODS = ("t", "bootstrap")


@dataclass(frozen=True)
class PairedDifference:
    """``mean`` of ``candidate - baseline`` over ``n`` paired folds, ``low``..``high`` its interval
    at ``confidence``; ``verdict``: "better", "worse" or "no difference shown" (the direction of
    "better" follows ``maximize``)."""

    n: int
    mean: float
    low: float
    high: float
    confidence: float
    method: str
    maximize: bool = True
    differences: tuple[float, ...] = field(default_factory=tuple)

    @property
    def excludes_zero(self) -> bool:
        return math.isfinite(self.low) and math.isfinite(self.high) and (self.low > 0 or self.high < 0)

    @property
    def verdict(self) -> str:
        if not self.excludes_zero:
            return "no difference shown"
        higher = self.low > 0
        return "better" if higher == self.maximize else "worse"

    def describe(self, baseline: str = "baseline") -> str:
        """E.g. ``+0.031 [+0.012, +0.050] (t, 6 folds): better than TML``."""
        interval = f"[{self.low:+.3f}, {self.high:+.3f}]" if math.isfinite(self.low) else "[undefined]"
        verdict = self.verdict if self.verdict == "no difference shown" else f"{self.verdict} than {baseline}"
        return f"{self.mean:+.3f} {interval} ({self.method}, {self.n} folds): {verdict}"


def _pair(candidate: Mapping | Sequence, baseline: Mapping | Sequence) -> np.ndarray:
    if isinstance(candidate, Mapping) != isinstance(baseline, Mapping):
        raise TypeError("candidate and baseline must both be {fold: value} mappings or both sequences")
    if isinstance(candidate, Mapping):
        folds = sorted(set(candidate) & set(baseline), key=str)
        missing = sorted(set(candidate) ^ set(baseline), key=str)
        if missing:
            raise ValueError(f"folds {missing} are not in both results: a paired comparison needs the same "
                             "folds for the candidate and the baseline")
        c = np.array([candidate[k] for k in folds], dtype=float)
        b = np.array([baseline[k] for k in folds], dtype=float)
    else:
        c, b = np.asarray(candidate, dtype=float), np.asarray(baseline, dtype=float)
        if c.shape != b.shape:
            raise ValueError(f"candidate has {c.size} folds and baseline {b.size}: they must be paired fold by fold")
    if c.size == 0:
        raise ValueError("no folds to compare")
    diff = c - b
    if not np.isfinite(diff).all():
        raise ValueError(f"non-finite per-fold values: candidate {c.tolist()}, baseline {b.tolist()}")
    return diff


def paired_difference(candidate: Mapping | Sequence, baseline: Mapping | Sequence, *, confidence: float = 0.95,
                      method: str = "t", maximize: bool = True, n_resamples: int = 9999,
                      seed: int = 0) -> PairedDifference:
    """Mean per-fold difference ``candidate - baseline`` with its ``confidence`` interval.

    ``candidate``/``baseline``: ``{fold: metric}`` (paired by fold) or equal-length sequences in
    fold order. ``method``: "t" (Student's t over folds) or "bootstrap" (BCa, scipy). With one
    fold the interval is undefined (NaN: no verdict); folds that all differ by exactly the same
    amount give a zero-width interval."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    diff = _pair(candidate, baseline)
    n, mean = diff.size, float(diff.mean())
    if n < 2:
        low = high = float("nan")
    elif np.ptp(diff) == 0.0:
        low = high = mean  # no spread: every fold moved by exactly the same amount
    elif method == "t":
        from scipy import stats

        half = float(stats.t.ppf(0.5 + confidence / 2, df=n - 1) * diff.std(ddof=1) / math.sqrt(n))
        low, high = mean - half, mean + half
    else:
        from scipy import stats

        res = stats.bootstrap((diff,), np.mean, confidence_level=confidence, n_resamples=n_resamples,
                              method="BCa", random_state=np.random.default_rng(seed))
        low, high = float(res.confidence_interval.low), float(res.confidence_interval.high)
    return PairedDifference(n, mean, low, high, confidence, method, maximize, tuple(float(d) for d in diff))
