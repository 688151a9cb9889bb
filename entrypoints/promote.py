"""MLproject entry point `promote`: move an alias (default production) to a version, through the
promotion gates (not worse than the current holder on the same dataset digest)."""

import argparse
import sys

import _bootstrap  # noqa: F401

from zoo.cli import main
from zoo.families.params import parse_bool

if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    for name in ("model", "version", "alias", "tolerance", "force", "reason"):
        ap.add_argument(f"--{name}", default="")
    a = ap.parse_args()
    argv = ["models", "promote", a.model, a.version, "--alias", a.alias, "--tolerance", a.tolerance,
            "--reason", a.reason]
    try:
        if parse_bool("force", a.force or "false"):
            argv.append("--force")
    except ValueError as exc:
        print(f"promote: error: {exc}", file=sys.stderr)
        sys.exit(2)
    sys.exit(main(argv))
