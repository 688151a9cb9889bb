"""Tuning throughput: trials per hour with 1 and 2 workers on one study, side by side; the inner
γ/C study's share of a trial; and the storage overhead of Optuna's SQLite/journal storages beside
MLflow's own ``mlflow.optuna.MlflowStorage``.

1. A tiny synthetic set (``zoo data synth``, 32 px) in a temporary project home. ``--trials`` tml
   trials (1 epoch, 16 px, ``--limit`` images) by one ``zoo tune`` worker, then the same number
   split over two concurrent workers on a journal storage (a new study each). Wall time per
   phase -> trials/hour; the ratio (2 workers / 1 worker) is the figure. On a 2-core machine shared
   with other jobs expect well under 2: both workers compete for the same cores (each worker runs
   with OMP_NUM_THREADS=1 so they do not oversubscribe).
2. From every completed trial: the inner study's seconds (``inner_svm_seconds`` +
   ``inner_svm_embed_seconds`` on the trial's run) over the trial's duration.
3. Storage overhead: 30 no-op trials through each storage (SQLite RDB, journal file, MlflowStorage
   on the same SQLite MLflow store) -> ms per trial.

    python benchmarks/tune_throughput.py [--trials 4] [--limit 75] [--inner-trials 40]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent


def zoo(args, env, cwd, wait=True):
    proc = subprocess.Popen([str(BIN / "zoo"), *args], env=env, cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    if not wait:
        return proc
    out, err = proc.communicate()
    if proc.returncode:
        raise SystemExit(f"zoo {' '.join(args)} failed:\n{err[-3000:]}")
    return out


def tune_args(study: str, storage: str, trials: int, a) -> list[str]:
    return ["tune", "--family", "tml", "--trials", str(trials), "--study", study, "--storage", storage,
            "--dataset", "tiny", "--epochs", "1", "--img_size", "16", "--batch_size", "16", "--limit", str(a.limit),
            "--inner_trials", str(a.inner_trials), "--pruner", "none", "--register", "false"]


def storage_overhead(home: Path, n: int = 30) -> dict[str, float]:
    import optuna
    from mlflow.optuna.storage import MlflowStorage

    from zoo.tracking import store
    from zoo.tune.storage import open_storage

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    store.configure()
    exp = store.get_or_create_experiment("bench-mlflow-storage")
    out = {}
    storages = {
        "sqlite (RDB, heartbeat)": lambda: open_storage(f"sqlite:///{home / 'bench.db'}"),
        "journal file": lambda: open_storage(f"journal:{home / 'bench.log'}"),
        "mlflow.optuna.MlflowStorage": lambda: MlflowStorage(experiment_id=exp),
    }
    for name, make in storages.items():
        study = optuna.create_study(study_name=f"bench-{len(out)}", storage=make())
        start = time.perf_counter()
        study.optimize(lambda t: t.suggest_float("x", 0, 1) + t.suggest_float("y", 0, 1), n_trials=n)
        out[name] = 1000 * (time.perf_counter() - start) / n
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=4, help="trials per phase (even)")
    ap.add_argument("--limit", type=int, default=75)
    ap.add_argument("--inner-trials", dest="inner_trials", type=int, default=40)
    a = ap.parse_args()
    home = Path(tempfile.mkdtemp(prefix="zoo-tune-bench-"))
    env = dict(os.environ, ZOO_HOME=str(home), MLFLOW_TRACKING_URI=f"sqlite:///{home / 'mlflow.db'}",
               HF_HUB_OFFLINE="1", MPLBACKEND="Agg", OMP_NUM_THREADS="1")
    env.pop("MLFLOW_RUN_ID", None)
    zoo(["data", "synth", "--out", str(home / "raw"), "--n-cells", "150", "--img-size", "32", "--name", "tiny",
         "--seed", "1"], env, home)
    storage = f"journal:{home / 'studies.log'}"
    # warm-up (imports, numba/torch first-call costs, MLflow schema) outside the timed phases
    zoo(tune_args("warmup", storage, 1, a), env, home)

    start = time.perf_counter()
    zoo(tune_args("one-worker", storage, a.trials, a), env, home)
    one = time.perf_counter() - start
    start = time.perf_counter()
    procs = [zoo(tune_args("two-workers", storage, a.trials // 2, a), env, home, wait=False) for _ in range(2)]
    for p in procs:
        _, err = p.communicate()
        if p.returncode:
            raise SystemExit(f"worker failed:\n{err[-3000:]}")
    two = time.perf_counter() - start

    os.environ.update(ZOO_HOME=str(home), MLFLOW_TRACKING_URI=env["MLFLOW_TRACKING_URI"])
    import optuna
    from mlflow.tracking import MlflowClient

    from zoo.tune.storage import open_storage

    client = MlflowClient()
    shares, inner_s, trial_s = [], [], []
    for name in ("one-worker", "two-workers"):
        study = optuna.load_study(study_name=name, storage=open_storage(storage))
        for t in study.get_trials(states=(optuna.trial.TrialState.COMPLETE,)):
            m = client.get_run(t.user_attrs["mlflow_run_id"]).data.metrics
            inner = m.get("inner_svm_seconds", 0.0) + m.get("inner_svm_embed_seconds", 0.0)
            total = t.duration.total_seconds()
            shares.append(inner / total)
            inner_s.append(inner)
            trial_s.append(total)
    overhead = storage_overhead(home)

    print(f"machine: {os.cpu_count()} CPU cores (shared with other jobs: wall-clock figures swing)")
    print(f"tiny tml trials: 1 epoch, 16 px, limit {a.limit}, inner study {a.inner_trials} trials")
    print(f"1 worker : {a.trials} trials in {one:7.1f} s -> {3600 * a.trials / one:6.1f} trials/hour")
    print(f"2 workers: {a.trials} trials in {two:7.1f} s -> {3600 * a.trials / two:6.1f} trials/hour")
    print(f"ratio 2 workers / 1 worker: {one / two:.2f}")
    print(f"inner γ/C study: median {statistics.median(inner_s):.2f} s of a median {statistics.median(trial_s):.1f} s "
          f"trial -> {100 * statistics.median(shares):.1f}% of a trial (max {100 * max(shares):.1f}%)")
    for name, ms in overhead.items():
        print(f"storage {name:30s}: {ms:7.1f} ms per no-op trial")
    print(f"(home: {home})")


if __name__ == "__main__":
    main()
