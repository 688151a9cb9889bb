"""The experiment of paper ``002`` as one command: the paper's parameter sets of every suppression
method plus the VAE-256 and RAE-1024 baselines, over CV folds -> a Fig. 2-style table
(reconstruction inside the cell contour per configuration), a Fig. 3-style table and chart (per
method, the configurations with the best and the worst reconstruction and their probe macro-F1)
and a markdown report; every training is a nested child run of one parent run.

```bash
python -m zoo.autoencoder grid --dataset synth --folds 1 --epochs 3 --img_size 32 --limit 600
```

The paper ranks the configurations of a method by reconstruction SSIM on unseen data and
classifies with the best and the worst of them. Here the ranking key is ``test_contour_ssim``
(inside the cell mask) when the dataset has masks, else ``test_ssim`` of the patch.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

log = logging.getLogger(__name__)

# (method label, configuration label, family parameters): the paper's Sec. 3.4 list.
PAPER_GRID: tuple[tuple[str, str, dict[str, Any]], ...] = (
    ("VAE-256", "none", {"method": "none"}),
    ("RAE-1024", "none", {"method": "none", "arch": "rae1024"}),
    *(("noise", f"sigma={s}", {"method": "noise", "sigma": s}) for s in (50, 100, 200)),
    *(("mask fixed", f"r={r}", {"method": "mask_fixed", "radius": r}) for r in (50, 90, 126)),
    *(("mask sampled", f"mu={r}", {"method": "mask_sampled", "radius": r, "radius_std": 20}) for r in (50, 90, 126)),
    *(("mask learned", f"penalty={'yes' if p else 'no'}", {"method": "mask_learned", "radius_penalty": p})
      for p in (0.0, 1.0)),
    *(("crop small", f"offset={o}", {"method": "crop", "crop_size": 88, "offset_std": o}) for o in (0, 5, 15)),
    *(("crop medium", f"offset={o}", {"method": "crop", "crop_size": 172, "offset_std": o}) for o in (0, 5, 15)),
)
METHOD_ORDER = tuple(dict.fromkeys(m for m, _, _ in PAPER_GRID))
BASELINES = ("VAE-256", "RAE-1024")


def select(methods: str | Sequence[str] = "all") -> list[tuple[str, str, dict[str, Any]]]:
    """The grid entries of the given method labels (comma-separated or a list; ``all``)."""
    items = [m.strip() for m in methods.split(",")] if isinstance(methods, str) else list(methods)
    if [_key(m) for m in items] == ["all"]:
        return list(PAPER_GRID)
    known = {_key(m) for m in METHOD_ORDER}
    bad = [m for m in items if _key(m) not in known]
    if bad:
        raise ValueError(f"unknown grid method(s) {bad}; valid: {', '.join(METHOD_ORDER)} (or 'all'; case, "
                         "spaces, '-' and '_' do not matter: mask_sampled = mask sampled)")
    wanted = {_key(m) for m in items}
    return [g for g in PAPER_GRID if _key(g[0]) in wanted]


def _key(label: str) -> str:
    """A method label without case, spaces, '-' or '_' (command lines split on spaces)."""
    return "".join(ch for ch in str(label).lower() if ch.isalnum())


def run_grid(dataset: str = "synth", methods: str | Sequence[str] = "all", folds: int = 1, *,
             out_dir: str | Path | None = None, progress: bool = True, **common: Any) -> pd.DataFrame:
    """Train every selected configuration on the first ``folds`` CV iterations of ``dataset``;
    write the tables, chart and report; return the per-run table. ``common``: common training
    parameters (epochs, patience, img_size, limit, batch_size, seed…), the same for every run."""
    from zoo.families.params import parse_int
    from zoo.families.runner import build_family, load_dataset, reuse_loaders, train_fold
    from zoo.paths import project_dir
    from zoo.tracking import store
    from zoo.tracking.runs import start_run

    entries = select(methods)
    folds = parse_int("folds", folds, minimum=1)
    ds = load_dataset(dataset)
    if folds > ds.n_folds:
        raise ValueError(f"folds={folds} but dataset {ds.name!r} has {ds.n_folds} folds")
    common = {k: v for k, v in common.items() if v is not None}
    common.update(dataset=dataset, register="false")
    planned = [(m, c, build_family("autoencoder", {**common, **params})) for m, c, params in entries]

    store.configure()
    rows = []
    start = time.perf_counter()
    out = Path(out_dir) if out_dir else project_dir() / "reports"
    out.mkdir(parents=True, exist_ok=True)
    with start_run("autoencoder", dataset=ds, fold="all", run_name=f"autoencoder-grid-{ds.name}",
                   params={"methods": ",".join(dict.fromkeys(m for m, _, _ in entries)), "folds": folds,
                           **{k: v for k, v in common.items() if k != "register"}},
                   tags={"experiment": "autoencoder_grid"}) as parent, reuse_loaders():
        bar = tqdm(total=len(planned) * folds, desc="autoencoder grid", unit="run", disable=not progress)
        for fold in range(folds):  # fold-major: the decoded images of a fold are reused by every config
            for method, config, fam in planned:
                bar.set_postfix_str(f"fold {fold} {method} {config}")
                res = train_fold(fam, ds, fold, nested=True, progress=False, log_model=False, checkpoints=False)
                rows.append({"method": method, "config": config, "fold": fold, "run_id": res.run_id,
                             "seconds": res.seconds, "best_epoch": res.best_epoch,
                             **{k: v for k, v in res.metrics.items() if k.startswith(("test_", "val_"))}})
                bar.update(1)
        bar.close()
        runs = pd.DataFrame(rows)
        elapsed = time.perf_counter() - start
        report = write_report(runs, ds.name, folds, common, elapsed, out)
        stem = report.stem
        parent.log_artifact(out / f"{stem}.png", "grid")
        for suffix in ("_runs.csv", "_configs.csv", ".csv", ".md"):
            parent.log_artifact(out / f"{stem}{suffix}", "grid")
        parent.log_metrics({"minutes": elapsed / 60})
    log.info("grid written to %s", report)
    return runs


def _entry_of(params: dict[str, str]) -> tuple[str, str] | None:
    """(method label, configuration label) of a child run's parameters, None when off the grid."""
    for method, config, grid_params in PAPER_GRID:
        want = {"arch": "vae256", **grid_params}
        if all(_same(params.get(k), v) for k, v in want.items()):
            return method, config
    return None


