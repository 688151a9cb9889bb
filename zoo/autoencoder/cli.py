"""``zoo autoencoder grid`` (the paper's parameter sets -> Fig. 2/3 tables, chart, report) and
``zoo autoencoder backbone MODEL_URI`` (the reusable encoder weights of a registered model).
Also runnable as ``python -m zoo.autoencoder …``."""

from __future__ import annotations

import argparse
import sys


def add_commands(sub) -> None:
    parser = sub.add_parser("autoencoder", help="autoencoder family tools: the paper's grid, backbone reuse")
    cmds = parser.add_subparsers(dest="autoencoder_command", metavar="COMMAND")
    cmds.required = True

    grid = cmds.add_parser("grid", help="train the paper's parameter sets and write the Fig. 2/3 tables and chart")
    grid.add_argument("--dataset", default="synth")
    grid.add_argument("--methods", default="all",
                      help="comma-separated: vae256, rae1024, noise, mask_fixed, mask_sampled, mask_learned, "
                           "crop_small, crop_medium (or 'all')")
    grid.add_argument("--folds", default="1", help="how many CV iterations of the dataset's folds")
    for name in ("epochs", "patience", "img_size", "batch_size", "limit", "seed", "lr", "beta", "num_workers"):
        grid.add_argument(f"--{name}", default=None)
    grid.add_argument("--out", default=None, help="report folder (default reports/)")
    grid.set_defaults(func=_grid)

    rep = cmds.add_parser("report", help="write the grid's tables, chart and report from the finished child runs "
                                         "of a grid's parent run (e.g. an interrupted grid)")
    rep.add_argument("parent_run_id")
    rep.add_argument("--dataset", required=True, help="name used in the report's file names")
    rep.add_argument("--out", default=None, help="report folder (default reports/)")
    rep.set_defaults(func=_report)

    bb = cmds.add_parser("backbone", help="print the local path of a registered autoencoder's backbone weights "
                                          "(pass it as pretrained= to a supervised family)")
    bb.add_argument("model_uri", help="models:/zoo-autoencoder@candidate, models:/zoo-autoencoder/3, runs:/… "
                                      "or a model folder")
    bb.set_defaults(func=_backbone)


def _grid(args) -> int:
    from .grid import run_grid

    common = {k: getattr(args, k) for k in ("epochs", "patience", "img_size", "batch_size", "limit", "seed", "lr",
                                            "beta", "num_workers")}
    methods = [m.strip() for m in args.methods.split(",")]
    run_grid(args.dataset, methods, args.folds, out_dir=args.out, **common)
    return 0


def _report(args) -> int:
    from pathlib import Path

    from zoo.paths import project_dir

    from .grid import runs_of_parent, write_report

    runs = runs_of_parent(args.parent_run_id)
    folds = runs["fold"].nunique()
    report = write_report(runs, args.dataset, folds, {"parent_run": args.parent_run_id},
                          float(runs["seconds"].sum()), Path(args.out) if args.out else project_dir() / "reports")
    print(report)
    return 0


def _backbone(args) -> int:
    from .reuse import backbone_checkpoint

    print(backbone_checkpoint(args.model_uri))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m zoo.autoencoder")
    add_commands(parser.add_subparsers(dest="command", metavar="COMMAND", required=True))
    args = parser.parse_args(["autoencoder", *(sys.argv[1:] if argv is None else argv)])
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError, KeyError) as exc:
        print(f"zoo autoencoder: error: {exc}", file=sys.stderr)
        return 2
