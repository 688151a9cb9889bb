"""The auxiliary cross-entropy head (BNNeck) of the embedding families: its value, its gradients,
its place in training and checkpoints, and the ``ce_weight`` parameter that switches it on."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from zoo.families import FAMILIES
from zoo.families.embedding import with_classifier_head
from zoo.families.params import resolve_config
from zoo.losses import TripletLoss, create_loss
from zoo.losses.classifier_head import WithClassifierHead
from zoo.train import LambdaCallback


def batch(n=24, d=8, k=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, requires_grad=True), torch.arange(n) % k


@pytest.mark.parametrize("metric_weight", [1.0, 0.25])  # 1 unless a MetricWeightSchedule lowers it
def test_value_is_the_metric_loss_plus_weighted_cross_entropy_on_bn_embeddings(metric_weight):
    emb, y = batch()
    inner = create_loss("triplet")
    head = WithClassifierHead(inner, n_classes=3, embedding_dim=8, weight=0.7)
    head.metric_weight = metric_weight
    torch.nn.init.normal_(head.fc.weight, std=0.5, generator=torch.Generator().manual_seed(1))
    got = head(emb, y)
    bn = (emb - emb.mean(0)) / torch.sqrt(emb.var(0, unbiased=False) + head.bn.eps)  # train-mode BN, weight 1
    metric = inner(emb, y)
    assert float(metric) > 0  # else the metric weight would not show
    expected = metric_weight * metric + 0.7 * F.cross_entropy(bn @ head.fc.weight.T, y)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
    assert set(head.terms) >= {"metric", "ce", "main", "norm"}
    assert float(head.terms["metric"]) == pytest.approx(float(metric.detach()), rel=1e-5)  # logged unweighted
    assert head.terms["ce"] == pytest.approx(float(F.cross_entropy(bn @ head.fc.weight.T, y).detach()), rel=1e-5)


def test_gradients_reach_embeddings_and_head_but_not_the_bn_shift():
    emb, y = batch()
    head = WithClassifierHead(create_loss("triplet"), 3, 8)
    head(emb, y).backward()
    assert emb.grad is not None and emb.grad.abs().sum() > 0
    assert head.fc.weight.grad.abs().sum() > 0 and head.bn.weight.grad.abs().sum() > 0
    assert head.bn.bias.grad is None and not head.bn.bias.requires_grad
    assert head.fc.bias is None


def test_every_image_gets_a_gradient_even_when_no_triplet_violates_the_margin():
    # Two classes far apart: the triplet term is a graph-connected zero, the head still teaches.
    emb = torch.cat([torch.full((4, 2), 5.0), torch.full((4, 2), -5.0)]) + 0.01 * torch.randn(8, 2)
    emb.requires_grad_(True)
    y = torch.tensor([0] * 4 + [1] * 4)
    triplet = TripletLoss()
    assert float(triplet(emb, y).detach()) == 0.0
    head = WithClassifierHead(triplet, 2, 2)
    head(emb, y).backward()
    assert (emb.grad.abs().sum(1) > 0).all()


def test_unwrap_reaches_the_familys_loss_under_every_wrapper():
    inner = create_loss("triplet")  # NormPenalized(TripletLoss)
    assert isinstance(WithClassifierHead(inner, 3, 8).unwrap(), TripletLoss)


@pytest.mark.parametrize("kwargs,needle", [
    ({"weight": 0.0}, "weight must be > 0"),
    ({"n_classes": 1}, "at least 2 classes"),
])
def test_bad_construction_is_rejected(kwargs, needle):
    args = {"n_classes": 3, "embedding_dim": 8, "weight": 1.0, **kwargs}
    with pytest.raises(ValueError, match=needle):
        WithClassifierHead(create_loss("triplet"), **args)


def test_bad_inputs_name_the_mismatch():
    head = WithClassifierHead(create_loss("triplet"), 3, 8)
    emb, y = batch(d=6)
    with pytest.raises(ValueError, match="expects 8-d embeddings, got 6-d"):
        head(emb, y)
    emb, _ = batch()
    with pytest.raises(ValueError, match="label 5 is outside the head's 3 classes"):
        head(emb, torch.arange(24) % 6)


def test_the_trainer_optimises_the_head_and_restores_it_on_resume(tmp_path):
    from torch.utils.data import DataLoader, TensorDataset

    from zoo.train import Trainer

    g = torch.Generator().manual_seed(0)
    x = torch.randn(48, 6, generator=g)
    y = torch.arange(48) % 3
    loader = DataLoader(TensorDataset(x, y), batch_size=16, shuffle=True, generator=torch.Generator().manual_seed(0))

    def build(epochs, resume):
        torch.manual_seed(0)
        loss = WithClassifierHead(create_loss("triplet"), 3, 4)
        trainer = Trainer(torch.nn.Linear(6, 4), loss, loader, None, epochs=epochs, patience=None, svm=False,
                          progress=False, checkpoint_dir=tmp_path, resume=resume)
        return trainer, loss

    trainer, loss = build(2, resume=False)
    initial = loss.fc.weight.detach().clone()
    result = trainer.fit()
    assert not torch.equal(loss.fc.weight.detach(), initial)  # the head learnt
    assert all("train_loss_ce" in h for h in result.history)
    trained = {k: v.clone() for k, v in loss.state_dict().items()}

    trainer2, loss2 = build(2, resume=True)  # nothing left to train: the checkpoint's head comes back
    trainer2.fit()
    for key, value in trained.items():
        torch.testing.assert_close(loss2.state_dict()[key], value, msg=key)


def test_ce_weight_parameter_cpu_preset_wraps_paper_preset_and_zero_do_not():
    cls = FAMILIES.get("tml")
    assert cls(resolve_config("tml", {}, cls.param_names())).params["ce_weight"] == 1.0
    assert cls(resolve_config("tml", {"preset": "paper"}, cls.param_names())).params["ce_weight"] == 0.0
    assert cls(resolve_config("tml", {"ce_weight": "0.25"}, cls.param_names())).params["ce_weight"] == 0.25
    with pytest.raises(ValueError, match="ce_weight"):
        cls(resolve_config("tml", {"ce_weight": "-1"}, cls.param_names()))
    inner = create_loss("triplet")
    assert with_classifier_head(inner, 3, 8, 0.0) is inner
    wrapped = with_classifier_head(inner, 3, 8, 0.5)
    assert isinstance(wrapped, WithClassifierHead) and wrapped.weight == 0.5 and wrapped.unwrap() is inner.unwrap()


# --- ce_on=features: the head reads the backbone features, the metric loss the embedding ----------

def test_features_head_value_is_metric_loss_on_embeddings_plus_cross_entropy_on_features():
    emb, y = batch()
    feats = torch.randn(24, 5, generator=torch.Generator().manual_seed(2), requires_grad=True)
    inner = create_loss("triplet")
    head = WithClassifierHead(inner, n_classes=3, embedding_dim=5, weight=0.7, on="features")
    assert head.needs_features and head.fc.bias is not None  # a plain network's biased classifier
    got = head(emb, y, features=feats)
    expected = inner(emb, y) + 0.7 * F.cross_entropy(feats @ head.fc.weight.T + head.fc.bias, y)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
    got.backward()
    # The cross-entropy term trains the features; the embeddings get only the metric term's gradient.
    assert feats.grad is not None and (feats.grad.abs().sum(1) > 0).all()
    emb2 = emb.detach().clone().requires_grad_(True)
    inner(emb2, y).backward()
    torch.testing.assert_close(emb.grad, emb2.grad)


def test_features_head_without_features_or_with_the_wrong_width_names_the_fix():
    head = WithClassifierHead(create_loss("triplet"), 3, 5, on="features")
    emb, y = batch()
    with pytest.raises(ValueError, match="ce_on=features"):
        head(emb, y)
    with pytest.raises(ValueError, match="expects 5-d features, got 7-d"):
        head(emb, y, features=torch.randn(24, 7))
    with pytest.raises(ValueError, match="N=24"):
        head(emb, y, features=torch.randn(23, 5))
    with pytest.raises(ValueError, match="'embedding', 'features' or 'both'"):
        WithClassifierHead(create_loss("triplet"), 3, 5, on="logits")
    assert not WithClassifierHead(create_loss("triplet"), 3, 8).needs_features


# --- ce_on=both: BNNeck on the embedding and a linear classifier on the features -------------------

def test_both_heads_value_is_metric_plus_weighted_sum_of_the_two_cross_entropies():
    emb, y = batch()
    feats = torch.randn(24, 5, generator=torch.Generator().manual_seed(2), requires_grad=True)
    inner = create_loss("triplet")
    head = WithClassifierHead(inner, n_classes=3, embedding_dim=8, weight=0.7, on="both", feature_dim=5)
    assert head.needs_features and head.fc.in_features == 8 and head.fc_features.in_features == 5
    torch.nn.init.normal_(head.fc.weight, std=0.5, generator=torch.Generator().manual_seed(1))
    got = head(emb, y, features=feats)
    bn = (emb - emb.mean(0)) / torch.sqrt(emb.var(0, unbiased=False) + head.bn.eps)
    ce_e = F.cross_entropy(bn @ head.fc.weight.T, y)
    ce_f = F.cross_entropy(feats @ head.fc_features.weight.T + head.fc_features.bias, y)
    torch.testing.assert_close(got, inner(emb, y) + 0.7 * (ce_e + ce_f), rtol=1e-5, atol=1e-6)
    assert head.terms["ce"] == pytest.approx(float(ce_e + ce_f), rel=1e-5)
    assert head.terms["ce_features"] == pytest.approx(float(ce_f), rel=1e-5)
    got.backward()
    # Unlike on="features", the embeddings now get more than the metric term's gradient.
    emb2 = emb.detach().clone().requires_grad_(True)
    inner(emb2, y).backward()
    assert not torch.allclose(emb.grad, emb2.grad)
    assert feats.grad is not None and (feats.grad.abs().sum(1) > 0).all()
    with pytest.raises(ValueError, match="feature_dim"):
        WithClassifierHead(inner, 3, 8, on="both")
    with pytest.raises(ValueError, match="ce_on=both"):
        head(emb, y)
    with pytest.raises(ValueError, match="expects 5-d features, got 7-d"):
        head(emb.detach(), y, features=torch.randn(24, 7))
    # The single-head forms keep their parameter names (checkpoints written before stay loadable).
    assert "fc_features.weight" not in WithClassifierHead(inner, 3, 8).state_dict()


def test_the_trainer_feeds_the_encoders_features_to_a_features_head():
    from torch.utils.data import DataLoader, TensorDataset

    from zoo.models import Encoder
    from zoo.train import Trainer

    g = torch.Generator().manual_seed(0)
    x = torch.rand(32, 3, 32, 32, generator=g)
    y = torch.arange(32) % 2
    loader = DataLoader(TensorDataset(x, y), batch_size=16, shuffle=True, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    encoder = Encoder("resnet18", embedding_dim=8, img_size=32)
    loss = with_classifier_head(create_loss("triplet"), 2, 8, 1.0, on="features", feature_dim=encoder.num_features)
    assert loss.fc.in_features == 512
    initial = loss.fc.weight.detach().clone()
    emb, feats = encoder.eval()(x[:4], return_features=True)
    torch.testing.assert_close(emb, encoder.head(feats))  # one pass gives both, consistently
    result = Trainer(encoder, loss, loader, None, epochs=1, patience=None, svm=False, progress=False,
                     precision="fp32").fit()
    assert not torch.equal(loss.fc.weight.detach(), initial)
    assert result.history[-1]["train_loss_ce"] > 0

    # A model whose forward cannot return its features is refused before training, not mid-epoch.
    with pytest.raises(TypeError, match="return_features"):
        Trainer(torch.nn.Linear(6, 4), with_classifier_head(create_loss("triplet"), 2, 4, 1.0, on="features",
                                                             feature_dim=6),
                loader, None, epochs=1, patience=None, svm=False, progress=False)


def test_ce_on_parameter_cpu_preset_reads_the_features_smr_the_embedding_and_both_are_accepted():
    cls = FAMILIES.get("tml")
    assert cls(resolve_config("tml", {}, cls.param_names())).params["ce_on"] == "features"
    assert cls(resolve_config("tml", {"ce_on": "embedding"}, cls.param_names())).params["ce_on"] == "embedding"
    assert FAMILIES.get("guided")(resolve_config("guided", {}, FAMILIES.get("guided").param_names())).params["ce_on"] \
        == "features"
    smr = FAMILIES.get("smr")
    assert smr(resolve_config("smr", {}, smr.param_names())).params["ce_on"] == "embedding"
    assert cls(resolve_config("tml", {"ce_on": "both"}, cls.param_names())).params["ce_on"] == "both"
    both = with_classifier_head(create_loss("triplet"), 3, 8, 1.0, on="both", feature_dim=512)
    assert both.fc.in_features == 8 and both.fc_features.in_features == 512
    with pytest.raises(ValueError, match="ce_on"):
        cls(resolve_config("tml", {"ce_on": "logits"}, cls.param_names()))
    with pytest.raises(ValueError, match="feature_dim"):
        with_classifier_head(create_loss("triplet"), 3, 8, 1.0, on="features")


# --- ce_smoothing: label smoothing of the head's cross-entropy ------------------------------------

@pytest.mark.parametrize("family", ["tml", "guided", "smr"])
def test_ce_smoothing_reaches_the_cross_entropy_the_family_trains(family, tmp_path):
    from zoo.knowledge import DEFAULT_CLASSES

    cls = FAMILIES.get(family)
    assert cls(resolve_config(family, {}, cls.param_names())).params["ce_smoothing"] == 0.0  # as the plain loop
    fam = cls(resolve_config(family, {"ce_smoothing": "0.2", "ce_on": "features"}, cls.param_names()))
    classes = list(DEFAULT_CLASSES)
    fam.prepare(classes, tmp_path)
    loss = fam.training_loss(classes, feature_dim=5)  # what fit_fold hands the Trainer
    assert isinstance(loss, WithClassifierHead) and loss.label_smoothing == 0.2
    n = 4 * len(classes)
    emb = torch.randn(n, fam.params["embedding_dim"], generator=torch.Generator().manual_seed(0))
    feats = torch.randn(n, 5, generator=torch.Generator().manual_seed(1))
    y = torch.arange(n) % len(classes)
    metric = loss.loss(emb, y).detach()
    logits = loss.fc(feats)
    got = loss(emb, y, features=feats)
    torch.testing.assert_close(got, metric + loss.weight * F.cross_entropy(logits, y, label_smoothing=0.2),
                               rtol=1e-5, atol=1e-5)
    unsmoothed = metric + loss.weight * F.cross_entropy(logits, y)
    assert not torch.allclose(got, unsmoothed)  # the smoothing changes the value the Trainer steps on


@pytest.mark.parametrize("param,value,out_of_range,default", [
    ("ce_smoothing", "0.1", "0.9", 0.0),
    ("metric_weight_end", "0.5", "1.5", 1.0),
])
def test_head_only_parameters_without_a_head_fail_before_any_run_and_name_the_fix(param, value, out_of_range,
                                                                                    default):
    cls = FAMILIES.get("tml")
    with pytest.raises(ValueError, match=rf"{param}={value} .*ce_weight=0.*-P ce_weight=1"):
        cls(resolve_config("tml", {param: value, "ce_weight": "0"}, cls.param_names()))
    with pytest.raises(ValueError, match=param):
        cls(resolve_config("tml", {param: out_of_range}, cls.param_names()))
    # the paper preset has no head, so the default (which needs none) is accepted
    assert cls(resolve_config("tml", {"preset": "paper"}, cls.param_names())).params[param] == default


# --- metric_weight_end: the metric terms hand training over to the head ---------------------------

def _linear_trainer(tmp_path, epochs, callbacks, resume=False, budget=None):
    from torch.utils.data import DataLoader, TensorDataset

    from zoo.train import Trainer

    g = torch.Generator().manual_seed(0)
    x = torch.randn(48, 6, generator=g)
    y = torch.arange(48) % 3
    loader = DataLoader(TensorDataset(x, y), batch_size=16, shuffle=True, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    loss = WithClassifierHead(create_loss("triplet"), 3, 4)
    return Trainer(torch.nn.Linear(6, 4), loss, loader, None, epochs=epochs, patience=None, svm=False, progress=False,
                   checkpoint_dir=tmp_path, resume=resume, callbacks=callbacks, budget=budget), loss


def test_metric_weight_schedule_falls_along_the_cosine_of_training_and_resumes_where_it_was(tmp_path):
    from zoo.losses.classifier_head import MetricWeightSchedule

    seen = []  # the weight the loss held while the Trainer stepped on it, per epoch
    spy = LambdaCallback(on_batch_end=lambda t, e, b, loss: seen.append((e, t.loss_fn.metric_weight)))
    trainer, loss = _linear_trainer(tmp_path / "a", 4, [MetricWeightSchedule(0.2), spy])
    history = trainer.fit().history
    # start of epoch e: progress (e-1)/4 -> 0.2 + 0.8 * (1 + cos(pi p)) / 2
    want = [0.2 + 0.8 * 0.5 * (1 + math.cos(math.pi * (e - 1) / 4)) for e in (1, 2, 3, 4)]
    assert [h["metric_weight"] for h in history] == pytest.approx(want)
    assert want[0] == 1.0 and want[-1] < 0.35
    assert {e: w for e, w in seen} == pytest.approx(dict(zip((1, 2, 3, 4), want)))

    # killed as epoch 3 starts, resumed: epochs 3 and 4 train on the uninterrupted run's weights
    class Killed(Exception):
        pass

    def kill(t, e):
        if e == 3:
            raise Killed

    first, _ = _linear_trainer(tmp_path / "b", 4, [MetricWeightSchedule(0.2), LambdaCallback(on_epoch_start=kill)])
    with pytest.raises(Killed):
        first.fit()
    resumed, _ = _linear_trainer(tmp_path / "b", 4, [MetricWeightSchedule(0.2)], resume=True)
    again = resumed.fit().history
    assert [h["metric_weight"] for h in again[2:]] == pytest.approx(want[2:])
    assert [h["train_loss"] for h in again[2:]] == pytest.approx([h["train_loss"] for h in history[2:]], rel=1e-4)


def test_training_progress_follows_the_budget_clock_when_it_is_further_along(tmp_path):
    from zoo.train.budget import TimeBudget

    now = [0.0]
    trainer, _ = _linear_trainer(tmp_path, 100, [], budget=TimeBudget(1.0, clock=lambda: now[0]))
    trainer.budget.start()
    now[0] = 30.0  # half the minute spent, 1 % of the epochs
    assert trainer.training_progress(2) == pytest.approx(0.5)
    now[0] = 90.0
    assert trainer.training_progress(2) == 1.0  # clamped
    plain, _ = _linear_trainer(tmp_path / "p", 4, [])
    assert plain.training_progress(3) == pytest.approx(0.5) and plain.training_progress(1) == 0.0


def test_metric_weight_schedule_needs_a_classifier_head_and_a_valid_end(tmp_path):
    from zoo.losses.classifier_head import MetricWeightSchedule
    from zoo.train import Trainer

    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        MetricWeightSchedule(1.5)
    x, y = torch.randn(12, 6), torch.arange(12) % 3
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=6)
    trainer = Trainer(torch.nn.Linear(6, 4), create_loss("triplet"), loader, None, epochs=1, patience=None, svm=False,
                      progress=False, callbacks=[MetricWeightSchedule(0.5)])
    with pytest.raises(TypeError, match="ce_weight > 0"):
        trainer.fit()


@pytest.mark.parametrize("family", ["tml", "guided", "smr"])
def test_metric_weight_end_adds_the_schedule_to_what_the_family_trains_with(family, tmp_path):
    from zoo.losses.classifier_head import MetricWeightSchedule

    cls = FAMILIES.get(family)
    default = cls(resolve_config(family, {}, cls.param_names()))
    assert default.params["metric_weight_end"] == 1.0
    assert not any(isinstance(c, MetricWeightSchedule) for c in default.training_callbacks(None))
    extra = {"loss": "inverse_umap"} if family == "guided" else {}  # guided then has its own callback too
    fam = cls(resolve_config(family, {"metric_weight_end": "0.3", **extra}, cls.param_names()))
    schedules = [c for c in fam.training_callbacks(None) if isinstance(c, MetricWeightSchedule)]
    assert len(schedules) == 1 and schedules[0].end == 0.3
    assert len(fam.training_callbacks(None)) == len(fam.callbacks(None)) + 1  # the family's own are kept
