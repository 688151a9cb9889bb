"""Augmentation of a whole batch at once, on the training device, inside the training step.

The per-sample pipeline (:func:`zoo.data.transforms.train_transform`) runs a dozen torchvision
calls per image in Python; on two cores that, not the network, bounds an epoch at small image
sizes. Here the decoded uint8 batch ``(N, 3, S, S)`` is augmented with

* **one warp for the batch**: every sample's rotation (any angle), flips, shift, shear and scale
  are folded into its own 2x3 affine matrix, and a single ``affine_grid``/``grid_sample`` call
  resamples all of them (reflection at the border, as :class:`~zoo.data.transforms.RandomAffineReflect`),
* **colour jitter on the batch**: brightness, contrast and saturation factors drawn per sample
  and applied as broadcast tensor ops,

then converted to float and normalised like :func:`~zoo.data.transforms.eval_transform`.

Why by hand: torchvision's v2 transforms draw *one* set of parameters per call, so on a batch
every image would get the same rotation; kornia.augmentation does per-sample batched warps but
would be one more dependency for what is two torch calls (affine_grid, grid_sample) and three
blends. The matrices use the same convention as ``RandomAffineReflect`` (forward map
``x' = A x + t`` in normalised coordinates, ``affine_grid`` given the inverse), so a sample
warped here and the same image warped by the per-sample transform with the same parameters are
identical (tested on a marker image).

Hue and stain (Macenko) augmentation are per-image algorithms; datasets that ask for them keep the
per-sample pipeline (see :func:`supports`).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .transforms import AUGMENT_DEFAULTS, IMAGENET_MEAN, IMAGENET_STD

# Augmentations the batched path implements; anything else set (hue, stain) needs per-sample.
BATCH_KEYS = ("rotate", "hflip", "vflip", "translate", "shear", "scale", "brightness", "contrast", "saturation")


def supports(augment: dict | None) -> bool:
    """True when every augmentation asked for in ``augment`` has a batched implementation."""
    a = {**AUGMENT_DEFAULTS, **(augment or {})}
    return not a.get("hue") and a.get("stain") in (None, False)


def affine_theta(angle: torch.Tensor, shear_x: torch.Tensor, shear_y: torch.Tensor, scale: torch.Tensor,
                 tx: torch.Tensor, ty: torch.Tensor, flip_x: torch.Tensor | None = None,
                 flip_y: torch.Tensor | None = None) -> torch.Tensor:
    """(N, 2, 3) ``affine_grid`` matrices (output -> input) for per-sample parameters (N,) each.

    Angles in radians; ``tx``, ``ty`` in normalised units ([-1, 1] spans the patch); ``flip_x``
    and ``flip_y`` are booleans (mirror left-right / top-bottom after the affine map). The forward
    map is ``x' = F (R Sh s) x + F t``: flips last, as in the per-sample pipeline."""
    cos, sin = torch.cos(angle), torch.sin(angle)
    rot = torch.stack([torch.stack([cos, -sin], -1), torch.stack([sin, cos], -1)], -2)
    one = torch.ones_like(angle)
    shear = torch.stack([torch.stack([one, torch.tan(shear_x)], -1), torch.stack([torch.tan(shear_y), one], -1)], -2)
    a = rot @ shear * scale[:, None, None]
    t = torch.stack([tx, ty], -1)
    if flip_x is not None or flip_y is not None:
        fx = 1.0 - 2.0 * (flip_x.to(angle.dtype) if flip_x is not None else torch.zeros_like(angle))
        fy = 1.0 - 2.0 * (flip_y.to(angle.dtype) if flip_y is not None else torch.zeros_like(angle))
        f = torch.diag_embed(torch.stack([fx, fy], -1))
        a, t = f @ a, (f @ t[..., None])[..., 0]
    inv = torch.linalg.inv(a)
    return torch.cat([inv, -(inv @ t[..., None])], dim=2)


def warp(images: torch.Tensor, theta: torch.Tensor, mode: str = "bilinear") -> torch.Tensor:
    """Resample float ``images`` (N, C, H, W) with per-sample ``theta`` (N, 2, 3), reflecting at
    the border (no constant-colour corners for the network to learn)."""
    grid = F.affine_grid(theta.to(images.dtype), list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode=mode, padding_mode="reflection", align_corners=False)


