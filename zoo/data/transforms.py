"""Training and evaluation transforms (torchvision.transforms.v2).

Both pipelines take a PIL image or a uint8 CHW tensor (``tv_tensors.Image``) and return a
normalised float tensor; a ``tv_tensors.Mask`` passed alongside goes through the same geometric
transforms (and is left alone by the colour ones). ``eval_transform`` is the one preprocessing
the pyfunc model reuses, so training and serving see identical pixels.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F
from torchvision import tv_tensors
from torchvision.transforms import v2

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# Defaults for train_transform(**aug); the keys are the accepted keyword arguments.
AUGMENT_DEFAULTS: dict = {
    "rotate": 180.0,          # any angle: cells on a smear have no orientation
    "hflip": 0.5,
    "vflip": 0.5,
    "translate": 0.05,        # fraction of the patch
    "shear": 5.0,             # degrees
    "scale": (0.95, 1.05),
    "brightness": 0.1,
    "contrast": 0.1,
    "saturation": 0.1,
    "hue": 0.0,               # off: RGB->HSV costs more than the rest of the pipeline together;
                              # stain="macenko" models the colour variation that matters
    "stain": None,            # None, "macenko" (torchstain), or a callable on uint8 CHW tensors
    "stain_p": 0.5,
}

# The geometric augmentation of the ResNeXt paper (004, Methods): rotation by any angle, h/v
# flips, shifts up to 25 % of the patch, shears "up to 20 % of the image size" (a shear factor of
# 0.2 = atan(0.2) = 11.3 degrees); no scaling, no colour jitter (its colour augmentation is the
# stain perturbation: pass stain=zoo.data.stain.tellez_stain_jitter()).
MATEK_AUGMENT: dict = {"rotate": 180.0, "hflip": 0.5, "vflip": 0.5, "translate": 0.25,
                       "shear": math.degrees(math.atan(0.2)), "scale": None, "brightness": 0.0,
                       "contrast": 0.0, "saturation": 0.0, "hue": 0.0}


def eval_transform(img_size: int) -> v2.Compose:
    """Whole patch resized to ``img_size`` x ``img_size`` (no crop: the cell fills the patch),
    float in [0, 1], ImageNet normalisation."""
    return v2.Compose([
        v2.ToImage(),
        v2.Resize((int(img_size), int(img_size)), antialias=True),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(IMAGENET_MEAN, IMAGENET_STD),
    ])


def train_transform(img_size: int, **aug) -> v2.Compose:
    """Resize, then rotation by any angle, affine shift/shear/scale, flips, colour jitter and an
    optional stain augmentation, then the evaluation's dtype/normalisation.

    Rotation, shift, shear and scale are one warp that reflects at the border (see
    :class:`RandomAffineReflect`). Set any augmentation to 0/None to switch it off."""
    unknown = set(aug) - set(AUGMENT_DEFAULTS)
    if unknown:
        raise TypeError(f"unknown augmentation(s) {sorted(unknown)}; valid: {sorted(AUGMENT_DEFAULTS)}")
    a = {**AUGMENT_DEFAULTS, **aug}
    size = int(img_size)
    steps: list[Callable] = [v2.ToImage(), v2.Resize((size, size), antialias=True)]
    stain = _stain_step(a["stain"], a["stain_p"])
    if stain is not None:
        steps.append(stain)
    translate = float(a["translate"] or 0.0)
    shear = float(a["shear"] or 0.0)
    scale = tuple(a["scale"]) if a["scale"] else None
    if a["rotate"] or translate or shear or scale:
        steps.append(RandomAffineReflect(degrees=float(a["rotate"] or 0.0), translate=translate, shear=shear,
                                         scale=scale))
    if a["hflip"]:
        steps.append(v2.RandomHorizontalFlip(float(a["hflip"])))
    if a["vflip"]:
        steps.append(v2.RandomVerticalFlip(float(a["vflip"])))
    if any(a[k] for k in ("brightness", "contrast", "saturation", "hue")):
        steps.append(v2.ColorJitter(brightness=a["brightness"] or None, contrast=a["contrast"] or None,
                                    saturation=a["saturation"] or None, hue=a["hue"] or None))
    steps += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
    return v2.Compose(steps)


def denormalize(x: torch.Tensor) -> torch.Tensor:
    """Inverse of the normalisation (for plots): float tensor (..., 3, H, W) back to [0, 1]."""
    mean = torch.tensor(IMAGENET_MEAN, dtype=x.dtype, device=x.device).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=x.dtype, device=x.device).view(3, 1, 1)
    return (x * std + mean).clamp(0, 1)


def _stain_step(stain, p: float):
    if stain is None or stain is False:
        return None
    if callable(stain):
        return _ImageOnly(stain, p)
    if stain == "macenko":
        from .stain import MacenkoStainJitter

        return _ImageOnly(MacenkoStainJitter(), p)
    raise ValueError(f"stain augmentation must be None, 'macenko' or a callable, got {stain!r}")


class _ImageOnly(v2.Transform):
    """Apply ``fn`` (uint8 CHW tensor -> uint8 CHW tensor) to images with probability ``p``;
    masks and labels pass through unchanged."""

    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor], p: float = 0.5):
        super().__init__()
        self.fn, self.p = fn, float(p)

    def make_params(self, flat_inputs):
        return {"apply": torch.rand(()) < self.p}

    def transform(self, inpt, params):
        if not params["apply"] or not isinstance(inpt, tv_tensors.Image):
            return inpt
        return tv_tensors.wrap(self.fn(inpt.as_subclass(torch.Tensor)), like=inpt)


class RandomAffineReflect(v2.Transform):
    """Random rotation (any angle up to ``degrees``), shift (fraction of the patch), shear and
    scale in *one* warp whose out-of-patch samples are mirrored back in.

    Written here because torchvision's affine transforms only fill with a constant colour, and
    black or white corners on every rotated cell are a cue the network can learn; padding by
    reflection first and cropping afterwards works with torchvision but warps twice the pixels,
    which was the most expensive step of the pipeline. ``torch.nn.functional.grid_sample`` has
    the reflection border built in. Images are resampled bilinearly, ``tv_tensors.Mask`` with
    nearest neighbour (same parameters, so masks stay aligned); other inputs pass through.
    """

    def __init__(self, degrees: float = 180.0, translate: float = 0.0, shear: float = 0.0,
                 scale: tuple[float, float] | None = None):
        super().__init__()
        self.degrees, self.translate, self.shear, self.scale = float(degrees), float(translate), float(shear), scale

    def make_params(self, flat_inputs):
        def uniform(lo, hi):
            return float(torch.empty(()).uniform_(lo, hi)) if hi > lo else float(lo)

        angle = math.radians(uniform(-self.degrees, self.degrees))
        shx, shy = (math.radians(uniform(-self.shear, self.shear)) for _ in range(2))
        s = uniform(*self.scale) if self.scale else 1.0
        # forward map in normalised coordinates ([-1, 1], square patch): x' = A x + t
        rot = torch.tensor([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
        a = rot @ torch.tensor([[1.0, math.tan(shx)], [math.tan(shy), 1.0]]) * s
        t = torch.tensor([uniform(-self.translate, self.translate), uniform(-self.translate, self.translate)]) * 2
        inv = torch.linalg.inv(a)
        return {"theta": torch.cat([inv, (-inv @ t)[:, None]], dim=1)}  # output -> input, as affine_grid wants

    def transform(self, inpt, params):
        if not isinstance(inpt, (tv_tensors.Image, tv_tensors.Mask)):
            return inpt
        x = inpt.as_subclass(torch.Tensor)
        dtype = x.dtype
        batch = x.reshape(-1, *x.shape[-3:]).float()
        grid = F.affine_grid(params["theta"][None].expand(batch.shape[0], 2, 3).to(batch.device),
                             list(batch.shape), align_corners=False)
        mode = "nearest" if isinstance(inpt, tv_tensors.Mask) else "bilinear"
        out = F.grid_sample(batch, grid, mode=mode, padding_mode="reflection", align_corners=False)
        if not dtype.is_floating_point:
            out = out.round_().clamp_(0, torch.iinfo(dtype).max)
        return tv_tensors.wrap(out.to(dtype).reshape(x.shape), like=inpt)
