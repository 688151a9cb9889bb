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
says ``needs_features``.

The head exists only for training. Its weights are parameters of the loss (the Trainer optimises
them, saves them in checkpoints and averages their gradients under DDP); the packaged model is the
encoder and its SVM, as without the head. PML has no such wrapper, hence this file.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .base import EmbeddingLoss


class WithClassifierHead(EmbeddingLoss):
    """``loss(e, y) + weight * cross_entropy(fc(bn(e)), y)``; records the inner terms plus ``ce``.

    Args:
        loss: the family's loss (any :class:`EmbeddingLoss`, e.g. TML or a guided loss).
        n_classes: classes of the head.
        embedding_dim: size of the embeddings it receives.
        weight: weight of the cross-entropy term (> 0; leave the wrapper out for 0).
        label_smoothing: of the cross-entropy.
        on: ``"embedding"`` (BNNeck on the embeddings; ``embedding_dim`` is their size) or
            ``"features"`` (a linear layer with bias on the backbone features the Trainer passes as
            ``features=``; ``embedding_dim`` is then the features' size, e.g. 512 for resnet18).
    """

    def __init__(self, loss: nn.Module, n_classes: int, embedding_dim: int, weight: float = 1.0,
                 label_smoothing: float = 0.0, on: str = "embedding") -> None:
        super().__init__()
        weight = float(weight)
        if not weight > 0.0:
            raise ValueError(f"classifier-head weight must be > 0 (leave the head out for 0), got {weight}")
        if int(n_classes) < 2:
            raise ValueError(f"a classifier head needs at least 2 classes, got {n_classes}")
        if on not in ("embedding", "features"):
            raise ValueError(f"the classifier head reads 'embedding' or 'features', got on={on!r}")
        self.loss = loss
        self.weight = weight
        self.label_smoothing = float(label_smoothing)
        self.on = on
        if on == "embedding":
            self.bn = nn.BatchNorm1d(int(embedding_dim))
            self.bn.bias.requires_grad_(False)  # BNNeck: no shift, the head stays centred on the embedding
            self.fc = nn.Linear(int(embedding_dim), int(n_classes), bias=False)
            nn.init.normal_(self.fc.weight, std=0.001)
        else:  # a plain network's classifier: the features go straight into a biased linear layer
            self.bn = nn.Identity()
            self.fc = nn.Linear(int(embedding_dim), int(n_classes))

    @property
    def needs_features(self) -> bool:
        """Whether the Trainer must pass the backbone features (``features=``) with the embeddings."""
        return self.on == "features"

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor,
                features: torch.Tensor | None = None) -> torch.Tensor:
        if self.on == "features":
            if features is None:
                raise ValueError("this classifier head reads the backbone features (ce_on=features): call it as "
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
        head_in = embeddings if self.on == "embedding" else self._features.to(embeddings.device).float()
        if head_in.shape[1] != self.fc.in_features:
            what = "embeddings" if self.on == "embedding" else "features"
            raise ValueError(f"the classifier head expects {self.fc.in_features}-d {what}, got "
                             f"{head_in.shape[1]}-d (the encoder's size and the head's differ)")
        # Checked on CPU only: reading labels.max() from a GPU would stall every training step.
        if labels.device.type == "cpu" and int(labels.max()) >= self.fc.out_features:
            raise ValueError(f"label {int(labels.max())} is outside the head's {self.fc.out_features} classes")
        main = self.loss(embeddings, labels)
        logits = self.fc(self.bn(head_in.float()))
        ce = F.cross_entropy(logits, labels, label_smoothing=self.label_smoothing)
        self.terms.update(getattr(self.loss, "terms", {}))
        self.record("metric", main)
        self.record("ce", ce)
        return main + self.weight * ce

    def unwrap(self) -> nn.Module:
        inner = self.loss
        return inner.unwrap() if isinstance(inner, EmbeddingLoss) else inner

    def extra_repr(self) -> str:
        return (f"weight={self.weight}, on={self.on!r}, classes={self.fc.out_features}, "
                f"label_smoothing={self.label_smoothing}")


__all__ = ["WithClassifierHead"]
