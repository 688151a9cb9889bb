"""The experiment of paper 000 as one command: every guide × both guided losses, plus the TML
baseline, over CV folds → a comparison table, a Fig. 5-style bar chart and a markdown report, all
logged to one parent run (each training is a nested child run, so the MLflow UI can compare them).

Making it fit a 2-core CPU is a matter of parameters, not of a different code path: fewer CV
iterations (``folds``), smaller images, fewer epochs and a shorter patience; the decoded images of
a fold are shared by every configuration trained on it.
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

LOSS_ORDER = ("inverse_umap", "distance")

# Comparison presets (``preset=``; any other value is passed on as the training preset).
# screen: every guide with the distance loss (the paper's better loss; no UMAP refits) + TML, 3
#   CV iterations, 32 px, 6 epochs on the full data (~55 s per run with its validations and test on
#   a quiet machine): ~45 minutes on 2 cores. A fixed epoch count, not a wall-clock budget: a budget would let the load
#   of other work on the machine change the answer. Three folds are the fewest a paired interval can use.
# paper: 6 CV iterations with the training preset `paper` (DenseNet-121, 224 px, patience 50): days
#   on a CPU for every guide; pass guides= to run the few that matter.
# Both fix ce_weight=0 and svm_input=embedding: the question is the papers' (does a guide help the
#   triplet loss?), so no run gets the cpu preset's auxiliary cross-entropy head unless ce_weight=
#   asks for it, and the SVM reads the embedding the guide shapes.
COMPARE_PRESETS: dict[str, dict[str, Any]] = {
    "screen": dict(folds=3, losses="distance", common=dict(img_size=32, epochs=6, patience=6, val_every=2,
                                                           budget=None, ce_weight=0.0,
                                                           svm_input="embedding")),
    "paper": dict(folds=6, losses=",".join(LOSS_ORDER), common=dict(preset="paper", ce_weight=0.0,
                                                                    svm_input="embedding")),
}


def _split_list(value: str | Sequence[str], universe: Sequence[str], what: str) -> list[str]:
    items = [v.strip() for v in value.split(",")] if isinstance(value, str) else list(value)
    items = [v for v in items if v]
    if items == ["all"]:
        return list(universe)
    bad = [v for v in items if v not in universe]
    if bad:
        raise ValueError(f"unknown {what} {bad}; valid: {', '.join(universe)} (or 'all')")
    return items


def compare_guides(dataset: str = "synth", guides: str | Sequence[str] = "all",
                   losses: str | Sequence[str] | None = None, folds: int | None = None, *, tml: bool = True,
                   out_dir: str | Path | None = None, progress: bool = True, **common: Any) -> pd.DataFrame:
    """Train every (guide, loss) and the TML baseline on the first ``folds`` CV iterations of
    ``dataset``; return the per-run table and write the report. ``common`` are common training
    parameters (epochs, patience, img_size, limit, backbone, seed...), the same for every run.
    ``preset=screen|paper`` (:data:`COMPARE_PRESETS`) sets folds, losses and training parameters
    that were not given; the table gives each guide's paired per-fold difference to TML."""
    from zoo.families.params import parse_int
    from zoo.families.runner import build_family, load_dataset, reuse_loaders, train_fold
    from zoo.guides import GUIDES
    from zoo.paths import project_dir
    from zoo.tracking import store
    from zoo.tracking.runs import start_run

    setting = COMPARE_PRESETS.get(str(common.get("preset") or ""))
    if setting is not None:
        common.pop("preset")
        common = {**setting["common"], **{k: v for k, v in common.items() if v is not None}}
        folds = setting["folds"] if folds is None else folds
        losses = setting["losses"] if losses is None else losses
    guide_names = _split_list(guides, GUIDES.names(), "guide(s)")
    loss_names = _split_list(LOSS_ORDER if losses is None else losses, LOSS_ORDER, "loss(es)")
    folds = parse_int("folds", 3 if folds is None else folds, minimum=1)
    ds = load_dataset(dataset)
    if folds > ds.n_folds:
        raise ValueError(f"folds={folds} but dataset {ds.name!r} has {ds.n_folds} folds")
    common = {k: v for k, v in common.items() if v is not None}
    common.update(dataset=dataset, register="false")

    configs: list[tuple[str, dict[str, Any]]] = [("guided", {**common, "guide": g, "loss": l})
                                                  for g in guide_names for l in loss_names]
    if tml:
        configs.insert(0, ("tml", dict(common)))
    # Resolve every configuration first: a bad parameter fails before hours of training.
    planned = []
    for family, raw in configs:
        fam = build_family(family, raw)
        planned.append((fam, fam.cfg))

    store.configure()
    rows = []
    start = time.perf_counter()
    out = Path(out_dir) if out_dir else project_dir() / "reports"
    out.mkdir(parents=True, exist_ok=True)
    with start_run("guided", dataset=ds, fold="all", run_name=f"compare-guides-{ds.name}",
                   params={"guides": ",".join(guide_names), "losses": ",".join(loss_names), "folds": folds,
                           **{k: v for k, v in common.items() if k != "register"}},
                   tags={"experiment": "compare_guides"}) as parent, reuse_loaders():
        bar = tqdm(total=len(planned) * folds, desc="compare guides", unit="run", disable=not progress)
        for fold in range(folds):  # fold-major: the decoded images of a fold are reused by every config
            for fam, cfg in planned:
                bar.set_postfix_str(f"fold {fold} {' '.join(fam.name_parts())}")
                res = train_fold(fam, ds, fold, nested=True, progress=False, log_model=False,
                                  embedding_map="pca",  # UMAP per run would add minutes
                                  checkpoints=False)    # 2 x 45 MB per epoch, never resumed here
                rows.append({"family": cfg.family, "guide": fam.params.get("guide", "none (TML)"),
                             "loss": fam.params.get("loss", "triplet"), "fold": fold, "run_id": res.run_id,
                             "seconds": res.seconds, **{k: v for k, v in res.metrics.items()
                                                         if k.startswith(("test_", "val_macro_f1"))}})
                bar.update(1)
        bar.close()
        runs = pd.DataFrame(rows)
        table = summarize(runs)
        if tml:
            table = add_paired(table, runs)
        elapsed = time.perf_counter() - start
        stem = f"compare_guides_{ds.name}"
        runs.to_csv(out / f"{stem}_runs.csv", index=False)
        table.to_csv(out / f"{stem}.csv", index=False)
        fig = plot_comparison(table, title=f"Guides on {ds.name} ({folds} folds)")
        fig.savefig(out / f"{stem}.png", dpi=120, bbox_inches="tight")
        report = markdown_report(table, ds.name, folds, common, elapsed, image=f"{stem}.png")
        (out / f"{stem}.md").write_text(report)
        parent.log_figure(fig, "comparison/guides_bar_chart.png")
        for suffix in ("_runs.csv", ".csv", ".md"):
            parent.log_artifact(out / f"{stem}{suffix}", "comparison")
        best = table.iloc[0]
        parent.log_metrics({"best_test_macro_f1_mean": float(best["f1_mean"]),
                            "tml_test_macro_f1_mean": float(_tml_row(table)["f1_mean"]) if tml else float("nan"),
                            "minutes": elapsed / 60})
        parent.set_tags({"best_guide": f"{best['guide']}/{best['loss']}", "report": str(out / f"{stem}.md")})
    log.info("comparison written to %s", out / f"{stem}.md")
    return table


