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


# Tellez et al. 2018 (IEEE TMI 37:2126, the perturbation 004 cites): each stain concentration
# C_i -> a_i * C_i + b_i with a_i ~ U(1 - s, 1 + s), b_i ~ U(-s, s); s = 0.05 is their setting as
# we read it ("HED-light" in Tellez et al. 2019). torchstain's Macenko augmentor draws exactly
# this with sigma1 = sigma2 = s, on the Macenko decomposition 004 uses instead of HED.
TELLEZ_STRENGTH = 0.05


def tellez_stain_jitter(strength: float = TELLEZ_STRENGTH) -> MacenkoStainJitter:
    """The Tellez et al. perturbation of the Macenko stain concentrations (see above)."""
    if not 0.0 <= float(strength) < 1.0:
        raise ValueError(f"stain strength must be in [0, 1), got {strength}")
    return MacenkoStainJitter(sigma1=float(strength), sigma2=float(strength))


class MacenkoStainNormalizer:
    """Callable on a uint8 CHW RGB tensor mapping its stains onto a reference image's (Macenko,
    torchstain). ``fit(reference)`` learns the reference stain matrix and concentration scale;
    ``state`` / ``from_state`` carry them as plain lists, so a model artifact stores them as JSON.
    Patches whose decomposition fails are returned unchanged (as :class:`MacenkoStainJitter`)."""

    def __init__(self, Io: int = 240, beta: float = 0.15):
        self.Io, self.beta = Io, beta
        self.stain_matrix_: list[list[float]] | None = None
        self.max_concentrations_: list[float] | None = None

    def fit(self, reference: torch.Tensor) -> "MacenkoStainNormalizer":
        import torchstain

        norm = torchstain.normalizers.MacenkoNormalizer(backend="torch")
        norm.fit(_chw_uint8(reference), Io=self.Io, beta=self.beta)
        self.stain_matrix_ = norm.HERef.tolist()
        self.max_concentrations_ = norm.maxCRef.tolist()
        return self

    @property
    def state(self) -> dict:
        if self.stain_matrix_ is None:
            raise RuntimeError("MacenkoStainNormalizer is not fitted: call fit(reference_image) first")
        return {"Io": self.Io, "beta": self.beta, "stain_matrix": self.stain_matrix_,
                "max_concentrations": self.max_concentrations_}

    @classmethod
    def from_state(cls, state: dict) -> "MacenkoStainNormalizer":
        out = cls(Io=int(state["Io"]), beta=float(state["beta"]))
        out.stain_matrix_ = [list(map(float, r)) for r in state["stain_matrix"]]
        out.max_concentrations_ = list(map(float, state["max_concentrations"]))
        return out

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        import torchstain

        img = _chw_uint8(img)
        norm = torchstain.normalizers.MacenkoNormalizer(backend="torch")
        norm.HERef = torch.tensor(self.state["stain_matrix"])
        norm.maxCRef = torch.tensor(self.state["max_concentrations"])
        try:
            out, _, _ = norm.normalize(img, Io=self.Io, beta=self.beta, stains=False)
        except (RuntimeError, IndexError, ValueError):  # degenerate decomposition: leave as is
            return img
        if not torch.isfinite(out.float()).all():
            return img
        return out.clamp(0, 255).to(torch.uint8).permute(2, 0, 1).contiguous()


def _chw_uint8(img: torch.Tensor) -> torch.Tensor:
    if img.dtype != torch.uint8 or img.ndim != 3 or img.shape[0] != 3:
        raise ValueError(f"stain methods need a uint8 3xHxW tensor, got {tuple(img.shape)} {img.dtype}")
    return img
