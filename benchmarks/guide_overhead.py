"""Per-epoch cost of the guide machinery, as a ratio of the epoch's training time.

For each guided loss, one training epoch (resnet18 encoder, synthetic images, AdamW) is timed, and
separately the work only a guided loss adds:

* distance loss: the pair term of Eq. 3-4 (cdist over all pairs of each batch, guide-distance
  lookup, forward + backward), summed over the epoch's batches;
* inverse-UMAP loss: the end-of-epoch target refresh (UMAP fit on the bounded training subsample +
  alignment + inverse transform of the guide points), plus its per-batch L1 term. umap/numba
  compile their kernels on the first call in a process: that call is reported separately (paid
  once per training run, not per epoch).

Times are process CPU seconds (``time.process_time``; torch and UMAP both run on one thread here),
which other jobs on a shared machine do not inflate; wall-clock seconds are printed beside them.
The embedding pass over the training set that feeds UMAP is shown separately: the Trainer computes
it for the SVM validation stage anyway, so it is not counted as guide overhead.

    /work/venv/bin/python benchmarks/guide_overhead.py              # ~1,000 images, 64 px, batch 64
    /work/venv/bin/python benchmarks/guide_overhead.py --images 300 --epochs 1   # quicker look
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

from zoo.guides import create_guide  # noqa: E402
from zoo.losses import TripletLoss  # noqa: E402
from zoo.losses.distance import DistanceLoss  # noqa: E402
from zoo.losses.inverse_umap import InverseUMAPLoss  # noqa: E402
from zoo.models import create_encoder  # noqa: E402


def synthetic_images(n: int, size: int, n_classes: int, seed: int) -> TensorDataset:
    """Noise images with a class-dependent colour cast: structure enough for the losses to act on."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % n_classes
    tint = torch.rand(n_classes, 3, 1, 1, generator=g)
    x = 0.5 * torch.rand(n, 3, size, size, generator=g) + 0.5 * tint[labels]
    return TensorDataset((x - 0.5) / 0.25, labels)


class Clock:
    """Wall and CPU seconds of a block: ``with Clock() as c: ...; c.wall, c.cpu``."""

    def __enter__(self) -> "Clock":
        self._w, self._c = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc) -> None:
        self.wall, self.cpu = time.perf_counter() - self._w, time.process_time() - self._c


def timed_epoch(model, loss, loader, opt, *, guide_term) -> tuple[np.ndarray, np.ndarray, int]:
    """Train one epoch; returns ((wall, cpu) epoch seconds, (wall, cpu) guide-term seconds, batches).

    The guide term is re-run on a detached leaf copy of each batch's embeddings, outside the
    epoch timer, so the epoch time is the true training time with the full loss."""
    model.train()
    epoch_s, guide_s = np.zeros(2), np.zeros(2)
    n = 0
    for x, y in tqdm(loader, desc=f"epoch {type(loss).__name__}", leave=False):
        with Clock() as c:
            opt.zero_grad(set_to_none=True)
            emb = model(x)
            value = loss(emb, y)
            value.backward()
            opt.step()
        epoch_s += (c.wall, c.cpu)
        leaf = emb.detach().clone().requires_grad_(True)
        with Clock() as c:
            guide_term(leaf, y).backward()
        guide_s += (c.wall, c.cpu)
        n += 1
    return epoch_s, guide_s, n


