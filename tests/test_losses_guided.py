"""Guided losses: inverse UMAP (Eq. 1-2) and distance (Eq. 3-4).

The inverse-UMAP tests inject a fast deterministic reducer (a linear projection to the first two
dimensions and back); one slow test runs the real umap-learn."""

import math

import numpy as np
import pytest
import torch

from zoo.guides import Guide, create_guide, fit_similarity
from zoo.losses import LOSSES, NormPenalized, TripletLoss, create_loss
from zoo.losses.distance import DistanceLoss
from zoo.losses.inverse_umap import InverseUMAPLoss, InverseUMAPTargets, stratified_subsample
from zoo.train import Callback

torch.set_num_threads(1)

GUIDE = Guide("toy", ["a", "b", "c", "d"], np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]))


class LinearReducer:
    """Stand-in for umap.UMAP: plane = first two coordinates; inverse pads with ``fill``."""

    def __init__(self, n_neighbors=15, random_state=0, fill=0.0):
        self.fill = fill

    def fit_transform(self, x):
        self.dim_ = x.shape[1]
        return np.asarray(x[:, :2], dtype=float)

    def inverse_transform(self, p):
        out = np.full((len(p), self.dim_), self.fill, dtype=np.float32)
        out[:, :2] = p
        return out


def expected_new_targets(x, y, guide, dim):
    """By hand: guide aligned (similarity transform) onto the class means of the plane, padded."""
    plane = x[:, :2]
    classes = np.unique(y)
    means = np.stack([plane[y == c].mean(0) for c in classes])
    aligned = fit_similarity(guide.coords[classes], means).apply(guide.coords)
    out = np.zeros((len(guide), dim), dtype=np.float32)
    out[:, :2] = aligned
    return out


def toy_data(n_per_class=20, dim=6, seed=0, k=4):
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(k).repeat_interleave(n_per_class)
    x = torch.randn(len(y), dim, generator=g)
    return x, y


def registered():
    assert LOSSES.get("inverse_umap") is InverseUMAPLoss and LOSSES.get("distance") is DistanceLoss


# --------------------------------------------------------------------------------------- distance
def brute_force_distance_term(e, y, guide, scale_value=None):
    """Eq. 3-4 with explicit loops (normalized by batch means unless a scale is given)."""
    e = e.detach().numpy().astype(float)
    pairs = [(i, j) for i in range(len(e)) for j in range(i)]
    de = np.array([np.abs(e[i] - e[j]).sum() for i, j in pairs])
    dg = np.array([np.abs(guide.coords[y[i]] - guide.coords[y[j]]).sum() for i, j in pairs])
    if scale_value is None:
        de, dg = de / de.mean(), dg / dg.mean()
    else:
        dg = dg * scale_value
    return float(np.abs(de - dg).sum() * 2 / (len(e) * (len(e) - 1)))


def test_losses_are_registered_and_built_by_create_loss():
    registered()
    loss = create_loss("distance", guide="kk_sim_mat", margin=0.2)
    assert isinstance(loss, NormPenalized)
    inner = loss.unwrap()
    assert isinstance(inner, DistanceLoss) and inner.alpha == 0.4 and inner.triplet.margin == 0.2
    inner = create_loss("inverse_umap", guide="circular", norm_weight=0)
    assert isinstance(inner, InverseUMAPLoss) and (inner.alpha, inner.kappa) == (0.4, 0.2)
    assert len(inner.embedding_guide) == 15


@pytest.mark.parametrize("scale", ["normalized", "learnt"])
def test_distance_term_matches_eq_3_4(scale):
    x, y = toy_data(n_per_class=3)
    loss = DistanceLoss(GUIDE, alpha=1.0, scale=scale)
    value = loss(x, y)
    scale_value = float(loss.log_scale.detach().exp()) if scale == "learnt" else None
    assert float(value.detach()) == pytest.approx(brute_force_distance_term(x, y.numpy(), GUIDE, scale_value), rel=1e-5)


def test_distance_normalized_is_scale_invariant_and_learnt_is_not():
    x, y = toy_data()
    norm = DistanceLoss(GUIDE, alpha=1.0)
    assert float(norm(3.0 * x, y)) == pytest.approx(float(norm(x, y)), rel=1e-5)
    learnt = DistanceLoss(GUIDE, alpha=1.0, scale="learnt")
    learnt(x, y)  # first batch initialises the scale
    assert float(learnt(3.0 * x, y).detach()) != pytest.approx(float(learnt(x, y).detach()), rel=1e-3)


