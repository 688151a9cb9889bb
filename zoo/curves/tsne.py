"""Parametric t-SNE (van der Maaten 2009) as a small torch MLP, for SMR's dimension-reduced loss.

The published parametric t-SNE implementations are TensorFlow/Keras code; openTSNE and
scikit-learn only embed a fixed data set (no network that maps new points). So this module is the
few lines the method needs: an MLP ``r: R^D -> R^2`` trained on the t-SNE objective over each
batch — KL(P || Q), with P the symmetrised Gaussian affinities of the batch in the input space
(per-point bandwidth by binary search to the target perplexity) and Q the Student-t affinities of
the outputs.

```python
net = ParametricTSNE(in_dim=256)
kl = net.objective(x)          # x: (N, 256) batch; backward() trains the net
y = net(x)                     # (N, 2)
ParametricTSNE(in_dim=256).fit(X, epochs=50)   # standalone training on an array
```
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm


def joint_probabilities(x: torch.Tensor, perplexity: float = 30.0, n_steps: int = 64) -> torch.Tensor:
    """Symmetric t-SNE input affinities ``P`` (N, N) of a batch (no gradient).

    The perplexity is capped at (N - 1) / 3 so small batches stay well posed."""
    with torch.no_grad():
        x = x.detach().to(torch.float64)
        n = x.shape[0]
        if n < 3:
            raise ValueError(f"t-SNE affinities need at least 3 points per batch, got {n}")
        perplexity = min(float(perplexity), (n - 1) / 3.0)
        d2 = torch.cdist(x, x).pow(2)
        d2.fill_diagonal_(float("inf"))
        target = math.log(perplexity)
        # Binary search on beta = 1 / (2 sigma^2), in log space, for every row at once.
        lo = torch.full((n, 1), -50.0, dtype=x.dtype, device=x.device)
        hi = torch.full((n, 1), 50.0, dtype=x.dtype, device=x.device)
        scale = d2[torch.isfinite(d2)].median().clamp_min(1e-12)
        d2n = d2 / scale  # distances in units of the median: the search range fits any data scale
        for _ in range(n_steps):
            mid = 0.5 * (lo + hi)
            logits = -d2n * mid.exp()
            p = torch.softmax(logits, dim=1)
            entropy = -(p * torch.log(p.clamp_min(1e-300))).sum(1, keepdim=True)
            too_flat = entropy > target  # entropy too high -> increase beta
            lo = torch.where(too_flat, mid, lo)
            hi = torch.where(too_flat, hi, mid)
        p = torch.softmax(-d2n * (0.5 * (lo + hi)).exp(), dim=1)
        joint = (p + p.T) / (2.0 * n)
        return joint.clamp_min(1e-12).to(torch.float32)


def tsne_kl(p: torch.Tensor, y: torch.Tensor, dof: float = 1.0) -> torch.Tensor:
    """KL(P || Q) with Student-t (``dof`` degrees of freedom) output affinities of ``y`` (N, 2)."""
    n = y.shape[0]
    w = (1.0 + torch.cdist(y, y).pow(2) / dof).pow(-(dof + 1.0) / 2.0)
    w = w * (1.0 - torch.eye(n, device=y.device, dtype=y.dtype))
    q = (w / w.sum()).clamp_min(1e-12)
    p = p.to(device=y.device, dtype=y.dtype)
    mask = 1.0 - torch.eye(n, device=y.device, dtype=y.dtype)
    return (mask * p * (torch.log(p) - torch.log(q))).sum()


class ParametricTSNE(nn.Module):
    """MLP ``in_dim -> hidden... -> out_dim`` trained on the t-SNE objective of each batch."""

    def __init__(self, in_dim: int, out_dim: int = 2, hidden: Sequence[int] = (256, 256),
                 perplexity: float = 30.0, dof: float = 1.0) -> None:
        super().__init__()
        if perplexity <= 1:
            raise ValueError(f"perplexity must be > 1, got {perplexity}")
        layers: list[nn.Module] = []
        width = int(in_dim)
        for h in hidden:
            layers += [nn.Linear(width, int(h)), nn.ReLU()]
            width = int(h)
        layers.append(nn.Linear(width, int(out_dim)))
        self.net = nn.Sequential(*layers)
        self.in_dim, self.out_dim = int(in_dim), int(out_dim)
        self.perplexity, self.dof = float(perplexity), float(dof)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def objective(self, x: torch.Tensor) -> torch.Tensor:
        """t-SNE KL of this batch; gradients reach the network only (``x`` is detached)."""
        x = x.detach()
        return tsne_kl(joint_probabilities(x, self.perplexity), self(x), self.dof)

    def frozen(self, x: torch.Tensor) -> torch.Tensor:
        """``r(x)`` with the network's weights treated as constants: gradients reach ``x`` only
        (the SMR loss moves the embeddings in the t-SNE plane without training the map towards
        its targets)."""
        params = {k: v.detach() for k, v in self.named_parameters()}
        return torch.func.functional_call(self, params, (x,))

    @torch.no_grad()
    def transform(self, X: np.ndarray | torch.Tensor, batch_size: int = 4096) -> np.ndarray:
        device = next(self.parameters()).device
        X = torch.as_tensor(np.asarray(X), dtype=torch.float32)
        out = [self(X[i:i + batch_size].to(device)).cpu() for i in range(0, len(X), batch_size)]
        return torch.cat(out).numpy() if out else np.zeros((0, self.out_dim), dtype=np.float32)

    def fit(self, X: np.ndarray, epochs: int = 50, batch_size: int = 256, lr: float = 1e-3, seed: int = 0,
            progress: bool = False) -> "ParametricTSNE":
        """Train on an array alone (the SMR loss instead trains it alongside the encoder)."""
        g = torch.Generator().manual_seed(seed)
        X = torch.as_tensor(np.asarray(X), dtype=torch.float32)
        opt = torch.optim.Adam(self.parameters(), lr=lr)
        self.history_ = []
        for _ in tqdm(range(epochs), desc="parametric t-SNE", disable=not progress):
            perm = torch.randperm(len(X), generator=g)
            total, n = 0.0, 0
            for i in range(0, len(X), batch_size):
                idx = perm[i:i + batch_size]
                if len(idx) < 3:
                    continue
                loss = self.objective(X[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
                total, n = total + float(loss.detach()), n + 1
            self.history_.append(total / max(n, 1))
        return self
