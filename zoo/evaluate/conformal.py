"""Split conformal prediction sets with an adaptive score (APS / RAPS) and a class-conditional
(Mondrian) option, calibrated on held-out probabilities (the validation fold, never the test fold).

```python
from zoo.evaluate.conformal import SplitConformal
cp = SplitConformal(score="aps", mondrian=True).fit(val_probs, val_y)   # y: class indices
sets = cp.predict_set(test_probs, coverage=0.9)       # (N, C) bool; coverage chosen per call
cp.save(folder); SplitConformal.load(folder)          # conformal.json + conformal.npz, no pickle
```

Guarantee (split conformal, exchangeable calibration and test cells): P(y ∈ set) ≥ coverage
(marginal) — and, with ``mondrian=True``, P(y ∈ set | y = c) ≥ coverage for every class c
(label-conditional conformal, Vovk 2012) — whatever the quality of the probabilities. Better
probabilities only make the sets smaller. The sets here are the deterministic ("include the last
label") version, so coverage is ≥ the level, slightly conservative; the top class is always kept
(a set is never empty), which can only raise coverage.

Scores (every label y of a cell x gets one; a label is in the set when its score ≤ the threshold):

* ``aps`` (Romano, Sesia & Candès 2020): the probability mass of the labels ranked at or above y.
* ``raps`` (Angelopoulos et al. 2021): APS + ``lam`` · max(0, rank(y) − ``k_reg``): a penalty on
  labels far down the ranking, which keeps sets small when the tail of the probabilities is noise.

Threshold: the ⌈(n + 1)(1 − α)⌉-th smallest calibration score (n calibration cells of the class
for Mondrian; ∞, i.e. every label, when n is too small for the level — the honest answer).

Why not MAPIE (checked: MAPIE 1.6, ``SplitConformalClassifier(prefit=True)``). Our probabilities
come from the pyfunc, so MAPIE would wrap an identity "estimator" over the probability matrix,
which works for one fixed level, but (1) MAPIE 1.x has no label-conditional / Mondrian
classification (the 0.x ``MondrianCP`` was dropped in 1.0), and marrow classes are very imbalanced;
(2) the confidence level is fixed when the object is built, while our pyfunc picks the coverage at
load or per call; (3) its fitted state is a Python object (estimator + score object) with no public
way to export or restore the calibration as data, so registering it would need a pickle. What MAPIE
would compute is ~40 lines here (scores, one order statistic); the test suite checks these sets
against MAPIE's APS sets on the same data (tests/test_conformal_mapie.py).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from zoo.registry import Registry

FORMAT_VERSION = 1
JSON_FILE = "conformal.json"
NPZ_FILE = "conformal.npz"

#: name -> fn(probs (N, C), **params) -> (N, C) score of every label (lower = more conforming)
SCORES: Registry = Registry("conformal score")


def _ranked_mass(probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For every label: the probability mass of the labels ranked at or above it (ties broken by
    column order), and its 1-based rank."""
    order = np.argsort(-probs, axis=1, kind="stable")
    sorted_p = np.take_along_axis(probs, order, axis=1)
    cum = np.cumsum(sorted_p, axis=1)
    mass = np.empty_like(cum)
    rank = np.empty(probs.shape, dtype=np.int64)
    rows = np.arange(probs.shape[0])[:, None]
    mass[rows, order] = cum
    rank[rows, order] = np.arange(1, probs.shape[1] + 1)[None, :]
    return mass, rank


@SCORES.register("aps")
def aps_scores(probs: np.ndarray) -> np.ndarray:
    """Adaptive prediction sets: mass of the labels ranked at or above each label."""
    return _ranked_mass(probs)[0]


@SCORES.register("raps")
def raps_scores(probs: np.ndarray, lam: float = 0.01, k_reg: int = 2) -> np.ndarray:
    """Regularised APS: APS + lam · max(0, rank − k_reg)."""
    mass, rank = _ranked_mass(probs)
    return mass + float(lam) * np.maximum(0, rank - int(k_reg))


