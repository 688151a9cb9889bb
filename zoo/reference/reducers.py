"""Reducers from backbone features to the space references are searched in (sklearn-style).

* ``vae``: a variational autoencoder on the (standardized) features; the encoder's *mean* is the
  reduced vector, as in ``003_*.txt`` (latent L = 50 was its best). An MLP VAE is written here
  because no maintained library ships a tabular VAE that fits this estimator protocol and saves
  as plain tensors (pythae/pyro are whole frameworks); it is ~40 lines of torch.
* ``pca``: scikit-learn's PCA; ``explained_variance_share_`` is reported (the thesis lost 44 % of
  the variance with 50 components, which is why it chose the VAE).

Both: ``fit(X)``, ``transform(X)``, ``save(dir)`` (safetensors / npz + JSON), ``load(dir)``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from zoo.registry import Registry
from zoo.train.device import resolve_device

REDUCERS: Registry = Registry("reducer")


def create_reducer(name: str, latent: int = 50, **kwargs: Any):
    """A reducer by name (``vae``, ``pca``) with ``latent`` output dimensions."""
    return REDUCERS.create(name, latent=latent, **kwargs)


def load_reducer(directory: str | Path, device: str = "auto"):
    directory = Path(directory)
    meta_file = directory / "reducer.json"
    if not meta_file.exists():
        raise FileNotFoundError(f"no reducer.json in {directory}: not a saved reducer folder")
    meta = json.loads(meta_file.read_text())
    return REDUCERS.get(meta["name"]).load(directory, device=device)


def _standardize_fit(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean = x.mean(0)
    std = x.std(0)
    return mean.astype(np.float32), np.where(std > 1e-8, std, 1.0).astype(np.float32)


@REDUCERS.register("pca")
class PCAReducer:
    """PCA to ``latent`` components (capped at min(n_samples, n_features)).

    Fitted: ``pca_`` (sklearn), ``explained_variance_share_`` (kept share of the variance),
    ``n_features_in_``."""

    name = "pca"

    def __init__(self, latent: int = 50, whiten: bool = False, random_state: int | None = 0):
        self.latent = latent
        self.whiten = whiten
        self.random_state = random_state

    def fit(self, X: Any, y: Any = None) -> "PCAReducer":
        from sklearn.decomposition import PCA

        x = _check_2d(X)
        k = min(int(self.latent), x.shape[0], x.shape[1])
        self.pca_ = PCA(n_components=k, whiten=self.whiten, random_state=self.random_state).fit(x)
        self.explained_variance_share_ = float(self.pca_.explained_variance_ratio_.sum())
        self.n_features_in_ = x.shape[1]
        return self

    def transform(self, X: Any) -> np.ndarray:
        if not hasattr(self, "pca_"):
            raise RuntimeError("PCAReducer is not fitted: call fit(X) first")
        return self.pca_.transform(_check_2d(X, self.n_features_in_)).astype(np.float32)

    def fit_transform(self, X: Any, y: Any = None) -> np.ndarray:
        return self.fit(X).transform(X)

    def summary(self) -> dict[str, float]:
        return {"explained_variance_share": self.explained_variance_share_,
                "latent": float(self.pca_.n_components_)}

    def save(self, directory: str | Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        p = self.pca_
        np.savez(directory / "pca.npz", components=p.components_, mean=p.mean_,
                 explained_variance=p.explained_variance_, explained_variance_ratio=p.explained_variance_ratio_)
        (directory / "reducer.json").write_text(json.dumps(
            {"name": self.name, "latent": int(self.latent), "whiten": bool(self.whiten),
             "n_features_in": int(self.n_features_in_)}, indent=2))

    @classmethod
    def load(cls, directory: str | Path, device: str = "auto") -> "PCAReducer":
        from sklearn.decomposition import PCA

        directory = Path(directory)
        meta = json.loads((directory / "reducer.json").read_text())
        self = cls(latent=meta["latent"], whiten=meta["whiten"])
        with np.load(directory / "pca.npz", allow_pickle=False) as z:
            pca = PCA(n_components=z["components"].shape[0], whiten=meta["whiten"])
            pca.components_, pca.mean_ = z["components"], z["mean"]
            pca.explained_variance_, pca.explained_variance_ratio_ = z["explained_variance"], z["explained_variance_ratio"]
        pca.n_components_ = pca.components_.shape[0]
        pca.n_features_in_ = meta["n_features_in"]
        self.pca_ = pca
        self.n_features_in_ = meta["n_features_in"]
        self.explained_variance_share_ = float(pca.explained_variance_ratio_.sum())
        return self


class VAENet(nn.Module):
    """MLP VAE: in -> hidden -> (mu, logvar) -> z -> hidden -> in (Gaussian decoder = MSE)."""

    def __init__(self, n_in: int, latent: int, hidden: int, dropout: float):
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(n_in, hidden), nn.ReLU(), nn.Dropout(dropout))
        self.mu = nn.Linear(hidden, latent)
        self.logvar = nn.Linear(hidden, latent)
        self.decoder = nn.Sequential(nn.Linear(latent, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, n_in))

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.encoder(x)
        return self.mu(h), self.logvar(h).clamp(-10, 10)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        mu, logvar = self.encode(x)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        return self.decoder(z), mu, logvar


def vae_loss(recon: torch.Tensor, x: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor, beta: float) -> torch.Tensor:
    """Per-sample reconstruction (sum of squares) + beta * KL(q(z|x) || N(0, I)), batch mean."""
    rec = ((recon - x) ** 2).sum(1)
    kl = -0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(1)
    return (rec + beta * kl).mean()


@REDUCERS.register("vae")
class VAEReducer:
    """VAE on standardized features; ``transform`` returns the posterior mean (L dims).

    The thesis trained 20 epochs at batch size 32 (``epochs=20, batch_size=32``); the CPU default
    is fewer epochs at a larger batch. Fitted: ``net_``, ``mean_``/``scale_`` (standardization),
    ``history_`` (mean loss per epoch), ``n_features_in_``."""

    name = "vae"

    def __init__(self, latent: int = 50, hidden: int = 256, epochs: int = 20, batch_size: int = 128,
                 lr: float = 1e-3, beta: float = 1.0, dropout: float = 0.1, device: str = "auto",
                 random_state: int | None = 0, verbose: bool = False):
        self.latent = latent
        self.hidden = hidden
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.beta = beta
        self.dropout = dropout
        self.device = device
        self.random_state = random_state
        self.verbose = verbose

    def _config(self) -> dict[str, Any]:
        return {"latent": int(self.latent), "hidden": int(self.hidden), "dropout": float(self.dropout)}

    def fit(self, X: Any, y: Any = None) -> "VAEReducer":
        x = _check_2d(X)
        if int(self.latent) < 1:
            raise ValueError(f"latent must be >= 1, got {self.latent}")
        device = resolve_device(self.device)
        self.mean_, self.scale_ = _standardize_fit(x)
        gen = torch.Generator().manual_seed(int(self.random_state or 0))
        if self.random_state is not None:
            torch.manual_seed(int(self.random_state))
        xt = torch.from_numpy((x - self.mean_) / self.scale_)
        net = VAENet(x.shape[1], int(self.latent), int(self.hidden), float(self.dropout)).to(device)
        opt = torch.optim.Adam(net.parameters(), lr=float(self.lr))
        history = []
        for _ in tqdm(range(int(self.epochs)), desc="VAE", disable=not self.verbose):
            net.train()
            perm = torch.randperm(len(xt), generator=gen)
            total = 0.0
            for s in range(0, len(xt), int(self.batch_size)):
                xb = xt[perm[s:s + int(self.batch_size)]].to(device)
                recon, mu, logvar = net(xb)
                loss = vae_loss(recon, xb, mu, logvar, float(self.beta))
                opt.zero_grad()
                loss.backward()
                opt.step()
                total += float(loss.detach()) * len(xb)
            history.append(total / len(xt))
        self.net_ = net.eval()
        self.history_ = np.asarray(history)
        self.n_features_in_ = x.shape[1]
        return self

    @torch.no_grad()
    def transform(self, X: Any) -> np.ndarray:
        if not hasattr(self, "net_"):
            raise RuntimeError("VAEReducer is not fitted: call fit(X) first")
        x = _check_2d(X, self.n_features_in_)
        device = next(self.net_.parameters()).device
        out = []
        for s in range(0, len(x), 4096):
            xb = torch.from_numpy((x[s:s + 4096] - self.mean_) / self.scale_).to(device)
            out.append(self.net_.encode(xb)[0].cpu())
        return torch.cat(out).numpy().astype(np.float32) if out else np.zeros((0, int(self.latent)), np.float32)

    def fit_transform(self, X: Any, y: Any = None) -> np.ndarray:
        return self.fit(X).transform(X)

    def summary(self) -> dict[str, float]:
        return {"vae_final_loss": float(self.history_[-1]) if len(self.history_) else float("nan"),
                "latent": float(self.latent)}

    def save(self, directory: str | Path) -> None:
        from safetensors.torch import save_file

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        save_file({k: v.detach().cpu().contiguous() for k, v in self.net_.state_dict().items()},
                  str(directory / "vae.safetensors"))
        np.savez(directory / "vae_scaler.npz", mean=self.mean_, scale=self.scale_, history=self.history_)
        (directory / "reducer.json").write_text(json.dumps(
            {"name": self.name, **self._config(), "n_features_in": int(self.n_features_in_)}, indent=2))

    @classmethod
    def load(cls, directory: str | Path, device: str = "auto") -> "VAEReducer":
        from safetensors.torch import load_file

        directory = Path(directory)
        meta = json.loads((directory / "reducer.json").read_text())
        self = cls(latent=meta["latent"], hidden=meta["hidden"], dropout=meta["dropout"], device=device)
        net = VAENet(meta["n_features_in"], meta["latent"], meta["hidden"], meta["dropout"])
        net.load_state_dict(load_file(str(directory / "vae.safetensors")))
        self.net_ = net.to(resolve_device(device)).eval()
        with np.load(directory / "vae_scaler.npz", allow_pickle=False) as z:
            self.mean_, self.scale_, self.history_ = z["mean"], z["scale"], z["history"]
        self.n_features_in_ = meta["n_features_in"]
        return self


def _check_2d(X: Any, n_features: int | None = None) -> np.ndarray:
    x = np.asarray(X, dtype=np.float32)
    if x.ndim != 2:
        raise ValueError(f"features must be 2-D (n_samples, n_features), got shape {x.shape}")
    if n_features is not None and x.shape[1] != n_features:
        raise ValueError(f"features have {x.shape[1]} columns, the reducer was fitted on {n_features}")
    return x
