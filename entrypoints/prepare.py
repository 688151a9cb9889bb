"""MLproject entry point `prepare`: build a prepared dataset and create the zoo's experiments.

`synth` (the default) goes through DVC when the checkout is a DVC project, so `dvc status` stays
clean (`dvc repro`: synth -> data/cells -> data/prepared/synth); other names are ingested as
configured in params.yaml (`zoo data prepare <name>`)."""

import argparse
import shutil
import subprocess
import sys

import _bootstrap  # noqa: F401

from zoo.cli import main
from zoo.families import FAMILIES
from zoo.paths import project_dir
from zoo.tracking.store import ensure_experiments

if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset", default="synth")
    args = ap.parse_args()
    # Created by the zoo, the experiments keep their artifacts in the project's mlartifacts/;
    # created by `mlflow run --experiment-name`, they would use the cwd-relative ./mlruns.
    ensure_experiments([f"zoo-{f}" for f in FAMILIES.names()] + ["zoo-evaluate"])
    root = project_dir()
    if (root / ".dvc").is_dir() and shutil.which("dvc"):
        stage = "prepare@synth" if args.dataset == "synth" else f"prepare@{args.dataset}"
        sys.exit(subprocess.call(["dvc", "repro", stage], cwd=root))
    sys.exit(main(["data", "synth"] if args.dataset == "synth" else ["data", "prepare", args.dataset]))
