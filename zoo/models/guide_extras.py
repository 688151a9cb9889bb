"""Extras ``guided``: each cell's position on the embedding guide (``guide_x``, ``guide_y``) and
the guide class nearest to it (``guide_nearest``).

The :class:`~zoo.guides.GuideProjector` fitted on the training embeddings is affine in the
embedding (standardise + ridge, or PLS: both ``x -> x @ W + b``), so it is saved as data — the
matrix ``W`` and offset ``b`` in ``guide_projector.npz`` (read with ``allow_pickle=False``) and the
guide in ``guide.csv`` — and applied at prediction with one matrix product.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from zoo.models.zoo_model import MODEL_EXTRAS, ModelExtras, UnsafeArtifactError

GUIDE_CSV = "guide.csv"
PROJECTOR_NPZ = "guide_projector.npz"
GUIDE_JSON = "guide.json"


class AffineGuideMap:
    """``transform(X) = X @ weight + bias``: a fitted guide projector reduced to its arrays."""

    def __init__(self, weight: np.ndarray, bias: np.ndarray, guide):
        self.weight = np.asarray(weight, dtype=float)
        self.bias = np.asarray(bias, dtype=float).reshape(2)
        if self.weight.ndim != 2 or self.weight.shape[1] != 2:
            raise ValueError(f"guide projector weight must be (D, 2), got {self.weight.shape}")
        self.guide_ = guide
        self.n_features_in_ = self.weight.shape[0]

    @classmethod
    def from_projector(cls, projector) -> "AffineGuideMap":
        """Read ``W`` and ``b`` off a fitted projector: ``b = f(0)``, row ``i`` of ``W`` = ``f(e_i) - b``
        (exact for an affine ``f``; checked on random inputs)."""
        d = int(projector.n_features_in_)
        bias = projector.transform(np.zeros((1, d)))[0]
        weight = projector.transform(np.eye(d)) - bias
        probe = np.random.default_rng(0).normal(size=(8, d))
        if not np.allclose(probe @ weight + bias, projector.transform(probe), rtol=1e-6, atol=1e-6):
            raise ValueError(f"guide projector {type(projector.model_).__name__} is not affine: cannot save it as "
                             "a matrix (use method='ridge' or 'pls')")
        return cls(weight, bias, projector.guide_)

    def transform(self, X) -> np.ndarray:
        X = np.asarray(X, dtype=float)
        if X.ndim != 2 or X.shape[1] != self.n_features_in_:
            raise ValueError(f"guide projector: expected (N, {self.n_features_in_}) embeddings, got {X.shape}")
        return X @ self.weight + self.bias


@MODEL_EXTRAS.register("guided")
class GuideExtras(ModelExtras):
    """Saves the guide (``guide.csv``) and the projector (``guide_projector.npz``); adds
    ``guide_x``, ``guide_y`` and ``guide_nearest`` to every prediction."""

    def __init__(self, projector):
        self.projector = projector if isinstance(projector, AffineGuideMap) else AffineGuideMap.from_projector(projector)

    def save(self, directory: Path) -> None:
        directory = Path(directory)
        guide = self.projector.guide_
        guide.save_csv(directory / GUIDE_CSV)
        (directory / GUIDE_JSON).write_text(json.dumps({"name": guide.name}))
        np.savez(directory / PROJECTOR_NPZ, weight=self.projector.weight, bias=self.projector.bias)

    @classmethod
    def load(cls, directory: Path) -> "GuideExtras":
        from zoo.guides import Guide

        directory = Path(directory)
        name = json.loads((directory / GUIDE_JSON).read_text()).get("name") if (directory / GUIDE_JSON).is_file() else None
        guide = Guide.from_csv(directory / GUIDE_CSV, name=str(name) if name else None)
        try:
            with np.load(directory / PROJECTOR_NPZ, allow_pickle=False) as npz:
                weight, bias = npz["weight"], npz["bias"]
        except ValueError as exc:  # object arrays need pickle: refuse
            raise UnsafeArtifactError(f"{directory / PROJECTOR_NPZ}: {exc}") from None
        return cls(AffineGuideMap(weight, bias, guide))

    def columns(self, embeddings: np.ndarray, probs: np.ndarray) -> dict[str, Any]:
        pos = self.projector.transform(embeddings)
        guide = self.projector.guide_
        nearest = np.linalg.norm(pos[:, None, :] - guide.coords[None], axis=2).argmin(1)
        return {"guide_x": pos[:, 0], "guide_y": pos[:, 1],
                "guide_nearest": np.asarray([guide.classes[i] for i in nearest], dtype=object)}

    def output_schema(self) -> list[tuple[str, str]]:
        return [("guide_x", "double"), ("guide_y", "double"), ("guide_nearest", "string")]

    def config(self) -> dict[str, Any]:
        return {"guide": self.projector.guide_.name, "projector": "affine"}