class BatchAugment(nn.Module):
    """uint8 batch ``(N, 3, S, S)`` (optionally with uint8 masks ``(N, 1, S, S)``) -> augmented,
    normalised float32 batch (and the masks warped alike, nearest neighbour, still uint8).

    Keyword arguments as :data:`zoo.data.transforms.AUGMENT_DEFAULTS` (``hue`` and ``stain`` must
    be off: see :func:`supports`). ``generator``: a torch.Generator on the batch's device for the
    parameter draws (default: the global RNG, so ``seed_everything`` makes a run reproducible).
    In ``eval()`` mode only the conversion and normalisation are applied."""

    def __init__(self, **augment: Any) -> None:
        super().__init__()
        unknown = set(augment) - set(AUGMENT_DEFAULTS)
        if unknown:
            raise TypeError(f"unknown augmentation(s) {sorted(unknown)}; valid: {sorted(AUGMENT_DEFAULTS)}")
        if not supports(augment):
            raise ValueError("BatchAugment has no batched hue or stain augmentation; use the per-sample "
                             "pipeline (zoo.data.transforms.train_transform, batch_augment=False) for those")
        a = {**AUGMENT_DEFAULTS, **augment}
        self.rotate = math.radians(float(a["rotate"] or 0.0))
        self.hflip, self.vflip = float(a["hflip"] or 0.0), float(a["vflip"] or 0.0)
        self.translate, self.shear = float(a["translate"] or 0.0), math.radians(float(a["shear"] or 0.0))
        self.scale = tuple(float(s) for s in a["scale"]) if a["scale"] else (1.0, 1.0)
        self.brightness, self.contrast = float(a["brightness"] or 0.0), float(a["contrast"] or 0.0)
        self.saturation = float(a["saturation"] or 0.0)
        self.generator: torch.Generator | None = None
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    @property
    def geometric(self) -> bool:
        return bool(self.rotate or self.hflip or self.vflip or self.translate or self.shear
                    or self.scale != (1.0, 1.0))

    def _uniform(self, n: int, lo: float, hi: float, device) -> torch.Tensor:
        if hi <= lo:
            return torch.full((n,), float(lo), device=device)
        return torch.rand(n, device=device, generator=self.generator) * (hi - lo) + lo

    def sample_theta(self, n: int, device: torch.device | str = "cpu") -> torch.Tensor:
        """(n, 2, 3) random warps (rotation, shear, scale, shift, flips) for one batch."""
        u = self._uniform
        flip_x = torch.rand(n, device=device, generator=self.generator) < self.hflip
        flip_y = torch.rand(n, device=device, generator=self.generator) < self.vflip
        return affine_theta(u(n, -self.rotate, self.rotate, device), u(n, -self.shear, self.shear, device),
                            u(n, -self.shear, self.shear, device), u(n, *self.scale, device),
                            u(n, -self.translate, self.translate, device) * 2,
                            u(n, -self.translate, self.translate, device) * 2, flip_x, flip_y)

    def jitter(self, x: torch.Tensor) -> torch.Tensor:
        """Brightness, contrast, saturation on float images in [0, 1], factors drawn per sample
        (torchvision's ColorJitter definitions: scale; blend with the mean grey; blend with grey)."""
        n = x.shape[0]

        def factor(strength: float) -> torch.Tensor:
            return self._uniform(n, max(0.0, 1 - strength), 1 + strength, x.device).view(n, 1, 1, 1)

        if self.brightness:
            x = (x * factor(self.brightness)).clamp_(0, 1)
        if self.contrast or self.saturation:
            weights = torch.tensor((0.299, 0.587, 0.114), device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
            if self.contrast:
                grey_mean = (x * weights).sum(1, keepdim=True).mean((2, 3), keepdim=True)
                f = factor(self.contrast)
                x = (f * x + (1 - f) * grey_mean).clamp_(0, 1)
            if self.saturation:
                grey = (x * weights).sum(1, keepdim=True)
                f = factor(self.saturation)
                x = (f * x + (1 - f) * grey).clamp_(0, 1)
        return x

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (or float in [0, 1]) -> float32 normalised like ``eval_transform``."""
        x = images.float() / 255.0 if not images.dtype.is_floating_point else images.float()
        return (x - self.mean.to(x.device)) / self.std.to(x.device)

    def forward(self, images: torch.Tensor, masks: torch.Tensor | None = None,
                theta: torch.Tensor | None = None):
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"BatchAugment expects a (N, 3, H, W) batch, got shape {tuple(images.shape)}")
        if not self.training:
            out = self.normalize(images)
            return out if masks is None else (out, masks)
        x = images.float() / 255.0 if not images.dtype.is_floating_point else images.float()
        if theta is None and self.geometric:
            theta = self.sample_theta(x.shape[0], x.device)
        if theta is not None:
            x = warp(x, theta).clamp_(0, 1)
            if masks is not None:
                masks = warp(masks.float(), theta, mode="nearest").round_().clamp_(0, 255).to(masks.dtype)
        x = self.jitter(x)
        out = (x - self.mean.to(x.device)) / self.std.to(x.device)
        return out if masks is None else (out, masks)

    def extra_repr(self) -> str:
        return (f"rotate={math.degrees(self.rotate):g}, hflip={self.hflip}, vflip={self.vflip}, "
                f"translate={self.translate}, shear={math.degrees(self.shear):g}, scale={self.scale}, "
                f"brightness={self.brightness}, contrast={self.contrast}, saturation={self.saturation}")
