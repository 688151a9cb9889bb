"""The autoencoder family: parameters, tags, search space, the grid's tables, and an end-to-end
tiny run that registers an encoder whose pyfunc returns representations."""

import numpy as np
import pandas as pd
import pytest

from zoo.autoencoder.grid import PAPER_GRID, markdown_report, select, summarize
from zoo.families.runner import build_family


def test_family_declares_the_paper_methods_and_validates_them():
    fam = build_family("autoencoder", {})
    assert fam.params["method"] == "mask_sampled" and fam.params["radius"] == 50 and fam.params["radius_std"] == 20
    assert fam.kind == "autoencoder" and fam.primary_metric == "macro_f1" and not fam.has_classes
    assert "sigma" not in fam.params  # only parsed when method=noise
    with pytest.raises(ValueError, match="'method' must be one of none, noise, mask_fixed"):
        build_family("autoencoder", {"method": "blur"})
    with pytest.raises(ValueError, match="arch"):
        build_family("autoencoder", {"arch": "vae512"})
    noise = build_family("autoencoder", {"method": "noise", "sigma": "200"})
    assert noise.tags() == {"method": "noise", "arch": "vae256", "sigma": "200"}
    assert noise.name_parts() == ["vae256", "noise", "sigma200"]
    crop = build_family("autoencoder", {"method": "crop", "crop_size": "88", "offset_std": "15", "arch": "rae1024"})
    assert crop.output_columns([])[:2] == ["z_0000", "z_0001"] and len(crop.output_columns([])) == 1024


def test_build_scales_the_crop_and_wires_the_method():
    fam = build_family("autoencoder", {"method": "crop", "crop_size": "88", "img_size": "64"})
    model, objective = fam.build(64)
    assert objective.suppression.input_size == 22 and model.img_size == 22
    fam = build_family("autoencoder", {"method": "mask_learned", "radius_penalty": "1"})
    model, objective = fam.build(32)
    assert objective.suppression.radius_penalty == 1.0 and objective.suppression.head[0].in_features == 256


def test_search_space_samples_valid_configurations():
    optuna = pytest.importorskip("optuna")
    fam = build_family("autoencoder", {})
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    methods = set()
    for _ in range(30):
        trial = study.ask()
        raw = fam.search_space(trial)
        methods.add(raw["method"])
        again = build_family("autoencoder", raw)  # every sample parses
        assert again.params["method"] == raw["method"]
        study.tell(trial, 0.0)
    assert {"mask_sampled", "noise", "crop"} <= methods


def test_paper_grid_holds_the_papers_parameter_sets():
    assert len(PAPER_GRID) == 19
    assert [c for m, c, _ in PAPER_GRID if m == "mask sampled"] == ["mu=50", "mu=90", "mu=126"]
    assert {p["offset_std"] for m, _, p in PAPER_GRID if m.startswith("crop")} == {0, 5, 15}
    assert [m for m, _, _ in select("VAE-256,noise")] == ["VAE-256", "noise", "noise", "noise"]
    assert [c for _, c, _ in select("mask_sampled,vae256")] == ["none", "mu=50", "mu=90", "mu=126"]
    with pytest.raises(ValueError, match="unknown grid method"):
        select("blur")
    for _, _, params in PAPER_GRID:
        build_family("autoencoder", params)


def test_grid_summary_picks_best_and_worst_reconstruction_per_method():
    rows = [
        ("VAE-256", "none", 0.40, 0.70), ("RAE-1024", "none", 0.45, 0.72),
        ("mask sampled", "mu=50", 0.62, 0.60), ("mask sampled", "mu=90", 0.55, 0.75),
        ("mask sampled", "mu=126", 0.50, 0.80), ("noise", "sigma=50", 0.41, 0.65),
    ]
    runs = pd.DataFrame([{"method": m, "config": c, "fold": f, "test_macro_f1": f1 + 0.01 * f,
                          "test_contour_ssim": s, "test_contour_l1": 1 - s, "seconds": 1.0}
                         for m, c, f1, s in rows for f in (0, 1)])
    configs, table = summarize(runs)
    ms = table.set_index("method").loc["mask sampled"]
    assert (ms["best_config"], ms["worst_config"]) == ("mu=126", "mu=50")   # ranked by contour SSIM
    assert ms["best_f1"] == pytest.approx(0.505) and ms["worst_f1"] == pytest.approx(0.625)
    assert ms["max_f1_config"] == "mu=50" and ms["best_f1_vs_vae"] == pytest.approx(0.10)
    assert list(table["method"]) == ["VAE-256", "RAE-1024", "noise", "mask sampled"]
    assert configs["f1_std"].iloc[0] == pytest.approx(np.std([0.40, 0.41], ddof=1))
    report = markdown_report(configs, table, "synth", 2, {"epochs": 3}, 60.0, image="x.png")
    assert "| mask sampled | mu=126 | 0.8000 | 0.5050 | mu=50 | 0.6000 | 0.6250 | 0.1000 |" in report


