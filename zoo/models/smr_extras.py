"""Extras ``smr``: the position of every cell on its lineage's learnt maturation curve
(spatial maturity regression, paper 001) beside the SVM's class.

Columns: ``lineage`` (the regressed series of the predicted class, "" for classes in none),
``maturity`` (projected position t̂ in [0, 1] on that series' curve; NaN outside the series) and
``borderline`` (t̂ within ``borderline_width`` of a decision boundary between two neighbouring
stages on the curve). The series is that of the SVM's decision (``label``): the model passes it
(``wants_labels``); called without it, the arg-max of the calibrated probabilities stands in.

Saved as data by :class:`zoo.curves.CurveSet`: ``smr_curves.json`` + ``smr_curves.npz``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from zoo.models.zoo_model import MODEL_EXTRAS, ModelExtras, UnsafeArtifactError

PREFIX = "smr_curves"
SCHEMA = [("lineage", "string"), ("maturity", "double"), ("borderline", "boolean")]


@MODEL_EXTRAS.register("smr")
class SMRExtras(ModelExtras):
    #: ask EmbeddingSVMModel.predict for the decided class names (``labels=``)
    wants_labels = True

    def __init__(self, curves):
        self.curves = curves

    def save(self, directory: Path) -> None:
        self.curves.save(directory, prefix=PREFIX)

    @classmethod
    def load(cls, directory: Path) -> "SMRExtras":
        from zoo.curves import CurveSet

        try:
            return cls(CurveSet.load(directory, prefix=PREFIX))
        except ValueError as exc:
            if "pickle" in str(exc).lower():  # object arrays would need pickle: refuse
                raise UnsafeArtifactError(f"{Path(directory) / (PREFIX + '.npz')}: {exc}") from None
            raise

    def columns(self, embeddings: np.ndarray, probs: np.ndarray, labels=None) -> dict[str, Any]:
        classes = self.curves.classes_
        if labels is not None:
            predicted = [str(c) for c in labels]
        else:
            predicted = [classes[i] for i in np.asarray(probs).argmax(1)] if len(probs) else []
        out = self.curves.predict(np.asarray(embeddings), predicted)
        return {"lineage": out["lineage"], "maturity": out["maturity"], "borderline": out["borderline"]}

    def output_schema(self) -> list[tuple[str, str]]:
        return list(SCHEMA)

    def config(self) -> dict[str, Any]:
        c = self.curves
        return {"curve": c.curve, "targets": c.targets, "lineages": [s.name for s in c.series_],
                "borderline_width": c.borderline_width}
