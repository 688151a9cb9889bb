"""The Trainer on a tiny in-memory dataset: validation with the SVM stage, early stopping,
checkpoint + kill + resume, the NaN/inf guard, callbacks and the metrics logger."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from zoo.evaluate import SVMStage
from zoo.losses import EmbeddingLoss, create_loss
from zoo.models import create_encoder
from zoo.train import Callback, LambdaCallback, NonFiniteLossError, Trainer, read_extra, seed_everything
from zoo.train.checkpoint import BEST, BEST_SVM, LAST, checkpoint_summary

CLASSES = ["red", "green", "blue"]


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def colour_dataset(n: int, seed: int, size: int = 32) -> TensorDataset:
    """Noise images whose class is the brightest colour channel (separable in colour)."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 3
    x = torch.rand(n, 3, size, size, generator=g) * 0.4
    x[torch.arange(n), y] += 0.6
    return TensorDataset(x, y)


def make_trainer(tmp_path=None, *, epochs=3, patience=5, seed=0, callbacks=(), **kw) -> Trainer:
    seed_everything(seed)
    model = create_encoder("test_resnet", embedding_dim=16)
    train = colour_dataset(36, seed=1)
    kw.setdefault("svm", SVMStage(gammas=("scale",), Cs=(1.0,), cv=2))
    return Trainer(
        model, kw.pop("loss", create_loss("triplet")),
        DataLoader(train, batch_size=12, shuffle=True, generator=torch.Generator().manual_seed(seed)),
        kw.pop("val_loader", DataLoader(colour_dataset(18, seed=2), batch_size=18)),
        train_eval_loader=DataLoader(train, batch_size=36),
        epochs=epochs, patience=patience, seed=seed, callbacks=callbacks, classes=CLASSES,
        checkpoint_dir=tmp_path, progress=False, **kw,
    )


class Flat(Callback):
    """Adds a constant metric: nothing ever improves after epoch 1."""

    def on_epoch_end(self, trainer, epoch, metrics):
        trainer.epoch_metrics["flat"] = 0.5


def test_fit_validates_with_the_svm_stage_and_keeps_the_best_weights():
    seen = {}

    def on_epoch_end(trainer, epoch, metrics):
        emb, labels = trainer.train_embeddings()
        seen[epoch] = (emb.shape, trainer.train_embeddings() is trainer.last_train_embeddings)

    trainer = make_trainer(epochs=2, callbacks=[LambdaCallback(on_epoch_end=on_epoch_end)])
    result = trainer.fit()
    assert [row["epoch"] for row in result.history] == [1, 2]
    row = result.history[-1]
    for key in ("train_loss", "train_loss_main", "train_loss_norm", "lr", "train_images_per_s", "val_macro_f1",
                "val_balanced_accuracy", "val_accuracy", "svm_C", "best_val_macro_f1"):
        assert key in row and math.isfinite(row[key]), key
    assert 0.0 <= row["val_macro_f1"] <= 1.0
    assert seen == {1: ((36, 16), True), 2: ((36, 16), True)}  # reused, not recomputed
    assert result.best_epoch in (1, 2) and result.best_metric == max(r["val_macro_f1"] for r in result.history)
    assert result.svm is not None and list(result.svm.classes_) == [0, 1, 2]
    assert result.monitor == "val_macro_f1" and not result.stopped_early
    # the model holds the best epoch's weights: re-embedding reproduces the best SVM's score
    emb, y = trainer.embed(trainer.val_loader)
    assert emb.shape == (18, 16) and y.tolist() == [0, 1, 2] * 6


def test_early_stopping_triggers_on_a_flat_metric_with_patience_1():
    result = make_trainer(epochs=5, patience=1, monitor="flat", callbacks=[Flat()], svm=False).fit()
    assert result.stopped_early and result.epochs_run == 2
    assert result.best_epoch == 1 and result.best_metric == 0.5
    assert len(result.history) == 2


def test_grid_search_every_n_epochs_and_refit_in_between():
    result = make_trainer(epochs=3, svm_every=2).fit()
    assert [row["svm_searched"] for row in result.history] == [1.0, 0.0, 1.0]


class Killed(RuntimeError):
    pass


