"""The SMR family (paper 001): declarations, the extras its models carry (lineage, maturity,
borderline) saved as data, the Fig. 4 / ρ report, and a tiny end-to-end training whose model
answers with maturity and borderline."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from zoo.families import FAMILIES
from zoo.families.runner import build_family

BIN = Path(sys.executable).parent


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    """Tiny tensors: one torch thread for every test here (fixture in conftest.py)."""


def test_smr_defaults_follow_the_paper_and_alpha_depends_on_the_loss():
    assert "smr" in FAMILIES
    fam = build_family("smr", {})
    assert (fam.params["curve"], fam.params["targets"], fam.params["loss"]) == ("linear", "uniform", "normal")
    assert fam.alpha == 0.2 and build_family("smr", {"loss": "tsne"}).alpha == 0.6
    assert build_family("smr", {"loss": "tsne", "alpha": "0.3"}).alpha == 0.3
    assert fam.tags() == {"curve": "linear", "targets": "uniform", "method": "normal"}
    assert fam.name_parts() == ["linear", "uniform", "normal"]
    assert fam.primary_metric == "macro_f1" and fam.kind == "embedding_svm"


@pytest.mark.parametrize("raw,needle", [
    ({"curve": "spline"}, "'curve' must be one of bezier, fixed, linear"),
    ({"targets": "log"}, "'targets' must be one of frequency, uniform"),
    ({"loss": "l2"}, "'loss' must be one of normal, projected, tsne, projected_tsne"),
    ({"alpha": "1.5"}, "'alpha' must lie in"),
    ({"lineages": "granulocyte"}, "unknown lineage 'granulocyte'"),
])
def test_smr_parameters_are_validated(raw, needle):
    with pytest.raises(ValueError, match=needle):
        build_family("smr", raw)


def test_smr_declares_its_extra_columns_and_search_space():
    import optuna

    fam = build_family("smr", {})
    cols = fam.output_columns(["myelocyte", "metamyelocyte"])
    assert cols[-3:] == ["lineage", "maturity", "borderline"]
    trial = optuna.trial.FixedTrial({"lr": 1e-3, "alpha": 0.4, "curve": "bezier", "targets": "frequency",
                                     "loss": "projected"})
    space = fam.search_space(trial)
    assert {k: space[k] for k in ("alpha", "curve", "targets", "loss")} == {
        "alpha": 0.4, "curve": "bezier", "targets": "frequency", "loss": "projected"}
    build_family("smr", {k: str(v) for k, v in space.items()})  # a sampled trial is a valid configuration


def test_smr_extras_save_as_data_and_answer_lineage_maturity_borderline(tmp_path):
    from zoo.curves import CurveSet
    from zoo.models import MODEL_EXTRAS
    from zoo.models.smr_extras import SMRExtras

    classes = ["myelocyte", "metamyelocyte", "band_neutrophil", "lymphocyte"]
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(4), 20)
    X = np.array([[0, 0], [1, 0], [2, 0], [0, 4]], dtype=float)[y] + 0.1 * rng.normal(size=(80, 2))
    extras = SMRExtras(CurveSet("linear", "uniform", "neutrophil").fit(X, y, classes))
    extras.save(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["smr_curves.json", "smr_curves.npz"]
    back = MODEL_EXTRAS.get("smr").load(tmp_path)
    probs = np.eye(4)[y]
    out = back.columns(X, probs)
    assert list(out) == [c for c, _ in back.output_schema()] == ["lineage", "maturity", "borderline"]
    assert set(out["lineage"][y < 3]) == {"neutrophil"} and set(out["lineage"][y == 3]) == {""}
    assert np.isnan(out["maturity"][y == 3]).all()
    assert out["maturity"][y == 0].mean() < out["maturity"][y == 1].mean() < out["maturity"][y == 2].mean()
    assert out["borderline"].dtype == bool
    # the SVM's decision, when given, decides the series (here: everything called a lymphocyte)
    called = back.columns(X, probs, labels=np.array(["lymphocyte"] * len(X), dtype=object))
    assert set(called["lineage"]) == {""} and np.isnan(called["maturity"]).all()


def test_maturity_report_gives_rho_and_one_figure_per_lineage():
    from zoo.curves import CurveSet
    from zoo.curves.evaluation import maturity_report

    classes = ["promyelocyte", "myelocyte", "metamyelocyte", "proerythroblast", "basophilic_erythroblast"]
    rng = np.random.default_rng(1)
    y = np.repeat(np.arange(5), 15)
    centers = np.array([[0, 0, 0], [1, 0, 0], [2, 0, 0], [0, 5, 0], [0, 5, 1]], dtype=float)
    X = centers[y] + 0.2 * rng.normal(size=(75, 3))
    curves = CurveSet("linear", "uniform").fit(X, y, classes)
    metrics, figures = maturity_report(curves, X, y)
    assert set(figures) == {"neutrophil", "erythroid"}
    assert metrics["test_smr_neutrophil_rho_stage"] > 0.8 and metrics["test_smr_erythroid_rho_stage"] > 0.5
    assert "test_smr_neutrophil_rho_maturity" not in metrics  # no manifest given: no maturity to compare


@pytest.mark.slow
def test_smr_trains_end_to_end_and_its_model_returns_maturity_and_borderline(tmp_path):
    env = dict(os.environ, ZOO_HOME=str(tmp_path), MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path / 'mlflow.db'}",
               HF_HUB_OFFLINE="1", MPLBACKEND="Agg", OMP_NUM_THREADS="1")
    env.pop("MLFLOW_RUN_ID", None)

    def run(*cmd):
        proc = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=900)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
        return proc.stdout

    run(str(BIN / "zoo"), "data", "synth", "--out", str(tmp_path / "raw"), "--n-cells", "150", "--img-size", "32",
        "--name", "tiny", "--seed", "1")
    out = run(str(BIN / "zoo"), "train", "smr", "--dataset", "tiny", "--epochs", "2", "--img_size", "32",
              "--batch_size", "32", "--svm_every", "1", "--curve", "bezier", "--loss", "projected")
    assert "registered zoo-smr/1" in out
    code = ("import mlflow, pandas as pd, glob, numpy as np\nfrom zoo.tracking.store import configure\nconfigure()\n"
            "m = mlflow.pyfunc.load_model('models:/zoo-smr@candidate')\n"
            f"imgs = sorted(glob.glob('{tmp_path}/raw/**/*.png', recursive=True))[:12]\n"
            "p = m.predict(pd.DataFrame({'image': imgs}))\n"
            "print('COLS', list(p.columns[-3:]))\n"
            "s = p[p['lineage'] != '']\n"
            "print('IN01', bool(((s['maturity'] >= 0) & (s['maturity'] <= 1)).all()), len(s) > 0)\n"
            "print('BOOL', p['borderline'].dtype)\n")
    out = run(sys.executable, "-c", code)
    assert "COLS ['lineage', 'maturity', 'borderline']" in out
    assert "IN01 True True" in out and "BOOL bool" in out
