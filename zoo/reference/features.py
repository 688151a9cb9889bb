"""Backbone features at a chosen layer, from any zoo model or a bare timm architecture, cached.

Sources (``resolve_source``):
* ``models:/<name>/<version>`` (or ``@alias``): a registered zoo model, downloaded with MLflow and
  loaded through ``zoo.models.load_zoo_model`` (data only, no pickle);
* a local folder holding ``zoo_model.json`` (a saved ZooModel);
* ``timm:<arch>`` or ``none`` (= ``timm:resnet18``): a timm network with *random* init (seeded),
  optionally ``pretrained=<local checkpoint>``; never downloads weights.

Layers (``FeatureExtractor(layer=...)``):
* ``pre_logits`` (default): timm's pooled pre-logits vector (``forward_head(..., pre_logits=True)``);
* ``features``: timm ``forward_features`` (the unpooled last feature map), flattened;
* ``output``: the module's own output (embedding of an encoder, logits of a classifier);
* any name from ``extractor.layer_names()`` (e.g. ``backbone.layer4.1.bn2``, the thesis's "6th-last
  batch-norm"): captured with a forward hook and flattened.

Cache: ``FeatureCache`` keys an ``.npz`` by (model version, layer, image size, dataset digest, row
ids), so a second run over the same model and data reads the features instead of recomputing.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from zoo.train.device import resolve_device

log = logging.getLogger(__name__)

SPECIAL_LAYERS = ("pre_logits", "features", "output")
DEFAULT_TIMM = "resnet18"


# --- sources -------------------------------------------------------------------------------------
class Source:
    """A resolved feature source: the torch module, its input size and a stable cache key."""

    def __init__(self, module: nn.Module, img_size: int, key: str, description: str, zoo_model: Any = None):
        self.module, self.img_size, self.key, self.description = module, int(img_size), key, description
        self.zoo_model = zoo_model


def torch_module_of(zoo_model: Any) -> nn.Module:
    """The network inside a loaded ZooModel (its encoder or classifier network)."""
    for attr in ("encoder", "network", "net", "model", "module", "backbone"):
        m = getattr(zoo_model, attr, None)
        if isinstance(m, nn.Module):
            return m
    raise TypeError(f"{type(zoo_model).__name__} (kind {getattr(zoo_model, 'kind', '?')!r}) holds no torch "
                    f"network to take features from; use a model with an encoder or classifier network")


def _dir_digest(directory: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(directory.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(directory)).encode())
            with open(p, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    h.update(block)
    return h.hexdigest()[:16]


def _find_model_dir(root: Path) -> Path:
    if (root / "zoo_model.json").exists():
        return root
    found = sorted(root.rglob("zoo_model.json"))
    if not found:
        raise FileNotFoundError(f"no zoo_model.json under {root}: not a zoo model artifact")
    return found[0].parent


def _resolved_model_uri(uri: str) -> str:
    """``models:/name@alias`` / ``models:/name/latest`` -> ``models:/name/<version>`` for the cache key."""
    from mlflow import MlflowClient

    rest = uri[len("models:/"):]
    client = MlflowClient()
    if "@" in rest:
        name, alias = rest.split("@", 1)
        return f"models:/{name}/{client.get_model_version_by_alias(name, alias).version}"
    name, _, ver = rest.partition("/")
    if ver.isdigit():
        return uri
    versions = client.search_model_versions(f"name='{name}'")
    if not versions:
        raise ValueError(f"registered model {name!r} has no versions ({uri})")
    return f"models:/{name}/{max(int(v.version) for v in versions)}"


def resolve_source(source: str, device: str = "auto", img_size: int = 64, pretrained: str | None = None,
                   seed: int = 0) -> Source:
    """Turn a ``source_model`` parameter into a module (see the module docstring)."""
    source = str(source or "none").strip()
    if source.lower() in ("none", ""):
        source = f"timm:{DEFAULT_TIMM}"
    if source.startswith("timm:"):
        from zoo.models import create_encoder

        arch = source[len("timm:"):]
        if pretrained and not Path(pretrained).expanduser().exists():
            raise FileNotFoundError(f"pretrained={pretrained!r}: pass a local checkpoint file or folder "
                                    f"(weights are never downloaded), or leave it empty for a random init")
        torch.manual_seed(seed)
        # the repo's encoder factory: random init, or a *local* checkpoint (never a download)
        module = create_encoder(arch, pretrained=pretrained).backbone
        key = f"timm:{arch}:seed{seed}"
        if pretrained:
            key += f":{hashlib.sha256(Path(pretrained).read_bytes()).hexdigest()[:16]}" if Path(pretrained).is_file() \
                else f":{_dir_digest(Path(pretrained))}"
        return Source(module.eval().to(resolve_device(device)), img_size, key, source)
    from zoo.models import load_zoo_model

    if source.startswith("models:/"):
        import mlflow

        resolved = _resolved_model_uri(source)
        local = Path(mlflow.artifacts.download_artifacts(resolved))
        model_dir, key = _find_model_dir(local), resolved
    else:
        path = Path(source).expanduser()
        if not path.exists():
            raise FileNotFoundError(f"source_model {source!r}: expected models:/<name>/<version>, a saved "
                                    f"zoo model folder, timm:<arch> or none")
        model_dir = _find_model_dir(path)
        key = f"dir:{_dir_digest(model_dir)}"
    zm = load_zoo_model(model_dir, device=device)
    size = int(getattr(zm, "img_size", None) or json.loads((model_dir / "zoo_model.json").read_text()).get("img_size") or img_size)
    return Source(torch_module_of(zm).eval(), size, key, source, zoo_model=zm)


# --- extraction ----------------------------------------------------------------------------------
def _timm_part(module: nn.Module) -> nn.Module | None:
    if hasattr(module, "forward_features"):
        return module
    for attr in ("backbone", "net"):   # zoo Encoder.backbone, zoo Classifier.net
        bb = getattr(module, attr, None)
        if isinstance(bb, nn.Module) and hasattr(bb, "forward_features"):
            return bb
    return None


class FeatureExtractor:
    """``extractor(images) -> (N, D)`` float32 features at ``layer`` (batched, progress bar)."""

    def __init__(self, module: nn.Module, layer: str = "pre_logits", img_size: int = 64, batch_size: int = 64,
                 device: str = "auto", progress: bool = True):
        self.module = module.eval()
        self.layer = layer
        self.img_size = int(img_size)
        self.batch_size = int(batch_size)
        self.device = resolve_device(device)
        self.progress = progress
        self.module.to(self.device)
        if layer not in SPECIAL_LAYERS:
            names = dict(self.module.named_modules())
            if layer not in names:
                raise ValueError(f"unknown layer {layer!r}; use one of {', '.join(SPECIAL_LAYERS)} or a module "
                                 f"name, e.g. {', '.join(self.layer_names()[-8:])}")
        elif layer in ("pre_logits", "features") and _timm_part(self.module) is None:
            raise ValueError(f"layer={layer!r} needs a timm network (forward_features); this module is "
                             f"{type(module).__name__}: use 'output' or a module name")

    def layer_names(self) -> list[str]:
        return [n for n, _ in self.module.named_modules() if n]

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.layer == "output":
            return self.module(x)
        timm_net = _timm_part(self.module)
        if self.layer == "features":
            return timm_net.forward_features(x)
        if self.layer == "pre_logits":
            return timm_net.forward_head(timm_net.forward_features(x), pre_logits=True)
        captured: list[torch.Tensor] = []
        target = dict(self.module.named_modules())[self.layer]
        handle = target.register_forward_hook(lambda m, i, o: captured.append(o[0] if isinstance(o, tuple) else o))
        try:
            self.module(x)
        finally:
            handle.remove()
        return captured[0]

    @torch.no_grad()
    def __call__(self, images: Any) -> np.ndarray:
        from zoo.data.images import decode_image
        from zoo.data.transforms import eval_transform

        tf = eval_transform(self.img_size)
        n = len(images)
        out = []
        for s in tqdm(range(0, n, self.batch_size), desc=f"features {self.layer}", disable=not self.progress or n <= self.batch_size):
            batch = torch.stack([tf(decode_image(images[i])) for i in range(s, min(s + self.batch_size, n))])
            f = self._forward(batch.to(self.device))
            out.append(f.reshape(len(batch), -1).float().cpu())
        if not out:
            return np.zeros((0, 0), dtype=np.float32)
        return torch.cat(out).numpy()


# --- cache ---------------------------------------------------------------------------------------
class FeatureCache:
    """``<root>/<key>.npz`` holding ``features`` and the row ``ids`` they belong to."""

    def __init__(self, root: str | Path | None = None):
        from zoo.paths import data_dir

        self.root = Path(root) if root is not None else data_dir() / "cache" / "features"

    @staticmethod
    def key(model_key: str, layer: str, img_size: int, dataset_digest: str, ids: Sequence[str]) -> str:
        ids_digest = hashlib.sha256("\n".join(map(str, ids)).encode()).hexdigest()
        blob = json.dumps({"model": model_key, "layer": layer, "img_size": int(img_size),
                           "dataset": dataset_digest, "ids": ids_digest}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:24]

    def get_or_compute(self, key: str, ids: Sequence[str], compute: Callable[[], np.ndarray]) -> np.ndarray:
        path = self.root / f"{key}.npz"
        ids_arr = np.asarray([str(i) for i in ids])
        if path.exists():
            with np.load(path, allow_pickle=False) as z:
                if np.array_equal(z["ids"], ids_arr):
                    log.info("features from cache %s", path)
                    return z["features"]
        feats = np.asarray(compute(), dtype=np.float32)
        if len(feats) != len(ids_arr):
            raise ValueError(f"computed {len(feats)} feature rows for {len(ids_arr)} ids")
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, features=feats, ids=ids_arr)
        tmp.replace(path)
        return feats
