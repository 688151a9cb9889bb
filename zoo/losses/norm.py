"""L2-norm penalty on the embeddings (papers: factor 0.001, "we minimize the norm of the embedding
vector ... as additional regularization").

The norm itself is pytorch-metric-learning's ``LpRegularizer`` (mean over the batch of
``||e_i||_p``). It is composed *on top of* the main loss by :func:`zoo.losses.create_loss` through
:class:`NormPenalized`, so it is counted once even when the main loss is a guided loss that already
contains a triplet term.
"""

from __future__ import annotations

import torch
from pytorch_metric_learning.regularizers import LpRegularizer
from torch import nn

from .base import EmbeddingLoss

DEFAULT_NORM_WEIGHT = 0.001


class EmbeddingNormPenalty(EmbeddingLoss):
    """``weight * mean_i ||e_i||_p`` (labels are accepted for the loss interface and ignored)."""

    def __init__(self, weight: float = DEFAULT_NORM_WEIGHT, p: int = 2) -> None:
        super().__init__()
        weight = float(weight)
        if not weight >= 0.0:
            raise ValueError(f"norm penalty weight must be >= 0, got {weight}")
        self.weight = weight
        self.p = p
        self.regularizer = LpRegularizer(p=p)

    def compute(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.weight * self.regularizer(embeddings)

    def extra_repr(self) -> str:
        return f"weight={self.weight}, p={self.p}"


class NormPenalized(EmbeddingLoss):
    """``loss(e, y) + weight * mean ||e||``; records the inner loss's terms plus ``norm``."""

    def __init__(self, loss: nn.Module, weight: float = DEFAULT_NORM_WEIGHT, p: int = 2) -> None:
        super().__init__()
        self.loss = loss
        self.penalty = EmbeddingNormPenalty(weight, p=p)

    def compute(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        main = self.loss(embeddings, labels)
        norm = self.penalty(embeddings, labels)
        self.terms.update(getattr(self.loss, "terms", {}))
        self.record("main", main)
        self.record("norm", norm)
        return main + norm

    def unwrap(self) -> nn.Module:
        inner = self.loss
        return inner.unwrap() if isinstance(inner, EmbeddingLoss) else inner
