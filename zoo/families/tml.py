"""The triplet-margin baseline (TML) of the guide papers: encoder trained with the triplet margin
loss (margin 0.1, margin-violating triplets mined), RBF-SVM on its embeddings."""

from __future__ import annotations

from typing import Any

from zoo.families import FAMILIES
from zoo.families.embedding import EMBEDDING_PARAMS, EmbeddingFamily
from zoo.families.params import Param
from zoo.losses import TRIPLET_TYPES


@FAMILIES.register("tml")
class TMLFamily(EmbeddingFamily):
    """Triplet-margin baseline: encoder trained with the triplet margin loss, RBF-SVM on its embeddings."""

    name = "tml"
    params = (
        *EMBEDDING_PARAMS,
        Param("margin", float, 0.1, "triplet margin", low=0.0, high=2.0),
        Param("type_of_triplets", str, "all", "mined triplets ('all' = every margin-violating one)",
              choices=tuple(TRIPLET_TYPES)),
    )

    def build_loss(self, classes):
        from zoo.losses import create_loss

        return create_loss("triplet", margin=self.params["margin"],
                           type_of_triplets=self.params["type_of_triplets"])

    def search_space(self, trial) -> dict[str, Any]:
        margin = next(p for p in self.declarations() if p.name == "margin")
        return {**self.common_search_space(trial), "margin": margin.suggest(trial, low=0.02, high=0.5)}
