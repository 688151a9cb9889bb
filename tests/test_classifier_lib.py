"""The classifier family's library parts (seed 004): tolerant metrics, balanced sampling, stain
augmentation, Grad-CAM / SmoothGrad maps, the external-validation abstentions, the model kind."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from zoo.knowledge import load_ontology


# --- tolerant metrics -------------------------------------------------------------------------
def test_tolerant_precision_recall_on_a_hand_example():
    """band/segmented are a tolerance pair in the ontology; lymphocyte is tolerable with neither.
    Confusions: band->segmented (tolerable), segmented->lymphocyte and lymphocyte->band (not)."""
    from zoo.evaluate.metrics import classification_metrics

    classes = ["band_neutrophil", "segmented_neutrophil", "lymphocyte"]
    b, s, l = classes
    y_true = [b, b, s, s, l, l]
    y_pred = [b, s, s, l, l, b]
    m = classification_metrics(y_true, y_pred, classes, ontology=load_ontology())
    pc = m["per_class"]
    for c in classes:  # strict: every class has one of two right, and one of two predictions right
        assert pc[c]["precision"] == pytest.approx(0.5) and pc[c]["recall"] == pytest.approx(0.5)
    assert pc[b]["recall_tolerant"] == pytest.approx(1.0)       # its band->segmented is tolerable
    assert pc[b]["precision_tolerant"] == pytest.approx(0.5)    # the lymphocyte called band is not
    assert pc[s]["recall_tolerant"] == pytest.approx(0.5)
    assert pc[s]["precision_tolerant"] == pytest.approx(1.0)    # the band called segmented is tolerable
    assert pc[l]["recall_tolerant"] == pytest.approx(0.5) and pc[l]["precision_tolerant"] == pytest.approx(0.5)
    assert m["macro_f1"] == pytest.approx(0.5)
    assert m["macro_f1_tolerant"] == pytest.approx((2 / 3 + 2 / 3 + 0.5) / 3)


def test_per_class_summary_gives_mean_and_std_over_folds():
    from zoo.evaluate.metrics import classification_metrics, per_class_summary

    classes = ["band_neutrophil", "segmented_neutrophil"]
    f1 = classification_metrics([0, 0, 1, 1], [0, 0, 1, 1], classes, ontology=load_ontology())
    f2 = classification_metrics([0, 0, 1, 1], [0, 1, 1, 1], classes, ontology=load_ontology())
    table = per_class_summary([f1, f2])
    assert table.loc["band_neutrophil", "recall_mean"] == pytest.approx(0.75)
    assert table.loc["band_neutrophil", "recall_std"] == pytest.approx(0.25)
    assert table.loc["band_neutrophil", "recall_tolerant_mean"] == pytest.approx(1.0)
    assert table.loc["band_neutrophil", "support"] == 4


# --- balanced sampling ------------------------------------------------------------------------
def test_balanced_sampler_draws_every_class_equally_often():
    """make_loaders(sampler="balanced") draws each epoch with weights 1/class size: on a 90/9/1
    split the three classes come out about equally often."""
    from zoo.data.datasets import _make_sampler

    targets = torch.tensor([0] * 90 + [1] * 9 + [2] * 1)
    gen = torch.Generator().manual_seed(0)
    sampler = _make_sampler("balanced", targets, batch_size=10, m=4, gen=gen)
    drawn = torch.cat([targets[list(sampler)] for _ in range(60)])   # 60 epochs of 100 draws
    assert len(list(sampler)) == len(targets)                         # an epoch keeps its length
    freq = torch.bincount(drawn, minlength=3).double() / len(drawn)
    assert torch.allclose(freq, torch.full((3,), 1 / 3, dtype=torch.float64), atol=0.03), freq


# --- stain augmentation -----------------------------------------------------------------------
def _cell(size: int = 64, seed: int = 0) -> torch.Tensor:
    """A Pappenheim-like cell: pale background, violet cytoplasm, dark purple nucleus, noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    r = np.hypot(yy - size / 2, xx - size / 2)
    img = np.empty((size, size, 3), dtype=float)
    img[:] = (236, 226, 232)
    img[r < size * 0.35] = (205, 165, 215)
    img[r < size * 0.18] = (105, 55, 150)
    img += rng.normal(0, 4, img.shape)
    return torch.from_numpy(np.clip(img, 0, 255).astype(np.uint8)).permute(2, 0, 1).contiguous()


