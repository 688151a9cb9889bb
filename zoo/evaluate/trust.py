"""What a model with classes adds so a hematologist can act on its answer: a conformal prediction
set, a severity-aware decision and a referral flag — one object, saved with the model as data.

```python
from zoo.evaluate.trust import TrustLayer, trust_metrics
layer = TrustLayer.fit(classes, val_probs, val_y)               # calibrated on the validation fold
cols = layer.columns(test_probs, coverage=0.95, decision="min_severity")
# {"label_min_severity", "prediction_set", "set_size", "refer"} (+ "label", "confidence" for min_severity)
layer.save(model_dir / "trust"); TrustLayer.load(model_dir / "trust")
metrics, figures = trust_metrics(test_probs, test_y, layer, default_pred=svm_labels)
```

Settings (a model's defaults, overridable at load with ``model_config`` or per call with
``params``): ``coverage`` (0.9: the level of the sets), ``decision`` (``argmax``: the model's own
call — for the SVM stage its decision, for a classifier the most probable class — or
``min_severity``), ``max_set_size`` (2: refer sets larger than this; sets spanning two lineages
are always referred).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from zoo.evaluate.conformal import SplitConformal, check_coverage, set_metrics
from zoo.evaluate.decision import DECISIONS, decide, severity_matrix
from zoo.evaluate.referral import (
    DEFAULT_MAX_SET_SIZE, aurc, lineage_ids, plot_risk_coverage, refer, referral_metrics, risk_coverage,
)

FORMAT_VERSION = 1
LAYER_FILE = "trust.json"
DEFAULT_SETTINGS = {"coverage": 0.9, "decision": "argmax", "max_set_size": DEFAULT_MAX_SET_SIZE}
REPORT_COVERAGES = (0.9, 0.95)
#: (column, MLflow type) the layer adds to a model's output; ``prediction_set`` is a list of class ids
OUTPUT_SCHEMA = [("label_min_severity", "string"), ("prediction_set", "array<string>"), ("set_size", "long"),
                 ("refer", "boolean")]
#: pyfunc params (name, MLflow type) a model with the layer accepts per call
PARAMS = [("coverage", "double"), ("decision", "string"), ("max_set_size", "long")]
PARAM_NAMES = tuple(name for name, _ in PARAMS)


def check_settings(settings: Mapping[str, Any] | None) -> dict[str, Any]:
    """Validated ``coverage``/``decision``/``max_set_size`` (unknown keys are not ours: ignored)."""
    out = dict(DEFAULT_SETTINGS)
    for key in DEFAULT_SETTINGS:
        if settings is not None and settings.get(key) is not None:
            out[key] = settings[key]
    out["coverage"] = check_coverage(out["coverage"])
    out["decision"] = str(out["decision"])
    DECISIONS.get(out["decision"])  # unknown names list the valid ones
    try:
        out["max_set_size"] = int(out["max_set_size"])
    except (TypeError, ValueError):
        raise ValueError(f"max_set_size must be a whole number >= 1, got {out['max_set_size']!r}") from None
    if out["max_set_size"] < 1:
        raise ValueError(f"max_set_size must be >= 1, got {out['max_set_size']}")
    return out


def level_name(coverage: float) -> str:
    """0.9 -> '90', 0.95 -> '95', 0.975 -> '97.5' (metric name suffixes)."""
    return f"{coverage * 100:.10g}"


class TrustLayer:
    """Conformal calibration + the severity matrix and lineages of the model's classes + defaults."""

    def __init__(self, classes: Sequence[str], conformal: SplitConformal, severity: Any, lineages: Any,
                 settings: Mapping[str, Any] | None = None):
        self.classes = [str(c) for c in classes]
        self.conformal = conformal
        self.severity = np.asarray(severity, dtype=float)
        self.lineages = np.asarray(lineages, dtype=np.int64)
        n = len(self.classes)
        if self.severity.shape != (n, n) or self.lineages.shape != (n,):
            raise ValueError(f"severity {self.severity.shape} / lineages {self.lineages.shape} do not match "
                             f"the {n} classes")
        if conformal.n_classes_ != n:
            raise ValueError(f"the conformal calibration has {conformal.n_classes_} classes, the model {n}")
        self.settings = check_settings(settings)

    @classmethod
    def fit(cls, classes: Sequence[str], probs: Any, y: Any, *, score: str = "aps", mondrian: bool = False,
            lam: float = 0.01, k_reg: int = 2, settings: Mapping[str, Any] | None = None,
            ontology=None) -> "TrustLayer":
        """Calibrate on held-out (validation-fold) ``probs`` (N, C) and ``y`` (class indices or ids)."""
        classes = [str(c) for c in classes]
        y = _indices(y, {c: i for i, c in enumerate(classes)})
        conformal = SplitConformal(score=score, mondrian=mondrian, lam=lam, k_reg=k_reg).fit(probs, y, len(classes))
        return cls(classes, conformal, severity_matrix(classes), lineage_ids(classes, ontology), settings)

    def with_settings(self, overrides: Mapping[str, Any] | None) -> dict[str, Any]:
        return check_settings({**self.settings, **{k: v for k, v in (overrides or {}).items() if v is not None}})

    def columns(self, probs: Any, **overrides: Any) -> dict[str, Any]:
        """Output columns for (N, C) probabilities: ``label_min_severity``, ``prediction_set`` (list
        of class ids), ``set_size``, ``refer``; with ``decision="min_severity"`` also ``label`` and
        ``confidence`` (the model keeps its own otherwise)."""
        s = self.with_settings(overrides)
        p = np.asarray(probs, dtype=float)
        names = np.asarray(self.classes, dtype=object)
        sets = self.conformal.predict_set(p, s["coverage"])
        cheapest = decide(p, "min_severity", self.severity)
        cols: dict[str, Any] = {
            "label_min_severity": names[cheapest],
            "prediction_set": [list(names[row]) for row in sets],
            "set_size": sets.sum(axis=1).astype(np.int64),
            "refer": refer(sets, self.lineages, s["max_set_size"]),
        }
        if s["decision"] != "argmax":
            chosen = decide(p, s["decision"], self.severity)
            cols["label"] = names[chosen]
            cols["confidence"] = p[np.arange(len(p)), chosen]
        return cols

    def params_schema(self) -> list[tuple[str, str, Any]]:
        """``(name, MLflow type, default)`` of the per-call params. Default None = the setting chosen
        at load: MLflow fills every param a call leaves out with its declared default, which would
        otherwise override ``model_config``."""
        return [(name, dtype, None) for name, dtype in PARAMS]

    def apply(self, frame: pd.DataFrame, **overrides: Any) -> pd.DataFrame:
        """``frame`` (a model's output, with one ``p_<class>`` column per class) plus the layer's
        columns; ``label``/``confidence`` replaced when the decision is ``min_severity``."""
        missing = [f"p_{c}" for c in self.classes if f"p_{c}" not in frame.columns]
        if missing:
            raise ValueError(f"the trust layer needs the model's class probabilities; output lacks {missing[:3]}")
        probs = frame[[f"p_{c}" for c in self.classes]].to_numpy(dtype=float)
        out = frame.copy()
        for name, values in self.columns(probs, **overrides).items():
            out[name] = pd.Series(list(values) if name == "prediction_set" else values, index=frame.index,
                                  dtype=object if name == "prediction_set" else None)
        return out

    # -- persistence: JSON + npz, no pickle --------------------------------------------------------
    def save(self, directory: str | Path) -> Path:
        directory = Path(directory)
        self.conformal.save(directory)
        meta = {"format_version": FORMAT_VERSION, "classes": self.classes, "settings": self.settings,
                "severity": self.severity.tolist(), "lineages": self.lineages.tolist()}
        (directory / LAYER_FILE).write_text(json.dumps(meta, indent=2))
        return directory

    @classmethod
    def load(cls, directory: str | Path, settings: Mapping[str, Any] | None = None) -> "TrustLayer":
        """Read a saved layer; ``settings`` (e.g. a pyfunc's ``model_config``) override its defaults."""
        directory = Path(directory)
        if not (directory / LAYER_FILE).is_file():
            raise FileNotFoundError(f"no trust layer in {directory} (missing {LAYER_FILE})")
        meta = json.loads((directory / LAYER_FILE).read_text())
        if int(meta.get("format_version", 0)) > FORMAT_VERSION:
            raise ValueError(f"{directory / LAYER_FILE} has format {meta['format_version']}; this zoo reads up to "
                             f"{FORMAT_VERSION}: upgrade marrow-zoo")
        merged = {**meta.get("settings", {}), **{k: v for k, v in (settings or {}).items() if v is not None}}
        return cls(meta["classes"], SplitConformal.load(directory), meta["severity"], meta["lineages"], merged)

    def config(self) -> dict[str, Any]:
        return {**self.conformal.config(), **self.settings,
                "n_calibration": int(self.conformal.calibration_scores_.size)}


