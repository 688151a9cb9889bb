"""An auxiliary softmax head: ``loss(e, y) + weight * CE(W · BN(e), y)``, or on the backbone's
features ``f`` before the embedding head: ``loss(e, y) + weight * CE(W · f + b, y)``.

Metric learning alone gives an encoder few bits per step: a triplet term is zero for every
triplet that already satisfies the margin, and the guide terms pull classes to fixed places. A
cross-entropy head beside it gives every image a gradient towards its class. The form is the
"BNNeck" of Luo et al. (2019, *Bag of Tricks and a Strong Baseline for Deep Person
Re-identification*): the metric terms see the embedding ``e``; the classifier sees ``BN(e)``
through a bias-free linear layer, so the two objectives do not fight over the embedding's scale.

With ``on="features"`` the head reads the pooled backbone features (the input of the encoder's
embedding head), as the classifier of a plain cross-entropy network does; the metric terms still
train the embedding. The two objectives then share the backbone but not a layer: the cross-entropy
gradient reaches the features exactly as in a plain loop, and the triplet/guide terms shape the
projection on top (plus, through it, the backbone). The Trainer passes the features when the loss
says ``needs_features``. ``on="both"`` keeps both heads, each weighted by ``weight``: the features
learn as a plain network's, and the embedding the SVM reads is also pulled towards separable classes
(with the features head alone, only the metric terms shape the embedding).

``metric_weight`` scales the metric terms (1 by default). :class:`MetricWeightSchedule` lowers it
along a cosine over training, so that a run starts from the metric loss beside the head and ends
on the head's cross-entropy alone (or mostly), as a plain network does.

The head exists only for training. Its weights are parameters of the loss (the Trainer optimises
them, saves them in checkpoints and averages their gradients under DDP); the packaged model is the
encoder and its SVM, as without the head. PML has no such wrapper, hence this file.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from zoo.train.callbacks import Callback

from .base import EmbeddingLoss


class WithClassifierHead(EmbeddingLoss):
    """``metric_weight * loss(e, y) + weight * cross_entropy(fc(bn(e)), y)``; records the inner
    terms (unweighted, as ``metric``) plus ``ce``. ``metric_weight`` is 1 unless a
    :class:`MetricWeightSchedule` sets it.

    Args:
        loss: the family's loss (any :class:`EmbeddingLoss`, e.g. TML or a guided loss).
        n_classes: classes of the head.
        embedding_dim: size of the embeddings it receives.
        weight: weight of the cross-entropy term (> 0; leave the wrapper out for 0).
        label_smoothing: of the cross-entropy.
        on: ``"embedding"`` (BNNeck on the embeddings; ``embedding_dim`` is their size),
            ``"features"`` (a linear layer with bias on the backbone features the Trainer passes as
            ``features=``; ``embedding_dim`` is then the features' size, e.g. 512 for resnet18,
            unless ``feature_dim`` is given) or ``"both"`` (the two heads, each weighted by
            ``weight``; ``feature_dim`` is required).
        feature_dim: width of the backbone features, for ``on="features"`` or ``"both"``.
    """

    def __init__(self, loss: nn.Module, n_classes: int, embedding_dim: int, weight: float = 1.0,
                 label_smoothing: float = 0.0, on: str = "embedding", feature_dim: int | None = None) -> None:
        super().__init__()
        weight = float(weight)
        if not weight > 0.0:
            raise ValueError(f"classifier-head weight must be > 0 (leave the head out for 0), got {weight}")
        if int(n_classes) < 2:
            raise ValueError(f"a classifier head needs at least 2 classes, got {n_classes}")
        if on not in ("embedding", "features", "both"):
            raise ValueError(f"the classifier head reads 'embedding', 'features' or 'both', got on={on!r}")
        if on == "both" and not feature_dim:
            raise ValueError("a classifier head on='both' needs feature_dim, the backbone features' width "
                             "(encoder.num_features)")
        self.loss = loss
        self.weight = weight
        self.metric_weight = 1.0  # a plain attribute: a schedule derives it from training progress, resumes too
        self.label_smoothing = float(label_smoothing)
        self.on = on
        if on == "features":  # a plain network's classifier: the features go straight into a biased linear layer
            self.bn = nn.Identity()
            self.fc = nn.Linear(int(feature_dim or embedding_dim), int(n_classes))
        else:
            self.bn = nn.BatchNorm1d(int(embedding_dim))
            self.bn.bias.requires_grad_(False)  # BNNeck: no shift, the head stays centred on the embedding
            self.fc = nn.Linear(int(embedding_dim), int(n_classes), bias=False)
            nn.init.normal_(self.fc.weight, std=0.001)
        # The second head of on="both" (None otherwise, so single-head checkpoints keep their keys).
        self.fc_features = nn.Linear(int(feature_dim), int(n_classes)) if on == "both" else None

    @property
    def needs_features(self) -> bool:
        """Whether the Trainer must pass the backbone features (``features=``) with the embeddings."""
        return self.on in ("features", "both")

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor,
                features: torch.Tensor | None = None) -> torch.Tensor:
        if self.needs_features:
            if features is None:
                raise ValueError(f"this classifier head reads the backbone features (ce_on={self.on}): call it as "
                                 "loss(embeddings, labels, features=model.features(x)); the zoo's Trainer does")
            if features.dim() != 2 or features.shape[0] != embeddings.shape[0]:
                raise ValueError(f"features must be (N, D) with the embeddings' N={embeddings.shape[0]}, "
                                 f"got {tuple(features.shape)}")
        self._features = features
        try:
            return super().forward(embeddings, labels)
        finally:
            self._features = None

    def compute(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        features = None if self._features is None else self._features.to(embeddings.device).float()
        # (normalisation, classifier, its input, what the input is called in errors) per head
        if self.on == "features":
            heads = [(self.bn, self.fc, features, "features")]
        else:
            heads = [(self.bn, self.fc, embeddings, "embeddings")]
            if self.fc_features is not None:
                heads.append((nn.Identity(), self.fc_features, features, "features"))
        for _, fc, head_in, what in heads:
            if head_in.shape[1] != fc.in_features:
                raise ValueError(f"the classifier head expects {fc.in_features}-d {what}, got "
                                 f"{head_in.shape[1]}-d (the encoder's size and the head's differ)")
        # Checked on CPU only: reading labels.max() from a GPU would stall every training step.
        if labels.device.type == "cpu" and int(labels.max()) >= self.fc.out_features:
            raise ValueError(f"label {int(labels.max())} is outside the head's {self.fc.out_features} classes")
        main = self.loss(embeddings, labels)
        ces = [F.cross_entropy(fc(norm(head_in.float())), labels, label_smoothing=self.label_smoothing)
               for norm, fc, head_in, _ in heads]
        self.terms.update(getattr(self.loss, "terms", {}))
        self.record("metric", main)
        if len(ces) == 2:
            self.record("ce_embedding", ces[0])
            self.record("ce_features", ces[1])
        ce = sum(ces)
        self.record("ce", ce)
        return self.metric_weight * main + self.weight * ce

    def unwrap(self) -> nn.Module:
        inner = self.loss
        return inner.unwrap() if isinstance(inner, EmbeddingLoss) else inner

    def extra_repr(self) -> str:
        return (f"weight={self.weight}, on={self.on!r}, classes={self.fc.out_features}, "
                f"label_smoothing={self.label_smoothing}, metric_weight={self.metric_weight:g}")


class MetricWeightSchedule(Callback):
    """Lowers the metric terms' weight of a :class:`WithClassifierHead` from 1 to ``end`` along a
    cosine over training: at the start of each epoch it is ``end + (1 - end) * cosine(progress)``,
    where progress is the Trainer's (:meth:`~zoo.train.trainer.Trainer.training_progress`: epochs
    run, or under a budget the share of its time spent, rank 0's clock under DDP), the same one the
    learning rate follows. It logs the weight as the epoch's ``metric_weight``. Nothing to save in a
    checkpoint: a resumed run derives the weight from its progress again. Per epoch, not per step,
    because one weight per epoch keeps its logged loss a single objective."""

    def __init__(self, end: float) -> None:
        end = float(end)
        if not 0.0 <= end <= 1.0:
            raise ValueError(f"the metric weight's end must lie in [0, 1] (1 = constant), got {end:g}")
        self.end = end

    def on_epoch_start(self, trainer, epoch: int) -> None:
        from zoo.train.budget import cosine_factor

        head = trainer.loss_fn
        if not isinstance(head, WithClassifierHead):
            raise TypeError(f"MetricWeightSchedule lowers the metric terms beside a classifier head, but the "
                            f"Trainer's loss is {type(head).__name__}: give the family ce_weight > 0")
        head.metric_weight = self.end + (1.0 - self.end) * cosine_factor(trainer.training_progress(epoch))
        trainer.epoch_metrics["metric_weight"] = head.metric_weight


__all__ = ["MetricWeightSchedule", "WithClassifierHead"]
