"""The three curve models of SMR (paper 001, Sec. III-A), registered in ``CURVES``.

Each is a small scikit-learn-style estimator: ``__init__`` stores hyper-parameters, ``fit(X, stage)``
takes the embeddings of one lineage and their stage index (0 = most immature) and sets
``control_points_`` — the curve as a Bézier path (:mod:`zoo.curves.path`), so ``evaluate`` and
``project`` are shared. ``t = 0`` is the most immature end, ``t = 1`` the most mature.

* ``fixed``: a line of fixed length through the mean of the lineage's embeddings along a
  pre-defined direction. Directions are columns of a seeded random orthonormal basis, one per
  lineage (``index``), so different lineages never share a direction and the relation between
  lineages cannot change during training. ``length=None`` fixes the length at the first fit to the
  distance between the first and last stage means (the paper gives no value; an absolute one has
  no meaning for an unnormalised embedding); later fits keep it.
* ``linear``: the line through the centroid of the stage means along their first right-singular
  vector (SVD of the centred means), oriented from immature to mature (the sign that makes the
  projected stage means increase with the stage index); its ends are the extreme projected stage
  means, so the targets span where the stages currently are.
* ``bezier``: the Bézier curve with the stage means (in maturity order) as control points; it passes
  through the first and last stage means.

Stages without a sample in ``X`` are skipped when building means (a small or limited training set).
"""

from __future__ import annotations

import numpy as np

from zoo.registry import Registry

from . import path

CURVES: Registry = Registry("curve")


def stage_means(X: np.ndarray, stage: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(present stage indices in order, their mean embeddings)."""
    X = np.asarray(X, dtype=float)
    stage = np.asarray(stage)
    if X.ndim != 2 or len(X) != len(stage):
        raise ValueError(f"fit needs X (N, D) and stage (N,), got {X.shape} and {stage.shape}")
    present = np.unique(stage)
    if len(present) < 2:
        raise ValueError(f"a curve needs embeddings of at least 2 stages of the lineage, got stages {present.tolist()}")
    return present, np.stack([X[stage == s].mean(0) for s in present])


class CurveModel:
    """Shared evaluation/projection of a fitted curve (``control_points_``: (K, D))."""

    control_points_: np.ndarray

    def _check_fitted(self) -> None:
        if not hasattr(self, "control_points_"):
            raise RuntimeError(f"{type(self).__name__} is not fitted: call fit(X, stage) first")

    def evaluate(self, t) -> np.ndarray:
        self._check_fitted()
        return path.evaluate(self.control_points_, np.atleast_1d(np.asarray(t, dtype=float)))

    def project(self, X) -> np.ndarray:
        """Position ``t̂`` in [0, 1] of the nearest curve point for every row of X."""
        self._check_fitted()
        return path.project(self.control_points_, X)

    def get_params(self) -> dict:
        return {}


@CURVES.register("fixed")
class FixedLine(CurveModel):
    def __init__(self, index: int = 0, length: float | None = None, seed: int = 0) -> None:
        self.index = index
        self.length = length
        self.seed = seed

    def get_params(self) -> dict:
        return {"index": self.index, "length": self.length, "seed": self.seed}

    @staticmethod
    def directions(dim: int, n: int, seed: int) -> np.ndarray:
        """``n`` orthonormal directions in R^dim (rows), reproducible from ``seed``."""
        if n > dim:
            raise ValueError(f"{n} fixed directions need an embedding of at least {n} dimensions, got {dim}")
        # A full square basis: direction k does not depend on how many are asked for.
        q, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((dim, dim)))
        return q.T[:n]

    def fit(self, X, stage) -> "FixedLine":
        present, means = stage_means(X, stage)
        X = np.asarray(X, dtype=float)
        if getattr(self, "direction_", np.zeros(0)).shape != (X.shape[1],):  # pre-defined: drawn once
            self.direction_ = self.directions(X.shape[1], self.index + 1, self.seed)[self.index]
        if self.length is not None:
            self.length_ = float(self.length)
        elif not hasattr(self, "length_"):  # first fit fixes the length (see the module docstring)
            self.length_ = float(np.linalg.norm(means[-1] - means[0])) or 1.0
        center = X.mean(0)
        half = 0.5 * self.length_ * self.direction_
        self.control_points_ = np.stack([center - half, center + half])
        return self


@CURVES.register("linear")
class SVDLine(CurveModel):
    def fit(self, X, stage) -> "SVDLine":
        present, means = stage_means(X, stage)
        centroid = means.mean(0)
        _, _, vt = np.linalg.svd(means - centroid, full_matrices=False)
        direction = vt[0]
        s = (means - centroid) @ direction
        if np.sum((present - present.mean()) * (s - s.mean())) < 0:  # orient immature -> mature
            direction, s = -direction, -s
        lo, hi = float(s.min()), float(s.max())
        if hi - lo < 1e-12:
            hi = lo + 1e-6
        self.direction_ = direction
        self.control_points_ = np.stack([centroid + lo * direction, centroid + hi * direction])
        return self


@CURVES.register("bezier")
class BezierCurve(CurveModel):
    def fit(self, X, stage) -> "BezierCurve":
        _, means = stage_means(X, stage)
        self.control_points_ = means
        return self


def create_curve(name: str, **kwargs) -> CurveModel:
    """The curve model registered as ``name`` (``fixed``, ``linear``, ``bezier``)."""
    return CURVES.create(name, **kwargs)