def conformal_quantile(scores: np.ndarray, coverage: float) -> float:
    """The ⌈(n + 1)·coverage⌉-th smallest of ``scores`` (∞ when that exceeds n)."""
    scores = np.sort(np.asarray(scores, dtype=float))
    n = scores.size
    k = math.ceil((n + 1) * coverage - 1e-9)  # the tolerance keeps (n+1)·0.9 = 90.00000001 at 90
    return float(scores[k - 1]) if 1 <= k <= n else math.inf


def check_coverage(coverage: Any) -> float:
    try:
        c = float(coverage)
    except (TypeError, ValueError):
        raise ValueError(f"coverage must be a number in (0, 1), got {coverage!r} (e.g. 0.9)") from None
    if not 0.0 < c < 1.0:
        raise ValueError(f"coverage must be in (0, 1) (e.g. 0.9 for 90 % of cells), got {coverage!r}")
    return c


def _check_probs(probs: Any, n_classes: int | None = None, name: str = "probs") -> np.ndarray:
    p = np.asarray(probs, dtype=float)
    if p.ndim != 2:
        raise ValueError(f"{name} must be an (N, n_classes) probability matrix, got shape {p.shape}")
    if n_classes is not None and p.shape[1] != n_classes:
        raise ValueError(f"{name} has {p.shape[1]} class columns; the calibration has {n_classes}")
    if not np.isfinite(p).all():
        raise ValueError(f"{name} holds NaN/inf")
    return p


