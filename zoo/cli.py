"""The ``zoo`` command line. Each room of the library contributes its own sub-commands through an
``add_commands(subparsers)`` function, so this file only wires them together."""

from __future__ import annotations

import argparse
import importlib
import sys

# (module, purpose) — each module defines add_commands(subparsers) and sets `func` on its parsers.
_COMMAND_MODULES = (
    "zoo.data.cli",        # zoo data synth | ingest | prepare | show
    "zoo.families.cli",    # zoo train <family> ...
    "zoo.tracking.cli",    # zoo models list | promote | rollback ; zoo evaluate ; zoo predict ; zoo ui
    "zoo.guides.cli",      # zoo guides list | show
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="zoo", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in _COMMAND_MODULES:
        module = importlib.import_module(name)
        module.add_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        result = args.func(args)
    except (ValueError, FileNotFoundError, KeyError) as exc:  # user errors: one clear line, no trace
        print(f"zoo: error: {exc}", file=sys.stderr)
        return 2
    return int(result or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
