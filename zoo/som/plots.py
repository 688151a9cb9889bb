"""SOM figures: the U-matrix with a class overlay (the thesis's Fig. 43/44/58) and hit maps per class.

Each returns a matplotlib ``Figure`` (log it with the run, or ``savefig``)."""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from matplotlib.figure import Figure


def plot_umatrix(umatrix: np.ndarray, bmu_coords: np.ndarray | None = None, labels: Sequence | None = None,
                 classes: Sequence | None = None, wrong: np.ndarray | None = None,
                 title: str = "U-matrix") -> Figure:
    """U-matrix (light = large distance = cluster border); optionally each sample drawn at its
    node as a class-coloured dot, with misclassified samples (``wrong``) ringed in red."""
    fig = Figure(figsize=(7, 6))
    ax = fig.subplots()
    im = ax.imshow(umatrix, cmap="bone", origin="upper", interpolation="nearest")
    fig.colorbar(im, ax=ax, label="mean distance to neighbours")
    if bmu_coords is not None and labels is not None:
        labels = np.asarray(labels)
        classes = list(classes) if classes is not None else list(np.unique(labels))
        cmap = _cmap(len(classes))
        jitter = np.random.default_rng(0).uniform(-0.3, 0.3, size=(len(labels), 2))
        for k, cls in enumerate(classes):
            m = labels == cls
            if m.any():
                ax.scatter(bmu_coords[m, 1] + jitter[m, 1], bmu_coords[m, 0] + jitter[m, 0], s=8,
                           color=cmap(k), label=str(cls), linewidths=0)
        if wrong is not None and np.asarray(wrong).any():
            w = np.asarray(wrong, dtype=bool)
            ax.scatter(bmu_coords[w, 1] + jitter[w, 1], bmu_coords[w, 0] + jitter[w, 0], s=30,
                       facecolors="none", edgecolors="red", linewidths=0.8, label="misclassified")
        ax.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.25, 1.0), markerscale=2)
    ax.set_title(title)
    ax.set_xlabel("column")
    ax.set_ylabel("row")
    fig.tight_layout()
    return fig


def plot_hit_maps(hits: np.ndarray, classes: Sequence, umatrix: np.ndarray | None = None) -> Figure:
    """One panel per class: how many of its samples each node wins (over the U-matrix in grey)."""
    n = len(classes)
    cols = min(5, n)
    rows = math.ceil(n / cols)
    fig = Figure(figsize=(2.6 * cols, 2.6 * rows))
    axes = np.atleast_1d(fig.subplots(rows, cols)).ravel()
    for k, ax in enumerate(axes):
        ax.set_xticks([]), ax.set_yticks([])
        if k >= n:
            ax.axis("off")
            continue
        if umatrix is not None:
            ax.imshow(umatrix, cmap="Greys", alpha=0.5, interpolation="nearest")
        h = np.ma.masked_equal(hits[k], 0)
        ax.imshow(h, cmap="viridis", interpolation="nearest")
        ax.set_title(f"{classes[k]} ({int(hits[k].sum())})", fontsize=8)
    fig.tight_layout()
    return fig


def _cmap(n: int):
    from matplotlib import colormaps

    return colormaps["tab20" if n > 10 else "tab10"]
