"""Triplet margin loss, the loss base classes, the norm penalty and the LOSSES registry."""

from __future__ import annotations

import itertools

import pytest
import torch

from zoo.losses import (
    LOSSES,
    TRIPLET_TYPES,
    EmbeddingLoss,
    EmbeddingNormPenalty,
    GuidedLoss,
    NormPenalized,
    TripletLoss,
    create_loss,
)
from zoo.registry import UnknownNameError


def random_batch(n=24, d=8, k=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, requires_grad=True), torch.arange(n) % k


def brute_force_violating(emb: torch.Tensor, labels: torch.Tensor, margin: float) -> int:
    """Triplets (a, p, n) with d(a, n) - d(a, p) <= margin, on L2-normalised embeddings."""
    e = torch.nn.functional.normalize(emb.detach(), dim=1)
    d = torch.cdist(e, e)
    count = 0
    for a, p, n in itertools.product(range(len(e)), repeat=3):
        if a != p and labels[a] == labels[p] and labels[a] != labels[n] and d[a, n] - d[a, p] <= margin:
            count += 1
    return count


def test_unknown_triplet_type_is_rejected_with_the_valid_ones():
    with pytest.raises(ValueError) as err:
        TripletLoss(type_of_triplets="hardest")
    assert "hardest" in str(err.value) and all(t in str(err.value) for t in TRIPLET_TYPES)
    for t in TRIPLET_TYPES:
        assert TripletLoss(type_of_triplets=t).miner.type_of_triplets == t


def test_miner_keeps_exactly_the_margin_violating_triplets():
    emb, y = random_batch(n=12, d=4)
    loss = TripletLoss(margin=0.1)
    loss(emb, y)
    assert loss.last_n_triplets == brute_force_violating(emb, y, 0.1) > 0
    hard = TripletLoss(margin=0.1, type_of_triplets="hard")
    hard(emb, y)
    assert 0 < hard.last_n_triplets <= loss.last_n_triplets


def test_gradient_flows_to_the_embeddings():
    emb, y = random_batch()
    value = TripletLoss()(emb, y)
    assert value.dim() == 0 and value.item() > 0
    value.backward()
    assert emb.grad is not None and emb.grad.abs().sum() > 0


def test_zero_loss_with_gradient_when_no_triplet_violates_the_margin():
    # One direction per class: same-class distance 0, other-class distance sqrt(2) >> margin.
    y = torch.tensor([0, 0, 1, 1, 2, 2])
    emb = torch.eye(3)[y].clone().requires_grad_(True)
    loss = TripletLoss(margin=0.1)
    value = loss(emb, y)
    assert loss.last_n_triplets == 0
    assert value.item() == 0.0 and value.requires_grad
    value.backward()
    assert torch.equal(emb.grad, torch.zeros_like(emb))


def test_single_class_batch_gives_zero_loss():
    emb = torch.randn(5, 4, requires_grad=True)
    value = TripletLoss()(emb, torch.zeros(5, dtype=torch.long))
    assert value.item() == 0.0
    value.backward()


@pytest.mark.parametrize(
    "emb, labels, error",
    [
        (torch.randn(8), torch.zeros(8, dtype=torch.long), ValueError),  # 1-D embeddings
        (torch.randn(8, 4), torch.zeros(7, dtype=torch.long), ValueError),  # N mismatch
        (torch.randn(8, 4), torch.zeros(8), TypeError),  # float labels
        (torch.randint(0, 3, (8, 4)), torch.zeros(8, dtype=torch.long), TypeError),  # int embeddings
        (torch.randn(1, 4), torch.zeros(1, dtype=torch.long), ValueError),  # N < 2
        (torch.randn(8, 4), torch.zeros(8, 1, dtype=torch.long), ValueError),  # 2-D labels
    ],
)
def test_bad_inputs_are_rejected(emb, labels, error):
    with pytest.raises(error):
        TripletLoss()(emb, labels)


