"""Spatial maturity regression (paper 001): curves through the stages of a lineage in embedding
space, regression targets on them, projections onto them.

```python
from zoo.curves import CURVES, TARGETS, CurveSet, create_curve
line = create_curve("linear").fit(X, stage)       # stage: 0 = most immature
t_hat = line.project(X)                            # position on the curve, in [0, 1]
curves = CurveSet("bezier", "frequency", "blast+neutrophil,erythroid").fit(emb, y, classes)
```
Registries: ``CURVES`` (``fixed``, ``linear``, ``bezier``), ``TARGETS`` (``uniform`` Eq. 1,
``frequency`` Eq. 2). The losses are in :mod:`zoo.losses.smr`, the parametric t-SNE network in
:mod:`zoo.curves.tsne`.
"""

from .curve_set import CurveSet, decision_boundaries
from .lineages import DEFAULT_LINEAGES, Lineage, parse_lineages, resolve_lineages
from .models import CURVES, BezierCurve, CurveModel, FixedLine, SVDLine, create_curve
from .targets import TARGETS, frequency_targets, make_targets, uniform_targets

__all__ = [
    "CURVES", "TARGETS", "BezierCurve", "CurveModel", "CurveSet", "DEFAULT_LINEAGES", "FixedLine", "Lineage",
    "SVDLine", "create_curve", "decision_boundaries", "frequency_targets", "make_targets", "parse_lineages",
    "resolve_lineages", "uniform_targets",
]
