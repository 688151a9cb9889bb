"""``zoo train <family> [--param value ...]`` — the same parameters as the MLproject entry points."""

from __future__ import annotations

import argparse
from typing import Sequence


def parse_param_args(tokens: Sequence[str]) -> dict[str, str]:
    """``--key value`` / ``--key=value`` pairs into a dict (values stay strings: parsing and
    validation happen once, in zoo.families.params, for the CLI and MLflow alike)."""
    from zoo.families.params import example

    params: dict[str, str] = {}
    tokens = list(tokens)
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        if not tok.startswith("--") or tok == "--":
            raise ValueError(f"expected --name value, got {tok!r} (e.g. {example('epochs', 5)})")
        key = tok[2:]
        if "=" in key:
            key, value = key.split("=", 1)
            i += 1
        else:
            if i + 1 >= len(tokens):
                raise ValueError(f"parameter {key!r} has no value (e.g. {example(key, 5)})")
            value = tokens[i + 1]
            i += 2
        params[key.replace("-", "_")] = value
    return params


def family_help(family: str) -> str:
    """Every parameter of ``family`` (common + its own) with default and meaning, generated from
    the declarations (zoo.families.params)."""
    from zoo.families import FAMILIES
    from zoo.families.params import COMMON_PARAMS

    cls = FAMILIES.get(family)
    doc = (cls.__doc__ or "").strip().splitlines()
    lines = [f"usage: zoo train {family} [--name value ...]", ""]
    if doc:
        lines += [doc[0], ""]
    lines += [f"kind: {cls.kind}; primary metric: {cls.primary_metric} ({cls.direction})", ""]
    for title, decls in ((f"{family} parameters", cls.declarations()), ("common parameters", COMMON_PARAMS)):
        lines.append(f"{title}:")
        for p in decls:
            lines.append(f"  --{p.name} {p.type.__name__.upper()}  (default: {p.default_text()})")
            lines.append(f"      {p.describe()}")
        lines.append("")
    lines.append(f"the same parameters as `mlflow run . -e {family} -P name=value`")
    return "\n".join(lines)


def _cmd_train(args: argparse.Namespace) -> int:
    from zoo.families import train
    from zoo.families.params import param_syntax

    if any(tok in ("-h", "--help") for tok in args.params):
        print(family_help(args.family))
        return 0
    if "--mlproject" in args.params:
        print(mlproject_entry(args.family))
        return 0
    if "--markdown" in args.params:
        print(params_markdown(args.family))
        return 0
    from zoo.train import distributed

    with param_syntax(getattr(args, "param_syntax", "cli")):
        params = parse_param_args(args.params)
        if not distributed.from_env().enabled:
            from zoo.families.runner import build_family

            cfg = build_family(args.family, params).cfg  # a bad parameter fails here, before any launch
            if cfg.nproc > 1:
                return _launch_torchrun(args.family, args.params, cfg.nproc, cfg.restarts)
        result = train(args.family, params)
    if distributed.from_env().is_main:
        print(result.describe())
    return 0


def _launch_torchrun(family: str, tokens: Sequence[str], nproc: int, restarts: int) -> int:
    """``zoo train <family> ...`` again in ``nproc`` processes under torchrun; its exit code. Under
    ``mlflow run`` the workers inherit ``MLFLOW_RUN_ID`` and rank 0 logs into that run."""
    from zoo.train import distributed

    print(f"zoo: training {family} in {nproc} processes (torchrun --standalone --nproc-per-node={nproc} "
          f"--max-restarts={restarts} -m zoo.cli train {family} ...)", flush=True)
    return distributed.launch(nproc, ["train", family, *tokens], max_restarts=restarts)


def add_commands(subparsers) -> None:
    from zoo.families import FAMILIES

    p = subparsers.add_parser(
        "train", help="train a model family (same parameters as the MLproject entry points)",
        description="Train a model family. Parameters as in the MLproject, e.g. "
                    "`zoo train guided --guide fr_sim_mat --epochs 5`.",
    )
    p.add_argument("family", choices=FAMILIES.names(), help="`zoo train <family> --help` lists its parameters")
    p.add_argument("params", nargs=argparse.REMAINDER, help="--name value pairs")
    p.set_defaults(func=_cmd_train, param_syntax="cli")

    c = subparsers.add_parser(
        "compare-guides", help="paper 000's experiment: every guide x loss + TML over CV folds",
        description="Train every (guide, loss) and the TML baseline on the first --folds CV iterations; "
                    "write reports/compare_guides_<dataset>.{md,csv,png} and log them to a parent run.",
    )
    c.add_argument("--dataset", default="synth", help="prepared dataset (default: synth)")
    c.add_argument("--guides", default="all", help="comma-separated guide names or 'all' (default: all)")
    c.add_argument("--no-tml", action="store_true", help="skip the TML baseline")
    for name in ("losses", "folds", *_COMPARE_COMMON):
        default = COMPARE_DEFAULTS[name]
        what = _COMPARE_HELP.get(name, "common training parameter; none = the preset's")
        c.add_argument(f"--{name}", default=default, help=f"{what} (default: {default})")
    c.set_defaults(func=_cmd_compare)


