"""Per-epoch cost of the SMR machinery (paper 001), as a ratio of the epoch's training time.

One training epoch of a resnet18 encoder with the TML loss is timed (synthetic noise images with a
class-dependent colour cast, AdamW). Then, on the augmentation-free training embeddings of that
encoder (the Trainer computes them for SVM validation anyway, so that pass is not counted), the
work only SMR adds, for every curve model x loss:

* the end-of-epoch **curve refit** (stage means, SVD / Bézier control points, targets, decision
  boundaries; for the t-SNE losses also the t-SNE map of the training embeddings and the curves in
  its plane) — ``SMRLoss.update_curves``;
* the **SMR term** of every batch, forward + backward (for the projected losses this includes the
  projection: closed form on lines, companion-matrix roots on Bézier curves; for the t-SNE losses
  the batch affinities, the network's KL and its backward), summed over the epoch's batches.

Times are process CPU seconds (``time.process_time``; one torch thread), which other jobs on a
shared machine do not inflate; the epoch's wall-clock seconds are printed beside them.

    .venv/bin/python benchmarks/smr_overhead.py                      # 1,000 images, 64 px, batch 64
    .venv/bin/python benchmarks/smr_overhead.py --images 300 --img-size 32   # quicker look
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch.utils.data import DataLoader, TensorDataset  # noqa: E402
from tqdm import tqdm  # noqa: E402

from zoo.knowledge import DEFAULT_CLASSES  # noqa: E402
from zoo.losses import TripletLoss  # noqa: E402
from zoo.losses.smr import SMR_LOSSES, SMRLoss  # noqa: E402
from zoo.models import create_encoder  # noqa: E402


def synthetic_images(n: int, size: int, n_classes: int, seed: int) -> TensorDataset:
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % n_classes
    tint = torch.rand(n_classes, 3, 1, 1, generator=g)
    x = 0.5 * torch.rand(n, 3, size, size, generator=g) + 0.5 * tint[labels]
    return TensorDataset((x - 0.5) / 0.25, labels)


class Clock:
    def __enter__(self) -> "Clock":
        self._w, self._c = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc) -> None:
        self.wall, self.cpu = time.perf_counter() - self._w, time.process_time() - self._c


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=1000)
    ap.add_argument("--img-size", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    classes = list(DEFAULT_CLASSES)
    data = synthetic_images(args.images, args.img_size, len(classes), args.seed)
    train = DataLoader(data, batch_size=args.batch_size, shuffle=True, drop_last=True,
                       generator=torch.Generator().manual_seed(args.seed))
    plain = DataLoader(data, batch_size=args.batch_size, shuffle=False)
    print(f"resnet18, {args.images} images of {args.img_size} px, batch {args.batch_size}, embedding {args.dim}, "
          f"{args.threads} thread(s), {len(classes)} classes (blast+neutrophil and erythroid regressed), "
          f"torch {torch.__version__}")

    # ---- one TML training epoch (the reference) -----------------------------------------------
    model = create_encoder("resnet18", args.dim, img_size=args.img_size)
    tml = TripletLoss()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model.train()
    batches = []
    with Clock() as epoch:
        for x, y in tqdm(train, desc="TML epoch", leave=False):
            opt.zero_grad(set_to_none=True)
            emb = model(x)
            tml(emb, y).backward()
            opt.step()
            batches.append((emb.detach().clone(), y))
    model.eval()
    with torch.no_grad():
        emb_all = torch.cat([model(x) for x, _ in plain]).numpy()
        y_all = torch.cat([y for _, y in plain]).numpy()
    print(f"TML epoch: {epoch.cpu:.2f} s CPU ({epoch.wall:.2f} s wall), {len(batches)} batches")

    rows = []
    for mode in SMR_LOSSES:
        for curve in ("fixed", "linear", "bezier"):
            loss = SMRLoss(classes, mode, curve, "uniform", dim=args.dim, seed=args.seed)
            loss.update_curves(emb_all, y_all)  # first fit (a fixed line's length is set here)
            with Clock() as refit:
                loss.update_curves(emb_all, y_all)
            params = list(loss.parameters())
            with Clock() as term:
                for emb, y in batches:
                    leaf = emb.clone().requires_grad_(True)
                    value = loss.guide(leaf, y)
                    if loss.uses_tsne:
                        value = value + loss.tsne.objective(leaf)
                    value.backward()
                    for p in params:
                        p.grad = None
            rows.append((mode, curve, refit.cpu, term.cpu))

    print("\n| loss | curve | refit CPU s / epoch | SMR term CPU s / epoch (fwd+bwd) | refit / epoch | "
          "term / epoch | total / epoch |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for mode, curve, r, t in rows:
        print(f"| {mode} | {curve} | {r:.3f} | {t:.3f} | {r / epoch.cpu:.1%} | {t / epoch.cpu:.1%} | "
              f"{(r + t) / epoch.cpu:.1%} |")
    print(f"\n(reference: one TML training epoch = {epoch.cpu:.2f} s CPU)")


if __name__ == "__main__":
    main()
