"""Reconstruction panels like Fig. 1 of paper ``002``: per cell the input, what the suppression
method does to it (loss mask overlaid, Gaussian noise added, the crop window) and the
reconstruction."""

from __future__ import annotations

import numpy as np
import torch

from .suppression import GaussianNoise, RandomCrop, Suppression, _MaskBase
from .training import to_normalized


def _hwc(x: torch.Tensor) -> np.ndarray:
    return x.detach().float().clamp(0, 1).permute(1, 2, 0).cpu().numpy()


def reconstruction_panel(model, suppression: Suppression, images01: torch.Tensor, title: str = "", seed: int = 0):
    """A matplotlib figure, one row per image of ``images01`` ((N, 3, S, S) in [0, 1]):
    input | method (mask overlay, noisy input or crop window) | reconstruction."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    device = next(model.parameters()).device
    x = images01.to(device).float()
    model.eval()
    suppression.eval()
    with torch.inference_mode(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if isinstance(suppression, GaussianNoise):
            view = suppression.add_noise(x)   # Fig. 1 d/e: the noisy input and its reconstruction
        else:
            view = suppression.eval_view(x)
        out = model(to_normalized(view))
        weights = suppression.weights(view, out.mu) if isinstance(suppression, _MaskBase) else None
    n = len(x)
    fig, axes = plt.subplots(n, 3, figsize=(6.0, 2.0 * n + 0.4), squeeze=False)
    settings = ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in suppression.describe().items())
    middle = {"noise": "input + noise", "crop": "crop window"}.get(suppression.name,
                                                                   "loss mask" if weights is not None else "input")
    for i in range(n):
        a, b, c = axes[i]
        a.imshow(_hwc(x[i]))
        if weights is not None:
            b.imshow(_hwc(view[i]))
            b.imshow(weights[i, 0].float().cpu().numpy(), cmap="magma", alpha=0.55, vmin=0, vmax=1)
        elif isinstance(suppression, RandomCrop):
            b.imshow(_hwc(x[i]))
            top = (x.shape[-1] - suppression.size) / 2 - 0.5
            b.add_patch(Rectangle((top, top), suppression.size, suppression.size, fill=False, color="yellow", lw=1.5))
        else:
            b.imshow(_hwc(view[i]))
        c.imshow(_hwc(out.recon[i]))
        for ax in (a, b, c):
            ax.set_xticks([])
            ax.set_yticks([])
        if i == 0:
            a.set_title("input", fontsize=8)
            b.set_title(middle, fontsize=8)
            c.set_title("reconstruction", fontsize=8)
    fig.suptitle(f"{title}\n{settings}" if title else settings, fontsize=8)
    fig.tight_layout()
    return fig
