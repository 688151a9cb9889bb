"""A real (tiny, untrained) pipeline end to end: Pipeline save/load, the models-from-code pyfunc
(in process and in a fresh process through the registry), the input contract and its errors,
evaluate_model with a class map, and `mlflow models serve` answering a JSON request.

The pipeline: a random-init timm resnet10t encoder at 32 px and an SVMStage fitted on the
embeddings of 60 synthetic cells of three colours — enough for the SVM to separate them, so a
broken class mapping or preprocessing shows up as wrong labels.
"""

from __future__ import annotations

import base64
import io
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
from mlflow.tracking import MlflowClient  # noqa: E402
from PIL import Image  # noqa: E402

from zoo.tracking.pipeline import PIPELINE_EXTRAS, BadImageError, Pipeline, PipelineExtras  # noqa: E402

CLASSES = ["blast", "eosinophil", "lymphocyte"]
COLOURS = {"blast": (150, 60, 170), "eosinophil": (230, 120, 60), "lymphocyte": (60, 90, 200), "monocyte": (70, 95, 190)}
SIZE = 32


def cells(labels: list[str], size: int = SIZE, seed: int = 0) -> np.ndarray:
    """(N, size, size, 3) uint8: a noisy disc of the class colour on a pale background."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    out = np.empty((len(labels), size, size, 3), dtype=np.uint8)
    for i, label in enumerate(labels):
        img = np.full((size, size, 3), 235, dtype=int)
        r = rng.uniform(0.25, 0.38) * size
        cy, cx = rng.uniform(0.38, 0.62, 2) * size
        img[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = COLOURS[label]
        out[i] = np.clip(img + rng.integers(-20, 21, img.shape), 0, 255)
    return out


def png_b64(arr: np.ndarray) -> str:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def subprocess_env(home: Path, db: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(ZOO_HOME=str(home), MLFLOW_TRACKING_URI=db, HF_HUB_OFFLINE="1", MLFLOW_DISABLE_TELEMETRY="true",
               OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    env.pop("MLFLOW_RUN_ID", None)
    # as in an activated venv: `mlflow models serve` execs `uvicorn` from PATH
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


@pytest.fixture(scope="module")
def train_set():
    labels = [c for c in CLASSES for _ in range(20)]
    return cells(labels, seed=0), np.array(labels)


@pytest.fixture(scope="module")
def pipeline(train_set):
    from zoo.data.transforms import eval_transform
    from zoo.evaluate import SVMStage
    from zoo.models import create_encoder

    torch.manual_seed(0)
    encoder = create_encoder("resnet10t", embedding_dim=64, img_size=SIZE).eval()
    tf = eval_transform(SIZE)
    X, y = train_set
    with torch.inference_mode():
        emb = encoder(torch.stack([tf(Image.fromarray(a)) for a in X])).numpy()
    svm = SVMStage(cv=3).fit(emb, y)
    return Pipeline("tml", encoder, svm, CLASSES, img_size=SIZE, config={"epochs": 0}, device="cpu")


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """One store for the module: logging and registering a model is the slow part."""
    home = tmp_path_factory.mktemp("project")
    db = f"sqlite:///{home / 'mlflow.db'}"
    with pytest.MonkeyPatch.context() as mp:
        for var in ("MLFLOW_REGISTRY_URI", "MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_NAME", "MLFLOW_EXPERIMENT_ID"):
            mp.delenv(var, raising=False)
        mp.setenv("ZOO_HOME", str(home))
        mp.setenv("MLFLOW_TRACKING_URI", db)
        mp.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
        yield home, db


@pytest.fixture(scope="module")
def production(project, pipeline):
    """The pipeline logged as a pyfunc, registered as zoo-tml and promoted to production."""
    from zoo.tracking import packaging, registry, runs

    with runs.start_run("tml", fold=0, tags={"dataset": "synth", "dataset_digest": "d" * 32, "kind": "embedding_svm",
                                             "primary_metric": "macro_f1", "limit": "none", "n_test": "60",
                                             "test_rows_digest": "r" * 16}) as run:
        run.log_metrics({"test_macro_f1": 1.0, "test_mcs": 0.0})
        info = packaging.log_pipeline(pipeline)
    mv = registry.register(run.run_id, "tml", info.model_uri)
    registry.promote("zoo-tml", mv.version, who="pytest", why="fixture")
    return "models:/zoo-tml@production", info


# ---------------------------------------------------------------------------------------------
# Pipeline
# ---------------------------------------------------------------------------------------------
def test_pipeline_predicts_the_contract_columns(pipeline, train_set):
    X, y = train_set
    out = pipeline.predict(X)
    assert list(out.columns) == ["label", "confidence"] + [f"p_{c}" for c in CLASSES]
    assert (out["label"].to_numpy() == y).mean() >= 0.95  # colours are trivially separable
    p = out[[f"p_{c}" for c in CLASSES]].to_numpy()
    assert np.allclose(p.sum(axis=1), 1.0, atol=1e-6)
    picked = p[np.arange(len(out)), [CLASSES.index(label) for label in out["label"]]]
    assert np.allclose(out["confidence"], picked)


def test_pipeline_save_load_round_trip(pipeline, train_set, tmp_path):
    from safetensors import safe_open

    X, _ = train_set
    folder = pipeline.save(tmp_path / "pipe")
    assert {p.name for p in folder.iterdir()} >= {"encoder.safetensors", "zoo_model.json", "svm.skops", "knowledge"}
    with safe_open(str(folder / "encoder.safetensors"), framework="pt") as f:  # a state dict, not a pickle
        assert any(k.startswith("head.") for k in f.keys())
    meta = json.loads((folder / "zoo_model.json").read_text())
    assert meta["classes"] == CLASSES and meta["family"] == "tml" and meta["kind"] == "embedding_svm"
    assert meta["encoder"]["backbone"] == "resnet10t"
    assert meta["preprocessing"] == {"img_size": SIZE, "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225],
                                     "transform": "zoo.data.transforms.eval_transform"}
    assert (folder / "knowledge" / "ontology.yaml").is_file()

    again = Pipeline.load(folder, device="auto")
    a = pipeline.predict(X, return_embedding=True)
    b = again.predict(X, return_embedding=True)
    assert a["label"].tolist() == b["label"].tolist()
    assert np.allclose(a.drop(columns=["label", "embedding"]), b.drop(columns=["label", "embedding"]), atol=1e-6)
    assert np.allclose(np.stack(a["embedding"]), np.stack(b["embedding"]), atol=1e-5)


def test_pipeline_inputs_are_equivalent(pipeline, train_set, tmp_path):
    X, _ = train_set
    X = X[::10]
    paths = []
    for i, a in enumerate(X):
        Image.fromarray(a).save(tmp_path / f"{i}.png")
        paths.append(str(tmp_path / f"{i}.png"))
    ref = pipeline.predict(X, batch_size=4)
    for other in (list(X), [Image.fromarray(a) for a in X], paths, [png_b64(a) for a in X]):
        out = pipeline.predict(other, batch_size=4)
        assert out["label"].tolist() == ref["label"].tolist()
        assert np.allclose(out["confidence"], ref["confidence"], atol=1e-5)
    empty = pipeline.predict(np.zeros((0, SIZE, SIZE, 3), np.uint8))
    assert empty.shape[0] == 0 and list(empty.columns) == [c for c, _ in pipeline.output_schema()]


def test_pipeline_bad_inputs_name_the_row_and_the_fix(pipeline, train_set):
    X, _ = train_set
    good = png_b64(X[0])
    with pytest.raises(BadImageError, match=r"^row 1: cannot decode image"):
        pipeline.predict([good, "definitely not an image", good])
    with pytest.raises(BadImageError, match=r"row 2: no image"):
        pipeline.predict([good, good, None])
    with pytest.raises(ValueError, match="uint8"):
        pipeline.predict(X.astype(np.float32))
    with pytest.raises(ValueError, match=r"\(N, H, W, 3\)"):
        pipeline.predict(X[..., 0])
    with pytest.raises(ValueError, match="add a batch axis"):
        pipeline.predict(X[0])
    with pytest.raises(TypeError, match="wrap a single image"):
        pipeline.predict(good)


class LineageExtras(PipelineExtras):
    """A family extra for the test: a lineage per class, saved as CSV, output as a column."""

    def __init__(self, lineage: dict[str, str]):
        self.lineage = lineage

    def save(self, directory):
        pd.Series(self.lineage, name="lineage").to_csv(Path(directory) / "lineage.csv")

    @classmethod
    def load(cls, directory):
        return cls(pd.read_csv(Path(directory) / "lineage.csv", index_col=0)["lineage"].to_dict())

    def columns(self, embeddings, probs):
        return {"lineage": [self.lineage[CLASSES[i]] for i in probs.argmax(axis=1)],
                "norm": np.linalg.norm(embeddings, axis=1)}

    def output_schema(self):
        return [("lineage", "string"), ("norm", "double")]


def test_pipeline_extras_are_saved_loaded_and_add_columns(pipeline, train_set, tmp_path):
    if "test-lineage" not in PIPELINE_EXTRAS:
        PIPELINE_EXTRAS.register("test-lineage")(LineageExtras)
    X, _ = train_set
    lineage = {"blast": "myeloid", "eosinophil": "myeloid", "lymphocyte": "lymphoid"}
    extended = Pipeline("tml", pipeline.encoder, pipeline.svm, CLASSES, img_size=SIZE,
                        extras={"test-lineage": LineageExtras(lineage)}, device="cpu")
    loaded = Pipeline.load(extended.save(tmp_path / "pipe"), device="cpu")
    assert isinstance(loaded.extras["test-lineage"], LineageExtras)
    out = loaded.predict(X[:6])
    assert out["lineage"].tolist() == [lineage[label] for label in out["label"]]
    assert (out["norm"] > 0).all()


# ---------------------------------------------------------------------------------------------
# pyfunc
# ---------------------------------------------------------------------------------------------
def test_logged_model_signature_example_and_config(production, pipeline):
    uri, info = production
    model = mlflow.pyfunc.load_model(uri)
    sig = model.metadata.signature
    assert sig.inputs is None  # on purpose: see zoo.tracking.packaging (ndarray batches)
    assert [c.name for c in sig.outputs.inputs] == ["label", "confidence"] + [f"p_{c}" for c in CLASSES]
    (param,) = sig.params.params
    assert (param.name, param.default) == ("return_embedding", False)
    assert model.metadata.metadata["classes"] == CLASSES
    assert model.model_config == {"device": "auto", "predict_batch_size": 64}
    example = model.input_example
    assert list(example.columns) == ["image"] and Image.open(io.BytesIO(base64.b64decode(example["image"][0])))
    local = Path(mlflow.artifacts.download_artifacts(info.model_uri))
    assert (local / "serving_input_example.json").is_file()
    assert not any(local.rglob("python_model.pkl"))  # models-from-code: no pickled model object


def test_pyfunc_in_process_inputs_outputs_and_errors(production, pipeline, train_set):
    uri, _ = production
    X, _ = train_set
    model = mlflow.pyfunc.load_model(uri, model_config={"device": "cpu"})
    frame = pd.DataFrame({"image": [png_b64(a) for a in X[::7]]})
    out = model.predict(frame)
    ref = pipeline.predict(X[::7])
    assert list(out.columns) == list(ref.columns)
    assert out["label"].tolist() == ref["label"].tolist()
    assert np.allclose(out["confidence"], ref["confidence"], atol=1e-5)
    batch = model.predict(X[::7])  # an (N, H, W, 3) uint8 batch
    assert batch["label"].tolist() == ref["label"].tolist()
    emb = model.predict(frame, params={"return_embedding": True})
    assert "embedding" in emb.columns and len(emb["embedding"][0]) == 64
    assert "embedding" not in model.predict(frame, params={"return_embedding": False}).columns

    with pytest.raises(ValueError, match="no 'image' column"):
        model.predict(pd.DataFrame({"img": frame["image"]}))
    with pytest.raises(ValueError, match="row 1: cannot decode image"):
        model.predict(pd.DataFrame({"image": [frame["image"][0], "bm90IGFuIGltYWdlIGF0IGFsbA==", frame["image"][1]]}))
    with pytest.raises(ValueError, match="uint8"):
        model.predict(X[:2].astype(np.int64))
    with pytest.raises(ValueError, match="shape"):
        model.predict(X[:2, :, :, :2].copy())


FRESH_PROCESS = r"""
import json, sys
import mlflow, pandas as pd
model = mlflow.pyfunc.load_model("models:/zoo-tml@production")
paths, b64 = json.loads(sys.stdin.read())
out_p = model.predict(pd.DataFrame({"image": paths}))
out_b = model.predict(pd.DataFrame({"image": b64}), params={"return_embedding": True})
print("RESULT" + json.dumps({"columns": list(out_b.columns), "paths": out_p["label"].tolist(),
                             "b64": out_b["label"].tolist(), "dim": len(out_b["embedding"][0]),
                             "modules": sorted(m for m in sys.modules if m.startswith("zoo.tracking")),
                             "zoo_modules": sorted(m for m in sys.modules if m.startswith("zoo.models"))}))
