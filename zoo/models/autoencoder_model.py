"""Kind ``autoencoder``: a trained VAE-256 / RAE-1024 of the autoencoder family, as data.

```
zoo_model.json             kind, family, img_size, preprocessing, training, config, and
                           "autoencoder": the architecture config + the evaluation view
autoencoder.safetensors    the whole autoencoder (encoder + decoder) state dict
backbone.safetensors       the encoder's timm backbone alone: a `pretrained=` checkpoint for any
                           supervised family (create_encoder(backbone, pretrained=<this file>))
```

``predict(images)`` gives one row per image with the representation (the posterior mean; VAE
256-d, RAE 1024-d) as columns ``z_000 … z_<D-1>``; ``return_reconstruction=True`` adds
``reconstruction``, a base64 PNG of the decoder's output (the wire format of the serving API).
Images go through ``eval_transform(img_size)`` (the training data's size) and the suppression
method's evaluation view (the centre crop for ``crop``, the image itself otherwise).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd

from zoo.models.zoo_model import ZOO_MODELS, ZooModel, decode_batch, to_images

WEIGHTS_FILE = "autoencoder.safetensors"
BACKBONE_FILE = "backbone.safetensors"


def representation_columns(dim: int) -> list[str]:
    width = max(3, len(str(int(dim) - 1)))
    return [f"z_{i:0{width}d}" for i in range(int(dim))]


@ZOO_MODELS.register("autoencoder")
class AutoencoderModel(ZooModel):
    """Autoencoder + the evaluation view of its suppression method (``view``: ``{"crop_px": int}``
    for a centre crop, ``{}`` for the whole image)."""

    kind = "autoencoder"

    def __init__(self, family: str, autoencoder, *, img_size: int, view: Mapping[str, Any] | None = None,
                 config: Mapping[str, Any] | None = None, training: Mapping[str, Any] | None = None,
                 meta: Mapping[str, Any] | None = None, device: str = "cpu"):
        super().__init__(family=family, classes=(), img_size=img_size, config=config, training=training, meta=meta)
        from zoo.train.device import resolve_device

        self.autoencoder = autoencoder
        self.view = dict(view or {})
        crop = self.view.get("crop_px")
        if crop is not None and not 8 <= int(crop) <= self.img_size:
            raise ValueError(f"view crop_px {crop} must lie in [8, img_size={self.img_size}]")
        self.device = str(resolve_device(device))
        self.autoencoder.to(self.device).eval()
        self.columns = representation_columns(autoencoder.latent_dim)

    # -- schema -----------------------------------------------------------------------------------
    def output_schema(self) -> list[tuple[str, str]]:
        return [(c, "double") for c in self.columns]

    def params_schema(self) -> list[tuple[str, str, Any]]:
        return [("return_reconstruction", "boolean", False)]

    # -- inference --------------------------------------------------------------------------------
    def _view(self, x01):
        crop = self.view.get("crop_px")
        if crop is None:
            return x01
        top = (x01.shape[-1] - int(crop)) // 2
        return x01[..., top:top + int(crop), top:top + int(crop)]

    def encode(self, images, batch_size: int = 64, reconstruct: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
        """Representations (N, D) float32 and, with ``reconstruct``, reconstructions (N, S, S, 3) uint8."""
        import torch

        from zoo.autoencoder.training import to_normalized, to_unit

        items = to_images(images)
        batch_size = int(batch_size)
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        reps, recons = [], []
        with torch.inference_mode():
            for start in range(0, len(items), batch_size):
                x = decode_batch(items[start:start + batch_size], self.transform, start).to(self.device)
                out = self.autoencoder(to_normalized(self._view(to_unit(x))))
                reps.append(out.mu.float().cpu().numpy())
                if reconstruct:
                    recons.append((out.recon.float().clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).cpu().numpy())
        if not reps:
            return np.zeros((0, self.autoencoder.latent_dim), np.float32), None
        return np.concatenate(reps), (np.concatenate(recons) if reconstruct else None)

    def predict(self, images, return_reconstruction: bool = False, batch_size: int = 64, **params: Any) -> pd.DataFrame:
        if params:
            raise ValueError(f"unknown predict parameter(s) {sorted(params)}; this model takes "
                             f"{[p[0] for p in self.params_schema()]} (and batch_size)")
        reps, recons = self.encode(images, batch_size=batch_size, reconstruct=bool(return_reconstruction))
        out = pd.DataFrame(reps.astype(np.float64), columns=self.columns)
        if return_reconstruction:
            from zoo.tracking.packaging import png_base64

            out["reconstruction"] = [png_base64(r) for r in recons] if recons is not None else pd.Series([], dtype=object)
        return out

    # -- persistence ------------------------------------------------------------------------------
    def metadata(self) -> dict[str, Any]:
        return {**super().metadata(), "autoencoder": dict(self.autoencoder.config), "view": self.view,
                "representation_dim": self.autoencoder.latent_dim}

    def save_files(self, directory: Path) -> dict[str, Any]:
        from safetensors.torch import save_file, save_model

        save_model(self.autoencoder, str(directory / WEIGHTS_FILE), metadata={"format": "pt"})
        save_file(self.autoencoder.backbone_state_dict(), str(directory / BACKBONE_FILE), metadata={"format": "pt"})
        return {"weights": WEIGHTS_FILE, "backbone": BACKBONE_FILE}

    @classmethod
    def load_files(cls, directory: Path, meta: Mapping[str, Any], device: str) -> "AutoencoderModel":
        from safetensors.torch import load_model

        from zoo.models.autoencoder import Autoencoder

        model = Autoencoder.from_config(dict(meta["autoencoder"]))
        load_model(model, str(directory / WEIGHTS_FILE), strict=True)
        return cls(meta["family"], model, img_size=int(meta["img_size"]), view=meta.get("view"),
                   config=meta.get("config"), training=meta.get("training"), meta=meta, device=device)

    def __repr__(self) -> str:
        return (f"AutoencoderModel(arch={self.autoencoder.arch!r}, img_size={self.img_size}, view={self.view}, "
                f"device={self.device!r})")
