"""Folds: deterministic, order-independent, stratified, group-aware; the split convention."""

import numpy as np
import pandas as pd
import pytest

from zoo.data.datasets import stratified_subsample
from zoo.data.folds import assign_folds, split_folds


def _labels(counts: dict[str, int]) -> pd.Series:
    labels = [c for c, n in counts.items() for _ in range(n)]
    return pd.Series(labels, index=[f"img_{i:04d}.png" for i in range(len(labels))])


def test_deterministic_for_a_seed_and_seed_sensitive():
    y = _labels({"a": 60, "b": 36, "c": 12})
    f1, how = assign_folds(y, n_folds=6, seed=0)
    f2, _ = assign_folds(y, n_folds=6, seed=0)
    f3, _ = assign_folds(y, n_folds=6, seed=1)
    np.testing.assert_array_equal(f1, f2)
    assert (f1 != f3).any()
    assert how.startswith("StratifiedKFold(6)")


def test_independent_of_row_order():
    y = _labels({"a": 30, "b": 18})
    f, _ = assign_folds(y, n_folds=3, seed=4)
    perm = np.random.RandomState(0).permutation(len(y))
    g, _ = assign_folds(y.iloc[perm], n_folds=3, seed=4)
    assert dict(zip(y.index, f)) == dict(zip(y.index[perm], g))


def test_stratified_counts_per_fold():
    y = _labels({"a": 60, "b": 36, "c": 12})
    folds, _ = assign_folds(y, n_folds=6, seed=0)
    table = pd.crosstab(y.values, folds)
    assert (table.loc["a"] == 10).all() and (table.loc["b"] == 6).all() and (table.loc["c"] == 2).all()


def test_group_aware_when_enough_groups():
    y = _labels({"a": 120, "b": 120})
    groups = pd.Series([f"slide{i % 12}" for i in range(len(y))], index=y.index)
    folds, how = assign_folds(y, groups, n_folds=6, seed=0)
    assert how.startswith("StratifiedGroupKFold(6) over 12 groups")
    per_group = pd.Series(folds, index=y.index).groupby(groups).nunique()
    assert (per_group == 1).all()  # no slide straddles two folds
    assert len(set(folds)) == 6
    # fewer groups than folds: groups cannot be honoured, stratified instead (and said so)
    few = pd.Series(["Dataset 1", "Dataset 2"] * 120, index=y.index)
    _, how = assign_folds(y, few, n_folds=6, seed=0)
    assert "groups not used" in how


def test_tiny_classes_and_errors():
    y = _labels({"a": 3, "b": 2})
    folds, how = assign_folds(y, n_folds=4, seed=0)
    assert "too small to stratify" in how and sorted(set(folds)) == [0, 1, 2, 3]
    with pytest.raises(ValueError, match=">= 2"):
        assign_folds(y, n_folds=1)
    with pytest.raises(ValueError, match="cannot make 9 folds from 5"):
        assign_folds(y, n_folds=9)


def test_split_convention():
    df = pd.DataFrame({"image": [f"i{k}" for k in range(12)], "fold": list(range(6)) * 2})
    parts = split_folds(df, 5, 6)
    assert set(parts["test"]["fold"]) == {5} and set(parts["val"]["fold"]) == {0}
    assert set(parts["train"]["fold"]) == {1, 2, 3, 4}
    with pytest.raises(ValueError, match=r"out of range: this dataset has 6 folds \(0..5\)"):
        split_folds(df, 6, 6)


def test_stratified_subsample_keeps_cells_and_is_deterministic():
    y = _labels({"a": 300, "b": 60, "c": 6})
    df = pd.DataFrame({"image": y.index, "label": y.values})
    df["fold"], _ = assign_folds(y, n_folds=3, seed=0)
    sub = stratified_subsample(df, 60, seed=0)
    assert len(sub) == 60
    assert set(sub["label"]) == {"a", "b", "c"}
    assert set(zip(sub["label"], sub["fold"])) == set(zip(df["label"], df["fold"]))
    assert sub["image"].tolist() == stratified_subsample(df, 60, seed=0)["image"].tolist()
    assert stratified_subsample(df, None) is df and len(stratified_subsample(df, 10**6)) == len(df)