@pytest.mark.parametrize("scale", ["normalized", "learnt"])
def test_distance_zero_gradient_at_the_guide(scale):
    # Embeddings = guide points (+ zero dims) scaled by 2: L1 distances are exactly 2x the guide's.
    y = torch.tensor([0, 1, 2, 3, 0, 2, 1, 3])
    e = torch.zeros(len(y), 5)
    e[:, :2] = 2.0 * torch.as_tensor(GUIDE.coords, dtype=torch.float32)[y]
    e.requires_grad_(True)
    loss = DistanceLoss(GUIDE, alpha=1.0, scale=scale)
    value = loss(e, y)
    value.backward()
    assert float(value.detach()) == pytest.approx(0.0, abs=1e-6)
    assert e.grad.abs().max() < 1e-6
    if scale == "learnt":
        assert float(loss.log_scale.detach().exp()) == pytest.approx(2.0)
        assert loss.log_scale.grad.abs() < 1e-6


def test_distance_gradient_flows_only_into_embeddings_and_the_learnt_scale():
    x, y = toy_data()
    x.requires_grad_(True)
    norm = DistanceLoss(GUIDE, alpha=1.0)
    assert list(norm.parameters()) == [] and not norm.guide_distances.requires_grad
    norm(x, y).backward()
    assert x.grad.abs().sum() > 0 and norm.guide_distances.grad is None
    learnt = DistanceLoss(GUIDE, alpha=1.0, scale="learnt")
    assert [n for n, _ in learnt.named_parameters()] == ["log_scale"]
    x.grad = None
    learnt(x, y)  # init
    learnt(x, y).backward()
    assert learnt.log_scale.grad is not None and learnt.log_scale.grad.abs() > 0


def test_distance_one_class_batch_is_zero():
    x = torch.randn(5, 3, requires_grad=True)
    out = DistanceLoss(GUIDE, alpha=1.0)(x, torch.zeros(5, dtype=torch.long))
    out.backward()
    assert float(out.detach()) == 0 and x.grad.abs().sum() == 0


@pytest.mark.parametrize("scale", ["normalized", "learnt"])
@pytest.mark.parametrize("alpha", [1.0, 0.4])
def test_distance_loss_decreases_on_a_toy_problem(scale, alpha):
    torch.manual_seed(0)
    x, y = toy_data(n_per_class=10, dim=8)
    x.requires_grad_(True)
    loss = DistanceLoss(GUIDE, alpha=alpha, scale=scale)
    opt = torch.optim.Adam([x, *loss.parameters()], lr=0.05)
    values = []
    for _ in range(100):
        opt.zero_grad()
        v = loss(x, y)
        v.backward()
        opt.step()
        values.append(float(v.detach()))
    assert values[-1] < 0.5 * values[0]
    assert np.mean(values[-10:]) < np.mean(values[:10])


# ------------------------------------------------------------------------------------ inverse UMAP
def make_iu(alpha=1.0, kappa=0.2, guide=GUIDE, **kw):
    return InverseUMAPLoss(guide, alpha=alpha, kappa=kappa, reducer_factory=LinearReducer, **kw)


def test_before_the_first_fit_the_guide_term_is_zero():
    x, y = toy_data()
    loss = make_iu(alpha=0.4)
    tml = TripletLoss()(x, y)
    assert float(loss(x, y)) == pytest.approx(0.6 * float(tml))
    assert loss.terms["guide"] == 0.0 and not bool(loss.has_targets)


def test_targets_follow_eq_1_exactly():
    kappa = 0.2
    loss = make_iu(kappa=kappa)
    x1, y = toy_data(seed=1)
    x2, _ = toy_data(seed=2)
    loss.update_targets(x1.numpy(), y.numpy())
    first = expected_new_targets(x1.numpy(), y.numpy(), GUIDE, 6)
    np.testing.assert_allclose(loss.targets.numpy(), first, atol=1e-6)  # first fit: no smoothing
    loss.update_targets(x2, y)                                           # tensors accepted too
    new = expected_new_targets(x2.numpy(), y.numpy(), GUIDE, 6)
    np.testing.assert_allclose(loss.targets.numpy(), kappa * first + (1 - kappa) * new, atol=1e-6)
    assert int(loss.n_updates) == 2


