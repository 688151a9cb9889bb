"""The parametric t-SNE network SMR's dimension-reduced losses train alongside the encoder."""

import numpy as np
import pytest
import torch

from zoo.curves.tsne import ParametricTSNE, joint_probabilities, tsne_kl


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    """Tiny tensors: one torch thread for every test here (fixture in conftest.py)."""


def clusters(n_per=30, k=3, dim=20, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(k, dim)) * 4
    y = np.repeat(np.arange(k), n_per)
    return (centers[y] + rng.normal(size=(len(y), dim))).astype(np.float32), y


def test_joint_probabilities_are_symmetric_normalised_and_hit_the_perplexity():
    x, _ = clusters()
    p = joint_probabilities(torch.as_tensor(x), perplexity=10)
    assert torch.allclose(p, p.T) and abs(float(p.sum()) - 1.0) < 1e-4
    # the conditional rows' perplexity: recover it from the binary search's definition
    n = len(x)
    cond = (p * 2 * n).numpy()  # p_ij + p_ji; each row of the conditional sums to 1
    assert cond.sum(1).mean() == pytest.approx(2.0, rel=1e-3)
    with pytest.raises(ValueError, match="at least 3 points"):
        joint_probabilities(torch.zeros(2, 4))


def test_parametric_tsne_lowers_its_kl_and_keeps_clusters_apart():
    torch.manual_seed(0)
    x, y = clusters()
    net = ParametricTSNE(x.shape[1], hidden=(32, 32), perplexity=10)
    xt = torch.as_tensor(x)
    before = float(net.objective(xt).detach())
    net.fit(x, epochs=40, batch_size=90, lr=1e-2)
    after = float(net.objective(xt).detach())
    assert after < 0.5 * before
    z = net.transform(x)
    assert z.shape == (90, 2)
    # every point's nearest neighbour in the plane is of its own cluster
    d = ((z[:, None] - z[None]) ** 2).sum(-1) + np.eye(90) * 1e9
    assert (y[d.argmin(1)] == y).mean() > 0.95


def test_frozen_map_sends_gradients_to_the_inputs_only():
    net = ParametricTSNE(6, hidden=(8,))
    x = torch.randn(5, 6, requires_grad=True)
    net.frozen(x).sum().backward()
    assert x.grad is not None and all(p.grad is None for p in net.parameters())
    kl = tsne_kl(joint_probabilities(x), net(x.detach()))
    kl.backward()
    assert all(p.grad is not None for p in net.parameters())
