"""Heat maps of what a classifier looks at: Grad-CAM (the ``grad-cam`` package) and SmoothGrad
(captum's ``NoiseTunnel(Saliency)``), both as (N, H, W) float arrays in [0, 1] at the input's size.

``model`` is a :class:`zoo.models.classifier.Classifier` (``cam_layer()`` names Grad-CAM's layer)
or any module returning logits plus ``target_layer=``. ``targets``: class index per image
(default: the predicted class).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch import nn

from zoo.registry import Registry

EXPLAINERS: Registry = Registry("explanation method")


def _targets(model: nn.Module, x: torch.Tensor, targets: Sequence[int] | None) -> list[int]:
    if targets is not None:
        targets = [int(t) for t in targets]
        if len(targets) != len(x):
            raise ValueError(f"{len(targets)} targets for {len(x)} images")
        return targets
    with torch.no_grad():
        return model(x).argmax(1).tolist()


def _normalise(maps: np.ndarray) -> np.ndarray:
    """Each map scaled to [0, 1] on its own (a flat map stays 0)."""
    flat = maps.reshape(len(maps), -1)
    lo, hi = flat.min(1, keepdims=True), flat.max(1, keepdims=True)
    out = np.divide(flat - lo, hi - lo, out=np.zeros_like(flat), where=(hi - lo) > 1e-12)
    return out.reshape(maps.shape).astype(np.float32)


@EXPLAINERS.register("gradcam")
def gradcam(model: nn.Module, x: torch.Tensor, targets: Sequence[int] | None = None,
            target_layer: nn.Module | None = None) -> np.ndarray:
    """Grad-CAM (Selvaraju et al.): gradient-weighted activations of the last convolutional stage,
    upsampled to the input size by the grad-cam package."""
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    layer = target_layer if target_layer is not None else model.cam_layer()
    was_training = model.training
    model.eval()
    try:
        tgt = _targets(model, x, targets)
        with GradCAM(model=model, target_layers=[layer]) as cam:
            maps = cam(input_tensor=x, targets=[ClassifierOutputTarget(t) for t in tgt])
    finally:
        model.train(was_training)
    return _normalise(np.asarray(maps, dtype=np.float32))


@EXPLAINERS.register("smoothgrad")
def smoothgrad(model: nn.Module, x: torch.Tensor, targets: Sequence[int] | None = None,
               n_samples: int = 16, noise: float = 0.15, batch_size: int | None = None) -> np.ndarray:
    """SmoothGrad (Smilkov et al.): input gradients averaged over ``n_samples`` noisy copies
    (noise std = ``noise`` x the input's value range), absolute value, max over colour channels."""
    from captum.attr import NoiseTunnel, Saliency

    was_training = model.training
    model.eval()
    try:
        tgt = _targets(model, x, targets)
        stdev = float(noise) * float((x.max() - x.min()).clamp_min(1e-6))
        tunnel = NoiseTunnel(Saliency(model))
        attr = tunnel.attribute(x.detach().clone().requires_grad_(True), nt_type="smoothgrad",
                                nt_samples=int(n_samples), nt_samples_batch_size=batch_size, stdevs=stdev,
                                target=tgt, abs=True)
    finally:
        model.train(was_training)
    return _normalise(attr.detach().abs().amax(dim=1).cpu().numpy())


def heatmaps(model: nn.Module, x: torch.Tensor, method: str = "gradcam",
             targets: Sequence[int] | None = None) -> np.ndarray:
    """(N, H, W) heat maps in [0, 1] by ``method`` (a name in ``EXPLAINERS``)."""
    fn = EXPLAINERS.get(method)
    if x.ndim != 4:
        raise ValueError(f"heat maps need an image batch (N, C, H, W), got shape {tuple(x.shape)}")
    if len(x) == 0:
        return np.zeros((0, *x.shape[-2:]), dtype=np.float32)
    return fn(model, x, targets)
