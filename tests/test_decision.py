"""Severity-aware decisions (zoo.evaluate.decision): the min-severity rule on hand examples, the
knowledge matrix, and the trade-off it makes on a calibrated toy."""

from __future__ import annotations

import numpy as np
import pytest

from conformal_toy import draw_labels, softmax
from zoo.evaluate import classification_metrics
from zoo.evaluate.decision import DECISIONS, decide, expected_severity, severity_matrix
from zoo.knowledge import DEFAULT_CLASSES

# rows = true class, columns = call; confusing a/b is mild, calling a c an a or b is costly
S = np.array([[0, 1, 5], [1, 0, 5], [4, 4, 0]], dtype=float)


def test_min_severity_by_hand():
    p = np.array([[0.35, 0.25, 0.40]])
    # call a: 0.35·0 + 0.25·1 + 0.40·4 = 1.85;  b: 0.35 + 0 + 1.6 = 1.95;  c: 0.35·5 + 0.25·5 = 3.0
    np.testing.assert_allclose(expected_severity(p, S), [[1.85, 1.95, 3.0]])
    assert decide(p, "argmax")[0] == 2
    assert decide(p, "min_severity", S)[0] == 0


def test_min_severity_agrees_with_argmax_for_a_sure_cell():
    p = np.array([[0.05, 0.05, 0.90], [0.9, 0.05, 0.05]])
    np.testing.assert_array_equal(decide(p, "min_severity", S), decide(p, "argmax"))


def test_ties_in_expected_severity_go_to_the_more_probable_class():
    p = np.array([[0.3, 0.3, 0.4], [0.25, 0.35, 0.40]])
    # row 0: a and b cost 1.9 each, equal probability -> the first; row 1: a 1.95, b 1.85 -> b
    np.testing.assert_array_equal(decide(p, "min_severity", S), [0, 1])
    equal = np.ones((3, 3)) - np.eye(3)  # every error costs 1: min severity == argmax
    q = np.array([[0.2, 0.5, 0.3]])
    assert decide(q, "min_severity", equal)[0] == 1


def test_a_doubtful_blast_is_called_blast_with_the_expert_matrix():
    classes = ["blast", "lymphocyte"]
    Sk = severity_matrix(classes)
    assert Sk[0, 1] == 5 and Sk[1, 0] == 4  # missing a blast is worse than over-calling one
    p = np.array([[0.45, 0.55]])
    # call blast: 0.55·4 = 2.2; call lymphocyte: 0.45·5 = 2.25
    assert decide(p, "argmax")[0] == 1
    assert decide(p, "min_severity", Sk)[0] == 0


def test_severity_matrix_for_classes_outside_the_fifteen_uses_the_lineage_rule():
    from zoo.tracking.evaluation import severity_for

    classes = ["blast", "segmented_neutrophil", "neutrophil", "platelet"]
    Sk = severity_matrix(classes)
    assert Sk.shape == (4, 4) and (np.diag(Sk) == 0).all()
    assert Sk[1, 2] == 2  # two neutrophil-lineage classes, no expert value: within a lineage
    assert Sk[3, 0] == 4  # across lineages
    np.testing.assert_array_equal(Sk, severity_for(classes).to_numpy(dtype=float))


def test_min_severity_trades_macro_f_for_lower_mcs_on_a_calibrated_toy():
    classes = list(DEFAULT_CLASSES)
    Sk = severity_matrix(classes)
    rng = np.random.default_rng(0)
    probs = softmax(1.5 * rng.normal(size=(8000, len(classes))))
    y = draw_labels(probs, rng)
    calls = {rule: decide(probs, rule, Sk) for rule in DECISIONS}
    m = {rule: classification_metrics(y, calls[rule], classes, severity=Sk) for rule in DECISIONS}
    # the Bayes rule for severity: lower MCS on data drawn from the probabilities it decides with …
    assert m["min_severity"]["mcs"] < m["argmax"]["mcs"]
    assert m["argmax"]["accuracy"] > m["min_severity"]["accuracy"]
    # … and lower expected MCS on every cell (cost of its call under its own probabilities)
    cost = expected_severity(probs, Sk)
    rows = np.arange(len(probs))
    assert (cost[rows, calls["min_severity"]] <= cost[rows, calls["argmax"]] + 1e-12).all()
    assert (calls["min_severity"] != calls["argmax"]).mean() > 0.05


def test_unknown_rule_lists_the_valid_ones_and_missing_severity_is_explained():
    p = np.array([[0.5, 0.5]])
    with pytest.raises(KeyError, match="argmax"):
        decide(p, "cheapest")
    with pytest.raises(ValueError, match="severity matrix"):
        decide(p, "min_severity")
    assert decide(np.zeros((0, 3)), "min_severity", S).shape == (0,)