def trust_metrics(probs: Any, y: Any, layer: TrustLayer, default_pred: Any = None,
                  coverages: Sequence[float] = REPORT_COVERAGES, per_class: bool = True,
                  title: str = "risk–coverage") -> tuple[dict[str, float], dict[str, Any]]:
    """Metrics of the layer on labelled cells (test fold, or external data):

    * ``coverage_<L>``, ``set_size_<L>`` (L = 90, 95) and, with ``per_class``, ``coverage_<L>_<class>``,
      ``set_size_<L>_<class>``;
    * ``macro_f1_argmax``, ``mcs_argmax``, ``macro_f1_min_severity``, ``mcs_min_severity`` (+ their
      balanced accuracy) — ``argmax`` is ``default_pred`` (the model's own call) when given;
    * at the layer's default operating point: ``referred_share``, ``kept_accuracy``,
      ``referred_accuracy``; ``aurc`` of the confidence-ranked risk–coverage curve.

    ``y``: class indices or ids. Returns (metrics, {"plots/risk_coverage.png": figure}).
    """
    from zoo.evaluate.metrics import classification_metrics

    p = np.asarray(probs, dtype=float)
    classes = layer.classes
    index = {c: i for i, c in enumerate(classes)}
    y_idx = _indices(y, index)
    out: dict[str, float] = {}
    for cov in coverages:
        sets = layer.conformal.predict_set(p, cov)
        m = set_metrics(sets, y_idx, classes if per_class else None, prefix="")
        lvl = level_name(cov)
        out.update({_level_key(key, lvl): value for key, value in m.items()})

    argmax = decide(p, "argmax") if default_pred is None else _indices(default_pred, index)
    cheapest = decide(p, "min_severity", layer.severity)
    for rule, pred in (("argmax", argmax), ("min_severity", cheapest)):
        m = classification_metrics(y_idx, pred, classes, severity=layer.severity)
        out[f"macro_f1_{rule}"] = m["macro_f1"]
        out[f"balanced_accuracy_{rule}"] = m["balanced_accuracy"]
        out[f"mcs_{rule}"] = m["mcs"]

    s = layer.settings
    label = cheapest if s["decision"] == "min_severity" else argmax
    correct = label == y_idx
    sets = layer.conformal.predict_set(p, s["coverage"])
    out.update(referral_metrics(refer(sets, layer.lineages, s["max_set_size"]), correct))
    confidence = p[np.arange(len(p)), label]
    curve = risk_coverage(correct, confidence)
    out["aurc"] = aurc(curve)

    points = {}
    for cov in (0.8, 0.9, 0.95):
        sets_c = layer.conformal.predict_set(p, cov)
        for k in (1, 2, 3):
            r = referral_metrics(refer(sets_c, layer.lineages, k), correct)
            points[f"{level_name(cov)} %, k={k}"] = (1.0 - r["referred_share"], r["kept_accuracy"])
    default = f"{level_name(s['coverage'])} %, k={s['max_set_size']}"
    if default not in points:
        points[default] = (1.0 - out["referred_share"], out["kept_accuracy"])
    fig = plot_risk_coverage(curve, points, operating_point=default, title=title)
    return out, {"plots/risk_coverage.png": fig}


