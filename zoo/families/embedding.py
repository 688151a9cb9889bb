"""The embedding families (TML, guided, SMR…): encoder → Trainer with SVM-stage validation → SVM
refit on the best epoch's training embeddings → test metrics and plots → an ``embedding_svm``
model. A subclass provides only hooks (docs/families.md):

```python
class MyFamily(EmbeddingFamily):
    def prepare(self, classes, out_dir): ...           # once per fold (guide, curve, artifacts)
    def build_loss(self, classes) -> nn.Module: ...     # required: no default
    def callbacks(self, loss) -> list[Callback]: ...    # per-epoch hooks
    def model_extras(self, loss, train_emb, train_y, classes) -> dict[str, ModelExtras]: ...
```
"""

from __future__ import annotations

import abc
import copy
from pathlib import Path
from typing import Any, ClassVar, Sequence

from torch import nn

from zoo.families.base import Family, FoldContext, FoldOutcome
from zoo.families.params import PRESETS, Param
from zoo.data.datasets import eval_loader

# What the SVM stage (validation, the registered model, its extras and trust layer) sees. The loss
# always trains the head's embedding; "features" reads the backbone's pooled features before that
# head, as a hand-written cross-entropy loop + SVM does (benchmarks/plain_loop.py).
CE_ON = ("embedding", "features", "both")  # where the auxiliary cross-entropy head reads (WithClassifierHead's `on`)

SVM_INPUT = Param("svm_input", str, "auto", "what the SVM sees: embedding (the encoder head's output, the papers') | "
                                            "features (the backbone's pooled features before the head)",
                  choices=("embedding", "features"))

EMBEDDING_PARAMS: tuple[Param, ...] = (
    Param("svm_every", int, "auto", "grid-search the SVM's gamma/C every N epochs", low=1),
    Param("embedding_dim", int, "auto", "embedding size of the encoder head", low=2),
    Param("ce_weight", float, "auto", "weight of an auxiliary cross-entropy head (where it reads: ce_on; "
                                      "0 = the papers' metric loss alone)", low=0.0, high=10.0),
    Param("ce_on", str, "auto", "what the cross-entropy head reads: embedding (BNNeck on the embeddings) | "
                                "features (a linear classifier on the backbone's pooled features, as a plain "
                                "cross-entropy network; the metric loss still trains the embedding) | "
                                "both (the two heads, each weighted by ce_weight)",
          choices=CE_ON),
    Param("ce_smoothing", float, 0.0, "label smoothing of the auxiliary cross-entropy head (0 = none, as the "
                                      "plain loop; needs ce_weight > 0)", low=0.0, high=0.5),
    Param("metric_weight_end", float, 1.0, "weight of the metric loss at the end of training: it falls from 1 "
                                           "along the learning rate's cosine (1 = constant, the papers'; "
                                           "needs ce_weight > 0 below 1)", low=0.0, high=1.0),
    Param("sampler", str, "auto", "training batches: m_per_class (m images of each of batch/m classes, "
                                  "with replacement) | random (a shuffled pass over every image)",
          choices=("m_per_class", "random")),
    SVM_INPUT,
)