def test_guide_term_is_the_mean_l1_distance_to_the_class_target():
    x, y = toy_data()
    loss = make_iu(alpha=1.0)
    loss.update_targets(x.numpy(), y.numpy())
    t = loss.targets.numpy()[y.numpy()]
    expected = np.abs(x.numpy() - t).sum(1).mean()     # L1 distance (sum over dims), batch mean
    assert float(loss(x, y)) == pytest.approx(expected, rel=1e-5)
    per_dim = make_iu(alpha=1.0, l1="mean")
    per_dim.update_targets(x.numpy(), y.numpy())
    assert float(per_dim(x, y)) == pytest.approx(expected / x.shape[1], rel=1e-5)


def test_inverse_umap_gradient_flows_only_into_embeddings():
    x, y = toy_data()
    loss = make_iu(alpha=1.0)
    loss.update_targets(x.numpy(), y.numpy())
    assert list(loss.parameters()) == [] and not loss.targets.requires_grad
    e = x.clone().requires_grad_(True)
    loss(e, y).backward()
    expected = torch.sign(e.detach() - loss.targets[y]) / len(y)
    torch.testing.assert_close(e.grad, expected)
    assert loss.targets.grad is None


def test_inverse_umap_loss_decreases_on_a_toy_problem():
    torch.manual_seed(0)
    x, y = toy_data(n_per_class=10, dim=6)
    x.requires_grad_(True)
    loss = make_iu(alpha=0.4)
    opt = torch.optim.Adam([x], lr=0.05)
    guide_terms = []
    for epoch in range(5):
        loss.update_targets(x.detach().numpy(), y.numpy())       # what the callback does per epoch
        for _ in range(20):
            opt.zero_grad()
            v = loss(x, y)
            v.backward()
            opt.step()
        guide_terms.append(loss.terms["guide"])
    # Measured against fixed targets (the last ones): the embeddings moved onto them.
    final = float((x.detach() - loss.targets[y]).abs().sum(1).mean())
    start = float((toy_data(10, 6)[0] - loss.targets[y]).abs().sum(1).mean())
    assert final < 0.5 * start
    assert guide_terms[-1] < 0.5 * guide_terms[0]


class FakeTrainer:
    def __init__(self, loss, batches):
        self.loss_fn = loss
        self.batches = iter(batches)
        self.epoch_metrics = {}

    def train_embeddings(self):
        return next(self.batches)


def test_callback_refreshes_targets_every_epoch():
    kappa = 0.5
    loss = make_iu(kappa=kappa)
    wrapped = NormPenalized(loss, 0.001)
    data = [toy_data(seed=s) for s in (1, 2, 3)]
    batches = [(x.numpy(), y.numpy()) for x, y in data]
    trainer = FakeTrainer(wrapped, batches)
    cb = InverseUMAPTargets()   # finds the loss under the wrapper
    assert isinstance(cb, Callback)
    expected = None
    for epoch, (x, y) in enumerate(batches, start=1):
        cb.on_epoch_end(trainer, epoch, trainer.epoch_metrics)
        new = expected_new_targets(x, y, GUIDE, 6)
        expected = new if expected is None else kappa * expected + (1 - kappa) * new
        np.testing.assert_allclose(loss.targets.numpy(), expected, atol=1e-6)
        assert int(loss.n_updates) == epoch
        assert {"guide_umap_fit_seconds", "guide_inverse_transform_seconds", "guide_fit_samples",
                "guide_alignment_residual"} <= set(trainer.epoch_metrics)
    with pytest.raises(TypeError, match="InverseUMAPLoss"):
        InverseUMAPTargets().on_epoch_end(FakeTrainer(TripletLoss(), batches), 1, {})


def test_targets_are_checkpointed():
    x, y = toy_data()
    loss = make_iu()
    loss.update_targets(x.numpy(), y.numpy())
    state = NormPenalized(loss).state_dict()
    assert {"loss.targets", "loss.has_targets", "loss.n_updates"} <= set(state)
    fresh = make_iu()
    NormPenalized(fresh).load_state_dict(state)
    torch.testing.assert_close(fresh.targets, loss.targets)
    assert bool(fresh.has_targets) and int(fresh.n_updates) == 1
    assert float(fresh(x, y)) == pytest.approx(float(loss(x, y)))