def _indices(values: Any, index: Mapping[str, int]) -> np.ndarray:
    """Class indices of ``values`` given as indices or as class ids (unknown ids are named)."""
    arr = np.asarray(values)
    if arr.dtype.kind in "iu":
        return arr.astype(np.int64)
    unknown = sorted({str(v) for v in arr} - set(index))
    if unknown:
        raise ValueError(f"labels {unknown[:5]} are not model classes {list(index)}")
    return np.array([index[str(v)] for v in arr], dtype=np.int64)


def _level_key(key: str, lvl: str) -> str:
    """'coverage' -> 'coverage_90'; 'set_size_blast' -> 'set_size_90_blast'."""
    for base in ("coverage", "set_size"):
        if key == base:
            return f"{base}_{lvl}"
        if key.startswith(base + "_"):
            return f"{base}_{lvl}_{key[len(base) + 1:]}"
    return key


def class_probabilities(estimator: Any, X: Any, classes: Sequence[str]) -> np.ndarray:
    """(N, C) ``estimator.predict_proba(X)`` with columns in ``classes`` order (the estimator may
    know its classes as indices into ``classes`` or as ids, and only a subset: 0 for the others)."""
    fitted = list(estimator.classes_)
    cols = [int(c) if isinstance(c, (int, np.integer)) and not isinstance(c, bool) else list(classes).index(str(c))
            for c in fitted]
    out = np.zeros((len(X), len(classes)), dtype=np.float64)
    if len(X):
        out[:, cols] = estimator.predict_proba(X)
    return out


