"""Aligning guides with learnt spaces.

* :func:`fit_similarity` — Procrustes with scaling: the rotation/reflection, uniform scale and
  translation that best map one 2-D point set onto another (used by the inverse-UMAP loss to move
  the guide into the frame of the epoch's UMAP plane).
* :class:`GuideProjector` — a scikit-learn estimator from embeddings (N x D) to positions in the
  guide plane (N x 2), fitted on training embeddings against each sample's guide point. The
  guided family's pyfunc returns each cell's guide position through it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.linalg import orthogonal_procrustes
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.cross_decomposition import PLSRegression
from sklearn.linear_model import RidgeCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.validation import check_is_fitted

from .guide import Guide


@dataclass(frozen=True)
class SimilarityTransform:
    """``x -> scale * (x - source_mean) @ rotation + target_mean`` (rotation may reflect)."""

    rotation: np.ndarray
    scale: float
    source_mean: np.ndarray
    target_mean: np.ndarray

    def apply(self, x: np.ndarray) -> np.ndarray:
        return self.scale * (np.asarray(x, float) - self.source_mean) @ self.rotation + self.target_mean


def fit_similarity(source: np.ndarray, target: np.ndarray, weights: np.ndarray | None = None) -> SimilarityTransform:
    """Least-squares similarity transform of ``source`` onto ``target`` (both K x d).

    Reflections are allowed: a guide and its mirror image encode the same neighbourhoods (every
    layout algorithm is reflection-invariant), so forbidding them would only worsen the fit.
    ``weights`` (K,) weights the points (e.g. by class size); ``None`` = equal."""
    a, b = np.asarray(source, float), np.asarray(target, float)
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(f"fit_similarity: source {a.shape} and target {b.shape} must be equal (K, d) arrays")
    w = np.ones(len(a)) if weights is None else np.asarray(weights, float)
    w = w / w.sum()
    ma, mb = w @ a, w @ b
    a0, b0 = a - ma, b - mb
    sw = np.sqrt(w)[:, None]
    r, sv_sum = orthogonal_procrustes(sw * a0, sw * b0)
    denom = float(((sw * a0) ** 2).sum())
    scale = float(sv_sum / denom) if denom > 0 else 1.0
    return SimilarityTransform(r, scale, ma, mb)


def guide_targets(labels: Sequence, guide: Guide) -> np.ndarray:
    """Row indices into ``guide.classes`` for ``labels`` given as class ids or int indices."""
    labels = np.asarray(labels)
    if labels.dtype.kind in "iu":
        if labels.size and (labels.min() < 0 or labels.max() >= len(guide)):
            raise ValueError(f"integer labels must index guide.classes (0..{len(guide) - 1}), "
                             f"got range {labels.min()}..{labels.max()}")
        return labels.astype(int)
    lookup = {c: i for i, c in enumerate(guide.classes)}
    missing = sorted({str(x) for x in labels if str(x) not in lookup})
    if missing:
        raise ValueError(f"labels {missing} are not classes of guide {guide.name!r} ({', '.join(guide.classes)})")
    return np.array([lookup[str(x)] for x in labels], dtype=int)


class GuideProjector(TransformerMixin, BaseEstimator):
    """Embeddings -> guide plane, fitted by regressing each training embedding onto its class's
    guide point.

    ``method="ridge"``: standardize + ridge regression (alpha by efficient leave-one-out CV over
    ``alphas``); a linear map is enough because the guided losses make class structure in the
    embedding follow the guide, and it cannot overfit 256 dimensions the way a kernel method
    could. ``method="pls"``: PLS regression with ``n_components`` latent components, for very
    few samples per dimension. Fitted: ``guide_`` (the guide), ``model_``, ``classes_``."""

    def __init__(self, method: str = "ridge", alphas: Sequence[float] = (1e-2, 1e-1, 1.0, 10.0, 100.0, 1000.0),
                 n_components: int = 8):
        self.method = method
        self.alphas = alphas
        self.n_components = n_components

    def fit(self, X, y, guide: Guide) -> "GuideProjector":
        X = np.asarray(X, dtype=float)
        if X.ndim != 2 or len(X) != len(y):
            raise ValueError(f"GuideProjector.fit: X must be (N, D) with N = len(y); got {X.shape} and {len(y)}")
        idx = guide_targets(y, guide)
        target = guide.coords[idx]
        if self.method == "ridge":
            model = make_pipeline(StandardScaler(), RidgeCV(alphas=tuple(self.alphas)))
        elif self.method == "pls":
            k = max(1, min(self.n_components, X.shape[1], len(X) - 1))
            model = PLSRegression(n_components=k, scale=True)
        else:
            raise ValueError(f"GuideProjector: unknown method {self.method!r}; use 'ridge' or 'pls'")
        model.fit(X, target)
        self.model_ = model
        self.guide_ = guide
        self.classes_ = list(guide.classes)
        self.n_features_in_ = X.shape[1]
        return self

    def transform(self, X) -> np.ndarray:
        check_is_fitted(self, "model_")
        X = np.asarray(X, dtype=float)
        if X.ndim != 2 or X.shape[1] != self.n_features_in_:
            raise ValueError(f"GuideProjector.transform: expected (N, {self.n_features_in_}) embeddings, got {X.shape}")
        return np.asarray(self.model_.predict(X), dtype=float).reshape(len(X), 2)

    def fit_transform(self, X, y=None, **fit_params) -> np.ndarray:
        return self.fit(X, y, **fit_params).transform(X)

    def nearest_class(self, X) -> list[str]:
        """The guide class whose point is nearest to each projected embedding."""
        pos = self.transform(X)
        d = np.linalg.norm(pos[:, None, :] - self.guide_.coords[None], axis=2)
        return [self.classes_[i] for i in d.argmin(1)]
