"""Adjacency from expert matrices: the paper's drop-lowest / normalize / round, symmetrisation,
severity inversion and the `_mat` variant, on a hand-made 4-class example."""

import numpy as np
import pandas as pd
import pytest

from zoo.guides.adjacency import adjacency_from_matrix, edges, knowledge_adjacency, normalized_affinity
from zoo.knowledge import DEFAULT_CLASSES

P, M, E, S = "promyelocyte", "myelocyte", "proerythroblast", "segmented_neutrophil"
CLASSES = [P, M, E, S]
# true x predicted similarity, 1..5 off the diagonal; the diagonal (9) must be ignored.
SIM = pd.DataFrame(
    [[9, 5, 2, 1],
     [4, 9, 1, 3],
     [3, 1, 9, 4],
     [1, 4, 2, 9]],
    index=CLASSES, columns=CLASSES,
)


def as_set(adj):
    return {frozenset(e) for e in edges(adj)}


def test_hand_example_drop_normalize_symmetrize_round():
    # By hand: the lowest off-diagonal value is 1 -> dropped (0); the rest (2..5) min-max
    # normalized: (v - 2) / 3, i.e. 5 -> 1, 4 -> 2/3, 3 -> 1/3, 2 -> 0.
    third = 1 / 3
    expected_directed = np.array(
        [[0, 1, 0, 0],              # P->M 5, P->E 2, P->S 1 (dropped)
         [2 * third, 0, 0, third],  # M->P 4, M->E 1 (dropped), M->S 3
         [third, 0, 0, 2 * third],  # E->P 3, E->M 1 (dropped), E->S 4
         [0, 2 * third, 0, 0]])     # S->P 1 (dropped), S->M 4, S->E 2
    np.testing.assert_allclose(normalized_affinity(SIM.to_numpy()), expected_directed)
    # Mean of both directions, then >= 0.5:
    #   P-M (1 + 2/3)/2 = 5/6 -> 1      P-E (0 + 1/3)/2 = 1/6 -> 0     P-S 0 -> 0
    #   M-E 0 -> 0                       M-S (1/3 + 2/3)/2 = 1/2 -> 1   E-S (2/3 + 0)/2 = 1/3 -> 0
    adj = adjacency_from_matrix(SIM)
    expected = np.array([[0, 1, 0, 0], [1, 0, 0, 1], [0, 0, 0, 0], [0, 1, 0, 0]])
    np.testing.assert_array_equal(adj.to_numpy(), expected)
    assert list(adj.index) == CLASSES and list(adj.columns) == CLASSES


def test_result_is_symmetric_binary_with_zero_diagonal():
    for kind in ("similarity", "severity"):
        adj = adjacency_from_matrix(SIM, kind=kind, maturity=True)
        a = adj.to_numpy()
        assert set(np.unique(a)) <= {0, 1}
        np.testing.assert_array_equal(a, a.T)
        assert (np.diag(a) == 0).all()


def test_symmetrisation_mean_vs_max():
    # E-S is asymmetric: E->S 4 (2/3), S->E 2 (0). Mean 1/3 -> no edge; max 2/3 -> edge.
    assert frozenset((E, S)) not in as_set(adjacency_from_matrix(SIM, symmetrize_by="mean"))
    assert frozenset((E, S)) in as_set(adjacency_from_matrix(SIM, symmetrize_by="max"))
    # The result does not depend on which triangle holds the larger rating.
    np.testing.assert_array_equal(adjacency_from_matrix(SIM).to_numpy(),
                                  adjacency_from_matrix(SIM.T.copy()).to_numpy())


def test_dropping_the_lowest_entries_changes_the_scale():
    # Without dropping: (v - 1) / 4 -> E-S = (0.75 + 0.25) / 2 = 0.5 -> edge; with dropping it is 1/3.
    kept = as_set(adjacency_from_matrix(SIM, drop_lowest=False))
    assert frozenset((E, S)) in kept
    assert frozenset((E, S)) not in as_set(adjacency_from_matrix(SIM))


def test_threshold_is_a_parameter():
    # Symmetric normalized weights: P-M 5/6, M-S 1/2, E-S 1/3, P-E 1/6, others 0.
    assert as_set(adjacency_from_matrix(SIM, threshold=0.9)) == set()
    assert as_set(adjacency_from_matrix(SIM, threshold=0.3)) == {frozenset((P, M)), frozenset((M, S)),
                                                                  frozenset((E, S))}
    with pytest.raises(ValueError, match="threshold"):
        adjacency_from_matrix(SIM, threshold=0)


def test_mat_variant_connects_same_lineage():
    # promyelocyte, myelocyte, segmented_neutrophil share the neutrophil lineage.
    adj = adjacency_from_matrix(SIM, maturity=True)
    assert as_set(adj) == {frozenset((P, M)), frozenset((M, S)), frozenset((P, S))}


def test_severity_means_low_values_are_adjacent():
    # Inverting 1..5 severities is the same as reading 6 - v as a similarity.
    sev = 6 - SIM
    np.testing.assert_array_equal(adjacency_from_matrix(sev, kind="severity").to_numpy(),
                                  adjacency_from_matrix(SIM, kind="similarity").to_numpy())
    # Severity 1 (adjacent maturity stages) becomes an edge, severity 5 does not.
    tiny = pd.DataFrame([[0, 1, 5], [1, 0, 5], [5, 5, 0]], index=[P, M, E], columns=[P, M, E])
    assert as_set(adjacency_from_matrix(tiny, kind="severity")) == {frozenset((P, M))}


def test_packaged_matrices():
    sim = knowledge_adjacency("similarity")
    assert list(sim.index) == list(DEFAULT_CLASSES)
    # Adjacent neutrophil stages are rated 5 both ways: always an edge.
    assert sim.loc["band_neutrophil", "segmented_neutrophil"] == 1
    sev = knowledge_adjacency("severity")
    assert sev.loc["basophilic_erythroblast", "polychromatic_erythroblast"] == 1   # severity 1
    assert sev.loc["blast", "promyelocyte"] == 0                                      # severity 5
    # Restriction happens after processing: a pair's edge does not depend on the other classes.
    sub = knowledge_adjacency("similarity", ["blast", "promyelocyte", "lymphocyte"])
    np.testing.assert_array_equal(sub.to_numpy(), sim.loc[sub.index, sub.columns].to_numpy())
    with pytest.raises(KeyError, match="platelet"):
        knowledge_adjacency("similarity", ["platelet", "blast"])


def test_bad_inputs():
    with pytest.raises(ValueError, match="kind"):
        adjacency_from_matrix(SIM, kind="distance")
    with pytest.raises(ValueError, match="same class ids"):
        adjacency_from_matrix(SIM.loc[:, [M, P, E, S]])
