"""The reference family: parameters, tags, search space, and a tiny end-to-end run that registers
a reference model whose pyfunc returns 8 references per cell and logs the explorer page."""

from __future__ import annotations

import json

import numpy as np
import pytest

from zoo.families.runner import build_family


def test_family_declares_parameters_and_validates_them():
    fam = build_family("reference", {})
    p = fam.params
    assert (p["source_model"], p["layer"], p["reducer"], p["latent"], p["method"]) == ("none", "pre_logits", "vae", 50, "mse")
    assert fam.kind == "reference" and fam.primary_metric == "precision_at_8" and fam.has_classes
    assert fam.source() == "timm:resnet18"                      # none = the common backbone, random init
    assert fam.tags()["reducer"] == "vae"
    with pytest.raises(ValueError, match="reducer"):
        build_family("reference", {"reducer": "umap"})
    with pytest.raises(ValueError, match="som_lr"):
        build_family("reference", {"som_lr": "1.5"})
    reg = build_family("reference", {"source_model": "models:/zoo-tml/3", "reducer": "pca", "latent": "16"})
    assert reg.name_parts() == ["zoo-tml-v3", "pca", "16"]
    assert fam.output_columns(["a"]) == ["label", "confidence", "references", "reference_labels", "distances",
                                         "label_distribution"]


def test_search_space_samples_valid_configurations():
    optuna = pytest.importorskip("optuna")
    fam = build_family("reference", {})
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(10):
        trial = study.ask()
        raw = fam.search_space(trial)
        assert build_family("reference", raw).params["latent"] == raw["latent"]
        study.tell(trial, 0.0)


@pytest.mark.slow
def test_end_to_end_tiny_run_registers_a_reference_model(tmp_path, monkeypatch):
    import mlflow

    from zoo.data.ingest import ingest
    from zoo.data.synth import generate
    from zoo.families import train

    monkeypatch.setenv("ZOO_HOME", str(tmp_path))
    monkeypatch.setenv("ZOO_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)
    raw = generate(tmp_path / "raw", n_cells=90, img_size=32, seed=1)
    ingest(raw, "tiny", "synth", n_folds=3, seed=1)
    params = {"dataset": "tiny", "epochs": "2", "img_size": "32", "batch_size": "16", "num_workers": "0",
              "source_model": "timm:test_resnet", "reducer": "vae", "latent": "8", "som_size": "4",
              "som_epochs": "4", "rotmes_per_class": "3", "explorer_cells": "40"}
    result = train("reference", params, progress=False)
    fold = result.folds[0]
    for key in ("test_precision_at_8", "test_precision_at_8_som", "test_macro_f1", "test_mcs", "test_rotmes",
                "test_som_qe", "val_precision_at_8"):
        assert np.isfinite(fold.metrics[key]), key
    assert 0.0 <= fold.metrics["test_precision_at_8"] <= 1.0
    client = mlflow.MlflowClient()
    name, version = result.registered.split("/")
    tags = client.get_model_version(name, version).tags
    assert tags["kind"] == "reference" and tags["reducer"] == "vae"
    arts = {a.path for a in client.list_artifacts(fold.run_id, "family")}
    assert "family/explorer.html" in arts
    page = open(mlflow.artifacts.download_artifacts(run_id=fold.run_id, artifact_path="family/explorer.html")).read()
    assert "data:image/jpeg;base64," in page and "https://" not in page
    # features are cached: a second run over the same model and data reads them back
    cached = list((tmp_path / "data" / "cache" / "features").glob("*.npz"))
    assert len(cached) == 3                                         # train, val, test
    model = mlflow.pyfunc.load_model(f"models:/{name}/{version}")
    img = np.random.RandomState(0).randint(0, 255, (2, 32, 32, 3)).astype(np.uint8)
    pred = model.predict(img)
    assert list(pred.columns) == fam_columns()
    refs = [json.loads(r) for r in pred["references"]]
    assert all(len(r) == 8 for r in refs)


def fam_columns():
    return build_family("reference", {}).output_columns([])
