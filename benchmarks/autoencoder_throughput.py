"""Autoencoder training throughput: the zoo's AutoencoderTrainer beside a bare encoder-decoder
loop, in one run.

Both sides train the same architecture (``create_autoencoder("vae256")``: ResNet-18 encoder,
256-d Gaussian latent, four-block shallow decoder) on the same in-memory synthetic images, batch
64, AdamW, with the same arithmetic (L1 masked by Eq. 3 with a radius sampled per batch + KL per
pixel value). The zoo side is ``AutoencoderObjective(create_suppression(method))`` +
``AutoencoderTrainer.fit()`` with validation off (denormalise, suppression, reconstruction, NaN/inf
guard, per-term logging, weight check, scheduler), timed from ``on_epoch_start`` to
``on_epoch_end``; the bare side is the loop one would write by hand. Sides alternate round by round
so a busy shared machine slows both alike; the first round is a warm-up and is not counted.

Two clocks: wall time and process CPU time (with one thread and no loader workers, the work
actually done, robust to other jobs on a shared machine). Ratios are medians of per-round ratios.

    python benchmarks/autoencoder_throughput.py [--rounds 4] [--batches 4] [--img 64] [--method mask_sampled]

Target: zoo / bare >= 0.85.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch.utils.data import DataLoader, TensorDataset

from zoo.autoencoder import create_suppression, mask_weights
from zoo.autoencoder.training import AutoencoderObjective, AutoencoderTrainer, to_normalized, to_unit
from zoo.losses.reconstruction import ReconstructionLoss
from zoo.models.autoencoder import create_autoencoder
from zoo.train import Callback, seed_everything

BATCH = 64


def make_loader(n_batches: int, img: int, seed: int) -> DataLoader:
    g = torch.Generator().manual_seed(seed)
    n = n_batches * BATCH
    x = (torch.rand(n, 3, img, img, generator=g) - 0.45) / 0.226  # what the data pipeline gives
    y = torch.zeros(n, dtype=torch.long)
    return DataLoader(TensorDataset(x, y), batch_size=BATCH, shuffle=True, drop_last=True,
                      generator=torch.Generator().manual_seed(seed))


class BareLoop:
    """By hand: the network, a sampled radius per batch, Eq. 3 mask, L1 + KL, AdamW."""

    def __init__(self, img: int) -> None:
        self.model = create_autoencoder("vae256", img_size=img).train()
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=1e-3, weight_decay=1e-4)
        self.img = img

    def epoch(self, loader: DataLoader) -> tuple[int, float, float]:
        n, start, cpu = 0, time.perf_counter(), time.process_time()
        for x, _ in loader:
            x01 = to_unit(x)
            out = self.model(to_normalized(x01))
            r = max(1.0, float(torch.normal(50.0, 20.0, size=()))) * self.img / 256
            w = mask_weights(self.img, self.img, r)
            l1 = ((out.recon - x01).abs() * w).mean()
            kl = -0.5 * torch.sum(1 + out.logvar - out.mu.pow(2) - out.logvar.exp(), dim=1).mean() / x01[0].numel()
            loss = l1 + kl
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()
            n += len(x)
        return n, time.perf_counter() - start, time.process_time() - cpu


class EpochTimer(Callback):
    def on_epoch_start(self, trainer, epoch):
        self.start, self.cpu_start = time.perf_counter(), time.process_time()

    def on_epoch_end(self, trainer, epoch, metrics):
        self.seconds = time.perf_counter() - self.start
        self.cpu_seconds = time.process_time() - self.cpu_start
        self.images = len(trainer.train_loader) * BATCH


def zoo_epoch(model, objective, loader: DataLoader) -> tuple[int, float, float]:
    timer = EpochTimer()
    trainer = AutoencoderTrainer(model, objective, loader, None, epochs=1, patience=None, lr=1e-3, weight_decay=1e-4,
                                 device="cpu", svm=False, callbacks=[timer], progress=False, precision="fp32")
    trainer.fit()
    return timer.images, timer.seconds, timer.cpu_seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=4, help="alternating rounds; the first is a warm-up")
    parser.add_argument("--batches", type=int, default=4, help="batches of 64 per epoch")
    parser.add_argument("--img", type=int, default=64, help="image size (px)")
    parser.add_argument("--method", default="mask_sampled", help="suppression method of the zoo side")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (the machine is shared)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    seed_everything(0)

    bare = BareLoop(args.img)
    sup = create_suppression(args.method, args.img, **({"radius": 50, "radius_std": 20}
                                                      if args.method == "mask_sampled" else {}))
    zoo_model = create_autoencoder("vae256", img_size=sup.input_size)
    objective = AutoencoderObjective(sup, ReconstructionLoss(beta=1.0))
    rows = []
    for r in range(args.rounds):
        loader = make_loader(args.batches, args.img, seed=r)
        n, wall_b, cpu_b = bare.epoch(loader)
        n, wall_z, cpu_z = zoo_epoch(zoo_model, objective, loader)
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
    print(f"\nvae256 (resnet18 encoder), {args.img} px, batch {BATCH}, AdamW, {args.threads} thread(s), "
          f"{args.batches} batches/epoch, zoo method {args.method}, medians of {len(rows)} rounds")
    print(f"{'':22}{'wall-clock':>14}{'CPU time':>14}   (images/s)")
    print(f"{'bare encoder-decoder':22}{med['bare_wall']:14.1f}{med['bare_cpu']:14.1f}")
    print(f"{'zoo AutoencoderTrainer':22}{med['zoo_wall']:14.1f}{med['zoo_cpu']:14.1f}")
    print(f"{'ratio zoo/bare':22}{ratio_wall:14.3f}{ratio_cpu:14.3f}   (target >= 0.85)")


if __name__ == "__main__":
    main()
