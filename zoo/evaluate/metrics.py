"""Classification metrics of the papers: macro-F1, balanced accuracy, per-class scores,
mis-classification severity (MCS) and strict vs tolerant macro-F.

Definitions (C = confusion matrix, rows = true class, columns = predicted, n samples):

* ``macro_f1`` (= ``macro_f1_strict``): mean F1 over the classes that occur in ``y_true`` or
  ``y_pred`` (scikit-learn's default label set), so a class absent from both does not count as 0.
* ``mcs`` = (1/n)·Σ_ij S_ij·C_ij with the severity matrix S (diagonal treated as 0; paper 000,
  eq. 5); ``mcs_norm`` = mcs / max(S), in [0, 1]. Lower is better.
* Tolerant scores (paper 004, tolerance classes; T_ij = ontology.is_tolerable(class_i, class_j),
  always true on the diagonal): a prediction j of a sample of class i counts as correct when T_ij.
  Per class c: tolerant recall = Σ_j T_cj·C_cj / Σ_j C_cj (its samples predicted tolerably);
  tolerant precision = Σ_i T_ic·C_ic / Σ_i C_ic (its predictions that are tolerable for the true
  class); tolerant F1 their harmonic mean; ``macro_f1_tolerant`` the mean over the same classes as
  ``macro_f1``. This reads both the rows and the columns of the paper's tolerance matrix (Fig. 3A).
"""

from __future__ import annotations

from typing import Any, Protocol, Sequence

import numpy as np
import pandas as pd
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    confusion_matrix,
    f1_score,
    precision_recall_fscore_support,
)


class ToleranceOntology(Protocol):
    def is_tolerable(self, true_id: str, pred_id: str) -> bool: ...


def as_class_ids(y: Any, classes: Sequence[Any], name: str = "y") -> np.ndarray:
    """Class ids for ``y`` given either as ids or as integer indices into ``classes``."""
    arr = np.asarray(y)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    classes_arr = np.asarray(list(classes), dtype=object)
    ids_are_ints = all(isinstance(c, (int, np.integer)) for c in classes)
    if arr.dtype.kind in "iu" and not ids_are_ints:
        if arr.size and (arr.min() < 0 or arr.max() >= len(classes)):
            raise ValueError(
                f"{name} holds class indices outside 0..{len(classes) - 1} (got {arr.min()}..{arr.max()}) "
                f"for {len(classes)} classes"
            )
        return classes_arr[arr]
    out = arr.astype(object)
    unknown = sorted({str(v) for v in out} - {str(c) for c in classes})
    if unknown:
        raise ValueError(f"{name} holds labels not in classes: {unknown[:10]}; classes are {list(classes)}")
    return out


def severity_array(severity: Any, classes: Sequence[Any]) -> np.ndarray:
    """Severity matrix aligned to ``classes`` (rows true, columns predicted) with a zero diagonal."""
    if isinstance(severity, pd.DataFrame):
        missing = [c for c in classes if c not in severity.index or c not in severity.columns]
        if missing:
            raise ValueError(f"severity matrix has no row/column for classes {missing}")
        # np.array copies: pandas' copy-on-write hands out read-only views
        S = np.array(severity.loc[list(classes), list(classes)].to_numpy(dtype=float))
    else:
        S = np.array(severity, dtype=float)
        if S.shape != (len(classes), len(classes)):
            raise ValueError(
                f"severity array must be ({len(classes)}, {len(classes)}) aligned with classes, got {S.shape}"
            )
    if not np.isfinite(S).all():
        raise ValueError("severity matrix holds NaN/inf entries")
    np.fill_diagonal(S, 0.0)  # a correct prediction has no severity, whatever the file says
    return S


def tolerance_mask(ontology: ToleranceOntology, classes: Sequence[Any]) -> np.ndarray:
    T = np.array([[bool(ontology.is_tolerable(t, p)) for p in classes] for t in classes])
    np.fill_diagonal(T, True)
    return T


def _safe_div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    return np.divide(num, den, out=np.zeros_like(num, dtype=float), where=den > 0)


