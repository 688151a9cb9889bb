"""The family layer without training: registry, parameters, severity for foreign classes, the
guide comparison's table and report."""

import numpy as np
import pandas as pd
import pytest

from zoo.families import FAMILIES
from zoo.families.compare import markdown_report, summarize
from zoo.families.params import resolve_config
from zoo.tracking.evaluation import severity_for
from zoo.knowledge import DEFAULT_CLASSES, load_matrix
from zoo.registry import UnknownNameError


def test_families_registry_lists_valid_names():
    assert {"tml", "guided"} <= set(FAMILIES.names())
    with pytest.raises(UnknownNameError, match="Valid familys: .*guided.*tml"):
        FAMILIES.get("smr-typo")


@pytest.mark.parametrize("raw,needle", [
    ({"guide": "fr_sim_matt"}, "unknown guide 'fr_sim_matt'"),
    ({"loss": "l2"}, "'loss' must be one of distance, inverse_umap"),
    ({"alpha": "1.5"}, "'alpha' must lie in"),
    ({"loss": "inverse_umap", "kappa": "1"}, "kappa"),
])
def test_guided_parameters_are_validated(raw, needle):
    cls = FAMILIES.get("guided")
    with pytest.raises(ValueError, match=needle):
        cls(resolve_config("guided", raw, cls.param_names()))


def test_guided_defaults_follow_the_paper():
    cls = FAMILIES.get("guided")
    fam = cls(resolve_config("guided", {}, cls.param_names()))
    assert fam.params == {"svm_every": 5, "embedding_dim": 256, "ce_weight": 1.0, "ce_on": "features", "ce_smoothing": 0.0,
                          "metric_weight_end": 1.0,
                          "sampler": "m_per_class", "svm_input": "embedding",
                          "guide": "fr_sim_mat", "loss": "distance", "alpha": 0.4,
                          "scale": "normalized"}
    fam = cls(resolve_config("guided", {"loss": "inverse_umap"}, cls.param_names()))
    assert fam.params["kappa"] == 0.2 and fam.tags() == {"guide": "fr_sim_mat", "method": "inverse_umap"}


def test_severity_for_default_classes_is_the_expert_matrix():
    sev = severity_for(list(DEFAULT_CLASSES))
    pd.testing.assert_frame_equal(sev, load_matrix("severity", classes=list(DEFAULT_CLASSES)))


def test_severity_for_foreign_classes_extends_by_lineage():
    classes = ["band_neutrophil", "segmented_neutrophil", "neutrophil", "platelet", "erythroblast",
               "polychromatic_erythroblast"]
    sev = severity_for(classes)
    assert (np.diag(sev.values) == 0).all()
    expert = load_matrix("severity")
    assert sev.loc["band_neutrophil", "segmented_neutrophil"] == expert.loc["band_neutrophil", "segmented_neutrophil"]
    assert sev.loc["neutrophil", "band_neutrophil"] == 2          # same lineage, no expert value
    assert sev.loc["erythroblast", "polychromatic_erythroblast"] == 2
    assert sev.loc["platelet", "band_neutrophil"] == 4            # across lineages


def _runs():
    rows = []
    for fold, (t, a, b) in enumerate([(0.60, 0.64, 0.58), (0.62, 0.66, 0.60)]):
        rows += [{"family": "tml", "guide": "none (TML)", "loss": "triplet", "fold": fold, "seconds": 10,
                  "test_macro_f1": t, "test_mcs": 1.0},
                 {"family": "guided", "guide": "fr_sim_mat", "loss": "distance", "fold": fold, "seconds": 10,
                  "test_macro_f1": a, "test_mcs": 0.9},
                 {"family": "guided", "guide": "random", "loss": "distance", "fold": fold, "seconds": 10,
                  "test_macro_f1": b, "test_mcs": 1.1}]
    return pd.DataFrame(rows)


def test_summarize_ranks_by_macro_f_with_differences_to_tml():
    table = summarize(_runs())
    assert list(table["guide"]) == ["fr_sim_mat", "none (TML)", "random"]
    best = table.iloc[0]
    assert best["f1_mean"] == pytest.approx(0.65) and best["f1_std"] == pytest.approx(np.std([0.64, 0.66], ddof=1))
    assert best["f1_vs_tml"] == pytest.approx(4.0) and best["mcs_vs_tml"] == pytest.approx(-0.1)
    report = markdown_report(table, "synth", 2, {"epochs": 5}, 60.0)
    assert "| fr_sim_mat | distance | 0.6500 ± 0.0141 |" in report
    assert "Guides beating TML on macro-F: 1 of 2 (best +4.00 pp" in report
