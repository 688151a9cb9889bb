"""Paired per-fold differences to a baseline, on hand-computed examples."""

from __future__ import annotations

import math

import pytest

from zoo.evaluate.paired import paired_difference


def test_t_interval_on_a_hand_example_and_the_better_verdict():
    # differences 0.05, 0.04, 0.03, 0.04: mean 0.04, sd 0.008165, se 0.0040825, t(0.975, 3) = 3.182446
    d = paired_difference({0: 0.80, 1: 0.82, 2: 0.79, 3: 0.81}, {0: 0.75, 1: 0.78, 2: 0.76, 3: 0.77})
    assert d.n == 4 and d.mean == pytest.approx(0.04)
    assert d.low == pytest.approx(0.04 - 3.182446 * 0.0040825, abs=1e-5)
    assert d.high == pytest.approx(0.04 + 3.182446 * 0.0040825, abs=1e-5)
    assert d.verdict == "better" and d.describe("TML").endswith("better than TML")


def test_an_interval_containing_zero_says_no_difference_even_with_a_positive_mean():
    d = paired_difference([0.85, 0.70, 0.80, 0.72], [0.80, 0.74, 0.78, 0.73])  # +0.05 -0.04 +0.02 -0.01
    assert d.mean == pytest.approx(0.005) and d.low < 0 < d.high
    assert d.verdict == "no difference shown" and "better" not in d.describe("TML")


def test_worse_lower_is_better_one_fold_and_mismatched_folds():
    assert paired_difference([0.5, 0.6, 0.55], [0.7, 0.8, 0.76]).verdict == "worse"
    # for a loss (minimise) a lower candidate is the better one
    assert paired_difference([0.5, 0.6, 0.55], [0.7, 0.8, 0.76], maximize=False).verdict == "better"
    one = paired_difference([0.9], [0.1])
    assert math.isnan(one.low) and one.verdict == "no difference shown"
    with pytest.raises(ValueError, match=r"folds \[2\] are not in both"):
        paired_difference({0: 0.1, 1: 0.2, 2: 0.3}, {0: 0.1, 1: 0.2})


def test_bootstrap_interval_brackets_the_mean_and_agrees_on_a_clear_case():
    diffs_c = [0.81, 0.83, 0.80, 0.82, 0.84, 0.81]
    diffs_b = [0.75, 0.78, 0.76, 0.77, 0.79, 0.75]
    b = paired_difference(diffs_c, diffs_b, method="bootstrap", seed=0)
    assert b.low <= b.mean <= b.high and b.verdict == "better"
    with pytest.raises(ValueError, match="method must be one of t, bootstrap"):
        paired_difference([1.0], [0.0], method="z")


def test_compare_table_reports_paired_intervals_and_says_better_only_when_it_excludes_zero():
    import pandas as pd

    from zoo.families.compare import add_paired, markdown_report, summarize

    rows = []
    for fold, (tml, good, noisy) in enumerate([(0.70, 0.75, 0.80), (0.60, 0.66, 0.55), (0.65, 0.69, 0.68)]):
        rows += [{"family": "tml", "guide": "none (TML)", "loss": "triplet", "fold": fold, "seconds": 1.0,
                  "test_macro_f1": tml, "test_mcs": 1.0},
                 {"family": "guided", "guide": "kk_sim", "loss": "distance", "fold": fold, "seconds": 1.0,
                  "test_macro_f1": good, "test_mcs": 0.9},
                 {"family": "guided", "guide": "random", "loss": "distance", "fold": fold, "seconds": 1.0,
                  "test_macro_f1": noisy, "test_mcs": 1.0 + 0.1 * fold}]
    runs = pd.DataFrame(rows)
    table = add_paired(summarize(runs), runs).set_index("guide")
    assert table.loc["kk_sim", "f1_diff"] == pytest.approx(0.05) and table.loc["kk_sim", "f1_verdict"] == "better"
    assert table.loc["random", "f1_verdict"] == "no difference shown"  # +0.10, -0.05, +0.03
    assert table.loc["kk_sim", "mcs_verdict"] == "better"  # lower MCS every fold by exactly 0.1
    report = markdown_report(table.reset_index(), "synth", 3, {}, 60.0)
    assert "paired [95 % CI]" in report and "1 of 2 (kk_sim/distance)" in report
