"""Curve models, projections, targets, lineages and the fitted curve set of SMR (paper 001)."""

import numpy as np
import pytest
import torch

from zoo.curves import (CURVES, DEFAULT_LINEAGES, CurveSet, create_curve, decision_boundaries, frequency_targets,
                        make_targets, parse_lineages, resolve_lineages, uniform_targets)
from zoo.curves import path
from zoo.knowledge import DEFAULT_CLASSES
from zoo.registry import UnknownNameError


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    """Tiny tensors: one torch thread for every test here (fixture in conftest.py)."""


def straight_lineage(direction, n_stages=5, per_stage=30, noise=0.05, seed=0):
    rng = np.random.default_rng(seed)
    stage = np.repeat(np.arange(n_stages), per_stage)
    offset = rng.normal(size=direction.shape)
    X = offset + stage[:, None] * direction[None, :] + noise * rng.normal(size=(len(stage), len(direction)))
    return X, stage


def unit(v):
    return v / np.linalg.norm(v)


def test_curve_registry_names_and_unknown_name():
    assert CURVES.names() == ["bezier", "fixed", "linear"]
    with pytest.raises(UnknownNameError, match="Valid curves: bezier, fixed, linear"):
        create_curve("spline")


def test_linear_curve_finds_the_direction_of_a_straight_lineage_oriented_immature_to_mature():
    u = unit(np.array([3.0, -1.0, 2.0, 0.5, 0.0, 1.0]))
    X, stage = straight_lineage(-u)  # maturity runs along -u
    line = create_curve("linear").fit(X, stage)
    assert line.direction_ @ (-u) > 0.999
    a, b = line.control_points_
    means = np.stack([X[stage == s].mean(0) for s in range(5)])
    assert np.allclose(line.project(means[[0, -1]]), [0.0, 1.0], atol=0.02)
    t = line.project(X)
    assert np.all(np.diff([t[stage == s].mean() for s in range(5)]) > 0.2)


def test_fixed_lines_use_orthonormal_directions_a_fixed_length_and_the_lineage_mean():
    u = unit(np.arange(1.0, 9.0))
    X, stage = straight_lineage(u)
    first = create_curve("fixed", index=0, seed=3).fit(X, stage)
    second = create_curve("fixed", index=1, seed=3).fit(X, stage)
    assert abs(first.direction_ @ second.direction_) < 1e-9
    assert np.isclose(np.linalg.norm(first.direction_), 1.0)
    np.testing.assert_allclose(first.control_points_.mean(0), X.mean(0))
    length = first.length_
    assert np.isclose(np.linalg.norm(first.control_points_[1] - first.control_points_[0]), length)
    first.fit(2.0 * X, stage)  # a refit moves the line but keeps its length
    assert first.length_ == length
    np.testing.assert_allclose(first.control_points_.mean(0), 2 * X.mean(0))
    assert create_curve("fixed", length=2.5).fit(X, stage).length_ == 2.5


def test_bezier_passes_through_its_end_points_with_the_stage_means_as_control_points():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(120, 4))
    stage = np.repeat(np.arange(4), 30)
    X += np.array([[0, 0, 0, 0], [1, 2, 0, 0], [3, 2, 1, 0], [4, 0, 2, 1]])[stage]
    curve = create_curve("bezier").fit(X, stage)
    means = np.stack([X[stage == s].mean(0) for s in range(4)])
    np.testing.assert_allclose(curve.control_points_, means)
    np.testing.assert_allclose(curve.evaluate([0.0, 1.0]), means[[0, -1]], atol=1e-12)
    assert np.allclose(curve.project(means[[0, -1]]), [0.0, 1.0])


def test_curve_needs_two_stages_and_a_fit():
    with pytest.raises(ValueError, match="at least 2 stages"):
        create_curve("linear").fit(np.zeros((5, 3)), np.zeros(5))
    with pytest.raises(RuntimeError, match="not fitted"):
        create_curve("bezier").project(np.zeros((1, 3)))


