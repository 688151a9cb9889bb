"""``zoo train <family> [--param value ...]`` — the same parameters as the MLproject entry points."""

from __future__ import annotations

import argparse
from typing import Sequence


def parse_param_args(tokens: Sequence[str]) -> dict[str, str]:
    """``--key value`` / ``--key=value`` pairs into a dict (values stay strings: parsing and
    validation happen once, in zoo.families.params, for the CLI and MLflow alike)."""
    params: dict[str, str] = {}
    tokens = list(tokens)
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        if not tok.startswith("--") or tok == "--":
            raise ValueError(f"expected --name value, got {tok!r} (e.g. --epochs 5)")
        key = tok[2:]
        if "=" in key:
            key, value = key.split("=", 1)
            i += 1
        else:
            if i + 1 >= len(tokens):
                raise ValueError(f"parameter --{key} has no value (e.g. --{key} 5)")
            value = tokens[i + 1]
            i += 2
        params[key.replace("-", "_")] = value
    return params


def _cmd_train(args: argparse.Namespace) -> int:
    from zoo.families import train

    params = parse_param_args(args.params)
    result = train(args.family, params)
    print(result.describe())
    return 0


def add_commands(subparsers) -> None:
    from zoo.families import FAMILIES

    p = subparsers.add_parser(
        "train", help="train a model family (same parameters as the MLproject entry points)",
        description="Train a model family. Parameters as in the MLproject, e.g. "
                    "`zoo train guided --guide fr_sim_mat --epochs 5`.",
    )
    p.add_argument("family", choices=FAMILIES.names())
    p.add_argument("params", nargs=argparse.REMAINDER, help="--name value pairs")
    p.set_defaults(func=_cmd_train)

    c = subparsers.add_parser(
        "compare-guides", help="paper 000's experiment: every guide x loss + TML over CV folds",
        description="Train every (guide, loss) and the TML baseline on the first --folds CV iterations; "
                    "write reports/compare_guides_<dataset>.{md,csv,png} and log them to a parent run.",
    )
    c.add_argument("--dataset", default="synth")
    c.add_argument("--guides", default="all", help="comma-separated guide names or 'all'")
    c.add_argument("--losses", default="inverse_umap,distance")
    c.add_argument("--folds", default="3", help="number of CV iterations to run")
    c.add_argument("--no-tml", action="store_true", help="skip the TML baseline")
    for name in _COMPARE_COMMON:
        c.add_argument(f"--{name}", default=None, help="common training parameter (default: the preset's)")
    c.set_defaults(func=_cmd_compare)


_COMPARE_COMMON = ("epochs", "patience", "img_size", "batch_size", "backbone", "lr", "svm_every", "limit",
                   "seed", "preset", "device")


def _cmd_compare(args: argparse.Namespace) -> int:
    from zoo.families.compare import compare_guides

    params = {k: getattr(args, k) for k in _COMPARE_COMMON
              if getattr(args, k) not in (None, "auto", "none", "")}
    table = compare_guides(dataset=args.dataset, guides=args.guides, losses=args.losses, folds=args.folds,
                           tml=not args.no_tml, **params)
    cols = [c for c in ("guide", "loss", "f1_mean", "f1_std", "mcs_mean", "mcs_std", "f1_vs_tml") if c in table]
    print(table[cols].to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    return 0


def main_train(argv: Sequence[str]) -> int:
    """Entry point of ``entrypoints/train.py``: ``FAMILY --name value ...``."""
    from zoo.cli import main

    return main(["train", *argv])