class CountingCallback(Callback):
    """Has state that must survive a resume; can simulate a kill at the end of an epoch."""

    def __init__(self, kill_at=None):
        self.kill_at = kill_at
        self.epochs_seen = 0

    def on_epoch_end(self, trainer, epoch, metrics):
        self.epochs_seen += 1
        trainer.epoch_metrics["epochs_seen"] = float(self.epochs_seen)
        if epoch == self.kill_at:
            raise Killed(f"killed at epoch {epoch}")

    def state_dict(self):
        return {"epochs_seen": self.epochs_seen}

    def load_state_dict(self, state):
        self.epochs_seen = state["epochs_seen"]


def test_kill_and_resume_continue_at_the_right_epoch_with_the_same_best(tmp_path):
    reference = make_trainer(tmp_path / "ref", epochs=3, callbacks=[CountingCallback()]).fit()

    ckdir = tmp_path / "run"
    killed = make_trainer(ckdir, epochs=3, callbacks=[CountingCallback(kill_at=2)], extra={"mlflow_run_id": "r1"})
    with pytest.raises(Killed):
        killed.fit()
    assert checkpoint_summary(ckdir)["epoch"] == 1  # epoch 2 died before its checkpoint
    assert read_extra(ckdir) == {"mlflow_run_id": "r1"}
    assert (ckdir / LAST).is_file() and (ckdir / BEST).is_file() and (ckdir / BEST_SVM).is_file()

    counter = CountingCallback()
    resumed = make_trainer(ckdir, epochs=3, callbacks=[counter], resume=True, seed=123).fit()
    assert resumed.resumed_from == 1
    assert [row["epoch"] for row in resumed.history] == [1, 2, 3]
    assert [row["epochs_seen"] for row in resumed.history] == [1, 2, 3]  # callback state restored
    assert resumed.extra["mlflow_run_id"] == "r1"
    # same RNG, optimizer, scheduler and weights as the uninterrupted run: same numbers
    for got, want in zip(resumed.history, reference.history):
        assert got["lr"] == pytest.approx(want["lr"])
        assert got["train_loss"] == pytest.approx(want["train_loss"], rel=1e-4, abs=1e-6)
        assert got["val_macro_f1"] == pytest.approx(want["val_macro_f1"])
    assert (resumed.best_epoch, resumed.best_metric) == (reference.best_epoch, reference.best_metric)

    # resuming a finished run trains nothing and returns the same result
    again = make_trainer(ckdir, epochs=3, callbacks=[CountingCallback()], resume=True).fit()
    assert len(again.history) == 3 and again.best_metric == resumed.best_metric
    assert again.svm is not None


def test_resume_without_checkpoint_starts_afresh(tmp_path):
    result = make_trainer(tmp_path / "empty", epochs=1, resume=True).fit()
    assert result.resumed_from is None and len(result.history) == 1


def test_nan_guard_stops_on_an_exploding_learning_rate():
    trainer = make_trainer(epochs=2, lr=1e30, scheduler="constant")
    with pytest.raises(NonFiniteLossError) as err:
        trainer.fit()
    message = str(err.value)
    assert "epoch 1" in message and "lower the learning rate" in message and "1e+30" in message


class NaNAtSecondBatch(EmbeddingLoss):
    def __init__(self):
        super().__init__()
        self.calls = 0

    def compute(self, embeddings, labels):
        self.calls += 1
        loss = embeddings.pow(2).mean()
        return loss * float("nan") if self.calls == 2 else loss


def test_nan_guard_names_epoch_and_batch_and_never_steps_on_it():
    trainer = make_trainer(epochs=1, loss=NaNAtSecondBatch())
    with pytest.raises(NonFiniteLossError) as err:
        trainer.fit()
    assert (err.value.what, err.value.epoch, err.value.batch) == ("loss", 1, 2)
    assert "epoch 1, batch 2" in str(err.value) and "check the input data" in str(err.value)
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())


class RecordingLogger:
    def __init__(self):
        self.calls = []

    def log_metrics(self, metrics, step):
        self.calls.append((step, dict(metrics)))


def test_logger_gets_every_epoch_with_its_step():
    logger = RecordingLogger()
    make_trainer(epochs=2, logger=logger).fit()
    assert [step for step, _ in logger.calls] == [1, 2]
    assert all("val_macro_f1" in m and "train_loss" in m for _, m in logger.calls)
    with pytest.raises(TypeError, match="log_metrics"):
        make_trainer(logger=object())


