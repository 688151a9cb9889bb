"""MLproject entry point for every training family: `python entrypoints/train.py FAMILY --k v ...`."""

import sys

import _bootstrap  # noqa: F401  (puts the checkout on sys.path)

from zoo.families.cli import main_train

if __name__ == "__main__":
    sys.exit(main_train(sys.argv[1:]))
