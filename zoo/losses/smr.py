"""Spatial maturity regression losses (Gräbel et al.; paper 001, Eq. 3-5), always combined with
the triplet margin loss: ``L = (1 - alpha) * L_TML + alpha * L_SMR``.

For every regressed lineage a curve ``l`` and targets ``t_c`` (:mod:`zoo.curves`) are refitted
from the training embeddings after every epoch (:class:`CurveRefit`); the losses read them:

* ``smr_normal`` (Eq. 3): ``L1(x_i, l(t_{y_i}))``;
* ``smr_projected`` (Eq. 4): ``L1(l(p(x_i)), l(t_{y_i}))`` — the embedding is first projected onto
  the curve (``p``: closed form on lines, root finding on Bézier curves), so only the position
  *along* the curve is regressed and the other directions stay free. Eq. 4 writes
  ``L1(p(x_i), t_{y_i})``; the text says the distances are taken "between projected points and
  corresponding targets" and calls ``l(t_c)`` the target embedding, so both sides are mapped to
  curve points. On lines the projection is not clamped (a cell past the end is still pulled back);
  on Bézier curves it lies in [0, 1].
* ``smr_tsne`` (Eq. 5): curve ``l'``, targets ``t'`` and L1 in the 2-D space of a parametric
  t-SNE network ``r`` (:class:`zoo.curves.tsne.ParametricTSNE`) trained alongside on the t-SNE
  objective of each batch (its KL term is added to the loss and recorded as ``tsne_kl``; it
  trains the network only, on detached embeddings; the SMR term moves the embeddings through the
  network with its weights held constant);
* ``smr_projected_tsne``: Eq. 4 in the t-SNE plane.

Choices left open by the paper, made explicit: ``L1`` is the L1 distance summed over dimensions
(``l1="sum"``; ``"mean"`` divides by the dimension); the sum runs over the batch and is divided by
``|B|``, rows of classes in no regressed lineage contributing 0 (they are trained by TML alone);
before the first curve fit the SMR term is 0 (:class:`CurveRefit` fits once at the start of
training from the initial embeddings, so this only happens when it is not used).

Curve control points and targets are buffers (checkpointed; shapes adopted from a checkpoint).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from zoo.curves import DEFAULT_LINEAGES, CurveSet
from zoo.curves.path import evaluate_torch, project_torch
from zoo.curves.tsne import ParametricTSNE
from zoo.train.callbacks import Callback

from . import LOSSES
from .base import EmbeddingLoss, GuidedLoss

SMR_LOSSES = ("normal", "projected", "tsne", "projected_tsne")
#: the paper's alpha: 0.2, and 0.6 for the t-SNE versions
PAPER_ALPHA = {"normal": 0.2, "projected": 0.2, "tsne": 0.6, "projected_tsne": 0.6}


class SMRLoss(GuidedLoss):
    """``(1 - alpha) * TML + alpha * L_SMR`` (+ the t-SNE network's KL for the t-SNE versions).

    Args:
        classes: class ids in label-index order.
        mode: ``normal``, ``projected``, ``tsne`` or ``projected_tsne``.
        curve, targets, lineages: see :class:`zoo.curves.CurveSet`.
        alpha: weight of the SMR term (default: the paper's, 0.2 or 0.6 for t-SNE).
        dim: embedding dimension (needed to build the t-SNE network of the t-SNE versions).
        l1: ``"sum"`` (L1 distance) or ``"mean"`` (per dimension).
        length: length of the ``fixed`` lines (default: fixed at the first fit, see zoo.curves.models).
        tsne_hidden, perplexity: the parametric t-SNE network.
    """

    def __init__(self, classes: Sequence[str], mode: str = "normal", curve: str = "linear", targets: str = "uniform",
                 lineages: str | Sequence[str] = DEFAULT_LINEAGES, *, alpha: float | None = None,
                 triplet: EmbeddingLoss | None = None, dim: int | None = None, l1: str = "sum",
                 length: float | None = None, seed: int = 0, tsne_hidden: Sequence[int] = (256, 256),
                 perplexity: float = 30.0, ontology=None) -> None:
        if mode not in SMR_LOSSES:
            raise ValueError(f"SMR loss mode must be one of {', '.join(SMR_LOSSES)}, got {mode!r}")
        super().__init__(triplet=triplet, alpha=PAPER_ALPHA[mode] if alpha is None else alpha)
        if l1 not in ("sum", "mean"):
            raise ValueError(f"l1 must be 'sum' or 'mean', got {l1!r}")
        self.mode, self.l1 = mode, l1
        self.classes = list(classes)
        self.curve_set = CurveSet(curve, targets, lineages, seed=seed, length=length).setup(self.classes, ontology)
        self.uses_tsne = mode in ("tsne", "projected_tsne")
        self.projected = mode in ("projected", "projected_tsne")
        if self.uses_tsne:
            if dim is None:
                raise ValueError(f"the {mode!r} SMR loss needs dim= (the embedding dimension) to build its t-SNE network")
            self.tsne = ParametricTSNE(int(dim), hidden=tuple(tsne_hidden), perplexity=perplexity)
            self.plane_set = CurveSet(curve, targets, lineages, seed=seed, length=length).setup(self.classes, ontology)
        n_series = len(self.curve_set.series_)
        self.register_buffer("class_series", torch.as_tensor(self.curve_set.class_series_, dtype=torch.long))
        self.register_buffer("class_t", torch.zeros(len(self.classes)))
        self.register_buffer("has_curves", torch.tensor(False))
        self.register_buffer("n_updates", torch.tensor(0, dtype=torch.long))
        for i in range(n_series):
            self.register_buffer(f"control_{i}", torch.zeros(0, 0))
        self.last_fit: dict[str, float] = {}

    @property
    def series(self):
        return self.curve_set.series_

    def _control(self, i: int) -> torch.Tensor:
        return getattr(self, f"control_{i}")

    # -- per-epoch refit ---------------------------------------------------------------------
    def update_curves(self, embeddings: np.ndarray, labels: np.ndarray) -> dict[str, float]:
        """Refit curves and targets from the augmentation-free training embeddings."""
        x = np.asarray(embeddings, dtype=np.float32)
        y = np.asarray(labels).astype(int)
        t0 = time.perf_counter()
        fit_set = self.plane_set if self.uses_tsne else self.curve_set
        if self.uses_tsne:
            self.curve_set.fit(x, y)  # the n-D curves too: reported (rho) and used for prediction
            x = self.tsne.transform(x)
        if bool(self.has_curves) and self.curve_set.curve == "fixed":
            # after a resume the fixed length lives only in the checkpointed control points
            for i, lin in enumerate(fit_set.series_):
                model = fit_set.curves_[lin.name]
                c = self._control(i)
                if not hasattr(model, "length_") and c.numel():
                    model.length_ = float((c[1] - c[0]).norm())
        fit_set.fit(x, y)
        device = self.class_t.device
        class_t = torch.zeros(len(self.classes))
        for i, lin in enumerate(fit_set.series_):
            setattr(self, f"control_{i}", torch.as_tensor(fit_set.curves_[lin.name].control_points_,
                                                           dtype=torch.float32, device=device))
            for s, cid in enumerate(lin.stages):
                class_t[self.classes.index(cid)] = float(fit_set.targets_[lin.name][s])
        self.class_t = class_t.to(device)
        self.has_curves.fill_(True)
        self.n_updates += 1
        info = {"refit_seconds": time.perf_counter() - t0}
        for lin in self.curve_set.series_:  # does the curve order the stages? (Spearman, train set)
            info[f"{lin.name}_stage_rho"] = stage_rho(self.curve_set, embeddings, y, lin.name)
        self.last_fit = info
        return info

    # -- Eq. 3-5 ---------------------------------------------------------------------------
    def guide(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if not bool(self.has_curves):
            return self.zero(embeddings)
        if labels.max() >= len(self.classes) or labels.min() < 0:
            raise ValueError(f"labels must be in 0..{len(self.classes) - 1} (the SMR loss was built for {len(self.classes)} classes)")
        space = self.tsne.frozen(embeddings) if self.uses_tsne else embeddings
        series = self.class_series[labels]
        total = self.zero(embeddings)
        for i in range(len(self.series)):
            rows = series == i
            if not bool(rows.any()):
                continue
            control = self._control(i).to(dtype=space.dtype)
            if control.shape[-1] != space.shape[1]:
                raise ValueError(f"SMR curves have dimension {control.shape[-1]} but the embeddings {space.shape[1]}: "
                                 "they were fitted for another encoder")
            x = space[rows]
            target = evaluate_torch(control, self.class_t[labels[rows]].to(space.dtype))
            if self.projected:
                x = evaluate_torch(control, project_torch(control, x, clamp=control.shape[0] > 2))
            dist = (x - target).abs()
            total = total + (dist.sum(1) if self.l1 == "sum" else dist.mean(1)).sum()
        return total / embeddings.shape[0]

    def compute(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        loss = super().compute(embeddings, labels)
        if self.uses_tsne and self.training:
            kl = self.tsne.objective(embeddings)
            self.record("tsne_kl", kl)
            loss = loss + kl
        return loss

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        for i in range(len(self.series)):  # shapes are only known after the first fit
            key = f"{prefix}control_{i}"
            if key in state_dict and state_dict[key].shape != self._control(i).shape:
                setattr(self, f"control_{i}", torch.empty_like(state_dict[key], device=self.class_t.device))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def extra_repr(self) -> str:
        cs = self.curve_set
        return (f"mode={self.mode!r}, curve={cs.curve!r}, targets={cs.targets!r}, "
                f"lineages={[lin.name for lin in cs.series_]}, alpha={self.alpha}, l1={self.l1!r}")


def stage_rho(curve_set: CurveSet, embeddings: np.ndarray, labels: np.ndarray, lineage: str) -> float:
    """Spearman rho between the curve position and the stage index of ``lineage``'s samples."""
    from scipy.stats import spearmanr

    i = [lin.name for lin in curve_set.series_].index(lineage)
    rows = curve_set.class_series_[labels] == i
    if rows.sum() < 3:
        return float("nan")
    stage = curve_set.class_stage_[labels[rows]]
    if len(np.unique(stage)) < 2:
        return float("nan")
    return float(spearmanr(curve_set.project(np.asarray(embeddings)[rows], lineage), stage).statistic)


def _variant(mode: str):
    class _SMR(SMRLoss):
        __doc__ = f"SMR loss ``{mode}`` (see :class:`SMRLoss`); alpha defaults to {PAPER_ALPHA[mode]}."

        def __init__(self, classes: Sequence[str], curve: str = "linear", targets: str = "uniform",
                     lineages: str | Sequence[str] = DEFAULT_LINEAGES, *, alpha: float | None = None,
                     triplet: EmbeddingLoss | None = None, dim: int | None = None, l1: str = "sum",
                     length: float | None = None, seed: int = 0, tsne_hidden: Sequence[int] = (256, 256),
                     perplexity: float = 30.0, ontology=None) -> None:
            super().__init__(classes, mode, curve, targets, lineages, alpha=alpha, triplet=triplet, dim=dim, l1=l1,
                             length=length, seed=seed, tsne_hidden=tsne_hidden, perplexity=perplexity,
                             ontology=ontology)

    _SMR.__name__ = _SMR.__qualname__ = "SMR" + "".join(p.capitalize() for p in mode.split("_")) + "Loss"
    return LOSSES.register(f"smr_{mode}")(_SMR)


SMRNormalLoss = _variant("normal")
SMRProjectedLoss = _variant("projected")
SMRTsneLoss = _variant("tsne")
SMRProjectedTsneLoss = _variant("projected_tsne")


class CurveRefit(Callback):
    """Trainer callback: refit the SMR curves and targets from the augmentation-free training
    embeddings (``trainer.train_embeddings()``, which the validation step computes anyway) at the
    end of every epoch, and once at the start of training (``at_start``) so the first epoch already
    has curves. Adds ``smr_refit_seconds`` and ``smr_<lineage>_stage_rho`` (Spearman between curve
    position and stage on the training set) to the epoch metrics."""

    def __init__(self, loss: SMRLoss | None = None, at_start: bool = True) -> None:
        self.loss = loss
        self.at_start = at_start

    def _loss(self, trainer) -> SMRLoss:
        loss = self.loss
        if loss is None:
            fn = trainer.loss_fn
            loss = fn.unwrap() if hasattr(fn, "unwrap") else fn
        if not isinstance(loss, SMRLoss):
            raise TypeError(f"CurveRefit needs an SMRLoss, the trainer's loss is {type(loss).__name__}")
        return loss

    def on_fit_start(self, trainer) -> None:
        if self.at_start:
            embeddings, labels = trainer.embed(trainer._train_eval_loader(), desc="embed train (initial curves)")
            self._loss(trainer).update_curves(embeddings, labels)

    def on_epoch_end(self, trainer, epoch: int, metrics: dict[str, Any]) -> None:
        embeddings, labels = trainer.train_embeddings()
        info = self._loss(trainer).update_curves(embeddings, labels)
        trainer.epoch_metrics.update({f"smr_{k}": float(v) for k, v in info.items()})
