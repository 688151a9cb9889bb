"""Classifier training throughput: the zoo's classifier path beside a bare timm loop, with and
without stain augmentation, in one run.

Both sides train resnet18 (channels_last, softmax head, cross-entropy, AdamW, batch 64) on the
same in-memory synthetic 64 px cells (violet nucleus and cytoplasm on a pale background, so the
Macenko decomposition has two stains to find), through the same per-sample augmentation: the
paper's geometric one (``MATEK_AUGMENT``: rotation, flips, 25 % shift, 20 % shear) with or
without the Tellez perturbation of the Macenko stain concentrations (``tellez_stain_jitter``,
on every image: ``stain_p=1``). The zoo side is ``create_classifier`` + ``ClassifierTrainer.fit()``
with validation off, timed from ``on_epoch_start`` to ``on_epoch_end``; the bare side is the loop
one writes by hand. Sides and settings alternate round by round so a busy shared machine slows
all alike; round 0 is a warm-up.

Clocks: wall time, and process CPU time (one thread, no loader workers: the work done, robust to
other jobs on a shared machine). Reported: images/s per setting, and the medians of the per-round
ratios zoo/bare (with and without stain) and stain/no-stain (the cost of stain augmentation).

    python benchmarks/classifier_throughput.py [--rounds 4] [--batches 4] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import timm
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from zoo.data.stain import tellez_stain_jitter
from zoo.data.transforms import MATEK_AUGMENT, train_transform
from zoo.families.classifier import ClassifierTrainer
from zoo.models.classifier import create_classifier
from zoo.train import Callback, seed_everything

IMG, BATCH, CLASSES = 64, 64, 8


def synthetic_cells(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """n uint8 (3, IMG, IMG) cells with random size, position and stain hue; labels 0..CLASSES-1."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:IMG, :IMG]
    out = np.empty((n, IMG, IMG, 3), dtype=np.uint8)
    for i in range(n):
        cy, cx = rng.uniform(IMG * 0.35, IMG * 0.65, 2)
        r = np.hypot(yy - cy, xx - cx)
        img = np.empty((IMG, IMG, 3))
        img[:] = (236, 226, 232)
        img[r < rng.uniform(0.25, 0.4) * IMG] = rng.normal((205, 165, 215), 10)
        img[r < rng.uniform(0.1, 0.22) * IMG] = rng.normal((105, 55, 150), 10)
        out[i] = np.clip(img + rng.normal(0, 4, img.shape), 0, 255)
    return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous(), torch.from_numpy(rng.integers(0, CLASSES, n))


class Augmented(Dataset):
    def __init__(self, images: torch.Tensor, labels: torch.Tensor, stain: bool):
        self.images, self.labels = images, labels
        extra = {"stain": tellez_stain_jitter(), "stain_p": 1.0} if stain else {}
        self.transform = train_transform(IMG, **MATEK_AUGMENT, **extra)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        return self.transform(self.images[i]), int(self.labels[i])


def loader(images, labels, stain: bool, seed: int) -> DataLoader:
    return DataLoader(Augmented(images, labels, stain), batch_size=BATCH, shuffle=True, drop_last=True,
                      generator=torch.Generator().manual_seed(seed))


def bare_epoch(dl: DataLoader) -> tuple[int, float, float]:
    """The hand-written loop: timm model, cross-entropy, AdamW; nothing else."""
    model = timm.create_model("resnet18", pretrained=False, num_classes=CLASSES).to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4)
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    n, start, cpu = 0, time.perf_counter(), time.process_time()
    for x, y in dl:
        loss = loss_fn(model(x.contiguous(memory_format=torch.channels_last)), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        n += len(y)
    return n, time.perf_counter() - start, time.process_time() - cpu


class _Clock(Callback):
    def on_epoch_start(self, trainer, epoch):
        self.start, self.cpu = time.perf_counter(), time.process_time()

    def on_epoch_end(self, trainer, epoch, metrics):
        self.wall, self.cpu = time.perf_counter() - self.start, time.process_time() - self.cpu


def zoo_epoch(dl: DataLoader) -> tuple[int, float, float]:
    model = create_classifier("resnet18", num_classes=CLASSES)
    clock = _Clock()
    ClassifierTrainer(model, nn.CrossEntropyLoss(), dl, None, epochs=1, patience=None, device="cpu",
                      svm=False, progress=False, callbacks=[clock], scheduler="constant").fit()
    return len(dl) * BATCH, clock.wall, clock.cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=4, help="timed rounds (after one warm-up)")
    ap.add_argument("--batches", type=int, default=4, help="batches per epoch")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1: CPU time measures the work)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    seed_everything(0)
    images, labels = synthetic_cells(args.batches * BATCH, seed=0)
    settings = [(side, stain) for stain in (False, True) for side in ("bare", "zoo")]
    rates: dict[tuple[str, bool], list[tuple[float, float]]] = {s: [] for s in settings}
    for r in range(args.rounds + 1):
        for side, stain in settings:
            dl = loader(images, labels, stain, seed=r)
            n, wall, cpu = (bare_epoch if side == "bare" else zoo_epoch)(dl)
            if r > 0:
                rates[(side, stain)].append((n / wall, n / cpu))
        print(f"round {r}{' (warm-up)' if r == 0 else ''}: " + ", ".join(
            f"{s}{'+stain' if st else ''} {rates[(s, st)][-1][1]:.1f} img/s cpu" for s, st in settings if r > 0))

    def med(side, stain, k):
        return statistics.median(v[k] for v in rates[(side, stain)])

    def ratio(a, b, k):
        return statistics.median(x[k] / y[k] for x, y in zip(rates[a], rates[b]))

    print(f"\nresnet18, {IMG} px, batch {BATCH}, {args.batches} batches/epoch, {args.threads} thread(s), "
          f"median of {args.rounds} rounds")
    print(f"{'setting':<22}{'img/s wall':>12}{'img/s cpu':>12}")
    for side, stain in settings:
        print(f"{side + (' + stain' if stain else ''):<22}{med(side, stain, 0):>12.1f}{med(side, stain, 1):>12.1f}")
    for k, clock in ((1, "cpu"), (0, "wall")):
        print(f"ratios ({clock} clock): zoo/bare without stain {ratio(('zoo', False), ('bare', False), k):.2f}, "
              f"with stain {ratio(('zoo', True), ('bare', True), k):.2f}; "
              f"stain/no-stain zoo {ratio(('zoo', True), ('zoo', False), k):.2f}, "
              f"bare {ratio(('bare', True), ('bare', False), k):.2f}")


if __name__ == "__main__":
    main()