def _same(value: str | None, expected: Any) -> bool:
    if value is None:
        return False
    if isinstance(expected, str):
        return value == expected
    try:
        return float(value) == float(expected)
    except ValueError:
        return False


def runs_of_parent(parent_run_id: str) -> pd.DataFrame:
    """The per-run table of a grid from its child runs in MLflow (what :func:`run_grid` builds),
    e.g. to write the report of an interrupted grid from the runs that finished."""
    import mlflow

    from zoo.tracking import store

    store.configure()
    children = mlflow.search_runs(search_all_experiments=True,
                                  filter_string=f"tags.mlflow.parentRunId = '{parent_run_id}'",
                                  output_format="list")
    rows = []
    for run in children:
        if run.info.status != "FINISHED":
            continue
        entry = _entry_of(dict(run.data.params))
        if entry is None:
            continue
        m = run.data.metrics
        rows.append({"method": entry[0], "config": entry[1], "fold": run.data.params.get("fold"),
                     "run_id": run.info.run_id,
                     "seconds": ((run.info.end_time or 0) - run.info.start_time) / 1000.0,
                     **{k: v for k, v in m.items() if k.startswith(("test_", "val_"))}})
    if not rows:
        raise ValueError(f"run {parent_run_id} has no finished child runs of the autoencoder grid")
    frame = pd.DataFrame(rows)
    order = {(m, c): i for i, (m, c, _) in enumerate(PAPER_GRID)}
    return frame.iloc[sorted(range(len(frame)), key=lambda i: order[(frame["method"][i], frame["config"][i])])]


def write_report(runs: pd.DataFrame, dataset: str, folds: int, common: dict, elapsed: float,
                 out: Path) -> Path:
    """Tables, chart and markdown report of a per-run table into ``out``; returns the report."""
    configs, table = summarize(runs)
    stem = f"autoencoder_grid_{dataset}"
    out.mkdir(parents=True, exist_ok=True)
    runs.to_csv(out / f"{stem}_runs.csv", index=False)
    configs.to_csv(out / f"{stem}_configs.csv", index=False)
    table.to_csv(out / f"{stem}.csv", index=False)
    fig = plot_grid(table, title=f"Suppression methods on {dataset} ({folds} fold{'s' * (folds > 1)})")
    fig.savefig(out / f"{stem}.png", dpi=120, bbox_inches="tight")
    report = out / f"{stem}.md"
    report.write_text(markdown_report(configs, table, dataset, folds, common, elapsed, image=f"{stem}.png"))
    return report


def _rank_key(configs: pd.DataFrame) -> str:
    return "contour_ssim" if "contour_ssim" in configs and configs["contour_ssim"].notna().any() else "ssim"


