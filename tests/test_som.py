"""Batch SOM: clusters recovered, U-matrix borders, errors, persistence, parity with MiniSom."""

from __future__ import annotations

import numpy as np
import pytest

from zoo.som import BatchSOM, schedule
from zoo.som.plots import plot_hit_maps, plot_umatrix


def blobs(centers, n=120, scale=0.3, seed=0):
    rng = np.random.default_rng(seed)
    x = np.concatenate([rng.normal(c, scale, (n, len(c))) for c in centers]).astype(np.float32)
    y = np.repeat(np.arange(len(centers)), n)
    return x, y


def test_batch_som_recovers_known_clusters():
    centers = np.eye(4, 6) * 6.0
    x, y = blobs(centers)
    som = BatchSOM(8, 8, epochs=15, device="cpu").fit(x)
    nodes = som.predict(x)
    # every node is won by one cluster only, and no two clusters share a node
    for node in np.unique(nodes):
        assert len(np.unique(y[nodes == node])) == 1
    # purity of a majority vote per node and separate node sets per cluster
    sets = [set(nodes[y == k]) for k in range(4)]
    assert all(not (sets[a] & sets[b]) for a in range(4) for b in range(a + 1, 4))
    assert som.quantization_error(x) < 1.0          # within-cluster spread is ~0.3 * sqrt(6)
    assert som.topographic_error(x) < 0.2


def test_umatrix_of_two_clusters_shows_the_border():
    x, y = blobs([np.zeros(5), np.full(5, 8.0)], n=150)
    som = BatchSOM(10, 10, epochs=15, device="cpu").fit(x)
    um = som.umatrix()
    assert um.shape == (10, 10)
    hits = som.hit_map(x, y)
    a, b = hits[0] > 0, hits[1] > 0
    # nodes between the two clusters' territories (won by nobody or next to the other class)
    border = np.zeros_like(a)
    for r in range(10):
        for c in range(10):
            nb = (slice(max(r - 1, 0), r + 2), slice(max(c - 1, 0), c + 2))
            border[r, c] = (a[nb].any() and b[nb].any()) or (not a[r, c] and not b[r, c])
    inside = (a | b) & ~border
    assert border.any() and inside.any()
    assert um[border].mean() > 3 * um[inside].mean()
    assert um.max() == um[border].max()


def test_quantization_error_within_5_percent_of_minisom():
    minisom = pytest.importorskip("minisom", reason="MiniSom is the reference: pip install minisom")
    x, _ = blobs([np.zeros(6), np.full(6, 3.0), np.r_[np.zeros(3), np.full(3, 5.0)]], n=100, scale=1.0)
    som = BatchSOM(10, 10, epochs=10, sigma=3.0, learning_rate=1.0, decay="asymptotic", device="cpu")
    init = som.initial_weights(x)
    som.fit(x)
    ref = minisom.MiniSom(10, 10, x.shape[1], sigma=3.0, learning_rate=1.0, neighborhood_function="gaussian",
                          decay_function="asymptotic_decay", sigma_decay_function="asymptotic_decay")
    ref._weights = init.astype(np.float64).copy()   # same init as ours
    ref.train_batch_offline(x, 10)                 # MiniSom's implementation of the batch algorithm
    ours, theirs = som.quantization_error(x), ref.quantization_error(x)
    assert ours <= 1.05 * theirs, (ours, theirs)
    assert abs(som.topographic_error(x) - ref.topographic_error(x)) < 0.05


def test_random_init_and_exponential_decay_reduce_error():
    x, _ = blobs([np.zeros(3), np.full(3, 4.0)], n=80)
    som = BatchSOM(6, 6, epochs=8, init="random", random_state=1, device="cpu").fit(x)
    assert som.sigmas_[0] == pytest.approx(3.0) and som.sigmas_[-1] == pytest.approx(0.5)
    assert som.quantization_errors_[-1] < som.quantization_errors_[1]
    same = BatchSOM(6, 6, epochs=8, init="random", random_state=1, device="cpu").fit(x)
    np.testing.assert_allclose(som.weights_, same.weights_, rtol=1e-5, atol=1e-5)


def test_schedules():
    np.testing.assert_allclose(schedule(4.0, 0.5, 4, "linear"), [4.0, 2.833333, 1.666667, 0.5], rtol=1e-5)
    np.testing.assert_allclose(schedule(4.0, 0.5, 3, "exponential"), [4.0, np.sqrt(2.0), 0.5], rtol=1e-6)
    np.testing.assert_allclose(schedule(3.0, 0.0, 2, "asymptotic"), [3.0, 1.5])
    with pytest.raises(ValueError, match="valid: exponential"):
        schedule(1.0, 0.5, 2, "cosine")


def test_hit_map_per_class_counts_every_sample():
    x, y = blobs([np.zeros(2), np.full(2, 5.0)], n=50)
    som = BatchSOM(5, 5, epochs=5, device="cpu").fit(x)
    hits = som.hit_map(x, np.array(["a", "b"])[y], classes=["b", "a"])
    assert hits.shape == (2, 5, 5) and hits.sum() == 100 and hits[1].sum() == 50
    assert som.hit_map(x).sum() == 100
    with pytest.raises(ValueError, match="not in classes"):
        som.hit_map(x, np.array(["a", "z"])[y], classes=["a"])


def test_save_load_roundtrip_is_data_only(tmp_path):
    x, _ = blobs([np.zeros(3), np.full(3, 4.0)], n=40)
    som = BatchSOM(4, 5, epochs=3, device="cpu").fit(x)
    som.save(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["som.json", "som.npz"]
    back = BatchSOM.load(tmp_path, device="cpu")
    np.testing.assert_array_equal(back.predict(x), som.predict(x))
    assert back.n_rows == 4 and back.n_cols == 5


def test_clear_errors():
    with pytest.raises(RuntimeError, match="not fitted"):
        BatchSOM().predict(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="unknown init"):
        BatchSOM(init="kmeans").fit(np.zeros((4, 3)))
    with pytest.raises(ValueError, match="init array has shape"):
        BatchSOM(2, 2, init=np.zeros((3, 3, 3))).fit(np.zeros((4, 3)))
    som = BatchSOM(2, 2, epochs=1, device="cpu").fit(np.random.default_rng(0).normal(size=(10, 3)))
    with pytest.raises(ValueError, match="fitted on 3"):
        som.predict(np.zeros((2, 4)))


def test_plots_render():
    x, y = blobs([np.zeros(3), np.full(3, 4.0)], n=30)
    som = BatchSOM(5, 5, epochs=4, device="cpu").fit(x)
    fig = plot_umatrix(som.umatrix(), som.bmu_coords(x), y, wrong=y == 1)
    assert len(fig.axes) == 2
    fig2 = plot_hit_maps(som.hit_map(x, y), classes=[0, 1], umatrix=som.umatrix())
    assert len(fig2.axes) >= 2
