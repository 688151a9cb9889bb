"""Unweighted, undirected adjacency matrices from the expert matrices (paper 000, Sec. III-B).

The paper: "We transform the matrices into unweighted adjacency matrices by removing the lowest
entries, normalizing the entries into the range [0, 1] and subsequently rounding each entry to
either 0 or 1. Additionally, we propose to incorporate the maturity information by setting the
adjacency values of cells of the same cell lineage to 1."

Our reading, step by step (:func:`adjacency_from_matrix`):

1. **Orientation.** Adjacency means "pull these two classes together". For the *similarity*
   matrix that is a high value (easily confused). For the *severity* matrix it is a LOW value (a
   misclassification with little impact on the diagnosis, e.g. adjacent maturity stages), so the
   severity matrix is inverted first: ``v' = max + min - v`` over the off-diagonal entries.
2. **Diagonal ignored.** A class is not its own neighbour (the similarity diagonal is 5, the
   severity diagonal 0 — neither says anything about pairs), so it never enters the minimum, the
   normalization or the graph.
3. **Removing the lowest entries.** Entries equal to the off-diagonal minimum (similarity 1 =
   "impossible to confuse") become 0 and are excluded from the normalization. This is the only
   reading under which the step changes anything: if the removed entries stayed in the min-max
   range, removal followed by normalization would give exactly the same 0/1 matrix as no removal.
4. **Normalization** of the remaining entries to [0, 1] by min-max (so on the 1..5 scale:
   2 -> 0, 3 -> 1/3, 4 -> 2/3, 5 -> 1).
5. **Symmetrisation** (the matrices are true x predicted and not symmetric; the layout algorithms
   need an undirected graph) by the MEAN of the normalized A and A^T, before rounding. Mean rather
   than max: a symmetric pair keeps exactly the paper's decision, and an asymmetric pair gets an
   edge only if the two expert ratings *together* reach the threshold — max would let the more
   confusable direction alone decide and so systematically densify the graph.
6. **Rounding** at ``threshold`` (default 0.5, i.e. rounding to the nearer of 0/1; ties at exactly
   0.5 count as 1 — ``>=``, not numpy's round-half-to-even): similarity pairs rated 4 or 5 become
   edges, pairs rated 2 or 3 do not.
7. ``_mat`` variant: every pair of classes of the same ontology lineage gets adjacency 1.

The result is a symmetric 0/1 ``DataFrame`` with a zero diagonal, indexed by class id both ways.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from zoo.knowledge import load_matrix, load_ontology
from zoo.knowledge.ontology import Ontology

#: Which end of each matrix means "adjacent" (pull together).
HIGH_MEANS_ADJACENT = {"similarity": True, "severity": False}


def normalized_affinity(values: np.ndarray, *, high_means_adjacent: bool = True,
                        drop_lowest: bool = True) -> np.ndarray:
    """Steps 1-4 on one directed matrix: orient, drop the lowest entries, min-max to [0, 1].

    Returns a float matrix with a zero diagonal; dropped entries are 0."""
    m = np.asarray(values, dtype=float)
    if m.ndim != 2 or m.shape[0] != m.shape[1]:
        raise ValueError(f"adjacency needs a square matrix, got shape {m.shape}")
    k = m.shape[0]
    off = ~np.eye(k, dtype=bool)
    out = np.zeros_like(m)
    if k < 2:
        return out
    if not np.isfinite(m[off]).all():
        raise ValueError("the matrix has non-finite off-diagonal entries; fill them before building a graph")
    if not high_means_adjacent:
        m = m[off].max() + m[off].min() - m
    keep = off.copy()
    if drop_lowest:
        keep &= m > m[off].min()
    if not keep.any():  # every pair had the lowest value: nothing is adjacent
        return out
    lo, hi = m[keep].min(), m[keep].max()
    if hi > lo:
        out[keep] = (m[keep] - lo) / (hi - lo)
    else:  # one value left after dropping the lowest: all of them are the "high" end
        out[keep] = 1.0
    return out


def symmetrize(a: np.ndarray, how: str = "mean") -> np.ndarray:
    """Undirected weights from directed ones: ``(A + A^T) / 2`` (``mean``) or ``max(A, A^T)``."""
    a = np.asarray(a, dtype=float)
    if how == "mean":
        return (a + a.T) / 2.0
    if how == "max":
        return np.maximum(a, a.T)
    raise ValueError(f"symmetrize: unknown method {how!r}; use 'mean' or 'max'")


def same_lineage_mask(classes: Sequence[str], ontology: Ontology | None = None) -> np.ndarray:
    """Boolean K x K: True where two different classes share an ontology lineage."""
    ont = ontology or load_ontology()
    lin = np.array([ont.lineage(c) for c in classes], dtype=object)
    mask = lin[:, None] == lin[None, :]
    np.fill_diagonal(mask, False)
    return mask


def adjacency_from_matrix(
    matrix: pd.DataFrame,
    *,
    kind: str = "similarity",
    threshold: float = 0.5,
    drop_lowest: bool = True,
    symmetrize_by: str = "mean",
    maturity: bool = False,
    ontology: Ontology | None = None,
) -> pd.DataFrame:
    """0/1 symmetric adjacency (zero diagonal) from a true x predicted expert matrix.

    ``kind`` is ``"similarity"`` (high = adjacent) or ``"severity"`` (low = adjacent).
    ``maturity=True`` is the ``_mat`` variant (same lineage -> 1). See the module docstring."""
    if kind not in HIGH_MEANS_ADJACENT:
        raise ValueError(f"unknown matrix kind {kind!r}; valid kinds: {', '.join(HIGH_MEANS_ADJACENT)}")
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"threshold must be in (0, 1], got {threshold} (the paper rounds, i.e. 0.5)")
    if list(matrix.index) != list(matrix.columns):
        raise ValueError("the matrix must have the same class ids, in the same order, as index and columns")
    classes = [str(c) for c in matrix.index]
    weights = normalized_affinity(matrix.to_numpy(), high_means_adjacent=HIGH_MEANS_ADJACENT[kind],
                                  drop_lowest=drop_lowest)
    undirected = symmetrize(weights, symmetrize_by)
    adj = (undirected >= threshold - 1e-12).astype(np.int64)
    if maturity:
        adj[same_lineage_mask(classes, ontology)] = 1
    np.fill_diagonal(adj, 0)
    return pd.DataFrame(adj, index=pd.Index(classes, name="class"), columns=pd.Index(classes, name="class"))


def knowledge_adjacency(
    kind: str,
    classes: Sequence[str] | None = None,
    *,
    maturity: bool = False,
    threshold: float = 0.5,
    ontology: Ontology | None = None,
) -> pd.DataFrame:
    """Adjacency of the packaged ``similarity``/``severity`` matrix, restricted to ``classes``.

    The matrix is processed over ALL the classes it covers and the adjacency restricted AFTER:
    whether two classes are neighbours then depends on their own ratings and the expert scale,
    not on which other classes a dataset happens to contain (removing a class must not move the
    minimum or the min-max range for the others). Classes the matrix lacks raise a ``KeyError``
    naming them (see :func:`zoo.guides.create_guide` for ``unknown="drop"|"place"``)."""
    full = load_matrix(kind)
    adj = adjacency_from_matrix(full, kind=kind, threshold=threshold, maturity=maturity, ontology=ontology)
    if classes is None:
        return adj
    classes = list(classes)
    missing = [c for c in classes if c not in adj.index]
    if missing:
        raise KeyError(f"the {kind} matrix has no row/column for {missing}; it covers {', '.join(adj.index)}")
    return adj.loc[classes, classes]


def edges(adjacency: pd.DataFrame) -> list[tuple[str, str]]:
    """Undirected edges ``(a, b)`` with ``a`` before ``b`` in the adjacency's class order."""
    a = adjacency.to_numpy()
    names = list(adjacency.index)
    i, j = np.nonzero(np.triu(a, k=1))
    return [(names[x], names[y]) for x, y in zip(i, j)]
