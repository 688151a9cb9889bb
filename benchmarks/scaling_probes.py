"""Per-cell costs behind docs/scaling.md, measured small and extrapolated with a fitted exponent.

    .venv/bin/python benchmarks/scaling_probes.py            # ~1-3 min on 2 cores
    .venv/bin/python benchmarks/scaling_probes.py --json out.json

Probes (each the zoo's own code path or the estimator it uses):
* SVM stage: ``SVC(kernel="rbf")`` fit on standardised 256-d embeddings (15 clustered classes, the
  shape of the zoo's validation/final SVM) at n = 1k/2k/4k -> time = a * n^k, k from a log-log fit;
  beside it the engines it hands over to (``LinearSVC``; ``Nystroem`` + ``LinearSVC``).
* UMAP (umap-learn) 256-d -> 2-d at n = 1k/2k/4k (after a warm-up fit that pays numba's compilation).
* Decoded cache: ``CellDataset`` with ``cache=True`` on the prepared ``synth`` images at 64 and 224 px
  -> bytes and seconds per cell.
* Manifest: bytes per row on disk (parquet) and in memory (pandas, deep) for the prepared ``synth``.
* Model artifacts: bytes per logged model folder under ``mlartifacts/`` (what each registered
  version adds to the artifact store).
The machine is shared (2 cores, other jobs running): read exponents and orders of magnitude, not
milliseconds.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def embeddings(n: int, dim: int = 256, classes: int = 15, seed: int = 0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 1.0, (classes, dim))
    y = rng.integers(0, classes, n)
    return centres[y] + rng.normal(0, 1.2, (n, dim)), y


def timed(fn, repeats: int = 1) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def exponent(ns, ts) -> tuple[float, float]:
    k, log_a = np.polyfit(np.log(ns), np.log(ts), 1)
    return float(k), float(np.exp(log_a))


def probe_svm(ns):
    from sklearn.kernel_approximation import Nystroem
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC, LinearSVC

    out = {"n": list(ns), "rbf_svc_s": [], "linear_svc_s": [], "nystroem_linear_s": []}
    for n in ns:
        X, y = embeddings(n)
        X = StandardScaler().fit_transform(X)
        out["rbf_svc_s"].append(timed(lambda: SVC(kernel="rbf").fit(X, y)))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # LinearSVC convergence on noisy blobs: timing only
            out["linear_svc_s"].append(timed(lambda: LinearSVC(C=1.0).fit(X, y)))
            out["nystroem_linear_s"].append(timed(lambda: make_pipeline(
                Nystroem(n_components=500, random_state=0), LinearSVC(C=1.0)).fit(X, y)))
    for key in ("rbf_svc_s", "linear_svc_s", "nystroem_linear_s"):
        out[key[:-2] + "_exponent"], out[key[:-2] + "_coef"] = exponent(ns, out[key])
    return out


def probe_umap(ns):
    import umap

    X, _ = embeddings(500)
    umap.UMAP(n_components=2, random_state=0, n_jobs=1).fit(X)  # numba compilation, not counted
    out = {"n": list(ns), "umap_s": []}
    for n in ns:
        X, _ = embeddings(n)
        out["umap_s"].append(timed(lambda: umap.UMAP(n_components=2, random_state=0, n_jobs=1).fit(X)))
    out["umap_exponent"], out["umap_coef"] = exponent(ns, out["umap_s"])
    return out


def probe_cache(n: int = 96):
    from zoo.data.datasets import CellDataset
    from zoo.data.prepared import PreparedDataset

    ds = PreparedDataset.load(str(ROOT / "data" / "prepared" / "synth"))
    df = ds.manifest.head(n)
    out = {}
    for size in (64, 224):
        start = time.perf_counter()
        cd = CellDataset(df, ds.root, sorted(ds.manifest["label"].unique()), size, train=False, cache=True,
                         prepared_dir=ds.path)
        seconds = time.perf_counter() - start
        out[f"{size}px"] = {"bytes_per_cell": cd._images.numel() * cd._images.element_size() / n,
                            "decode_s_per_cell": seconds / n}
    return out


def probe_manifest():
    import pandas as pd

    path = ROOT / "data" / "prepared" / "synth" / "manifest.parquet"
    m = pd.read_parquet(path)
    return {"rows": len(m), "parquet_bytes_per_row": path.stat().st_size / len(m),
            "memory_bytes_per_row": float(m.memory_usage(deep=True).sum()) / len(m)}


def probe_artifacts():
    sizes = {}
    for meta in (ROOT / "mlartifacts").glob("*/models/*/artifacts/artifacts/zoo_model/zoo_model.json"):
        family = meta.parts[-7]
        folder = meta.parents[2]  # the logged model's artifacts/ folder
        sizes.setdefault(family, []).append(sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()))
    return {f: {"models": len(s), "median_bytes": float(np.median(s))} for f, s in sorted(sizes.items())}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--json", help="also write the figures to this file")
    p.add_argument("--ns", default="1000,2000,4000", help="sample sizes for the SVM and UMAP probes")
    args = p.parse_args()
    ns = [int(x) for x in args.ns.split(",")]
    figures = {"svm": probe_svm(ns), "umap": probe_umap(ns), "cache": probe_cache(), "manifest": probe_manifest(),
               "artifacts": probe_artifacts()}
    print(json.dumps(figures, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
