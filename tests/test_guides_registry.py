"""The 14 guides: names, finite/distinct/normalized points, determinism, disconnected graphs,
class subsets, the CSV table and the Fig. 4-style plot."""

import math

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from zoo.guides import GUIDES, Guide, create_guide, plot_guides, resolve_guide, save_guide_artifacts
from zoo.guides import adjacency_from_matrix, layouts
from zoo.guides.adjacency import edges as adjacency_edges
from zoo.knowledge import DEFAULT_CLASSES, load_ontology
from zoo.registry import UnknownNameError

NAMES = [f"{a}_{m}{s}" for a in ("kk", "fr", "drl") for m in ("sim", "sev") for s in ("", "_mat")]
NAMES += ["circular", "random"]
MIN_DIST = 0.01


def check_points(coords, k):
    xy = np.asarray(coords)
    assert xy.shape == (k, 2)
    assert np.isfinite(xy).all()
    np.testing.assert_allclose(xy.mean(0), 0, atol=1e-9)
    assert np.linalg.norm(xy, axis=1).max() == pytest.approx(1.0)
    d = np.linalg.norm(xy[:, None] - xy[None], axis=2)[np.triu_indices(k, 1)]
    assert d.min() > MIN_DIST


@pytest.fixture(scope="module")
def guides():
    return {n: create_guide(n) for n in NAMES}


def test_the_fourteen_names():
    assert sorted(GUIDES.names()) == sorted(NAMES) and len(NAMES) == 14


def test_unknown_name_lists_valid_ones():
    with pytest.raises(UnknownNameError) as err:
        create_guide("fr_similarity")
    msg = str(err.value)
    for n in NAMES:
        assert n in msg


@pytest.mark.parametrize("name", NAMES)
def test_fifteen_finite_distinct_normalized_points(guides, name):
    g = guides[name]
    assert g.name == name and g.classes == list(DEFAULT_CLASSES)
    check_points(g.coords, 15)


@pytest.mark.parametrize("name", NAMES)
def test_deterministic_for_a_seed(guides, name):
    np.testing.assert_array_equal(create_guide(name).coords, guides[name].coords)


@pytest.mark.parametrize("name", ["fr_sim", "drl_sev_mat", "random"])
def test_seed_changes_the_random_layouts(guides, name):
    assert not np.allclose(create_guide(name, seed=1).coords, guides[name].coords)


def test_edges_follow_the_graph(guides):
    assert guides["fr_sim_mat"].edges and not guides["circular"].edges
    # _mat adds all same-lineage pairs: the five neutrophil stages form a clique.
    stages = load_ontology().stages("neutrophil")
    pairs = {frozenset(e) for e in guides["kk_sev_mat"].edges}
    assert all(frozenset((a, b)) in pairs for a in stages for b in stages if a != b)


# A hand-made similarity matrix whose graph is a triangle, an edge and two isolated classes.
DISCONNECTED_SIM = pd.DataFrame(1, index=list("abcdefg"), columns=list("abcdefg"))
for _a, _b in [("a", "b"), ("b", "c"), ("c", "a"), ("d", "e")]:
    DISCONNECTED_SIM.loc[_a, _b] = DISCONNECTED_SIM.loc[_b, _a] = 5
DISCONNECTED_SIM.loc["f", "g"] = 3  # one-sided and middling: not an edge
DISCONNECTED = adjacency_from_matrix(DISCONNECTED_SIM)


def test_hand_made_disconnected_matrix():
    assert {frozenset(e) for e in adjacency_edges(DISCONNECTED)} == {
        frozenset(p) for p in [("a", "b"), ("b", "c"), ("a", "c"), ("d", "e")]}


@pytest.mark.parametrize("layout", ["kk", "fr", "drl"])
@pytest.mark.parametrize("adjacency", [DISCONNECTED, DISCONNECTED * 0], ids=["components", "no_edges"])
def test_disconnected_graphs(layout, adjacency):
    fn = layouts.GRAPH_LAYOUTS[layout]
    xy = layouts.finalize(fn(adjacency, 0))
    check_points(xy, len(adjacency))
    np.testing.assert_array_equal(layouts.finalize(fn(adjacency, 0)), xy)
    if adjacency.to_numpy().any():
        # Components are packed one mean edge length apart (at least).
        d = np.linalg.norm(xy[:, None] - xy[None], axis=2)
        mean_edge = np.mean([d[0, 1], d[1, 2], d[0, 2], d[3, 4]])
        assert min(d[i, j] for i in range(5) for j in range(5, 7)) >= 0.99 * mean_edge
        assert min(d[i, j] for i in range(3) for j in range(3, 5)) >= 0.99 * mean_edge


def test_separate_spreads_coincident_points_deterministically():
    xy = np.array([[0.0, 0.0], [0.0, 0.0], [0.0, 0.0], [1.0, 1.0]])
    out = layouts.finalize(xy)
    check_points(out, 4)
    np.testing.assert_array_equal(out, layouts.finalize(xy))