def test_projection_onto_a_line_is_exact():
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=6), rng.normal(size=6)
    t = np.array([-0.5, 0.0, 0.3, 0.77, 1.0, 1.6])
    normal = rng.normal(size=(len(t), 6))
    normal -= np.outer(normal @ (b - a), b - a) / ((b - a) @ (b - a))  # orthogonal offsets
    X = a + t[:, None] * (b - a) + normal
    control = np.stack([a, b])
    np.testing.assert_allclose(path.project(control, X, clamp=False), t, atol=1e-12)
    np.testing.assert_allclose(path.project(control, X), np.clip(t, 0, 1), atol=1e-12)
    got = path.project_torch(torch.tensor(control), torch.tensor(X), clamp=False)
    np.testing.assert_allclose(got.numpy(), t, atol=1e-12)


@pytest.mark.parametrize("n_control", [3, 4, 6])
def test_projection_onto_bezier_curves_matches_a_brute_force_search(n_control):
    rng = np.random.default_rng(n_control)
    control = rng.normal(size=(n_control, 5)) * 2
    X = rng.normal(size=(300, 5)) * 2
    t = path.project(control, X)
    grid = np.linspace(0, 1, 20001)
    pts = path.evaluate(control, grid)
    dist = ((X[:, None, :] - pts[None]) ** 2).sum(-1)
    brute = grid[dist.argmin(1)]
    ours = ((X - path.evaluate(control, t)) ** 2).sum(1)
    assert np.all(ours <= dist.min(1) + 1e-9)           # never farther than the best grid point
    assert np.mean(np.abs(t - brute) < 1e-3) > 0.99     # same point (ties between branches aside)


def test_differentiable_bezier_projection_has_the_implicit_function_gradient():
    rng = np.random.default_rng(5)
    control = torch.tensor(rng.normal(size=(4, 3)), dtype=torch.float64)
    x = torch.tensor(rng.normal(size=(1, 3)) * 0.3 + control.mean(0).numpy(), dtype=torch.float64, requires_grad=True)
    t = path.project_torch(control, x)
    assert np.isclose(float(t.detach()), path.project(control.numpy(), x.detach().numpy())[0], atol=1e-9)
    assert 0 < float(t.detach()) < 1
    (grad,) = torch.autograd.grad(t.sum(), x)
    eps = 1e-6
    numeric = []
    for d in range(3):
        e = np.zeros((1, 3))
        e[0, d] = eps
        xp, xm = x.detach().numpy() + e, x.detach().numpy() - e
        numeric.append((path.project(control.numpy(), xp)[0] - path.project(control.numpy(), xm)[0]) / (2 * eps))
    np.testing.assert_allclose(grad.numpy()[0], numeric, rtol=1e-4, atol=1e-6)


def test_uniform_targets_follow_eq_1():
    np.testing.assert_allclose(uniform_targets([5, 1, 7, 2]), [0, 1 / 3, 2 / 3, 1])


def test_frequency_targets_follow_eq_2_on_a_hand_example():
    # f = 1/8, 1/4, 1/2 -> log2 f = -3, -2, -1 -> steps (-3-2)/2, (-2-1)/2 = -2.5, -1.5 -> t = 0, 2.5/4, 1
    np.testing.assert_allclose(frequency_targets([1, 2, 4], total=8), [0.0, 0.625, 1.0])
    np.testing.assert_allclose(make_targets("frequency", [1, 2, 4], total=8), [0.0, 0.625, 1.0])
    t = frequency_targets([400, 500, 500, 500, 500], total=5050)
    assert t[0] == 0.0 and t[-1] == 1.0 and np.all(np.diff(t) > 0)


