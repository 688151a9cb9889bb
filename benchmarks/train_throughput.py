"""Training throughput: the zoo Trainer beside a bare timm training loop, in one run.

Both sides train resnet18 (channels_last, 256-d output, dropout 0.05) on the same in-memory
synthetic 64 px images, batch 64, AdamW, with the same loss arithmetic (pytorch-metric-learning
triplet margin loss on mined margin-violating triplets + 0.001 * mean embedding norm). The zoo
side is ``create_encoder`` + ``create_loss("triplet")`` + ``Trainer.fit()`` with validation off,
timed from ``on_epoch_start`` to ``on_epoch_end`` (the train loop, its NaN/inf guard, weight check
and scheduler step; not the Trainer's construction). The two sides alternate round by round so a
busy shared machine slows both alike; the first round is a warm-up and is not counted.

Two clocks: wall time (what a user waits) and process CPU time (with one thread and no loader
workers, the work actually done — robust to other jobs on a shared machine, where wall-clock
rates swing by 2x from one step to the next). The ratio reported is the median of the per-round
ratios.

    python benchmarks/train_throughput.py [--rounds 6] [--batches 6] [--threads 1] [--precision fp32|bf16]

``--precision bf16`` runs both sides under ``torch.autocast("cpu", bfloat16)`` (the zoo through
``Trainer(precision="bf16")``); compare the images/s of two invocations for the bf16 gain, or see
``benchmarks/epoch_cost.py`` for bf16 / fp32 side by side.

Target: zoo / bare >= 0.85.
"""

from __future__ import annotations

import argparse
import statistics
import time

import timm
import torch
from pytorch_metric_learning.losses import TripletMarginLoss
from pytorch_metric_learning.miners import TripletMarginMiner
from torch.utils.data import DataLoader, TensorDataset

from zoo.losses import create_loss
from zoo.models import create_encoder
from zoo.train import Callback, Trainer, seed_everything

IMG, BATCH, DIM, CLASSES = 64, 64, 256, 8


def make_loader(n_batches: int, seed: int) -> DataLoader:
    g = torch.Generator().manual_seed(seed)
    n = n_batches * BATCH
    x = torch.rand(n, 3, IMG, IMG, generator=g)
    y = torch.randint(0, CLASSES, (n,), generator=g)
    return DataLoader(TensorDataset(x, y), batch_size=BATCH, shuffle=True, drop_last=True,
                      generator=torch.Generator().manual_seed(seed))


class BareLoop:
    """What one would write by hand with timm + PML: no guard, no callbacks, no bookkeeping."""

    def __init__(self, dtype: torch.dtype | None = None) -> None:
        self.dtype = dtype
        self.model = timm.create_model("resnet18", pretrained=False, num_classes=DIM, drop_rate=0.05)
        self.model = self.model.to(memory_format=torch.channels_last).train()
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=1e-3, weight_decay=1e-4)
        self.miner = TripletMarginMiner(margin=0.1, type_of_triplets="all")
        self.loss = TripletMarginLoss(margin=0.1)

    def epoch(self, loader: DataLoader) -> tuple[int, float, float]:
        n, start, cpu = 0, time.perf_counter(), time.process_time()
        for x, y in loader:
            x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast("cpu", dtype=self.dtype or torch.float32, enabled=self.dtype is not None):
                emb = self.model(x)
            emb = emb.float()
            loss = self.loss(emb, y, self.miner(emb, y)) + 0.001 * emb.norm(dim=1).mean()
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()
            n += len(y)
        return n, time.perf_counter() - start, time.process_time() - cpu


class EpochTimer(Callback):
    def on_epoch_start(self, trainer, epoch):
        self.start, self.cpu_start = time.perf_counter(), time.process_time()

    def on_epoch_end(self, trainer, epoch, metrics):
        self.seconds = time.perf_counter() - self.start
        self.cpu_seconds = time.process_time() - self.cpu_start
        self.images = len(trainer.train_loader) * BATCH


def zoo_epoch(model, loss, loader: DataLoader, precision: str = "fp32") -> tuple[int, float, float]:
    timer = EpochTimer()
    trainer = Trainer(model, loss, loader, None, epochs=1, patience=None, lr=1e-3, weight_decay=1e-4,
                      scheduler="cosine", device="cpu", callbacks=[timer], progress=False, precision=precision)
    trainer.fit()
    return timer.images, timer.seconds, timer.cpu_seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=6, help="alternating rounds; the first is a warm-up")
    parser.add_argument("--batches", type=int, default=6, help="batches of 64 per epoch")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (the machine is shared)")
    parser.add_argument("--precision", default="fp32", choices=("fp32", "bf16"), help="both sides")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    seed_everything(0)

    bare = BareLoop(torch.bfloat16 if args.precision == "bf16" else None)
    zoo_model = create_encoder("resnet18", embedding_dim=DIM, dropout=0.05, img_size=IMG, channels_last=True)
    zoo_loss = create_loss("triplet")  # TML(margin 0.1, all violating) + 0.001 * mean ||e||
    rows = []
    for r in range(args.rounds):
        loader = make_loader(args.batches, seed=r)
        n, wall_b, cpu_b = bare.epoch(loader)
        n, wall_z, cpu_z = zoo_epoch(zoo_model, zoo_loss, loader, args.precision)
        row = {"bare_wall": n / wall_b, "zoo_wall": n / wall_z, "bare_cpu": n / cpu_b, "zoo_cpu": n / cpu_z}
        tag = "warm-up" if r == 0 else f"round {r}"
        print(f"{tag:>8}: wall img/s bare {row['bare_wall']:6.1f} zoo {row['zoo_wall']:6.1f} "
              f"(x{row['zoo_wall'] / row['bare_wall']:.3f}) | CPU-time img/s bare {row['bare_cpu']:6.1f} "
              f"zoo {row['zoo_cpu']:6.1f} (x{row['zoo_cpu'] / row['bare_cpu']:.3f})", flush=True)
        if r:
            rows.append(row)
    med = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
    ratio_wall = statistics.median(r["zoo_wall"] / r["bare_wall"] for r in rows)
    ratio_cpu = statistics.median(r["zoo_cpu"] / r["bare_cpu"] for r in rows)
    print(f"\nresnet18, {IMG} px, batch {BATCH}, AdamW, channels_last, {args.precision}, {args.threads} thread(s), "
          f"{args.batches} batches/epoch, medians of {len(rows)} rounds")
    print(f"{'':16}{'wall-clock':>14}{'CPU time':>14}   (images/s)")
    print(f"{'bare timm loop':16}{med['bare_wall']:14.1f}{med['bare_cpu']:14.1f}")
    print(f"{'zoo Trainer':16}{med['zoo_wall']:14.1f}{med['zoo_cpu']:14.1f}")
    print(f"{'ratio zoo/bare':16}{ratio_wall:14.3f}{ratio_cpu:14.3f}   (target >= 0.85)")


if __name__ == "__main__":
    main()