def m_per_class(batch_size: int, n_classes: int) -> int:
    """Images per class in a batch for triplet mining: the smallest divisor of ``batch_size`` that is
    at least 2 and lets ``n_classes`` classes fill the batch (pytorch-metric-learning's
    MPerClassSampler needs ``batch_size % m == 0`` and ``m * n_classes >= batch_size``)."""
    need = max(2, -(-batch_size // max(1, n_classes)))
    for m in range(need, batch_size + 1):
        if batch_size % m == 0:
            return m
    return batch_size


def packaged_svm(best_svm, train_emb, train_y, *, seed: int, max_search: int | None):
    """The SVM a model is registered with: refitted on all training embeddings of the best weights,
    with calibrated probabilities. Its gamma/C are the best epoch's when they were searched on that
    epoch's embeddings (``searched_``); when that epoch only refitted an earlier epoch's pair (a
    search every ``svm_every`` validations), they are searched again here on the best weights, as a
    hand-written loop grid-searches its final features."""
    from zoo.evaluate.svm import SVMStage

    if getattr(best_svm, "searched_", False):
        return SVMStage(random_state=seed).refit_only(train_emb, train_y, params=best_svm.best_params_)
    return SVMStage(random_state=seed, max_search=max_search).fit(train_emb, train_y)


def with_classifier_head(loss: nn.Module, n_classes: int, embedding_dim: int, weight: float,
                         on: str = "embedding", feature_dim: int | None = None,
                         label_smoothing: float = 0.0) -> nn.Module:
    """The family's loss plus the auxiliary cross-entropy head when ``weight > 0``
    (:class:`zoo.losses.classifier_head.WithClassifierHead`), reading the embeddings, (``on=
    "features"``, ``feature_dim`` wide) the backbone features, or both (``on="both"``), with
    ``label_smoothing`` in its cross-entropy; the loss itself for 0. Callbacks and ``model_extras``
    still reach the family's loss through ``unwrap()``."""
    if not weight:  # no head, nothing to smooth (the families refuse ce_smoothing with ce_weight=0)
        return loss
    from zoo.losses.classifier_head import WithClassifierHead

    if on in ("features", "both") and not feature_dim:
        raise ValueError(f"a classifier head on={on!r} needs the encoder's feature_dim")
    return WithClassifierHead(loss, n_classes, embedding_dim, weight=weight, on=on,
                              feature_dim=feature_dim if on != "embedding" else None, label_smoothing=label_smoothing)


def train_eval_loader(train_loader):
    """The training set without augmentation, sharing the decoded-image cache of ``train_loader``
    (decoding twice would double the start-up time and the memory)."""
    from torch.utils.data import DataLoader

    from zoo.data.transforms import eval_transform

    ds = copy.copy(train_loader.dataset)
    ds.train = False
    ds.transform = eval_transform(ds.img_size)
    return DataLoader(ds, batch_size=train_loader.batch_size, shuffle=False,
                      num_workers=train_loader.num_workers, pin_memory=train_loader.pin_memory,
                      persistent_workers=train_loader.num_workers > 0)


class EmbeddingFamily(Family):
    """Shared ``fit_fold`` of the encoder → SVM families; subclasses implement :meth:`build_loss`."""

    kind: ClassVar[str] = "embedding_svm"
    params: ClassVar[Any] = EMBEDDING_PARAMS
    primary_metric: ClassVar[str] = "macro_f1"
    direction: ClassVar[str] = "maximize"
    has_classes: ClassVar[bool] = True
    contract_params: ClassVar[dict[str, str]] = {"svm_every": "1", "embedding_dim": "16"}
    takes_budget: ClassVar[bool] = True  # fit_fold passes self.time_budget() to the Trainer

    def __init__(self, cfg) -> None:
        super().__init__(cfg)
        p = self.params
        if p.get("ce_smoothing") and not p.get("ce_weight"):
            # Training without the smoothing asked for would log a parameter that did nothing.
            raise ValueError(f"ce_smoothing={p['ce_smoothing']:g} smooths the auxiliary cross-entropy head, which "
                             "ce_weight=0 leaves out: set ce_weight > 0 (-P ce_weight=1 under mlflow run, "
                             "--ce_weight 1 with zoo train) or leave ce_smoothing at 0")
        if p.get("metric_weight_end", 1.0) < 1.0 and not p.get("ce_weight"):
            # Without the head a falling metric weight only shrinks the loss towards 0.
            raise ValueError(f"metric_weight_end={p['metric_weight_end']:g} hands training over from the metric "
                             "loss to the auxiliary cross-entropy head, which ce_weight=0 leaves out: set "
                             "ce_weight > 0 (-P ce_weight=1 under mlflow run, --ce_weight 1 with zoo train) or "
                             "leave metric_weight_end at 1")

    # -- hooks ---------------------------------------------------------------------------------
    def prepare(self, classes: Sequence[str], out_dir: Path) -> None:
        """Once per fold before the loss is built: the classes trained on and a folder for
        artifacts (logged to the run under ``family/``)."""

    @abc.abstractmethod
    def build_loss(self, classes: Sequence[str]) -> nn.Module:
        """The training loss (required: there is no default)."""

    def callbacks(self, loss: nn.Module) -> list:
        return []

    def model_extras(self, loss: nn.Module, train_embeddings, train_labels, classes) -> dict[str, Any]:
        """``ModelExtras`` the packaged model carries, keyed by their ``MODEL_EXTRAS`` name."""
        return {}

    def extras_schema(self) -> list[tuple[str, str]]:
        """Output columns the extras add (declared before training)."""
        return []

    def training_callbacks(self, loss: nn.Module) -> list:
        """The callbacks ``fit_fold`` hands the Trainer: the family's own (:meth:`callbacks`) and the
        metric weight's schedule when ``metric_weight_end`` < 1."""
        cbs = list(self.callbacks(loss))
        if self.params.get("metric_weight_end", 1.0) < 1.0:
            from zoo.losses.classifier_head import MetricWeightSchedule

            cbs.append(MetricWeightSchedule(self.params["metric_weight_end"]))
        return cbs

    def training_loss(self, classes: Sequence[str], feature_dim: int) -> nn.Module:
        """The loss the Trainer optimises: :meth:`build_loss` plus the auxiliary cross-entropy head
        the parameters ask for (``ce_weight``, ``ce_on``, ``ce_smoothing``); ``feature_dim`` is the
        encoder's backbone width."""
        p = self.params
        return with_classifier_head(self.build_loss(classes), len(classes), p["embedding_dim"], p["ce_weight"],
                                    on=p["ce_on"], feature_dim=feature_dim, label_smoothing=p["ce_smoothing"])

    # -- declarations ---------------------------------------------------------------------------
    def output_columns(self, classes: Sequence[str]) -> list[str]:
        return ["label", "confidence", *(f"p_{c}" for c in classes), *(c for c, _ in self.extras_schema())]

    def common_search_space(self, trial) -> dict[str, Any]:
        """The common parameters an embedding family tunes: the learning rate (log scale)."""
        from zoo.families.params import COMMON_PARAMS

        lr = next(p for p in COMMON_PARAMS if p.name == "lr")
        return {"lr": lr.suggest(trial, low=1e-4, high=1e-2)}

    # -- one fold ---------------------------------------------------------------------------------
    def fit_fold(self, ctx: FoldContext) -> FoldOutcome:
        from zoo.evaluate.metrics import classification_metrics, scalar_metrics
        from zoo.evaluate.plots import plot_confusion_matrix, plot_embedding_map
        from zoo.evaluate.svm import SVMStage
        from zoo.models import create_encoder
        from zoo.models.embedding_svm import EmbeddingSVMModel
        from zoo.train import Trainer, seed_everything

        cfg, p = self.cfg, self.params
        classes = list(ctx.classes)
        if p["sampler"] == "m_per_class":
            loaders = ctx.loaders(sampler="m_per_class", m_per_class=m_per_class(cfg.batch_size, len(classes)))
        else:  # a permutation per epoch: every image once (positives per class come from batch size)
            loaders = ctx.loaders(sampler=None)
        self.prepare(classes, ctx.out_dir)
        # Reseed right before the model is built: every configuration of a fold starts from the
        # same weights, whatever the data loading or the family's preparation drew before.
        seed_everything(cfg.seed)
        encoder = create_encoder(cfg.backbone, p["embedding_dim"], pretrained=cfg.pretrained, img_size=cfg.img_size)
        loss = self.training_loss(classes, feature_dim=encoder.num_features)
        svm_max_search = PRESETS[cfg.preset]["svm_max_search"]
        trainer = Trainer(
            encoder, loss, loaders["train"], loaders["val"], epochs=cfg.epochs, patience=cfg.patience,
            lr=cfg.lr, device=cfg.device, callbacks=[*self.training_callbacks(loss), *ctx.callbacks],
            checkpoint_dir=ctx.checkpoint_dir, resume=cfg.resume, svm_every=p["svm_every"],
            # The batched, tensor-normalised eval path over the same decoded cache (zoo.data.datasets).
            train_eval_loader=eval_loader(loaders["train"]), classes=classes, severity=ctx.severity,
            precision=cfg.precision, val_every=cfg.val_every,
            budget=self.time_budget(),
            svm_train_max=PRESETS[cfg.preset].get("svm_train_max"),
            ontology=ctx.ontology, seed=cfg.seed, progress=ctx.progress, monitor=f"val_{self.primary_metric}",
            mode="max" if self.direction == "maximize" else "min",
            # Validation only needs decisions: no calibration, grid search on a subsample.
            svm=SVMStage(random_state=cfg.seed, calibrate=False, max_search=svm_max_search),
            represent=p["svm_input"],
            logger=ctx.run, extra={"run_id": ctx.run.run_id},
        )
        fit = trainer.fit()
        ctx.run.set_tags({"precision": fit.precision, "stopped_on_budget": str(fit.stopped_on_budget).lower()})
        if fit.svm is None:
            raise RuntimeError("training ended without a fitted SVM stage (no validation ran)")

        train_emb, train_y = trainer.svm_embed(trainer.train_eval_loader, desc="embed train")  # best weights
        svm = packaged_svm(fit.svm, train_emb, train_y, seed=cfg.seed, max_search=svm_max_search)
        metrics: dict[str, float] = {k: v for k, v in fit.best.items() if k.startswith("val_")}
        metrics["best_epoch"] = float(fit.best_epoch or 0)
        metrics["svm_final_C"] = float(svm.best_params_["C"])  # gamma may be "scale": see the model's config
        metrics["svm_final_searched"] = float(svm.searched_)
        title = " ".join([cfg.family, *self.name_parts(), cfg.dataset, f"fold {ctx.fold}"])
        test_index: list[str] = []
        # Prediction sets, severity-aware decisions, referral (zoo.evaluate.trust): calibrated on
        # the validation fold — never the test fold — and reported on the test fold.
        from zoo.evaluate.trust import class_probabilities, fold_trust

        val_emb, val_y = trainer.svm_embed(loaders["val"], desc="embed val")
        trust_test = None
        if "test" in loaders and len(ctx.split["test"]):
            test_emb, test_y = trainer.svm_embed(loaders["test"], desc="embed test")
            test = classification_metrics(test_y, svm.predict(test_emb), classes, severity=ctx.severity,
                                          ontology=ctx.ontology)
            test_metrics = scalar_metrics(test, "test_")
            test_metrics.pop("test_n", None)
            metrics.update(test_metrics)
            ctx.run.log_metrics_json({"test": test, "best_epoch": fit.best_epoch, "history": fit.history})
            ctx.run.log_figure(plot_confusion_matrix(test["confusion_matrix"], classes, ontology=ctx.ontology,
                                                     title=f"{title} — test"), "plots/confusion_matrix.png")
            ctx.run.log_figure(plot_embedding_map(test_emb, test_y, classes, ontology=ctx.ontology,
                                                  method=ctx.options.get("embedding_map", "auto"),
                                                  title=f"{title} — test embeddings", random_state=cfg.seed),
                               "plots/embedding_map.png")
            test_index = ctx.split["test"]["image"].astype(str).tolist()
            trust_test = (class_probabilities(svm, test_emb, classes), test_y, svm.predict(test_emb))
        else:
            ctx.run.log_metrics_json({"best_epoch": fit.best_epoch, "history": fit.history})
        ctx.run.log_figure(plot_history(fit.history), "plots/history.png")
        trust, trust_metrics = fold_trust(ctx.run, classes, (class_probabilities(svm, val_emb, classes), val_y),
                                          trust_test, title=f"{title} — test")
        metrics.update(trust_metrics)

        model = None
        if ctx.options.get("log_model", True):
            extras = self.model_extras(loss, train_emb, train_y, classes)
            model = EmbeddingSVMModel(cfg.family, encoder.cpu(), svm, classes, img_size=cfg.img_size, extras=extras,
                                      config={**cfg.to_dict(), **p, "fold": ctx.fold},
                                      training=ctx.options.get("training"), device="cpu",
                                      represent=p["svm_input"])
            model.trust = trust
        return FoldOutcome(model, metrics, fit.best_epoch, fit.epochs_run, list(fit.history), test_index)


def plot_history(history: list[dict[str, float]]):
    """Loss and validation metrics per epoch, the two curves people look at first."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    frame = pd.DataFrame(history)
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.2))
    if "train_loss" in frame:
        a.plot(frame["epoch"], frame["train_loss"], marker=".")
    a.set(xlabel="epoch", ylabel="train loss")
    for key in ("val_macro_f1", "val_macro_f1_tolerant", "val_mcs_norm"):
        if key in frame:
            b.plot(frame["epoch"], frame[key], marker=".", label=key)
    b.set(xlabel="epoch", ylabel="validation")
    b.legend(fontsize=7)
    fig.tight_layout()
    return fig


__all__ = ["EMBEDDING_PARAMS", "SVM_INPUT", "EmbeddingFamily", "m_per_class", "packaged_svm", "plot_history", "train_eval_loader",
           "with_classifier_head"]
