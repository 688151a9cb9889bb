"""The guided family on the real PBC subset (../shared/data): a 15-class guide must work on a
dataset with only some of those classes plus others (platelet, unstaged erythroblast)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from zoo.paths import shared_data_dir

SHARED = shared_data_dir()
BIN = Path(sys.executable).parent
pytestmark = [pytest.mark.slow, pytest.mark.shared_data,
              pytest.mark.skipif(SHARED is None, reason="../shared/data (real public cell images) not present; "
                                 "set ZOO_SHARED_DATA to run this test")]


def test_guided_trains_and_predicts_guide_positions_on_pbc(tmp_path):
    env = dict(os.environ, ZOO_HOME=str(tmp_path), MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path / 'mlflow.db'}",
               HF_HUB_OFFLINE="1", MPLBACKEND="Agg")
    env.pop("MLFLOW_RUN_ID", None)

    def zoo(*args):
        proc = subprocess.run([str(BIN / "zoo"), *args], env=env, cwd=tmp_path, capture_output=True, text=True,
                              timeout=900)
        assert proc.returncode == 0, proc.stderr[-4000:]
        return proc.stdout

    zoo("data", "ingest", str(SHARED / "pbc"), "--name", "pbc", "--reader", "pbc")
    out = zoo("train", "guided", "--dataset", "pbc", "--guide", "drl_sim_mat", "--limit", "330", "--epochs", "1",
              "--img_size", "32", "--batch_size", "32", "--svm_every", "1")
    assert "registered zoo-guided/1" in out
    code = ("import mlflow, pandas as pd, glob\nfrom zoo.tracking.store import configure\nconfigure()\n"
            "m = mlflow.pyfunc.load_model('models:/zoo-guided@candidate')\n"
            f"imgs = sorted(glob.glob('{SHARED}/pbc/PBC_dataset_normal_DIB/platelet/*.jpg'))[:2]\n"
            "p = m.predict(pd.DataFrame({'image': imgs}))\n"
            "print('CLASSES', sorted(c[2:] for c in p.columns if c.startswith('p_')))\n"
            "print('FINITE', bool(p[['guide_x', 'guide_y']].notna().all().all()))\n")
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=tmp_path, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-4000:]
    assert "'platelet'" in out.stdout and "'erythroblast'" in out.stdout and "'band_neutrophil'" in out.stdout
    assert "FINITE True" in out.stdout
