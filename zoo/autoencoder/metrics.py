"""Reconstruction quality inside the real cell contour (paper ``002``, Fig. 2).

Masks are the manifest's cell masks (0 background, 128 cytoplasm, 255 nucleus): the synthetic
generator's, or the expert masks of the Zheng sets. A pixel is inside the contour when its mask
value is at least 64 (levels 0/128/255; stray grey levels near 0, as in five Zheng masks, stay
outside; a 0/1 mask counts its ones). L1 is the mean absolute error over the cell's pixels (and channels); SSIM is the
mean of torchmetrics' SSIM map over the same pixels (Gaussian window 11, sigma 1.5, as usual).
"""

from __future__ import annotations

import numpy as np
import torch
from torchmetrics.functional.image import structural_similarity_index_measure


def _as_tensor(x) -> torch.Tensor:
    return torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x).float()


def contour_metrics(image, recon, mask, kernel_size: int = 11) -> dict[str, np.ndarray]:
    """Per-image ``l1`` and ``ssim`` inside the contour (NaN for an image with an empty mask).

    ``image``, ``recon``: (N, 3, H, W) in [0, 1]; ``mask``: (N, 1, H, W) (levels 0/128/255 or 0/1).
    ``kernel_size`` shrinks to an odd size <= the image side for tiny images.
    """
    image, recon, mask = _as_tensor(image), _as_tensor(recon), _as_tensor(mask)
    if image.shape != recon.shape or image.dim() != 4:
        raise ValueError(f"image {tuple(image.shape)} and reconstruction {tuple(recon.shape)} must be equal (N,C,H,W)")
    if mask.shape[0] != image.shape[0] or mask.shape[-2:] != image.shape[-2:]:
        raise ValueError(f"mask {tuple(mask.shape)} does not match images {tuple(image.shape)}")
    inside = (mask >= (64 if float(mask.max()) > 1 else 0.5)).float()
    if inside.dim() == 3:
        inside = inside[:, None]
    inside = inside[:, :1].expand_as(image)
    area = inside.sum(dim=(1, 2, 3))
    l1 = ((image - recon).abs() * inside).sum(dim=(1, 2, 3)) / area
    k = min(int(kernel_size), image.shape[-1] - (1 - image.shape[-1] % 2))
    k = k if k % 2 else k - 1
    _, smap = structural_similarity_index_measure(recon, image, data_range=1.0, kernel_size=max(k, 3),
                                                  sigma=1.5 * max(k, 3) / 11.0, return_full_image=True,
                                                  reduction="none")
    ssim = (smap * inside).sum(dim=(1, 2, 3)) / area
    empty = area == 0
    l1[empty], ssim[empty] = float("nan"), float("nan")
    return {"l1": l1.numpy(), "ssim": ssim.numpy()}


def summarize_contour(image, recon, mask) -> dict[str, float]:
    """Means over the images that have a mask: ``contour_l1``, ``contour_ssim``, ``n_masked``."""
    m = contour_metrics(image, recon, mask)
    ok = ~np.isnan(m["l1"])
    if not ok.any():
        return {"n_masked": 0.0}
    return {"contour_l1": float(m["l1"][ok].mean()), "contour_ssim": float(m["ssim"][ok].mean()),
            "n_masked": float(ok.sum())}