def test_circular_lineages_in_maturity_order(guides):
    g = guides["circular"]
    ont = load_ontology()
    # On one circle (centred at the mean, its centre is not the origin): algebraic circle fit.
    x, y = g.coords.T
    a = np.column_stack([2 * x, 2 * y, np.ones_like(x)])
    sol, *_ = np.linalg.lstsq(a, x ** 2 + y ** 2, rcond=None)
    radii = np.hypot(x - sol[0], y - sol[1])
    np.testing.assert_allclose(radii, radii.mean(), rtol=1e-6)
    angle = {c: math.atan2(py - sol[1], px - sol[0]) for c, (px, py) in zip(g.classes, g.coords)}
    for lineage in ("neutrophil", "erythroid", "monocyte"):
        stages = ont.stages(lineage)
        steps = np.diff(np.unwrap([angle[c] for c in stages]))
        assert (steps > 0).all() or (steps < 0).all(), lineage  # monotone along one arc
    # The blast sits between the least mature stages it precedes.
    d = {c: np.linalg.norm(g.position("blast") - g.position(c)) for c in g.classes if c != "blast"}
    assert sorted(d, key=d.get)[:2] == sorted(["promyelocyte", "proerythroblast"], key=d.get)


PBC = ["basophil", "eosinophil", "erythroblast", "promyelocyte", "myelocyte", "metamyelocyte",
       "lymphocyte", "monocyte", "band_neutrophil", "segmented_neutrophil", "platelet"]


def test_subset_of_known_classes():
    sub = ["lymphocyte", "blast", "promyelocyte", "myelocyte", "monocyte"]
    g = create_guide("kk_sim_mat", classes=sub)
    assert g.classes == sub
    check_points(g.coords, len(sub))
    assert {frozenset(e) for e in g.edges} >= {frozenset(("promyelocyte", "myelocyte"))}


def test_classes_the_matrices_lack():
    with pytest.raises(ValueError) as err:
        create_guide("fr_sim_mat", classes=PBC)
    assert "erythroblast" in str(err.value) and "platelet" in str(err.value) and "unknown=" in str(err.value)
    dropped = create_guide("fr_sim_mat", classes=PBC, unknown="drop")
    assert dropped.classes == [c for c in PBC if c not in ("erythroblast", "platelet")]
    check_points(dropped.coords, 9)
    placed = create_guide("fr_sim_mat", classes=PBC, unknown="place")
    assert placed.classes == PBC and placed.meta["placed"] == ["erythroblast", "platelet"]
    check_points(placed.coords, 11)
    # An extra class is tied only to its lineage: the unstaged 'neutrophil' joins the stages.
    with_neu = create_guide("kk_sim", classes=["neutrophil", "band_neutrophil", "blast", "lymphocyte"],
                            unknown="place")
    assert {frozenset(e) for e in with_neu.edges} == {frozenset(("neutrophil", "band_neutrophil"))}
    # circular and random need no matrix.
    check_points(create_guide("circular", classes=PBC).coords, 11)
    with pytest.raises(KeyError, match="canonical"):
        create_guide("random", classes=["BNE", "lymphocyte"])
    with pytest.raises(ValueError, match="unknown="):
        create_guide("kk_sim", unknown="ignore")


def test_restrict_and_resolve(guides):
    g = guides["drl_sim"]
    sub = g.restrict(["monocyte", "blast"])
    assert sub.classes == ["monocyte", "blast"]
    np.testing.assert_array_equal(sub.coords[1], g.position("blast"))
    assert resolve_guide(g) is g
    assert resolve_guide(g, ["blast", "monocyte"]).classes == ["blast", "monocyte"]
    with pytest.raises(ValueError, match="platelet"):
        resolve_guide(g, ["platelet"])
    with pytest.raises(KeyError, match="platelet"):
        g.position("platelet")


def test_csv_roundtrip_and_artifacts(guides, tmp_path):
    g = guides["kk_sev"]
    frame = g.to_frame()
    assert list(frame.columns) == ["class", "x", "y"] and len(frame) == 15
    back = Guide.from_csv(g.save_csv(tmp_path / "g.csv"), name="kk_sev")
    assert back.classes == g.classes
    np.testing.assert_array_equal(back.coords, g.coords)
    paths = save_guide_artifacts(g, tmp_path / "art")
    assert paths["csv"].is_file() and paths["png"].stat().st_size > 1000
    with pytest.raises(ValueError, match="class,x,y"):
        pd.DataFrame({"a": [1]}).to_csv(tmp_path / "bad.csv", index=False)
        Guide.from_csv(tmp_path / "bad.csv")


def test_plots_return_figures_with_a_legend(guides):
    from zoo.guides import plot_guide

    fig = plot_guide(guides["fr_sim_mat"])
    assert isinstance(fig, Figure)
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert labels == load_ontology().order(DEFAULT_CLASSES)  # one entry per class, lineage order
    colours = {tuple(c.get_facecolor()[0]) for c in fig.axes[0].collections}
    assert len(colours) == 15                                 # one colour per class
    grid = plot_guides([guides[n] for n in NAMES])
    assert sum(1 for ax in grid.axes if ax.get_title()) == len(NAMES)


def test_guide_validation():
    with pytest.raises(ValueError, match="coords"):
        Guide("x", ["a", "b"], np.zeros((3, 2)))
    with pytest.raises(ValueError, match="non-finite"):
        Guide("x", ["a", "b"], np.array([[0, 0], [np.nan, 1]]))
    with pytest.raises(ValueError, match="repeated"):
        Guide("x", ["a", "a"], np.zeros((2, 2)))