def _tml_row(table: pd.DataFrame) -> pd.Series:
    return table[table["family"] == "tml"].iloc[0]


def add_paired(table: pd.DataFrame, runs: pd.DataFrame, confidence: float = 0.95) -> pd.DataFrame:
    """Per (guide, loss): the paired per-fold difference to TML of test macro-F (``f1_diff``,
    ``f1_low``, ``f1_high``, ``f1_verdict``) and of MCS (lower is better; ``mcs_*``), 95 % t
    interval over folds (:func:`zoo.evaluate.paired.paired_difference`)."""
    from zoo.evaluate.paired import paired_difference

    base = runs[runs["family"] == "tml"].set_index("fold")
    out = table.copy()
    for metric, key, maximize in (("test_macro_f1", "f1", True), ("test_mcs", "mcs", False)):
        if metric not in runs or base.empty:
            continue
        values = {name: [] for name in ("diff", "low", "high", "verdict")}
        for _, row in out.iterrows():
            sub = runs[(runs["guide"] == row["guide"]) & (runs["loss"] == row["loss"])].set_index("fold")
            if row["family"] == "tml":
                d = None
            else:
                common_folds = sorted(set(sub.index) & set(base.index))
                d = paired_difference(sub.loc[common_folds, metric].to_dict(), base.loc[common_folds, metric].to_dict(),
                                      confidence=confidence, maximize=maximize)
            values["diff"].append(d.mean if d else float("nan"))
            values["low"].append(d.low if d else float("nan"))
            values["high"].append(d.high if d else float("nan"))
            values["verdict"].append(d.verdict if d else "baseline")
        for name, column in values.items():
            out[f"{key}_{name}"] = column
    return out