class SplitConformal:
    """Split conformal calibration of class probabilities (scikit-learn style: hyper-parameters in
    ``__init__``, fitted state ends in ``_``).

    score: a name in :data:`SCORES` (``aps`` | ``raps``); mondrian: one threshold per true class;
    lam, k_reg: the RAPS penalty (ignored for APS).
    """

    def __init__(self, score: str = "aps", mondrian: bool = False, lam: float = 0.01, k_reg: int = 2):
        self.score = score
        self.mondrian = mondrian
        self.lam = lam
        self.k_reg = k_reg

    def _score_fn(self) -> Callable[[np.ndarray], np.ndarray]:
        fn = SCORES.get(self.score)  # unknown names list the valid ones
        if self.score == "raps":
            return lambda p: fn(p, lam=self.lam, k_reg=self.k_reg)
        return fn

    def scores(self, probs: np.ndarray) -> np.ndarray:
        """(N, C) conformity score of every label."""
        return self._score_fn()(_check_probs(probs, getattr(self, "n_classes_", None)))

    def fit(self, probs: Any, y: Any, n_classes: int | None = None) -> "SplitConformal":
        """Calibrate on held-out ``probs`` (N, C) and true class indices ``y`` (N,)."""
        p = _check_probs(probs)
        y = np.asarray(y)
        if y.ndim != 1 or y.shape[0] != p.shape[0]:
            raise ValueError(f"y must hold one class index per row of probs ({p.shape[0]}), got shape {y.shape}")
        if y.size == 0:
            raise ValueError("no calibration cells: pass the validation fold's probabilities and labels")
        if y.dtype.kind not in "iu" or y.min() < 0 or y.max() >= p.shape[1]:
            raise ValueError(f"y must be class indices in 0..{p.shape[1] - 1} (columns of probs), got {y[:5]}…")
        self.n_classes_ = int(n_classes or p.shape[1])
        s = self._score_fn()(p)
        self.calibration_scores_ = s[np.arange(len(y)), y].astype(np.float64)
        self.calibration_labels_ = y.astype(np.int64)
        return self

    def _fitted(self) -> None:
        if not hasattr(self, "calibration_scores_"):
            raise RuntimeError("SplitConformal is not fitted: call fit(val_probs, val_y) or load(folder)")

    def thresholds(self, coverage: float) -> np.ndarray:
        """(C,) score threshold of every class at ``coverage`` (one value repeated when marginal)."""
        self._fitted()
        coverage = check_coverage(coverage)
        if not self.mondrian:
            return np.full(self.n_classes_, conformal_quantile(self.calibration_scores_, coverage))
        return np.array([conformal_quantile(self.calibration_scores_[self.calibration_labels_ == c], coverage)
                         for c in range(self.n_classes_)])

    def predict_set(self, probs: Any, coverage: float = 0.9) -> np.ndarray:
        """(N, C) boolean membership of every class in every cell's prediction set."""
        self._fitted()
        p = _check_probs(probs, self.n_classes_)
        sets = self._score_fn()(p) <= self.thresholds(coverage)[None, :]
        if len(p):
            sets[np.arange(len(p)), p.argmax(axis=1)] = True  # never an empty set
        return sets

    def calibration_counts(self) -> np.ndarray:
        """(C,) calibration cells per class (a Mondrian class with < 1/α − 1 cells gets every label)."""
        self._fitted()
        return np.bincount(self.calibration_labels_, minlength=self.n_classes_)

    # -- persistence: data only ----------------------------------------------------------------
    def config(self) -> dict[str, Any]:
        return {"score": str(self.score), "mondrian": bool(self.mondrian), "lam": float(self.lam),
                "k_reg": int(self.k_reg)}

    def save(self, directory: str | Path) -> Path:
        self._fitted()
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        meta = {"format_version": FORMAT_VERSION, **self.config(), "n_classes": self.n_classes_,
                "n_calibration": int(self.calibration_scores_.size)}
        (directory / JSON_FILE).write_text(json.dumps(meta, indent=2))
        np.savez(directory / NPZ_FILE, scores=self.calibration_scores_, labels=self.calibration_labels_)
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> "SplitConformal":
        directory = Path(directory)
        if not (directory / JSON_FILE).is_file():
            raise FileNotFoundError(f"no conformal calibration in {directory} (missing {JSON_FILE})")
        meta = json.loads((directory / JSON_FILE).read_text())
        if int(meta.get("format_version", 0)) > FORMAT_VERSION:
            raise ValueError(f"{directory / JSON_FILE} has format {meta['format_version']}; this zoo reads up to "
                             f"{FORMAT_VERSION}: upgrade marrow-zoo")
        with np.load(directory / NPZ_FILE, allow_pickle=False) as data:
            scores, labels = data["scores"].astype(np.float64), data["labels"].astype(np.int64)
        obj = cls(score=meta["score"], mondrian=bool(meta["mondrian"]), lam=float(meta["lam"]),
                  k_reg=int(meta["k_reg"]))
        obj.n_classes_ = int(meta["n_classes"])
        obj.calibration_scores_, obj.calibration_labels_ = scores, labels
        return obj


def set_coverage(sets: np.ndarray, y: Any) -> np.ndarray:
    """(N,) bool: the true class index ``y`` is in the set."""
    y = np.asarray(y, dtype=np.int64)
    return np.asarray(sets, dtype=bool)[np.arange(len(y)), y]


def set_metrics(sets: np.ndarray, y: Any, classes: Sequence[str] | None = None, prefix: str = "") -> dict[str, float]:
    """Empirical coverage and mean set size, overall and per true class (``<prefix>coverage``,
    ``<prefix>set_size``, ``<prefix>coverage_<class>``, ``<prefix>set_size_<class>``)."""
    sets = np.asarray(sets, dtype=bool)
    y = np.asarray(y, dtype=np.int64)
    hit, size = set_coverage(sets, y), sets.sum(axis=1)
    out = {f"{prefix}coverage": float(hit.mean()), f"{prefix}set_size": float(size.mean())}
    names = list(classes) if classes is not None else [str(i) for i in range(sets.shape[1])]
    for c, name in enumerate(names):
        rows = y == c
        if rows.any():
            out[f"{prefix}coverage_{name}"] = float(hit[rows].mean())
            out[f"{prefix}set_size_{name}"] = float(size[rows].mean())
    return out