def _optical_density(img: torch.Tensor) -> np.ndarray:
    return -np.log((img.permute(1, 2, 0).numpy().astype(float) + 1) / 256).sum(-1)


def test_tellez_stain_jitter_keeps_range_and_geometry_and_changes_the_stain():
    from zoo.data.stain import tellez_stain_jitter

    img = _cell()
    jitter = tellez_stain_jitter(0.2)
    torch.manual_seed(0)
    outs = [jitter(img) for _ in range(8)]
    od = _optical_density(img).ravel()
    nucleus = (_cell_radius_mask(img.shape[-1]) < img.shape[-1] * 0.18)
    colour_shift = []
    for out in outs:
        assert out.dtype == torch.uint8 and out.shape == img.shape          # range and size kept
        # geometry: the stain amounts are scaled/shifted per stain, never moved, so the optical
        # density map keeps its spatial pattern (the shift tints the background too, by design)
        assert np.corrcoef(od, _optical_density(out).ravel())[0, 1] > 0.99
        colour_shift.append(float((out.float() - img.float())[:, nucleus].mean(1).abs().max()))
    assert max(colour_shift) > 5.0, colour_shift                            # the stain changed
    assert len({o.numpy().tobytes() for o in outs}) > 1                     # and differently each time


def _cell_radius_mask(size: int) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size]
    return np.hypot(yy - size / 2, xx - size / 2)


def test_stain_normaliser_maps_onto_the_reference_and_round_trips_its_state():
    from zoo.data.stain import MacenkoStainNormalizer

    src, ref = _cell(seed=1), _cell(seed=2)
    ref = (ref.float() * torch.tensor([0.8, 1.0, 0.9]).view(3, 1, 1)).clamp(0, 255).to(torch.uint8)
    norm = MacenkoStainNormalizer().fit(ref)
    out = norm(src)
    assert out.shape == src.shape and out.dtype == torch.uint8
    # the normalised image is closer in mean colour to the reference than the source was
    assert (out.float().mean((1, 2)) - ref.float().mean((1, 2))).abs().sum() < \
        (src.float().mean((1, 2)) - ref.float().mean((1, 2))).abs().sum()
    again = MacenkoStainNormalizer.from_state(norm.state)
    assert torch.equal(again(src), out)


def test_paper_augmentation_keeps_the_patch_size():
    from zoo.data.stain import tellez_stain_jitter
    from zoo.data.transforms import MATEK_AUGMENT, train_transform

    t = train_transform(48, **MATEK_AUGMENT, stain=tellez_stain_jitter(), stain_p=1.0)
    out = t(_cell(64))
    assert out.shape == (3, 48, 48) and out.dtype == torch.float32 and torch.isfinite(out).all()


# --- explanations -----------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["gradcam", "smoothgrad"])
@pytest.mark.parametrize("arch", ["sequential_cnn", "resnet18"])
def test_heat_maps_have_the_input_size(arch, method):
    from zoo.explain import heatmaps
    from zoo.models.classifier import create_classifier

    torch.manual_seed(0)
    model = create_classifier(arch, num_classes=3)
    x = torch.randn(2, 3, 64, 80)
    maps = heatmaps(model, x, method)
    assert maps.shape == (2, 64, 80)
    assert np.isfinite(maps).all() and maps.min() >= 0.0 and maps.max() <= 1.0
    assert maps.reshape(2, -1).std(1).min() > 0          # a map, not a constant
    assert model.training                                # the caller's train mode is restored


