"""The trust layer (zoo.evaluate.trust): output columns, settings at load/per call, persistence
as data, and the metrics every run with classes reports."""

from __future__ import annotations

import numpy as np
import pytest

from conformal_toy import calibrated_toy
from zoo.evaluate.trust import OUTPUT_SCHEMA, TrustLayer, trust_metrics

CLASSES = ["band_neutrophil", "segmented_neutrophil", "blast", "lymphocyte", "monocyte"]


@pytest.fixture(scope="module")
def toy():
    probs, y = calibrated_toy(1200, len(CLASSES), 2.5, seed=21)
    return probs[:600], y[:600], probs[600:], y[600:]


@pytest.fixture(scope="module")
def layer(toy):
    return TrustLayer.fit(CLASSES, toy[0], toy[1])


def test_columns_hold_sets_sizes_referral_and_the_min_severity_label(layer, toy):
    cols = layer.columns(toy[2])
    assert set(cols) == {name for name, _ in OUTPUT_SCHEMA}  # decision=argmax: the model keeps its label
    assert all(isinstance(s, list) and set(s) <= set(CLASSES) for s in cols["prediction_set"])
    np.testing.assert_array_equal(cols["set_size"], [len(s) for s in cols["prediction_set"]])
    assert cols["refer"].dtype == bool and 0 < cols["refer"].mean() < 1
    # a set over two lineages is always referred
    lineage = {"band_neutrophil": 0, "segmented_neutrophil": 0, "blast": 1, "lymphocyte": 2, "monocyte": 3}
    spans = np.array([len({lineage[c] for c in s}) > 1 for s in cols["prediction_set"]])
    assert cols["refer"][spans].all()


def test_coverage_and_decision_per_call_override_the_defaults(layer, toy):
    small = layer.columns(toy[2], coverage=0.8)["set_size"].mean()
    large = layer.columns(toy[2], coverage=0.97)["set_size"].mean()
    assert small < large
    cols = layer.columns(toy[2], decision="min_severity")
    np.testing.assert_array_equal(cols["label"], cols["label_min_severity"])
    idx = [CLASSES.index(c) for c in cols["label"]]
    np.testing.assert_allclose(cols["confidence"], toy[2][np.arange(len(idx)), idx])
    with pytest.raises(ValueError, match="coverage must be in"):
        layer.columns(toy[2], coverage=1.5)
    with pytest.raises(KeyError, match="min_severity"):
        layer.columns(toy[2], decision="cheapest")


def test_save_load_is_json_and_npz_and_load_settings_override(layer, toy, tmp_path):
    layer.save(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["conformal.json", "conformal.npz", "trust.json"]
    back = TrustLayer.load(tmp_path, settings={"coverage": 0.95, "decision": "min_severity"})
    assert back.settings == {"coverage": 0.95, "decision": "min_severity", "max_set_size": 2}
    same = TrustLayer.load(tmp_path)
    assert same.settings == layer.settings
    a, b = same.columns(toy[2]), layer.columns(toy[2])
    assert a["prediction_set"] == b["prediction_set"]
    np.testing.assert_array_equal(a["refer"], b["refer"])
    np.testing.assert_array_equal(back.columns(toy[2])["set_size"], layer.columns(toy[2], coverage=0.95)["set_size"])


def test_metrics_report_coverage_sizes_both_rules_and_referral(layer, toy):
    probs, y = toy[2], toy[3]
    metrics, figures = trust_metrics(probs, y, layer)
    for key in ("coverage_90", "set_size_90", "coverage_95", "set_size_95", "coverage_90_blast",
                "set_size_95_lymphocyte", "macro_f1_argmax", "mcs_argmax", "macro_f1_min_severity",
                "mcs_min_severity", "referred_share", "kept_accuracy", "aurc"):
        assert key in metrics, key
    assert metrics["coverage_95"] >= metrics["coverage_90"] >= 0.85
    assert metrics["set_size_95"] >= metrics["set_size_90"]
    assert metrics["mcs_min_severity"] <= metrics["mcs_argmax"] + 0.05
    # referring the doubtful cells leaves the kept ones more accurate
    argmax_acc = (probs.argmax(1) == y).mean()
    assert metrics["kept_accuracy"] > argmax_acc
    assert "plots/risk_coverage.png" in figures


def test_metrics_use_the_models_own_call_as_argmax(layer, toy):
    probs, y = toy[2], toy[3]
    wrong = np.array([CLASSES[(c + 1) % len(CLASSES)] for c in y])  # a model that is always wrong
    metrics, _ = trust_metrics(probs, y, layer, default_pred=wrong, per_class=False)
    assert metrics["macro_f1_argmax"] == 0.0
    assert "coverage_90_blast" not in metrics


def test_calibration_labels_may_be_class_ids_and_unknown_ones_are_named(toy):
    ids = np.array(CLASSES, dtype=object)[toy[1]]
    a = TrustLayer.fit(CLASSES, toy[0], ids)
    b = TrustLayer.fit(CLASSES, toy[0], toy[1])
    np.testing.assert_array_equal(a.conformal.calibration_scores_, b.conformal.calibration_scores_)
    with pytest.raises(ValueError, match="not model classes"):
        TrustLayer.fit(CLASSES, toy[0], np.array(["eosinophil"] * len(toy[1]), dtype=object))