@torch.no_grad()
def embed(model, loader) -> tuple[np.ndarray, np.ndarray]:
    model.eval()
    out, labels = [], []
    for x, y in loader:
        out.append(model(x).numpy())
        labels.append(y.numpy())
    return np.concatenate(out), np.concatenate(labels)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=1000)
    ap.add_argument("--img-size", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--epochs", type=int, default=1, help="timed epochs per loss (mean reported)")
    ap.add_argument("--guide", default="fr_sim_mat")
    ap.add_argument("--max-fit-samples", type=int, default=2000)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    guide = create_guide(args.guide)
    data = synthetic_images(args.images, args.img_size, len(guide), args.seed)
    train = DataLoader(data, batch_size=args.batch_size, shuffle=True, drop_last=True,
                       generator=torch.Generator().manual_seed(args.seed))
    plain = DataLoader(data, batch_size=args.batch_size, shuffle=False)
    print(f"resnet18, {args.images} images of {args.img_size} px, batch {args.batch_size}, "
          f"{args.threads} thread(s), guide {args.guide}, torch {torch.__version__}")

    rows = []  # (loss, what, guide (wall, cpu) s, epoch (wall, cpu) s)
    # ---- distance loss ------------------------------------------------------------------------
    model = create_encoder("resnet18", 256, img_size=args.img_size)
    loss = DistanceLoss(guide, alpha=0.4, triplet=TripletLoss())
    opt = torch.optim.AdamW([*model.parameters(), *loss.parameters()], lr=1e-3)
    timed_epoch(model, loss, [next(iter(train))], opt, guide_term=loss.guide)  # warm-up (allocator, kernels)
    ep, gd = [], []
    for _ in range(args.epochs):
        e, g, n = timed_epoch(model, loss, train, opt, guide_term=loss.guide)
        ep.append(e)
        gd.append(g)
    ep, gd = np.mean(ep, 0), np.mean(gd, 0)
    rows.append(("distance", "pair term Eq. 3-4 (fwd+bwd), all batches", gd, ep))
    print(f"distance: epoch {ep[1]:.2f} s CPU ({ep[0]:.2f} s wall) over {n} batches; "
          f"pair term {gd[1] * 1e3:.1f} ms CPU")

    # ---- inverse-UMAP loss ---------------------------------------------------------------------
    model = create_encoder("resnet18", 256, img_size=args.img_size)
    loss = InverseUMAPLoss(guide, alpha=0.4, kappa=0.2, triplet=TripletLoss(),
                           max_fit_samples=args.max_fit_samples, seed=args.seed)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    with Clock() as embed_clock:
        emb, labels = embed(model, plain)
    with Clock() as first_clock:
        first = loss.update_targets(emb, labels)  # includes numba JIT compilation
    timed_epoch(model, loss, [next(iter(train))], opt, guide_term=loss.guide)
    ep, gd, refresh, fit_s, inv_s = [], [], [], [], []
    for _ in range(args.epochs):
        e, g, n = timed_epoch(model, loss, train, opt, guide_term=loss.guide)
        emb, labels = embed(model, plain)
        with Clock() as c:
            info = loss.update_targets(emb, labels)
        refresh.append((c.wall, c.cpu))
        fit_s.append(info["umap_fit_seconds"])
        inv_s.append(info["inverse_transform_seconds"])
        ep.append(e)
        gd.append(g)
    ep, gd, refresh = np.mean(ep, 0), np.mean(gd, 0), np.mean(refresh, 0)
    rows.append(("inverse_umap", "target refresh (UMAP fit + align + inverse)", refresh, ep))
    rows.append(("inverse_umap", "L1 term Eq. 2 (fwd+bwd), all batches", gd, ep))
    print(f"inverse_umap: epoch {ep[1]:.2f} s CPU ({ep[0]:.2f} s wall); refresh {refresh[1]:.2f} s CPU "
          f"(wall: UMAP fit {np.mean(fit_s):.2f} s + inverse transform {np.mean(inv_s):.2f} s, "
          f"{int(info['fit_samples'])} samples); L1 term {gd[1] * 1e3:.1f} ms CPU")
    print(f"  first refresh in this process (numba JIT compile included): {first_clock.cpu:.2f} s CPU, "
          f"{first_clock.wall:.2f} s wall (fit {first['umap_fit_seconds']:.2f} s + inverse "
          f"{first['inverse_transform_seconds']:.2f} s wall) -- once per process, not per epoch")
    print(f"  embedding pass over the training set (done by SVM validation anyway, not counted): "
          f"{embed_clock.cpu:.2f} s CPU")

    print("\n| loss | guide machinery per epoch | CPU s | epoch training CPU s | ratio (CPU) | ratio (wall) |")
    print("| --- | --- | ---: | ---: | ---: | ---: |")
    for name, what, g, e in rows:
        print(f"| {name} | {what} | {g[1]:.3f} | {e[1]:.2f} | {g[1] / e[1]:.1%} | {g[0] / e[0]:.1%} |")

if __name__ == "__main__":
    main()
