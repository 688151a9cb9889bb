"""MLproject entry point `autoencoder_grid`: paper 002's parameter sets (every suppression method
+ the VAE-256 / RAE-1024 baselines) over CV folds -> Fig. 2/3 tables, chart, report in reports/."""

import sys

import _bootstrap  # noqa: F401

from zoo.cli import main

if __name__ == "__main__":
    sys.exit(main(["autoencoder", "grid", *sys.argv[1:]]))
