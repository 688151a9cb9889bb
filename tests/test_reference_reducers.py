"""Reducers: VAE (posterior mean) and PCA (explained variance), saved as data."""

from __future__ import annotations

import numpy as np
import pytest

from zoo.reference import REDUCERS, create_reducer, load_reducer


def data(n=120, d=20, seed=0):
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, 3))
    return (z @ rng.normal(size=(3, d)) + 0.05 * rng.normal(size=(n, d))).astype(np.float32)


def test_pca_reports_explained_variance_share():
    x = data()
    red = create_reducer("pca", latent=3).fit(x)
    assert red.transform(x).shape == (120, 3)
    assert red.explained_variance_share_ > 0.98          # three true factors
    assert create_reducer("pca", latent=1).fit(x).explained_variance_share_ < red.explained_variance_share_


@pytest.mark.slow
def test_vae_mean_is_deterministic_and_separates_clusters():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(0, 1, (60, 16)), rng.normal(4, 1, (60, 16))]).astype(np.float32)
    red = create_reducer("vae", latent=4, hidden=32, epochs=15, batch_size=60, lr=3e-3, device="cpu").fit(x)
    z = red.transform(x)
    assert z.shape == (120, 4)
    np.testing.assert_array_equal(z, red.transform(x))          # the mean, not a sample
    assert red.history_[-1] < red.history_[0]
    within = np.linalg.norm(z[:60] - z[:60].mean(0), axis=1).mean()
    between = np.linalg.norm(z[:60].mean(0) - z[60:].mean(0))
    assert between > 2 * within


@pytest.mark.parametrize("name", ["pca", "vae"])
def test_reducers_roundtrip_as_data(tmp_path, name):
    x = data()
    kw = {"epochs": 2, "hidden": 16, "device": "cpu"} if name == "vae" else {}
    red = create_reducer(name, latent=3, **kw).fit(x)
    red.save(tmp_path)
    assert not any(p.suffix in {".pkl", ".joblib", ".pickle"} for p in tmp_path.iterdir())
    back = load_reducer(tmp_path, device="cpu")
    np.testing.assert_allclose(back.transform(x), red.transform(x), rtol=1e-5, atol=1e-5)


def test_unknown_reducer_lists_valid_names():
    with pytest.raises(KeyError, match="pca, vae"):
        create_reducer("umap3")
    assert REDUCERS.names() == ["pca", "vae"]
