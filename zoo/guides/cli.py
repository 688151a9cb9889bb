"""``zoo guides list`` and ``zoo guides show NAME [--out guide.png] [--csv guide.csv]``."""

from __future__ import annotations

import argparse


def _list(args: argparse.Namespace) -> int:
    from .factory import GUIDES, describe

    width = max(len(n) for n in GUIDES.names())
    for name in GUIDES.names():
        print(f"{name:<{width}}  {describe(name)}")
    return 0


def _show(args: argparse.Namespace) -> int:
    from .factory import create_guide
    from .plot import plot_guide, plot_guides

    classes = [c.strip() for c in args.classes.split(",")] if args.classes else None
    if args.name == "all":
        from .factory import GUIDES

        guides = [create_guide(n, classes=classes, seed=args.seed, threshold=args.threshold, unknown=args.unknown)
                  for n in GUIDES.names()]
        fig = plot_guides(guides)
    else:
        guide = create_guide(args.name, classes=classes, seed=args.seed, threshold=args.threshold,
                             unknown=args.unknown)
        print(guide.to_frame().to_string(index=False, float_format=lambda v: f"{v: .3f}"))
        if guide.edges:
            print(f"\n{len(guide.edges)} edges: " + ", ".join(f"{a}-{b}" for a, b in guide.edges))
        if args.csv:
            print(f"wrote {guide.save_csv(args.csv)}")
        fig = plot_guide(guide, labels=args.labels)
    if args.out:
        fig.savefig(args.out, dpi=120, bbox_inches="tight")
        print(f"wrote {args.out}")
    return 0


def add_commands(subparsers) -> None:
    p = subparsers.add_parser("guides", help="list or show the embedding guides")
    sub = p.add_subparsers(dest="guides_command", metavar="{list,show}")
    sub.required = True
    from zoo.guides import GUIDES

    pl = sub.add_parser("list", help=f"the {len(GUIDES)} guide names")
    pl.set_defaults(func=_list)
    ps = sub.add_parser("show", help="print a guide's points and plot it (NAME 'all' plots every guide)")
    ps.add_argument("name", help="guide name, e.g. fr_sim_mat (see `zoo guides list`), or 'all'")
    ps.add_argument("--out", help="write the plot to this PNG")
    ps.add_argument("--csv", help="write the (class, x, y) table to this CSV")
    ps.add_argument("--classes", help="comma-separated class ids (default: the 15 of the papers)")
    ps.add_argument("--unknown", default="error", choices=["error", "drop", "place"],
                    help="classes the expert matrices lack: fail, drop them, or place them by lineage")
    ps.add_argument("--seed", type=int, default=0)
    ps.add_argument("--threshold", type=float, default=0.5, help="adjacency rounding threshold (paper: 0.5)")
    ps.add_argument("--labels", action="store_true", help="write class names next to the points")
    ps.set_defaults(func=_show)
