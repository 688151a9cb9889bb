"""Radial profiles of paper ``002`` (Eq. 1-3): distance from the patch centre, the noise standard
deviation and the loss-mask weights.

All three are tiny closed-form tensors; no library provides them. Distances are in pixels of the
current image; the centre of an ``H x W`` image is ``((H - 1) / 2, (W - 1) / 2)`` (the middle of
the pixel grid, so a 256 px patch is symmetric around its centre as the paper's is).
"""

from __future__ import annotations

import torch

# The paper's patches are 256 px; radii, crop sizes and offsets given in "paper pixels" are scaled
# by img_size / REFERENCE_SIZE so the same numbers describe the same part of the patch at 64 px.
REFERENCE_SIZE = 256


def distance_map(height: int, width: int, device: torch.device | str | None = None,
                 dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """d(x, y) = sqrt((x - x_c)^2 + (y - y_c)^2) as an (H, W) tensor."""
    ys = torch.arange(int(height), device=device, dtype=dtype) - (int(height) - 1) / 2.0
    xs = torch.arange(int(width), device=device, dtype=dtype) - (int(width) - 1) / 2.0
    return torch.sqrt(ys[:, None] ** 2 + xs[None, :] ** 2)


def noise_std_map(height: int, width: int, sigma: float, r_max: float, device=None) -> torch.Tensor:
    """Eq. 2: the standard deviation of n(x, y), ``sigma * min(1, d / r_max)``, (H, W). ``sigma`` in
    the units of the image it is added to (divide the paper's 0-255 values by 255 for [0, 1])."""
    if not float(r_max) > 0:
        raise ValueError(f"r_max must be > 0, got {r_max}")
    return float(sigma) * torch.clamp(distance_map(height, width, device) / float(r_max), max=1.0)


def mask_weights(height: int, width: int, r_max: torch.Tensor | float, device=None) -> torch.Tensor:
    """Eq. 3: ``max(0, 1 - sqrt(d / r_max))``.

    ``r_max`` a float -> (H, W); a tensor of shape (N,) -> (N, 1, H, W), one radius per image
    (differentiable in ``r_max``: the learned radius trains through it). Radii are floored at
    1e-3 px so that a radius collapsing to zero gives an all-zero mask, not a division by zero.
    """
    d = distance_map(height, width, device)
    if not isinstance(r_max, torch.Tensor):
        if not float(r_max) > 0:
            raise ValueError(f"r_max must be > 0, got {r_max}")
        return torch.clamp(1.0 - torch.sqrt(d / float(r_max)), min=0.0)
    r = r_max.to(d.device, torch.float32).reshape(-1, 1, 1, 1).clamp_min(1e-3)
    return torch.clamp(1.0 - torch.sqrt(d[None, None] / r), min=0.0)
