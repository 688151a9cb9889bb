"""How well the learnt curves order the cells: Spearman ρ between the curve position t̂ and the
known maturity, per lineage, and the Fig. 4 plots (zoo.curves.plot) — from test embeddings.

"Known maturity" is the manifest's ``maturity`` column: the true continuous maturity of every
synthetic cell, the ontology's stage ordinal on real data (PBC: PMY→MY→MMY→BNE→SNE = 0, ¼, ½, ¾, 1).
It is used for the cells whose class belongs to the ontology lineage of the series (a blast put
in front of a series has maturity 0 of its own lineage, not of this one); ``rho_stage`` ranks
every cell of the series, blast included, by its stage index.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .curve_set import CurveSet
from .plot import plot_maturity_projection


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.stats import spearmanr

    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 3 or np.ptp(a[ok]) == 0 or np.ptp(b[ok]) == 0:
        return float("nan")
    return float(spearmanr(a[ok], b[ok]).statistic)


def manifest_maturity(test_dataset, prepared) -> np.ndarray:
    """The manifest's ``maturity`` for every row of a CellDataset (NaN where unknown)."""
    manifest = prepared.manifest
    if "maturity" not in manifest.columns:
        return np.full(len(test_dataset), np.nan)
    lookup = {str(p): m for p, m in zip(prepared.image_paths(manifest), manifest["maturity"])}
    return np.array([lookup.get(str(p), np.nan) for p in test_dataset.paths], dtype=float)


def maturity_report(curves: CurveSet, test_emb: np.ndarray, test_y: np.ndarray, test_dataset=None, prepared=None,
                    *, title: str = "", seed: int = 0, prefix: str = "test_smr_") -> tuple[dict[str, float], dict[str, Any]]:
    """Metrics (``<prefix><lineage>_rho_maturity``, ``_rho_stage``, ``_curve_accuracy``,
    ``_borderline_rate``) and one Fig. 4 per lineage."""
    from zoo.knowledge import load_ontology

    ont = load_ontology()
    test_emb, test_y = np.asarray(test_emb), np.asarray(test_y)
    maturity = (manifest_maturity(test_dataset, prepared) if test_dataset is not None and prepared is not None
                else np.full(len(test_y), np.nan))
    metrics: dict[str, float] = {}
    figures: dict[str, Any] = {}
    for i, lin in enumerate(curves.series_):
        rows = np.flatnonzero(curves.class_series_[test_y] == i)
        if len(rows) == 0:
            continue
        t_hat = curves.project(test_emb[rows], lin.name)
        stage = curves.class_stage_[test_y[rows]]
        own = np.array([ont.lineage(curves.classes_[c]) == lin.name if curves.classes_[c] in ont else False
                        for c in test_y[rows]])
        m = f"{prefix}{lin.name}"
        metrics[f"{m}_rho_stage"] = _spearman(t_hat, stage)
        metrics[f"{m}_rho_maturity"] = _spearman(t_hat[own], maturity[rows][own])
        metrics[f"{m}_curve_accuracy"] = float((curves.stage_on_curve(t_hat, lin.name) == stage).mean())
        metrics[f"{m}_borderline_rate"] = float(curves.borderline(t_hat, lin.name).mean())
        thumbs = None
        if test_dataset is not None:
            targets = curves.target_points(lin.name)
            nearest = ((test_emb[rows][None, :, :] - targets[:, None, :]) ** 2).sum(-1).argmin(1)
            thumbs = [test_dataset.decode(int(rows[j]))[0].permute(1, 2, 0).numpy() for j in nearest]
        figures[lin.name] = plot_maturity_projection(
            t_hat, stage, lin.stages, curves.boundaries_[lin.name], curves.targets_[lin.name], thumbs,
            title=f"{title} — {lin.name} (ρ stage {metrics[f'{m}_rho_stage']:.2f})", seed=seed)
    return {k: v for k, v in metrics.items() if np.isfinite(v)}, figures
