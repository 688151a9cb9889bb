"""SMR losses (paper 001, Eq. 3-5): each lowers its term on a toy problem, combines with TML by
alpha, reads curves refitted by the callback, and survives a checkpoint round trip."""

import numpy as np
import pytest
import torch

from zoo.losses import LOSSES, create_loss
from zoo.losses.smr import PAPER_ALPHA, SMR_LOSSES, CurveRefit, SMRLoss

CLASSES = ["blast", "promyelocyte", "myelocyte", "proerythroblast", "basophilic_erythroblast",
           "polychromatic_erythroblast", "lymphocyte"]


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    """Tiny tensors: one torch thread for every test here (fixture in conftest.py)."""


def toy(n_per=8, dim=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(len(CLASSES)).repeat_interleave(n_per)
    x = torch.randn(len(y), dim, generator=g) * 1.0 + torch.randn(len(CLASSES), dim, generator=g)[y] * 0.5
    return x, y


def test_registry_has_the_four_smr_losses_with_the_papers_alpha():
    assert {f"smr_{m}" for m in SMR_LOSSES} <= set(LOSSES.names())
    for mode in SMR_LOSSES:
        loss = LOSSES.get(f"smr_{mode}")(CLASSES, dim=6)
        assert loss.alpha == PAPER_ALPHA[mode] and loss.mode == mode
    assert PAPER_ALPHA == {"normal": 0.2, "projected": 0.2, "tsne": 0.6, "projected_tsne": 0.6}


@pytest.mark.parametrize("mode,curve", [("normal", "linear"), ("normal", "fixed"), ("projected", "linear"),
                                        ("projected", "bezier"), ("tsne", "fixed"), ("tsne", "linear"),
                                        ("projected_tsne", "bezier")])
def test_each_smr_loss_decreases_on_a_toy_problem(mode, curve):
    torch.manual_seed(0)
    x0, y = toy()
    loss = SMRLoss(CLASSES, mode, curve, "uniform", dim=x0.shape[1], tsne_hidden=(16,), perplexity=5)
    x = torch.nn.Parameter(x0.clone())
    # The embeddings only: the t-SNE versions' network is held fixed here, so its plane stays put
    # and the term is comparable across steps (its own training is tested in test_curves_tsne).
    opt = torch.optim.Adam([x], lr=0.05)
    loss.update_curves(x.detach().numpy(), y.numpy())
    first = float(loss.guide(x, y).detach())
    assert first > 0
    for step in range(60):
        if step and step % 10 == 0:  # the per-epoch refit
            loss.update_curves(x.detach().numpy(), y.numpy())
        opt.zero_grad()
        loss(x, y).backward()
        opt.step()
    loss.update_curves(x.detach().numpy(), y.numpy())
    assert float(loss.guide(x, y).detach()) < 0.7 * first


def test_loss_is_the_alpha_weighted_sum_of_tml_and_the_smr_term():
    x, y = toy()
    loss = SMRLoss(CLASSES, "normal", "linear", alpha=0.3)
    loss.update_curves(x.numpy(), y.numpy())
    total = loss(x, y)
    expected = 0.7 * loss.triplet(x, y) + 0.3 * loss.guide(x, y)
    assert torch.allclose(total, expected)
    assert set(loss.terms) == {"triplet", "guide"}


def test_smr_term_is_zero_before_the_first_fit_and_ignores_classes_outside_the_lineages():
    x, y = toy()
    loss = SMRLoss(CLASSES, "normal", "linear")
    assert float(loss.guide(x, y)) == 0.0
    loss.update_curves(x.numpy(), y.numpy())
    only_lymphocytes = y == CLASSES.index("lymphocyte")
    assert float(loss.guide(x[only_lymphocytes], y[only_lymphocytes])) == 0.0
    assert float(loss.guide(x, y)) > 0.0


def test_tsne_versions_add_the_kl_of_their_network_while_training():
    x, y = toy()
    loss = SMRLoss(CLASSES, "tsne", "bezier", dim=x.shape[1], tsne_hidden=(8,), perplexity=5)
    loss.update_curves(x.numpy(), y.numpy())
    assert loss._control(0).shape == (3, 2) and loss._control(1).shape == (3, 2)  # Bézier curves in the plane
    loss(x, y)
    assert "tsne_kl" in loss.terms and loss.terms["tsne_kl"] > 0
    loss.eval()
    loss(x, y)
    assert "tsne_kl" not in loss.terms


def test_tsne_versions_need_the_embedding_dimension():
    with pytest.raises(ValueError, match="needs dim="):
        SMRLoss(CLASSES, "projected_tsne")


def test_curves_travel_in_the_state_dict(tmp_path):
    x, y = toy()
    loss = create_loss("smr_projected", classes=CLASSES, curve="bezier")
    loss.unwrap().update_curves(x.numpy(), y.numpy())
    torch.save(loss.state_dict(), tmp_path / "loss.pt")
    fresh = create_loss("smr_projected", classes=CLASSES, curve="bezier")
    fresh.load_state_dict(torch.load(tmp_path / "loss.pt", weights_only=True))
    assert torch.allclose(fresh(x, y), loss(x, y))


def test_curve_refit_callback_refits_from_the_trainers_training_embeddings():
    x, y = toy()

    class FakeTrainer:  # the two Trainer members the callback uses
        loss_fn = create_loss("smr_normal", classes=CLASSES)
        epoch_metrics = {}

        def train_embeddings(self):
            return x.numpy(), y.numpy()

    trainer = FakeTrainer()
    CurveRefit().on_epoch_end(trainer, 0, {})
    assert bool(trainer.loss_fn.unwrap().has_curves)
    assert {"smr_refit_seconds", "smr_neutrophil_stage_rho", "smr_erythroid_stage_rho"} <= set(trainer.epoch_metrics)
    with pytest.raises(TypeError, match="needs an SMRLoss"):
        FakeTrainer.loss_fn = create_loss("triplet")
        CurveRefit().on_epoch_end(FakeTrainer(), 0, {})
