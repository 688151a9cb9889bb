"""``zoo data synth | ingest | prepare | show | list``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import yaml

from zoo.paths import data_dir, project_dir

DEFAULT_PARAMS = "params.yaml"


def add_commands(subparsers) -> None:
    p = subparsers.add_parser("data", help="prepare and inspect datasets",
                              description="Turn cell image folders into prepared datasets "
                                          "(data/prepared/<name>/) the zoo trains on.")
    sub = p.add_subparsers(dest="data_command", metavar="SUBCOMMAND")
    sub.required = True

    s = sub.add_parser("synth", help="generate the synthetic bone marrow and prepare it as dataset 'synth'")
    s.add_argument("--out", default=None, help="raw output folder (default data/raw/synth)")
    s.add_argument("--n-cells", type=int, default=4560)
    s.add_argument("--img-size", type=int, default=96)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--name", default="synth", help="prepared dataset name (default synth)")
    s.add_argument("--n-folds", type=int, default=6)
    s.add_argument("--no-ingest", action="store_true",
                   help="only generate the raw folder (the DVC synth stage; `prepare` ingests it)")
    s.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                   help="extra generator keyword (YAML value), repeatable")
    s.set_defaults(func=_cmd_synth)

    i = sub.add_parser("ingest", help="prepare a dataset folder: clean, dedup, split, manifest")
    i.add_argument("source", help="dataset folder")
    i.add_argument("--name", required=True, help="prepared dataset name (data/prepared/<name>)")
    i.add_argument("--reader", default="imagefolder", help="layout reader (see `zoo data list`)")
    i.add_argument("--label-map", default=None, help="YAML file: source_label: canonical_id")
    i.add_argument("--n-folds", type=int, default=6)
    i.add_argument("--seed", type=int, default=0)
    i.add_argument("--out", default=None, help="prepared folder (default data/prepared/<name>)")
    i.add_argument("--classes", default=None, help="comma-separated canonical ids to keep")
    i.add_argument("--workers", default="auto", help="processes for decoding/hashing (default auto)")
    i.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                   help="reader option (YAML value), repeatable, e.g. --option sets=[1]")
    i.add_argument("--import", dest="imports", action="append", default=[], metavar="MODULE",
                   help="import a module that registers your own reader(s), repeatable")
    i.set_defaults(func=_cmd_ingest)

    r = sub.add_parser("prepare", help="ingest datasets configured in params.yaml (what `dvc repro` runs)")
    r.add_argument("names", nargs="*", help="dataset names under `datasets:` (default: all)")
    r.add_argument("--params", default=None, help="params file (default params.yaml in the project)")
    r.add_argument("--out", default=None, help="prepared folder (only with one name)")
    r.add_argument("--import", dest="imports", action="append", default=[], metavar="MODULE",
                   help="import a module that registers your own reader(s), repeatable")
    r.set_defaults(func=_cmd_prepare)

    w = sub.add_parser("show", help="per-class counts per fold and a contact sheet PNG")
    w.add_argument("name", help="prepared dataset name or folder")
    w.add_argument("--out", default=None, help="contact sheet path (default outputs/contact_sheets/<name>.png)")
    w.add_argument("--per-class", type=int, default=8)
    w.add_argument("--size", type=int, default=72, help="tile size in px")
    w.set_defaults(func=_cmd_show)

    ls = sub.add_parser("list", help="prepared datasets and available readers")
    ls.set_defaults(func=_cmd_list)


# -- commands ------------------------------------------------------------------------------------
def _cmd_synth(args: argparse.Namespace) -> int:
    from zoo.data.ingest import ingest

    out = Path(args.out) if args.out else data_dir() / "raw" / "synth"
    path = generate_synth(out, n_cells=args.n_cells, img_size=args.img_size, seed=args.seed,
                          **_options(args.option))
    print(f"synthetic cells written to {path}")
    if not args.no_ingest:
        ingest(path, args.name, reader="synth", n_folds=args.n_folds, seed=args.seed)
    return 0


def _cmd_ingest(args: argparse.Namespace) -> int:
    from zoo.data.ingest import ingest

    _import_plugins(args.imports)
    classes = [c.strip() for c in args.classes.split(",") if c.strip()] if args.classes else None
    ingest(args.source, args.name, reader=args.reader, label_map=args.label_map, n_folds=args.n_folds,
           seed=args.seed, out=args.out, reader_options=_options(args.option), classes=classes,
           workers=args.workers)
    return 0


def _cmd_prepare(args: argparse.Namespace) -> int:
    _import_plugins(args.imports)
    params_file = Path(args.params) if args.params else project_dir() / DEFAULT_PARAMS
    configs = load_dataset_params(params_file)
    names = args.names or list(configs)
    if args.out and len(names) != 1:
        raise ValueError("--out needs exactly one dataset name")
    for name in names:
        prepare(name, configs, out=args.out, base=params_file.parent)
    return 0


def _cmd_show(args: argparse.Namespace) -> int:
    from zoo.data.contact_sheet import contact_sheet
    from zoo.data.prepared import PreparedDataset

    ds = PreparedDataset.load(args.name)
    print(f"{ds.name}: {len(ds.manifest)} images, {len(ds.classes)} classes, {ds.n_folds} folds "
          f"({ds.info.get('folds_method', '')})")
    print(f"root {ds.root}\ndigest {ds.digest}\ndvc md5 {ds.dvc_md5 or '(not DVC-tracked)'}\n")
    print(ds.counts().to_string())
    path = contact_sheet(ds, out=args.out, per_class=args.per_class, size=args.size)
    print(f"\ncontact sheet: {path}")
    return 0


def _cmd_list(args: argparse.Namespace) -> int:
    from zoo.data.prepared import PreparedDataset, list_prepared
    from zoo.data.readers import READERS

    names = list_prepared()
    print("prepared datasets:" if names else "no prepared datasets yet (try `zoo data synth`)")
    for n in names:
        ds = PreparedDataset.load(n)
        print(f"  {n:16s} {ds.info.get('n_images', '?'):>7} images  {len(ds.info.get('classes', [])):>3} classes  "
              f"reader={ds.reader}  root={ds.info.get('root')}")
    print("readers: " + ", ".join(READERS.names()))
    return 0


# -- helpers (also used by entry points) -----------------------------------------------------------
def generate_synth(out: Path, n_cells: int = 4560, img_size: int = 96, seed: int = 0, **kw: Any) -> Path:
    try:
        from zoo.data.synth import generate
    except ImportError as exc:
        raise ValueError(f"the synthetic generator zoo.data.synth is not available ({exc})") from None
    return Path(generate(out, n_cells=n_cells, img_size=img_size, seed=seed, **kw))


def load_dataset_params(path: Path) -> dict[str, dict]:
    """The ``datasets:`` section of params.yaml: ``name: {source, reader, ...}``."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"params file not found: {path}")
    raw = yaml.safe_load(Path(path).read_text()) or {}
    datasets = raw.get("datasets") or {}
    if not isinstance(datasets, dict) or not datasets:
        raise ValueError(f"{path}: no `datasets:` section (name: {{source: <folder>, reader: <reader>}})")
    return datasets


