"""The triplet-margin baseline (TML) of the guide papers: encoder trained with the triplet margin
loss (margin 0.1, margin-violating triplets mined), RBF-SVM on its embeddings."""

from __future__ import annotations

from typing import Any

from zoo.families import FAMILIES
from zoo.families.base import Family
from zoo.families.params import parse_choice, parse_float
from zoo.losses import TRIPLET_TYPES


@FAMILIES.register("tml")
class TMLFamily(Family):
    name = "tml"
    param_names = ("margin", "type_of_triplets")

    def parse_params(self, raw: dict[str, Any]) -> dict[str, Any]:
        return {
            "margin": parse_float("margin", raw.get("margin", 0.1), low=0.0),
            "type_of_triplets": parse_choice("type_of_triplets", raw.get("type_of_triplets", "all"),
                                             tuple(TRIPLET_TYPES)),
        }

    def build_loss(self, classes):
        from zoo.losses import create_loss

        return create_loss("triplet", margin=self.params["margin"],
                           type_of_triplets=self.params["type_of_triplets"])
