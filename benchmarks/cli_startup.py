"""Wall time of the commands a newcomer types first: ``zoo --help``, ``zoo models list`` and a
one-image ``zoo predict``.

Each command runs as a fresh process (what a user pays), ``--repeat`` times; the median is
reported. The store is a throw-away project folder holding one tiny registered model, trained
first by the code under test (so the model format always matches the code):

    python benchmarks/cli_startup.py                      # the checkout this file is in
    python benchmarks/cli_startup.py --code /tmp/zoo-old  # another checkout (e.g. `git archive` of
                                                          # an older commit), same interpreter

Comparing two checkouts on one machine in one sitting gives a before/after ratio that survives
the noise of a shared 2-core machine better than absolute seconds.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parents[1]


def _env(code: Path, home: Path) -> dict[str, str]:
    env = dict(os.environ)
    # The checkout under test first on the path (ahead of the editable install of this one).
    env["PYTHONPATH"] = str(code) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(ZOO_HOME=str(home), ZOO_DATA_DIR=str(home / "data"), HF_HUB_OFFLINE="1", MPLBACKEND="Agg")
    env.pop("MLFLOW_TRACKING_URI", None)
    return env


def _zoo(args: list[str], env: dict[str, str], cwd: Path, check: bool = True) -> float:
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "zoo.cli", *args], env=env, cwd=cwd,
                         capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if check and out.returncode != 0:
        raise RuntimeError(f"zoo {' '.join(args)} failed ({out.returncode}):\n{out.stderr[-2000:]}")
    return seconds


def setup_store(code: Path, home: Path) -> Path:
    """A project folder (MLproject marker) with a tiny synthetic dataset and one registered TML model."""
    home.mkdir(parents=True, exist_ok=True)
    shutil.copy(code / "MLproject", home / "MLproject")
    env = _env(code, home)
    _zoo(["data", "synth", "--out", str(home / "raw"), "--n-cells", "240", "--img-size", "32",
          "--name", "tiny"], env, home)
    _zoo(["train", "tml", "--dataset", "tiny", "--limit", "160", "--epochs", "1", "--img_size", "16",
          "--batch_size", "16", "--svm_every", "1"], env, home)
    image = home / "cell.png"
    Image.fromarray(np.random.RandomState(0).randint(0, 255, (32, 32, 3), dtype=np.uint8)).save(image)
    return image


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--code", type=Path, default=HERE, help="checkout to measure (default: this one)")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    code = args.code.resolve()
    with tempfile.TemporaryDirectory(prefix="zoo-cli-bench-") as tmp:
        home = Path(tmp)
        print(f"code under test: {code}\nsetting up a tiny store in {home} (trains one tiny model) ...", flush=True)
        image = setup_store(code, home)
        env = _env(code, home)
        commands = {
            "zoo --help": ["--help"],
            "zoo models list": ["models", "list"],
            "zoo predict (1 image)": ["predict", "zoo-tml@candidate", str(image)],
        }
        print(f"{'command':<24} {'median s':>9} {'min s':>7}  (n={args.repeat}, fresh process each)")
        for label, cmd in commands.items():
            times = [_zoo(cmd, env, home) for _ in range(args.repeat)]
            print(f"{label:<24} {statistics.median(times):9.2f} {min(times):7.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