def test_default_lineages_are_the_papers_and_pbc_keeps_its_neutrophil_series():
    series = resolve_lineages(DEFAULT_LINEAGES, DEFAULT_CLASSES)
    assert [(s.name, s.stages) for s in series] == [
        ("neutrophil", ("blast", "promyelocyte", "myelocyte", "metamyelocyte", "band_neutrophil", "segmented_neutrophil")),
        ("erythroid", ("proerythroblast", "basophilic_erythroblast", "polychromatic_erythroblast",
                       "orthochromatic_erythroblast"))]
    pbc = ["basophil", "eosinophil", "erythroblast", "promyelocyte", "myelocyte", "metamyelocyte", "lymphocyte",
           "monocyte", "band_neutrophil", "segmented_neutrophil", "platelet"]
    (only,) = resolve_lineages(DEFAULT_LINEAGES, pbc)
    assert only.stages == ("promyelocyte", "myelocyte", "metamyelocyte", "band_neutrophil", "segmented_neutrophil")


def test_lineage_specs_accept_chains_and_reject_unknown_names():
    (chain,) = parse_lineages("myelocyte>metamyelocyte")
    assert chain.name == "neutrophil" and chain.stages == ("myelocyte", "metamyelocyte")
    with pytest.raises(ValueError, match="unknown lineage 'neutro'.*neutrophil"):
        parse_lineages("neutro")
    with pytest.raises(ValueError, match="same series twice"):
        parse_lineages("neutrophil,promyelocyte>myelocyte")
    with pytest.raises(ValueError, match=r"a class in two series: \['blast'\]"):
        parse_lineages("blast+neutrophil,blast+erythroid")
    with pytest.raises(ValueError, match="none of the lineages"):
        resolve_lineages("erythroid", ["lymphocyte", "monocyte"])


def test_decision_boundaries_separate_neighbouring_stages():
    t = np.array([0.0, 0.1, 0.2, 0.45, 0.5, 0.6, 0.9, 1.0])
    stage = np.array([0, 0, 0, 1, 1, 1, 2, 2])
    b = decision_boundaries(t, stage, np.array([0.0, 0.5, 1.0]))
    assert 0.2 < b[0] < 0.45 and 0.6 < b[1] < 0.9
    assert list(np.searchsorted(b, t, side="right")) == list(stage)


@pytest.mark.parametrize("curve", ["fixed", "linear", "bezier"])
def test_curve_set_predicts_lineage_maturity_borderline_and_round_trips_as_data(curve, tmp_path):
    classes = ["myelocyte", "metamyelocyte", "band_neutrophil", "lymphocyte"]
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(4), 25)
    centers = np.array([[0, 0, 0], [1, 0.2, 0], [2, 0, 0.1], [0, 5, 5]], dtype=float)
    X = centers[y] + 0.1 * rng.normal(size=(100, 3))
    cs = CurveSet(curve, "frequency", "neutrophil").fit(X, y, classes)
    assert [s.name for s in cs.series_] == ["neutrophil"]
    out = cs.predict(X, [classes[i] for i in y])
    assert set(out) == {"lineage", "maturity", "borderline"}
    assert (out["lineage"][y < 3] == "neutrophil").all() and (out["lineage"][y == 3] == "").all()
    assert np.isnan(out["maturity"][y == 3]).all() and not out["borderline"][y == 3].any()
    mat = out["maturity"][y < 3]
    assert ((mat >= 0) & (mat <= 1)).all()
    if curve != "fixed":  # a fixed line's direction is pre-defined, not learnt from the data
        means = [mat[y[y < 3] == s].mean() for s in range(3)]
        assert means[0] < means[1] < means[2]
    cs.save(tmp_path)
    assert not list(tmp_path.glob("*.pkl"))
    back = CurveSet.load(tmp_path)
    again = back.predict(X, [classes[i] for i in y])
    np.testing.assert_allclose(again["maturity"], out["maturity"])
    np.testing.assert_array_equal(again["borderline"], out["borderline"])
    # a point exactly on a decision boundary is borderline
    lin = "neutrophil"
    b = cs.boundaries_[lin][0]
    on = cs.curves_[lin].evaluate([b])
    assert cs.predict(on, ["myelocyte"])["borderline"][0]
