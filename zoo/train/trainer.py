"""One Trainer for every family: train loop, SVM-stage validation, early stopping, checkpoints.

Per epoch::

    train (AdamW, autocast per ``precision``: AMP on CUDA, bf16 on CPUs where it is faster; the
           training loader's ``batch_transform`` (batched augmentation) applied on the device;
           NaN/inf guard, tqdm bar with ETA)
    -> validation (every ``val_every`` epochs and at the last): embed the training set (no
       augmentation; a stratified subsample of ``svm_train_max``) and the validation set in
       inference mode, fit the SVM stage on the training embeddings (grid search every
       ``svm_every`` validations, refit with the last best gamma/C in between), predict the
       validation set, compute the metrics
    -> callbacks.on_epoch_end -> early stopping on ``monitor`` -> logger -> checkpoint

Each epoch logs where its time went: ``train_seconds``, ``embed_seconds``, ``svm_seconds``,
``guide_seconds`` (the callbacks: guide targets, curve fits) and ``epoch_seconds``. With
``budget`` (minutes) the Trainer stops before an epoch that would not fit, or with
``TimeBudget(last_epoch_min=...)`` trains what fits of it as a shortened last epoch
(``stopped_on_budget``), and the cosine schedule spans the budget (see :mod:`zoo.train.budget`).

``fit()`` leaves the best epoch's weights in the model and returns a :class:`FitResult`.

Under ``torchrun`` (:mod:`zoo.train.distributed`) the model trains as ``DistributedDataParallel``
(``self.net``; ``self.model`` stays the plain module), embeddings are gathered to every rank, rank
0's epoch metrics and decisions are broadcast, and only rank 0 logs and writes checkpoints.

Families whose model does not map a batch to embeddings (autoencoders, classifiers...) subclass
the Trainer and override :meth:`Trainer.compute_loss` and/or :meth:`Trainer.embed_batch`.
"""

from __future__ import annotations

import copy
import inspect
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import torch
from sklearn.base import clone
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from zoo.evaluate.metrics import classification_metrics, scalar_metrics
from zoo.evaluate.svm import SVMStage

from . import checkpoint as ckpt
from . import distributed
from .callbacks import Callback, state_keys
from .device import resolve_amp, resolve_device
from .early_stopping import EarlyStopping
from .guard import NonFiniteLossError
from .budget import TimeBudget
from .loggers import MetricsLogger, NullLogger
from .precision import Precision, resolve_precision
from .schedulers import SCHEDULERS
from .seeding import get_rng_state, seed_everything, set_rng_state

log = logging.getLogger(__name__)

# Under AMP, GradScaler skips steps with inf gradients while it lowers its scale: that is normal a
# few times in a row, not dozens.
MAX_SKIPPED_AMP_STEPS = 25


@dataclass
class FitResult:
    """What :meth:`Trainer.fit` returns."""

    history: list[dict[str, float]]
    best_epoch: int | None
    best_metric: float | None
    monitor: str
    mode: str
    stopped_early: bool
    epochs_run: int
    svm: SVMStage | None = None  # the SVM stage fitted at the best epoch
    resumed_from: int | None = None  # the epoch the run resumed after (None: fresh start)
    stopped_on_budget: bool = False  # the time budget ended the run (another epoch would not fit)
    precision: str = "fp32"  # fp32 | bf16 | fp16: what training ran in
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def best(self) -> dict[str, float]:
        """The metrics of the best epoch (empty if none)."""
        for row in self.history:
            if row.get("epoch") == self.best_epoch:
                return dict(row)
        return {}


