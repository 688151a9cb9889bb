"""Torch datasets and loaders over a manifest.

Decoding a 360 px JPEG costs milliseconds; on two cores that, not the network, bounds an epoch.
``CellDataset(cache=True)`` therefore decodes every image once, at training size, into one uint8
tensor (N, 3, S, S) kept in shared memory; augmentation then runs on those small tensors every
epoch. Masks (nucleus 255 / cytoplasm 128 / background 0) are cached alongside and follow the
image through every geometric transform as ``tv_tensors.Mask``.

``batch_augment=True`` (the default of :func:`make_loaders` when the augmentations allow it) skips
the per-sample transforms altogether: a training batch is a slice of the uint8 cache and is
augmented as a whole on the training device by :class:`zoo.data.batch_augment.BatchAugment`
(the dataset's ``batch_transform``, which :class:`zoo.train.Trainer` applies in its training
step); evaluation batches are converted and normalised as one tensor.
"""

from __future__ import annotations

import copy
import logging
import os
import warnings
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, Subset, WeightedRandomSampler
from torchvision import tv_tensors
from tqdm.auto import tqdm

from .images import load_rgb_resized
from .manifest import resolve_path
from .transforms import eval_transform, train_transform

log = logging.getLogger(__name__)

# Never let the cache take more than this share of physical memory; beyond it decode per epoch.
MAX_CACHE_FRACTION = 0.5


