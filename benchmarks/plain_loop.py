"""A plain training loop, the yardstick for the zoo's speed and accuracy.

What one writes by hand with torch + timm + scikit-learn, no zoo machinery: decode every image
once into one uint8 tensor, per batch one ``affine_grid``/``grid_sample`` warp (rotation by any
angle, flips, shift, shear, scale; reflection at the border) and per-sample colour jitter, a
resnet trained with cross-entropy (or the triplet margin loss, for :mod:`epoch_cost`), then an
RBF-SVM on its features. Used two ways:

* ``benchmarks/epoch_cost.py`` imports :class:`PlainLoop` to time one epoch beside the zoo's.
* Run as a script, it is the equal-wall-time comparison of issue 8: the plain cross-entropy loop
  and ``zoo``'s TML (and a guided run) each get ``--minutes`` of training on the same fold of a
  prepared dataset (PBC by default), side by side in one process, and are scored on the same
  test rows with the same SVM stage::

    python benchmarks/plain_loop.py --dataset pbc --fold 0 --minutes 12 [--families tml,guided]

  or each side in its own process at the same time, so they share the machine's load alike::

    python benchmarks/plain_loop.py --families "" --threads 1 &
    python benchmarks/plain_loop.py --no-plain --families tml --threads 1 &
    python benchmarks/plain_loop.py --no-plain --families guided --threads 1 &

  (prepare PBC first: ``zoo data ingest ../shared/data/pbc --name pbc --reader pbc``).
  ``benchmarks/equal_wall_time.py`` does this for every fold of a CV and reports paired intervals.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time

import numpy as np
import timm
import torch
import torch.nn.functional as F
from PIL import Image

MEAN = torch.tensor((0.485, 0.456, 0.406)).view(1, 3, 1, 1)
STD = torch.tensor((0.229, 0.224, 0.225)).view(1, 3, 1, 1)


def decode_all(paths, size: int) -> torch.Tensor:
    """Every image once, resized to ``size``, as one uint8 (N, 3, S, S) tensor."""
    out = torch.empty((len(paths), 3, size, size), dtype=torch.uint8)
    for i, p in enumerate(paths):
        img = Image.open(p).convert("RGB").resize((size, size), Image.Resampling.BILINEAR)
        out[i] = torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1)
    return out


def augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """uint8 batch -> augmented float batch in [0, 1]: one warp, per-sample colour jitter."""
    n = x.shape[0]
    u = lambda lo, hi: torch.rand(n, generator=gen) * (hi - lo) + lo  # noqa: E731
    ang, shx, shy = u(-math.pi, math.pi), u(-0.087, 0.087), u(-0.087, 0.087)
    s = u(0.95, 1.05)
    c, si, one = torch.cos(ang), torch.sin(ang), torch.ones(n)
    rot = torch.stack([torch.stack([c, -si], -1), torch.stack([si, c], -1)], -2)
    shear = torch.stack([torch.stack([one, torch.tan(shx)], -1), torch.stack([torch.tan(shy), one], -1)], -2)
    a = rot @ shear * s[:, None, None]
    flips = torch.diag_embed(1 - 2 * (torch.rand(n, 2, generator=gen) < 0.5).float())
    a = flips @ a
    t = flips @ (torch.stack([u(-0.1, 0.1), u(-0.1, 0.1)], -1)[..., None])
    inv = torch.linalg.inv(a)
    theta = torch.cat([inv, -(inv @ t)], 2)
    xf = x.float() / 255
    xf = F.grid_sample(xf, F.affine_grid(theta, list(xf.shape), align_corners=False), padding_mode="reflection",
                       align_corners=False)
    w = torch.tensor((0.299, 0.587, 0.114)).view(1, 3, 1, 1)
    xf = (xf * u(0.9, 1.1).view(n, 1, 1, 1)).clamp(0, 1)
    f = u(0.9, 1.1).view(n, 1, 1, 1)
    xf = (f * xf + (1 - f) * (xf * w).sum(1, keepdim=True).mean((2, 3), keepdim=True)).clamp(0, 1)
    f = u(0.9, 1.1).view(n, 1, 1, 1)
    return (f * xf + (1 - f) * (xf * w).sum(1, keepdim=True)).clamp(0, 1)


class PlainLoop:
    """resnet (timm, channels_last) + AdamW + cosine over ``epochs`` + cross-entropy or triplet."""

    def __init__(self, n_classes: int, backbone: str = "resnet18", loss: str = "ce", dim: int = 256,
                 lr: float = 1e-3, epochs: int = 30, steps_per_epoch: int = 1, dtype: torch.dtype | None = None,
                 seed: int = 0, fused: bool = False):
        torch.manual_seed(seed)
        self.gen = torch.Generator().manual_seed(seed)
        out = n_classes if loss == "ce" else dim
        self.model = timm.create_model(backbone, pretrained=False, num_classes=out, drop_rate=0.05)
        self.model = self.model.to(memory_format=torch.channels_last)
        # torch's default AdamW (a per-parameter loop on a CPU), as a hand-written script has it;
        # fused=True is the fused kernel the zoo's Trainer uses (zoo.train.trainer.make_adamw).
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=lr, weight_decay=1e-4, **({"fused": True} if fused else {}))
        self.sched = torch.optim.lr_scheduler.CosineAnnealingLR(self.opt, T_max=max(1, epochs * steps_per_epoch))
        self.lr = lr
        self.dtype = dtype
        self.loss_name = loss
        if loss == "triplet":
            from pytorch_metric_learning.losses import TripletMarginLoss
            from pytorch_metric_learning.miners import TripletMarginMiner

            self.miner, self.triplet = TripletMarginMiner(margin=0.1, type_of_triplets="all"), TripletMarginLoss(0.1)

    def _autocast(self):
        return torch.autocast("cpu", dtype=self.dtype or torch.float32, enabled=self.dtype is not None)

    def loss(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        out = out.float()
        if self.loss_name == "ce":
            return F.cross_entropy(out, y)
        return self.triplet(out, y, self.miner(out, y)) + 1e-3 * out.norm(dim=1).mean()

    def epoch(self, images: torch.Tensor, labels: torch.Tensor, batch: int = 64, batches=None,
              time_box: tuple[float, float] | None = None) -> int:
        """One pass over a shuffled order (m-per-class batches are the zoo's business; a random
        order is what the plain loop does). Returns the images seen.

        ``time_box=(start, end)`` (``time.perf_counter`` seconds): the learning rate follows a cosine
        over that wall time instead of ``epochs``, and the pass stops at the step where it ends."""
        self.model.train()
        batch = min(batch, len(images))  # a set smaller than a batch trains on one batch of it all
        order = torch.randperm(len(images), generator=self.gen)
        n = 0
        for k, start in enumerate(range(0, len(order) - batch + 1, batch)):
            if batches is not None and k >= batches:
                break
            if time_box is not None:
                now = time.perf_counter()
                if now >= time_box[1]:
                    break
                progress = (now - time_box[0]) / (time_box[1] - time_box[0])
                for group in self.opt.param_groups:
                    group["lr"] = self.lr * 0.5 * (1.0 + math.cos(math.pi * progress))
            idx = order[start:start + batch]
            x = ((augment(images[idx], self.gen) - MEAN) / STD).contiguous(memory_format=torch.channels_last)
            with self._autocast():
                out = self.model(x)
            loss = self.loss(out, labels[idx])
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()
            if time_box is None:
                self.sched.step()
            n += len(idx)
        return n

    @torch.inference_mode()
    def features(self, images: torch.Tensor, batch: int = 256, logits: bool = False):
        """Pooled backbone features (what the SVM sees), fp32; with ``logits``, (features, the
        head's logits) from the same pass (the arg-max is what a softmax classifier predicts)."""
        self.model.eval()
        chunks, heads = [], []
        for start in range(0, len(images), batch):
            x = ((images[start:start + batch].float() / 255 - MEAN) / STD).contiguous(memory_format=torch.channels_last)
            with self._autocast():
                pooled = self.model.forward_head(self.model.forward_features(x), pre_logits=True)
                chunks.append(pooled.float())
                if logits:
                    heads.append(self.model.get_classifier()(pooled).float())
        feats = torch.cat(chunks).numpy()
        return (feats, torch.cat(heads).numpy()) if logits else feats


def svm_macro_f1(train_x, train_y, test_x, test_y, seed: int = 0) -> tuple[float, float]:
    """(macro-F of an RBF-SVM with a small grid search on the training features, fit seconds)."""
    from sklearn.metrics import f1_score

    from zoo.evaluate.svm import SVMStage

    start = time.perf_counter()
    svm = SVMStage(random_state=seed, calibrate=False, max_search=1500).fit(train_x, train_y)
    return float(f1_score(test_y, svm.predict(test_x), average="macro")), time.perf_counter() - start


def run_plain(dataset, fold: int, minutes: float, size: int, seed: int, dtype, fused: bool = False) -> dict:
    split = dataset.split(fold)
    classes = list(dataset.classes)
    idx = {c: i for i, c in enumerate(classes)}
    t0 = wall0 = time.perf_counter()
    data = {k: (decode_all(dataset.image_paths(v), size), torch.tensor([idx[c] for c in v["label"]]))
            for k, v in split.items()}
    decode = time.perf_counter() - t0
    train_x, train_y = data["train"]
    # The cosine schedule spans the wall time, as the zoo's under a budget does, and training stops
    # at the step where the minutes end: every one of them trains. (Sizing the schedule in epochs
    # from one timed epoch undersized it whenever that epoch ran beside the other sides' start-up:
    # 7.8 of 12 minutes trained in one run.)
    loop = PlainLoop(len(classes), epochs=1, dtype=dtype, seed=seed, fused=fused)
    start = time.perf_counter()
    seen = 0
    while time.perf_counter() - start < minutes * 60:
        seen += loop.epoch(train_x, train_y, time_box=(start, start + minutes * 60))
    train_s = time.perf_counter() - start
    per_epoch = len(train_x) // min(64, len(train_x)) * min(64, len(train_x))
    done = round(seen / per_epoch, 2)  # epochs, the last one partial
    from sklearn.metrics import f1_score

    test_x, test_logits = loop.features(data["test"][0], logits=True)
    f1, svm_s = svm_macro_f1(loop.features(train_x), train_y.numpy(), test_x, data["test"][1].numpy(), seed)
    argmax_f1 = float(f1_score(data["test"][1].numpy(), test_logits.argmax(1), average="macro"))
    return {"name": "plain cross-entropy + SVM" + (" (fused AdamW)" if fused else ""), "epochs": done,
            "train_seconds": train_s, "decode_seconds": decode,
            "svm_seconds": svm_s, "test_macro_f1": f1,
            # The head's arg-max, without the SVM: the yardstick of a softmax classifier (`classifier`).
            "test_macro_f1_argmax": argmax_f1,
            # End to end (decode, training, features, SVM): the zoo side's wall_seconds
            # covers its whole run the same way (start-up, validations, packaging, test, plots).
            "wall_seconds": time.perf_counter() - wall0}


def run_zoo(family: str, dataset_name: str, fold: int, minutes: float, seed: int, extra: dict,
            label: str = "") -> dict:
    from zoo.families.runner import run_training

    raw = {"dataset": dataset_name, "fold": fold, "seed": seed, "register": False, "budget": minutes,
           "epochs": 1000, **extra}
    start = time.perf_counter()
    result = run_training(family, raw, progress=False)
    fold_result = result.folds[0]
    return {"name": f"zoo {family} {label}".strip(), "epochs": fold_result.epochs_run,
            "wall_seconds": time.perf_counter() - start, "test_macro_f1": fold_result.metrics.get("test_macro_f1"),
            "run_id": fold_result.run_id}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dataset", default="pbc")
    ap.add_argument("--fold", type=int, default=0)
    ap.add_argument("--minutes", type=float, default=12.0, help="training wall time of each side")
    ap.add_argument("--img-size", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16"))
    ap.add_argument("--families", default="tml,guided", help="zoo families to run beside the plain loop")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--zoo-params", default="", help="extra training parameters of the zoo side, "
                                                      "e.g. val_every=4,svm_every=1")
    ap.add_argument("--no-plain", action="store_true",
                    help="only the zoo families: to run each side in its own process at the same time "
                         "(e.g. three processes of --threads 1), so every side sees the same load")
    ap.add_argument("--fused", action="store_true",
                    help="the plain side uses torch's fused AdamW, as the zoo's Trainer does (default: torch's "
                         "default AdamW, what a hand-written loop has)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    from zoo.families.runner import load_dataset
    from zoo.train.precision import resolve_precision

    dataset = load_dataset(args.dataset)
    probe_model = timm.create_model("resnet18", num_classes=len(dataset.classes)).to(memory_format=torch.channels_last)
    prec = resolve_precision(args.precision, torch.device("cpu"), model=probe_model,
                             input_shape=(64, 3, args.img_size, args.img_size))
    rows = []
    if not args.no_plain:
        rows.append(run_plain(dataset, args.fold, args.minutes, args.img_size, args.seed, prec.dtype, args.fused))
        print(json.dumps(rows[-1]), flush=True)
    for fam in [f for f in args.families.split(",") if f]:
        rows.append(run_zoo(fam, args.dataset, args.fold, args.minutes, args.seed,
                            {"img_size": args.img_size, "precision": args.precision,
                             **dict(kv.split("=", 1) for kv in args.zoo_params.split(",") if kv)},
                            label=args.zoo_params))
        print(json.dumps(rows[-1]), flush=True)
    print(f"\nequal wall time ({args.minutes:g} min of training each), {args.dataset} fold {args.fold}, "
          f"precision {prec.name} ({prec.reason}); machine shared, timings noisy")
    for r in rows:
        print(f"  {r['name']:<40} epochs {r['epochs']:>3}  test macro-F {r['test_macro_f1']:.4f}  "
              f"end to end {r['wall_seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
