"""Surrounding-cell suppression methods of paper ``002``, one registry ``SUPPRESSIONS``.

```python
from zoo.autoencoder import create_suppression
sup = create_suppression("mask_sampled", img_size=64, radius=50, radius_std=20)
inp, target = sup.prepare(x01)            # x01: (N, 3, S, S) in [0, 1]; training views
w = sup.weights(target, representation)   # (N, 1, s, s) loss mask or None
extra = sup.penalty()                     # scalar tensor or None (learned radius)
rep_view = sup.eval_view(x01)             # what the encoder sees for representations
```

Radii, crop sizes and offsets are given in *paper pixels* (of a 256 px patch) and scaled by
``img_size / 256``, so the paper's values (``r_fix`` 50/90/126, crops 88/172 px, offsets 0/5/15)
describe the same part of the patch at the CPU preset's 64 px. Noise sigma is an intensity in
0-255 units (Eq. 2), not a length.

At evaluation (representations, pyfunc) no noise is added and the crop method takes the centre
crop: the methods shape what the network *learns*, the cells it describes are left as they are.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from zoo.registry import Registry

from .radial import REFERENCE_SIZE, mask_weights, noise_std_map

SUPPRESSIONS: Registry = Registry("suppression method")


class Suppression(nn.Module):
    """Base class and the ``none`` method: input = target = the image, no mask, no penalty."""

    name = "none"

    def __init__(self, img_size: int, ref_size: int = REFERENCE_SIZE):
        super().__init__()
        if int(img_size) < 8:
            raise ValueError(f"img_size must be >= 8 px, got {img_size}")
        self.img_size = int(img_size)
        self.scale = self.img_size / float(ref_size)

    @property
    def input_size(self) -> int:
        """Side of the images the autoencoder sees (the crop size for ``crop``)."""
        return self.img_size

    def px(self, paper_px: float) -> float:
        """A length in paper pixels (256 px patch) at this image size."""
        return float(paper_px) * self.scale

    def prepare(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Training views ``(input, target)`` of a batch in [0, 1]."""
        return x, x

    def eval_view(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def weights(self, target: torch.Tensor, representation: torch.Tensor) -> torch.Tensor | None:
        return None

    def penalty(self) -> torch.Tensor | None:
        return None

    def describe(self) -> dict[str, Any]:
        """The method's settings (paper units) for tags, tables and panels."""
        return {"method": self.name}


SUPPRESSIONS.add("none", Suppression)


@SUPPRESSIONS.register("noise")
class GaussianNoise(Suppression):
    """Eq. 1-2: ``I + n``, ``n ~ N(0, sigma^2 min(1, d / r_max)^2)`` with ``r_max`` half the patch.

    The noisy image is both input and target (Eq. 1 changes ``I`` itself): the outer noise cannot be
    reconstructed, so it gives no consistent gradient and stays out of the representation.
    ``clip``: keep the noisy image in [0, 1] as an image is (off only to test Eq. 2 exactly).
    """

    name = "noise"

    def __init__(self, img_size: int, sigma: float = 100.0, clip: bool = True, ref_size: int = REFERENCE_SIZE):
        super().__init__(img_size, ref_size)
        if not float(sigma) >= 0:
            raise ValueError(f"noise sigma must be >= 0 (0-255 units; the paper: 50, 100, 200), got {sigma}")
        self.sigma, self.clip = float(sigma), bool(clip)
        self.r_max = self.img_size / 2.0

    def std_map(self, height: int, width: int, device=None) -> torch.Tensor:
        """Eq. 2's standard deviation in [0, 1] intensity units, (H, W)."""
        return noise_std_map(height, width, self.sigma / 255.0, self.r_max * height / self.img_size, device)

    def add_noise(self, x: torch.Tensor) -> torch.Tensor:
        std = self.std_map(x.shape[-2], x.shape[-1], x.device).to(x.dtype)
        noisy = x + torch.randn_like(x) * std
        return noisy.clamp(0.0, 1.0) if self.clip else noisy

    def prepare(self, x):
        noisy = self.add_noise(x)
        return noisy, noisy

    def describe(self):
        return {"method": self.name, "sigma": self.sigma}


class _MaskBase(Suppression):
    """Loss masking (Eq. 3): the target is the image, the pixel losses are weighted."""

    def radii(self, n: int, representation: torch.Tensor) -> torch.Tensor:
        """r_max in pixels of this image size, (n,)."""
        raise NotImplementedError

    def weights(self, target, representation):
        r = self.radii(target.shape[0], representation).to(target.device)
        self.last_radii = r.detach()
        return mask_weights(target.shape[-2], target.shape[-1], r * target.shape[-1] / self.img_size, target.device)


@SUPPRESSIONS.register("mask_fixed")
class FixedMask(_MaskBase):
    """``r_max = r_fix`` (paper: 50, 90, 126 px)."""

    name = "mask_fixed"

    def __init__(self, img_size: int, radius: float = 90.0, ref_size: int = REFERENCE_SIZE):
        super().__init__(img_size, ref_size)
        if not float(radius) > 0:
            raise ValueError(f"radius must be > 0 paper px (the paper: 50, 90, 126), got {radius}")
        self.radius = float(radius)

    def radii(self, n, representation):
        return torch.full((n,), self.px(self.radius))

    def describe(self):
        return {"method": self.name, "radius": self.radius}


@SUPPRESSIONS.register("mask_sampled")
class SampledMask(_MaskBase):
    """``r_max ~ N(mu_r, sigma_r^2)``, one draw per batch (paper: mu_r 50/90/126, sigma_r 20),
    floored at 1 paper px (a negative radius has no meaning)."""

    name = "mask_sampled"

    def __init__(self, img_size: int, radius: float = 50.0, radius_std: float = 20.0, ref_size: int = REFERENCE_SIZE):
        super().__init__(img_size, ref_size)
        if not float(radius) > 0 or not float(radius_std) >= 0:
            raise ValueError(f"mask_sampled needs radius > 0 and radius_std >= 0 paper px, got {radius}, {radius_std}")
        self.radius, self.radius_std = float(radius), float(radius_std)

    def radii(self, n, representation):
        r = max(1.0, float(torch.normal(self.radius, max(self.radius_std, 1e-12), size=())))
        return torch.full((n,), self.px(r))

    def describe(self):
        return {"method": self.name, "radius": self.radius, "radius_std": self.radius_std}


@SUPPRESSIONS.register("mask_learned")
class LearnedMask(_MaskBase):
    """A two-layer head maps the (detached) representation to mu and sigma of r_max; a
    reparameterised sample ``mu + sigma * eps`` per image is the radius, so the head learns through
    the mask. Radii are in units of the half patch (1.0 = 128 paper px) inside the head.

    Without a penalty the masked loss is smallest for r -> 0 (the paper's trivial optimum).
    ``radius_penalty`` (lambda) adds ``lambda * mean(relu(r_min - r) / r_min)`` with ``r_min =
    radius_min`` paper px: a hinge that makes radii below r_min cost more than they save.
    The representation is detached: the radius objective trains the head only, never the encoder.
    """

    name = "mask_learned"

    def __init__(self, img_size: int, latent_dim: int, radius_penalty: float = 0.0, radius_min: float = 50.0,
                 hidden: int = 64, ref_size: int = REFERENCE_SIZE):
        super().__init__(img_size, ref_size)
        if not float(radius_penalty) >= 0 or not float(radius_min) > 0:
            raise ValueError(f"radius_penalty must be >= 0 and radius_min > 0, got {radius_penalty}, {radius_min}")
        self.radius_penalty, self.radius_min = float(radius_penalty), float(radius_min)
        self.half = ref_size / 2.0  # paper px per head unit
        self.head = nn.Sequential(nn.Linear(int(latent_dim), int(hidden)), nn.ReLU(), nn.Linear(int(hidden), 2))
        with torch.no_grad():  # start at mu ~ 0.7 half patch (90 paper px), sigma ~ 0.1 (13 px)
            self.head[-1].weight.mul_(0.01)
            self.head[-1].bias.copy_(torch.tensor([_softplus_inv(0.7), _softplus_inv(0.1)]))
        self._last_r: torch.Tensor | None = None

    def distribution(self, representation: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mu, sigma) of r_max in paper pixels, (N,) each."""
        out = self.head(representation.detach().float())
        return F.softplus(out[:, 0]) * self.half, F.softplus(out[:, 1]) * self.half

    def radii(self, n, representation):
        mu, sigma = self.distribution(representation)
        r = mu + sigma * torch.randn_like(mu) if self.training else mu
        self._last_r = r
        return r * self.scale

    def penalty(self):
        if self._last_r is None or self.radius_penalty == 0.0:
            return None
        return self.radius_penalty * torch.relu(self.radius_min - self._last_r).div(self.radius_min).mean()

    def describe(self):
        return {"method": self.name, "radius_penalty": self.radius_penalty, "radius_min": self.radius_min}


@SUPPRESSIONS.register("crop")
class RandomCrop(Suppression):
    """Smaller patches (Sec. 3.3): a ``crop_size`` crop (paper: 88 small, 172 medium) whose centre
    is shifted from the patch centre by ``r_offset ~ |N(0, offset_std^2)|`` (paper: 0, 5, 15 px) in
    a uniform direction ``alpha ~ U[0, 2 pi)``. Crops are kept inside the patch by clamping their
    corner. Evaluation takes the centre crop.

    Written here because torchvision's RandomCrop draws the corner uniformly; the folded-Gaussian
    offset is the method."""

    name = "crop"

    def __init__(self, img_size: int, crop_size: float = 172.0, offset_std: float = 5.0,
                 ref_size: int = REFERENCE_SIZE):
        super().__init__(img_size, ref_size)
        size = int(round(self.px(crop_size)))
        if not 8 <= size <= self.img_size:
            raise ValueError(f"crop_size {crop_size} paper px is {size} px at {self.img_size} px; it must lie in "
                             f"[8, {self.img_size}] px (raise img_size or crop_size)")
        if not float(offset_std) >= 0:
            raise ValueError(f"offset_std must be >= 0 paper px, got {offset_std}")
        self.crop_size, self.offset_std, self.size = float(crop_size), float(offset_std), size
        self.last_offsets: torch.Tensor | None = None

    @property
    def input_size(self) -> int:
        return self.size

    def sample_offsets(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """(n, 2) centre offsets (dy, dx) in pixels of this image size."""
        alpha = torch.rand(n, generator=generator) * (2 * math.pi)
        r = torch.randn(n, generator=generator).abs() * self.px(self.offset_std)
        return torch.stack([r * torch.sin(alpha), r * torch.cos(alpha)], dim=1)

    def crop(self, x: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        """Crops of side ``self.size`` centred at the patch centre + ``offsets`` (rounded to pixels)."""
        n, _, h, w = x.shape
        c = self.size
        top = torch.round((h - c) / 2.0 + offsets[:, 0]).long().clamp(0, h - c).to(x.device)
        left = torch.round((w - c) / 2.0 + offsets[:, 1]).long().clamp(0, w - c).to(x.device)
        ar = torch.arange(c, device=x.device)
        rows, cols = (top[:, None] + ar)[:, :, None], (left[:, None] + ar)[:, None, :]
        idx = torch.arange(n, device=x.device)[:, None, None]
        return x.permute(0, 2, 3, 1)[idx, rows, cols].permute(0, 3, 1, 2).contiguous()

    def prepare(self, x):
        self.last_offsets = self.sample_offsets(x.shape[0])
        out = self.crop(x, self.last_offsets)
        return out, out

    def eval_view(self, x):
        return self.crop(x, torch.zeros(x.shape[0], 2))

    def describe(self):
        return {"method": self.name, "crop_size": self.crop_size, "offset_std": self.offset_std}


def _softplus_inv(y: float) -> float:
    return math.log(math.expm1(y))


def create_suppression(name: str, img_size: int, **params: Any) -> Suppression:
    """The method registered as ``name`` with its parameters (unknown ones name the accepted)."""
    import inspect

    cls = SUPPRESSIONS.get(name)
    accepted = [p for p in inspect.signature(cls).parameters if p not in ("img_size", "ref_size")]
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise ValueError(f"suppression {name!r} does not take {unknown}; it accepts: {', '.join(accepted) or 'nothing'}")
    return cls(img_size=img_size, **params)
