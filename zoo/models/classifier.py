"""Softmax cell classifiers: any timm network with a class head, or a named architecture of the
small ``ARCHITECTURES`` registry (the sequential CNN of the ResNeXt paper, seed 004).

```python
from zoo.models.classifier import create_classifier
net = create_classifier("resnet18", num_classes=10)                    # CPU preset
net = create_classifier("resnext50_32x4d", num_classes=21, pretrained="/ckpt/resnext50.safetensors")
net = create_classifier("sequential_cnn", num_classes=21)              # the paper's ~0.3 M-parameter CNN
logits, feats = net(x), net.features(x)        # (N, C) logits, (N, D) pre-logit features (Fig. 6 UMAP)
```

``pretrained`` is a local checkpoint only (random init otherwise): nothing is downloaded.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Mapping

import pandas as pd
import timm
import torch
from torch import nn

from zoo.registry import Registry

log = logging.getLogger(__name__)

#: Named architectures that are not timm models: ``fn(num_classes, in_chans, drop_rate) -> nn.Module``
#: returning a module with timm's ``forward_features`` / ``forward_head(x, pre_logits)`` /
#: ``num_features`` interface and a ``cam_layer`` attribute (the last convolutional stage).
ARCHITECTURES: Registry = Registry("classifier architecture")


class SequentialCNN(nn.Module):
    """A plain stack of conv–BN–ReLU–max-pool blocks, global average pooling and a linear head.

    The ResNeXt paper (004) compares ResNeXt-50 with "a sequential model with a simpler
    architecture" from Matek et al. 2019 whose exact layers are in a supplementary figure we do not
    have; the text gives only its size (303,694 trainable parameters for 21 classes at 250 px).
    This is a reconstruction of that kind of network, sized to the same order (~0.29 M parameters
    for 21 classes), not a copy. Global pooling makes it independent of the input size.
    """

    def __init__(self, num_classes: int, in_chans: int = 3, drop_rate: float = 0.0,
                 widths: tuple[int, ...] = (16, 32, 64, 128, 160)):
        super().__init__()
        blocks, c = [], in_chans
        for w in widths:
            blocks.append(nn.Sequential(nn.Conv2d(c, w, 3, padding=1, bias=False), nn.BatchNorm2d(w),
                                        nn.ReLU(inplace=True), nn.MaxPool2d(2, ceil_mode=True)))
            c = w
        self.stages = nn.Sequential(*blocks)
        self.num_features = c
        self.num_classes = int(num_classes)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.drop = nn.Dropout(drop_rate)
        self.fc = nn.Linear(c, self.num_classes)

    @property
    def cam_layer(self) -> nn.Module:
        # Grad-CAM needs the last spatial feature map: the output of the last block (its pooled
        # output; the in-place ReLU inside would break the gradient hook). A property, not an
        # attribute: a second reference would duplicate the block's tensors in the state dict.
        return self.stages[-1]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.stages(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.drop(self.pool(x).flatten(1))
        return x if pre_logits else self.fc(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


@ARCHITECTURES.register("sequential_cnn")
def sequential_cnn(num_classes: int, in_chans: int = 3, drop_rate: float = 0.0) -> nn.Module:
    return SequentialCNN(num_classes, in_chans=in_chans, drop_rate=drop_rate)


def known_architecture(arch: str) -> bool:
    return arch in ARCHITECTURES or timm.is_model(arch)


def check_architecture(arch: str) -> str:
    """``arch`` if it names a registered architecture or a timm model, else a ValueError listing both."""
    if known_architecture(arch):
        return arch
    close = timm.list_models(f"*{arch.split('.')[0]}*")[:8]
    hint = f" Similar timm models: {', '.join(close)}." if close else ""
    raise ValueError(f"unknown classifier architecture {arch!r}: use one of {', '.join(ARCHITECTURES.names())} "
                     f"or any timm model name (timm.list_models()).{hint}")


class Classifier(nn.Module):
    """``net`` (timm model with a ``num_classes`` head, or an ``ARCHITECTURES`` entry) mapping an
    image batch to class logits; ``features(x)`` gives the pre-logit features.

    ``config`` rebuilds the architecture (:meth:`from_config`); weights travel as a state dict.
    """

    def __init__(self, arch: str = "resnet18", num_classes: int = 2, drop_rate: float = 0.0,
                 img_size: int | None = None, channels_last: bool = True, in_chans: int = 3):
        super().__init__()
        if int(num_classes) < 2:
            raise ValueError(f"a classifier needs at least 2 classes, got num_classes={num_classes}")
        if not 0.0 <= float(drop_rate) < 1.0:
            raise ValueError(f"drop_rate must be in [0, 1), got {drop_rate}")
        self.arch = check_architecture(str(arch))
        self.num_classes, self.drop_rate = int(num_classes), float(drop_rate)
        self.img_size = int(img_size) if img_size else None
        self.channels_last, self.in_chans = bool(channels_last), int(in_chans)
        if self.arch in ARCHITECTURES:
            self.net = ARCHITECTURES.create(self.arch, num_classes=self.num_classes, in_chans=self.in_chans,
                                            drop_rate=self.drop_rate)
        else:
            self.net = _create_timm(self.arch, self.num_classes, self.drop_rate, self.img_size, self.in_chans)
        self.num_features = int(self.net.num_features)
        if self.channels_last:  # NHWC: the fast CPU path for convnets (see zoo.models.encoder)
            self.to(memory_format=torch.channels_last)

    @property
    def config(self) -> dict[str, Any]:
        return {"arch": self.arch, "num_classes": self.num_classes, "drop_rate": self.drop_rate,
                "img_size": self.img_size, "channels_last": self.channels_last, "in_chans": self.in_chans}

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> "Classifier":
        known = {"arch", "num_classes", "drop_rate", "img_size", "channels_last", "in_chans"}
        unknown = sorted(set(config) - known)
        if unknown:
            raise ValueError(f"unknown classifier config keys {unknown}; expected {sorted(known)}")
        return cls(**dict(config))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Pre-logit features (N, num_features): what the paper embeds with UMAP (Fig. 6)."""
        return self.net.forward_head(self.net.forward_features(x), pre_logits=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def features_and_logits(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Pre-logit features and logits from one pass through the network."""
        fmap = self.net.forward_features(x)
        return self.net.forward_head(fmap, pre_logits=True), self.net.forward_head(fmap)

    def cam_layer(self) -> nn.Module:
        """The module whose activations Grad-CAM weighs: the last stage with a spatial map."""
        layer = getattr(self.net, "cam_layer", None)
        if isinstance(layer, nn.Module):
            return layer
        info = getattr(self.net, "feature_info", None)
        if info:  # timm CNNs name their stages; the last one feeds the global pool
            last = info[-1]["module"] if isinstance(info, list) else info.module_name()[-1]
            try:
                return self.net.get_submodule(last)
            except AttributeError:
                pass
        convs = [m for m in self.net.modules() if isinstance(m, nn.Conv2d)]
        if not convs:
            raise ValueError(f"architecture {self.arch!r} has no convolutional layer for Grad-CAM")
        return convs[-1]

    def extra_repr(self) -> str:
        return f"arch={self.arch!r}, num_classes={self.num_classes}"


def _create_timm(name: str, num_classes: int, drop_rate: float, img_size: int | None, in_chans: int) -> nn.Module:
    kwargs: dict[str, Any] = {"pretrained": False, "num_classes": num_classes, "drop_rate": drop_rate,
                              "in_chans": in_chans}
    if img_size:
        try:  # transformers need the size at build time; CNNs do not accept the argument
            return timm.create_model(name, img_size=img_size, **kwargs)
        except TypeError as exc:
            if "img_size" not in str(exc):
                raise
    return timm.create_model(name, **kwargs)


def load_classifier_checkpoint(model: Classifier, path: str | os.PathLike) -> dict[str, list[str]]:
    """Load a local checkpoint (.safetensors or torch, ``weights_only``) into ``model``.

    Accepts a bare network state dict (timm style, e.g. ImageNet weights), or a whole
    :class:`Classifier` state dict (keys ``net.*``). Head tensors whose shape differs (another
    number of classes) are skipped, so an ImageNet or other-dataset checkpoint fine-tunes; any
    other shape mismatch raises naming the checkpoint."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"pretrained checkpoint {path} not found; pretrained takes a local file path "
                                "(nothing is downloaded)")
    # timm's loader: safetensors, or torch.load(weights_only=True), unwraps state_dict/model/module.
    state = timm.models.load_state_dict(str(path), use_ema=False)
    state = {k[4:] if k.startswith("net.") else k: v for k, v in state.items()}
    own = model.net.state_dict()
    head = [k for k, v in state.items() if k in own and own[k].shape != v.shape and v.ndim <= 2
            and own[k].shape[0] == model.num_classes]
    state = {k: v for k, v in state.items() if k not in head}
    try:
        missing, unexpected = model.net.load_state_dict(state, strict=False)
    except RuntimeError as exc:
        raise ValueError(f"checkpoint {path} does not fit architecture {model.arch!r}: "
                         f"{str(exc).splitlines()[0]} ... (saved from another model?)") from None
    if len(missing) == len(own):
        raise ValueError(f"checkpoint {path} shares no parameter names with {model.arch!r} "
                         f"(first keys: {list(state)[:3]})")
    log.log(logging.WARNING if (missing or unexpected) else logging.INFO,
            "classifier %s: loaded %s (missing %d, unexpected %d, new head %s)", model.arch, path,
            len(missing), len(unexpected), head)
    return {"missing": list(missing), "unexpected": list(unexpected), "new_head": head}


def create_classifier(arch: str = "resnet18", num_classes: int = 2, pretrained: str | os.PathLike | None = None,
                      drop_rate: float = 0.0, img_size: int | None = None, channels_last: bool = True) -> Classifier:
    """Build a :class:`Classifier`; ``pretrained``: None (random init) or a local checkpoint path."""
    model = Classifier(arch, num_classes, drop_rate=drop_rate, img_size=img_size, channels_last=channels_last)
    model.load_report = {"missing": [], "unexpected": [], "new_head": []}
    if pretrained not in (None, "", False):
        if not isinstance(pretrained, (str, os.PathLike)):
            raise TypeError(f"pretrained must be a local checkpoint path or None, got {type(pretrained).__name__}")
        model.load_report = load_classifier_checkpoint(model, pretrained)
        if channels_last:
            model.to(memory_format=torch.channels_last)
    return model


# --------------------------------------------------------------------------------------------
# the model kind "classifier": weights as safetensors + zoo_model.json
# --------------------------------------------------------------------------------------------
from zoo.models.zoo_model import ZOO_MODELS, ZooModel, decode_batch, to_images  # noqa: E402

WEIGHTS_FILE = "classifier.safetensors"


def class_info(classes, ontology=None) -> dict[str, dict[str, Any]]:
    """Lineage and maturity (in [0, 1], None for unstaged classes) of each class from the ontology,
    stored in the artifact as data so predictions need no ontology at load time. Classes the
    ontology does not know get lineage None."""
    if ontology is None:
        from zoo.knowledge import load_ontology

        ontology = load_ontology()
    out = {}
    for c in classes:
        try:
            out[str(c)] = {"lineage": ontology.lineage(c), "maturity": ontology.maturity(c)}
        except (KeyError, ValueError):
            out[str(c)] = {"lineage": None, "maturity": None}
    return out


@ZOO_MODELS.register("classifier")
class ClassifierModel(ZooModel):
    """A softmax classifier: ``predict`` gives ``label`` (the arg-max class, as in 004),
    ``confidence`` (its softmax probability), one ``p_<class>`` per class, and the predicted
    class's ``lineage`` and ``maturity`` (from the ontology; NaN for unstaged classes). Predict
    parameters: ``return_embedding`` adds ``embedding`` (the pre-logit features), ``explain``
    (``"gradcam"`` or ``"smoothgrad"``) adds ``heatmap``: an img_size x img_size list of lists in
    [0, 1] per image, for the predicted class."""

    kind = "classifier"

    def __init__(self, family: str, network: Classifier, classes, *, img_size: int,
                 info: Mapping[str, Mapping[str, Any]] | None = None, config: Mapping[str, Any] | None = None,
                 training: Mapping[str, Any] | None = None, meta: Mapping[str, Any] | None = None,
                 device: str = "cpu"):
        super().__init__(family=family, classes=classes, img_size=img_size, config=config, training=training,
                         meta=meta)
        if network.num_classes != len(self.classes):
            raise ValueError(f"network has {network.num_classes} outputs for {len(self.classes)} classes")
        from zoo.train.device import resolve_device

        self.network = network
        self.info = {c: dict((info or {}).get(c) or {"lineage": None, "maturity": None}) for c in self.classes}
        self.device = str(resolve_device(device))
        self.network.to(self.device).eval()

    def output_schema(self) -> list[tuple[str, str]]:
        return [("label", "string"), ("confidence", "double"), *((f"p_{c}", "double") for c in self.classes),
                ("lineage", "string"), ("maturity", "double")]

    def params_schema(self) -> list[tuple[str, str, Any]]:
        return [("return_embedding", "boolean", False), ("explain", "string", "none")]

    def _batches(self, images, batch_size: int):
        items = to_images(images)
        for start in range(0, len(items), batch_size):
            x = decode_batch(items[start:start + batch_size], self.transform, start)
            yield x.to(self.device).contiguous(memory_format=torch.channels_last)

    def predict(self, images, return_embedding: bool = False, explain: str | None = "none", batch_size: int = 64,
                **params: Any) -> pd.DataFrame:
        import numpy as np

        if params:
            raise ValueError(f"unknown predict parameter(s) {sorted(params)}; this model takes "
                             f"{[p[0] for p in self.params_schema()]} (and batch_size)")
        explain = None if explain in (None, "", "none", False) else str(explain)
        if explain is not None:
            from zoo.explain import EXPLAINERS

            EXPLAINERS.get(explain)  # unknown method: fail before decoding anything
        probs, feats, maps = [], [], []
        for x in self._batches(images, int(batch_size)):
            with torch.inference_mode():
                f, logits = self.network.features_and_logits(x)
                p = torch.softmax(logits.float(), dim=1)
            probs.append(p.cpu().numpy())
            if return_embedding:
                feats.append(f.float().cpu().numpy())
            if explain is not None:
                from zoo.explain import heatmaps

                maps.append(heatmaps(self.network, x.clone(), explain, targets=p.argmax(1).tolist()))
        if not probs:
            out = self.empty()
            if return_embedding:
                out["embedding"] = pd.Series([], dtype=object)
            if explain is not None:
                out["heatmap"] = pd.Series([], dtype=object)
            return out
        P = np.concatenate(probs).astype(np.float64)
        best = P.argmax(1)
        labels = np.asarray(self.classes, dtype=object)[best]
        cols: dict[str, Any] = {"label": labels, "confidence": P[np.arange(len(best)), best]}
        for j, c in enumerate(self.classes):
            cols[f"p_{c}"] = P[:, j]
        cols["lineage"] = [self.info[c]["lineage"] for c in labels]
        cols["maturity"] = [float("nan") if self.info[c]["maturity"] is None else float(self.info[c]["maturity"])
                            for c in labels]
        if return_embedding:
            cols["embedding"] = [r.tolist() for r in np.concatenate(feats)]
        if explain is not None:
            cols["heatmap"] = [m.tolist() for m in np.concatenate(maps)]
        return pd.DataFrame(cols)

    def metadata(self) -> dict[str, Any]:
        return {**super().metadata(), "network": dict(self.network.config), "class_info": self.info}

    def save_files(self, directory: Path) -> dict[str, Any]:
        from safetensors.torch import save_model

        save_model(self.network, str(Path(directory) / WEIGHTS_FILE), metadata={"format": "pt"})
        return {"weights": WEIGHTS_FILE}

    @classmethod
    def load_files(cls, directory: Path, meta: Mapping[str, Any], device: str) -> "ClassifierModel":
        from safetensors.torch import load_model

        network = Classifier.from_config(dict(meta["network"]))
        load_model(network, str(Path(directory) / WEIGHTS_FILE), strict=True)
        return cls(meta["family"], network, meta["classes"], img_size=int(meta["img_size"]),
                   info=meta.get("class_info"), config=meta.get("config"), training=meta.get("training"),
                   meta=meta, device=device)
