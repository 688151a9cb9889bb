"""What a model family contributes to the shared training run.

The runner (:mod:`zoo.families.runner`) owns everything families share — data, encoder, Trainer,
SVM stage, metrics, tracking, pyfunc packaging, registration. A family only says what differs:
its own parameters, its loss, its per-epoch callbacks, its artifacts and the extras its pyfunc
returns. Adding a family is one subclass registered in ``FAMILIES``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Sequence

from torch import nn

from zoo.families.params import TrainConfig


class Family:
    """Base class: the triplet-margin baseline behaviour, which most families extend."""

    name: ClassVar[str] = ""
    #: family-specific entry-point parameters (beyond the common ones)
    param_names: ClassVar[tuple[str, ...]] = ()

    def __init__(self, cfg: TrainConfig):
        self.cfg = cfg
        self.params: dict[str, Any] = self.parse_params(dict(cfg.family_params))

    # -- parameters -------------------------------------------------------------------------
    def parse_params(self, raw: dict[str, Any]) -> dict[str, Any]:
        """Validate the family's own parameters (strings from MLflow) into typed values."""
        return raw

    def name_parts(self) -> list[str]:
        """Words of the run name after the family (e.g. the guide and loss)."""
        return [self.cfg.backbone]

    def tags(self) -> dict[str, str]:
        """Run and model-version tags that tell this family's variants apart (guide, method…)."""
        return {}

    # -- training ---------------------------------------------------------------------------
    def prepare(self, classes: Sequence[str], out_dir: Path) -> None:
        """Called once per fold before the loss is built, with the classes trained on and a
        folder for artifacts (logged to the run after training)."""

    def build_loss(self, classes: Sequence[str]) -> nn.Module:
        from zoo.losses import create_loss

        return create_loss("triplet")

    def callbacks(self, loss: nn.Module) -> list:
        return []

    # -- packaging --------------------------------------------------------------------------
    def pipeline_extras(self, loss: nn.Module, train_embeddings, train_labels, classes) -> dict[str, Any]:
        """Family extras the pyfunc needs, keyed by the extras registry name (empty for TML)."""
        return {}

    def summary(self) -> dict[str, Any]:
        return {"family": self.name, **self.params}
