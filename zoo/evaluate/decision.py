"""Decision rules: which single class a cell is called, given its calibrated probabilities.

```python
from zoo.evaluate.decision import DECISIONS, decide, expected_severity, severity_matrix
S = severity_matrix(classes)                      # (C, C), rows = true, diagonal 0
idx = decide(probs, "min_severity", severity=S)   # argmin_j Σ_i p_i S_ij
```

* ``argmax``: the most probable class (the accuracy/macro-F optimum for calibrated probabilities).
* ``min_severity``: the Bayes decision under the severity costs — the class whose expected
  mis-classification severity Σ_i p_i S_ij (i = possible true class, j = the call) is smallest.
  It lowers MCS (the papers' severity-weighted error) at decision time, usually at some cost in
  macro-F: a doubtful blast/lymphocyte cell is called whatever is cheapest to be wrong about.

Severity comes from ``zoo.knowledge``: the expert matrix for the 15 classes of the guide papers;
classes outside them get the matrix's lineage rule (2 within a lineage, 4 across), as training's
MCS does (``zoo.tracking.evaluation.severity_for``).
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from zoo.registry import Registry

#: name -> fn(probs (N, C), severity (C, C) | None) -> (N,) class indices
DECISIONS: Registry = Registry("decision rule")


def severity_matrix(classes: Sequence[str]) -> np.ndarray:
    """(C, C) severity aligned with ``classes`` (rows = true, columns = predicted, diagonal 0): the
    matrix training's MCS uses (expert values; the lineage rule for classes outside the 15)."""
    from zoo.evaluate.metrics import severity_array
    from zoo.tracking.evaluation import severity_for  # imported here: zoo.tracking imports zoo.evaluate

    classes = [str(c) for c in classes]
    return severity_array(severity_for(classes), classes)


def expected_severity(probs: Any, severity: Any) -> np.ndarray:
    """(N, C): entry (n, j) = Σ_i p_ni S_ij, the expected severity of calling cell n class j."""
    p = np.asarray(probs, dtype=float)
    S = np.asarray(severity, dtype=float)
    if p.ndim != 2 or S.shape != (p.shape[1], p.shape[1]):
        raise ValueError(f"probs (N, C) and severity (C, C) must agree: got {p.shape} and {S.shape}")
    return p @ S


@DECISIONS.register("argmax")
def decide_argmax(probs: np.ndarray, severity: np.ndarray | None = None) -> np.ndarray:
    return np.asarray(probs).argmax(axis=1)


@DECISIONS.register("min_severity")
def decide_min_severity(probs: np.ndarray, severity: np.ndarray | None = None) -> np.ndarray:
    if severity is None:
        raise ValueError("decision 'min_severity' needs the severity matrix of the model's classes "
                         "(zoo.evaluate.decision.severity_matrix(classes))")
    cost = expected_severity(probs, severity)
    # Ties (e.g. all-zero severity rows) fall back to the most probable of the cheapest classes.
    cheapest = np.isclose(cost, cost.min(axis=1, keepdims=True), rtol=0, atol=1e-12)
    return np.where(cheapest, np.asarray(probs, dtype=float), -np.inf).argmax(axis=1)


def decide(probs: Any, rule: str = "argmax", severity: Any = None) -> np.ndarray:
    """(N,) class indices chosen by the rule ``rule`` (a name in :data:`DECISIONS`)."""
    fn: Callable = DECISIONS.get(rule)
    p = np.asarray(probs, dtype=float)
    if p.ndim != 2:
        raise ValueError(f"probs must be an (N, n_classes) matrix, got shape {p.shape}")
    if len(p) == 0:
        return np.zeros(0, dtype=int)
    return np.asarray(fn(p, None if severity is None else np.asarray(severity, dtype=float)), dtype=int)
