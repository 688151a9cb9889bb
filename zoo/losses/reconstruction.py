"""Reconstruction loss of the autoencoder family: (weighted) L1 + beta * KL.

```python
from zoo.losses.reconstruction import ReconstructionLoss
loss = ReconstructionLoss(beta=1.0)
value = loss(recon, target, mu, logvar, weights=None)    # weights: (N, 1, H, W) loss mask or None
loss.terms                                               # {"l1": ..., "kl": ...} of the last call
```

* L1 term: the pixel-wise ``|recon - target|`` multiplied element-wise by ``weights`` (the loss mask
  of Eq. 3 of paper ``002``) and aggregated by the mean over all pixels and channels, as Eq. 3 says
  (``normalize="mean"``). ``normalize="weights"`` divides by the mean weight instead, which keeps
  the balance against the KL term independent of the mask radius (a radius-50 mask at 256 px keeps
  only ~2.4 % of the weight of an unmasked image).
* KL term: ``KL(N(mu, sigma^2) || N(0, I))`` summed over latent dimensions, averaged over the batch
  and divided by the number of pixel values ``C*H*W``: with ``beta = 1`` this is exactly the
  balance of the per-image ELBO (sum of pixel L1 + KL) expressed per pixel, independent of the
  image size. ``logvar=None`` (deterministic autoencoders) has no KL term.

Not an embedding loss (it does not take ``(embeddings, labels)``), so it is not in ``LOSSES``.
"""

from __future__ import annotations

import torch
from torch import nn

NORMALIZE = ("mean", "weights")


class ReconstructionLoss(nn.Module):
    def __init__(self, beta: float = 1.0, normalize: str = "mean"):
        super().__init__()
        if not float(beta) >= 0.0:
            raise ValueError(f"beta (KL weight) must be >= 0, got {beta}")
        if normalize not in NORMALIZE:
            raise ValueError(f"normalize must be one of {', '.join(NORMALIZE)}, got {normalize!r}")
        self.beta, self.normalize = float(beta), normalize
        self.terms: dict[str, float] = {}

    @staticmethod
    def kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        """Per-sample KL divergence to the standard normal, (N,)."""
        return -0.5 * torch.sum(1.0 + logvar - mu.pow(2) - logvar.exp(), dim=1)

    def l1(self, recon: torch.Tensor, target: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
        """Masked L1 of Eq. 3, aggregated as configured (a scalar)."""
        if recon.shape != target.shape:
            raise ValueError(f"reconstruction {tuple(recon.shape)} and target {tuple(target.shape)} differ in shape")
        err = (recon.float() - target.float()).abs()
        if weights is None:
            return err.mean()
        weights = weights.float()
        if weights.dim() != 4 or weights.shape[0] not in (1, err.shape[0]) or weights.shape[-2:] != err.shape[-2:]:
            raise ValueError(f"weights must be (N or 1, 1 or C, H, W) matching {tuple(err.shape)}, "
                             f"got {tuple(weights.shape)}")
        value = (err * weights).mean()
        if self.normalize == "weights":
            value = value / weights.expand_as(err).mean().clamp_min(1e-8)
        return value

    def forward(self, recon: torch.Tensor, target: torch.Tensor, mu: torch.Tensor | None = None,
                logvar: torch.Tensor | None = None, weights: torch.Tensor | None = None) -> torch.Tensor:
        l1 = self.l1(recon, target, weights)
        self.terms = {"l1": float(l1.detach())}
        if logvar is None or mu is None:
            return l1
        kl = self.kl(mu.float(), logvar.float()).mean() / float(target[0].numel())
        self.terms["kl"] = float(kl.detach())
        return l1 + self.beta * kl
