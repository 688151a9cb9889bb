"""Prediction sets, decisions and referral of a trained model, side by side for the conformal
variants (APS, RAPS, class-conditional APS), on the validation (calibration) and test rows of the
fold it was trained on — the numbers of issue 14's closing note.

    python benchmarks/trust_report.py RUN_ID [--out reports/trust_<dataset>.json]

RUN_ID: a training run that logged a model (``runs:/RUN_ID/model``); its dataset, fold, limit and
seed are read from the run, so the rows are exactly the run's. Uses the tracking store of
``$MLFLOW_TRACKING_URI`` (or the project's).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def main(argv=None) -> dict:
    import matplotlib.pyplot as plt
    import mlflow

    from zoo.data import PreparedDataset
    from zoo.evaluate.trust import TrustLayer, trust_metrics
    from zoo.families.runner import fold_split
    from zoo.tracking import store

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run_id")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)

    store.configure()
    run = mlflow.get_run(args.run_id)
    p = run.data.params
    limit = None if p.get("limit") in (None, "", "None", "none") else int(p["limit"])
    ds = PreparedDataset.load(p["dataset"])
    split = fold_split(ds, int(p["fold"]), limit, int(p.get("seed", 0)))
    pyfunc = mlflow.pyfunc.load_model(f"runs:/{args.run_id}/model", model_config={"device": "cpu"})
    model = pyfunc.unwrap_python_model().model
    classes = model.classes

    def probs_of(rows):
        out = model.predict([str(x) for x in ds.image_paths(rows)])
        return out[[f"p_{c}" for c in classes]].to_numpy(dtype=float), out["label"].astype(str).to_numpy()

    t0 = time.perf_counter()
    val_p, _ = probs_of(split["val"])
    test_p, test_label = probs_of(split["test"])
    seconds = time.perf_counter() - t0
    val_y, test_y = split["val"]["label"].astype(str).to_numpy(), split["test"]["label"].astype(str).to_numpy()

    report = {"run_id": args.run_id, "dataset": ds.name, "fold": p["fold"], "limit": limit,
              "epochs": p.get("epochs"), "img_size": p.get("img_size"), "n_val": len(val_y), "n_test": len(test_y),
              "predict_seconds": round(seconds, 1), "variants": {}}
    keys = ["coverage_90", "set_size_90", "coverage_95", "set_size_95", "macro_f1_argmax", "mcs_argmax",
            "macro_f1_min_severity", "mcs_min_severity", "referred_share", "kept_accuracy", "aurc"]
    for name, kw in {"aps": {}, "raps": {"score": "raps"}, "aps_mondrian": {"mondrian": True}}.items():
        layer = TrustLayer.fit(classes, val_p, val_y, **kw)
        found, figures = trust_metrics(test_p, test_y, layer, default_pred=test_label, per_class=True)
        for fig in figures.values():
            plt.close(fig)
        per_class_cov = {k[len("coverage_90_"):]: v for k, v in found.items() if k.startswith("coverage_90_")}
        report["variants"][name] = {**{k: round(found[k], 4) for k in keys},
                                    "min_class_coverage_90": round(min(per_class_cov.values()), 4),
                                    "worst_class_90": min(per_class_cov, key=per_class_cov.get)}
    print(json.dumps(report, indent=2))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