def test_explanation_panel_shows_correct_cells_per_class():
    from zoo.explain import explanation_panel, pick_correct
    from zoo.models.classifier import create_classifier

    assert pick_correct([0, 0, 1, 2], [0, 0, 2, 2], confidence=[0.2, 0.9, 0.5, 0.6]) == {0: [1], 2: [3]}
    torch.manual_seed(0)
    model = create_classifier("sequential_cnn", num_classes=3)
    fig = explanation_panel(model, torch.randn(4, 3, 64, 64), [0, 0, 1, 2], [0, 0, 2, 2], ["a", "b", "c"])
    assert len(fig.axes) == 3 * 2       # 2 classes with a correct cell x (image, SmoothGrad, Grad-CAM)


# --- external validation ----------------------------------------------------------------------
def test_abstentions_coverage_and_agreement():
    from zoo.evaluate.external import ExternalMap, external_agreement

    model_classes = ["band_neutrophil", "segmented_neutrophil", "lymphocyte", "artefact", "not_identifiable",
                     "plasma_cell"]
    emap = ExternalMap.load({"direction": "model_to_dataset",
                             "map": {"band_neutrophil": "neutrophil", "segmented_neutrophil": "neutrophil",
                                     "plasma_cell": None},
                             "ignore": ["blast"]})
    y_true = ["neutrophil", "neutrophil", "neutrophil", "lymphocyte", "lymphocyte", "lymphocyte", "blast"]
    y_pred = ["band_neutrophil", "artefact", "segmented_neutrophil", "lymphocyte", "plasma_cell",
              "not_identifiable", "lymphocyte"]
    res = external_agreement(y_true, y_pred, model_classes, emap)
    assert res.ignored.tolist() == [False] * 6 + [True]
    assert res.abstained.tolist() == [False, True, False, False, True, True, False]
    assert res.scored.tolist() == [True, False, True, True, False, False, False]
    assert res.counts["n_abstained"] == 3 and res.counts["n_ignored"] == 1 and res.counts["n_scored"] == 3
    assert res.counts["coverage"] == pytest.approx(3 / 6)
    assert res.counts["abstained_artefact"] == 1 and res.counts["abstained_plasma_cell"] == 1
    assert list(res.y_pred_mapped[res.scored]) == ["neutrophil", "neutrophil", "lymphocyte"]
    assert res.agreement.loc["neutrophil", "artefact"] == 1
    assert res.agreement.loc["lymphocyte", "plasma_cell"] == 1
    assert "blast" not in res.agreement.index and res.agreement.to_numpy().sum() == 6


def test_only_maps_that_ask_for_abstentions_take_the_external_path():
    from zoo.evaluate.external import ExternalMap

    assert not ExternalMap.wants({"direction": "model_to_dataset", "map": {"band_neutrophil": "neutrophil"}})
    assert not ExternalMap.wants({"band_neutrophil": "neutrophil"})
    assert ExternalMap.wants({"direction": "model_to_dataset", "map": {"plasma_cell": None}})
    assert ExternalMap.wants({"map": {}, "abstain": ["artefact"]})


def test_a_model_class_without_meaning_is_refused_not_silently_abstained():
    from zoo.evaluate.external import ExternalMap, external_agreement

    emap = ExternalMap.load({"direction": "model_to_dataset", "map": {}})
    with pytest.raises(ValueError, match=r"model classes \['myelocyte'\] are neither"):
        external_agreement(["neutrophil"], ["neutrophil"], ["neutrophil", "myelocyte"], emap)
    with pytest.raises(ValueError, match="unknown keys"):
        ExternalMap.load({"direction": "model_to_dataset", "mapp": {}})


