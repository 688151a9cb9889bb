"""Metrics against hand-computed examples (MCS, strict vs tolerant macro-F) and the plots."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from zoo.evaluate import classification_metrics, plot_confusion_matrix, plot_embedding_map, reduce_2d, scalar_metrics

CLASSES = ["a", "b", "c"]
# Confusion matrix by construction (rows true, columns predicted):
#        a  b  c
#   a  [ 3, 1, 0 ]
#   b  [ 0, 2, 1 ]
#   c  [ 1, 0, 2 ]        n = 10
Y_TRUE = ["a"] * 4 + ["b"] * 3 + ["c"] * 3
Y_PRED = ["a", "a", "a", "b"] + ["b", "b", "c"] + ["c", "a", "c"]
# Severity: rows true, columns predicted; the diagonal (9) must be ignored.
SEVERITY = pd.DataFrame([[9, 1, 4], [2, 9, 3], [5, 2, 9]], index=CLASSES, columns=CLASSES)


class Tolerance:
    """Test double of the ontology: directed tolerable pairs, and a lineage order."""

    def __init__(self, pairs, order=None):
        self.pairs = set(pairs)
        self._order = order

    def is_tolerable(self, true_id, pred_id):
        return true_id == pred_id or (true_id, pred_id) in self.pairs

    def order(self, ids):
        return [c for c in self._order if c in set(ids)] if self._order else list(ids)


def test_hand_computed_strict_scores_and_mcs():
    m = classification_metrics(Y_TRUE, Y_PRED, CLASSES, severity=SEVERITY)
    assert m["confusion_matrix"] == [[3, 1, 0], [0, 2, 1], [1, 0, 2]]
    # precision a = 3/4, recall a = 3/4; b: 2/3, 2/3; c: 2/3, 2/3
    pc = m["per_class"]
    assert pc["a"] == pytest.approx({"precision": 0.75, "recall": 0.75, "f1": 0.75, "support": 4})
    assert pc["b"] == pytest.approx({"precision": 2 / 3, "recall": 2 / 3, "f1": 2 / 3, "support": 3})
    assert pc["c"] == pytest.approx({"precision": 2 / 3, "recall": 2 / 3, "f1": 2 / 3, "support": 3})
    macro = (0.75 + 2 / 3 + 2 / 3) / 3
    assert m["macro_f1"] == pytest.approx(macro) and m["macro_f1_strict"] == m["macro_f1"]
    assert m["balanced_accuracy"] == pytest.approx((0.75 + 2 / 3 + 2 / 3) / 3)
    assert m["accuracy"] == pytest.approx(0.7)
    # MCS = (1/n) sum S_ij C_ij over off-diagonal errors: a->b (S=1) once, b->c (3) once, c->a (5) once
    assert m["mcs"] == pytest.approx((1 * 1 + 3 * 1 + 5 * 1) / 10)
    assert m["mcs_norm"] == pytest.approx(0.9 / 5)  # max severity off the diagonal = 5
    assert "macro_f1_tolerant" not in m


def test_hand_computed_tolerant_scores():
    ont = Tolerance({("a", "b"), ("b", "c")})  # true a predicted b is tolerable; true b predicted c too
    m = classification_metrics(Y_TRUE, Y_PRED, CLASSES, ontology=ont)
    pc = m["per_class"]
    # tolerant recall: a (3 + 1)/4 = 1, b (2 + 1)/3 = 1, c 2/3 (c->a is not tolerable)
    assert [pc[c]["recall_tolerant"] for c in CLASSES] == pytest.approx([1.0, 1.0, 2 / 3])
    # tolerant precision: column a holds a(3, ok) and c(1, not ok) -> 3/4; column b: a(1, ok) + b(2) -> 1;
    # column c: b(1, ok) + c(2) -> 1
    assert [pc[c]["precision_tolerant"] for c in CLASSES] == pytest.approx([0.75, 1.0, 1.0])
    f1 = [2 * 0.75 * 1 / 1.75, 1.0, 2 * 1 * (2 / 3) / (1 + 2 / 3)]
    assert [pc[c]["f1_tolerant"] for c in CLASSES] == pytest.approx(f1)
    assert m["macro_f1_tolerant"] == pytest.approx(sum(f1) / 3)
    assert m["macro_f1_tolerant"] > m["macro_f1_strict"]
    assert m["accuracy_tolerant"] == pytest.approx(9 / 10)
    # without tolerable pairs the tolerant scores equal the strict ones
    strict = classification_metrics(Y_TRUE, Y_PRED, CLASSES, ontology=Tolerance(set()))
    assert strict["macro_f1_tolerant"] == pytest.approx(strict["macro_f1_strict"])


def test_integer_indices_and_severity_arrays_give_the_same_result():
    idx = {c: i for i, c in enumerate(CLASSES)}
    by_name = classification_metrics(Y_TRUE, Y_PRED, CLASSES, severity=SEVERITY)
    by_index = classification_metrics(
        np.array([idx[c] for c in Y_TRUE]), np.array([idx[c] for c in Y_PRED]), CLASSES,
        severity=SEVERITY.to_numpy(),
    )
    assert by_index["mcs"] == pytest.approx(by_name["mcs"])
    assert by_index["macro_f1"] == pytest.approx(by_name["macro_f1"])
    assert by_index["per_class"] == by_name["per_class"]


def test_severity_frame_is_aligned_by_class_id():
    shuffled = SEVERITY.loc[["c", "a", "b"], ["b", "c", "a"]]
    bigger = SEVERITY.reindex(index=CLASSES + ["d"], columns=CLASSES + ["d"], fill_value=1)
    for frame in (shuffled, bigger):
        assert classification_metrics(Y_TRUE, Y_PRED, CLASSES, severity=frame)["mcs"] == pytest.approx(0.9)
    with pytest.raises(ValueError, match="no row/column"):
        classification_metrics(Y_TRUE, Y_PRED, CLASSES, severity=SEVERITY.drop(index="c"))
    with pytest.raises(ValueError, match=r"\(3, 3\)"):
        classification_metrics(Y_TRUE, Y_PRED, CLASSES, severity=np.ones((2, 2)))


def test_perfect_predictions_have_zero_mcs_and_full_scores():
    m = classification_metrics(Y_TRUE, Y_TRUE, CLASSES, severity=SEVERITY)
    assert m["mcs"] == 0.0 and m["macro_f1"] == 1.0 and m["balanced_accuracy"] == 1.0


def test_absent_classes_do_not_count_in_the_macro_average():
    m = classification_metrics(["a", "a", "b"], ["a", "a", "b"], ["a", "b", "c", "d"])
    assert m["macro_f1"] == 1.0 and m["per_class"]["d"]["support"] == 0
    assert len(m["confusion_matrix"]) == 4


def test_bad_labels_are_named():
    with pytest.raises(ValueError, match="'x'"):
        classification_metrics(["a", "x"], ["a", "b"], CLASSES)
    with pytest.raises(ValueError, match="outside"):
        classification_metrics(np.array([0, 5]), np.array([0, 1]), CLASSES)
    with pytest.raises(ValueError, match="differ in length"):
        classification_metrics(["a"], ["a", "b"], CLASSES)
    with pytest.raises(ValueError, match="empty"):
        classification_metrics([], [], CLASSES)


def test_scalar_metrics_are_flat_floats():
    flat = scalar_metrics(classification_metrics(Y_TRUE, Y_PRED, CLASSES, severity=SEVERITY), "val_")
    assert flat["val_mcs"] == pytest.approx(0.9)
    assert all(isinstance(v, float) for v in flat.values())
    assert "val_per_class" not in flat and "val_confusion_matrix" not in flat


def _tick_labels(ax, axis="x"):
    ticks = ax.get_xticklabels() if axis == "x" else ax.get_yticklabels()
    return [t.get_text() for t in ticks]


def test_confusion_matrix_plot_is_row_normalised_and_ordered_by_the_ontology():
    m = classification_metrics(Y_TRUE, Y_PRED, CLASSES)
    fig = plot_confusion_matrix(m["confusion_matrix"], CLASSES, ontology=Tolerance(set(), order=["c", "b", "a"]))
    assert isinstance(fig, Figure)
    ax, _, bar = fig.axes
    assert _tick_labels(ax, "x") == ["c", "b", "a"] and _tick_labels(ax, "y") == ["c", "b", "a"]
    image = ax.get_images()[0].get_array()
    np.testing.assert_allclose(image.sum(axis=1), 1.0)
    np.testing.assert_allclose(image[2], [0, 0.25, 0.75])  # row a in the new order: c, b, a
    assert [round(p.get_width()) for p in bar.patches] == [3, 3, 4]  # counts per true class c, b, a
    fig.savefig(io.BytesIO(), format="png")  # renders without a display


def test_embedding_map_colours_each_class():
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1, 2], 20)
    emb = rng.normal(size=(60, 16)) + y[:, None] * 5
    fig = plot_embedding_map(emb, y, CLASSES, method="pca")
    ax = fig.axes[0]
    assert "PCA" in ax.get_title()
    assert len(ax.collections) == 3
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["a (20)", "b (20)", "c (20)"]
    fig.savefig(io.BytesIO(), format="png")
    coords, used = reduce_2d(emb, method="pca")
    assert coords.shape == (60, 2) and used == "pca"
    with pytest.raises(ValueError, match="unknown 2-D map method"):
        reduce_2d(emb, method="tsne")
