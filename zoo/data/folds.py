"""Cross-validation folds: stratified by class, group-aware when the dataset has enough groups.

The papers use 6 folds per CV iteration: fold k is the test set, fold (k+1) mod n the validation
set, the rest trains (:func:`split_folds`). Groups (slide, patient, imaging source) must not
straddle folds, or a model is tested on cells from slides it trained on.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from sklearn.model_selection import GroupKFold, KFold, StratifiedGroupKFold, StratifiedKFold

DEFAULT_FOLDS = 6


def assign_folds(
    labels: pd.Series,
    groups: pd.Series | None = None,
    n_folds: int = DEFAULT_FOLDS,
    seed: int = 0,
) -> tuple[np.ndarray, str]:
    """Fold number per row (same order as ``labels``) and a one-line description of the method.

    Deterministic for a seed and independent of row order (rows are ranked by their index, which
    ingest sets to the image path). Uses ``StratifiedGroupKFold`` when ``groups`` has at least
    ``n_folds`` distinct values, ``StratifiedKFold`` otherwise (rows without a group count as
    their own group)."""
    n_folds = int(n_folds)
    if n_folds < 2:
        raise ValueError(f"n_folds must be >= 2 (one fold is the test set, one validation), got {n_folds}")
    if len(labels) < n_folds:
        raise ValueError(f"cannot make {n_folds} folds from {len(labels)} images; lower n_folds")
    order = np.argsort(np.asarray(labels.index.astype(str)), kind="stable")
    y = np.asarray(labels.astype(str))[order]
    folds_sorted = np.empty(len(y), dtype=np.int64)
    n_groups = 0
    if groups is not None:
        g = groups.iloc[order] if isinstance(groups, pd.Series) else pd.Series(groups).iloc[order]
        n_groups = int(g.dropna().nunique())
    with warnings.catch_warnings():
        # Classes smaller than n_folds (a single basophil...) are fine: they land in fewer folds.
        warnings.filterwarnings("ignore", message="The least populated class", category=UserWarning)
        # sklearn refuses to stratify when no class fills every fold (tiny datasets): then plain
        # (group) k-fold, which is all such a dataset allows.
        small = np.unique(y, return_counts=True)[1].max() < n_folds
        if n_groups >= n_folds:
            filled = np.asarray(g.astype(object).where(g.notna(), [f"__row{i}" for i in range(len(g))]).astype(str))
            if small:
                splits = GroupKFold(n_splits=n_folds, shuffle=True, random_state=seed).split(y, groups=filled)
                how = f"GroupKFold({n_folds}) over {n_groups} groups, seed {seed} (classes too small to stratify)"
            else:
                splitter = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
                splits = splitter.split(np.zeros(len(y)), y, groups=filled)
                how = f"StratifiedGroupKFold({n_folds}) over {n_groups} groups, seed {seed}"
        else:
            if small:
                splits = KFold(n_splits=n_folds, shuffle=True, random_state=seed).split(y)
                how = f"KFold({n_folds}), seed {seed} (classes too small to stratify)"
            else:
                splits = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed).split(np.zeros(len(y)), y)
                how = f"StratifiedKFold({n_folds}), seed {seed}"
            if n_groups:
                how += f" (only {n_groups} group(s) < {n_folds} folds: groups not used)"
        for k, (_, test) in enumerate(splits):
            folds_sorted[test] = k
    folds = np.empty_like(folds_sorted)
    folds[order] = folds_sorted
    return folds, how


def check_fold(fold: int, n_folds: int) -> int:
    try:
        k = int(fold)
    except (TypeError, ValueError):
        raise ValueError(f"fold must be an integer 0..{n_folds - 1}, got {fold!r}") from None
    if not 0 <= k < n_folds:
        raise ValueError(f"fold {fold} out of range: this dataset has {n_folds} folds (0..{n_folds - 1})")
    return k


def split_folds(df: pd.DataFrame, fold: int, n_folds: int) -> dict[str, pd.DataFrame]:
    """``{"train", "val", "test"}``: test = fold k, val = fold (k+1) mod n, train = the rest."""
    k = check_fold(fold, n_folds)
    val = (k + 1) % n_folds
    return {
        "train": df[(df["fold"] != k) & (df["fold"] != val)],
        "val": df[df["fold"] == val],
        "test": df[df["fold"] == k],
    }
