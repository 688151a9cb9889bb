"""2-D maps of embeddings (UMAP when umap-learn is importable, else PCA) for plots."""

from __future__ import annotations

import importlib.util
import logging
import warnings
from typing import Any

import numpy as np
from sklearn.decomposition import PCA

log = logging.getLogger(__name__)

METHODS = ("auto", "umap", "pca")


def umap_available() -> bool:
    return importlib.util.find_spec("umap") is not None


def reduce_2d(
    X: Any, method: str = "auto", random_state: int | None = 0, n_neighbors: int = 15, min_dist: float = 0.1
) -> tuple[np.ndarray, str]:
    """Project (N, D) embeddings to (N, 2). Returns the coordinates and the method used.

    "auto" = UMAP if umap-learn is installed (and N is large enough for its neighbour graph),
    else PCA.
    """
    if method not in METHODS:
        raise ValueError(f"unknown 2-D map method {method!r}: use one of {', '.join(METHODS)}")
    X = np.asarray(X, dtype=np.float32)
    if X.ndim != 2 or X.shape[0] < 2:
        raise ValueError(f"need a 2-D array with at least 2 rows to map, got shape {X.shape}")
    if X.shape[1] <= 2:  # already 2-D (or 1-D): nothing to reduce
        coords = X if X.shape[1] == 2 else np.column_stack([X[:, 0], np.zeros(len(X), dtype=X.dtype)])
        return coords, "identity"
    use_umap = method == "umap" or (method == "auto" and umap_available() and X.shape[0] > n_neighbors + 1)
    if method == "umap" and not umap_available():
        raise ImportError("method='umap' needs umap-learn: pip install umap-learn (or use method='pca')")
    if use_umap:
        from zoo.numba_cache import import_umap

        # Imported lazily (numba makes the import slow), with the same compiled kernels on disk as
        # the inverse-UMAP guides: compiled once per machine, not once per run (~15 s each).
        umap = import_umap()

        with warnings.catch_warnings():  # n_jobs/random_state note from umap on every call
            warnings.filterwarnings("ignore", message=".*n_jobs.*")
            reducer = umap.UMAP(
                n_components=2,
                n_neighbors=min(n_neighbors, X.shape[0] - 1),
                min_dist=min_dist,
                random_state=random_state,
            )
            return np.asarray(reducer.fit_transform(X)), "umap"
    return PCA(n_components=2, random_state=random_state).fit_transform(X), "pca"