# compare-guides defaults: the same as the MLproject entry point `compare_guides`;
# tests/test_cli_errors.py checks that the two agree. The comparison preset `screen` (~45 minutes on 2 CPU
# cores) sizes the run; every other parameter defaults to "none" = the preset's value, so a value
# given on the command line overrides the preset and nothing else does.
_COMPARE_COMMON = ("epochs", "patience", "img_size", "batch_size", "backbone", "lr", "svm_every", "limit",
                   "seed", "preset", "device", "budget", "val_every", "ce_weight")
COMPARE_DEFAULTS = {"preset": "screen", **{name: "none" for name in ("losses", "folds", *_COMPARE_COMMON)
                                           if name != "preset"}}
_COMPARE_HELP = {"losses": "comma-separated guided losses", "folds": "number of CV iterations to run",
                 "preset": "comparison preset screen|paper (sets folds, losses and training parameters; "
                           "the ones given here override it) or a training preset (3 folds, both losses)"}


def _cmd_compare(args: argparse.Namespace) -> int:
    from zoo.families.compare import compare_guides

    given = {k: getattr(args, k) for k in ("losses", "folds", *_COMPARE_COMMON)}
    params = {k: v for k, v in given.items() if v not in (None, "none", "")}
    table = compare_guides(dataset=args.dataset, guides=args.guides, losses=params.pop("losses", None),
                           folds=params.pop("folds", None), tml=not args.no_tml, **params)
    cols = [c for c in ("guide", "loss", "f1_mean", "f1_std", "mcs_mean", "mcs_std", "f1_vs_tml") if c in table]
    print(table[cols].to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    return 0


def main_train(argv: Sequence[str]) -> int:
    """Entry point of ``entrypoints/train.py`` (what ``mlflow run`` calls): ``FAMILY --name value
    ...``; errors show the ``-P name=value`` syntax of ``mlflow run``."""
    from zoo.families.params import param_syntax

    argv = list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        from zoo.families import FAMILIES

        print(f"usage: train.py FAMILY --name value ...; families: {', '.join(FAMILIES.names())}")
        return 0 if argv else 2
    import sys

    from zoo.families import FAMILIES

    args = argparse.Namespace(family=argv[0], params=argv[1:], param_syntax="mlflow")
    try:
        FAMILIES.get(args.family)  # an unknown family lists the valid ones
        return _cmd_train(args)
    except (ValueError, FileNotFoundError, KeyError) as exc:  # user errors: one clear line, no trace
        print(f"train.py: error: {exc}", file=sys.stderr)
        return 2


def _yaml_default(p) -> str:
    import json

    return json.dumps(p.default_text())


def mlproject_common() -> str:
    """The ``common_parameters`` block of the MLproject, from COMMON_PARAMS."""
    from zoo.families.params import COMMON_PARAMS

    lines = ["common_parameters: &common"]
    for p in COMMON_PARAMS:
        lines.append(f"  {p.name}: {{type: string, default: {_yaml_default(p)}}}")
    return "\n".join(lines)


def mlproject_entry(family: str) -> str:
    """The MLproject entry point of ``family``, generated from its declarations (what the test
    ``test_mlproject_matches_declarations`` checks the MLproject against)."""
    from zoo.families import FAMILIES
    from zoo.families.params import COMMON_PARAMS

    cls = FAMILIES.get(family)
    names = [p.name for p in (*COMMON_PARAMS, *cls.declarations())]
    lines = [f"  {family}:", "    parameters:", "      <<: *common"]
    for p in cls.declarations():
        lines.append(f"      {p.name}: {{type: string, default: {_yaml_default(p)}}}")
    words = [f"python entrypoints/train.py {family}"] + [f"--{n} {{{n}}}" for n in names]
    command, line = [], ""
    for w in words:
        if line and len(line) + len(w) > 96:
            command.append(line)
            line = w
        else:
            line = f"{line} {w}".strip()
    command.append(line)
    lines.append("    command: >-")
    lines += [f"      {c}" for c in command]
    return "\n".join(lines)


def params_markdown(family: str | None = None) -> str:
    """The README's parameter table (common parameters, or ``family``'s own), from the declarations."""
    from zoo.families import FAMILIES
    from zoo.families.params import COMMON_PARAMS

    decls = COMMON_PARAMS if family is None else FAMILIES.get(family).declarations()
    rows = ["| parameter | default | meaning |", "| --- | --- | --- |"]
    for p in decls:
        from zoo.families.params import PRESETS

        default = "preset" if p.auto and p.name in PRESETS["cpu"] else f"`{p.default_text()}`"
        rows.append(f"| `{p.name}` | {default} | {p.describe().replace('|', '/')} |")
    return "\n".join(rows)
