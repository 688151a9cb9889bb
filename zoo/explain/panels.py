"""Fig. 5 of the ResNeXt paper: for each class, correctly classified cells with their SmoothGrad
map and their Grad-CAM heat map overlaid on the image."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
from matplotlib.figure import Figure
from torch import nn

from .heatmaps import gradcam, smoothgrad


def pick_correct(y_true: Sequence[int], y_pred: Sequence[int], confidence: Sequence[float] | None = None,
                 per_class: int = 1) -> dict[int, list[int]]:
    """Indices of up to ``per_class`` correctly classified images per true class (most confident
    first when ``confidence`` is given, else in order). Classes with no correct image are absent."""
    yt, yp = np.asarray(y_true), np.asarray(y_pred)
    conf = np.asarray(confidence, dtype=float) if confidence is not None else -np.arange(len(yt), dtype=float)
    out: dict[int, list[int]] = {}
    for c in np.unique(yt):
        idx = np.flatnonzero((yt == c) & (yp == c))
        if idx.size:
            out[int(c)] = idx[np.argsort(-conf[idx], kind="stable")][:per_class].tolist()
    return out


def explanation_panel(model: nn.Module, x: torch.Tensor, y_true: Sequence[int], y_pred: Sequence[int],
                      classes: Sequence[Any], confidence: Sequence[float] | None = None, per_class: int = 1,
                      images: np.ndarray | None = None, title: str | None = None) -> Figure:
    """Columns = correctly classified cells (``per_class`` per class, ontology order is the
    caller's ``classes`` order); rows = image, SmoothGrad, Grad-CAM overlay.

    ``x``: the model's input batch (normalised); ``images``: the same cells as float RGB (N, H, W, 3)
    in [0, 1] for display (default: ``x`` de-normalised with the ImageNet statistics).
    """
    from pytorch_grad_cam.utils.image import show_cam_on_image

    from zoo.data.transforms import denormalize

    picks = pick_correct(y_true, y_pred, confidence, per_class)
    order = [i for c in range(len(classes)) for i in picks.get(c, [])]
    if not order:
        raise ValueError("no correctly classified image to explain")
    sel = torch.as_tensor(order)
    xs = x[sel]
    targets = [int(np.asarray(y_true)[i]) for i in order]
    sg = smoothgrad(model, xs, targets)
    cam = gradcam(model, xs, targets)
    shown = (images[order] if images is not None
             else denormalize(xs.detach().float().cpu()).permute(0, 2, 3, 1).numpy())
    n = len(order)
    fig = Figure(figsize=(1.6 * n + 0.6, 5.2), layout="constrained")
    axes = fig.subplots(3, n, squeeze=False)
    for j, i in enumerate(order):
        axes[0, j].imshow(shown[j])
        axes[0, j].set_title(str(classes[int(np.asarray(y_true)[i])]), fontsize=7)
        axes[1, j].imshow(sg[j], cmap="gray", vmin=0, vmax=1)
        axes[2, j].imshow(show_cam_on_image(np.clip(shown[j], 0, 1).astype(np.float32), cam[j], use_rgb=True))
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    for r, name in enumerate(("image", "SmoothGrad", "Grad-CAM")):
        axes[r, 0].set_ylabel(name, fontsize=8)
    fig.suptitle(title or "Correctly classified cells and what the network looks at")
    return fig