def summarize(runs: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(per configuration means over folds — the Fig. 2 table; per method the best and the worst
    configuration by reconstruction with their macro-F1 — the Fig. 3 table)."""
    cols = {"test_macro_f1": "f1", "test_cv_macro_f1": "cv_f1", "test_linear_macro_f1": "linear_f1",
            "test_contour_l1": "contour_l1", "test_contour_ssim": "contour_ssim", "test_l1": "l1",
            "test_ssim": "ssim", "seconds": "seconds"}
    present = {k: v for k, v in cols.items() if k in runs}
    grouped = runs.groupby(["method", "config"], sort=False)
    agg = grouped[list(present)].mean().rename(columns=present)
    agg["f1_std"] = grouped["test_macro_f1"].std(ddof=1)  # NaN with one fold
    configs = agg.reset_index()
    key = _rank_key(configs)
    base = configs[configs["method"] == "VAE-256"]["f1"]
    ref = float(base.iloc[0]) if len(base) else np.nan
    rows = []
    for method in [m for m in METHOD_ORDER if m in set(configs["method"])]:
        group = configs[configs["method"] == method].sort_values(key, ascending=False, kind="stable")
        best, worst = group.iloc[0], group.iloc[-1]
        rows.append({"method": method, "best_config": best["config"], "best_" + key: best[key],
                     "best_f1": best["f1"], "worst_config": worst["config"], "worst_" + key: worst[key],
                     "worst_f1": worst["f1"], "best_f1_vs_vae": best["f1"] - ref,
                     "max_f1": group["f1"].max(), "max_f1_config": group.loc[group["f1"].idxmax(), "config"]})
    return configs, pd.DataFrame(rows)


def plot_grid(table: pd.DataFrame, title: str = ""):
    """Fig. 3-style horizontal bars: per method the best- (upper, bright) and worst-reconstructing
    (lower) configuration's macro-F1; the baselines as vertical lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = list(table["method"])
    y = np.arange(len(methods))[::-1]
    fig, ax = plt.subplots(figsize=(7, 0.5 * len(methods) + 1.2))
    ax.barh(y + 0.18, table["best_f1"], height=0.34, color="#4c9be8", label="best reconstruction")
    ax.barh(y - 0.18, table["worst_f1"], height=0.34, color="#1f4e79", label="worst reconstruction")
    for i, row in table.iterrows():
        ax.text(row["best_f1"], y[i] + 0.18, f" {row['best_config']}", va="center", fontsize=7)
        if row["worst_config"] != row["best_config"]:
            ax.text(row["worst_f1"], y[i] - 0.18, f" {row['worst_config']}", va="center", fontsize=7)
    for name, style in zip(BASELINES, ("--", ":")):
        hit = table[table["method"] == name]
        if len(hit):
            ax.axvline(float(hit["best_f1"].iloc[0]), color="grey", ls=style, lw=1, label=name)
    ax.set_yticks(y)
    ax.set_yticklabels(methods)
    ax.set_xlabel("macro-F1 of the shallow classifier on frozen representations (test cells)")
    ax.legend(fontsize=7, loc="lower right")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


def _fmt(v: Any) -> str:
    if isinstance(v, (float, np.floating)):
        return "—" if not np.isfinite(v) else f"{v:.4f}"
    return str(v)


def markdown_report(configs: pd.DataFrame, table: pd.DataFrame, dataset: str, folds: int, common: dict,
                    elapsed: float, image: str | None = None) -> str:
    key = _rank_key(configs)
    settings = ", ".join(f"{k}={v}" for k, v in sorted(common.items()) if k not in ("register", "dataset"))
    lines = [f"# Surrounding-cell suppression grid (paper 002) on `{dataset}`", "",
             f"{folds} CV iteration(s); {settings}; {elapsed / 60:.1f} min on this machine.", "",
             "## Per method: best and worst reconstruction (Fig. 3)", "",
             f"Configurations ranked by `{key}` on the test cells; F1 = macro-F1 of the shallow classifier "
             "(3 FC layers, ReLU) fitted on the training representations.", "",
             f"| method | best config | {key} | F1 | worst config | {key} | F1 | best F1 − VAE-256 |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for _, r in table.iterrows():
        lines.append(f"| {r['method']} | {r['best_config']} | {_fmt(r['best_' + key])} | {_fmt(r['best_f1'])} | "
                     f"{r['worst_config']} | {_fmt(r['worst_' + key])} | {_fmt(r['worst_f1'])} | "
                     f"{_fmt(r['best_f1_vs_vae'])} |")
    shown = [c for c in ("f1", "cv_f1", "linear_f1", "contour_l1", "contour_ssim", "l1", "ssim", "seconds")
             if c in configs]
    lines += ["", "## Every configuration (Fig. 2: reconstruction inside the contour)", "",
              "| method | config | " + " | ".join(shown) + " |", "| --- | --- |" + " --- |" * len(shown)]
    for _, r in configs.iterrows():
        lines.append(f"| {r['method']} | {r['config']} | " + " | ".join(_fmt(r[c]) for c in shown) + " |")
    if image:
        lines += ["", f"![methods]({image})"]
    lines.append("")
    return "\n".join(lines)
