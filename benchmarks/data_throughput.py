"""Data-layer throughput: raw decode speed, training-loader images/s with and without the decoded
cache at 64/128/224 px, ingest (hash + dedup) speed, and synthetic generation time.

    python benchmarks/data_throughput.py [--n 600] [--workers auto] [--synth-cells 4560]

Uses the PBC JPEGs of ../shared/data when present (360 px, the case the cache exists for), else
synthetic 360 px PNGs. Not a test: prints a table of measured figures, side by side.
"""

from __future__ import annotations

import os

# tqdm reads its TQDM_* settings when first imported; progress bars would interleave with the table.
os.environ.setdefault("TQDM_DISABLE", "1")  # (hence the imports below it)

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image
from torch.utils.data import DataLoader

from zoo.data.datasets import CellDataset, resolve_num_workers
from zoo.data.images import load_rgb_resized
from zoo.paths import shared_data_dir

SIZES = (64, 128, 224)


def source_images(n: int, tmp: Path) -> tuple[pd.DataFrame, Path, str]:
    shared = shared_data_dir()
    if shared is not None and (shared / "pbc").is_dir():
        from zoo.data.readers import READERS

        df = READERS.get("pbc")(shared / "pbc")
        df = df.sample(frac=1.0, random_state=0).groupby("source_label").head(max(1, n // 11))
        df = df.assign(label=df["source_label"]).head(n)
        return df.reset_index(drop=True), shared / "pbc", f"PBC JPEG 360 px ({len(df)} images)"
    rng = np.random.RandomState(0)
    rows = []
    for i in range(n):
        arr = rng.randint(0, 256, (45, 45, 3), dtype=np.uint8)
        Image.fromarray(arr).resize((360, 360), Image.Resampling.BILINEAR).save(tmp / f"{i}.png")
        rows.append({"image": f"{i}.png", "label": f"c{i % 5}"})
    return pd.DataFrame(rows), tmp, f"synthetic PNG 360 px ({n} images)"


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def decode_rate(paths: list[Path], size: int | None) -> float:
    def run():
        for p in paths:
            if size is None:
                with Image.open(p) as im:
                    im.convert("RGB").load()
            else:
                load_rgb_resized(p, size)

    return len(paths) / timed(run)


def loader_rate(ds: CellDataset, batch_size: int, workers: int, epochs: int = 1) -> float:
    loader = DataLoader(ds, batch_size=batch_size, shuffle=True, num_workers=workers,
                        persistent_workers=workers > 0, generator=torch.Generator().manual_seed(0))
    next(iter(loader))  # start-up (worker spawn) is not throughput
    n = 0
    t0 = time.perf_counter()
    for _ in range(epochs):
        for x, _ in loader:
            n += len(x)
    return n / (time.perf_counter() - t0)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=600, help="images for the loader measurements")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--workers", default="auto")
    ap.add_argument("--synth-cells", type=int, default=4560, help="0 skips the generator timing")
    ap.add_argument("--skip-ingest", action="store_true")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    workers = resolve_num_workers(args.workers)
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        df, root, what = source_images(args.n, tmp)
        paths = [root / p for p in df["image"]]
        classes = sorted(df["label"].unique())
        print(f"source: {what}; {os.cpu_count()} CPU cores, torch threads 1, loader workers {workers}\n")

        rows = [("full decode (PIL, RGB)", f"{decode_rate(paths[:200], None):8.0f}", "", "")]
        for s in SIZES:
            rows.append((f"decode to {s} px (JPEG draft + resize)", f"{decode_rate(paths[:200], s):8.0f}", "", ""))
        print(pd.DataFrame(rows, columns=["raw decode", "img/s", "", ""]).iloc[:, :2].to_string(index=False))
        print()

        table = []
        for s in SIZES:
            fill = {}

            def build():
                fill["ds"] = CellDataset(df, root, classes, s, train=True, cache=True, cache_workers=workers)

            t_fill = timed(build)
            cached = fill["ds"]
            lazy = CellDataset(df, root, classes, s, train=True, cache=False)
            row = {"img_size": s, "cache fill s": round(t_fill, 1),
                   "cached img/s (0 workers)": loader_rate(cached, args.batch_size, 0),
                   f"cached img/s ({workers} workers)": loader_rate(cached, args.batch_size, workers) if workers else np.nan,
                   "no cache img/s (0 workers)": loader_rate(lazy, args.batch_size, 0),
                   f"no cache img/s ({workers} workers)": loader_rate(lazy, args.batch_size, workers) if workers else np.nan,
                   "cache MiB": round(s * s * 3 * len(df) / 2**20, 1)}
            table.append(row)
        out = pd.DataFrame(table).set_index("img_size")
        print("training loader (train_transform: rotation, affine, flips, colour jitter; batch "
              f"{args.batch_size}, {len(df)} images)")
        print(out.round(0).to_string())
        print()

        if not args.skip_ingest and "PBC" in what:
            from zoo.data.ingest import ingest

            for w in (1, 2):  # on a busy machine the second process may find no free core
                t = timed(lambda: ingest(shared_data_dir() / "pbc", "pbc_bench", reader="pbc",
                                         out=tmp / f"prep{w}", workers=w, verbose=False))
                print(f"ingest PBC (5,050 JPEGs: decode + sha256 + ahash + dedup + folds), {w} process(es): "
                      f"{t:5.1f} s = {5050 / t:4.0f} img/s")
            print()

        if args.synth_cells:
            try:
                from zoo.data.synth import generate
            except ImportError:
                print("synth generation: zoo.data.synth not available")
            else:
                import inspect

                quiet = {"progress": False} if "progress" in inspect.signature(generate).parameters else {}
                t = timed(lambda: generate(tmp / "synth", n_cells=args.synth_cells, img_size=96, seed=0, **quiet))
                print(f"synth generation: {args.synth_cells} cells at 96 px in {t:.1f} s "
                      f"({args.synth_cells / t:.0f} cells/s)")


if __name__ == "__main__":
    main()
