"""MLproject entry point `prepare`: build a prepared dataset configured in params.yaml
(`synth` generates the synthetic bone marrow first)."""

import argparse
import sys

import _bootstrap  # noqa: F401

from zoo.cli import main
from zoo.families import FAMILIES
from zoo.tracking.store import ensure_experiments

if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset", default="synth")
    args = ap.parse_args()
    # Created by the zoo, the experiments keep their artifacts in the project's mlartifacts/;
    # created by `mlflow run --experiment-name`, they would use the cwd-relative ./mlruns.
    ensure_experiments([f"zoo-{f}" for f in FAMILIES.names()] + ["zoo-evaluate"])
    sys.exit(main(["data", "synth"] if args.dataset == "synth" else ["data", "prepare", args.dataset]))