def test_shipped_class_maps_fit_the_models_and_datasets_they_name():
    from pathlib import Path

    from zoo.evaluate.external import ExternalMap

    pbc10 = ["promyelocyte", "myelocyte", "metamyelocyte", "band_neutrophil", "segmented_neutrophil",
             "basophil", "eosinophil", "erythroblast", "lymphocyte", "monocyte"]
    root = Path(__file__).resolve().parents[1] / "maps"
    ont = load_ontology()
    zheng = ExternalMap.load(root / "pbc_to_zheng.yaml")
    zheng.check(pbc10, ["neutrophil", "lymphocyte", "monocyte", "eosinophil", "basophil"])
    matek = ExternalMap.load(root / "pbc_to_matek.yaml")
    matek.check(pbc10, ["blast", "erythroblast", "eosinophil", "lymphocyte", "metamyelocyte", "monocyte",
                        "myelocyte", "band_neutrophil", "segmented_neutrophil", "not_identifiable",
                        "proerythroblast", "plasma_cell", "promyelocyte", "artefact"])
    for emap in (zheng, matek):
        for target in list(emap.mapping.values()) + list(emap.ignore):
            assert target is None or target in ont, target


# --- the model kind ---------------------------------------------------------------------------
def test_classifier_model_round_trips_and_explains(tmp_path):
    from zoo.models import load_zoo_model
    from zoo.models.classifier import ClassifierModel, class_info, create_classifier

    classes = ["band_neutrophil", "lymphocyte", "erythroblast"]
    torch.manual_seed(0)
    net = create_classifier("sequential_cnn", num_classes=3)
    model = ClassifierModel("classifier", net, classes, img_size=32, info=class_info(classes))
    x = np.random.default_rng(0).integers(0, 255, (5, 40, 40, 3), dtype=np.uint8)
    before = model.predict(x)
    model.save(tmp_path / "m")
    again = load_zoo_model(tmp_path / "m", device="cpu")
    after = again.predict(x, explain="gradcam", return_embedding=True)
    assert list(before.columns) == [c for c, _ in model.output_schema()]
    pd.testing.assert_frame_equal(before, after[before.columns])
    assert np.asarray(after["heatmap"][0]).shape == (32, 32)
    assert len(after["embedding"][0]) == net.num_features
    lineage = dict(zip(classes, ["neutrophil", "lymphoid", "erythroid"]))
    assert (after["lineage"] == after["label"].map(lineage)).all()
    assert np.allclose(after[[f"p_{c}" for c in classes]].sum(1), 1.0)
    empty = again.predict(x[:0])
    assert len(empty) == 0 and list(empty.columns) == list(before.columns)
    with pytest.raises(ValueError, match="unknown explanation method"):
        again.predict(x, explain="lime")


def test_pretrained_takes_a_local_checkpoint_and_replaces_a_foreign_head(tmp_path):
    from safetensors.torch import save_file

    from zoo.models.classifier import create_classifier

    src = create_classifier("sequential_cnn", num_classes=5)
    path = tmp_path / "ckpt.safetensors"
    save_file({k: v.contiguous() for k, v in src.net.state_dict().items()}, str(path))
    dst = create_classifier("sequential_cnn", num_classes=3, pretrained=path)
    assert torch.equal(dst.net.stages[0][0].weight, src.net.stages[0][0].weight)
    assert sorted(dst.load_report["new_head"]) == ["fc.bias", "fc.weight"]
    with pytest.raises(FileNotFoundError, match="local file"):
        create_classifier("sequential_cnn", num_classes=3, pretrained=tmp_path / "missing.safetensors")
    with pytest.raises(ValueError, match="sequential_cnn"):
        create_classifier("resnxt50", num_classes=3)


def test_confusion_plot_puts_class_sizes_on_a_log_bar():
    from zoo.evaluate.plots import plot_confusion_matrix

    fig = plot_confusion_matrix([[900, 10], [1, 9]], ["a", "b"], log_counts=True)
    assert fig.axes[-1].get_xscale() == "log"
    assert plot_confusion_matrix([[9, 1], [1, 9]], ["a", "b"]).axes[-1].get_xscale() == "linear"


