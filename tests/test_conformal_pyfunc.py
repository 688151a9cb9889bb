"""The trust layer travels with a registered model: saved in the model folder as data, declared in
the pyfunc signature, chosen at load (model_config) or per call (params), and returned through
`mlflow models serve`.

The model: a random-init resnet10t at 32 px + an SVM stage on 4 colour classes, two of which
(lymphocyte, monocyte) have almost the same colour, so their cells get two-class sets that span
two lineages and are referred.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

torch = pytest.importorskip("torch")
mlflow = pytest.importorskip("mlflow")

from zoo.evaluate.trust import OUTPUT_SCHEMA, TrustLayer  # noqa: E402

CLASSES = ["blast", "eosinophil", "lymphocyte", "monocyte"]
COLOURS = {"blast": (150, 60, 170), "eosinophil": (230, 120, 60), "lymphocyte": (60, 90, 200),
           "monocyte": (66, 94, 196)}
SIZE = 32
TRUST_COLUMNS = [name for name, _ in OUTPUT_SCHEMA]


def cells(labels, seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:SIZE, :SIZE]
    out = np.empty((len(labels), SIZE, SIZE, 3), dtype=np.uint8)
    for i, label in enumerate(labels):
        img = np.full((SIZE, SIZE, 3), 235, dtype=int)
        r = rng.uniform(0.25, 0.38) * SIZE
        cy, cx = rng.uniform(0.38, 0.62, 2) * SIZE
        img[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = COLOURS[label]
        out[i] = np.clip(img + rng.integers(-20, 21, img.shape), 0, 255)
    return out


def png_b64(arr):
    from zoo.tracking.packaging import png_base64

    return png_base64(arr)


@pytest.fixture(scope="module")
def model():
    from zoo.evaluate import SVMStage
    from zoo.models import create_encoder
    from zoo.models.embedding_svm import EmbeddingSVMModel

    torch.manual_seed(0)
    encoder = create_encoder("resnet10t", embedding_dim=32, img_size=SIZE).eval()
    labels = np.array([c for c in CLASSES for _ in range(15)])
    from zoo.data.transforms import eval_transform
    from PIL import Image

    tf = eval_transform(SIZE)
    X = cells(list(labels), seed=0)
    with torch.inference_mode():
        emb = encoder(torch.stack([tf(Image.fromarray(a)) for a in X])).numpy()
    svm = SVMStage(cv=3).fit(emb, np.array([CLASSES.index(c) for c in labels]))
    m = EmbeddingSVMModel("tml", encoder, svm, CLASSES, img_size=SIZE, config={"epochs": 0}, device="cpu")
    cal_labels = [c for c in CLASSES for _ in range(12)]
    probs = m.probabilities(m.embed(cells(cal_labels, seed=1)))
    m.trust = TrustLayer.fit(CLASSES, probs, np.array(cal_labels, dtype=object))
    return m


@pytest.fixture(scope="module")
def sample():
    labels = ["blast", "eosinophil", "lymphocyte", "monocyte"] * 3
    return cells(labels, seed=2), labels


def test_the_model_declares_and_returns_the_trust_columns(model, sample):
    X, _ = sample
    names = [c for c, _ in model.schema_with_trust()]
    own = [c for c, _ in model.output_schema()]
    after_probs = own.index(f"p_{CLASSES[-1]}") + 1  # trust columns follow the probabilities …
    assert names == own[:after_probs] + TRUST_COLUMNS + own[after_probs:]  # … family extras stay last
    assert {p for p, _, _ in model.params_with_trust()} >= {"coverage", "decision", "max_set_size"}
    out = model.predict_with_trust(X)
    assert list(out.columns) == names
    assert all(row["label"] in row["prediction_set"] for _, row in out.iterrows() if row["set_size"] == 1)
    assert (out["set_size"] == out["prediction_set"].map(len)).all()
    empty = model.predict_with_trust(X[:0])
    assert list(empty.columns) == names and len(empty) == 0


def test_coverage_and_decision_per_call(model, sample):
    X, _ = sample
    small = model.predict_with_trust(X, coverage=0.5)["set_size"].sum()
    large = model.predict_with_trust(X, coverage=0.99)["set_size"].sum()
    assert small <= large
    out = model.predict_with_trust(X, decision="min_severity")
    assert out["label"].tolist() == out["label_min_severity"].tolist()
    with pytest.raises(ValueError, match="coverage"):
        model.predict_with_trust(X, coverage=2)


def test_trust_is_saved_in_the_model_folder_as_data(model, sample, tmp_path):
    from zoo.models import load_zoo_model

    model.save(tmp_path / "m")
    files = {p.name for p in (tmp_path / "m" / "trust").iterdir()}
    assert files == {"trust.json", "conformal.json", "conformal.npz"}
    back = load_zoo_model(tmp_path / "m", device="cpu")
    X, _ = sample
    pd.testing.assert_frame_equal(back.predict_with_trust(X), model.predict_with_trust(X))


@pytest.fixture(scope="module")
def logged(model, tmp_path_factory):
    home = tmp_path_factory.mktemp("store")
    db = f"sqlite:///{home / 'mlflow.db'}"
    with pytest.MonkeyPatch.context() as mp:
        for var in ("MLFLOW_REGISTRY_URI", "MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_NAME", "MLFLOW_EXPERIMENT_ID"):
            mp.delenv(var, raising=False)
        mp.setenv("ZOO_HOME", str(home))
        mp.setenv("MLFLOW_TRACKING_URI", db)
        mp.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
        from zoo.tracking import packaging, runs

        with runs.start_run("tml", fold=0, tags={"dataset": "synth"}) as run:
            info = packaging.log_zoo_model(model)
        yield info.model_uri, home, db


@pytest.mark.slow
def test_pyfunc_signature_declares_outputs_and_params(logged):
    uri, _, _ = logged
    sig = mlflow.models.get_model_info(uri).signature
    outputs = {c.name: c.type for c in sig.outputs.inputs}
    assert set(TRUST_COLUMNS) <= set(outputs)
    assert "array" in str(outputs["prediction_set"]).lower()
    params = {p.name: p for p in sig.params.params}
    # no default in the signature (MLflow would pass it on every call, overriding model_config) …
    assert params["coverage"].default is None and params["decision"].default is None
    # … the defaults travel in the logged model_config
    config = mlflow.models.Model.load(uri).flavors["python_function"]["config"]
    assert config["coverage"] == 0.9 and config["decision"] == "argmax" and config["max_set_size"] == 2


@pytest.mark.slow
def test_pyfunc_model_config_at_load_and_params_per_call(logged, sample):
    uri, _, _ = logged
    X, _ = sample
    df = pd.DataFrame({"image": [png_b64(a) for a in X]})
    default = mlflow.pyfunc.load_model(uri).predict(df)
    assert set(TRUST_COLUMNS) <= set(default.columns)
    severe = mlflow.pyfunc.load_model(uri, model_config={"decision": "min_severity", "coverage": 0.99}).predict(df)
    assert severe["label"].tolist() == severe["label_min_severity"].tolist()
    assert severe["set_size"].sum() >= default["set_size"].sum()
    per_call = mlflow.pyfunc.load_model(uri).predict(df, params={"coverage": 0.99, "decision": "min_severity"})
    assert per_call["set_size"].tolist() == severe["set_size"].tolist()
    assert per_call["label"].tolist() == severe["label"].tolist()


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _post(url, payload, timeout=60):
    req = urllib.request.Request(url, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"{}")


def _stop(server):
    import signal

    for sig, wait in ((signal.SIGTERM, 20), (signal.SIGKILL, 10)):
        try:
            os.killpg(server.pid, sig)
        except ProcessLookupError:
            pass
        try:
            server.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            pass


@pytest.mark.slow
def test_mlflow_models_serve_returns_sets_sizes_and_referral(logged, model, sample, tmp_path):
    uri, home, db = logged
    X, _ = sample
    env = dict(os.environ)
    env.update(ZOO_HOME=str(home), MLFLOW_TRACKING_URI=db, HF_HUB_OFFLINE="1", MLFLOW_DISABLE_TELEMETRY="true",
               OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    env.pop("MLFLOW_RUN_ID", None)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])  # uvicorn
    port = _free_port()
    log = open(tmp_path / "serve.log", "w")
    server = subprocess.Popen(
        [str(Path(sys.executable).with_name("mlflow")), "models", "serve", "-m", uri, "--env-manager", "local",
         "-h", "127.0.0.1", "-p", str(port), "-w", "1"],
        stdout=log, stderr=subprocess.STDOUT, cwd=str(tmp_path), env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + 150
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"server did not come up: {(tmp_path / 'serve.log').read_text()[-3000:]}")
            time.sleep(1.0)
        url = f"http://127.0.0.1:{port}/invocations"
        status, body = _post(url, {"dataframe_split": {"columns": ["image"], "data": [[png_b64(a)] for a in X]}})
        assert status == 200, body
        out = pd.DataFrame(body["predictions"])
        expected = model.predict_with_trust(X)
        assert out["prediction_set"].tolist() == expected["prediction_set"].tolist()
        assert out["set_size"].tolist() == expected["set_size"].tolist()
        assert out["refer"].tolist() == expected["refer"].tolist()

        status, body = _post(url, {"dataframe_split": {"columns": ["image"], "data": [[png_b64(a)] for a in X]},
                                   "params": {"coverage": 0.99, "decision": "min_severity"}})
        assert status == 200, body
        out = pd.DataFrame(body["predictions"])
        expected = model.predict_with_trust(X, coverage=0.99, decision="min_severity")
        assert out["set_size"].tolist() == expected["set_size"].tolist()
        assert out["label"].tolist() == expected["label_min_severity"].tolist()
    finally:
        _stop(server)
        log.close()


@pytest.mark.slow
def test_evaluate_reports_trust_metrics_in_the_model_and_a_coarser_scheme(logged, sample):
    from zoo.tracking.evaluation import ClassMap, _trust_report

    uri, _, _ = logged
    X, labels = sample
    pyfunc = mlflow.pyfunc.load_model(uri)
    preds = pyfunc.predict(pd.DataFrame({"image": [png_b64(a) for a in X]}))
    y = np.array(labels, dtype=object)
    keep = np.ones(len(y), dtype=bool)
    metrics: dict = {}
    figures = _trust_report(pyfunc, preds, metrics, y, y, keep, None, None, None, "toy")
    for key in ("coverage_90", "set_size_95", "coverage_90_blast", "mcs_min_severity", "macro_f1_argmax",
                "referred_share"):
        assert key in metrics, key
    assert "plots/risk_coverage.png" in figures
    # external data with a coarser scheme: lymphocyte and monocyte both mean "mononuclear"
    cmap = ClassMap.load({"direction": "model_to_dataset",
                          "map": {"lymphocyte": "mononuclear", "monocyte": "mononuclear"}})
    coarse = np.array(["mononuclear" if c in ("lymphocyte", "monocyte") else c for c in labels], dtype=object)
    mapped: dict = {}
    assert _trust_report(pyfunc, preds, mapped, coarse, coarse, keep, cmap, None, None, "toy") == {}
    assert mapped["coverage_90"] >= metrics["coverage_90"]  # a set covers when any class means the truth
    assert mapped["set_size_90"] <= metrics["set_size_90"]  # two classes of one meaning count once