def summarize(runs: pd.DataFrame) -> pd.DataFrame:
    """Mean ± std over folds per (guide, loss), best macro-F first."""
    def agg(group: pd.DataFrame) -> pd.Series:
        f1, mcs = group["test_macro_f1"], group["test_mcs"]
        out = {"family": group["family"].iloc[0], "folds": len(group),
               "f1_mean": f1.mean(), "f1_std": f1.std(ddof=1) if len(group) > 1 else 0.0,
               "mcs_mean": mcs.mean(), "mcs_std": mcs.std(ddof=1) if len(group) > 1 else 0.0}
        if "test_macro_f1_tolerant" in group:
            out["f1_tolerant_mean"] = group["test_macro_f1_tolerant"].mean()
        out["minutes"] = group["seconds"].sum() / 60
        return pd.Series(out)

    table = runs.groupby(["guide", "loss"], sort=False).apply(agg, include_groups=False).reset_index()
    if (table["family"] == "tml").any():
        base = _tml_row(table)
        table["f1_vs_tml"] = (table["f1_mean"] - base["f1_mean"]) * 100  # percentage points
        table["mcs_vs_tml"] = table["mcs_mean"] - base["mcs_mean"]
    return table.sort_values("f1_mean", ascending=False, kind="stable").reset_index(drop=True)


