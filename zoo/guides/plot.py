"""Guide pictures in the style of paper 000's Fig. 4: one point and one colour per class, a legend
in lineage/maturity order. Colours: one colour family per lineage, light (immature) to dark
(mature), so maturity series read as gradients; edges of the class graph drawn faintly."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from zoo.knowledge import load_ontology
from zoo.knowledge.ontology import Ontology

from .guide import Guide

# Figures are built with the object-oriented API (Figure(), not pyplot): headless, no global
# backend switch, nothing to close, safe in servers and notebooks alike.

# Lineage order of the ontology: neutrophil, blast, erythroid, basophil, eosinophil, monocyte, lymphoid, ...
_FAMILIES = ["Purples", "Greys", "Reds", "Blues", "Oranges", "Greens", "RdPu", "YlOrBr", "BuGn", "PuBu"]


def class_colours(classes: Sequence[str], ontology: Ontology | None = None) -> dict[str, tuple]:
    """Class -> RGBA: lineage picks the colour family, rank within the lineage the shade."""
    ont = ontology or load_ontology()
    ordered = ont.order([c for c in classes if c in ont])
    by_lineage: dict[str, list[str]] = {}
    for c in ordered:
        by_lineage.setdefault(ont.lineage(c), []).append(c)
    colours: dict[str, tuple] = {}
    lineage_index = {lin: i for i, lin in enumerate(ont.lineages)}  # stable colours across subsets
    for lineage, members in by_lineage.items():
        cmap = matplotlib.colormaps[_FAMILIES[lineage_index[lineage] % len(_FAMILIES)]]
        shades = np.linspace(0.45, 0.95, len(members)) if len(members) > 1 else [0.7]
        for c, s in zip(members, shades):
            colours[c] = cmap(float(s))
    fallback = matplotlib.colormaps["tab10"]
    for i, c in enumerate(c for c in classes if c not in colours):
        colours[c] = fallback(i % 10)
    return colours


def legend_order(classes: Sequence[str], ontology: Ontology | None = None) -> list[str]:
    ont = ontology or load_ontology()
    known = ont.order([c for c in classes if c in ont])
    return known + [c for c in classes if c not in ont]


def draw_guide(guide: Guide, ax, *, ontology: Ontology | None = None, edges: bool = True,
               labels: bool = False, colours: dict | None = None) -> None:
    """Draw ``guide`` into an existing axes (used by :func:`plot_guide` and :func:`plot_guides`)."""
    colours = colours or class_colours(guide.classes, ontology)
    if edges:
        for a, b in guide.edges:
            pa, pb = guide.position(a), guide.position(b)
            ax.plot([pa[0], pb[0]], [pa[1], pb[1]], color="0.8", lw=0.8, zorder=1)
    for c in legend_order(guide.classes, ontology):
        x, y = guide.position(c)
        ax.scatter([x], [y], s=70, color=colours[c], edgecolors="k", linewidths=0.5, zorder=2, label=c)
        if labels:
            ax.annotate(c.replace("_", " "), (x, y), xytext=(4, 4), textcoords="offset points", fontsize=6)
    ax.set_title(guide.name)
    ax.set_aspect("equal")
    ax.set_xlim(-1.15, 1.15)
    ax.set_ylim(-1.15, 1.15)
    ax.set_xticks([])
    ax.set_yticks([])


def plot_guide(guide: Guide, *, ontology: Ontology | None = None, edges: bool = True,
               labels: bool = False) -> Figure:
    """One guide with a legend on the right. Returns the figure (caller saves or logs it)."""
    fig = Figure(figsize=(7.5, 4.8))
    ax = fig.add_subplot()
    draw_guide(guide, ax, ontology=ontology, edges=edges, labels=labels)
    ax.legend(loc="center left", bbox_to_anchor=(1.02, 0.5), fontsize=7, frameon=False)
    fig.tight_layout()
    return fig


def plot_guides(guides: Sequence[Guide], *, ncols: int = 4, ontology: Ontology | None = None,
                edges: bool = False) -> Figure:
    """All guides side by side (the paper's Fig. 4), one shared legend."""
    if not guides:
        raise ValueError("plot_guides needs at least one guide")
    all_classes = list(dict.fromkeys(c for g in guides for c in g.classes))
    colours = class_colours(all_classes, ontology)
    nrows = -(-len(guides) // ncols)
    fig = Figure(figsize=(3 * ncols + 2.5, 3 * nrows))
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for ax, g in zip(axes.flat, guides):
        draw_guide(g, ax, ontology=ontology, edges=edges, colours=colours)
    for ax in list(axes.flat)[len(guides):]:
        ax.axis("off")
    handles = [Line2D([], [], ls="", marker="o", color=colours[c], markeredgecolor="k", label=c)
               for c in legend_order(all_classes, ontology)]
    fig.legend(handles=handles, loc="center right", fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0, 1 - 2.3 / (3 * ncols + 2.5), 1))
    return fig


def save_guide_artifacts(guide: Guide, out_dir: str | Path, stem: str = "guide") -> dict[str, Path]:
    """Write ``<stem>.csv`` (class, x, y) and ``<stem>.png`` (Fig. 4-style) into ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    csv = guide.save_csv(out_dir / f"{stem}.csv")
    fig = plot_guide(guide)
    png = out_dir / f"{stem}.png"
    fig.savefig(png, dpi=120, bbox_inches="tight")
    return {"csv": csv, "png": png}
