"""Distance loss (Gräbel et al. 2021; paper 000, Eq. 3-4): pairwise distances in the batch follow
the guide's pairwise distances, absolute positions are free.

    d(i, j) = | L1(e_i, e_j) - L1(g_{y_i}, g_{y_j}) |                       (Eq. 3)
    L_dist  = 2 / (|B| (|B| - 1)) * sum_{i > j} d(i, j)                     (Eq. 4)
    L       = (1 - alpha) * L_TML + alpha * L_dist

All pairs of the batch count, same-class pairs included (their guide distance is 0, so they are
pulled together). Embedding distances come from ``torch.cdist(p=1)``, guide distances from a
K x K buffer precomputed once.

The papers leave the *scale* between the two implicit (a 256-D embedding and a guide inside the
unit disc have no common unit). ``scale`` makes it explicit:

* ``"normalized"`` (default): each side is divided by its own mean over the batch's pairs, so
  only *relative* distances are compared and the term is invariant to the embedding's overall
  scale (the norm penalty and TML settle that). A batch whose samples all share one class has
  guide distances all 0 and nothing relative to compare: its term is 0.
* ``"learnt"``: ``|D_e - s * D_g|`` with ``s = exp(log_scale)``, a learnable parameter
  (initialised on the first batch to ``mean D_e / mean D_g``). It is an ``nn.Parameter`` of this
  module: the optimizer must include ``loss.parameters()``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from zoo.guides import Guide, resolve_guide

from . import LOSSES
from .base import EmbeddingLoss, GuidedLoss

SCALES = ("normalized", "learnt")


@LOSSES.register("distance")
class DistanceLoss(GuidedLoss):
    """``(1 - alpha) * TML + alpha * mean_{i>j} |L1(e_i, e_j) - L1(g_{y_i}, g_{y_j})|`` (scaled).

    Args:
        guide: a :class:`zoo.guides.Guide` or a guide name.
        alpha: weight of the distance term (paper 000: 0.4).
        triplet: the TML term (default :class:`zoo.losses.TripletLoss`).
        scale: ``"normalized"`` or ``"learnt"`` (see the module docstring).
        classes: class ids in label-index order; default the guide's own order.
    """

    def __init__(self, guide: Guide | str, alpha: float = 0.4, triplet: EmbeddingLoss | None = None, *,
                 scale: str = "normalized", classes: Sequence[str] | None = None, seed: int = 0) -> None:
        super().__init__(triplet=triplet, alpha=alpha)
        if scale not in SCALES:
            raise ValueError(f"scale must be one of {', '.join(SCALES)}, got {scale!r}")
        self.embedding_guide = resolve_guide(guide, classes, seed=seed)
        self.scale = scale
        # L1 as in Eq. 3; a buffer: moves with .to(device), saved in checkpoints, never trained.
        self.register_buffer("guide_distances",
                             torch.as_tensor(self.embedding_guide.distances(p=1), dtype=torch.float32))
        if scale == "learnt":
            self.log_scale = nn.Parameter(torch.zeros(()))
            self.register_buffer("scale_initialized", torch.tensor(False))

    @property
    def n_classes(self) -> int:
        return len(self.embedding_guide)

    def guide(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if labels.max() >= self.n_classes or labels.min() < 0:
            raise ValueError(f"labels must be in 0..{self.n_classes - 1} for guide {self.embedding_guide.name!r}")
        n = embeddings.shape[0]
        i, j = torch.triu_indices(n, n, offset=1, device=embeddings.device)
        d_emb = torch.cdist(embeddings, embeddings, p=1)[i, j]
        table = self.guide_distances.to(device=embeddings.device, dtype=embeddings.dtype)
        d_guide = table[labels[i], labels[j]]
        if self.scale == "normalized":
            g_mean = d_guide.mean()
            if g_mean <= 0:  # one class only: no relative distances to compare
                return self.zero(embeddings)
            d_emb = d_emb / d_emb.mean().clamp_min(torch.finfo(embeddings.dtype).eps)
            d_guide = d_guide / g_mean
        else:
            if not bool(self.scale_initialized) and self.training:
                with torch.no_grad():
                    g_mean = d_guide.mean()
                    if g_mean > 0:
                        self.log_scale.copy_(torch.log(d_emb.mean().clamp_min(1e-12) / g_mean))
                        self.scale_initialized.fill_(True)
            d_guide = d_guide * self.log_scale.exp()
            self.record("guide_scale", self.log_scale.exp())
        return (d_emb - d_guide).abs().mean()

    def extra_repr(self) -> str:
        return f"guide={self.embedding_guide.name!r}, alpha={self.alpha}, scale={self.scale!r}"
