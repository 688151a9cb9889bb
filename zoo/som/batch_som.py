"""Kohonen's batch self-organizing map, vectorized in torch (CPU or CUDA).

Why our own and not a library (measured in ``benchmarks/som_vs_minisom.py``):
* MiniSom (the reference of ``003_*.txt``) loops over samples in Python, in ``train`` and also in
  its ``train_batch_offline`` (the batch algorithm); the thesis estimated 22 days for a 248x248 map.
* torchsom 1.3 is vectorized, but it is a *mini-batch online* SOM (``w += lr/B * sum h (x - w)``),
  not Kohonen's batch algorithm, and its ``fit`` computes quantization *and* topographic error on
  every mini-batch, which dominates its run time.

The batch algorithm per epoch (Kohonen, *Essentials of the SOM*, 2013):
1. every sample's best-matching unit (BMU), in chunks: ``|x|^2 - 2 x.W^T + |w|^2`` (one matmul);
2. per node: sum of its samples ``S_j`` and their count ``n_j`` (``index_add``/``bincount``);
3. ``w_i <- sum_j h_ij S_j / sum_j h_ij n_j`` with a Gaussian ``h`` over grid distance.

Step 3 is exact and cheap because the Gaussian of a rectangular grid is separable:
``h_ij = g(dr) * g(dc)``, so ``H @ S`` is a rows x rows matmul followed by a cols x cols one —
O((R + C) R C D) instead of the (RC)^2 neighbourhood matrix (10^8 entries for 100x100).
``learning_rate`` blends the new prototypes with the old ones (1.0 = the pure batch rule), the
same relaxation MiniSom's ``train_batch_offline`` uses, so the two can be compared step by step.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from zoo.train.device import resolve_device

DECAYS = ("exponential", "linear", "asymptotic")
INITS = ("pca", "random")
_CHUNK_ELEMENTS = 1 << 24  # distance-matrix entries per BMU chunk (64 MB of float32)


def schedule(start: float, end: float, epochs: int, decay: str) -> np.ndarray:
    """Per-epoch values of sigma (or the learning rate) from ``start`` towards ``end``.

    ``asymptotic`` is MiniSom's ``asymptotic_decay`` (``start / (1 + t / (T / 2))``, ``end`` unused),
    kept so the two implementations can be run on the same schedule."""
    t = np.arange(epochs, dtype=np.float64)
    if decay == "asymptotic":
        return start / (1.0 + t / (epochs / 2.0))
    last = max(epochs - 1, 1)
    if decay == "linear":
        return start + (end - start) * t / last
    if decay == "exponential":
        return start * (end / start) ** (t / last)
    raise ValueError(f"unknown decay {decay!r}; valid: {', '.join(DECAYS)}")


def pairwise_sq_distances(x: torch.Tensor, w: torch.Tensor, w_sq: torch.Tensor | None = None) -> torch.Tensor:
    """Squared Euclidean distances (n, k) via one matmul, clamped at 0 against rounding."""
    if w_sq is None:
        w_sq = (w * w).sum(1)
    d = (x * x).sum(1, keepdim=True) - 2.0 * (x @ w.T) + w_sq[None, :]
    return d.clamp_min_(0.0)


class BatchSOM:
    """Batch SOM on a rectangular ``n_rows x n_cols`` grid (sklearn-style estimator).

    Parameters (stored as given; nothing is computed in ``__init__``):
        n_rows, n_cols: map size. The thesis's rule: about one node per sample (248x248 for 62k).
        epochs: batch iterations (each one pass over all data).
        sigma: initial Gaussian radius in grid units; ``None`` = half the longer side (Kohonen).
        sigma_end: final radius (``exponential``/``linear`` decay).
        learning_rate, learning_rate_end: blend of new and old prototypes per epoch; ``1.0`` (and
            ``None`` end = constant) is Kohonen's batch rule.
        decay: ``exponential`` (default), ``linear`` or ``asymptotic`` (MiniSom's).
        init: ``pca`` (grid spans the first two principal components, +-2 standard deviations),
            ``random`` (prototypes are random samples) or an array ``(n_rows, n_cols, n_features)``.
        device: ``auto`` (CUDA when present), ``cpu``, ``cuda``...
        random_state: seed for ``random`` init.

    Fitted: ``weights_`` (n_rows, n_cols, n_features) float32, ``sigmas_``, ``learning_rates_``,
    ``quantization_errors_`` (entering each epoch), ``n_features_in_``.
    """

    def __init__(self, n_rows: int = 10, n_cols: int = 10, epochs: int = 20, sigma: float | None = None,
                 sigma_end: float = 0.5, learning_rate: float = 1.0, learning_rate_end: float | None = None,
                 decay: str = "exponential", init: Any = "pca", device: str = "auto",
                 random_state: int | None = 0, verbose: bool = False):
        self.n_rows = n_rows
        self.n_cols = n_cols
        self.epochs = epochs
        self.sigma = sigma
        self.sigma_end = sigma_end
        self.learning_rate = learning_rate
        self.learning_rate_end = learning_rate_end
        self.decay = decay
        self.init = init
        self.device = device
        self.random_state = random_state
        self.verbose = verbose

    # -- checks -----------------------------------------------------------------------------
    def _validate(self, n_features: int) -> None:
        if int(self.n_rows) < 1 or int(self.n_cols) < 1:
            raise ValueError(f"map size must be >= 1x1, got {self.n_rows}x{self.n_cols}")
        if int(self.epochs) < 1:
            raise ValueError(f"epochs must be >= 1, got {self.epochs}")
        if self.sigma is not None and float(self.sigma) <= 0:
            raise ValueError(f"sigma must be > 0 (grid units), got {self.sigma}")
        if float(self.sigma_end) <= 0:
            raise ValueError(f"sigma_end must be > 0, got {self.sigma_end}")
        if not 0.0 < float(self.learning_rate) <= 1.0:
            raise ValueError(f"learning_rate must be in (0, 1] (1 = Kohonen's batch rule), got {self.learning_rate}")
        if self.decay not in DECAYS:
            raise ValueError(f"unknown decay {self.decay!r}; valid: {', '.join(DECAYS)}")
        if isinstance(self.init, str) and self.init not in INITS:
            raise ValueError(f"unknown init {self.init!r}; valid: {', '.join(INITS)} or an array "
                             f"of shape (n_rows, n_cols, n_features)")
        if isinstance(self.init, str) and self.init == "pca" and n_features < 2:
            raise ValueError("init='pca' needs at least 2 features; use init='random'")

    def _device(self) -> torch.device:
        return resolve_device(self.device)

    def _check_fitted(self) -> None:
        if not hasattr(self, "weights_"):
            raise RuntimeError("this BatchSOM is not fitted yet: call fit(X) first")

    def _as_tensor(self, X: Any, device: torch.device) -> torch.Tensor:
        x = torch.as_tensor(np.asarray(X, dtype=np.float32) if not torch.is_tensor(X) else X)
        if x.dim() != 2:
            raise ValueError(f"X must be 2-D (n_samples, n_features), got shape {tuple(x.shape)}")
        if hasattr(self, "n_features_in_") and x.shape[1] != self.n_features_in_:
            raise ValueError(f"X has {x.shape[1]} features, the SOM was fitted on {self.n_features_in_}")
        if not torch.isfinite(x).all():
            raise ValueError("X contains NaN or infinite values")
        return x.to(device=device, dtype=torch.float32)

    # -- initialization ---------------------------------------------------------------------
    def initial_weights(self, X: Any) -> np.ndarray:
        """The ``init`` prototypes for ``X`` as an (n_rows, n_cols, n_features) array."""
        x = np.asarray(X, dtype=np.float64)
        self._validate(x.shape[1])
        r, c, d = int(self.n_rows), int(self.n_cols), x.shape[1]
        if not isinstance(self.init, str):
            w = np.asarray(self.init, dtype=np.float32)
            if w.shape != (r, c, d):
                raise ValueError(f"init array has shape {w.shape}, expected {(r, c, d)}")
            return w.copy()
        if self.init == "random":
            rng = np.random.default_rng(self.random_state)
            return x[rng.integers(0, len(x), size=r * c)].reshape(r, c, d).astype(np.float32)
        mean = x.mean(0)
        eigvals, eigvecs = np.linalg.eigh(np.cov(x, rowvar=False))
        order = np.argsort(eigvals)[::-1][:2]
        std = np.sqrt(np.clip(eigvals[order], 0.0, None))
        pcs = eigvecs[:, order] * std  # scaled: the grid covers the data, whatever its units
        # the longer side of the map runs along the first component
        a, b = (pcs[:, 0], pcs[:, 1]) if r >= c else (pcs[:, 1], pcs[:, 0])
        ur, uc = np.linspace(-2, 2, r), np.linspace(-2, 2, c)
        w = mean + ur[:, None, None] * a + uc[None, :, None] * b
        return w.astype(np.float32)

    # -- training ---------------------------------------------------------------------------
    def _grid_gaussians(self, sigma: float, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        def g(n: int) -> torch.Tensor:
            i = torch.arange(n, device=device, dtype=torch.float32)
            return torch.exp(-((i[:, None] - i[None, :]) ** 2) / (2.0 * sigma * sigma))

        return g(int(self.n_rows)), g(int(self.n_cols))

    def _chunk(self, n_nodes: int) -> int:
        return max(1, _CHUNK_ELEMENTS // max(n_nodes, 1))

    def _bmus(self, x: torch.Tensor, w: torch.Tensor, k: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
        """(n, k) indices and squared distances of the k best-matching units, chunked."""
        w_sq = (w * w).sum(1)
        idx, dist = [], []
        step = self._chunk(w.shape[0])
        for s in range(0, x.shape[0], step):
            xs = x[s:s + step]
            # |x|^2 is constant per row: rank on |w|^2 - 2 x.w (one fused addmm), add it after
            d = torch.addmm(w_sq[None, :], xs, w.T, alpha=-2.0)
            if k == 1:
                v, i = d.min(1, keepdim=True)
            else:
                v, i = d.topk(k, dim=1, largest=False)
            idx.append(i), dist.append((v + (xs * xs).sum(1, keepdim=True)).clamp_min_(0.0))
        return torch.cat(idx), torch.cat(dist)

    def fit(self, X: Any, y: Any = None) -> "BatchSOM":
        x_np = np.asarray(X, dtype=np.float32)
        if x_np.ndim != 2 or len(x_np) == 0:
            raise ValueError(f"X must be a non-empty 2-D array (n_samples, n_features), got shape {x_np.shape}")
        self._validate(x_np.shape[1])
        device = self._device()
        r, c, d = int(self.n_rows), int(self.n_cols), x_np.shape[1]
        x = self._as_tensor(x_np, device)
        w = torch.as_tensor(self.initial_weights(x_np), device=device).reshape(r * c, d)
        sigma0 = float(self.sigma) if self.sigma is not None else max(r, c) / 2.0
        sigmas = schedule(sigma0, min(float(self.sigma_end), sigma0), int(self.epochs), self.decay)
        lr_end = float(self.learning_rate if self.learning_rate_end is None else self.learning_rate_end)
        lrs = schedule(float(self.learning_rate), lr_end, int(self.epochs), self.decay)
        qes = []
        for epoch in tqdm(range(int(self.epochs)), desc=f"SOM {r}x{c}", disable=not self.verbose):
            bmu, dist = self._bmus(x, w)
            bmu = bmu[:, 0]
            qes.append(float(dist[:, 0].sqrt().mean()))
            sums = torch.zeros(r * c, d, device=device).index_add_(0, bmu, x).reshape(r, c, d)
            counts = torch.bincount(bmu, minlength=r * c).to(torch.float32).reshape(r, c)
            hr, hc = self._grid_gaussians(float(sigmas[epoch]), device)
            # separable Gaussian smoothing: rows (hr), then columns (hc); both are symmetric
            num = (hr @ sums.reshape(r, c * d)).reshape(r, c, d)
            num = (hc @ num.transpose(0, 1).reshape(c, r * d)).reshape(c, r, d).transpose(0, 1)
            den = hr @ counts @ hc.T
            ok = (den > 1e-12).reshape(-1)
            new = (num / den.clamp_min(1e-12)[..., None]).reshape(r * c, d)
            lr = float(lrs[epoch])
            w = torch.where(ok[:, None], (1.0 - lr) * w + lr * new, w)
        self.weights_ = w.reshape(r, c, d).cpu().numpy()
        self.n_features_in_ = d
        self.sigmas_ = sigmas
        self.learning_rates_ = lrs
        # quantization_errors_[e]: QE of the prototypes *entering* epoch e (a free by-product of
        # the BMU pass; the final map's QE is one more pass: quantization_error(X))
        self.quantization_errors_ = np.asarray(qes)
        return self

    # -- mapping ----------------------------------------------------------------------------
    def _weights_t(self, device: torch.device) -> torch.Tensor:
        self._check_fitted()
        return torch.as_tensor(self.weights_, device=device).reshape(-1, self.weights_.shape[2])

    def predict(self, X: Any) -> np.ndarray:
        """Flat BMU index (row * n_cols + col) of every sample."""
        device = self._device()
        idx, _ = self._bmus(self._as_tensor(X, device), self._weights_t(device))
        return idx[:, 0].cpu().numpy()

    def bmu_coords(self, X: Any) -> np.ndarray:
        """(n, 2) grid coordinates (row, col) of every sample's BMU."""
        flat = self.predict(X)
        return np.stack(np.divmod(flat, self.weights_.shape[1]), axis=1)

    def transform(self, X: Any) -> np.ndarray:
        """Euclidean distance of every sample to every node, (n, n_rows * n_cols)."""
        device = self._device()
        w = self._weights_t(device)
        x = self._as_tensor(X, device)
        step = self._chunk(w.shape[0])
        return torch.cat([pairwise_sq_distances(x[s:s + step], w).sqrt()
                          for s in range(0, len(x), step)]).cpu().numpy()

    def quantization_errors(self, X: Any) -> np.ndarray:
        """Per-sample distance to its BMU (the paper's tie-breaker inside a node)."""
        device = self._device()
        _, dist = self._bmus(self._as_tensor(X, device), self._weights_t(device))
        return dist[:, 0].sqrt().cpu().numpy()

    def quantization_error(self, X: Any) -> float:
        """Mean distance of samples to their BMU (MiniSom's definition)."""
        return float(self.quantization_errors(X).mean())

    def topographic_error(self, X: Any) -> float:
        """Share of samples whose first and second BMU are not grid neighbours (8-neighbourhood,
        MiniSom's rectangular rule)."""
        self._check_fitted()
        r, c = self.weights_.shape[:2]
        if r * c < 2:
            return float("nan")
        device = self._device()
        idx, _ = self._bmus(self._as_tensor(X, device), self._weights_t(device), k=2)
        idx = idx.cpu().numpy()
        r1, c1 = np.divmod(idx[:, 0], c)
        r2, c2 = np.divmod(idx[:, 1], c)
        return float((np.maximum(np.abs(r1 - r2), np.abs(c1 - c2)) > 1).mean())

    def umatrix(self) -> np.ndarray:
        """Unified distance matrix (n_rows, n_cols): each node's mean Euclidean distance to its
        (up to 8) grid neighbours. Large values are cluster borders."""
        self._check_fitted()
        w = self.weights_.astype(np.float64)
        r, c, _ = w.shape
        padded = np.full((r + 2, c + 2, w.shape[2]), np.nan)
        padded[1:-1, 1:-1] = w
        dists = []
        for dr in (-1, 0, 1):
            for dc in (-1, 0, 1):
                if dr == dc == 0:
                    continue
                nb = padded[1 + dr:1 + dr + r, 1 + dc:1 + dc + c]
                dists.append(np.sqrt(((w - nb) ** 2).sum(-1)))
        return np.nanmean(np.stack(dists), axis=0)

    def hit_map(self, X: Any, y: Any = None, classes: Any = None) -> np.ndarray:
        """Samples per node, (n_rows, n_cols); with labels, per class: (n_classes, n_rows, n_cols)
        in the order of ``classes`` (default: sorted unique labels)."""
        self._check_fitted()
        r, c = self.weights_.shape[:2]
        flat = self.predict(X)
        if y is None:
            return np.bincount(flat, minlength=r * c).reshape(r, c)
        y = np.asarray(y)
        classes = list(np.unique(y)) if classes is None else list(classes)
        unknown = set(np.unique(y).tolist()) - set(classes)
        if unknown:
            raise ValueError(f"labels {sorted(unknown)} are not in classes {classes}")
        out = np.zeros((len(classes), r * c), dtype=np.int64)
        for k, cls in enumerate(classes):
            out[k] = np.bincount(flat[y == cls], minlength=r * c)
        return out.reshape(len(classes), r, c)

    # -- persistence (data only: npz without pickle + JSON) ---------------------------------
    def get_params(self, deep: bool = True) -> dict[str, Any]:
        keys = ("n_rows", "n_cols", "epochs", "sigma", "sigma_end", "learning_rate", "learning_rate_end",
                "decay", "init", "device", "random_state", "verbose")
        return {k: getattr(self, k) for k in keys}

    def save(self, directory: str | Path) -> None:
        self._check_fitted()
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        np.savez(directory / "som.npz", weights=self.weights_, sigmas=self.sigmas_,
                 learning_rates=self.learning_rates_, quantization_errors=self.quantization_errors_)
        params = self.get_params()
        if not isinstance(params["init"], str):
            params["init"] = "array"
        (directory / "som.json").write_text(json.dumps(params, indent=2))

    @classmethod
    def load(cls, directory: str | Path, device: str = "auto") -> "BatchSOM":
        directory = Path(directory)
        if not (directory / "som.npz").exists():
            raise FileNotFoundError(f"no som.npz in {directory}: not a saved BatchSOM folder")
        params = json.loads((directory / "som.json").read_text())
        params["device"] = device
        som = cls(**params)
        with np.load(directory / "som.npz", allow_pickle=False) as z:
            som.weights_ = z["weights"].astype(np.float32)
            som.sigmas_, som.learning_rates_ = z["sigmas"], z["learning_rates"]
            som.quantization_errors_ = z["quantization_errors"]
        som.n_features_in_ = int(som.weights_.shape[2])
        return som

    def __repr__(self) -> str:
        return (f"BatchSOM({self.n_rows}x{self.n_cols}, epochs={self.epochs}, sigma={self.sigma}, "
                f"decay={self.decay!r}, init={self.init if isinstance(self.init, str) else 'array'!r})")


def recommended_size(n_samples: int) -> int:
    """Side of a square map with about one node per sample (Kaski's rule of thumb for limited
    data, used by the thesis: 61,710 vectors -> 248x248)."""
    return max(2, int(round(math.sqrt(n_samples))))