def test_distance_is_injected_and_validated():
    from pytorch_metric_learning.distances import CosineSimilarity, LpDistance

    assert isinstance(TripletLoss().distance, LpDistance)
    cos = TripletLoss(distance="cosine")
    assert isinstance(cos.distance, CosineSimilarity) and cos.miner.distance is cos.distance
    custom = LpDistance(normalize_embeddings=False, p=1)
    assert TripletLoss(distance=custom).loss.distance is custom
    emb, y = random_batch()
    assert torch.isfinite(cos(emb, y))
    with pytest.raises(ValueError, match="unknown distance"):
        TripletLoss(distance="manhattan")


def test_norm_penalty_is_weight_times_mean_l2_norm():
    emb, y = random_batch()
    pen = EmbeddingNormPenalty(0.001)(emb, y)
    assert pen.item() == pytest.approx(0.001 * emb.detach().norm(dim=1).mean().item(), rel=1e-6)
    with pytest.raises(ValueError):
        EmbeddingNormPenalty(-1)


def test_create_loss_composes_triplet_and_norm_penalty():
    emb, y = random_batch()
    loss = create_loss("triplet")
    assert isinstance(loss, NormPenalized) and isinstance(loss.unwrap(), TripletLoss)
    value = loss(emb, y)
    expected = TripletLoss()(emb, y) + 0.001 * emb.norm(dim=1).mean()
    assert value.item() == pytest.approx(expected.item(), rel=1e-6)
    assert set(loss.terms) == {"main", "norm"}
    plain = create_loss("triplet", norm_weight=0, margin=0.3, type_of_triplets="semihard")
    assert isinstance(plain, TripletLoss) and plain.margin == 0.3 and plain.type_of_triplets == "semihard"


def test_create_loss_errors_name_the_fix():
    with pytest.raises(UnknownNameError, match="triplet"):
        create_loss("tripplet")
    with pytest.raises(ValueError, match="accepts: margin"):
        create_loss("triplet", margn=0.2)
    with pytest.raises(ValueError, match="type_of_triplets"):
        create_loss("triplet", type_of_triplets="nope")


class MeanAbsGuide(GuidedLoss):
    """A guided loss for the test: the guide term is mean |e|."""

    def __init__(self, alpha: float = 0.2, triplet: EmbeddingLoss | None = None, scale: float = 1.0):
        super().__init__(triplet=triplet, alpha=alpha)
        self.scale = scale

    def guide(self, embeddings, labels):
        return self.scale * embeddings.abs().mean()


def test_guided_loss_weights_triplet_and_guide():
    emb, y = random_batch()
    loss = MeanAbsGuide(alpha=0.25)
    value = loss(emb, y)
    tml = TripletLoss()(emb, y)
    assert value.item() == pytest.approx(0.75 * tml.item() + 0.25 * emb.abs().mean().item(), rel=1e-6)
    assert set(loss.terms) == {"triplet", "guide"}
    value.backward()
    assert emb.grad.abs().sum() > 0
    for bad in (-0.1, 1.5):
        with pytest.raises(ValueError, match="alpha"):
            MeanAbsGuide(alpha=bad)


def test_create_loss_builds_the_triplet_term_of_a_guided_loss(monkeypatch):
    monkeypatch.setitem(LOSSES._entries, "test_mean_abs", MeanAbsGuide)
    monkeypatch.setitem(LOSSES._meta, "test_mean_abs", {})
    loss = create_loss("test_mean_abs", alpha=0.5, margin=0.3, type_of_triplets="hard", scale=2.0)
    guided = loss.unwrap()
    assert isinstance(guided, MeanAbsGuide) and guided.alpha == 0.5 and guided.scale == 2.0
    assert guided.triplet.margin == 0.3 and guided.triplet.type_of_triplets == "hard"
    emb, y = random_batch()
    loss(emb, y)
    # the penalty is added once, on top of the guided loss
    assert set(loss.terms) == {"triplet", "guide", "main", "norm"}


def test_a_loss_must_return_a_scalar():
    class Bad(EmbeddingLoss):
        def compute(self, embeddings, labels):
            return embeddings.sum(1)

    with pytest.raises(TypeError, match="scalar"):
        Bad()(*random_batch())
