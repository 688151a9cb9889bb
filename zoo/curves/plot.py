"""Fig. 4 of paper 001 for one lineage: the test embeddings projected onto the learnt curve, one
row per class (immature at the top), the decision boundaries on the curve as red lines, the
regression targets as green marks, and under each target the cell whose embedding is nearest to
that position on the curve."""

from __future__ import annotations

from typing import Sequence

import numpy as np


def plot_maturity_projection(t_hat: np.ndarray, stage: np.ndarray, stage_names: Sequence[str],
                             boundaries: np.ndarray, targets: np.ndarray,
                             thumbnails: Sequence[np.ndarray | None] | None = None, title: str = "",
                             seed: int = 0):
    """``t_hat``/``stage``: curve position and stage index of each test cell; ``thumbnails``: one
    (H, W, 3) uint8 image (or None) per stage, drawn under its target."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(stage_names)
    has_thumbs = thumbnails is not None and any(t is not None for t in thumbnails)
    fig = plt.figure(figsize=(9, 0.55 * n + (2.6 if has_thumbs else 1.0)))
    grid = fig.add_gridspec(2 if has_thumbs else 1, 1, height_ratios=[0.55 * n, 1.3] if has_thumbs else [1],
                            hspace=0.6)
    ax = fig.add_subplot(grid[0])
    rng = np.random.default_rng(seed)
    colors = plt.get_cmap("viridis")(np.linspace(0.9, 0.1, max(n, 2)))
    for s in range(n):
        t = np.asarray(t_hat)[np.asarray(stage) == s]
        y = (n - 1 - s) + rng.uniform(-0.25, 0.25, size=len(t))
        ax.scatter(t, y, s=9, alpha=0.6, color=colors[s], edgecolors="none")
        ax.scatter([targets[s]], [n - 1 - s], marker="|", s=300, color="green", linewidths=2, zorder=3)
    for b in boundaries:
        ax.axvline(b, color="red", lw=1.2)
    ax.set_yticks(range(n), list(stage_names)[::-1], fontsize=8)
    ax.set_xlim(-0.08, 1.08)
    ax.set_ylim(-0.6, n - 0.4)
    ax.grid(axis="x", alpha=0.3)
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("position on the learnt curve (t̂)", fontsize=9)
    if has_thumbs:
        strip = fig.add_subplot(grid[1])
        strip.set_xlim(-0.08, 1.08)
        strip.set_ylim(0, 1)
        strip.axis("off")
        half = min(0.08, 0.5 / max(n, 1) * 0.9)
        for s, img in enumerate(thumbnails):
            if img is None:
                continue
            # centred under the target, kept inside the axis (targets at 0 and 1 sit at the edges)
            centre = float(np.clip(targets[s], -0.08 + half, 1.08 - half))
            strip.imshow(img, extent=(centre - half, centre + half, 0.05, 0.95), aspect="auto")
        strip.set_title("cell nearest to each class position on the curve", fontsize=8)
    return fig
