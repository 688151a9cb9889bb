"""Reusing a registered autoencoder's encoder: its backbone as the ``pretrained`` checkpoint of a
supervised family (``init_from=models:/zoo-autoencoder@candidate``).

Every ``autoencoder`` model folder holds ``backbone.safetensors``: the encoder's timm backbone in
plain timm keys, which :func:`zoo.models.create_encoder` loads with ``pretrained=<file>``. This
module turns a model URI into that local file:

```python
from zoo.autoencoder.reuse import backbone_checkpoint
path = backbone_checkpoint("models:/zoo-autoencoder@candidate")   # downloads the model's files
zoo train tml --pretrained <path>                                  # or -P pretrained=<path>
```
"""

from __future__ import annotations

import json
from pathlib import Path

from zoo.models.autoencoder_model import BACKBONE_FILE
from zoo.models.zoo_model import META_FILE


def find_backbone(folder: str | Path) -> Path:
    """The backbone checkpoint of an autoencoder model folder (or an MLflow model directory
    holding one); errors name what was found instead."""
    folder = Path(folder)
    for meta_path in sorted(folder.rglob(META_FILE)):
        kind = json.loads(meta_path.read_text()).get("kind")
        if kind != "autoencoder":
            raise ValueError(f"{meta_path.parent} is a model of kind {kind!r}; only 'autoencoder' models "
                             "carry a reusable backbone")
        path = meta_path.parent / BACKBONE_FILE
        if path.is_file():
            return path
        raise FileNotFoundError(f"{meta_path.parent} has no {BACKBONE_FILE}")
    raise FileNotFoundError(f"no zoo model ({META_FILE}) under {folder}")


def backbone_checkpoint(model_uri: str, dst: str | Path | None = None) -> Path:
    """Download ``model_uri`` (``models:/name@alias``, ``models:/name/3``, ``runs:/…`` or a local
    folder) and return its ``backbone.safetensors``."""
    if Path(model_uri).exists():
        return find_backbone(model_uri)
    import mlflow

    from zoo.tracking import store

    store.configure()
    local = mlflow.artifacts.download_artifacts(artifact_uri=model_uri, dst_path=str(dst) if dst else None)
    return find_backbone(local)


def resolve_pretrained(value: str | None) -> str | None:
    """``pretrained`` as the families take it, with ``models:/…`` / ``runs:/…`` URIs of autoencoder
    models resolved to their local backbone file (what ``init_from=`` means)."""
    if isinstance(value, str) and value.startswith(("models:/", "runs:/")):
        return str(backbone_checkpoint(value))
    return value