def test_subsample_is_bounded_and_stratified():
    y = np.repeat(np.arange(4), [1000, 100, 10, 1])
    idx = stratified_subsample(y, 200, seed=0)
    counts = np.bincount(y[idx], minlength=4)
    assert abs(len(idx) - 200) <= 4 and (counts >= 1).all()
    np.testing.assert_allclose(counts[:2] / len(idx), [1000 / 1111, 100 / 1111], atol=0.02)
    np.testing.assert_array_equal(stratified_subsample(y[:50], 200, seed=0), np.arange(50))
    # The loss respects max_fit_samples.
    loss = make_iu(max_fit_samples=30)
    x, yy = toy_data(n_per_class=40)
    assert loss.update_targets(x.numpy(), yy.numpy())["fit_samples"] <= 32


def test_inverse_umap_input_errors():
    loss = make_iu()
    x, y = toy_data()
    with pytest.raises(ValueError, match="labels must be in"):
        loss.update_targets(x.numpy(), y.numpy() + 4)
    with pytest.raises(ValueError, match="at least 3 classes"):
        loss.update_targets(x.numpy()[:40], y.numpy()[:40])
    with pytest.raises(ValueError, match="kappa"):
        make_iu(kappa=1.0)
    loss.update_targets(x.numpy(), y.numpy())
    with pytest.raises(ValueError, match="dimension"):
        loss(torch.randn(4, 3), torch.tensor([0, 1, 2, 3]))


def test_losses_take_the_dataset_class_order():
    guide = create_guide("kk_sim")
    order = ["lymphocyte", "blast", "monocyte"]
    loss = DistanceLoss(guide, classes=order)
    assert loss.embedding_guide.classes == order
    d = loss.guide_distances.numpy()
    assert d[0, 1] == pytest.approx(np.abs(guide.position("lymphocyte") - guide.position("blast")).sum())
    with pytest.raises(ValueError, match="no point for"):
        InverseUMAPLoss(guide, classes=["platelet"])


@pytest.mark.slow
def test_real_umap_targets():
    """umap-learn end to end on a small problem (first call pays numba's JIT compile)."""
    rng = np.random.default_rng(0)
    guide = create_guide("fr_sim_mat")
    centres = rng.normal(scale=3.0, size=(15, 16))
    y = np.repeat(np.arange(15), 20)
    x = (centres[y] + rng.normal(size=(len(y), 16))).astype(np.float32)
    loss = InverseUMAPLoss(guide, max_fit_samples=200)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        info = loss.update_targets(x, y)
        assert torch.get_num_threads() == 1  # numba's pool setup must not change torch's threads
    finally:
        torch.set_num_threads(threads)
    assert loss.targets.shape == (15, 16) and torch.isfinite(loss.targets).all()
    assert info["fit_samples"] <= 215 and math.isfinite(info["alignment_residual"])
    # Inverse-transformed targets lie within the data's range.
    assert (loss.targets.numpy().min(0) >= x.min(0) - 1e-3).all() and (loss.targets.numpy().max(0) <= x.max(0) + 1e-3).all()


def test_with_the_trainer_targets_refresh_each_epoch_and_survive_resume(tmp_path):
    from torch.utils.data import DataLoader, TensorDataset

    from zoo.train import Trainer

    torch.manual_seed(0)
    x, y = toy_data(n_per_class=16, dim=6)
    loader = DataLoader(TensorDataset(x, y), batch_size=16, shuffle=True, generator=torch.Generator().manual_seed(0))

    def build(epochs, resume):
        model = torch.nn.Linear(6, 5)
        loss = create_loss("inverse_umap", guide=GUIDE, reducer_factory=LinearReducer)
        trainer = Trainer(model, loss, loader, None, epochs=epochs, patience=None, svm=False, progress=False,
                          callbacks=[InverseUMAPTargets()], checkpoint_dir=tmp_path, resume=resume,
                          train_eval_loader=DataLoader(TensorDataset(x, y), batch_size=64))
        return trainer, loss.unwrap()

    trainer, loss = build(2, resume=False)
    result = trainer.fit()
    assert int(loss.n_updates) == 2 and bool(loss.has_targets)
    assert all("guide_alignment_residual" in h and "train_loss_guide" in h for h in result.history)
    assert result.history[0]["train_loss_guide"] == 0.0 and result.history[1]["train_loss_guide"] > 0
    saved = loss.targets.clone()

    trainer2, loss2 = build(3, resume=True)
    trainer2.fit()
    assert int(loss2.n_updates) == 3  # restored 2 from the checkpoint, refreshed once more
    emb, labels = trainer2.train_embeddings()
    new = expected_new_targets(emb, labels, GUIDE, 5)
    np.testing.assert_allclose(loss2.targets.numpy(), 0.2 * saved.numpy() + 0.8 * new, atol=1e-5)
