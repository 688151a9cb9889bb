"""MLproject entry point `evaluate`: any registered model on a prepared dataset."""

import argparse
import sys

import _bootstrap  # noqa: F401

from zoo.cli import main

if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    for name in ("model", "dataset", "fold", "class_map", "limit"):
        ap.add_argument(f"--{name}", default="none")
    a = ap.parse_args()
    argv = ["evaluate", a.model, "--dataset", a.dataset, "--fold", a.fold]
    if a.class_map.lower() != "none":
        argv += ["--class-map", a.class_map]
    if a.limit.lower() != "none":
        argv += ["--limit", a.limit]
    sys.exit(main(argv))
