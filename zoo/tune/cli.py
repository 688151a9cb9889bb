"""``zoo tune --family guided --trials 20 --study guided-synth [--storage URL] [--epochs 3 ...]``.

The tuning options are named below; every other ``--name value`` pair is a common or family
training parameter, fixed for all trials (validated by ``zoo.families.params`` like ``zoo train``).
"""

from __future__ import annotations

import argparse
import logging
from typing import Sequence

TUNE_OPTIONS = {
    "family": ("", "family to tune (zoo train's names); read from --model for --target svm"),
    "trials": ("20", "trials this worker adds to the study (a rerun adds more)"),
    "study": ("", "study name (default <family>-<dataset>); the same name continues a study"),
    "storage": ("", "default: sqlite beside the MLflow store | journal:<path> | postgresql://user:pw@host/db"),
    "space": ("", "YAML file or inline YAML narrowing/fixing parameters, e.g. 'loss: inverse_umap'"),
    "objectives": ("primary", "primary | primary,mcs (multi-objective: macro-F up, MCS down; Pareto front)"),
    "pruner": ("median", "none | median | hyperband (per-epoch validation; single objective)"),
    "inner_trials": ("40", "inner γ/C study size on each trial's embeddings; 0 keeps the fixed grid"),
    "max_trials": ("none", "every worker stops once the study holds this many finished trials"),
    "timeout": ("none", "seconds: this worker starts no new trial after that (a running trial finishes)"),
    "target": ("model", "model (train encoders) | svm (tune only γ/C of --model, register a new version)"),
    "model": ("none", "registered model for --target svm, e.g. models:/zoo-guided/3"),
}


def _none(value):
    return None if value is None or str(value).strip().lower() in ("", "none", "null", "auto") else value


def _cmd_tune(args: argparse.Namespace) -> int:
    from zoo.families.cli import parse_param_args
    from zoo.tune.study import TuneRequest, run_study

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    params = {k: v for k, v in vars(args).items() if k in _training_names() and v is not None}
    params.update(parse_param_args(args.params or []))
    register = params.pop("register", "true")
    req = TuneRequest(
        family=_none(args.family) or "", trials=args.trials, study=_none(args.study), storage=_none(args.storage),
        space=_none(args.space), objectives=args.objectives, pruner=args.pruner, inner_trials=args.inner_trials,
        max_trials=_none(args.max_trials), timeout=_none(args.timeout), target=args.target,
        model=_none(args.model), register=register, seed=params.get("seed", 0), params=params)
    if req.target == "svm" and not req.family and req.model:
        from zoo.tune.svm_target import family_of_model_uri

        req.family = family_of_model_uri(req.model)
    if not req.family:
        raise ValueError("--family is required (e.g. --family guided; -P family=guided under mlflow run)")
    report = run_study(req)
    print(report.describe())
    return 0


def add_commands(subparsers) -> None:
    p = subparsers.add_parser(
        "tune", help="Optuna study over a family's search space, nested in MLflow",
        description="Tune a family: each trial trains one fold with sampled parameters as a child run of this "
                    "worker's study run; γ/C are searched by an inner study on the trial's embeddings. "
                    "Other --name value pairs fix training parameters (e.g. --epochs 3 --img_size 32).")
    for name, (default, help_text) in TUNE_OPTIONS.items():
        p.add_argument(f"--{name}", default=default, help=f"{help_text} (default: {default or 'none'})")
    group = p.add_argument_group("training parameters (fixed for every trial; default: the preset's)")
    for name in _training_names():
        group.add_argument(f"--{name}", default=None)
    p.add_argument("params", nargs="*", help=argparse.SUPPRESS)
    p.set_defaults(func=_cmd_tune)


def _training_names() -> list[str]:
    """Common parameters and every family's own: each becomes a --name option of ``zoo tune``."""
    from zoo.families import FAMILIES
    from zoo.families.params import COMMON_NAMES

    names = set(COMMON_NAMES)
    for fam in FAMILIES.names():
        cls = FAMILIES.get(fam)
        declared = cls.param_names() if callable(getattr(cls, "param_names", None)) else cls.param_names
        names.update(declared)
    return sorted(names - set(TUNE_OPTIONS))


def main_tune(argv: Sequence[str]) -> int:
    """Entry point of ``entrypoints/tune.py``."""
    from zoo.cli import main

    return main(["tune", *argv])
