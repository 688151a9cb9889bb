"""Regression targets on the curve, ``t_c in [0, 1]`` for the C stages of a lineage (paper 001).

* ``uniform`` (Eq. 1): ``t_c = c / (C - 1)``.
* ``frequency`` (Eq. 2): ``t_c = S_c / S_{C-1}`` with ``S_c = sum_{i=1..c} (log f_{i-1} + log f_i) / 2``
  and ``t_0 = 0``; ``f_c`` is the relative frequency of stage c in the (training) data, i.e. its
  count over all samples of the dataset.

Note on Eq. 2: taken literally, relative frequencies are < 1, every ``log f`` is negative, and the
ratio gives a *rarer* stage a *larger* share of [0, 1] — while the paper's text says rare classes
get a smaller range. We implement the equation as printed (it is what a reader can check) and
state the discrepancy here. A stage with no sample gets the smallest observed count (its log
would be -inf).
"""

from __future__ import annotations

import numpy as np

from zoo.registry import Registry

TARGETS: Registry = Registry("target")


@TARGETS.register("uniform")
def uniform_targets(counts) -> np.ndarray:
    """Eq. 1; ``counts`` only gives the number of stages."""
    n = len(counts)
    if n < 2:
        raise ValueError(f"targets need at least 2 stages, got {n}")
    return np.arange(n) / (n - 1)


@TARGETS.register("frequency")
def frequency_targets(counts, total: float | None = None) -> np.ndarray:
    """Eq. 2 from per-stage sample ``counts``; ``total`` = samples in the dataset (default: the sum)."""
    counts = np.asarray(counts, dtype=float)
    if len(counts) < 2:
        raise ValueError(f"targets need at least 2 stages, got {len(counts)}")
    if (counts < 0).any() or not (counts > 0).any():
        raise ValueError(f"stage counts must be >= 0 with at least one > 0, got {counts.tolist()}")
    counts = np.where(counts > 0, counts, counts[counts > 0].min())
    total = float(total) if total is not None else float(counts.sum())
    log_f = np.log(counts / total)
    steps = 0.5 * (log_f[:-1] + log_f[1:])
    cum = np.concatenate([[0.0], np.cumsum(steps)])
    if cum[-1] == 0:  # every stage has f = 1 (impossible with >= 2 populated stages): fall back to Eq. 1
        return uniform_targets(counts)
    return cum / cum[-1] + 0.0  # + 0.0: t_0 is 0, not -0


def make_targets(name: str, counts, total: float | None = None) -> np.ndarray:
    fn = TARGETS.get(name)
    return fn(counts) if name == "uniform" else fn(counts, total)
