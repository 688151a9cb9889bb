"""One curve, its targets and its decision boundaries per regressed lineage: what SMR fits after
every epoch, what its losses read and what a trained model keeps for prediction.

``CurveSet(curve, targets, lineages).fit(X, y, classes)`` takes embeddings of *all* classes with
label indices into ``classes``; rows of classes outside the regressed series are ignored.

Decision boundaries (the red lines of the paper's Fig. 4) are thresholds on the curve position:
between neighbouring stages c and c + 1, the ``t`` that best separates the projected training
samples of the two (highest balanced accuracy; ties go to the threshold nearest the middle of the
two targets), kept in increasing order. A prediction is *borderline* when its ``t̂`` lies within
``borderline_width`` of one of them — the "samples at the border of two subsequent classes" of
the paper's discussion.

Saved as data: ``curves.json`` (settings, series, targets, boundaries) + ``curves.npz`` (control
points), read back with ``allow_pickle=False``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np

from .lineages import DEFAULT_LINEAGES, Lineage, resolve_lineages
from .models import CURVES, CurveModel
from .targets import TARGETS, make_targets

FORMAT_VERSION = 1


def decision_boundaries(t_hat: np.ndarray, stage: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """C - 1 increasing thresholds on t between neighbouring stages (see the module docstring)."""
    out = []
    for c in range(len(targets) - 1):
        mid = 0.5 * (targets[c] + targets[c + 1])
        a, b = t_hat[stage == c], t_hat[stage == c + 1]
        if len(a) == 0 or len(b) == 0:
            out.append(mid)
            continue
        values = np.unique(np.concatenate([a, b]))
        cands = np.concatenate([[mid], 0.5 * (values[:-1] + values[1:])]) if len(values) > 1 else np.array([mid])
        score = 0.5 * ((a[None, :] < cands[:, None]).mean(1) + (b[None, :] >= cands[:, None]).mean(1))
        best = np.flatnonzero(score >= score.max() - 1e-12)
        out.append(float(cands[best[np.abs(cands[best] - mid).argmin()]]))
    return np.maximum.accumulate(np.asarray(out, dtype=float))


class CurveSet:
    """Curves + targets + boundaries for every regressed lineage (scikit-learn style)."""

    def __init__(self, curve: str = "linear", targets: str = "uniform", lineages: str | Sequence[str] = DEFAULT_LINEAGES,
                 *, seed: int = 0, length: float | None = None, borderline_width: float = 0.05) -> None:
        self.curve = curve
        self.targets = targets
        self.lineages = lineages
        self.seed = seed
        self.length = length
        self.borderline_width = borderline_width
        CURVES.get(curve)
        TARGETS.get(targets)

    # -- fitting ------------------------------------------------------------------------------
    def _new_curve(self, index: int) -> CurveModel:
        if self.curve == "fixed":
            return CURVES.create("fixed", index=index, length=self.length, seed=self.seed)
        return CURVES.create(self.curve)

    def setup(self, classes: Sequence[str], ontology=None) -> "CurveSet":
        """Resolve the series among ``classes`` (once; ``fit`` calls it when needed)."""
        self.classes_ = list(classes)
        self.series_: list[Lineage] = resolve_lineages(self.lineages, self.classes_, ontology)
        self.curves_: dict[str, CurveModel] = {lin.name: self._new_curve(i) for i, lin in enumerate(self.series_)}
        # label index -> (series index, stage index); -1 where a class is in no series
        self.class_series_ = np.full(len(self.classes_), -1)
        self.class_stage_ = np.full(len(self.classes_), -1)
        for i, lin in enumerate(self.series_):
            for s, cid in enumerate(lin.stages):
                k = self.classes_.index(cid)
                self.class_series_[k], self.class_stage_[k] = i, s
        return self

    def fit(self, X: np.ndarray, y: np.ndarray, classes: Sequence[str] | None = None, ontology=None) -> "CurveSet":
        X = np.asarray(X, dtype=float)
        y = np.asarray(y)
        if classes is not None and (not hasattr(self, "classes_") or list(classes) != self.classes_):
            self.setup(classes, ontology)
        if not hasattr(self, "classes_"):
            raise ValueError("CurveSet.fit needs classes= the first time (label index -> class id)")
        counts_all = np.bincount(y, minlength=len(self.classes_))
        self.targets_: dict[str, np.ndarray] = {}
        self.boundaries_: dict[str, np.ndarray] = {}
        self.dim_ = X.shape[1]
        for i, lin in enumerate(self.series_):
            rows = self.class_series_[y] == i
            stage = self.class_stage_[y[rows]]
            counts = np.array([counts_all[self.classes_.index(c)] for c in lin.stages])
            self.targets_[lin.name] = make_targets(self.targets, counts, total=len(y))
            model = self.curves_[lin.name].fit(X[rows], stage)
            self.boundaries_[lin.name] = decision_boundaries(model.project(X[rows]), stage, self.targets_[lin.name])
        return self

    # -- reading ------------------------------------------------------------------------------
    def series_of(self, class_id: str) -> str | None:
        k = self.classes_.index(class_id) if class_id in self.classes_ else -1
        return self.series_[self.class_series_[k]].name if k >= 0 and self.class_series_[k] >= 0 else None

    def project(self, X: np.ndarray, lineage: str) -> np.ndarray:
        return self.curves_[lineage].project(X)

    def target_points(self, lineage: str) -> np.ndarray:
        return self.curves_[lineage].evaluate(self.targets_[lineage])

    def borderline(self, t_hat: np.ndarray, lineage: str) -> np.ndarray:
        b = self.boundaries_[lineage]
        if len(b) == 0:
            return np.zeros(len(t_hat), dtype=bool)
        return (np.abs(np.asarray(t_hat)[:, None] - b[None, :]) < self.borderline_width).any(1)

    def stage_on_curve(self, t_hat: np.ndarray, lineage: str) -> np.ndarray:
        """Stage index the curve position falls into (between the decision boundaries)."""
        return np.searchsorted(self.boundaries_[lineage], np.asarray(t_hat), side="right")

    def predict(self, X: np.ndarray, predicted_classes: Sequence[str]) -> dict[str, np.ndarray]:
        """``lineage`` (series of the predicted class, "" if none), ``maturity`` (t̂ on its curve,
        NaN if none) and ``borderline`` for every row."""
        X = np.asarray(X, dtype=float)
        n = len(X)
        lineage = np.array([self.series_of(str(c)) or "" for c in predicted_classes], dtype=object)
        maturity = np.full(n, np.nan)
        border = np.zeros(n, dtype=bool)
        for lin in self.series_:
            rows = lineage == lin.name
            if rows.any():
                t = self.project(X[rows], lin.name)
                maturity[rows] = t
                border[rows] = self.borderline(t, lin.name)
        return {"lineage": lineage, "maturity": maturity, "borderline": border}

    # -- data artifact ------------------------------------------------------------------------
    def save(self, directory: str | Path, prefix: str = "curves") -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        meta = {
            "format_version": FORMAT_VERSION,
            "curve": self.curve, "targets": self.targets, "lineages": self.lineages if isinstance(self.lineages, str)
            else ",".join(self.lineages), "seed": self.seed, "length": self.length,
            "borderline_width": self.borderline_width, "classes": self.classes_, "dim": int(self.dim_),
            "series": [{"name": lin.name, "stages": list(lin.stages),
                        "targets": self.targets_[lin.name].tolist(),
                        "boundaries": self.boundaries_[lin.name].tolist(),
                        "curve_params": {k: v for k, v in vars(self.curves_[lin.name]).items()
                                         if k.endswith("_") and k != "control_points_" and np.ndim(v) == 0}}
                       for lin in self.series_],
        }
        (directory / f"{prefix}.json").write_text(json.dumps(meta, indent=2))
        np.savez(directory / f"{prefix}.npz", **{f"{lin.name}__control_points": self.curves_[lin.name].control_points_
                                                 for lin in self.series_},
                 **{f"{lin.name}__direction": self.curves_[lin.name].direction_ for lin in self.series_
                    if hasattr(self.curves_[lin.name], "direction_")})

    @classmethod
    def load(cls, directory: str | Path, prefix: str = "curves") -> "CurveSet":
        directory = Path(directory)
        meta = json.loads((directory / f"{prefix}.json").read_text())
        if meta.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"{directory / (prefix + '.json')}: format_version {meta.get('format_version')} "
                             f"is not {FORMAT_VERSION} (saved by another version of marrow-zoo)")
        obj = cls(meta["curve"], meta["targets"], meta["lineages"], seed=meta["seed"], length=meta["length"],
                  borderline_width=meta["borderline_width"])
        obj.classes_ = list(meta["classes"])
        obj.dim_ = int(meta["dim"])
        obj.series_ = [Lineage(s["name"], tuple(s["stages"])) for s in meta["series"]]
        obj.class_series_ = np.full(len(obj.classes_), -1)
        obj.class_stage_ = np.full(len(obj.classes_), -1)
        obj.curves_, obj.targets_, obj.boundaries_ = {}, {}, {}
        with np.load(directory / f"{prefix}.npz", allow_pickle=False) as arrays:
            for i, s in enumerate(meta["series"]):
                for j, cid in enumerate(s["stages"]):
                    k = obj.classes_.index(cid)
                    obj.class_series_[k], obj.class_stage_[k] = i, j
                model = obj._new_curve(i)
                model.control_points_ = arrays[f"{s['name']}__control_points"]
                if f"{s['name']}__direction" in arrays:
                    model.direction_ = arrays[f"{s['name']}__direction"]
                for k, v in s.get("curve_params", {}).items():
                    setattr(model, k, v)
                obj.curves_[s["name"]] = model
                obj.targets_[s["name"]] = np.asarray(s["targets"], dtype=float)
                obj.boundaries_[s["name"]] = np.asarray(s["boundaries"], dtype=float)
        return obj