def test_child_run_parameters_map_back_to_their_grid_entry():
    from zoo.autoencoder.grid import _entry_of

    assert _entry_of({"method": "none", "arch": "vae256", "radius": "50.0"}) == ("VAE-256", "none")
    assert _entry_of({"method": "none", "arch": "rae1024"}) == ("RAE-1024", "none")
    assert _entry_of({"method": "crop", "arch": "vae256", "crop_size": "88.0", "offset_std": "15.0"}) == \
        ("crop small", "offset=15")
    assert _entry_of({"method": "mask_learned", "arch": "vae256", "radius_penalty": "1.0"}) == \
        ("mask learned", "penalty=yes")
    assert _entry_of({"method": "noise", "arch": "vae256", "sigma": "75"}) is None


@pytest.mark.slow
def test_end_to_end_tiny_run_registers_an_encoder_that_returns_representations(tmp_path, monkeypatch):
    import mlflow

    from zoo.data.synth import generate
    from zoo.data.ingest import ingest
    from zoo.families import train

    monkeypatch.setenv("ZOO_HOME", str(tmp_path))
    monkeypatch.setenv("ZOO_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)
    raw = generate(tmp_path / "raw", n_cells=90, img_size=32, seed=1)
    ingest(raw, "tiny", "synth", n_folds=3, seed=1)
    result = train("autoencoder", {"dataset": "tiny", "epochs": "1", "img_size": "32", "batch_size": "16",
                                   "num_workers": "0", "method": "mask_sampled", "probe_hidden": "16"},
                   progress=False)
    fold = result.folds[0]
    for key in ("val_loss", "val_macro_f1", "test_macro_f1", "test_linear_macro_f1", "test_contour_l1",
                "test_contour_ssim", "test_ssim"):
        assert np.isfinite(fold.metrics[key]), key
    assert result.registered and result.registered.startswith("zoo-autoencoder/")
    client = mlflow.MlflowClient()
    name, version = result.registered.split("/")
    tags = client.get_model_version(name, version).tags
    assert tags["kind"] == "autoencoder" and tags["method"] == "mask_sampled"
    arts = {a.path for a in client.list_artifacts(fold.run_id, "plots")}
    assert "plots/reconstructions.png" in arts
    model = mlflow.pyfunc.load_model(f"models:/{name}/{version}")
    img = np.random.RandomState(0).randint(0, 255, (2, 32, 32, 3)).astype(np.uint8)
    pred = model.predict(img)
    assert pred.shape == (2, 256) and list(pred.columns[:2]) == ["z_000", "z_001"]
    assert "reconstruction" in model.predict(img, params={"return_reconstruction": True}).columns
    # the encoder is reusable: its backbone is a `pretrained=` checkpoint for supervised families
    import torch

    from zoo.autoencoder.reuse import backbone_checkpoint, resolve_pretrained
    from zoo.models import create_encoder

    path = backbone_checkpoint(f"models:/{name}/{version}", dst=tmp_path / "dl")
    assert path.name == "backbone.safetensors"
    enc = create_encoder("resnet18", pretrained=resolve_pretrained(f"models:/{name}/{version}"))
    native = mlflow.pyfunc.load_model(f"models:/{name}/{version}").unwrap_python_model().model
    assert torch.equal(enc.backbone.conv1.weight, native.autoencoder.encoder.backbone.conv1.weight)

    # ...and `pretrained=models:/…` hands it to any family directly (init_from): a TML encoder trained
    # with a vanishing learning rate still holds the autoencoder's first convolution.
    tml = train("tml", {"dataset": "tiny", "epochs": "1", "img_size": "32", "batch_size": "16",
                        "num_workers": "0", "lr": "1e-12", "svm_every": "1", "register": "true",
                        "pretrained": f"models:/{name}/{version}"}, progress=False)
    tml_model = mlflow.pyfunc.load_model(f"models:/{tml.registered}").unwrap_python_model().model
    assert torch.allclose(tml_model.encoder.backbone.conv1.weight.cpu(),
                          native.autoencoder.encoder.backbone.conv1.weight.cpu(), atol=1e-6)
    assert client.get_run(tml.folds[0].run_id).data.params["pretrained"] == f"models:/{name}/{version}"
