"""The guided family (paper 000): an encoder trained to follow a 2-D *embedding guide* generated
from expert knowledge (graph layouts of the similarity/severity matrices), with the inverse-UMAP
or the distance loss on top of the triplet margin loss; RBF-SVM on the embeddings.

The pyfunc of a guided model also returns each cell's position in the guide plane (``guide_x``,
``guide_y``) and the guide class nearest to it, through a :class:`~zoo.guides.GuideProjector`
fitted on the training embeddings — so predictions can be plotted on the guide, as the paper's
discussion suggests. (With the distance loss embeddings are only defined up to rotation relative
to the guide; the fitted projector is what makes positions comparable.)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from zoo.families import FAMILIES
from zoo.families.base import Family
from zoo.families.params import parse_choice, parse_float
from zoo.tracking.pipeline import PIPELINE_EXTRAS, PipelineExtras

GUIDED_LOSSES = ("distance", "inverse_umap")


@FAMILIES.register("guided")
class GuidedFamily(Family):
    name = "guided"
    param_names = ("guide", "loss", "alpha", "kappa", "scale")

    def parse_params(self, raw: dict[str, Any]) -> dict[str, Any]:
        from zoo.guides import GUIDES

        guide = str(raw.get("guide", "fr_sim_mat")).strip()
        GUIDES.get(guide)  # unknown names fail here, listing the 14 valid ones
        loss = parse_choice("loss", raw.get("loss", "distance"), GUIDED_LOSSES)
        params = {"guide": guide, "loss": loss,
                  "alpha": parse_float("alpha", raw.get("alpha", 0.4), low=0.0, high=1.0)}
        if loss == "inverse_umap":
            kappa = parse_float("kappa", raw.get("kappa", 0.2), low=0.0, high=1.0)
            if kappa >= 1.0:
                raise ValueError("parameter 'kappa' must be < 1 (1 would never update the targets)")
            params["kappa"] = kappa
        else:
            params["scale"] = parse_choice("scale", raw.get("scale", "normalized"), ("normalized", "learnt"))
        return params

    def name_parts(self) -> list[str]:
        return [self.params["guide"], self.params["loss"]]

    def tags(self) -> dict[str, str]:
        return {"guide": self.params["guide"], "method": self.params["loss"]}

    def prepare(self, classes: Sequence[str], out_dir: Path) -> None:
        from zoo.guides import create_guide
        from zoo.guides.plot import save_guide_artifacts

        # Classes outside the 15 of the expert matrices (e.g. PBC's platelet) are placed by the
        # guide factory from their lineage ("place"), so every dataset class has a guide point.
        self.guide = create_guide(self.params["guide"], classes=list(classes), seed=self.cfg.seed, unknown="place")
        save_guide_artifacts(self.guide, out_dir)

    def build_loss(self, classes: Sequence[str]):
        from zoo.losses import create_loss

        p = self.params
        if p["loss"] == "inverse_umap":
            return create_loss("inverse_umap", guide=self.guide, alpha=p["alpha"], kappa=p["kappa"],
                               classes=list(classes), seed=self.cfg.seed)
        return create_loss("distance", guide=self.guide, alpha=p["alpha"], scale=p["scale"],
                           classes=list(classes), seed=self.cfg.seed)

    def callbacks(self, loss) -> list:
        if self.params["loss"] == "inverse_umap":
            from zoo.losses.inverse_umap import InverseUMAPTargets

            return [InverseUMAPTargets()]
        return []

    def pipeline_extras(self, loss, train_embeddings, train_labels, classes) -> dict[str, PipelineExtras]:
        from zoo.guides import GuideProjector

        names = [classes[i] for i in train_labels]
        projector = GuideProjector().fit(train_embeddings, names, self.guide)
        return {"guided": GuideExtras(projector)}


@PIPELINE_EXTRAS.register("guided")
class GuideExtras(PipelineExtras):
    """Saves the guide (``guide.csv``) and the fitted projector; adds ``guide_x``, ``guide_y`` and
    ``guide_nearest`` (the class whose guide point is nearest) to every prediction."""

    def __init__(self, projector):
        self.projector = projector

    def save(self, directory: Path) -> None:
        import joblib

        self.projector.guide_.save_csv(Path(directory) / "guide.csv")
        joblib.dump(self.projector, Path(directory) / "guide_projector.joblib")

    @classmethod
    def load(cls, directory: Path) -> "GuideExtras":
        import joblib

        return cls(joblib.load(Path(directory) / "guide_projector.joblib"))

    def columns(self, embeddings: np.ndarray, probs: np.ndarray) -> dict[str, Any]:
        pos = self.projector.transform(embeddings)
        guide = self.projector.guide_
        nearest = np.linalg.norm(pos[:, None, :] - guide.coords[None], axis=2).argmin(1)
        return {"guide_x": pos[:, 0], "guide_y": pos[:, 1],
                "guide_nearest": np.asarray([guide.classes[i] for i in nearest], dtype=object)}

    def config(self) -> dict[str, Any]:
        return {"guide": self.projector.guide_.name, "projector": type(self.projector.model_).__name__}
