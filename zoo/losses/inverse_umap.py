"""Inverse-UMAP loss (Gräbel et al. 2021; paper 000, Eq. 1-2).

After every epoch a 2-D UMAP is fitted on (a stratified, bounded subsample of) the training
embeddings; the guide's class points are mapped into the n-D embedding space with
``UMAP.inverse_transform`` and smoothed over epochs (Eq. 1)::

    target_c(epoch) = kappa * target_c(epoch - 1) + (1 - kappa) * UMAP^-1(guide_c)

and training minimises (Eq. 2)::

    L = (1 - alpha) * L_TML + alpha / |B| * sum_i L1(target_{y_i}, e_i)

Choices the papers leave open, made explicit here:

* **Alignment.** The guide lives in its own normalized frame; each epoch's UMAP plane has an
  arbitrary rotation, reflection, scale and offset (and changes from epoch to epoch). Inverting
  the raw guide coordinates would ask UMAP for points in some arbitrary patch of its plane, often
  outside the data, where ``inverse_transform`` only extrapolates. So before inverting, the guide
  is mapped onto the classes' mean positions in the UMAP plane by the least-squares similarity
  transform (Procrustes with scaling and reflection, :func:`zoo.guides.fit_similarity`): each
  class's target then sits where the class already is *as far as the guide's shape allows*, and
  the loss pulls the classes only towards the guide's arrangement, not towards an arbitrary frame.
* **L1.** ``L1(a, b)`` is the L1 *distance* ``sum_d |a_d - b_d|`` (``l1="sum"``, as written in
  Eq. 2); ``l1="mean"`` divides by the dimension to make the term's scale independent of D.
* **Before the first fit** (epoch 0, no embedding of a previous epoch exists) the guide term is 0,
  i.e. the first epoch trains with ``(1 - alpha) * TML`` only. The first fit sets the targets
  directly (Eq. 1 has no previous value to smooth with).
* **Subsample.** At most ``max_fit_samples`` embeddings, stratified by class (each class keeps
  its share, and at least one sample), drawn with ``seed + epoch``: UMAP's cost grows with N and
  the class means need only a few hundred points per class.
* **Cost.** The refresh (UMAP fit + inverse transform) must stay a small part of an epoch (it was
  25 % on 2 cores). Three levers, all one parameter away from the paper's every-epoch setting:
  ``max_fit_samples`` (1,000 by default: the targets are class-level, ~70 points per class on 15
  classes locate a class mean well), ``umap_epochs`` (UMAP's optimisation epochs; 200 — what UMAP
  itself uses above 10,000 points — instead of its small-data default of 500) and
  ``refresh_every`` = k (refit every k epochs; Eq. 1's smoothing is then applied with
  ``kappa ** k``, the weight the old targets would have kept after k per-epoch updates towards a
  fixed new position). numba's compiled kernels of umap/pynndescent are cached on disk
  (``NUMBA_CACHE_DIR``, default ``~/.cache/marrow-zoo/numba``), including those umap-learn does not
  mark ``cache=True`` (:func:`zoo.numba_cache.import_umap`), so a new process does not recompile them.

Targets are buffers (``targets``, ``has_targets``, ``n_updates``) and travel in ``state_dict()``
for checkpoint/resume. The reducer is injectable (``reducer_factory``; default ``umap.UMAP``)
so tests can use a fast deterministic stand-in.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from zoo.guides import Guide, fit_similarity, resolve_guide
from zoo.numba_cache import import_umap
from zoo.train.callbacks import Callback

from . import LOSSES
from .base import EmbeddingLoss, GuidedLoss


def default_reducer(n_neighbors: int, random_state: int, n_epochs: int | None = None) -> Any:
    # Imported here: umap pulls in numba/pynndescent (seconds), which `import zoo.losses` should not pay;
    # import_umap also keeps every umap kernel's compiled code on disk for the next process.
    umap = import_umap()

    # n_jobs=1: a fixed random_state forces it anyway (and UMAP warns unless told).
    return umap.UMAP(n_components=2, n_neighbors=n_neighbors, random_state=random_state, n_jobs=1,
                     n_epochs=n_epochs)


def stratified_subsample(labels: np.ndarray, max_samples: int, seed: int) -> np.ndarray:
    """Sorted indices of at most ~``max_samples`` rows, each class keeping its share (>= 1 row)."""
    labels = np.asarray(labels)
    n = len(labels)
    if n <= max_samples:
        return np.arange(n)
    rng = np.random.default_rng(seed)
    picked = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        k = min(len(idx), max(1, int(round(max_samples * len(idx) / n))))
        picked.append(rng.choice(idx, size=k, replace=False))
    return np.sort(np.concatenate(picked))


@LOSSES.register("inverse_umap")
class InverseUMAPLoss(GuidedLoss):
    """``(1 - alpha) * TML + alpha * mean_i L1(e_i, target_{y_i})`` with per-epoch UMAP targets.

    Args:
        guide: a :class:`zoo.guides.Guide` or a guide name (see ``zoo guides list``).
        alpha, kappa: paper 000's defaults 0.4 and 0.2.
        triplet: the TML term (default :class:`zoo.losses.TripletLoss`).
        classes: class ids in label-index order (label ``i`` is ``classes[i]``); default the
            guide's own order.
        max_fit_samples: bound on the embeddings UMAP is fitted on each refresh.
        umap_epochs: UMAP's ``n_epochs`` (None: UMAP's default, 500 below 10,000 points).
        refresh_every: refit the targets every this many epochs (smoothing ``kappa ** refresh_every``).
        n_neighbors: UMAP's ``n_neighbors`` (capped at the subsample size - 1).
        seed: UMAP ``random_state`` and subsampling seed.
        l1: ``"sum"`` (L1 distance, Eq. 2) or ``"mean"`` (per dimension).
        reducer_factory: ``f(n_neighbors=, random_state=) -> object`` with ``fit_transform`` and
            ``inverse_transform`` (default ``umap.UMAP(n_components=2, ...)``).
    """

    def __init__(self, guide: Guide | str, alpha: float = 0.4, kappa: float = 0.2,
                 triplet: EmbeddingLoss | None = None, *, classes: Sequence[str] | None = None,
                 max_fit_samples: int = 1000, n_neighbors: int = 15, seed: int = 0, l1: str = "sum",
                 reducer_factory: Callable[..., Any] | None = None, umap_epochs: int | None = 200,
                 refresh_every: int = 1) -> None:
        super().__init__(triplet=triplet, alpha=alpha)
        kappa = float(kappa)
        if not 0.0 <= kappa < 1.0:
            raise ValueError(f"kappa must be in [0, 1) (weight of the previous epoch's targets), got {kappa}")
        if l1 not in ("sum", "mean"):
            raise ValueError(f"l1 must be 'sum' (L1 distance, the paper) or 'mean' (per dimension), got {l1!r}")
        if int(refresh_every) < 1:
            raise ValueError(f"refresh_every must be >= 1 (refit the targets every N epochs), got {refresh_every}")
        if umap_epochs is not None and int(umap_epochs) < 1:
            raise ValueError(f"umap_epochs must be >= 1 or None (UMAP's default), got {umap_epochs}")
        if int(max_fit_samples) < 3:
            raise ValueError(f"max_fit_samples must be >= 3, got {max_fit_samples}")
        self.embedding_guide = resolve_guide(guide, classes, seed=seed)
        self.kappa = kappa
        self.max_fit_samples = int(max_fit_samples)
        self.n_neighbors = int(n_neighbors)
        self.seed = int(seed)
        self.l1 = l1
        self.refresh_every = int(refresh_every)
        self.umap_epochs = int(umap_epochs) if umap_epochs is not None else None
        self.reducer_factory = reducer_factory or default_reducer
        # Empty until the first fit (the embedding size is learnt then); resized on load_state_dict.
        self.register_buffer("targets", torch.zeros(0, 0))
        self.register_buffer("has_targets", torch.tensor(False))
        self.register_buffer("n_updates", torch.tensor(0, dtype=torch.long))
        self.last_fit: dict[str, float] = {}

    @property
    def n_classes(self) -> int:
        return len(self.embedding_guide)

    # -- Eq. 1 -----------------------------------------------------------------------------
    def update_targets(self, embeddings: np.ndarray | torch.Tensor, labels: np.ndarray | torch.Tensor) -> dict[str, float]:
        """Fit UMAP on the epoch's training embeddings and move the targets (Eq. 1).

        Returns (and keeps in ``last_fit``) timings and the alignment residual for logging."""
        x = embeddings.detach().cpu().numpy() if isinstance(embeddings, torch.Tensor) else np.asarray(embeddings)
        y = labels.detach().cpu().numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
        x = x.astype(np.float32, copy=False)
        y = y.astype(np.int64, copy=False)
        if x.ndim != 2 or len(x) != len(y):
            raise ValueError(f"update_targets: embeddings must be (N, D) with N = len(labels); got {x.shape}, {len(y)}")
        if y.size and (y.min() < 0 or y.max() >= self.n_classes):
            raise ValueError(f"update_targets: labels must be in 0..{self.n_classes - 1} (guide classes "
                             f"{self.embedding_guide.classes}), got {y.min()}..{y.max()}")
        present = np.unique(y)
        if len(present) < 3:
            raise ValueError(f"update_targets needs embeddings of at least 3 classes to align the guide, got {len(present)}")
        epoch = int(self.n_updates)
        idx = stratified_subsample(y, self.max_fit_samples, self.seed + epoch)
        xs, ys = x[idx], y[idx]

        t0 = time.perf_counter()
        # pynndescent/numba set up their thread pool on the first fit in a process and can reset the
        # OpenMP thread count torch shares with them (measured: torch.set_num_threads(1) became 2,
        # doubling the CPU time of every following training step): put torch's setting back after.
        torch_threads = torch.get_num_threads()
        try:
            kwargs = {"n_epochs": self.umap_epochs} if self.reducer_factory is default_reducer else {}
            reducer = self.reducer_factory(n_neighbors=max(2, min(self.n_neighbors, len(xs) - 1)),
                                           random_state=self.seed, **kwargs)
            with warnings.catch_warnings():
                # TML separates the classes, so the kNN graph is disconnected by design and the spectral
                # initialisation would warn every epoch; UMAP handles it (component-wise layout).
                warnings.filterwarnings("ignore", message="Graph is not fully connected")
                plane = np.asarray(reducer.fit_transform(xs), dtype=float)
            t1 = time.perf_counter()

            classes_here = np.unique(ys)
            means = np.stack([plane[ys == c].mean(0) for c in classes_here])
            transform = fit_similarity(self.embedding_guide.coords[classes_here], means)
            aligned = transform.apply(self.embedding_guide.coords)
            new = np.asarray(reducer.inverse_transform(aligned.astype(np.float32)), dtype=np.float32)
            t2 = time.perf_counter()
        finally:
            if torch.get_num_threads() != torch_threads:
                torch.set_num_threads(torch_threads)
        if new.shape != (self.n_classes, x.shape[1]):
            raise RuntimeError(f"reducer.inverse_transform returned {new.shape}, expected {(self.n_classes, x.shape[1])}")

        new_t = torch.as_tensor(new, device=self.targets.device)
        if bool(self.has_targets) and self.targets.shape == new_t.shape:
            kappa = self.kappa ** self.refresh_every  # k epochs' worth of Eq. 1 smoothing
            self.targets = kappa * self.targets + (1.0 - kappa) * new_t
        else:
            self.targets = new_t.clone()
        self.has_targets.fill_(True)
        self.n_updates += 1

        spread = float(np.sqrt(((means - means.mean(0)) ** 2).sum(1).mean())) or 1.0
        residual = float(np.sqrt(((transform.apply(self.embedding_guide.coords[classes_here]) - means) ** 2).sum(1).mean()))
        self.last_fit = {
            "umap_fit_seconds": t1 - t0,
            "inverse_transform_seconds": t2 - t1,
            "fit_samples": float(len(xs)),
            "alignment_residual": residual / spread,  # 0 = the classes already follow the guide's shape
        }
        return self.last_fit

    # -- Eq. 2 -----------------------------------------------------------------------------
    def guide(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if not bool(self.has_targets):
            return self.zero(embeddings)
        if self.targets.shape[1] != embeddings.shape[1]:
            raise ValueError(f"inverse-UMAP targets have dimension {self.targets.shape[1]} but the embeddings "
                             f"{embeddings.shape[1]}: the targets were fitted for another encoder")
        if labels.max() >= self.n_classes or labels.min() < 0:
            raise ValueError(f"labels must be in 0..{self.n_classes - 1} for guide {self.embedding_guide.name!r}")
        # Targets are buffers: no gradient flows into them, only into the embeddings.
        target = self.targets.to(device=embeddings.device, dtype=embeddings.dtype)[labels]
        dist = (embeddings - target).abs()
        per_sample = dist.sum(1) if self.l1 == "sum" else dist.mean(1)
        return per_sample.mean()

    # -- checkpoints -----------------------------------------------------------------------
    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # The targets' shape is only known after the first fit: adopt the checkpoint's shape.
        key = prefix + "targets"
        if key in state_dict and state_dict[key].shape != self.targets.shape:
            self.targets = torch.empty_like(state_dict[key], device=self.targets.device)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def extra_repr(self) -> str:
        return (f"guide={self.embedding_guide.name!r}, alpha={self.alpha}, kappa={self.kappa}, "
                f"max_fit_samples={self.max_fit_samples}, n_neighbors={self.n_neighbors}, l1={self.l1!r}, "
                f"umap_epochs={self.umap_epochs}, refresh_every={self.refresh_every}")


class InverseUMAPTargets(Callback):
    """Trainer callback: refresh the inverse-UMAP targets at the end of every ``refresh_every``-th
    epoch (the loss's setting; epoch 1 always).

    Uses the augmentation-free training embeddings the validation step computed
    (``trainer.train_embeddings()``) and adds ``guide_umap_fit_seconds``,
    ``guide_inverse_transform_seconds``, ``guide_fit_samples`` and ``guide_alignment_residual``
    (RMS distance between the aligned guide and the class means over their RMS spread: 0 = the
    classes already follow the guide's shape)
    to the epoch's metrics. ``loss=None`` finds the :class:`InverseUMAPLoss` under the trainer's
    loss wrappers. The targets themselves live in the loss's ``state_dict`` (checkpointed by the
    Trainer), so this callback has no state of its own."""

    def __init__(self, loss: InverseUMAPLoss | None = None) -> None:
        self.loss = loss

    def _loss(self, trainer) -> InverseUMAPLoss:
        loss = self.loss
        if loss is None:
            fn = trainer.loss_fn
            loss = fn.unwrap() if hasattr(fn, "unwrap") else fn
        if not isinstance(loss, InverseUMAPLoss):
            raise TypeError(f"InverseUMAPTargets needs an InverseUMAPLoss, the trainer's loss is {type(loss).__name__}")
        return loss

    def on_epoch_end(self, trainer, epoch: int, metrics: dict[str, float]) -> None:
        loss = self._loss(trainer)
        # Epoch 1 always (the targets start empty); then every refresh_every epochs.
        if bool(loss.has_targets) and (epoch - 1) % loss.refresh_every:
            return
        embeddings, labels = trainer.train_embeddings()
        info = loss.update_targets(embeddings, labels)
        trainer.epoch_metrics.update({f"guide_{k}": float(v) for k, v in info.items()})