def classification_metrics(
    y_true: Any,
    y_pred: Any,
    classes: Sequence[Any],
    severity: Any = None,
    ontology: ToleranceOntology | None = None,
) -> dict[str, Any]:
    """All scores of one evaluation (see the module docstring for the definitions).

    ``y_true``/``y_pred``: class ids, or integer indices into ``classes``. ``classes`` fixes the
    order of the confusion matrix and the per-class entries. ``severity``: DataFrame indexed by
    class ids (index = true, columns = predicted) or an array aligned with ``classes``; adds ``mcs``
    and ``mcs_norm``. ``ontology``: anything with ``is_tolerable(true_id, pred_id)``; adds the
    tolerant scores.

    Returns a dict with floats ``macro_f1``, ``macro_f1_strict``, ``balanced_accuracy``,
    ``accuracy``, ``n``, [``mcs``, ``mcs_norm``], [``macro_f1_tolerant``, ``accuracy_tolerant``],
    ``per_class`` ({class: {precision, recall, f1, support[, precision_tolerant, recall_tolerant,
    f1_tolerant]}}), ``confusion_matrix`` (list of lists, rows = true) and ``classes``.
    """
    classes = list(classes)
    if len(set(map(str, classes))) != len(classes):
        raise ValueError(f"classes must be unique, got {classes}")
    yt = as_class_ids(y_true, classes, "y_true")
    yp = as_class_ids(y_pred, classes, "y_pred")
    if yt.shape != yp.shape:
        raise ValueError(f"y_true and y_pred differ in length: {len(yt)} vs {len(yp)}")
    if yt.size == 0:
        raise ValueError("no samples to evaluate (y_true is empty)")
    # scikit-learn wants one label type: compare as strings, keep the caller's ids for output.
    key = {str(c): i for i, c in enumerate(classes)}
    t_idx = np.array([key[str(v)] for v in yt])
    p_idx = np.array([key[str(v)] for v in yp])
    labels = np.arange(len(classes))
    present = np.union1d(t_idx, p_idx)

    C = confusion_matrix(t_idx, p_idx, labels=labels)
    prec, rec, f1, support = precision_recall_fscore_support(t_idx, p_idx, labels=labels, zero_division=0)
    out: dict[str, Any] = {
        "n": int(yt.size),
        "accuracy": float(accuracy_score(t_idx, p_idx)),
        "balanced_accuracy": float(_balanced_accuracy(t_idx, p_idx)),
        "macro_f1": float(f1_score(t_idx, p_idx, labels=present, average="macro", zero_division=0)),
    }
    out["macro_f1_strict"] = out["macro_f1"]
    per_class: dict[Any, dict[str, float]] = {
        c: {"precision": float(prec[i]), "recall": float(rec[i]), "f1": float(f1[i]), "support": int(support[i])}
        for i, c in enumerate(classes)
    }

    if severity is not None:
        S = severity_array(severity, classes)
        out["mcs"] = float((S * C).sum() / C.sum())
        max_s = S.max()
        out["mcs_norm"] = float(out["mcs"] / max_s) if max_s > 0 else 0.0

    if ontology is not None:
        T = tolerance_mask(ontology, classes)
        ok = (T * C).astype(float)
        rec_t = _safe_div(ok.sum(axis=1), C.sum(axis=1).astype(float))
        prec_t = _safe_div(ok.sum(axis=0), C.sum(axis=0).astype(float))
        f1_t = _safe_div(2 * prec_t * rec_t, prec_t + rec_t)
        out["macro_f1_tolerant"] = float(f1_t[present].mean())
        out["accuracy_tolerant"] = float(ok.sum() / C.sum())
        for i, c in enumerate(classes):
            per_class[c].update(
                precision_tolerant=float(prec_t[i]), recall_tolerant=float(rec_t[i]), f1_tolerant=float(f1_t[i])
            )

    out["per_class"] = per_class
    out["confusion_matrix"] = C.tolist()
    out["classes"] = classes
    return out


def _balanced_accuracy(t_idx: np.ndarray, p_idx: np.ndarray) -> float:
    import warnings

    with warnings.catch_warnings():  # "y_pred contains classes not in y_true": expected on small sets
        warnings.filterwarnings("ignore", message=".*y_pred contains classes not in y_true.*")
        return balanced_accuracy_score(t_idx, p_idx)


def scalar_metrics(metrics: dict[str, Any], prefix: str = "") -> dict[str, float]:
    """The float entries of :func:`classification_metrics` (what goes to a metrics logger)."""
    return {
        f"{prefix}{k}": float(v)
        for k, v in metrics.items()
        if isinstance(v, (int, float, np.floating, np.integer)) and not isinstance(v, bool)
    }


def per_class_summary(fold_metrics: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """Table 1 of 004: per class, mean and std over folds of precision and recall, strict and
    (when computed) tolerant, plus the summed support. ``fold_metrics``: one
    :func:`classification_metrics` result per fold. Columns ``<score>_mean`` / ``<score>_std``
    (std with ddof=0: the spread of the folds at hand, 0 for a single fold)."""
    if not fold_metrics:
        raise ValueError("per_class_summary needs the metrics of at least one fold")
    rows = [{"class": c, "fold": i, **v} for i, m in enumerate(fold_metrics) for c, v in m["per_class"].items()]
    frame = pd.DataFrame(rows)
    scores = [s for s in ("precision", "recall", "precision_tolerant", "recall_tolerant", "f1", "f1_tolerant")
              if s in frame.columns]
    grouped = frame.groupby("class", sort=False)
    out = pd.concat([grouped[scores].mean().add_suffix("_mean"), grouped[scores].std(ddof=0).add_suffix("_std"),
                     grouped["support"].sum()], axis=1)
    return out[[f"{s}_{k}" for s in scores for k in ("mean", "std")] + ["support"]]
