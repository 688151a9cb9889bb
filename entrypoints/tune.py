"""MLproject entry point `tune`: `python entrypoints/tune.py --family guided --trials 20 ...`."""

import sys

import _bootstrap  # noqa: F401  (puts the checkout on sys.path)

from zoo.tune.cli import main_tune

if __name__ == "__main__":
    sys.exit(main_tune(sys.argv[1:]))
