"""End to end, as a user runs it: a tiny synthetic dataset, `mlflow run . -e tml` and `-e guided`,
registration, promotion through the `promote` entry point, the README's Python snippet in a fresh
process, and a killed-then-resumed training continuing its MLflow run.

Everything runs in subprocesses against a temporary project home (ZOO_HOME) and store, so nothing
touches the checkout's own mlflow.db or data/.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
pytestmark = pytest.mark.slow

TINY = ["-P", "dataset=tiny", "-P", "epochs=2", "-P", "img_size=32", "-P", "batch_size=32", "-P", "svm_every=1"]


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    home = tmp_path_factory.mktemp("zoo-home")
    env = dict(os.environ, ZOO_HOME=str(home), MLFLOW_TRACKING_URI=f"sqlite:///{home / 'mlflow.db'}",
               HF_HUB_OFFLINE="1", MPLBACKEND="Agg", PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    env.pop("MLFLOW_RUN_ID", None)
    # 8 cells of each of the 15 classes at 32 px: enough for 6 stratified folds, seconds to make.
    run([str(BIN / "zoo"), "data", "synth", "--out", str(home / "raw"), "--n-cells", "150", "--img-size", "32",
         "--name", "tiny", "--seed", "1"], env, cwd=home)
    # What the prepare entry point and the quickstart do before `mlflow run --experiment-name`.
    python("from zoo.tracking.store import ensure_experiments as e; e(['zoo-tml', 'zoo-guided'])", env, home)
    return home, env


def run(cmd, env, cwd, check=True, timeout=900) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, cmd))} failed ({proc.returncode}):\n"
                             f"{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
    return proc


def python(code: str, env, cwd) -> str:
    return run([sys.executable, "-c", code], env, cwd).stdout


def mlflow_run(entry: str, params: list[str], env, cwd, experiment: str | None = None) -> str:
    cmd = [str(BIN / "mlflow"), "run", str(REPO), "-e", entry, *params, "--env-manager", "local"]
    if experiment:
        cmd += ["--experiment-name", experiment]
    proc = run(cmd, env, cwd)
    return proc.stdout + proc.stderr


def test_experiments_created_with_project_artifact_location(home):
    home, env = home
    out = python("import mlflow; c = mlflow.MlflowClient(); "
                 "print([(e.name, e.artifact_location) for e in c.search_experiments()])", env, home)
    assert "zoo-tml" in out and "zoo-guided" in out
    assert str(home / "mlartifacts") in out


def test_mlflow_run_tml_registers_a_model_that_predicts(home):
    home, env = home
    log = mlflow_run("tml", TINY, env, home, experiment="zoo-tml")
    assert "registered zoo-tml/1" in log
    out = python(
        "import mlflow, glob, pandas as pd\n"
        "from zoo.tracking.store import configure\n"
        "configure(); c = mlflow.MlflowClient()\n"
        "mv = c.get_model_version_by_alias('zoo-tml', 'candidate')\n"
        "run = c.get_run(mv.run_id)\n"
        "print('TAGS', {'dataset', 'dataset_digest', 'family', 'git_commit', 'test_macro_f1', 'test_mcs'} <= set(mv.tags))\n"
        "print('RUN', run.data.tags['family'], run.data.tags['dataset'], run.data.params['epochs'],\n"
        "      'test_macro_f1' in run.data.metrics, len(c.get_metric_history(run.info.run_id, 'val_macro_f1')))\n"
        "m = mlflow.pyfunc.load_model('models:/zoo-tml@candidate')\n"
        "imgs = sorted(glob.glob('raw/images/*/*.png'))[:4]\n"
        "p = m.predict(pd.DataFrame({'image': imgs}))\n"
        "print('COLS', list(p.columns)[:3], len(p), p.filter(like='p_').sum(axis=1).round(3).tolist())\n",
        env, home)
    assert "TAGS True" in out
    assert "RUN tml tiny 2 True 2" in out
    assert "COLS ['label', 'confidence', 'p_" in out and "[1.0, 1.0, 1.0, 1.0]" in out


def test_mlflow_run_guided_promote_and_readme_snippet(home):
    home, env = home
    log = mlflow_run("guided", [*TINY, "-P", "guide=fr_sim_mat", "-P", "loss=distance"], env, home,
                     experiment="zoo-guided")
    assert "registered zoo-guided/1" in log
    mlflow_run("promote", ["-P", "model=zoo-guided", "-P", "version=1", "-P", "alias=production",
                           "-P", "reason=e2e"], env, home)

    readme = (REPO / "README.md").read_text()
    section = readme.split("## Using a production model", 1)[1]
    snippet = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    assert 'models:/zoo-guided@production' in snippet
    images = sorted(str(p) for p in (home / "raw" / "images").rglob("*.png"))[:2]
    snippet = snippet.replace('["path/to/cell1.png", "path/to/cell2.jpg"]', repr(images))
    snippet += ("\nassert list(pred.columns[:2]) == ['label', 'confidence']\n"
                "assert {'guide_x', 'guide_y', 'guide_nearest', 'embedding'} <= set(pred.columns)\n"
                "assert len(pred['embedding'][0]) == 256\n"
                "print('SNIPPET OK', pred[['guide_x', 'guide_y']].abs().max().max() < 10)\n")
    out = python(snippet, env, home)
    assert "SNIPPET OK True" in out


def test_bad_parameter_fails_before_any_training(home):
    home, env = home
    proc = run([str(BIN / "mlflow"), "run", str(REPO), "-e", "guided", "-P", "dataset=tiny", "-P", "guide=fr_sim_maturity",
                "--env-manager", "local", "--experiment-name", "zoo-guided"], env, home, check=False)
    assert proc.returncode != 0
    assert "unknown guide 'fr_sim_maturity'" in proc.stderr and "fr_sim_mat" in proc.stderr


def test_killed_training_resumes_in_the_same_run(home):
    home, env = home
    cmd = [str(BIN / "zoo"), "train", "tml", "--dataset", "tiny", "--epochs", "4", "--patience", "10",
           "--img_size", "32", "--batch_size", "32", "--svm_every", "1", "--register", "false", "--seed", "3"]
    ckpt_root = home / "checkpoints" / "tml"
    before = set(ckpt_root.glob("*"))  # other tests' finished trainings have checkpoints too
    proc = subprocess.Popen(cmd, env=env, cwd=home, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.time() + 600
    try:
        while time.time() < deadline and proc.poll() is None:
            new = [p for p in ckpt_root.glob("*") if p not in before and (p / "last.pt").exists()]
            if new:
                break
            time.sleep(0.5)
        assert proc.poll() is None, "training ended before it could be killed"
        os.killpg(proc.pid, signal.SIGKILL)  # a crash: no chance to clean up
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    assert len(new) == 1, new
    first = python(f"from zoo.train import read_extra\nprint(read_extra({str(new[0])!r})['run_id'])", env, home).strip()
    run([*cmd, "--resume", "true"], env, home)
    out = python(
        "import mlflow\nfrom zoo.tracking.store import configure\nconfigure(); c = mlflow.MlflowClient()\n"
        f"r = c.get_run('{first}')\n"
        "h = c.get_metric_history(r.info.run_id, 'val_macro_f1')\n"
        "print('RESUMED', r.info.status, sorted({m.step for m in h}), 'test_macro_f1' in r.data.metrics)\n",
        env, home)
    assert "RESUMED FINISHED [1, 2, 3, 4] True" in out


def test_compare_guides_writes_table_chart_and_report(home):
    home, env = home
    proc = run([str(BIN / "zoo"), "compare-guides", "--dataset", "tiny", "--guides", "kk_sim_mat,random",
                "--losses", "distance", "--folds", "1", "--epochs", "1", "--img_size", "32", "--batch_size", "32"],
               env, home)
    assert "kk_sim_mat" in proc.stdout and "none (TML)" in proc.stdout
    report = (home / "reports" / "compare_guides_tiny.md").read_text()
    assert "| kk_sim_mat | distance |" in report and "Against the paper's claims" in report
    assert (home / "reports" / "compare_guides_tiny.png").stat().st_size > 10_000
    out = python(
        "import mlflow\nfrom zoo.tracking.store import configure\nconfigure()\n"
        "r = mlflow.search_runs(experiment_names=['zoo-guided'], filter_string=\"tags.experiment = 'compare_guides'\")\n"
        "kids = mlflow.search_runs(experiment_names=['zoo-guided'],\n"
        "    filter_string=f\"tags.mlflow.parentRunId = '{r.run_id[0]}'\")\n"
        "print('KIDS', len(kids), sorted(kids['tags.family'].unique()))\n"
        "print('CE', sorted(kids['params.ce_weight'].unique()))\n"
        "print('SVM_INPUT', sorted(kids['params.svm_input'].unique()))\n", env, home)
    assert "KIDS 3 ['guided', 'tml']" in out
    assert "CE ['0.0']" in out  # the screen preset compares the papers' losses, without the CE head
    assert "SVM_INPUT ['embedding']" in out  # ... and scores the embedding the guide shapes
