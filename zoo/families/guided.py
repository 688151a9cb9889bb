"""The guided family (paper 000): an encoder trained to follow a 2-D *embedding guide* generated
from expert knowledge (graph layouts of the similarity/severity matrices), with the inverse-UMAP
or the distance loss on top of the triplet margin loss; RBF-SVM on the embeddings.

The model also returns each cell's position in the guide plane (``guide_x``, ``guide_y``) and the
guide class nearest to it, through the extras ``guided`` (:mod:`zoo.models.guide_extras`): a guide
projector fitted on the training embeddings, saved as a matrix. (With the distance loss
embeddings are only defined up to rotation relative to the guide; the fitted projector is what
makes positions comparable.)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from zoo.families import FAMILIES
from zoo.families.embedding import EMBEDDING_PARAMS, EmbeddingFamily
from zoo.families.params import Param

GUIDED_LOSSES = ("distance", "inverse_umap")


def _guide(value: Any) -> str:
    from zoo.guides import GUIDES

    name = str(value).strip()
    GUIDES.get(name)  # unknown names fail here, listing the valid ones
    return name


@FAMILIES.register("guided")
class GuidedFamily(EmbeddingFamily):
    """Encoder trained to follow a 2-D embedding guide (inverse-UMAP or distance loss), RBF-SVM on top."""

    name = "guided"
    params = (
        *EMBEDDING_PARAMS,
        Param("guide", str, "fr_sim_mat", "embedding guide: <kk|fr|drl>_<sim|sev>[_mat] | circular | random "
                                          "(zoo guides list)", parser=_guide),
        Param("loss", str, "distance", "guide loss", choices=GUIDED_LOSSES),
        Param("alpha", float, 0.4, "weight of the guide term vs. the triplet margin loss", low=0.0, high=1.0),
        Param("kappa", float, 0.2, "smoothing of inverse-UMAP targets (Eq. 1)", low=0.0, high=0.999,
              when={"loss": "inverse_umap"}),
        Param("scale", str, "normalized", "distance loss: guide distances normalised or with a learnt scale",
              choices=("normalized", "learnt"), when={"loss": "distance"}),
    )

    def name_parts(self) -> list[str]:
        return [self.params["guide"], self.params["loss"]]

    def tags(self) -> dict[str, str]:
        return {"guide": self.params["guide"], "method": self.params["loss"]}

    #: also search the guide (categorical over every registered guide); off: the guide is fixed
    search_guide: bool = False

    def search_space(self, trial) -> dict[str, Any]:
        from zoo.guides import GUIDES

        decl = {p.name: p for p in self.declarations()}
        out = {**self.common_search_space(trial), "loss": decl["loss"].suggest(trial),
               "alpha": decl["alpha"].suggest(trial, low=0.05, high=0.95)}
        if out["loss"] == "inverse_umap":
            # kappa near 1 freezes the targets: sample 1 - kappa on a log scale
            out["kappa"] = 1.0 - trial.suggest_float("one_minus_kappa", 1e-3, 1.0, log=True)
        if self.search_guide:
            out["guide"] = trial.suggest_categorical("guide", GUIDES.names())
        return out

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

    def extras_schema(self) -> list[tuple[str, str]]:
        return [("guide_x", "double"), ("guide_y", "double"), ("guide_nearest", "string")]

    def model_extras(self, loss, train_embeddings, train_labels, classes) -> dict[str, Any]:
        from zoo.guides import GuideProjector
        from zoo.models.guide_extras import GuideExtras

        names = [classes[i] for i in train_labels]
        projector = GuideProjector().fit(train_embeddings, names, self.guide)
        return {"guided": GuideExtras(projector)}