def fold_trust(run: Any, classes: Sequence[str], val: tuple[Any, Any], test: tuple[Any, Any, Any] | None, *,
               settings: Mapping[str, Any] | None = None, score: str = "aps", mondrian: bool = False,
               title: str = "risk–coverage") -> tuple[TrustLayer, dict[str, float]]:
    """One fold's trust layer and test metrics, for any family with classes.

    ``val`` = (probs, y) of the validation fold (the calibration set; never the test fold),
    ``test`` = (probs, y, the model's own calls) or None (the ``final`` fold). Logs the risk–coverage
    plot and ``trust.json`` to ``run``; returns the layer (to attach to the model) and the
    ``test_``-prefixed metrics (empty without a test fold).
    """
    layer = TrustLayer.fit(classes, val[0], val[1], score=score, mondrian=mondrian, settings=settings)
    if test is None or len(test[1]) == 0:
        return layer, {}
    metrics, figures = trust_metrics(test[0], test[1], layer, default_pred=test[2], title=title)
    for name, fig in figures.items():
        run.log_figure(fig, name)
    run.log_dict({"calibration": layer.config(), "test": metrics}, "trust.json")
    return layer, {f"test_{k}": v for k, v in metrics.items()}


def mapped_set_metrics(probs: Any, y_true: Sequence[str], layer: TrustLayer, translate: Any,
                       coverages: Sequence[float] = REPORT_COVERAGES) -> dict[str, float]:
    """Coverage and set size on a dataset with other classes (external validation): every class
    of a set is translated into the dataset's scheme (``translate(model_class) -> dataset class |
    None``; None = no counterpart, dropped), the set covers a cell when its true dataset class is
    among them. Also ``referred_share`` at the layer's default point (in the model's classes)."""
    p = np.asarray(probs, dtype=float)
    meaning = [translate(c) for c in layer.classes]
    y_true = [str(v) for v in y_true]
    out: dict[str, float] = {}
    for cov in coverages:
        sets = layer.conformal.predict_set(p, cov)
        mapped = [{meaning[j] for j in np.flatnonzero(row) if meaning[j] is not None} for row in sets]
        lvl = level_name(cov)
        out[f"coverage_{lvl}"] = float(np.mean([t in m for t, m in zip(y_true, mapped)])) if y_true else float("nan")
        out[f"set_size_{lvl}"] = float(np.mean([len(m) for m in mapped])) if y_true else float("nan")
    sets = layer.conformal.predict_set(p, layer.settings["coverage"])
    out["referred_share"] = float(refer(sets, layer.lineages, layer.settings["max_set_size"]).mean()) if len(p) else float("nan")
    return out