def plot_comparison(table: pd.DataFrame, title: str = ""):
    """Fig. 5 of paper 000: macro-F and MCS per guide, inverse UMAP dark, distance light, TML as
    a reference line, error bars = std over folds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    guided = table[table["family"] != "tml"]
    guides = sorted(guided["guide"].unique(), key=lambda g: (g in ("circular", "random"), g))
    losses = [l for l in LOSS_ORDER if l in set(guided["loss"])]
    shades = {"inverse_umap": "#1f4e79", "distance": "#7fb2e5"}
    fig, axes = plt.subplots(2, 1, figsize=(max(8, 0.7 * len(guides) + 3), 7), sharex=True)
    x = np.arange(len(guides))
    width = 0.8 / max(1, len(losses))
    for ax, metric, label in ((axes[0], "f1", "macro F-score (higher is better)"),
                              (axes[1], "mcs", "MCS (lower is better)")):
        for i, loss in enumerate(losses):
            sub = guided[guided["loss"] == loss].set_index("guide").reindex(guides)
            ax.bar(x + (i - (len(losses) - 1) / 2) * width, sub[f"{metric}_mean"], width,
                   yerr=sub[f"{metric}_std"], color=shades.get(loss, "grey"), label=loss, capsize=2)
        if (table["family"] == "tml").any():
            base = _tml_row(table)
            ax.axhline(base[f"{metric}_mean"], color="crimson", lw=1.2, ls="--", label="TML (no guide)")
        ax.set_ylabel(label)
        lo = np.nanmin(table[f"{metric}_mean"] - table[f"{metric}_std"].fillna(0))
        hi = np.nanmax(table[f"{metric}_mean"] + table[f"{metric}_std"].fillna(0))
        pad = 0.1 * (hi - lo or 1)
        ax.set_ylim(max(0, lo - pad), hi + pad)
        ax.grid(axis="y", alpha=0.3)
    axes[0].legend(fontsize=8, ncol=3)
    axes[1].set_xticks(x, guides, rotation=45, ha="right")
    axes[0].set_title(title)
    fig.tight_layout()
    return fig


def markdown_report(table: pd.DataFrame, dataset: str, folds: int, common: dict, elapsed: float,
                    image: str | None = None) -> str:
    lines = [f"# Embedding guides on `{dataset}`", "",
             f"{folds} CV iteration(s); settings: "
             + ", ".join(f"{k}={v}" for k, v in sorted(common.items()) if k not in ("dataset", "register"))
             + f"; {elapsed / 60:.1f} min in all.", ""]
    if image:
        lines += [f"![comparison]({image})", ""]
    paired = "f1_verdict" in table
    cols = ["guide", "loss", "macro-F (mean ± std)", "MCS (mean ± std)"]
    cols += (["ΔF vs TML, paired [95 % CI] (pp)", "macro-F verdict", "ΔMCS vs TML [95 % CI]", "MCS verdict"]
             if paired else ["ΔF vs TML (pp)", "ΔMCS vs TML"])
    lines += ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]

    def ci(r, key, scale, fmt):
        if r[f"{key}_verdict"] == "baseline":
            return "—"
        if not np.isfinite(r[f"{key}_low"]):
            return f"{r[f'{key}_diff'] * scale:{fmt}} [no interval: 1 fold]"
        return (f"{r[f'{key}_diff'] * scale:{fmt}} [{r[f'{key}_low'] * scale:{fmt}}, "
                f"{r[f'{key}_high'] * scale:{fmt}}]")

    for _, r in table.iterrows():
        head = (f"| {r['guide']} | {r['loss']} | {r['f1_mean']:.4f} ± {r['f1_std']:.4f} | "
                f"{r['mcs_mean']:.4f} ± {r['mcs_std']:.4f} | ")
        if paired:
            lines.append(head + f"{ci(r, 'f1', 100, '+.2f')} | {r['f1_verdict']} | {ci(r, 'mcs', 1, '+.4f')} | "
                         f"{r['mcs_verdict']} |")
        else:
            lines.append(head + f"{r.get('f1_vs_tml', float('nan')):+.2f} | {r.get('mcs_vs_tml', float('nan')):+.4f} |")
    if (table["family"] == "tml").any():
        guided = table[table["family"] != "tml"]
        by_loss = guided.groupby("loss")["f1_mean"].mean()
        if paired:
            better = guided[guided["f1_verdict"] == "better"]
            claim = (f"- Guides better than TML on macro-F (paired 95 % interval over {folds} folds excludes 0): "
                     f"{len(better)} of {len(guided)}"
                     + (f" ({', '.join(better['guide'] + '/' + better['loss'])})" if len(better) else "")
                     + f"; largest mean difference {guided['f1_diff'].max() * 100:+.2f} pp "
                     "(the paper reports up to +2.5 pp). A difference whose interval contains 0 is not "
                     "evidence either way.")
        else:
            beat = int((guided["f1_vs_tml"] > 0).sum())
            claim = (f"- Guides beating TML on macro-F: {beat} of {len(guided)} "
                     f"(best {guided['f1_vs_tml'].max():+.2f} pp; the paper reports up to +2.5 pp).")
        lines += ["", "## Against the paper's claims", "", claim,
                  "- Mean macro-F by loss: " + ", ".join(f"{k} {v:.4f}" for k, v in by_loss.items())
                  + " (the paper finds the distance loss better than inverse UMAP)."]
    return "\n".join(lines) + "\n"