def test_without_validation_it_monitors_the_training_loss():
    trainer = make_trainer(epochs=2, val_loader=None)
    result = trainer.fit()
    assert result.monitor == "train_loss" and result.mode == "min"
    assert "val_macro_f1" not in result.history[-1]
    with pytest.raises(RuntimeError, match="once"):
        trainer.fit()


def test_callbacks_can_stop_and_unknown_monitors_are_named():
    stopper = LambdaCallback(on_epoch_end=lambda t, e, m: setattr(t, "should_stop", True))
    result = make_trainer(epochs=4, callbacks=[stopper]).fit()
    assert result.stopped_early and result.epochs_run == 1
    with pytest.raises(KeyError, match="val_macro_f1"):
        make_trainer(epochs=1, monitor="val_f2").fit()


def test_bad_arguments_are_rejected():
    with pytest.raises(ValueError, match="epochs"):
        make_trainer(epochs=0)
    with pytest.raises(ValueError, match="svm_every"):
        make_trainer(svm_every=0)
    with pytest.raises(TypeError, match="Callback"):
        make_trainer(callbacks=[object()])
    with pytest.raises(ValueError, match="patience"):
        make_trainer(patience=0)
    with pytest.raises(ValueError, match="unknown scheduler"):
        make_trainer(scheduler="cosin")
    with pytest.raises(ValueError, match="'embedding'.*'features'"):
        make_trainer(represent="feature")
    np.testing.assert_equal(make_trainer().device.type in ("cpu", "cuda", "mps"), True)


def test_grad_clip_bounds_the_gradient_norm():
    norms = []

    def on_batch_end(trainer, epoch, batch, loss):
        grads = [p.grad for p in trainer.model.parameters() if p.grad is not None]
        norms.append(float(torch.nn.utils.get_total_norm(grads)))

    make_trainer(epochs=1, grad_clip=1e-3, svm=False, val_loader=None,
                 callbacks=[LambdaCallback(on_batch_end=on_batch_end)]).fit()
    assert len(norms) == 3 and max(norms) <= 1e-3 * (1 + 1e-4)


def test_represent_features_validates_on_the_backbone_features_and_callbacks_keep_the_embedding():
    """represent="features": the SVM stage fits and scores model.features(x) (the best SVM too);
    train_embeddings(), what guide/curve callbacks read, stays the model's output."""
    val = colour_dataset(18, seed=2)
    x_val = torch.stack([x for x, _ in val])
    seen = {}

    class Look(Callback):
        def on_epoch_end(self, trainer, epoch, metrics):
            model = trainer.model.eval()
            with torch.inference_mode():  # fp32 on CPU (no precision asked): exact features
                want = model.features(x_val).float().numpy()
            seen[epoch] = (trainer.train_embeddings()[0], trainer.last_train_embeddings[0],
                           trainer.last_val_embeddings[0], want)

    trainer = make_trainer(epochs=2, represent="features", callbacks=[Look()],
                           val_loader=DataLoader(val, batch_size=18))
    fit = trainer.fit()
    model = trainer.model
    for head, svm_train, svm_val, want in seen.values():
        assert head.shape[1] == model.embedding_dim != model.num_features
        assert svm_train.shape[1] == model.num_features
        np.testing.assert_allclose(svm_val, want, rtol=1e-4, atol=1e-5)
    assert fit.svm.n_features_in_ == model.num_features
    emb, _ = trainer.svm_embed(DataLoader(val, batch_size=18))
    assert emb.shape == (18, model.num_features)


def test_the_trainer_uses_the_fused_adamw_on_a_cpu_with_the_default_loops_update():
    from zoo.train.trainer import make_adamw

    trainer = make_trainer(epochs=1)
    assert trainer.optimizer.defaults["fused"] is True
    torch.manual_seed(0)
    a = [torch.nn.Parameter(torch.randn(5, 3)), torch.nn.Parameter(torch.randn(7))]
    b = [torch.nn.Parameter(p.detach().clone()) for p in a]
    start = [p.detach().clone() for p in a]
    fused, loop = make_adamw(a, lr=1e-2, weight_decay=1e-4), torch.optim.AdamW(b, lr=1e-2, weight_decay=1e-4)
    for step in range(5):
        for ps, opt in ((a, fused), (b, loop)):
            opt.zero_grad()
            sum(((p - step) ** 2).sum() for p in ps).backward()
            opt.step()
    for p, q, p0 in zip(a, b, start):
        assert not torch.allclose(p, p0) and torch.allclose(p, q, atol=1e-6)  # moved, and alike