# --- external validation through `evaluate` ---------------------------------------------------
@pytest.mark.slow
def test_evaluate_counts_abstentions_and_coverage(tmp_path, monkeypatch):
    """A logged classifier whose classes include ``artefact``, evaluated on a dataset with a class
    it cannot know (ignored) through a map with abstentions: the bookkeeping of the run."""
    from PIL import Image
    from mlflow.tracking import MlflowClient

    from zoo.data.ingest import ingest
    from zoo.models.classifier import ClassifierModel, class_info, create_classifier
    from zoo.tracking import packaging, runs
    from zoo.tracking.evaluation import evaluate_model

    for var in ("MLFLOW_REGISTRY_URI", "MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_NAME", "MLFLOW_EXPERIMENT_ID"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("ZOO_HOME", str(tmp_path))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    rng = np.random.default_rng(0)
    for label, n in (("lymphocyte", 8), ("neutrophil", 8), ("blast", 4)):
        (tmp_path / "src" / label).mkdir(parents=True)
        for i in range(n):
            Image.fromarray(_cell(40, seed=int(rng.integers(1e6))).permute(1, 2, 0).numpy()).save(
                tmp_path / "src" / label / f"{i}.png")
    ingest(tmp_path / "src", "ext", reader="imagefolder", n_folds=2, near_distance=-1, review_distance=-1,
           workers=1, verbose=False)
    classes = ["segmented_neutrophil", "lymphocyte", "artefact"]
    torch.manual_seed(0)
    net = create_classifier("sequential_cnn", num_classes=3).eval()
    model = ClassifierModel("classifier", net, classes, img_size=32, info=class_info(classes))
    # Make the network abstain on a known number of the 16 scoreable cells: the artefact logit is
    # a projection of the pre-logit features, thresholded in the widest gap between the 5th and
    # the 12th score (robust to the float noise of another memory layout in the pyfunc).
    files = sorted(p for p in (tmp_path / "src").rglob("*.png") if p.parent.name != "blast")
    with torch.no_grad():
        feats = net.features(torch.stack([model.transform(Image.open(f).convert("RGB")) for f in files]))
        direction = feats[0] - feats.mean(0)
        score = (feats @ direction).sort().values
        net.net.fc.weight.zero_()
        net.net.fc.bias.zero_()
        net.net.fc.weight[2] = direction
        gap = 4 + int(torch.argmax(score[5:13] - score[4:12]))
        net.net.fc.bias[2] = -float(score[gap] + score[gap + 1]) / 2
    expected_abstentions = 16 - (gap + 1)
    with runs.start_run("classifier", fold=0, tags={"dataset": "synth"}):
        uri = packaging.log_zoo_model(model).model_uri
    emap = {"direction": "model_to_dataset", "map": {"segmented_neutrophil": "neutrophil"},
            "abstain": ["artefact"], "ignore": ["blast"]}
    m = evaluate_model(uri, "ext", fold="all", class_map=emap, embedding_map="none")
    assert m["n_ignored"] == 4 and m["n_total"] == 20 and m["n_dropped"] == 4 + m["n_abstained"]
    pred = pd.read_csv(MlflowClient().download_artifacts(m["run_id"], "predictions.csv"))
    evaluated = pred[pred["true"] != "blast"]
    assert m["n_abstained"] == int((evaluated["p_artefact"] > evaluated[["p_segmented_neutrophil", "p_lymphocyte"]]
                                    .max(1)).sum())
    assert m["n_abstained"] == expected_abstentions
    assert m["n_scored"] == m["n_images"] == 16 - m["n_abstained"]
    assert m["coverage"] == pytest.approx(m["n_scored"] / 16)
    arts = {a.path for a in MlflowClient().list_artifacts(m["run_id"], "plots")}
    assert "plots/agreement.png" in arts
