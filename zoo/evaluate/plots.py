"""Evaluation figures. Each function returns a ``matplotlib.figure.Figure`` built without pyplot
(no global figure registry to leak, no GUI backend: renders with Agg), ready for
``fig.savefig(...)`` or ``mlflow.log_figure(fig, "confusion_matrix.png")``.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure

from .embedding_map import reduce_2d
from .metrics import as_class_ids


def _ordered(classes: Sequence[Any], ontology: Any = None) -> list[Any]:
    """Classes by lineage then maturity when an ontology knows them all, else as given."""
    classes = list(classes)
    if ontology is None:
        return classes
    try:
        ordered = list(ontology.order(classes))
    except (KeyError, ValueError):  # a class the ontology does not know: keep the caller's order
        return classes
    return ordered if sorted(map(str, ordered)) == sorted(map(str, classes)) else classes


def class_colors(classes: Sequence[Any]) -> dict[Any, tuple]:
    cmap = colormaps["tab20" if len(classes) > 10 else "tab10"]
    return {c: cmap(i % cmap.N) for i, c in enumerate(classes)}


def plot_confusion_matrix(
    confusion: Any,
    classes: Sequence[Any],
    ontology: Any = None,
    title: str | None = None,
    annotate: bool | None = None,
    log_counts: bool = False,
) -> Figure:
    """Row-normalised confusion matrix (rows = true class) with a side bar of counts per true class
    (on a log axis with ``log_counts``, as Fig. 2 of 004 shows class sizes spanning decades).

    ``confusion``: counts (C x C, rows true, columns predicted, in ``classes`` order) — e.g.
    ``metrics["confusion_matrix"]``. Classes are re-ordered by lineage and maturity via
    ``ontology.order`` when given.
    """
    classes = list(classes)
    C = np.asarray(confusion, dtype=float)
    if C.shape != (len(classes), len(classes)):
        raise ValueError(f"confusion matrix shape {C.shape} does not match {len(classes)} classes")
    order = _ordered(classes, ontology)
    pos = {str(c): i for i, c in enumerate(classes)}
    idx = [pos[str(c)] for c in order]
    C = C[np.ix_(idx, idx)]
    support = C.sum(axis=1)
    R = np.divide(C, support[:, None], out=np.zeros_like(C), where=support[:, None] > 0)
    k = len(order)
    annotate = k <= 20 if annotate is None else annotate

    size = max(4.0, 0.45 * k + 2.5)
    fig = Figure(figsize=(size + 1.8, size), layout="constrained")
    grid = fig.add_gridspec(1, 3, width_ratios=[size, 0.25, 1.6])
    ax = fig.add_subplot(grid[0, 0])
    im = ax.imshow(R, cmap="Blues", vmin=0.0, vmax=1.0, interpolation="nearest")
    ax.set_xticks(range(k), labels=[str(c) for c in order], rotation=90, fontsize=8)
    ax.set_yticks(range(k), labels=[str(c) for c in order], fontsize=8)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(title or "Confusion matrix (row-normalised)")
    if annotate:
        for i in range(k):
            for j in range(k):
                if C[i, j] > 0:
                    ax.text(j, i, f"{R[i, j]:.2f}", ha="center", va="center", fontsize=6,
                            color="white" if R[i, j] > 0.5 else "black")
    fig.colorbar(im, cax=fig.add_subplot(grid[0, 1]), label="fraction of true class")
    bar = fig.add_subplot(grid[0, 2])
    bar.barh(range(k), support, color="0.55")
    bar.set_ylim(k - 0.5, -0.5)  # same top-to-bottom order as the matrix rows
    bar.set_yticks(range(k), labels=[])
    bar.set_xlabel("images (log scale)" if log_counts else "images (true class)")
    if log_counts and support.max() > 0:
        bar.set_xscale("log")
        bar.set_xlim(left=0.8)
    for i, n in enumerate(support):
        bar.text(n, i, f" {int(n)}", va="center", fontsize=7)
    bar.spines[["top", "right"]].set_visible(False)
    return fig


def plot_embedding_map(
    embeddings: Any,
    labels: Any,
    classes: Sequence[Any],
    method: str = "auto",
    ontology: Any = None,
    title: str | None = None,
    random_state: int | None = 0,
    coords: Any = None,
) -> Figure:
    """Scatter of a 2-D map of ``embeddings`` (UMAP if available, else PCA), coloured by class.

    ``labels``: class ids or indices into ``classes``. Pass ``coords`` (N, 2) to plot an existing
    map (e.g. a 2-D embedding) without reducing again.
    """
    classes = list(classes)
    ids = as_class_ids(labels, classes, "labels")
    if coords is None:
        coords, used = reduce_2d(embeddings, method=method, random_state=random_state)
    else:
        coords, used = np.asarray(coords, dtype=float), "given"
    if len(coords) != len(ids):
        raise ValueError(f"{len(coords)} points but {len(ids)} labels")
    order = _ordered(classes, ontology)
    colors = class_colors(order)
    fig = Figure(figsize=(8.5, 6.0), layout="constrained")
    ax = fig.add_subplot()
    str_ids = np.array([str(v) for v in ids])
    for c in order:
        m = str_ids == str(c)
        if m.any():
            ax.scatter(coords[m, 0], coords[m, 1], s=8, alpha=0.75, color=colors[c], label=f"{c} ({m.sum()})",
                       linewidths=0)
    ax.set_title(title or f"Embeddings ({used.upper()})")
    ax.set_xlabel(f"{used} 1")
    ax.set_ylabel(f"{used} 2")
    ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=7, markerscale=2, frameon=False)
    return fig
