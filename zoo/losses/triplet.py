"""Triplet margin loss (TML) on mined margin-violating triplets — the papers' baseline loss.

The loss and the miner are pytorch-metric-learning's ``TripletMarginLoss`` and
``TripletMarginMiner``; this module only wires them together with one shared distance, validates
the miner's ``type_of_triplets`` (PML treats any unknown value as "all" without a word) and returns a
graph-connected zero when a batch has no triplet to learn from.
"""

from __future__ import annotations

import torch
from pytorch_metric_learning import distances as pml_distances
from pytorch_metric_learning.losses import TripletMarginLoss
from pytorch_metric_learning.miners import TripletMarginMiner

from .base import EmbeddingLoss

TRIPLET_TYPES = ("all", "hard", "semihard", "easy")

# Named distances for configs/CLI; any PML BaseDistance instance is accepted as well.
DISTANCES = {
    # PML's default for TripletMarginLoss: Euclidean distance between L2-normalised embeddings.
    "euclidean": lambda: pml_distances.LpDistance(normalize_embeddings=True, p=2),
    # Euclidean distance on the raw embeddings (their norm is then kept small by the norm penalty).
    "euclidean_raw": lambda: pml_distances.LpDistance(normalize_embeddings=False, p=2),
    "cosine": lambda: pml_distances.CosineSimilarity(),
}


def make_distance(distance: str | pml_distances.BaseDistance | None) -> pml_distances.BaseDistance:
    if distance is None:
        distance = "euclidean"
    if isinstance(distance, pml_distances.BaseDistance):
        return distance
    if isinstance(distance, str) and distance in DISTANCES:
        return DISTANCES[distance]()
    raise ValueError(
        f"unknown distance {distance!r}: use one of {', '.join(DISTANCES)} "
        "or a pytorch_metric_learning.distances.BaseDistance instance"
    )


class TripletLoss(EmbeddingLoss):
    """PML ``TripletMarginLoss(margin)`` over the triplets ``TripletMarginMiner`` keeps.

    Args:
        margin: margin of both the miner and the loss (papers: 0.1).
        type_of_triplets: which triplets the miner keeps. "all": every triplet violating the
            margin (papers); "hard": those whose negative is closer than the positive; "semihard":
            violating but negative farther than positive; "easy": the non-violating ones.
        distance: "euclidean" (PML default, normalised embeddings), "euclidean_raw", "cosine" or a
            PML distance object; the miner and the loss share it.
    """

    def __init__(
        self,
        margin: float = 0.1,
        type_of_triplets: str = "all",
        distance: str | pml_distances.BaseDistance | None = None,
    ) -> None:
        super().__init__()
        if type_of_triplets not in TRIPLET_TYPES:
            raise ValueError(
                f"type_of_triplets={type_of_triplets!r} is not valid: use one of {', '.join(TRIPLET_TYPES)} "
                "(pytorch-metric-learning would silently treat it as 'all')"
            )
        margin = float(margin)
        if not margin >= 0.0:
            raise ValueError(f"margin must be >= 0, got {margin}")
        self.margin = margin
        self.type_of_triplets = type_of_triplets
        self.distance = make_distance(distance)
        self.miner = TripletMarginMiner(margin=margin, type_of_triplets=type_of_triplets, distance=self.distance)
        self.loss = TripletMarginLoss(margin=margin, distance=self.distance)
        self.last_n_triplets = 0

    def compute(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        triplets = self.miner(embeddings, labels)
        self.last_n_triplets = int(triplets[0].numel())
        if self.last_n_triplets == 0:
            # PML would return an "already reduced" plain 0 here; keep the graph instead.
            return self.zero(embeddings)
        return self.loss(embeddings, labels, triplets)

    def extra_repr(self) -> str:
        return f"margin={self.margin}, type_of_triplets={self.type_of_triplets!r}, distance={type(self.distance).__name__}"
