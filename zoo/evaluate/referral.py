"""Referral to an expert, from conformal prediction sets, and the risk–coverage curve.

```python
from zoo.evaluate.referral import refer, lineage_ids, risk_coverage, plot_risk_coverage
lin = lineage_ids(classes)                              # (C,) lineage index of every class
r = refer(sets, lin, max_set_size=2)                    # (N,) bool
curve = risk_coverage(correct, confidence)              # share kept vs accuracy of kept cells
fig = plot_risk_coverage(curve, points={"refer k=2, 90 %": (kept_share, kept_acc)})
```

A cell is referred when its prediction set holds more than ``max_set_size`` classes (the model
cannot narrow it down) or spans two lineages (e.g. {blast, lymphocyte}: a doubt a hematologist
must settle; {band, segmented neutrophil} is a maturity doubt within one lineage). The operating
point is (coverage level of the sets, ``max_set_size``); its share kept and the accuracy of the
kept cells are reported, and the curve shows the alternatives.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

DEFAULT_MAX_SET_SIZE = 2


def lineage_ids(classes: Sequence[str], ontology=None) -> np.ndarray:
    """(C,) integer lineage of every class (ontology lineage; a class the ontology does not know
    is its own lineage, so a set holding it and anything else spans two lineages)."""
    if ontology is None:
        from zoo.knowledge import load_ontology

        ontology = load_ontology()
    names = [ontology.lineage(c) if c in ontology else f"unknown:{c}" for c in classes]
    index = {name: i for i, name in enumerate(dict.fromkeys(names))}
    return np.array([index[n] for n in names], dtype=np.int64)


def spans_lineages(sets: np.ndarray, lineages: np.ndarray) -> np.ndarray:
    """(N,) bool: the set holds classes of two or more lineages."""
    sets = np.asarray(sets, dtype=bool)
    lineages = np.asarray(lineages, dtype=np.int64)
    if sets.ndim != 2 or sets.shape[1] != lineages.size:
        raise ValueError(f"sets (N, C) and lineages (C,) must agree: got {sets.shape} and {lineages.shape}")
    member = np.zeros((sets.shape[0], int(lineages.max(initial=-1)) + 1), dtype=bool)
    for c, lin in enumerate(lineages):
        member[:, lin] |= sets[:, c]
    return member.sum(axis=1) > 1


def refer(sets: np.ndarray, lineages: np.ndarray, max_set_size: int = DEFAULT_MAX_SET_SIZE) -> np.ndarray:
    """(N,) bool: refer the cell (set larger than ``max_set_size``, or spanning two lineages)."""
    k = int(max_set_size)
    if k < 1:
        raise ValueError(f"max_set_size must be >= 1 (1 = refer every non-singleton set), got {max_set_size!r}")
    sets = np.asarray(sets, dtype=bool)
    return (sets.sum(axis=1) > k) | spans_lineages(sets, lineages)


def referral_metrics(referred: np.ndarray, correct: np.ndarray, prefix: str = "") -> dict[str, float]:
    """Share referred, accuracy of the kept cells and of the referred ones (NaN when none)."""
    referred = np.asarray(referred, dtype=bool)
    correct = np.asarray(correct, dtype=bool)
    kept = ~referred
    return {
        f"{prefix}referred_share": float(referred.mean()) if referred.size else float("nan"),
        f"{prefix}kept_accuracy": float(correct[kept].mean()) if kept.any() else float("nan"),
        f"{prefix}referred_accuracy": float(correct[referred].mean()) if referred.any() else float("nan"),
    }


def risk_coverage(correct: Any, confidence: Any) -> pd.DataFrame:
    """Selective-classification curve: keep the most confident cells first; for every number kept,
    the share kept and the accuracy of the kept cells. Columns ``share_kept``, ``accuracy_kept``."""
    correct = np.asarray(correct, dtype=float)
    confidence = np.asarray(confidence, dtype=float)
    if correct.shape != confidence.shape or correct.ndim != 1:
        raise ValueError(f"correct and confidence must be 1-D of one length, got {correct.shape} and {confidence.shape}")
    if correct.size == 0:
        return pd.DataFrame({"share_kept": [], "accuracy_kept": []})
    order = np.argsort(-confidence, kind="stable")
    kept = np.arange(1, correct.size + 1)
    return pd.DataFrame({"share_kept": kept / correct.size, "accuracy_kept": np.cumsum(correct[order]) / kept})


def aurc(curve: pd.DataFrame) -> float:
    """Area under the risk (1 − accuracy of kept) – coverage curve; lower is better."""
    if len(curve) == 0:
        return float("nan")
    return float(np.mean(1.0 - curve["accuracy_kept"].to_numpy()))


def plot_risk_coverage(curve: pd.DataFrame, points: Mapping[str, tuple[float, float]] | None = None,
                       operating_point: str | None = None, title: str = "risk–coverage"):
    """Accuracy of the kept cells vs the share kept (confidence ranking), plus referral operating
    points ``{label: (share_kept, accuracy_kept)}``; ``operating_point`` names the default one."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.2, 4.0))
    ax.plot(curve["share_kept"], curve["accuracy_kept"], color="0.3", lw=1.5, label="keep most confident first")
    for label, (share, acc) in (points or {}).items():
        if not (np.isfinite(share) and np.isfinite(acc)):  # nothing kept: no accuracy to plot
            if label == operating_point:
                ax.text(0.98, 0.02, f"default {label}: every cell referred", transform=ax.transAxes,
                        ha="right", fontsize=7, color="tab:red")
            continue
        default = label == operating_point
        ax.scatter([share], [acc], s=60 if default else 25, marker="*" if default else "o", zorder=3,
                   color="tab:red" if default else "tab:blue")
        ax.annotate(label + (" (default)" if default else ""), (share, acc), fontsize=7,
                    xytext=(4, -10 if default else 4), textcoords="offset points")
    ax.set_xlabel("share of cells kept (not referred)")
    ax.set_ylabel("accuracy of kept cells")
    ax.set_xlim(0, 1.02)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left", fontsize=7)
    fig.tight_layout()
    return fig
