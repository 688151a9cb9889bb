"""Prediction throughput: the registered pyfunc beside the bare encoder + SVM, in one run.

A CPU-preset pipeline (resnet18, 256-d embedding, 64 px; random init, SVMStage fitted on 150
synthetic cells) is logged as a pyfunc to a throw-away MLflow store and loaded back with
``mlflow.pyfunc.load_model``. Three ways of classifying the same 1,000 synthetic 64 px cells:

* ``bare``      the encoder (channels_last, inference_mode, batch 64) and ``svm.predict_proba`` +
                ``svm.predict`` on tensors that were decoded and preprocessed *beforehand*
                (untimed): the floor any serving wrapper adds to;
* ``pyfunc-b64``    ``model.predict(DataFrame({"image": <base64 PNGs>}))`` — what
                ``mlflow models serve`` receives: base64 + PNG decoding, eval_transform, encoder, SVM;
* ``pyfunc-array``  ``model.predict(<(1000, 64, 64, 3) uint8 array>)``;
* ``bare-bf16`` the bare path under ``torch.autocast("cpu", bfloat16)`` (only on CPUs with native
                bf16, see ``zoo.train.precision``): what bf16 inference would gain; its ratio to
                ``bare`` is the bf16 speed-up for serving.

The variants alternate round by round so a busy shared machine slows all alike; round 0 is a
warm-up. Ratios are medians of per-round ratios, on wall time and on process CPU time (with one
thread, the work actually done — steadier when other jobs share the machine).

    python benchmarks/predict_throughput.py [--n 1000] [--rounds 3] [--threads 1]

Target: pyfunc / bare >= 0.8.
"""

from __future__ import annotations

import argparse
import base64
import io
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

IMG, BATCH, DIM = 64, 64, 256
CLASSES = ["blast", "promyelocyte", "myelocyte", "eosinophil", "lymphocyte", "monocyte"]


def synthetic_cells(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(n, 64, 64, 3) uint8 noisy discs, one hue per class (only the pixels' cost matters here)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, len(CLASSES), n)
    hues = rng.integers(40, 220, (len(CLASSES), 3))
    yy, xx = np.mgrid[:IMG, :IMG]
    out = np.empty((n, IMG, IMG, 3), dtype=np.uint8)
    for i, k in enumerate(labels):
        img = np.full((IMG, IMG, 3), 232, dtype=np.int16)
        r = rng.uniform(0.22, 0.38) * IMG
        cy, cx = rng.uniform(0.35, 0.65, 2) * IMG
        img[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = hues[k]
        out[i] = np.clip(img + rng.integers(-18, 19, img.shape), 0, 255)
    return out, np.asarray(CLASSES, dtype=object)[labels]


def png_b64(img: np.ndarray) -> str:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def build_pipeline():
    import torch
    from PIL import Image

    from zoo.data.transforms import eval_transform
    from zoo.evaluate import SVMStage
    from zoo.models import create_encoder
    from zoo.models.embedding_svm import EmbeddingSVMModel

    torch.manual_seed(0)
    encoder = create_encoder("resnet18", embedding_dim=DIM, img_size=IMG).eval()
    X, y = synthetic_cells(150, seed=1)
    tf = eval_transform(IMG)
    with torch.inference_mode():
        emb = encoder(torch.stack([tf(Image.fromarray(a)) for a in X])).numpy()
    svm = SVMStage(gammas=("scale",), Cs=(1.0,)).fit(emb, y)
    return EmbeddingSVMModel("tml", encoder, svm, CLASSES, img_size=IMG, device="cpu")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1000, help="images per measurement")
    ap.add_argument("--rounds", type=int, default=3, help="measured rounds (after one warm-up)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (both sides)")
    args = ap.parse_args()

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    tmp = tempfile.TemporaryDirectory(prefix="zoo-bench-")
    os.environ["ZOO_HOME"] = tmp.name
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{Path(tmp.name) / 'mlflow.db'}"

    import mlflow
    import pandas as pd
    import torch
    from PIL import Image

    from zoo.data.transforms import eval_transform
    from zoo.tracking import packaging, runs

    torch.set_num_threads(args.threads)
    pipe = build_pipeline()
    with runs.start_run("bench", fold=0):
        info = packaging.log_zoo_model(pipe)
    model = mlflow.pyfunc.load_model(info.model_uri, model_config={"device": "cpu", "predict_batch_size": BATCH})

    images, _ = synthetic_cells(args.n, seed=2)
    frame = pd.DataFrame({"image": [png_b64(a) for a in images]})
    tf = eval_transform(IMG)
    tensors = torch.stack([tf(Image.fromarray(a)) for a in images])  # preprocessed once, untimed
    encoder, svm = pipe.encoder, pipe.svm

    def bare(dtype=None):
        out = []
        with torch.inference_mode(), torch.autocast("cpu", dtype=dtype or torch.float32, enabled=dtype is not None):
            for start in range(0, len(tensors), BATCH):
                x = tensors[start : start + BATCH].contiguous(memory_format=torch.channels_last)
                emb = encoder(x).float().numpy()
                out.append((svm.predict_proba(emb), svm.predict(emb)))
        return out

    variants = {
        "bare": bare,
        "pyfunc-b64": lambda: model.predict(frame),
        "pyfunc-array": lambda: model.predict(images),
    }
    from zoo.train.precision import cpu_supports_bf16

    if cpu_supports_bf16():
        variants["bare-bf16"] = lambda: bare(torch.bfloat16)
    wall: dict[str, list[float]] = {k: [] for k in variants}
    cpu: dict[str, list[float]] = {k: [] for k in variants}
    for rnd in range(args.rounds + 1):
        for name, fn in variants.items():
            w0, c0 = time.perf_counter(), time.process_time()
            fn()
            w, c = time.perf_counter() - w0, time.process_time() - c0
            if rnd:  # round 0 warms up caches, allocator and lazy imports
                wall[name].append(w)
                cpu[name].append(c)
            print(f"round {rnd}{' (warm-up)' if not rnd else ''}: {name:13s} {args.n / w:7.1f} cells/s wall, "
                  f"{args.n / c:7.1f} cells/s cpu", flush=True)

    print(f"\n{args.n} images, {IMG} px, resnet18 + SVM, batch {BATCH}, {args.threads} thread(s), "
          f"{args.rounds} rounds")
    print(f"{'variant':14s} {'cells/s wall':>13s} {'cells/s cpu':>12s} {'ratio wall':>11s} {'ratio cpu':>10s}")
    for name in variants:
        rw = statistics.median(b / v for b, v in zip(wall["bare"], wall[name]))
        rc = statistics.median(b / v for b, v in zip(cpu["bare"], cpu[name]))
        print(f"{name:14s} {args.n / statistics.median(wall[name]):13.1f} {args.n / statistics.median(cpu[name]):12.1f} "
              f"{rw:11.3f} {rc:10.3f}")
    print("target: pyfunc / bare >= 0.8")
    tmp.cleanup()


if __name__ == "__main__":
    main()
