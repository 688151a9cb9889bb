"""What one epoch of the zoo costs beside a plain loop doing the same work, and bf16 vs fp32.

1. **Zoo epoch ÷ plain epoch.** One full epoch each — load (from the decoded uint8 cache),
   augment (one warp per batch + colour jitter), train (resnet18, triplet margin loss on mined
   triplets, AdamW), validate (embed the training and validation sets, SVM grid search, predict) —
   the zoo through ``make_loaders`` + ``Trainer.fit()`` (epochs=1), the plain side through
   :class:`plain_loop.PlainLoop` and the same SVM stage. Sides alternate round by round on one
   small synthetic dataset (built in a temporary folder), so a neighbour's load slows both alike;
   the first round is a warm-up. Reported: plain seconds / zoo seconds per round and the median
   (target >= 0.9), with the zoo's own split (train / embed / SVM / guide seconds).
2. **Augmentation**: the per-sample torchvision pipeline (``train_transform``) over a batch vs
   one :class:`~zoo.data.batch_augment.BatchAugment` call on it (same augmentations), CPU time.
3. **bf16 ÷ fp32** per backbone and image size: a training step (forward, backward, update) and
   an inference batch, measured interleaved (:func:`zoo.train.precision.probe_speedup`).

    python benchmarks/epoch_cost.py [--rounds 3] [--precision auto] [--backbones resnet18,densenet121]
                                    [--sizes 32,64,96] [--skip-epoch] [--skip-precision]

On a machine shared with other jobs absolute seconds mean little; the ratios, measured side by
side in one process, are the result.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))


def build_dataset(tmp: Path, n_cells: int):
    os.environ["ZOO_DATA_DIR"] = str(tmp / "data")
    from zoo.data.cli import generate_synth
    from zoo.data.ingest import ingest

    return ingest(generate_synth(tmp / "raw", n_cells=n_cells, img_size=96, seed=0), "bench", reader="synth")


def zoo_epoch(dataset, loaders, backbone: str, size: int, precision: str) -> tuple[float, dict]:
    from zoo.data.datasets import eval_loader
    from zoo.evaluate.svm import SVMStage
    from zoo.losses import create_loss
    from zoo.models import create_encoder
    from zoo.train import Trainer, seed_everything

    seed_everything(0)
    trainer = Trainer(create_encoder(backbone, 256, img_size=size), create_loss("triplet"), loaders["train"],
                      loaders["val"], train_eval_loader=eval_loader(loaders["train"]), epochs=1, patience=None,
                      svm=SVMStage(random_state=0, calibrate=False, max_search=1500), precision=precision,
                      classes=list(dataset.classes), progress=False)
    start, cpu = time.perf_counter(), time.process_time()
    row = trainer.fit().history[0]
    return time.perf_counter() - start, time.process_time() - cpu, row


def plain_epoch(images, labels, val_images, val_labels, backbone: str, dtype) -> float:
    from plain_loop import PlainLoop, svm_macro_f1

    loop = PlainLoop(int(labels.max()) + 1, backbone=backbone, loss="triplet", dtype=dtype)
    start, cpu = time.perf_counter(), time.process_time()
    loop.epoch(images, labels)
    svm_macro_f1(loop.features(images), labels.numpy(), loop.features(val_images), val_labels.numpy())
    return time.perf_counter() - start, time.process_time() - cpu


def epoch_ratio(args) -> None:
    from zoo.data.datasets import make_loaders
    from zoo.families.runner import m_per_class
    from zoo.models import create_encoder
    from zoo.train.precision import resolve_precision

    with tempfile.TemporaryDirectory(prefix="zoo-epoch-cost-") as tmp:
        t0 = time.perf_counter()
        dataset = build_dataset(Path(tmp), args.cells)
        loaders = make_loaders(dataset, 0, args.size, 64, num_workers="auto", seed=0, sampler="m_per_class",
                               m_per_class=m_per_class(64, len(dataset.classes)))
        print(f"dataset: {len(dataset.manifest)} synthetic cells, {len(loaders['train'].dataset)} training images at "
              f"{args.size} px ({time.perf_counter() - t0:.0f} s to build and decode)", flush=True)
        prec = resolve_precision(args.precision, torch.device("cpu"),
                                 model=create_encoder(args.backbone, 256, img_size=args.size),
                                 input_shape=(64, 3, args.size, args.size))
        print(f"precision {args.precision} -> {prec.name} ({prec.reason})", flush=True)
        train_ds, val_ds = loaders["train"].dataset, loaders["val"].dataset
        images, labels = train_ds._images, train_ds.targets
        val_images, val_labels = val_ds._images, val_ds.targets
        ratios, cpu_ratios = [], []
        for r in range(args.rounds + 1):
            zoo_s, zoo_cpu, row = zoo_epoch(dataset, loaders, args.backbone, args.size, prec.name)
            plain_s, plain_cpu = plain_epoch(images, labels, val_images, val_labels, args.backbone, prec.dtype)
            split = "  ".join(f"{k.replace('_seconds', '')} {row.get(k, float('nan')):.1f}"
                              for k in ("train_seconds", "embed_seconds", "svm_seconds", "guide_seconds"))
            tag = "warm-up" if r == 0 else f"round {r}"
            print(f"{tag:>8}: zoo epoch {zoo_s:6.1f} s wall / {zoo_cpu:6.1f} s CPU ({split}) | plain epoch "
                  f"{plain_s:6.1f} s wall / {plain_cpu:6.1f} s CPU | plain/zoo wall {plain_s / zoo_s:.2f}, "
                  f"CPU {plain_cpu / zoo_cpu:.2f}", flush=True)
            if r or args.rounds == 0:
                ratios.append(plain_s / zoo_s)
                cpu_ratios.append(plain_cpu / zoo_cpu)
        # CPU time: the work done, robust to neighbours' load on a shared machine (wall time is not).
        print(f"zoo speed relative to the plain loop (plain / zoo), median of {len(ratios)}: wall "
              f"{statistics.median(ratios):.2f}, CPU time {statistics.median(cpu_ratios):.2f} (target >= 0.9)\n",
              flush=True)


def augment_cost(args, rounds: int = 5) -> None:
    from torchvision import tv_tensors

    from zoo.data.batch_augment import BatchAugment
    from zoo.data.transforms import train_transform

    x = torch.randint(0, 256, (args.batch, 3, args.size, args.size), dtype=torch.uint8,
                      generator=torch.Generator().manual_seed(0))
    per_sample, batched = train_transform(args.size), BatchAugment().train()

    def run_per_sample():
        return torch.stack([per_sample(tv_tensors.Image(img)) for img in x])

    times = {"per-sample": [], "batched": []}
    for r in range(rounds + 1):
        for name, fn in (("per-sample", run_per_sample), ("batched", lambda: batched(x))):
            c = time.process_time()
            fn()
            if r:
                times[name].append(time.process_time() - c)
    ps, b = statistics.median(times["per-sample"]), statistics.median(times["batched"])
    print(f"augmentation of a batch of {args.batch} at {args.size} px (CPU time, median of {rounds}): per-sample "
          f"{ps * 1000:.0f} ms, batched {b * 1000:.0f} ms -> {ps / b:.1f}x less\n", flush=True)


def precision_table(args) -> None:
    from zoo.models import create_encoder
    from zoo.train.precision import cpu_name, cpu_supports_bf16, probe_speedup

    print(f"bf16 / fp32 on {cpu_name()} (native bf16: {cpu_supports_bf16()}), {torch.get_num_threads()} threads, "
          f"batch {args.batch}; speed-up = fp32 time / bf16 time, median of interleaved rounds", flush=True)
    for backbone in args.backbones.split(","):
        for size in (int(s) for s in args.sizes.split(",")):
            model = create_encoder(backbone, 256, img_size=size)
            shape = (args.batch, 3, size, size)
            train = probe_speedup(model, shape, steps=2, rounds=3)
            infer = inference_speedup(model, shape)
            print(f"  {backbone:<14} {size:>4} px: train {train:.2f}x   inference {infer:.2f}x", flush=True)


def inference_speedup(model, shape, rounds: int = 3) -> float:
    model = model.eval()
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(0))

    def run(dtype) -> float:
        start = time.perf_counter()
        with torch.inference_mode(), torch.autocast("cpu", dtype=dtype or torch.float32, enabled=dtype is not None):
            model(x)
        return time.perf_counter() - start

    run(None), run(torch.bfloat16)
    return float(np.median([run(None) / run(torch.bfloat16) for _ in range(rounds)]))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--cells", type=int, default=1200, help="synthetic cells (about 2/3 train)")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--backbone", default="resnet18", help="backbone of the epoch comparison")
    ap.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16"))
    ap.add_argument("--backbones", default="resnet18,densenet121")
    ap.add_argument("--sizes", default="32,64,96")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--skip-epoch", action="store_true")
    ap.add_argument("--skip-precision", action="store_true")
    ap.add_argument("--skip-augment", action="store_true")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    print("NOTE: ratios are measured side by side in one process; on a shared machine absolute times are noisy.\n")
    if not args.skip_augment:
        augment_cost(args)
    if not args.skip_epoch:
        epoch_ratio(args)
    if not args.skip_precision:
        precision_table(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