class Trainer:
    """Train ``model`` with ``loss_fn`` (``loss_fn(model(x), y) -> scalar``).

    Args:
        model: maps an image batch to (N, D) embeddings (e.g. :class:`zoo.models.Encoder`).
        loss_fn: an embedding loss (e.g. ``zoo.losses.create_loss("triplet")``).
        train_loader: batches ``(images, labels)`` or ``(images, ..., labels)``.
        val_loader: validation batches; None disables validation (monitor falls back to
            ``train_loss``/min).
        epochs: maximum number of epochs. patience: epochs without improvement before stopping
            (None: never stop early).
        lr, weight_decay: AdamW. scheduler: a name in ``SCHEDULERS`` ("cosine", "constant") or
            ``f(optimizer, epochs) -> LRScheduler``; stepped once per epoch.
        device: "auto" (cuda > mps > cpu) or a device. amp: "auto" = mixed precision on CUDA only
            (used when ``precision`` is None).
        precision: "auto" | "fp32" | "bf16" (:func:`zoo.train.precision.resolve_precision`; "auto"
            probes bf16 on a capable CPU with inputs of the training dataset's ``img_size``).
        budget: wall-clock minutes for the training loop, or a :class:`zoo.train.budget.TimeBudget`
            (None: only ``epochs`` bounds it).
        val_every: validate every this many epochs (and always at the last one); early-stopping
            patience then counts validations. ``"adaptive"``: with a ``budget``, validate the first
            epoch (with the SVM stage's default gamma/C, no search), then from the last quarter of
            the budget on (the first of these searches gamma/C), spaced so they cost ~10 % of the
            training time (:meth:`TimeBudget.validation_due`, measured after each validation);
            without one, every epoch.
        svm_train_max: embed at most this many training images (stratified, the same ones every
            epoch) for the SVM stage and the callbacks (None: all); needs ``targets`` on the
            training-eval dataset.
        batch_transform: applied to the image batch (and a uint8 mask batch) on the device before
            ``compute_loss``; None = the training dataset's ``batch_transform`` if it has one
            (:class:`zoo.data.batch_augment.BatchAugment`), False = none.
        callbacks: :class:`zoo.train.Callback` instances.
        checkpoint_dir: folder for ``last.pt``/``best.pt``/``best_svm.skops`` (None: no files).
        resume: continue from ``checkpoint_dir/last.pt`` when it exists.
        monitor, mode, min_delta: the early-stopping metric (any key of the epoch metrics).
        svm_every: grid-search the SVM's gamma/C every this many epochs (1, 1+k, 1+2k...).
        svm: the SVM stage template (cloned each epoch); None -> ``SVMStage(random_state=seed)``;
            False -> no SVM stage (a callback must then provide the monitored metric).
        train_eval_loader: the training set without augmentation, in order, for validation
            embeddings; default: ``train_loader``'s dataset re-iterated unshuffled (with whatever
            transform it has — pass this loader when the training loader augments).
        classes, severity, ontology: passed to :func:`zoo.evaluate.classification_metrics`
            (class names for label indices; severity matrix -> ``val_mcs``; ontology ->
            ``val_macro_f1_tolerant``).
        seed, deterministic: :func:`zoo.train.seed_everything` at the start of a fresh fit.
        grad_clip: max gradient norm (None: no clipping; the norm is still checked for NaN/inf).
        progress: tqdm bars (epochs with ETA, batches). logger: ``log_metrics(dict, step)``.
        extra: opaque dict saved in checkpoints (e.g. the MLflow run id); read it back with
            :func:`zoo.train.read_extra` before resuming.
    """

    def __init__(
        self,
        model: nn.Module,
        loss_fn: nn.Module | Callable[..., torch.Tensor],
        train_loader: Iterable,
        val_loader: Iterable | None = None,
        *,
        epochs: int,
        patience: int | None,
        lr: float = 1e-3,
        weight_decay: float = 1e-4,
        scheduler: str | Callable[..., Any] | None = "cosine",
        device: str | torch.device = "auto",
        amp: bool | str = "auto",
        callbacks: Sequence[Callback] = (),
        checkpoint_dir: str | Path | None = None,
        resume: bool = False,
        monitor: str = "val_macro_f1",
        mode: str = "max",
        min_delta: float = 0.0,
        svm_every: int = 5,
        svm: SVMStage | None | bool = None,
        train_eval_loader: Iterable | None = None,
        classes: Sequence[Any] | None = None,
        severity: Any = None,
        ontology: Any = None,
        seed: int = 0,
        deterministic: bool = False,
        grad_clip: float | None = None,
        progress: bool = True,
        logger: MetricsLogger | None = None,
        extra: dict[str, Any] | None = None,
        precision: str | None = None,
        budget: float | None = None,
        val_every: int | str = 1,
        svm_train_max: int | None = None,
        batch_transform: Any = None,
        represent: str = "embedding",
    ) -> None:
        if int(epochs) < 1:
            raise ValueError(f"epochs must be >= 1, got {epochs}")
        if not float(lr) >= 0.0:
            raise ValueError(f"lr must be >= 0, got {lr}")
        if int(svm_every) < 1:
            raise ValueError(f"svm_every must be >= 1 (grid search every N epochs), got {svm_every}")
        self._adaptive_val = val_every == "adaptive" and budget is not None
        if val_every == "adaptive":
            val_every = 1
        if not isinstance(val_every, int) or int(val_every) < 1:
            raise ValueError(f"val_every must be >= 1 (validate every N epochs) or 'adaptive', got {val_every!r}")
        if svm_train_max is not None and int(svm_train_max) < 2:
            raise ValueError(f"svm_train_max must be >= 2 or None (all training images), got {svm_train_max}")
        if grad_clip is not None and not float(grad_clip) > 0:
            raise ValueError(f"grad_clip must be > 0 or None, got {grad_clip}")
        if logger is not None and not callable(getattr(logger, "log_metrics", None)):
            raise TypeError(f"logger must have log_metrics(metrics: dict, step: int), got {type(logger).__name__}")
        for cb in callbacks:
            if not isinstance(cb, Callback):
                raise TypeError(f"callbacks must be zoo.train.Callback instances, got {type(cb).__name__}")

        if represent not in ("embedding", "features"):
            raise ValueError(f"represent must be 'embedding' (the model's output) or 'features' (model.features(x), "
                             f"the backbone's pooled features), got {represent!r}")
        if represent == "features" and not callable(getattr(model, "features", None)):
            raise TypeError(f"represent='features' needs a model with features(x); {type(model).__name__} has none")
        self.represent = represent
        needs_features = getattr(loss_fn, "needs_features", False)
        if needs_features and "return_features" not in inspect.signature(model.forward).parameters:
            raise TypeError(f"the loss reads the backbone features, so the model's forward must accept "
                            f"return_features=True (zoo.models.Encoder does); {type(model).__name__}'s does not")
        self.dist = distributed.ensure()
        self.device = resolve_device(device)
        if self.dist.enabled and self.device.type == "cuda":
            self.device = torch.device("cuda", self.dist.local_rank)
        self.model = model.to(self.device)
        if precision is None:  # the older switch: float16 AMP on CUDA or nothing
            use_amp = resolve_amp(amp, self.device)
            self.precision = Precision("fp16", torch.float16, True, "amp") if use_amp else \
                Precision("fp32", None, False, "amp off")
        else:  # rank 0 measures and decides: every rank must train in the same precision
            self.precision = distributed.broadcast(
                resolve_precision(precision, self.device, model=self.model, input_shape=_input_shape(train_loader))
                if self.dist.is_main else None, self.dist)
        # The module the training step calls: DDP all-reduces gradients during backward.
        self.net: nn.Module = self.model
        if self.dist.enabled:
            from torch.nn.parallel import DistributedDataParallel

            self.net = DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        log.info("precision %s (%s)", self.precision.name, self.precision.reason)
        self.amp = self.precision.scaler  # float16 AMP: GradScaler, inf steps are skipped
        if batch_transform is None:
            batch_transform = getattr(getattr(train_loader, "dataset", None), "batch_transform", None)
        self.batch_transform = batch_transform.to(self.device) if isinstance(batch_transform, nn.Module) else (
            batch_transform or None)
        self.val_every = int(val_every)
        self.svm_train_max = int(svm_train_max) if svm_train_max is not None else None
        self.budget = budget if isinstance(budget, TimeBudget) or budget is None else TimeBudget(budget)
        self._budget_cosine = self.budget is not None and scheduler == "cosine"
        self.loss_fn = loss_fn.to(self.device) if isinstance(loss_fn, nn.Module) else loss_fn
        self.train_loader = train_loader
        self.val_loader = val_loader
        self.train_eval_loader = train_eval_loader
        self.epochs = int(epochs)
        self.lr = float(lr)
        self.weight_decay = float(weight_decay)
        self.callbacks = list(callbacks)
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None
        self.resume = bool(resume)
        self.svm_every = int(svm_every)
        self.classes = list(classes) if classes is not None else None
        self.severity = severity
        self.ontology = ontology
        self.seed = int(seed)
        self.deterministic = bool(deterministic)
        self.grad_clip = float(grad_clip) if grad_clip is not None else None
        self.progress = bool(progress) and self.dist.is_main
        self.logger: MetricsLogger = (logger or NullLogger()) if self.dist.is_main else NullLogger()
        self.extra: dict[str, Any] = dict(extra or {})

        if svm is None or svm is True:
            svm = SVMStage(random_state=self.seed)
        self.svm_template: SVMStage | None = svm if svm is not False else None

        if val_loader is None and monitor.startswith("val_"):
            log.info("no validation loader: early stopping monitors train_loss (min) instead of %s", monitor)
            monitor, mode = "train_loss", "min"
        self.monitor, self.mode = monitor, mode
        self.early_stopping = EarlyStopping(patience, mode=mode, min_delta=min_delta)

        params = [p for p in self.model.parameters() if p.requires_grad]
        if isinstance(self.loss_fn, nn.Module):  # some losses learn (proxies, targets as params)
            params += [p for p in self.loss_fn.parameters() if p.requires_grad]
        if not params:
            raise ValueError("the model has no trainable parameters")
        self.params = params
        # Trained parameters outside the DDP-wrapped model (a loss's learnt scale): averaged by hand.
        self._loss_params = [p for p in self.loss_fn.parameters() if p.requires_grad] \
            if isinstance(self.loss_fn, nn.Module) else []
        self.optimizer = make_adamw(params, lr=self.lr, weight_decay=self.weight_decay)
        # Under a budget the cosine decay follows the budget's progress, set per step (see
        # _budget_lr); the per-epoch scheduler is then constant.
        self.scheduler = self._make_scheduler("constant" if self._budget_cosine else scheduler)
        self._base_lrs = [g["lr"] for g in self.optimizer.param_groups]
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp)

        # run state
        self.epoch = 0
        self.global_step = 0
        self.epoch_metrics: dict[str, float] = {}
        self.should_stop = False
        self.history: list[dict[str, float]] = []
        self.best_state: dict[str, torch.Tensor] | None = None
        self.svm: SVMStage | None = None
        self.best_svm: SVMStage | None = None
        self.svm_params: dict[str, Any] | None = None
        self.last_train_embeddings: tuple[np.ndarray, np.ndarray] | None = None
        self.last_val_embeddings: tuple[np.ndarray, np.ndarray] | None = None
        self.last_val_metrics: dict[str, Any] | None = None
        self._train_cache: dict[str, tuple[np.ndarray, np.ndarray]] = {}  # per epoch: "embedding"/"features"
        self._train_cache_epoch: int | None = None
        self._resumed_from: int | None = None
        self._finished = False
        self._stopped_early = False
        self._fit_called = False
        self._stopped_on_budget = False
        self._steps_per_epoch: int | None = None
        self._next_val = 1  # val_every=adaptive: the next epoch that validates
        self._late_search_done = False  # val_every=adaptive: gamma/C searched again in the selection phase
        self._search_seconds = 0.0  # the last SVM grid search's own time (see _validation_cost)
        self._last_steps: int | None = None  # budget: the shortened last epoch's steps (see _run_epoch)
        # budget schedule "epochs": the epoch (a shortened last one as its share) the cosine ends
        # with, predicted after every epoch; and the progress reached, which a new plan never lowers.
        self._plan_end: float | None = None
        self._progress_floor = 0.0

    # ------------------------------------------------------------------------------------------
    def _make_scheduler(self, scheduler: Any) -> Any:
        if scheduler is None:
            scheduler = "constant"
        if isinstance(scheduler, str):
            return SCHEDULERS.get(scheduler)(self.optimizer, self.epochs)
        if callable(scheduler):
            return scheduler(self.optimizer, self.epochs)
        raise TypeError(f"scheduler must be a name ({', '.join(SCHEDULERS.names())}) or a factory, got {scheduler!r}")

    @property
    def current_lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    def _autocast(self):
        return self.precision.autocast(self.device)

    def _to_device(self, batch: Any) -> tuple:
        if not isinstance(batch, (list, tuple)) or len(batch) < 2:
            raise TypeError(
                "a batch must be a tuple (images, labels) or (images, ..., labels); got "
                f"{type(batch).__name__}{'' if not isinstance(batch, (list, tuple)) else f' of length {len(batch)}'}"
            )
        return tuple(b.to(self.device, non_blocking=True) if isinstance(b, torch.Tensor) else b for b in batch)

    # --- overridable per-batch steps -----------------------------------------------------------
    def compute_loss(self, batch: tuple) -> torch.Tensor:
        """Loss of one training batch (already on the device, inside autocast)."""
        images, labels = batch[0], batch[-1]
        if getattr(self.loss_fn, "needs_features", False):  # e.g. a classifier head on the features
            embeddings, features = self.net(images, return_features=True)
            with torch.autocast(device_type=self.device.type, enabled=False):
                return self.loss_fn(embeddings.float(), labels, features=features.float())
        embeddings = self.net(images)
        # The loss (distances, mining, guide targets) in float32, whatever the autocast dtype.
        with torch.autocast(device_type=self.device.type, enabled=False):
            return self.loss_fn(embeddings.float(), labels)

    def embed_batch(self, batch: tuple) -> torch.Tensor:
        """Embeddings of one batch (eval mode, inference mode, inside autocast)."""
        return self.model(batch[0])

    def feature_batch(self, batch: tuple) -> torch.Tensor:
        """``model.features(x)`` of one batch: what the SVM stage reads with ``represent="features"``."""
        return self.model.features(batch[0])

    # --- embeddings -----------------------------------------------------------------------------
    def embed(self, loader: Iterable, desc: str = "embed", features: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """(embeddings float32 (N, D), labels int64 (N,)) of a whole loader, in eval mode
        (``features=True``: :meth:`feature_batch` instead of :meth:`embed_batch`).

        Under DDP every rank gets the whole result: a loader over a rank's training shard is
        embedded by its rank, any other DataLoader is sliced across ranks; the parts are gathered
        in rank order (for a sliced loader, that is the loader's order)."""
        if not self.dist.enabled:
            return self._embed_local(loader, desc, features=features)
        if isinstance(loader, DataLoader) and distributed.shard_of(loader.dataset) is None:
            part = distributed.chunk(len(loader.dataset), self.dist.rank, self.dist.world_size)
            loader = DataLoader(torch.utils.data.Subset(loader.dataset, list(part)),
                                batch_size=loader.batch_size or 64, shuffle=False, num_workers=loader.num_workers,
                                collate_fn=loader.collate_fn, pin_memory=loader.pin_memory)
        emb, y = self._embed_local(loader, desc, allow_empty=True, features=features)
        emb, y = distributed.gather_concat((emb, y), self.dist)
        if not len(y):
            raise ValueError(f"{desc}: the loader yielded no batches (empty dataset?)")
        return emb, y

    def _embed_local(self, loader: Iterable, desc: str, allow_empty: bool = False,
                     features: bool = False) -> tuple[np.ndarray, np.ndarray]:
        step = self.feature_batch if features else self.embed_batch
        was_training = self.model.training
        self.model.eval()
        chunks, labels = [], []
        try:
            with torch.inference_mode(), self._autocast():
                for batch in tqdm(loader, desc=desc, leave=False, disable=not self.progress, dynamic_ncols=True):
                    batch = self._to_device(batch)
                    chunks.append(step(batch).float().cpu())
                    labels.append(batch[-1].cpu())
        finally:
            self.model.train(was_training)
        if not chunks:
            if allow_empty:  # a rank whose slice is empty (fewer rows than ranks)
                return np.zeros((0, 0), dtype=np.float32), np.zeros(0, dtype=np.int64)
            raise ValueError(f"{desc}: the loader yielded no batches (empty dataset?)")
        emb = torch.cat(chunks).numpy()
        if not np.isfinite(emb).all():
            raise NonFiniteLossError("embeddings", self.epoch, None, "NaN/inf in model output", self.current_lr)
        return emb, torch.cat(labels).numpy().astype(np.int64)

    def _train_eval_loader(self) -> Iterable:
        if self.train_eval_loader is None:
            loader = self.train_loader
            if isinstance(loader, DataLoader) and getattr(loader.dataset, "batched", False):
                # A batched CellDataset yields raw uint8 for training: its eval view normalises.
                from zoo.data.datasets import eval_loader

                self.train_eval_loader = eval_loader(loader)
            elif isinstance(loader, DataLoader):
                augments = bool(getattr(loader.dataset, "train", False)) or getattr(loader.dataset, "transform", None)
                log.log(
                    logging.WARNING if augments else logging.INFO,
                    "no train_eval_loader: validation embeds the training dataset as it is (with its training "
                    "transform, if any); pass train_eval_loader= with augmentation off",
                )
                self.train_eval_loader = DataLoader(
                    loader.dataset, batch_size=loader.batch_size or 64, shuffle=False, drop_last=False,
                    num_workers=loader.num_workers, collate_fn=loader.collate_fn, pin_memory=loader.pin_memory,
                    worker_init_fn=loader.worker_init_fn,
                )
            else:
                self.train_eval_loader = loader
        return self.train_eval_loader

    def _svm_train_loader(self) -> Iterable:
        """The training-eval loader, restricted to a fixed stratified subsample of ``svm_train_max``."""
        loader = self._train_eval_loader()
        if self.svm_train_max is None or getattr(self, "_svm_subsample_loader", None) is not None:
            return getattr(self, "_svm_subsample_loader", None) or loader
        dataset = getattr(loader, "dataset", None)
        targets = getattr(dataset, "targets", None)
        if targets is None and isinstance(dataset, torch.utils.data.TensorDataset):
            targets = dataset.tensors[-1]
        if not isinstance(loader, DataLoader) or targets is None:
            raise TypeError("svm_train_max needs a DataLoader over a dataset with `targets` (or a TensorDataset "
                            "whose last tensor is the labels) as train_eval_loader")
        # Under DDP each rank embeds its own training shard: its share of the subsample.
        max_n = -(-self.svm_train_max // self.dist.world_size) if distributed.shard_of(dataset) else self.svm_train_max
        if len(dataset) <= max_n:
            self._svm_subsample_loader = loader
            return loader
        from zoo.data.datasets import stratified_indices

        idx = stratified_indices(targets, max_n, seed=self.seed)
        self._svm_subsample_loader = DataLoader(
            torch.utils.data.Subset(dataset, idx.tolist()), batch_size=loader.batch_size or 64, shuffle=False,
            num_workers=loader.num_workers, collate_fn=loader.collate_fn, pin_memory=loader.pin_memory)
        return self._svm_subsample_loader

    def train_embeddings(self) -> tuple[np.ndarray, np.ndarray]:
        """Augmentation-free training embeddings (the model's output) of the current epoch, computed
        at most once: what the callbacks (guide targets, curves) work on."""
        return self._train_representation(features=False)

    def svm_embed(self, loader: Iterable, desc: str = "embed") -> tuple[np.ndarray, np.ndarray]:
        """What the SVM stage reads of ``loader``: embeddings, or features with ``represent="features"``."""
        return self.embed(loader, desc, features=self.represent == "features")

    def _train_representation(self, features: bool) -> tuple[np.ndarray, np.ndarray]:
        if self._train_cache_epoch != self.epoch:
            self._train_cache, self._train_cache_epoch = {}, self.epoch
        key = "features" if features else "embedding"
        if key not in self._train_cache:
            self._train_cache[key] = self.embed(self._svm_train_loader(), desc=f"embed train ({key})", features=features)
        return self._train_cache[key]

    # --- one epoch ------------------------------------------------------------------------------
    def _train_epoch(self, epoch: int, max_steps: int | None = None) -> dict[str, float]:
        """One pass over the training loader; ``max_steps`` cuts it short (the budget's last epoch)."""
        self.model.train()
        if isinstance(self.loss_fn, nn.Module):
            self.loss_fn.train()
        n_images, loss_sum, skipped, skipped_total = 0, 0.0, 0, 0
        term_sums: dict[str, float] = {}
        n_batches = 0
        if isinstance(self.batch_transform, nn.Module):
            self.batch_transform.train()
        start = time.perf_counter()
        # DDP: every rank must take the same number of steps (each all-reduce waits for all); the
        # shards' loaders can differ by a batch.
        n_steps = distributed.reduce_min(len(self.train_loader), self.dist) if self.dist.enabled else None
        if max_steps is not None:
            n_steps = max_steps if n_steps is None else min(n_steps, max_steps)
        bar = tqdm(self.train_loader, desc=f"epoch {epoch}/{self.epochs}", leave=False, total=n_steps,
                   disable=not self.progress, dynamic_ncols=True)
        for i, batch in enumerate(bar, start=1):
            if n_steps is not None and i > n_steps:
                break
            batch = self._augment(self._to_device(batch))
            if self._budget_cosine:
                self._budget_lr(epoch, i)
            with self._autocast():
                loss = self.compute_loss(batch)
            value = float(loss.detach())
            if not math.isfinite(value):
                raise NonFiniteLossError("loss", epoch, i, value, self.current_lr)
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            if self.dist.enabled and self._loss_params:
                distributed.average_gradients(self._loss_params, self.dist)
            if self.amp:
                self.scaler.unscale_(self.optimizer)
            grad_norm = self._grad_norm()
            finite = math.isfinite(grad_norm)
            if not finite:
                if not self.precision.enabled:
                    raise NonFiniteLossError("gradients", epoch, i, grad_norm, self.current_lr)
                # AMP: GradScaler skips this step and lowers its scale. bf16 on CPU: oneDNN's bf16
                # convolution backward returns NaN now and then on 1-2 px feature maps (seen with
                # 16 px inputs, never at 32+ px): the step is skipped alike, not the run.
                skipped += 1
                skipped_total += 1
                if skipped > MAX_SKIPPED_AMP_STEPS:
                    raise NonFiniteLossError("gradients", epoch, i, f"{skipped} inf/NaN steps in a row under "
                                             f"{self.precision.name} autocast", self.current_lr)
            else:
                skipped = 0
            if finite or self.amp:
                self.scaler.step(self.optimizer)
                self.scaler.update()
            self.global_step += 1
            if self.dist.enabled and self.global_step == 1 and isinstance(self.loss_fn, nn.Module):
                # Losses initialise state from their first batch (the distance loss's scale), and
                # each rank's first batch differs: rank 0's initialisation for all.
                distributed.sync_buffers(self.loss_fn, self.dist, parameters=True)
            n_batches += 1
            bs = int(batch[-1].shape[0])
            n_images += bs
            loss_sum += value * bs
            for name, v in getattr(self.loss_fn, "terms", {}).items():
                term_sums[name] = term_sums.get(name, 0.0) + float(v) * bs
            for cb in self.callbacks:
                cb.on_batch_end(self, epoch, i, value)
            bar.set_postfix(loss=f"{value:.4f}", refresh=False)
        seconds = time.perf_counter() - start
        if max_steps is None:  # a whole epoch's steps (the budget's cosine and last epoch count in them)
            self._steps_per_epoch = n_batches
        if n_batches == 0:
            raise ValueError("the training loader yielded no batches (empty dataset, or drop_last with too few samples)")
        if self.dist.enabled:  # the epoch's loss and throughput over every rank's shard
            distributed.sync_buffers(self.model, self.dist)
            if isinstance(self.loss_fn, nn.Module):
                distributed.sync_buffers(self.loss_fn, self.dist, parameters=True)
            loss_sum, n_images, *sums = distributed.reduce_sum([loss_sum, n_images, *term_sums.values()], self.dist)
            term_sums = dict(zip(term_sums, sums))
        self._check_weights(epoch)
        out = {
            "train_loss": loss_sum / n_images,
            "train_seconds": seconds,
            "train_images_per_s": n_images / seconds if seconds > 0 else float("nan"),
        }
        if skipped_total:
            out["train_skipped_steps"] = float(skipped_total)
        if max_steps is not None and self._steps_per_epoch:
            out["epoch_fraction"] = n_batches / self._steps_per_epoch
        out.update({f"train_loss_{k}": v / n_images for k, v in term_sums.items()})
        return out

    def _augment(self, batch: tuple) -> tuple:
        """The batched augmentation (on the device): images, and a uint8 mask batch alongside."""
        if self.batch_transform is None:
            return batch
        images = batch[0]
        if len(batch) >= 3 and isinstance(batch[1], torch.Tensor) and batch[1].dtype == torch.uint8 \
                and batch[1].shape[-2:] == images.shape[-2:]:
            images, masks = self.batch_transform(images, batch[1])
            return (images, masks, *batch[2:])
        return (self.batch_transform(images), *batch[1:])

    def training_progress(self, epoch: int, step: int = 1) -> float:
        """Share of training done before ``step`` of ``epoch`` (1-based), in [0, 1]: the epochs run
        over ``epochs``, or under a budget the share of its time spent, whichever is further
        along. The budget's cosine follows it, and so can a callback's schedule."""
        per_epoch = self._steps_per_epoch
        if per_epoch is None:  # first epoch: the loader's length if it has one
            try:
                per_epoch = len(self.train_loader)
            except TypeError:
                per_epoch = None
        within = min(1.0, (step - 1) / per_epoch) if per_epoch else 0.0
        done = ((epoch - 1) + within) / self.epochs
        if self.budget is None:
            return min(1.0, done)
        # DDP: rank 0's clock, or each rank's own would give each its own learning rate (or schedule)
        # and the replicas, stepping the same averaged gradients, would drift apart.
        elapsed = distributed.broadcast_float(self.budget.progress(), self.dist) if self.dist.enabled \
            else self.budget.progress()
        if self._plan_end is None:
            return min(1.0, max(elapsed, done))
        # budget_schedule=epochs: the share of the planned epochs. A plan that grows (epochs ran faster
        # than predicted) must not raise the learning rate again: the floor keeps the decay monotone.
        planned = ((epoch - 1) + within) / self._plan_end
        self._progress_floor = min(1.0, max(self._progress_floor, elapsed, done, planned))
        return self._progress_floor

    def _budget_lr(self, epoch: int, step: int) -> None:
        """Cosine decay over the budget (or the epochs, whichever is further along)."""
        from .budget import cosine_factor

        factor = cosine_factor(self.training_progress(epoch, step))
        for group, base in zip(self.optimizer.param_groups, self._base_lrs):
            group["lr"] = base * factor

    def _grad_norm(self) -> float:
        """Total gradient norm (clipping to ``grad_clip`` when set): the guard's NaN/inf probe."""
        if self.grad_clip is not None:
            return float(torch.nn.utils.clip_grad_norm_(self.params, self.grad_clip))
        grads = [p.grad for p in self.params if p.grad is not None]
        return float(torch.nn.utils.get_total_norm(grads)) if grads else 0.0

    def _check_weights(self, epoch: int) -> None:
        for name, p in self.model.named_parameters():
            if not torch.isfinite(p).all():
                raise NonFiniteLossError("weights", epoch, None, f"NaN/inf in parameter {name}", self.current_lr)

    def _validate(self, epoch: int) -> dict[str, float]:
        start = time.perf_counter()
        # What the SVM stage saw (also read by the tuning objective): embeddings or features.
        self.last_train_embeddings = self._train_representation(features=self.represent == "features")
        train_emb, train_y = self.last_train_embeddings
        self.last_val_embeddings = self.svm_embed(self.val_loader, desc="embed val")
        val_emb, val_y = self.last_val_embeddings
        out: dict[str, float] = {"embed_seconds": time.perf_counter() - start}
        if self.svm_template is None:
            return out
        start = time.perf_counter()
        svm = clone(self.svm_template)
        search = self._search_due(self._validations_done())
        params = self.svm_params
        if self._adaptive_val and not self._late_search_done:
            if epoch > 1 and self.budget.progress() >= self.budget.select_from:
                # The first validation of the selection phase: gamma/C from epoch 1's nearly untrained
                # embeddings would score (and, refitted, package) the final epochs.
                search = self._late_search_done = True
            elif params is None:
                # The early validation only measures what a validation costs and catches a broken
                # run; its gamma/C would be searched again in the selection phase anyway, so it
                # refits the default pair (the search cost 6 of the quickstart's 246 s, 16 s of
                # PBC's 720) and the stop rule charges the later search an estimate until measured.
                search, params = False, svm.default_params()
        if search:
            svm.fit(train_emb, train_y)
            # What the grid search added to this validation; the budget's stop rule adds it back only
            # for a validation that will search again (see _validation_cost).
            self._search_seconds = max(0.0, svm.fit_seconds_ - svm.final_fit_seconds_)
        else:
            svm.refit_only(train_emb, train_y, params=params)
            if self.svm_params is None:  # no search measured yet: what one would add
                self._search_seconds = svm.search_seconds_estimate()
        self.svm, self.svm_params = svm, dict(svm.best_params_)
        pred = svm.predict(val_emb)
        classes = self.classes
        if classes is None:
            classes = list(range(int(max(train_y.max(), val_y.max())) + 1))
        metrics = classification_metrics(val_y, pred, classes, severity=self.severity, ontology=self.ontology)
        self.last_val_metrics = metrics
        out.update({k: v for k, v in scalar_metrics(metrics, "val_").items() if k != "val_n"})
        out["svm_seconds"] = time.perf_counter() - start
        out["svm_searched"] = float(search)
        out["svm_C"] = float(svm.best_params_["C"])
        gamma = svm.best_params_["gamma"]
        if isinstance(gamma, (int, float)):
            out["svm_gamma"] = float(gamma)
        if search and math.isfinite(getattr(svm, "best_score_", float("nan"))):
            out["svm_cv_score"] = float(svm.best_score_)
        return out

    def _validation_cost(self, measured: float) -> float:
        """The budget's estimate of the *next* validation from this one's ``measured`` seconds: with
        or without the SVM grid search, as the next one will be. Most validations only refit gamma/C
        (``svm_every``), so charging every future validation the search it does not run ended runs
        an epoch early (PBC, 12 minutes: 675 of 720 s used, the last validation 8 s, not 16)."""
        searched = bool(self.epoch_metrics.get("svm_searched", 0.0))
        base = measured - (self._search_seconds if searched else 0.0)
        return base + (self._search_seconds if self._next_validation_searches() else 0.0)

    def _next_validation_searches(self) -> bool:
        """Will the next validation grid-search the SVM (the rule of :meth:`_validate`)? Counted
        after this epoch's validation, before it enters ``history``."""
        if self.svm_template is None:
            return False
        if self._adaptive_val and not self._late_search_done:
            return True
        return self._search_due(self._validations_done() + 1)

    def _validations_done(self) -> int:
        """Validations already in ``history`` (the running epoch's is not there yet)."""
        return sum(1 for row in self.history if "embed_seconds" in row)

    def _search_due(self, n_val: int) -> bool:
        """The ``svm_every`` rule: the validation after ``n_val`` earlier ones grid-searches gamma/C
        (always when none were searched yet); the others refit with the last ones."""
        return self.svm_params is None or n_val % self.svm_every == 0

    # --- fit ------------------------------------------------------------------------------------
    def fit(self) -> FitResult:
        if self._fit_called:
            raise RuntimeError("Trainer.fit() can run once; build a new Trainer (resume=True continues a checkpoint)")
        self._fit_called = True
        start_epoch = 1
        if self.resume and ckpt.last_checkpoint(self.checkpoint_dir) is not None:
            start_epoch = self._load_last() + 1
        else:
            if self.resume:
                log.info("resume requested but no checkpoint in %s: starting afresh", self.checkpoint_dir)
            seed_everything(self.seed, deterministic=self.deterministic)
        if self.device.type == "cuda" and not self.deterministic:
            torch.backends.cudnn.benchmark = True
        if self.budget is not None:
            self.budget.start()

        for cb in self.callbacks:
            cb.on_fit_start(self)
        if self._finished:
            log.info("checkpoint in %s is of a finished run (epoch %d): nothing to train", self.checkpoint_dir,
                     self.epoch)
        epoch_bar = tqdm(total=self.epochs, initial=start_epoch - 1, desc="epochs", unit="epoch",
                         disable=not self.progress or self._finished, dynamic_ncols=True)
        try:
            for epoch in range(start_epoch, self.epochs + 1):
                if self._finished:
                    break
                self._run_epoch(epoch)
                epoch_bar.update(1)
                epoch_bar.set_postfix(self._postfix(), refresh=True)
                if self._finished:
                    break
        finally:
            epoch_bar.close()

        if self.best_state is not None:
            self.model.load_state_dict(self.best_state)
        if self._stopped_on_budget:
            fraction = self.history[-1].get("epoch_fraction") if self.history else None
            how = (f"its last epoch trained {fraction:.0%} of its steps, what fit" if fraction is not None
                   else "another epoch would not fit")
            if self._plan_end is not None:
                how += f"; the cosine spanned the {self._plan_end:g} epochs planned to fit (budget_schedule=epochs)"

            log.warning("stopped on budget: %.1f of %.1f minutes used after epoch %d (%s)",
                        self.budget.elapsed / 60, self.budget.seconds / 60, self.epoch, how)
        result = FitResult(
            history=list(self.history), best_epoch=self.early_stopping.best_epoch,
            best_metric=self.early_stopping.best if self.early_stopping.best_epoch is not None else None,
            monitor=self.monitor, mode=self.mode, stopped_early=self._stopped_early, epochs_run=self.epoch,
            svm=self.best_svm, resumed_from=self._resumed_from, extra=dict(self.extra),
            stopped_on_budget=self._stopped_on_budget, precision=self.precision.name,
        )
        for cb in self.callbacks:
            cb.on_fit_end(self, result)
        return result

    def _postfix(self) -> dict[str, str]:
        m = self.epoch_metrics
        out = {"loss": f"{m.get('train_loss', float('nan')):.4f}"}
        if self.monitor in m and self.monitor != "train_loss":
            out[self.monitor] = f"{m[self.monitor]:.4f}"
        if self.early_stopping.best_epoch is not None:
            out["best"] = f"{self.early_stopping.best:.4f}@{self.early_stopping.best_epoch}"
        return out

    def _run_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.should_stop = False
        self.last_train_embeddings = self.last_val_embeddings = None
        epoch_start = time.perf_counter()
        if self._budget_cosine:
            self._budget_lr(epoch, 1)
        self.epoch_metrics = {"epoch": float(epoch), "lr": self.current_lr}
        guide = time.perf_counter()
        for cb in self.callbacks:
            cb.on_epoch_start(self, epoch)
        guide_seconds = time.perf_counter() - guide
        clock = self.budget.clock if self.budget is not None else time.perf_counter
        mark = clock()
        shortened = self._last_steps is not None
        self.epoch_metrics.update(self._train_epoch(epoch, max_steps=self._last_steps))
        last = epoch >= self.epochs
        if self.budget is not None:
            self.budget.record(clock() - mark)
        due = (self.budget.validation_due(epoch, self._next_val) if self._adaptive_val
               else epoch % self.val_every == 0)
        if shortened:  # the budget's shortened last epoch: validated, and the run ends
            last = self._stopped_on_budget = True
        elif self._plan_end is not None and epoch >= self._plan_end - 1e-9 and not last:
            # budget_schedule=epochs: the planned last epoch has trained and the cosine is at 0; an
            # epoch more, if the machine sped up, would train at a rate of ~0.
            last = self._stopped_on_budget = True
        elif self.budget is not None and not last:
            # Reserve this epoch's validation only when it will run: under adaptive validation most
            # epochs do not validate, and reserving one anyway ended budgeted runs ~half an epoch early.
            validates = self.val_loader is not None
            if not self.budget.another_epoch_fits(validate_now=validates and due):
                # With the budget's last_epoch_min, what still fits trains as a shortened last epoch
                # (else the run stops here: last_epoch_steps is 0). Under adaptive validation this
                # epoch's validation is dropped for it (the selection is among the last epochs, and the
                # shortened one, at the end of the cosine, is one of them); otherwise it is paid first.
                pay_now = validates and due and not self._adaptive_val
                steps = self.budget.last_epoch_steps(self._steps_per_epoch, validate_now=pay_now,
                                                     validate_last=validates)
                if steps:
                    self._last_steps, due = steps, pay_now
                else:
                    last = self._stopped_on_budget = True
            if self._last_steps is not None and self.budget.schedule == "epochs" and self._steps_per_epoch:
                self._plan_end = epoch + self._last_steps / self._steps_per_epoch
        if self.budget is not None:
            # DDP: rank 0's clock decides for all ranks
            last, self._stopped_on_budget, self._last_steps, due, self._plan_end = distributed.broadcast(
                (last, self._stopped_on_budget, self._last_steps, due, self._plan_end), self.dist)
            if self._stopped_on_budget:
                self.epoch_metrics["stopped_on_budget"] = 1.0
        validate = self.val_loader is not None and (last or due)
        if validate:
            mark = clock()
            self.epoch_metrics.update(self._validate(epoch))
            if self.budget is not None:
                self.budget.val_time = self._validation_cost(clock() - mark)
            if self._adaptive_val:
                self._next_val = epoch + self.budget.validation_interval()
                self.epoch_metrics["val_interval"] = float(self._next_val - epoch)
        self.scheduler.step()
        guide, mark = time.perf_counter(), clock()
        for cb in self.callbacks:
            cb.on_epoch_end(self, epoch, self.epoch_metrics)
        self.epoch_metrics["guide_seconds"] = guide_seconds + time.perf_counter() - guide
        if self.budget is not None:  # guide refreshes recur every epoch: count them with training
            self.budget.train_times[-1] += clock() - mark
        if self.budget is not None and self.budget.schedule == "epochs" and not last and self._last_steps is None:
            # Planned once this epoch's costs are all known (its validation and guide refresh paid):
            # the epoch the run will end with, which the cosine ends with (zoo.train.budget).
            self._plan_end = min(float(self.epochs), self.budget.planned_end(
                epoch, self._steps_per_epoch, validate_now=False, validates=self.val_loader is not None,
                val_every=None if self._adaptive_val else self.val_every, next_val=self._next_val))
        if self._plan_end is not None:
            self.epoch_metrics["planned_epochs"] = float(self._plan_end)
        self.epoch_metrics["epoch_seconds"] = time.perf_counter() - epoch_start
        self.epoch_metrics["validated"] = float(validate)
        if self.dist.enabled:  # rank 0's metrics and stop request: every rank decides alike
            self.epoch_metrics, self.should_stop, self._next_val, self._plan_end = distributed.broadcast(
                (self.epoch_metrics, self.should_stop, self._next_val, self._plan_end), self.dist)

        improved = False
        if self.monitor not in self.epoch_metrics:
            if validate or self.val_loader is None:
                raise KeyError(
                    f"monitor {self.monitor!r} is not among the epoch metrics: {', '.join(sorted(self.epoch_metrics))}"
                )
        else:
            value = float(self.epoch_metrics[self.monitor])
            improved = self.early_stopping.step(value, epoch)
        if improved:
            self.best_state = {k: v.detach().to("cpu", copy=True) for k, v in self.model.state_dict().items()}
            self.best_svm = copy.deepcopy(self.svm) if self.svm is not None else None
        if self.early_stopping.best_epoch is not None:
            self.epoch_metrics[f"best_{self.monitor}"] = self.early_stopping.best
        self.history.append(dict(self.epoch_metrics))
        self.logger.log_metrics({k: float(v) for k, v in self.epoch_metrics.items() if k != "epoch"}, step=epoch)
        log.info("epoch %d/%d: %s", epoch, self.epochs,
                 ", ".join(f"{k}={v:.4g}" for k, v in self.epoch_metrics.items() if k != "epoch"))

        self._stopped_early = self.early_stopping.should_stop or self.should_stop
        self._finished = self._stopped_early or self._stopped_on_budget or epoch >= self.epochs
        if self.checkpoint_dir is not None and self.dist.is_main:  # every rank reads them to resume
            if improved:
                ckpt.save_torch({"epoch": epoch, "metric": self.epoch_metrics[self.monitor], "monitor": self.monitor,
                                 "model": self.best_state}, self.checkpoint_dir / ckpt.BEST)
                if self.best_svm is not None:
                    ckpt.save_svm(self.best_svm, self.checkpoint_dir / ckpt.BEST_SVM)
            ckpt.save_torch(self._state(), self.checkpoint_dir / ckpt.LAST)

    # --- checkpoints ----------------------------------------------------------------------------
    def _loader_generator(self) -> torch.Generator | None:
        """The training loader's own generator (shuffling, sampler, worker seeds), when it has one:
        saved with the global RNG so a resumed run sees the same batches as an uninterrupted one."""
        return getattr(self.train_loader, "generator", None)

    def _state(self) -> dict[str, Any]:
        return {
            "format": ckpt.FORMAT_VERSION,
            "epoch": self.epoch,
            "global_step": self.global_step,
            "finished": self._finished,
            "stopped_early": self._stopped_early,
            "monitor": self.monitor,
            "mode": self.mode,
            "model": self.model.state_dict(),
            "loss_fn": self.loss_fn.state_dict() if isinstance(self.loss_fn, nn.Module) else None,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "early_stopping": self.early_stopping.state_dict(),
            "history": self.history,
            "svm_params": self.svm_params,
            "rng": get_rng_state(),
            "loader_generator": self._loader_generator().get_state() if self._loader_generator() else None,
            "callbacks": {key: cb.state_dict() for key, cb in zip(state_keys(self.callbacks), self.callbacks)},
            "extra": self.extra,
            "budget": self.budget.state_dict() if self.budget is not None else None,
            "stopped_on_budget": self._stopped_on_budget,
            "next_val": self._next_val,
            "late_search_done": self._late_search_done,
            "search_seconds": self._search_seconds,
            "last_steps": self._last_steps,
            "steps_per_epoch": self._steps_per_epoch,
            "plan_end": self._plan_end,
            "progress_floor": self._progress_floor,
        }

    def _load_last(self) -> int:
        path = ckpt.last_checkpoint(self.checkpoint_dir)
        state = ckpt.load_torch(path, map_location="cpu")
        if state.get("monitor") != self.monitor or state.get("mode") != self.mode:
            raise ValueError(
                f"checkpoint {path} monitored {state.get('monitor')!r} ({state.get('mode')}), this Trainer "
                f"{self.monitor!r} ({self.mode}); resume with the same settings or use another checkpoint_dir"
            )
        self.model.load_state_dict(state["model"])
        if isinstance(self.loss_fn, nn.Module) and state.get("loss_fn") is not None:
            self.loss_fn.load_state_dict(state["loss_fn"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.early_stopping.load_state_dict(state["early_stopping"])
        self.history = list(state["history"])
        self.svm_params = state.get("svm_params")
        self.epoch = int(state["epoch"])
        self.global_step = int(state.get("global_step", 0))
        self._stopped_early = bool(state.get("stopped_early", False))
        self._stopped_on_budget = bool(state.get("stopped_on_budget", False))
        self._next_val = int(state.get("next_val", self.epoch + 1))
        self._late_search_done = bool(state.get("late_search_done", False))
        self._search_seconds = float(state.get("search_seconds", 0.0))
        self._last_steps = state.get("last_steps")
        self._steps_per_epoch = state.get("steps_per_epoch")
        self._plan_end = state.get("plan_end")
        self._progress_floor = float(state.get("progress_floor", 0.0))
        if self.budget is not None and state.get("budget"):
            self.budget.load_state_dict(state["budget"])
        # A run that ended at its epoch limit continues when resumed with a larger `epochs`.
        self._finished = bool(state.get("finished", False)) and (
            self._stopped_early or self._stopped_on_budget or self.epoch >= self.epochs)
        self.extra = {**dict(state.get("extra") or {}), **self.extra}
        saved_cb = state.get("callbacks", {})
        for key, cb in zip(state_keys(self.callbacks), self.callbacks):
            if key in saved_cb:
                cb.load_state_dict(saved_cb[key])
        best_path = self.checkpoint_dir / ckpt.BEST
        if best_path.is_file():
            self.best_state = ckpt.load_torch(best_path)["model"]
        svm_path = self.checkpoint_dir / ckpt.BEST_SVM
        if svm_path.is_file():
            self.best_svm = ckpt.load_svm(svm_path)
        set_rng_state(state["rng"])
        if state.get("loader_generator") is not None and self._loader_generator() is not None:
            self._loader_generator().set_state(state["loader_generator"])
        self._resumed_from = self.epoch
        # On the run's charts: where an interrupted run picked up again (after a crash, a torchrun restart)
        self.logger.log_metrics({"resumed_after_epoch": float(self.epoch)}, step=self.epoch)
        log.info("resumed from %s after epoch %d (best %s=%.4g at epoch %s)", path, self.epoch, self.monitor,
                 self.early_stopping.best, self.early_stopping.best_epoch)
        return self.epoch


def make_adamw(params: list, lr: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW with PyTorch's fused kernel where the parameters' device has one (CPU, CUDA, ...).

    On a CPU torch's default is the per-parameter loop (``foreach`` is a CUDA default): resnet18's
    62 tensors cost ~17 ms a step there, the fused kernel ~9 ms, ~4 % of a 64 px bf16 training step
    on 2 cores (measured interleaved in one process). Same update rule; where fusing is not supported (an
    exotic device or dtype) torch refuses it at construction and the default loop is used."""
    try:
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, fused=True)
    except (RuntimeError, ValueError) as err:
        log.debug("fused AdamW unavailable (%s): the per-parameter loop", err)
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)


def _input_shape(loader: Any) -> tuple[int, int, int, int] | None:
    """(batch, 3, S, S) of the training loader's images, from its dataset's ``img_size`` (read
    without drawing a batch: that would consume the random state the run's order depends on)."""
    size = getattr(getattr(loader, "dataset", None), "img_size", None)
    batch = getattr(loader, "batch_size", None) or 64
    return (int(batch), 3, int(size), int(size)) if size else None
