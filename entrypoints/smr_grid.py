"""MLproject entry point `smr_grid`: paper 001's experiment (3 curves × 2 targets × 4 SMR losses +
TML over CV folds) → table with macro-F and Spearman ρ, Fig. 3-style chart, report in reports/."""

import sys

import _bootstrap  # noqa: F401

from zoo.cli import main

if __name__ == "__main__":
    sys.exit(main(["smr-grid", *sys.argv[1:]]))
