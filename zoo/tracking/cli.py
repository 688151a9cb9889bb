"""``zoo models list|promote|rollback``, ``zoo evaluate``, ``zoo predict``, ``zoo ui``.

Model arguments take a full MLflow URI (``models:/zoo-tml@production``, ``runs:/<id>/model``) or
the short registry form ``zoo-tml@production`` / ``zoo-tml/3``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"}


def model_uri(value: str) -> str:
    """``zoo-tml@production`` -> ``models:/zoo-tml@production``; full URIs and paths unchanged."""
    if "://" in value or value.startswith(("models:/", "runs:/")) or Path(value).exists():
        return value
    return f"models:/{value}"


def parse_fold(value: str) -> int | str:
    v = str(value).strip().lower()
    if v in ("test", "all"):
        return v
    try:
        fold = int(v)
    except ValueError:
        raise argparse.ArgumentTypeError(f"fold must be 'test', 'all' or a fold number, got {value!r}") from None
    if fold < 0:
        raise argparse.ArgumentTypeError(f"fold must be >= 0, got {fold}")
    return fold


def _positive_int(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {n}")
    return n


def add_commands(subparsers) -> None:
    models = subparsers.add_parser("models", help="registered models: list, promote, rollback")
    msub = models.add_subparsers(dest="models_command", metavar="ACTION")
    msub.required = True

    p = msub.add_parser("list", help="versions with aliases and key tags")
    p.add_argument("name", nargs="?", help="registered model, e.g. zoo-tml (default: every zoo-* model)")
    p.set_defaults(func=_cmd_list)

    p = msub.add_parser("promote", help="move an alias to a version if it is not worse than the holder")
    p.add_argument("name", help="registered model, e.g. zoo-tml")
    p.add_argument("version", type=_positive_int)
    p.add_argument("--alias", default="production", choices=("staging", "production"))
    p.add_argument("--tolerance", type=float, default=0.0,
                   help="macro-F may be lower / MCS higher than the holder's by at most this")
    p.add_argument("--force", action="store_true", help="skip the gates (recorded in the version tags)")
    p.add_argument("--reason", default="", help="why (recorded as promotion_reason)")
    p.add_argument("--who", default=None, help="who (default: the login name)")
    p.set_defaults(func=_cmd_promote)

    p = msub.add_parser("rollback", help="give the alias back to its previous holder")
    p.add_argument("name")
    p.add_argument("--alias", default="production", choices=("staging", "production"))
    p.add_argument("--reason", default="")
    p.add_argument("--who", default=None)
    p.set_defaults(func=_cmd_rollback)

    p = subparsers.add_parser("evaluate", help="evaluate a registered model on a prepared dataset")
    p.add_argument("model", type=model_uri, help="e.g. zoo-tml@production or models:/zoo-tml/3")
    p.add_argument("--dataset", default="synth", help="prepared dataset name or folder")
    p.add_argument("--fold", type=parse_fold, default="test", help="test (fold 0's test fold) | <k> | all")
    p.add_argument("--class-map", dest="class_map", default=None,
                   help="YAML mapping dataset class -> model class (see zoo.tracking.evaluation)")
    p.add_argument("--limit", type=_positive_int, default=None)
    p.add_argument("--device", default="auto")
    p.set_defaults(func=_cmd_evaluate)

    p = subparsers.add_parser("predict", help="classify image files with a model")
    p.add_argument("model", type=model_uri)
    p.add_argument("images", nargs="+", help="image files or folders (searched recursively)")
    p.add_argument("--out", default=None, help="write CSV here (default: print)")
    p.add_argument("--embedding", action="store_true", help="add the embedding column")
    p.add_argument("--device", default="auto")
    p.set_defaults(func=_cmd_predict)

    p = subparsers.add_parser("ui", help="start `mlflow ui` on the zoo's store (or print the command)")
    p.add_argument("--port", type=int, default=5000)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--print", dest="print_only", action="store_true",
                   help="only print the tracking URI and the command")
    p.set_defaults(func=_cmd_ui)


def _cmd_list(args) -> int:
    import pandas as pd

    from zoo.tracking.registry import list_models

    df = list_models(args.name)
    if df.empty:
        print("no registered zoo models yet (train one: mlflow run . -e tml --env-manager local)")
        return 0
    df = df.assign(dataset_digest=df["dataset_digest"].str.slice(0, 12),
                   git_commit=df["git_commit"].str.slice(0, 8))
    cols = [c for c in df.columns if c not in ("run_id",) and (df[c].astype(str) != "").any()]
    with pd.option_context("display.width", 200, "display.max_columns", 30):
        print(df[cols].to_string(index=False))
    return 0


def _cmd_promote(args) -> int:
    from zoo.tracking.registry import _client, _holder, previous_alias, promote

    holder = _holder(_client(), args.name, args.alias)
    if holder is not None and str(holder.version) == str(args.version):
        print(f"{args.name} v{args.version} is already @{args.alias}, nothing changed")
        return 0
    mv = promote(args.name, args.version, alias=args.alias, tolerance=args.tolerance, force=args.force,
                 who=args.who, why=args.reason)
    old = mv.tags.get("replaced_version", "none")
    moved = f"; v{old} is now @{previous_alias(args.alias)}" if old not in ("none", mv.version) else ""
    print(f"{args.name} v{mv.version} is now @{args.alias}{moved}")
    return 0


def _cmd_rollback(args) -> int:
    from zoo.tracking.registry import previous_alias, rollback

    mv = rollback(args.name, alias=args.alias, who=args.who, why=args.reason)
    print(f"{args.name} @{args.alias} -> v{mv.version}; v{mv.tags.get('replaced_version')} is now "
          f"@{previous_alias(args.alias)}")
    return 0


def _cmd_evaluate(args) -> int:
    import json

    import mlflow

    from zoo.tracking.evaluation import evaluate_model

    metrics = evaluate_model(args.model, args.dataset, fold=args.fold, class_map=args.class_map,
                             limit=args.limit, device=args.device)
    run = mlflow.get_run(metrics["run_id"])
    limit = f" (stratified sample, --limit {args.limit})" if args.limit else ""
    print(f"run:       {run.info.run_name} ({run.info.run_id})")
    print(f"fold:      {run.data.tags.get('eval_fold', args.fold)} of {args.dataset}; "
          f"test rows: {metrics.get('n_images')}{limit}")
    print(f"artifacts: {run.info.artifact_uri} (metrics.json, predictions.csv, plots/)")
    keys = ("n_images", *METRIC_DIRECTIONS)
    print("better:    " + ", ".join(f"{arrow} {k}" for k, arrow in METRIC_DIRECTIONS.items())
          + "  (MCS: mean misclassification severity, a cost)")
    print(json.dumps({k: metrics[k] for k in keys if k in metrics}, indent=2))
    return 0


# ↑ higher is better, ↓ lower is better.
METRIC_DIRECTIONS = {"macro_f1": "↑", "balanced_accuracy": "↑", "mcs": "↓", "mcs_norm": "↓", "tolerant_macro_f1": "↑"}


def _collect_images(items: list[str]) -> list[str]:
    paths: list[str] = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            found = sorted(str(f) for f in p.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise ValueError(f"folder {item} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
            paths += found
        elif p.is_file():
            paths.append(str(p.resolve()))
        else:
            raise FileNotFoundError(f"{item}: no such file or folder")
    return paths


def _cmd_predict(args) -> int:
    import mlflow
    import pandas as pd

    from zoo.tracking.store import configure

    configure()
    paths = _collect_images(args.images)
    model = mlflow.pyfunc.load_model(args.model, model_config={"device": args.device})
    out = model.predict(pd.DataFrame({"image": paths}), params={"return_embedding": bool(args.embedding)})
    out.insert(0, "image", paths)
    if args.out:
        out.to_csv(args.out, index=False)
        print(f"wrote {len(out)} predictions to {args.out}")
    else:
        with pd.option_context("display.width", 200, "display.max_columns", 8):
            print(out[["image", "label", "confidence"]].to_string(index=False))
    return 0


def _cmd_ui(args) -> int:
    from zoo.tracking import store

    uri = store.configure()
    if store.is_remote(uri):
        print(f"tracking server: {uri} (open it in a browser; nothing to start here)")
        return 0
    cmd = store.ui_command(port=args.port, host=args.host)
    print(f"tracking URI: {uri}")
    print("command:      " + " ".join(cmd))
    if args.print_only:
        return 0
    exe = shutil.which("mlflow") or str(Path(sys.executable).with_name("mlflow"))
    print(f"open http://{args.host}:{args.port}  (Ctrl-C to stop)", flush=True)
    try:
        return subprocess.call([exe, *cmd[1:]], env=dict(os.environ))
    except KeyboardInterrupt:
        return 0
