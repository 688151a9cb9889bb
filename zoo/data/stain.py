"""Stain augmentation: perturb the stain concentrations of a patch (torchstain's Macenko augmentor).

Pappenheim (May-Grünwald-Giemsa) staining varies between labs, batches and slides much more
than the cells themselves; jittering the two dominant stain vectors' concentrations teaches the
encoder to ignore it. Macenko's method was devised for H&E, but it only assumes two absorbing
stains, which holds well enough for the azure/eosin pair of Romanowsky stains.
"""

from __future__ import annotations

import torch


class MacenkoStainJitter:
    """Callable on a uint8 CHW RGB tensor returning a stain-jittered uint8 CHW tensor.

    ``sigma1`` scales, ``sigma2`` shifts the concentrations (torchstain's parameters). Patches
    with too little stained tissue for the decomposition (a platelet on empty background) are
    returned unchanged instead of failing the batch."""

    def __init__(self, sigma1: float = 0.2, sigma2: float = 0.2, Io: int = 240, beta: float = 0.15):
        self.sigma1, self.sigma2, self.Io, self.beta = sigma1, sigma2, Io, beta

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        import torchstain

        if img.dtype != torch.uint8 or img.ndim != 3 or img.shape[0] != 3:
            raise ValueError(f"stain jitter needs a uint8 3xHxW tensor, got {tuple(img.shape)} {img.dtype}")
        aug = torchstain.augmentors.MacenkoAugmentor(backend="torch", sigma1=self.sigma1, sigma2=self.sigma2)
        try:
            aug.fit(img, Io=self.Io, beta=self.beta)
            out = aug.augment(Io=self.Io, beta=self.beta)
        except (RuntimeError, IndexError, ValueError):  # degenerate decomposition: leave as is
            return img
        if not torch.isfinite(out.float()).all():
            return img
        return out.clamp(0, 255).to(torch.uint8).permute(2, 0, 1).contiguous()

    def __repr__(self) -> str:
        return f"MacenkoStainJitter(sigma1={self.sigma1}, sigma2={self.sigma2})"