class CellDataset(Dataset):
    """Cell images of a manifest frame as ``(image, label_index)`` or ``(image, mask, label_index)``.

    ``df``: manifest rows (columns image, label[, mask]); ``root``: dataset root; ``classes``:
    canonical ids defining the label indices; ``train`` picks :func:`train_transform` or
    :func:`eval_transform` unless ``transform`` is given (a v2 transform taking an image, or an
    image and a ``tv_tensors.Mask``). ``prepared_dir`` resolves the ``@prepared/`` paths of files
    written by ingest (``PreparedDataset.path``). ``augment``: keyword arguments for
    ``train_transform``. ``cache_workers``: processes decoding the cache.
    ``batch_augment``: no per-sample transform (see the module docstring): training samples are
    the uint8 cache (augmented later, batch-wise, by ``self.batch_transform``), evaluation samples
    are normalised batch-wise in ``__getitems__``. Setting ``transform`` switches back to the
    per-sample path.
    Returned masks are uint8 (1, S, S) with the stored levels; rows without a mask give zeros.
    """

    def __init__(
        self,
        df: pd.DataFrame,
        root: str | Path,
        classes: Sequence[str],
        img_size: int,
        train: bool,
        cache: bool = True,
        return_mask: bool = False,
        transform: Callable | None = None,
        *,
        prepared_dir: str | Path | None = None,
        augment: dict | None = None,
        cache_workers: int = 0,
        batch_augment: bool = False,
    ):
        self.classes = list(classes)
        self.class_to_idx = {c: i for i, c in enumerate(self.classes)}
        unknown = sorted(set(df["label"]) - set(self.class_to_idx))
        if unknown:
            raise ValueError(f"labels {unknown} are not among classes {self.classes}")
        self.img_size = int(img_size)
        self.train = bool(train)
        self.return_mask = bool(return_mask)
        self.root, self.prepared_dir = Path(root), prepared_dir
        self.paths = [resolve_path(p, root, prepared_dir) for p in df["image"]]
        masks = df["mask"] if "mask" in df.columns else pd.Series([None] * len(df))
        self.mask_paths = [resolve_path(m, root, prepared_dir) if isinstance(m, str) else None for m in masks]
        if self.return_mask and not any(self.mask_paths):
            raise ValueError("return_mask=True but no row of this dataset has a mask")
        self.targets = torch.tensor([self.class_to_idx[c] for c in df["label"]], dtype=torch.long)
        self.shard: tuple[int, int] | None = None  # (rank, world_size): a DDP rank's share (make_loaders)
        self.batch_transform = None
        if batch_augment and transform is None:
            from .batch_augment import BatchAugment

            # Built for training and evaluation alike: a copy switched to train=False (the
            # augmentation-free training embeddings) only calls its normalisation.
            self.batch_transform = BatchAugment(**(augment or {}))
            self.transform = None
        else:
            self.transform = transform or (train_transform(self.img_size, **(augment or {})) if train
                                           else eval_transform(self.img_size))
        self._images: torch.Tensor | None = None
        self._masks: torch.Tensor | None = None
        if cache:
            self.fill_cache(workers=cache_workers)

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def cached(self) -> bool:
        return self._images is not None

    def decode(self, i: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Image i as a uint8 (3, S, S) tensor and its mask as uint8 (1, S, S) (or None)."""
        img = load_rgb_resized(self.paths[i], self.img_size)
        image = torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1).contiguous()
        mask = None
        if self.return_mask:
            mask = torch.zeros((1, self.img_size, self.img_size), dtype=torch.uint8)
            if self.mask_paths[i] is not None:
                m = Image.open(self.mask_paths[i]).convert("L").resize((self.img_size, self.img_size), Image.Resampling.NEAREST)
                mask = torch.from_numpy(np.asarray(m).copy())[None]
        return image, mask

    def fill_cache(self, workers: int = 0) -> None:
        """Decode every image once at training size (a no-op when already cached)."""
        if self.cached:
            return
        n, s = len(self), self.img_size
        need = n * s * s * (3 + (1 if self.return_mask else 0))
        budget = _physical_memory() * MAX_CACHE_FRACTION
        if budget and need > budget:
            warnings.warn(f"decoded cache would need {need / 2**30:.1f} GiB (> {MAX_CACHE_FRACTION:.0%} of RAM); "
                          "decoding on the fly instead", RuntimeWarning, stacklevel=2)
            return
        images = torch.empty((n, 3, s, s), dtype=torch.uint8)
        masks = torch.empty((n, 1, s, s), dtype=torch.uint8) if self.return_mask else None
        loader = DataLoader(_Decode(self), batch_size=64, num_workers=int(workers), collate_fn=_stack_decoded)
        pos = 0
        with tqdm(total=n, desc=f"caching {n} images at {s}px", unit="img", leave=False) as bar:
            for imgs, msks in loader:
                images[pos:pos + len(imgs)] = imgs
                if masks is not None:
                    masks[pos:pos + len(imgs)] = msks
                pos += len(imgs)
                bar.update(len(imgs))
        # Shared memory: DataLoader workers (fork or spawn) read the store instead of copying it.
        self._images = images.share_memory_()
        self._masks = masks.share_memory_() if masks is not None else None

    @property
    def batched(self) -> bool:
        """No per-sample transform: uint8 training samples, batch-wise normalised evaluation ones."""
        return self.transform is None and self.batch_transform is not None

    def __getitems__(self, indices: Sequence[int]) -> list:
        """A batch of samples in one slice of the cache (what DataLoader calls when it exists)."""
        if not (self.batched and self._images is not None):
            return [self[int(i)] for i in indices]
        idx = torch.as_tensor(indices, dtype=torch.long)
        images = self._images[idx]
        if not self.train:
            images = self.batch_transform.normalize(images)
        ys = self.targets[idx].tolist()
        # DataLoader's default collate stacks these views again: a copy, not a Python transform.
        if self.return_mask:
            return list(zip(images.unbind(0), self._masks[idx].unbind(0), ys))
        return list(zip(images.unbind(0), ys))

    def __getitem__(self, i: int):
        if self._images is not None:
            image, mask = self._images[i], (self._masks[i] if self._masks is not None else None)
        else:
            image, mask = self.decode(i)
        if self.batched:
            if mask is None and self.return_mask:
                mask = torch.zeros((1, self.img_size, self.img_size), dtype=torch.uint8)
            if not self.train:
                image = self.batch_transform.normalize(image[None])[0]
            y = int(self.targets[i])
            return (image, mask, y) if self.return_mask else (image, y)
        image = tv_tensors.Image(image)
        y = int(self.targets[i])
        if self.return_mask:
            out, out_mask = self.transform(image, tv_tensors.Mask(mask))
            return out.as_subclass(torch.Tensor), out_mask.as_subclass(torch.Tensor), y
        return self.transform(image).as_subclass(torch.Tensor), y


class _Decode(Dataset):
    """Decoding only (no transform): what the cache is filled from, possibly in workers."""

    def __init__(self, ds: CellDataset):
        self.ds = ds

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, i: int):
        return self.ds.decode(i)


def _stack_decoded(batch):
    imgs = torch.stack([b[0] for b in batch])
    masks = torch.stack([b[1] for b in batch]) if batch[0][1] is not None else None
    return imgs, masks


def _physical_memory() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # not POSIX: no budget check
        return 0


def stratified_subsample(df: pd.DataFrame, limit: int | None, seed: int = 0,
                         by: Sequence[str] = ("label", "fold")) -> pd.DataFrame:
    """At most ``limit`` rows, keeping the proportions of every (label, fold) cell (largest
    remainder rounding, at least one row per cell while the budget allows). Deterministic."""
    if limit is None or int(limit) >= len(df):
        return df
    limit = int(limit)
    if limit < 1:
        raise ValueError(f"limit must be >= 1, got {limit}")
    keys = [k for k in by if k in df.columns]
    # One key by name, not as a list: pandas yields tuple group keys for a one-item list, which
    # would never match the quota's index (and every group would get nothing).
    keys = keys[0] if len(keys) == 1 else keys
    sizes = df.groupby(keys, sort=True).size()
    exact = sizes / sizes.sum() * limit
    quota = np.floor(exact).astype(int)
    if limit >= len(sizes):
        quota = quota.clip(lower=1)
    rest = limit - int(quota.sum())
    if rest > 0:
        order = (exact - np.floor(exact)).sort_values(ascending=False, kind="stable").index
        for key in order[:rest]:
            quota[key] += 1
    elif rest < 0:  # the minimum of one per cell overshot: take back from the largest cells
        for key in quota.sort_values(ascending=False, kind="stable").index[:-rest]:
            quota[key] -= 1
    quota = quota.clip(upper=sizes)
    rng = np.random.RandomState(seed)
    parts = []
    for key, grp in df.groupby(keys, sort=True):
        k = int(quota.get(key, 0))
        if k > 0:
            parts.append(grp.iloc[np.sort(rng.choice(len(grp), size=k, replace=False))])
    return pd.concat(parts).sort_index() if parts else df.iloc[:0]


def resolve_num_workers(num_workers: int | str) -> int:
    """'auto': one worker per spare core (at most 4) so augmentation overlaps the training step."""
    if num_workers == "auto":
        return max(0, min(4, (os.cpu_count() or 1) - 1))
    n = int(num_workers)
    if n < 0:
        raise ValueError(f"num_workers must be >= 0 or 'auto', got {num_workers}")
    return n


def make_loaders(
    prepared: Any,
    fold: int,
    img_size: int,
    batch_size: int,
    num_workers: int | str = "auto",
    limit: int | None = None,
    seed: int = 0,
    cache: bool = True,
    *,
    sampler: str | None = None,
    m_per_class: int = 4,
    return_mask: bool = False,
    augment: dict | None = None,
    batch_augment: bool | str = "auto",
    eval_batch_size: int | None = None,
    shard: tuple[int, int] | None = None,
) -> dict[str, DataLoader]:
    """``{"train", "val", "test"}`` DataLoaders for fold ``fold`` of a prepared dataset (name,
    path or :class:`PreparedDataset`). Label indices follow ``prepared.classes`` in every split.

    ``limit``: stratified subsample (label x fold) of the whole dataset, for smoke runs.
    ``sampler``: None (shuffle), ``"balanced"`` (class-balanced sampling with replacement) or
    ``"m_per_class"`` (pytorch-metric-learning's MPerClassSampler: ``m_per_class`` images of each
    of batch_size / m classes per batch, what triplet mining needs).
    ``batch_augment``: "auto" = augment whole batches on the training device (the Trainer applies
    ``loaders["train"].dataset.batch_transform``) when the cache holds the images and every
    augmentation asked for has a batched form; False = the per-sample torchvision pipeline.
    With it, ``num_workers="auto"`` is 0 (a batch is one slice of the cache: workers would only
    add copies). ``eval_batch_size``: batch size of the val/test loaders (default ``batch_size``;
    inference has no gradient memory, so 256+ costs less Python per image).
    ``shard=(rank, world_size)``: the training split is this rank's disjoint, class-stratified
    share (:func:`zoo.train.distributed.shard_positions`) and the sampler is built on it (DDP);
    val/test stay whole. The training dataset records it as ``.shard``.
    """
    from .prepared import PreparedDataset

    ds = PreparedDataset.load(prepared)
    parts = ds.split(fold)
    manifest = stratified_subsample(ds.manifest, limit, seed=seed)
    keep = set(manifest["image"])
    parts = {k: v[v["image"].isin(keep)] for k, v in parts.items()}
    for name, part in parts.items():
        if part.empty:
            raise ValueError(f"the {name} split of fold {fold} of {ds.name!r} is empty"
                             + (f" with limit={limit}; raise the limit" if limit else ""))
    from .batch_augment import supports

    if batch_augment == "auto":
        batch_augment = bool(cache) and supports(augment)
    batch_augment = bool(batch_augment)
    if batch_augment and not supports(augment):
        raise ValueError("batch_augment=True cannot do hue or stain augmentation; pass batch_augment=False")
    workers = 0 if batch_augment and num_workers == "auto" else resolve_num_workers(num_workers)
    eval_bs = int(eval_batch_size or batch_size)
    gen = torch.Generator().manual_seed(int(seed))
    common = dict(num_workers=workers, pin_memory=torch.cuda.is_available(),
                  persistent_workers=workers > 0)
    loaders = {}
    for name, part in parts.items():
        train = name == "train"
        if train and shard is not None:
            from zoo.train.distributed import shard_positions

            part = part.iloc[shard_positions(part["label"].astype(str).to_numpy(), *shard, seed=seed)]
        data = CellDataset(part, ds.root, ds.classes, img_size, train=train, cache=cache,
                           return_mask=return_mask, prepared_dir=ds.path, augment=augment,
                           cache_workers=workers, batch_augment=batch_augment)
        if train:
            data.shard = shard
            smp = _make_sampler(sampler, data.targets, batch_size, m_per_class, gen)
            loaders[name] = DataLoader(data, batch_size=batch_size, shuffle=smp is None, sampler=smp,
                                       drop_last=len(data) > batch_size, generator=gen, **common)
        else:
            loaders[name] = DataLoader(data, batch_size=eval_bs, shuffle=False, **common)
    return loaders


def eval_loader(loader_or_dataset: Any, indices: Sequence[int] | None = None,
                batch_size: int | None = None) -> DataLoader:
    """An augmentation-free, unshuffled loader over a :class:`CellDataset` (or the dataset of a
    loader), optionally restricted to ``indices``, sharing its decoded cache.

    What the validation embeds the training set with: a batched dataset stays batched (one slice
    of the cache per batch, normalised as a tensor), a per-sample one gets ``eval_transform``."""
    loader = loader_or_dataset if isinstance(loader_or_dataset, DataLoader) else None
    ds = copy.copy(loader.dataset if loader is not None else loader_or_dataset)
    if not isinstance(ds, CellDataset):
        raise TypeError(f"eval_loader needs a CellDataset (or a loader over one), got {type(ds).__name__}")
    ds.train = False
    if not ds.batched:
        ds.transform = eval_transform(ds.img_size)
    data = ds if indices is None else Subset(ds, [int(i) for i in indices])
    workers = loader.num_workers if loader is not None else 0
    bs = int(batch_size or (max(256, 4 * (loader.batch_size or 64)) if ds.batched
                            else (loader.batch_size if loader is not None and loader.batch_size else 64)))
    return DataLoader(data, batch_size=bs, shuffle=False, num_workers=workers,
                      pin_memory=torch.cuda.is_available(), persistent_workers=workers > 0)


def stratified_indices(targets: Sequence[int] | torch.Tensor | np.ndarray, max_n: int | None,
                       seed: int = 0) -> np.ndarray:
    """Sorted indices of at most ~``max_n`` samples, every class keeping its share (>= 1 each);
    all indices when ``max_n`` is None or not smaller than the data. Deterministic for a seed."""
    y = np.asarray(targets.cpu() if isinstance(targets, torch.Tensor) else targets)
    if max_n is None or int(max_n) >= len(y):
        return np.arange(len(y))
    rng = np.random.default_rng(seed)
    picked = []
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        k = min(len(idx), max(1, int(round(int(max_n) * len(idx) / len(y)))))
        picked.append(rng.choice(idx, size=k, replace=False))
    return np.sort(np.concatenate(picked))


def _make_sampler(kind: str | None, targets: torch.Tensor, batch_size: int, m: int, gen: torch.Generator):
    if kind is None:
        return None
    if kind == "balanced":
        counts = torch.bincount(targets).double()
        weights = (1.0 / counts)[targets]
        return WeightedRandomSampler(weights, num_samples=len(targets), replacement=True, generator=gen)
    if kind == "m_per_class":
        from pytorch_metric_learning.samplers import MPerClassSampler

        n_classes = int(targets.unique().numel())
        if batch_size % m or m * n_classes < batch_size:
            raise ValueError(f"m_per_class sampler: batch_size ({batch_size}) must be a multiple of m ({m}) "
                             f"and at most m x classes present ({m} x {n_classes})")
        # At least one batch per epoch: a small set (or a DDP rank's shard of one) with fewer rows than
        # a batch draws its one batch with replacement instead of failing PML's length assertion.
        return MPerClassSampler(targets.tolist(), m=m, batch_size=batch_size,
                                length_before_new_iter=max(len(targets), batch_size))
    raise ValueError(f"sampler must be None, 'balanced' or 'm_per_class', got {kind!r}")