PREPARE_KEYS = {"source", "reader", "label_map", "n_folds", "seed", "classes", "reader_options",
                "near_distance", "review_distance"}


def prepare(name: str, configs: dict[str, dict], out: str | Path | None = None, base: Path | None = None):
    """Ingest dataset ``name`` as configured in params.yaml (relative paths from ``base``)."""
    from zoo.data.ingest import ingest

    if name not in configs:
        raise ValueError(f"dataset {name!r} is not configured in params.yaml; configured: {', '.join(configs)}")
    cfg = dict(configs[name] or {})
    unknown = set(cfg) - PREPARE_KEYS
    if unknown:
        raise ValueError(f"params.yaml datasets.{name}: unknown key(s) {sorted(unknown)}; valid: {sorted(PREPARE_KEYS)}")
    if "source" not in cfg:
        raise ValueError(f"params.yaml datasets.{name}: `source` (the dataset folder) is required")
    base = Path(base or project_dir())
    source = base / cfg.pop("source")
    if not source.is_dir():
        hint = ("`dvc repro` builds it (or `zoo data synth` without DVC)" if cfg.get("reader") == "synth"
                else "add the data there (docs/data.md: `dvc add` / `dvc import-url`, then `dvc pull`)")
        raise FileNotFoundError(f"params.yaml datasets.{name}: source folder {source} not found; {hint}")
    label_map = cfg.pop("label_map", None)
    # timestamp=False: a DVC stage output must not change when nothing but the clock did.
    return ingest(source, name, reader=cfg.pop("reader", "imagefolder"), timestamp=False,
                  label_map=base / label_map if isinstance(label_map, str) else label_map,
                  n_folds=cfg.pop("n_folds", 6), seed=cfg.pop("seed", 0), out=out,
                  reader_options=cfg.pop("reader_options", None), **cfg)


def _import_plugins(modules: list[str]) -> None:
    import importlib

    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError as exc:
            raise ValueError(f"--import {name}: cannot import it ({exc}); is it on PYTHONPATH?") from None


def _options(pairs: list[str]) -> dict[str, Any]:
    opts = {}
    for pair in pairs:
        if "=" not in pair:
            raise ValueError(f"option {pair!r} must be KEY=VALUE")
        key, value = pair.split("=", 1)
        opts[key.strip().replace("-", "_")] = yaml.safe_load(value)
    return opts
