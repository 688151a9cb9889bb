"""Base classes for embedding losses, in the style of pytorch-metric-learning (PML).

A loss is an ``nn.Module`` called as ``loss(embeddings, labels) -> scalar tensor``.
:class:`EmbeddingLoss` does the checking every loss needs (shapes, dtypes, devices, at least two
samples) and then calls ``compute(embeddings, labels)``, which a subclass implements. This is PML's
split between ``BaseMetricLossFunction.forward`` and ``compute_loss``; we keep our own small base
instead of subclassing PML's because guided losses return one scalar built from several terms and
carry per-epoch targets, which PML's reducer/record machinery does not model.

Writing a guided loss (inverse UMAP, distance, curve losses)
-----------------------------------------------------------
The papers combine a guide term with the triplet margin loss (TML)::

    L = (1 - alpha) * L_TML + alpha * L_guide

Subclass :class:`GuidedLoss` and implement ``guide(embeddings, labels)``; the base class receives
the ``triplet`` term (any :class:`EmbeddingLoss`, default :class:`zoo.losses.triplet.TripletLoss`)
and ``alpha`` and does the weighting::

    @LOSSES.register("inverse_umap")
    class InverseUMAPLoss(GuidedLoss):
        def __init__(self, n_classes, dim=256, *, triplet=None, alpha=0.2):
            super().__init__(triplet=triplet, alpha=alpha)
            self.register_buffer("targets", torch.zeros(n_classes, dim))  # saved in checkpoints

        def guide(self, embeddings, labels):
            return (embeddings - self.targets[labels]).abs().sum(1).mean()

Per-epoch state (guide targets) must be registered buffers (or returned by an overridden
``state_dict``): the Trainer saves ``loss_fn.state_dict()`` in every checkpoint and restores it on
resume. Each term is recorded in ``loss.terms`` (name -> detached float of the last call) and the
Trainer logs their epoch means as ``train_loss_<name>``.

The L2-norm penalty on embeddings (factor 0.001 in the papers) is not part of any loss: it is
composed on top by :func:`zoo.losses.create_loss` (see :mod:`zoo.losses.norm`), so a guided loss
never counts it twice.
"""

from __future__ import annotations

import torch
from torch import nn


class EmbeddingLoss(nn.Module):
    """Checks ``(embeddings, labels)`` and delegates to :meth:`compute`.

    ``embeddings``: float tensor (N, D); ``labels``: integer tensor (N,), same N, N >= 2.
    Labels are moved to the embeddings' device. A subclass that finds nothing to learn from in a
    batch (e.g. no margin-violating triplets) returns :meth:`zero` — a zero that still belongs to the
    autograd graph, so ``backward()`` works and gradients are zero rather than missing.
    """

    def __init__(self) -> None:
        super().__init__()
        self.terms: dict[str, float] = {}

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        embeddings, labels = self.check_inputs(embeddings, labels)
        self.terms = {}
        loss = self.compute(embeddings, labels)
        if not isinstance(loss, torch.Tensor) or loss.dim() != 0:
            raise TypeError(
                f"{type(self).__name__}.compute must return a scalar tensor, got "
                f"{type(loss).__name__}{tuple(loss.shape) if isinstance(loss, torch.Tensor) else ''}"
            )
        return loss

    def compute(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError(f"{type(self).__name__} must implement compute(embeddings, labels)")

    # --- helpers for subclasses -------------------------------------------------------------
    @staticmethod
    def zero(embeddings: torch.Tensor) -> torch.Tensor:
        """A zero loss connected to ``embeddings`` (so backward() gives zero gradients)."""
        return embeddings.sum() * 0.0

    def record(self, name: str, value: torch.Tensor | float) -> None:
        """Remember a term of the last call (for logging; never used for gradients)."""
        self.terms[name] = float(value.detach()) if isinstance(value, torch.Tensor) else float(value)

    @staticmethod
    def check_inputs(embeddings: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if not isinstance(embeddings, torch.Tensor) or embeddings.dim() != 2:
            shape = tuple(embeddings.shape) if isinstance(embeddings, torch.Tensor) else type(embeddings).__name__
            raise ValueError(f"embeddings must be a 2-D tensor (N, D), got {shape}")
        if not embeddings.is_floating_point():
            raise TypeError(f"embeddings must be a float tensor, got dtype {embeddings.dtype}")
        if not isinstance(labels, torch.Tensor):
            labels = torch.as_tensor(labels)
        if labels.dim() != 1:
            raise ValueError(f"labels must be a 1-D tensor (N,), got shape {tuple(labels.shape)}")
        if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
            raise TypeError(f"labels must be integer class indices (torch.long), got dtype {labels.dtype}")
        if labels.shape[0] != embeddings.shape[0]:
            raise ValueError(
                f"embeddings and labels disagree on the batch size: {embeddings.shape[0]} vs {labels.shape[0]}"
            )
        if embeddings.shape[0] < 2:
            raise ValueError(
                f"an embedding loss needs at least 2 samples per batch, got {embeddings.shape[0]} "
                "(use a larger batch_size or drop_last=True in the DataLoader)"
            )
        return embeddings, labels.to(device=embeddings.device, dtype=torch.long)

    def unwrap(self) -> nn.Module:
        """The loss under any wrapper (e.g. the norm penalty): where a callback finds its state."""
        return self

    def extra_repr(self) -> str:
        return ""


class GuidedLoss(EmbeddingLoss):
    """``(1 - alpha) * triplet(e, y) + alpha * guide(e, y)`` — the papers' guided-loss form.

    Subclasses implement :meth:`guide`. ``triplet`` defaults to ``TripletLoss()`` (margin 0.1,
    all margin-violating triplets); pass one to change its margin, miner or distance.
    """

    def __init__(self, *, triplet: EmbeddingLoss | None = None, alpha: float = 0.2) -> None:
        super().__init__()
        alpha = float(alpha)
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1] (weight of the guide term), got {alpha}")
        if triplet is None:
            from .triplet import TripletLoss  # local import: triplet.py imports this module

            triplet = TripletLoss()
        if not isinstance(triplet, nn.Module):
            raise TypeError(f"triplet must be an EmbeddingLoss module, got {type(triplet).__name__}")
        self.triplet = triplet
        self.alpha = alpha

    def guide(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError(f"{type(self).__name__} must implement guide(embeddings, labels)")

    def compute(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        # Skip a term whose weight is 0: saves the triplet mining (O(N^3)) when alpha == 1.
        tml = self.triplet(embeddings, labels) if self.alpha < 1.0 else self.zero(embeddings)
        guide = self.guide(embeddings, labels) if self.alpha > 0.0 else self.zero(embeddings)
        self.record("triplet", tml)
        self.record("guide", guide)
        return (1.0 - self.alpha) * tml + self.alpha * guide

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}"
