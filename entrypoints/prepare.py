"""MLproject entry point `prepare`: build a prepared dataset configured in params.yaml
(`synth` generates the synthetic bone marrow first)."""

import argparse
import sys

import _bootstrap  # noqa: F401

from zoo.cli import main

if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset", default="synth")
    args = ap.parse_args()
    sys.exit(main(["data", "synth"] if args.dataset == "synth" else ["data", "prepare", args.dataset]))
