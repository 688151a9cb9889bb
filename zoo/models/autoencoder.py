"""Autoencoders of the surrounding-cell-suppression paper (``002``): VAE-256 and RAE-1024.

```python
from zoo.models.autoencoder import create_autoencoder
vae = create_autoencoder("vae256", img_size=64)          # ResNet-18 encoder, 256-d Gaussian latent
out = vae(x)                                             # AEOutput(recon in [0, 1], z, mu, logvar)
rep = vae.represent(x)                                   # (N, 256): the posterior mean
rae = create_autoencoder("rae1024", img_size=64)         # deterministic, 1024-d latent
```

* Encoder: a :class:`zoo.models.Encoder` (timm backbone, pooled features, linear head) whose head
  gives ``2 * latent`` numbers (mean and log-variance) for the VAE, ``latent`` for the RAE. Reusing
  the zoo's encoder means the backbone's weights have the same keys as every supervised family's:
  ``backbone_state_dict()`` is a checkpoint ``create_encoder(pretrained=...)`` loads directly.
* Decoder (paper Sec. 3.4): a linear map of the latent onto a ``C x s0 x s0`` grid
  (``s0 = ceil(size / 16)``), then four blocks *bilinear upsampling x2 -> transposed convolution*,
  ReLU between blocks and a sigmoid at the end. When ``size`` is not a multiple of 16 (crop
  inputs: 88/256 of a 64 px patch is 22 px) the logits are resized bilinearly to ``size``.
* RAE-1024: the paper's "simple residual auto-encoder with a ResNet-18 encoder": the same encoder
  and decoder, a deterministic 1024-d code and no KL term ("residual" names the ResNet encoder).

The input size follows the data (the paper: 256 px; the CPU preset 64 px). Architectures are
registered in ``AUTOENCODERS`` (one decorated function each).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from zoo.registry import Registry

from .encoder import Encoder, create_encoder

AUTOENCODERS: Registry = Registry("autoencoder architecture")

DEFAULT_DECODER_CHANNELS = (128, 64, 32, 16)


@dataclass
class AEOutput:
    """What an autoencoder's forward returns. ``recon``: (N, 3, S, S) in [0, 1]; ``z``: the code the
    decoder saw (a posterior sample for the VAE in training, the mean in eval mode); ``mu``: the
    representation; ``logvar``: None for deterministic autoencoders."""

    recon: torch.Tensor
    z: torch.Tensor
    mu: torch.Tensor
    logvar: torch.Tensor | None


class ShallowDecoder(nn.Module):
    """latent -> Linear -> (C0, s0, s0) -> 4 x [bilinear up x2 -> ConvTranspose2d 3x3] -> sigmoid."""

    def __init__(self, latent_dim: int, img_size: int, channels: Sequence[int] = DEFAULT_DECODER_CHANNELS):
        super().__init__()
        channels = tuple(int(c) for c in channels)
        if len(channels) != 4:
            raise ValueError(f"the shallow decoder has four blocks: give 4 channel widths, got {channels}")
        self.img_size = int(img_size)
        self.s0 = max(1, math.ceil(self.img_size / 16))
        self.channels = channels
        self.fc = nn.Linear(int(latent_dim), channels[0] * self.s0 * self.s0)
        outs = channels[1:] + (3,)
        blocks: list[nn.Module] = []
        for i, (cin, cout) in enumerate(zip(channels, outs)):
            blocks += [nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
                       nn.ConvTranspose2d(cin, cout, kernel_size=3, padding=1)]
            if i < 3:
                blocks.append(nn.ReLU(inplace=True))
        self.blocks = nn.Sequential(*blocks)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.fc(z)).view(z.shape[0], self.channels[0], self.s0, self.s0)
        logits = self.blocks(h)
        if logits.shape[-1] != self.img_size:
            logits = F.interpolate(logits, size=(self.img_size, self.img_size), mode="bilinear", align_corners=False)
        return torch.sigmoid(logits)


class Autoencoder(nn.Module):
    """Encoder (zoo :class:`Encoder`) + :class:`ShallowDecoder`; ``variational`` adds the Gaussian
    latent (reparameterised sample in training, the mean in eval mode)."""

    def __init__(
        self,
        arch: str,
        latent_dim: int,
        variational: bool,
        img_size: int,
        backbone: str = "resnet18",
        decoder_channels: Sequence[int] = DEFAULT_DECODER_CHANNELS,
        pretrained: Any = None,
    ):
        super().__init__()
        if int(img_size) < 8:
            raise ValueError(f"img_size must be >= 8 px, got {img_size}")
        if int(latent_dim) < 1:
            raise ValueError(f"latent_dim must be >= 1, got {latent_dim}")
        self.arch, self.latent_dim, self.variational = str(arch), int(latent_dim), bool(variational)
        self.img_size, self.backbone_name = int(img_size), str(backbone)
        self.decoder_channels = tuple(int(c) for c in decoder_channels)
        self.encoder: Encoder = create_encoder(backbone, embedding_dim=self.latent_dim * (2 if variational else 1),
                                               dropout=0.0, pretrained=pretrained)
        self.decoder = ShallowDecoder(self.latent_dim, self.img_size, self.decoder_channels)

    @property
    def config(self) -> dict[str, Any]:
        return {"arch": self.arch, "latent_dim": self.latent_dim, "variational": self.variational,
                "img_size": self.img_size, "backbone": self.backbone_name,
                "decoder_channels": list(self.decoder_channels)}

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> "Autoencoder":
        known = {"arch", "latent_dim", "variational", "img_size", "backbone", "decoder_channels"}
        unknown = set(config) - known
        if unknown:
            raise ValueError(f"unknown autoencoder config keys {sorted(unknown)}; expected {sorted(known)}")
        return cls(**dict(config))

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(mu, logvar) of the posterior (logvar None for deterministic autoencoders)."""
        h = self.encoder(x).float()
        if not self.variational:
            return h, None
        mu, logvar = h.chunk(2, dim=1)
        return mu, logvar.clamp(-30.0, 20.0)  # keeps exp() finite for a diverging batch

    def represent(self, x: torch.Tensor) -> torch.Tensor:
        """The representation used downstream: the posterior mean (deterministic, so a cell always
        gets the same vector; the paper used a posterior sample)."""
        return self.encode(x)[0]

    def forward(self, x: torch.Tensor) -> AEOutput:
        mu, logvar = self.encode(x)
        z = mu
        if self.variational and self.training:
            z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        return AEOutput(recon=self.decoder(z), z=z, mu=mu, logvar=logvar)

    def backbone_state_dict(self) -> dict[str, torch.Tensor]:
        """The encoder's timm backbone weights (plain timm keys): a checkpoint any zoo
        ``create_encoder(backbone, pretrained=<file>)`` loads."""
        return {k: v.detach().cpu().contiguous() for k, v in self.encoder.backbone.state_dict().items()}


@AUTOENCODERS.register("vae256")
def vae256(img_size: int, backbone: str = "resnet18", pretrained: Any = None, **kw: Any) -> Autoencoder:
    """The paper's VAE: ResNet-18 encoder, 256-d Gaussian latent, shallow decoder."""
    return Autoencoder("vae256", 256, True, img_size, backbone, pretrained=pretrained, **kw)


@AUTOENCODERS.register("rae1024")
def rae1024(img_size: int, backbone: str = "resnet18", pretrained: Any = None, **kw: Any) -> Autoencoder:
    """The paper's RAE-1024 baseline: deterministic 1024-d code, same encoder and decoder."""
    return Autoencoder("rae1024", 1024, False, img_size, backbone, pretrained=pretrained, **kw)


def create_autoencoder(arch: str, img_size: int, backbone: str = "resnet18", pretrained: Any = None,
                       **kw: Any) -> Autoencoder:
    """Build the architecture registered as ``arch`` (``vae256`` | ``rae1024``)."""
    return AUTOENCODERS.get(arch)(img_size=img_size, backbone=backbone, pretrained=pretrained, **kw)
