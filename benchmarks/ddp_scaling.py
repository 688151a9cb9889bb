"""Epoch time of the same training in 1 process and in N DDP processes (torchrun, gloo on CPU).

Builds a small synthetic dataset in a temporary project, then trains ``tml`` with identical
parameters as ``zoo train tml ... --nproc 1`` and ``--nproc N``, alternating the two round by round
(so a neighbour's load slows both alike), and reads each run's per-epoch ``train_seconds`` and
``epoch_seconds`` from MLflow (rank 0's wall clock under DDP; the first epoch is a warm-up and is
left out). Reported: the median 1-process ÷ N-process ratio (> 1 = DDP is faster) and the test
macro-F of each side.

    python benchmarks/ddp_scaling.py [--nproc 2] [--rounds 2] [--epochs 3] [--cells 1500] [--img-size 64]

One process uses all cores (torch's intra-op threads); N processes get cores/N threads each. On 2
CPU cores there is no spare hardware for a second process: expect a ratio near or below 1 — the
point of DDP here is that the same command scales on GPUs and bigger hosts.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent


def prepare(home: Path, cells: int) -> dict[str, str]:
    env = dict(os.environ, ZOO_HOME=str(home), MLFLOW_TRACKING_URI=f"sqlite:///{home / 'mlflow.db'}",
               HF_HUB_OFFLINE="1", MPLBACKEND="Agg", MLFLOW_DISABLE_TELEMETRY="true",
               PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    for var in ("MLFLOW_RUN_ID", "MLFLOW_REGISTRY_URI", "WORLD_SIZE", "RANK", "ZOO_DATA_DIR"):
        env.pop(var, None)
    subprocess.run([str(BIN / "zoo"), "data", "synth", "--out", str(home / "raw"), "--n-cells", str(cells),
                    "--img-size", "96", "--name", "bench", "--seed", "0"], env=env, cwd=home, check=True,
                   capture_output=True)
    return env


def train(env: dict, home: Path, nproc: int, args) -> dict:
    cmd = [str(BIN / "zoo"), "train", "tml", "--dataset", "bench", "--epochs", str(args.epochs),
           "--patience", str(args.epochs), "--img_size", str(args.img_size), "--batch_size", "64",
           "--precision", "fp32", "--register", "false", "--seed", "0", "--nproc", str(nproc)]
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, cwd=home, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr[-4000:]}")
    code = ("import json, mlflow\nfrom zoo.tracking.store import configure\nconfigure(); c = mlflow.MlflowClient()\n"
            "r = mlflow.search_runs(search_all_experiments=True, order_by=['attributes.start_time DESC'],"
            " output_format='list')[0]\n"
            "h = {k: [m.value for m in sorted(c.get_metric_history(r.info.run_id, k), key=lambda m: m.step)]"
            " for k in ('train_seconds', 'epoch_seconds')}\n"
            "print(json.dumps({'run': r.info.run_id, 'nproc': r.data.params.get('nproc'),"
            " 'test_macro_f1': r.data.metrics.get('test_macro_f1'), **h}))\n")
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=home, capture_output=True, text=True, check=True)
    row = json.loads(out.stdout.strip().splitlines()[-1])
    row["wall"] = wall
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--nproc", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--cells", type=int, default=1500)
    ap.add_argument("--img-size", type=int, default=64)
    args = ap.parse_args()
    print(f"cores: {os.cpu_count()}; torch threads in 1 process: all; in {args.nproc} processes: "
          f"{max(1, (os.cpu_count() or 1) // args.nproc)} each")
    with tempfile.TemporaryDirectory(prefix="zoo-ddp-bench-") as tmp:
        home = Path(tmp)
        env = prepare(home, args.cells)
        ratios, epoch_ratios, rows = [], [], []
        for r in range(args.rounds):
            one = train(env, home, 1, args)
            many = train(env, home, args.nproc, args)
            assert many["nproc"] == str(args.nproc), many
            t1, tn = statistics.median(one["train_seconds"][1:]), statistics.median(many["train_seconds"][1:])
            e1, en = statistics.median(one["epoch_seconds"][1:]), statistics.median(many["epoch_seconds"][1:])
            ratios.append(t1 / tn)
            epoch_ratios.append(e1 / en)
            rows += [(r, 1, t1, e1, one["wall"], one["test_macro_f1"]),
                     (r, args.nproc, tn, en, many["wall"], many["test_macro_f1"])]
        print(f"\n| round | processes | train s/epoch | epoch s (with validation) | job wall s | test macro-F |")
        print("|---|---|---|---|---|---|")
        for r, n, t, e, w, f in rows:
            print(f"| {r} | {n} | {t:.2f} | {e:.2f} | {w:.1f} | {f:.3f} |")
        print(f"\ntraining speed-up, 1 process ÷ {args.nproc} processes (median over rounds): "
              f"{statistics.median(ratios):.2f}× (rounds: {', '.join(f'{x:.2f}' for x in ratios)})")
        print(f"whole epoch incl. validation: {statistics.median(epoch_ratios):.2f}× "
              f"(rounds: {', '.join(f'{x:.2f}' for x in epoch_ratios)})")


if __name__ == "__main__":
    main()
