"""Referral (zoo.evaluate.referral): set size and lineage rules, the risk–coverage curve and plot."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.figure import Figure

from zoo.evaluate.referral import (
    aurc, lineage_ids, plot_risk_coverage, refer, referral_metrics, risk_coverage, spans_lineages,
)

CLASSES = ["band_neutrophil", "segmented_neutrophil", "blast", "lymphocyte"]


def _sets(*rows):
    return np.array([[c in row for c in CLASSES] for row in rows], dtype=bool)


def test_lineages_come_from_the_ontology():
    lin = lineage_ids(CLASSES)
    assert lin[0] == lin[1]  # both neutrophil lineage
    assert len({lin[0], lin[2], lin[3]}) == 3  # blast and lymphocyte are lineages of their own


def test_refer_when_the_set_is_large_or_spans_two_lineages():
    lin = lineage_ids(CLASSES)
    sets = _sets(
        {"segmented_neutrophil"},                               # sure: keep
        {"band_neutrophil", "segmented_neutrophil"},            # maturity doubt in one lineage: keep at k=2
        {"blast", "lymphocyte"},                                # blast or lymphocyte: refer
        {"band_neutrophil", "segmented_neutrophil", "blast"},   # three classes: refer
    )
    np.testing.assert_array_equal(spans_lineages(sets, lin), [False, False, True, True])
    np.testing.assert_array_equal(refer(sets, lin, max_set_size=2), [False, False, True, True])
    np.testing.assert_array_equal(refer(sets, lin, max_set_size=1), [False, True, True, True])


def test_a_class_the_ontology_does_not_know_is_its_own_lineage():
    lin = lineage_ids(["blast", "mystery_cell"])
    assert lin[0] != lin[1]
    assert refer(np.array([[True, True]]), lin, max_set_size=5)[0]


def test_bad_operating_point_and_shapes_are_explained():
    lin = lineage_ids(CLASSES)
    with pytest.raises(ValueError, match="max_set_size must be >= 1"):
        refer(_sets({"blast"}), lin, 0)
    with pytest.raises(ValueError, match="must agree"):
        refer(np.ones((2, 3), dtype=bool), lin)


def test_referral_metrics():
    referred = np.array([True, False, False, True, False])
    correct = np.array([False, True, False, True, True])
    m = referral_metrics(referred, correct)
    assert m["referred_share"] == 0.4
    assert m["kept_accuracy"] == pytest.approx(2 / 3)
    assert m["referred_accuracy"] == 0.5


def test_risk_coverage_keeps_the_most_confident_first():
    correct = np.array([1, 0, 1, 1], dtype=bool)
    confidence = np.array([0.9, 0.3, 0.8, 0.5])
    curve = risk_coverage(correct, confidence)
    np.testing.assert_allclose(curve["share_kept"], [0.25, 0.5, 0.75, 1.0])
    np.testing.assert_allclose(curve["accuracy_kept"], [1.0, 1.0, 1.0, 0.75])
    assert aurc(curve) == pytest.approx(0.25 / 4)
    # a confidence that ranks errors first has a worse curve
    assert aurc(risk_coverage(correct, -confidence)) > aurc(curve)


def test_risk_coverage_plot_marks_the_operating_point():
    curve = risk_coverage(np.array([1, 0, 1, 1], dtype=bool), np.array([0.9, 0.3, 0.8, 0.5]))
    fig = plot_risk_coverage(curve, {"90 %, k=2": (0.75, 1.0), "95 %, k=1": (0.5, 1.0)}, operating_point="90 %, k=2")
    assert isinstance(fig, Figure)
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert "90 %, k=2 (default)" in texts and "95 %, k=1" in texts
