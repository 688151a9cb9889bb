"""MLproject entry point `compare_guides`: paper 000's experiment (every guide × both losses +
TML over CV folds) → comparison table, Fig. 5-style chart, markdown report in reports/."""

import sys

import _bootstrap  # noqa: F401

from zoo.cli import main

if __name__ == "__main__":
    sys.exit(main(["compare-guides", *sys.argv[1:]]))
