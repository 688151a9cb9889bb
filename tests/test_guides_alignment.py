"""Procrustes alignment and the GuideProjector (embeddings -> guide plane)."""

import numpy as np
import pytest

from zoo.guides import Guide, GuideProjector, create_guide, fit_similarity


def rotation(theta):
    return np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])


@pytest.mark.parametrize("reflect", [False, True])
def test_fit_similarity_recovers_a_known_transform(reflect):
    rng = np.random.default_rng(0)
    src = rng.normal(size=(10, 2))
    r = rotation(0.7) @ (np.diag([1, -1]) if reflect else np.eye(2))
    dst = 3.5 * src @ r + np.array([4.0, -2.0])
    t = fit_similarity(src, dst)
    np.testing.assert_allclose(t.apply(src), dst, atol=1e-9)
    assert t.scale == pytest.approx(3.5)


def test_fit_similarity_is_least_squares_under_noise():
    rng = np.random.default_rng(1)
    src = rng.normal(size=(15, 2))
    dst = 2 * src @ rotation(-1.2) + 1 + rng.normal(scale=0.05, size=src.shape)
    t = fit_similarity(src, dst)
    best = ((t.apply(src) - dst) ** 2).sum()
    for eps in (1e-3, -1e-3):  # perturbing scale or rotation only makes it worse
        worse = t.scale * (1 + eps) * (src - t.source_mean) @ t.rotation + t.target_mean
        assert ((worse - dst) ** 2).sum() > best
        worse = t.scale * (src - t.source_mean) @ (t.rotation @ rotation(eps)) + t.target_mean
        assert ((worse - dst) ** 2).sum() > best
    with pytest.raises(ValueError):
        fit_similarity(src, dst[:3])


def toy_embeddings(guide, n_per_class=30, dim=32, noise=0.05, seed=0):
    """Embeddings whose class structure is an (unknown) linear image of the guide."""
    rng = np.random.default_rng(seed)
    mix = rng.normal(size=(2, dim))
    labels = np.repeat(np.arange(len(guide)), n_per_class)
    x = guide.coords[labels] @ mix + rng.normal(scale=noise, size=(len(labels), dim)) + 5.0
    return x, labels


@pytest.mark.parametrize("method", ["ridge", "pls"])
def test_projector_maps_class_means_near_their_guide_points(method):
    guide = create_guide("kk_sim_mat")
    x, y = toy_embeddings(guide)
    proj = GuideProjector(method=method).fit(x, y, guide)
    means = np.stack([x[y == c].mean(0) for c in range(len(guide))])
    pos = proj.transform(means)
    assert pos.shape == (15, 2)
    assert np.linalg.norm(pos - guide.coords, axis=1).max() < 0.05
    assert proj.nearest_class(means) == guide.classes
    # String labels work too, and the fitted estimator keeps the guide.
    proj2 = GuideProjector(method=method).fit(x, np.array(guide.classes)[y], guide)
    np.testing.assert_allclose(proj2.transform(means), pos, atol=1e-9)
    assert proj2.classes_ == guide.classes


def test_projector_errors():
    guide = Guide("g", ["a", "b", "c"], np.array([[0, 0], [1, 0], [0, 1.0]]))
    x = np.random.default_rng(0).normal(size=(6, 4))
    with pytest.raises(ValueError, match="not classes of guide"):
        GuideProjector().fit(x, ["a", "b", "z", "a", "b", "c"], guide)
    with pytest.raises(ValueError, match="index guide.classes"):
        GuideProjector().fit(x, [0, 1, 2, 3, 0, 1], guide)
    with pytest.raises(ValueError, match="method"):
        GuideProjector(method="svm").fit(x, [0, 1, 2, 0, 1, 2], guide)
    proj = GuideProjector().fit(x, [0, 1, 2, 0, 1, 2], guide)
    with pytest.raises(ValueError, match="expected"):
        proj.transform(np.zeros((2, 5)))
