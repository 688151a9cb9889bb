"""An auxiliary softmax head on the embeddings: ``loss(e, y) + weight * CE(W · BN(e), y)``.

Metric learning alone gives an encoder few bits per step: a triplet term is zero for every
triplet that already satisfies the margin, and the guide terms pull classes to fixed places. A
cross-entropy head beside it gives every image a gradient towards its class. The form is the
"BNNeck" of Luo et al. (2019, *Bag of Tricks and a Strong Baseline for Deep Person
Re-identification*): the metric terms see the embedding ``e``; the classifier sees ``BN(e)``
through a bias-free linear layer, so the two objectives do not fight over the embedding's scale.

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
    """

    def __init__(self, loss: nn.Module, n_classes: int, embedding_dim: int, weight: float = 1.0,
                 label_smoothing: float = 0.0) -> None:
        super().__init__()
        weight = float(weight)
        if not weight > 0.0:
            raise ValueError(f"classifier-head weight must be > 0 (leave the head out for 0), got {weight}")
        if int(n_classes) < 2:
            raise ValueError(f"a classifier head needs at least 2 classes, got {n_classes}")
        self.loss = loss
        self.weight = weight
        self.label_smoothing = float(label_smoothing)
        self.bn = nn.BatchNorm1d(int(embedding_dim))
        self.bn.bias.requires_grad_(False)  # BNNeck: no shift, the head stays centred on the embedding
        self.fc = nn.Linear(int(embedding_dim), int(n_classes), bias=False)
        nn.init.normal_(self.fc.weight, std=0.001)

    def compute(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if embeddings.shape[1] != self.fc.in_features:
            raise ValueError(f"the classifier head expects {self.fc.in_features}-d embeddings, got "
                             f"{embeddings.shape[1]}-d (embedding_dim of the encoder and the head differ)")
        # Checked on CPU only: reading labels.max() from a GPU would stall every training step.
        if labels.device.type == "cpu" and int(labels.max()) >= self.fc.out_features:
            raise ValueError(f"label {int(labels.max())} is outside the head's {self.fc.out_features} classes")
        main = self.loss(embeddings, labels)
        logits = self.fc(self.bn(embeddings.float()))
        ce = F.cross_entropy(logits, labels, label_smoothing=self.label_smoothing)
        self.terms.update(getattr(self.loss, "terms", {}))
        self.record("metric", main)
        self.record("ce", ce)
        return main + self.weight * ce

    def unwrap(self) -> nn.Module:
        inner = self.loss
        return inner.unwrap() if isinstance(inner, EmbeddingLoss) else inner

    def extra_repr(self) -> str:
        return f"weight={self.weight}, classes={self.fc.out_features}, label_smoothing={self.label_smoothing}"


__all__ = ["WithClassifierHead"]