"""


@pytest.mark.slow
def test_registered_model_loads_in_a_fresh_process(production, project, pipeline, train_set, tmp_path):
    home, db = project
    X, _ = train_set
    sample = X[::9]
    paths = []
    for i, a in enumerate(sample):
        Image.fromarray(a).save(tmp_path / f"{i}.png")
        paths.append(str(tmp_path / f"{i}.png"))
    proc = subprocess.run([sys.executable, "-c", FRESH_PROCESS], input=json.dumps([paths, [png_b64(a) for a in sample]]),
                          capture_output=True, text=True, timeout=240, cwd=str(tmp_path), env=subprocess_env(home, db))
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.split("RESULT", 1)[1])
    expected = pipeline.predict(sample)["label"].tolist()
    assert result["columns"] == ["label", "confidence"] + [f"p_{c}" for c in CLASSES] + ["embedding"]
    assert result["paths"] == expected and result["b64"] == expected
    assert result["dim"] == 64
    assert "zoo.models.embedding_svm" in result["zoo_modules"]


# ---------------------------------------------------------------------------------------------
# evaluate_model
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def external_dataset(project):
    """A prepared dataset whose classes differ from the model's: it has monocytes (drawn like
    lymphocytes), which the model does not know."""
    from zoo.data.ingest import ingest

    home, _ = project
    src = home / "external"
    labels = [c for c in CLASSES + ["monocyte"] for _ in range(9)]
    for i, (label, img) in enumerate(zip(labels, cells(labels, seed=7))):
        (src / label).mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(src / label / f"{i:03d}.png")
    return ingest(src, "external", reader="imagefolder", n_folds=3, near_distance=-1, review_distance=-1,
                  workers=1, verbose=False)


def test_evaluate_model_with_class_map(production, external_dataset, tmp_path):
    from zoo.tracking.evaluation import evaluate_model

    uri, _ = production
    with pytest.raises(ValueError, match=r"\['monocyte'\] are not classes of the model"):
        evaluate_model(uri, "external", fold="all")
    bad = tmp_path / "bad.yaml"
    bad.write_text("monocyte: neutrophil_of_mars\n")
    with pytest.raises(ValueError, match="not classes of the model"):
        evaluate_model(uri, "external", fold="all", class_map=bad)

    cmap = tmp_path / "map.yaml"
    cmap.write_text("# dataset class -> model class\nmonocyte: lymphocyte\n")
    m = evaluate_model(uri, "external", fold="all", class_map=cmap, embedding_map="pca")
    assert m["n_images"] == 36 and m["n_dropped"] == 0
    assert m["macro_f1"] >= 0.9 and m["classes"] == CLASSES
    assert m["per_class"]["lymphocyte"]["support"] == 18
    assert 0.0 <= m["mcs"] < 1.0 and "macro_f1_tolerant" in m

    dropped = evaluate_model(uri, "external", fold="all", class_map={"monocyte": None}, limit=30,
                             embedding_map="none")
    assert dropped["n_images"] + dropped["n_dropped"] == 30 and dropped["n_dropped"] > 0

    client = MlflowClient()
    run = client.get_run(m["run_id"])
    assert client.get_experiment(run.info.experiment_id).name == "zoo-evaluate"
    t = run.data.tags
    assert t["model_uri"] == uri and t["model_name"] == "zoo-tml" and t["model_version"] == "1"
    assert t["dataset"] == "external" and t["dataset_digest"] in (external_dataset.digest, external_dataset.dvc_md5)
    assert run.data.metrics["macro_f1"] == pytest.approx(m["macro_f1"])
    arts = {a.path for a in client.list_artifacts(run.info.run_id)} | {
        a.path for a in client.list_artifacts(run.info.run_id, "plots")}
    assert {"metrics.json", "predictions.csv", "class_map.yaml", "plots/confusion_matrix.png",
            "plots/embedding_map.png"} <= arts
    (inp,) = run.inputs.dataset_inputs
    assert {tg.key: tg.value for tg in inp.tags}["mlflow.data.context"] == "evaluation"
    tags = client.get_model_version("zoo-tml", "1").tags
    assert float(tags["eval.external.all.macro_f1"]) == pytest.approx(m["macro_f1"])


# ---------------------------------------------------------------------------------------------
# serving
# ---------------------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _post(url: str, payload: dict, timeout: float = 60.0) -> tuple[int, dict]:
    req = urllib.request.Request(url, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"{}")


@pytest.mark.slow
def test_mlflow_models_serve_answers_base64_json(production, project, pipeline, train_set, tmp_path):
    home, db = project
    X, _ = train_set
    sample = X[::6]
    port = _free_port()
    mlflow_exe = str(Path(sys.executable).with_name("mlflow"))
    log = open(tmp_path / "serve.log", "w")
    server = subprocess.Popen(
        [mlflow_exe, "models", "serve", "-m", "models:/zoo-tml@production", "--env-manager", "local",
         "-h", "127.0.0.1", "-p", str(port), "-w", "1"],
        stdout=log, stderr=subprocess.STDOUT, cwd=str(tmp_path), env=subprocess_env(home, db),
        start_new_session=True)
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
        status, body = _post(url, {"dataframe_split": {"columns": ["image"], "data": [[png_b64(a)] for a in sample]}})
        assert status == 200, body
        out = pd.DataFrame(body["predictions"])
        assert list(out.columns) == ["label", "confidence"] + [f"p_{c}" for c in CLASSES]
        assert out["label"].tolist() == pipeline.predict(sample)["label"].tolist()

        status, body = _post(url, {"dataframe_records": [{"image": png_b64(sample[0])}],
                                   "params": {"return_embedding": True}})
        assert status == 200 and len(body["predictions"][0]["embedding"]) == 64

        status, body = _post(url, {"dataframe_split": {"columns": ["image"], "data": [[png_b64(sample[0])], ["nope"]]}})
        assert status == 400 and "row 1" in json.dumps(body)
        # the row-naming message is the response's message, not buried in a stack trace (issue 15)
        assert "row 1" in body["message"] and "unexpected error" not in body["message"], body["message"]
    finally:
        _stop(server)
        log.close()


def _stop(server: subprocess.Popen) -> None:
    """SIGTERM the server's process group (mlflow -> uvicorn -> worker), then SIGKILL whatever of
    the group is left, so no worker outlives the test."""
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


# ---------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------
def _zoo(*argv):
    import argparse

    from zoo.tracking.cli import add_commands

    parser = argparse.ArgumentParser(prog="zoo")
    add_commands(parser.add_subparsers(dest="command"))
    args = parser.parse_args([str(a) for a in argv])
    return args.func(args)


def test_cli_predict_and_evaluate(production, external_dataset, pipeline, train_set, tmp_path, capsys):
    X, _ = train_set
    folder = tmp_path / "cells"
    folder.mkdir()
    for i, a in enumerate(X[::12]):
        Image.fromarray(a).save(folder / f"{i}.png")
    out_csv = tmp_path / "pred.csv"
    assert _zoo("predict", "zoo-tml@production", folder, "--out", out_csv, "--device", "cpu") == 0
    table = pd.read_csv(out_csv)
    assert list(table.columns[:3]) == ["image", "label", "confidence"] and len(table) == 5
    expected = pipeline.predict([str(folder / f"{i}.png") for i in range(5)])["label"].tolist()
    assert table.sort_values("image")["label"].tolist() == expected
    with pytest.raises(FileNotFoundError, match="no such file"):
        _zoo("predict", "zoo-tml@production", tmp_path / "missing.png")

    cmap = tmp_path / "map.yaml"
    cmap.write_text("monocyte: lymphocyte\n")
    capsys.readouterr()
    assert _zoo("evaluate", "zoo-tml@production", "--dataset", "external", "--fold", "all",
                "--class-map", cmap, "--limit", "12") == 0
    out = capsys.readouterr().out
    summary = json.loads(out[out.index("{"):])
    assert summary["n_images"] == 12 and 0.0 <= summary["macro_f1"] <= 1.0
    runs_df = mlflow.search_runs(experiment_names=["zoo-evaluate"], filter_string="params.limit = '12'")
    assert len(runs_df) == 1 and runs_df["tags.class_map"].iloc[0] == str(cmap)
    # issue 15: run (named with the class map), fold, rows, artifacts and directions are printed;
    # a --limit evaluation still tags the version, under its own key
    run_name = runs_df["tags.mlflow.runName"].iloc[0]
    assert "-map-" in run_name and f"run:       {run_name}" in out
    assert "test rows: 12 (stratified sample" in out and "artifacts: " in out and "↓ mcs" in out and "↑ macro_f1" in out
    tags = MlflowClient().get_model_version("zoo-tml", "1").tags
    assert tags.get("eval.external.all-n12.macro_f1") == str(summary["macro_f1"])
