"""The Family / ZooModel protocol (docs/families.md) without a full training: parameter
declarations and the MLproject, --help and error syntax, no default loss, the runner's splits and
digests, the safe artifact (tampered folders are refused), empty inputs, weights_only
checkpoints — and, with one tiny training, that configurations of a fold start from equal
weights."""

from __future__ import annotations

import json
from pathlib import Path
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import yaml

from zoo.families import FAMILIES
from zoo.families.base import Family
from zoo.families.embedding import EmbeddingFamily
from zoo.families.params import COMMON_PARAMS, Param, param_syntax, resolve_config
from zoo.paths import project_dir


# --------------------------------------------------------------------------------------------
# declarations
# --------------------------------------------------------------------------------------------
def test_mlproject_matches_declarations():
    """Every family entry point of the MLproject takes exactly the declared parameters (common +
    the family's), with the declared defaults, and passes each to the command."""
    spec = yaml.safe_load((project_dir() / "MLproject").read_text())
    missing = [f for f in FAMILIES.names() if f not in spec["entry_points"]]
    assert not missing, f"families without an MLproject entry point: {missing} (zoo train <family> --mlproject)"
    checked = 0
    for family in FAMILIES.names():
        entry = spec["entry_points"][family]
        decls = [*COMMON_PARAMS, *FAMILIES.get(family).declarations()]
        assert set(entry["parameters"]) == {p.name for p in decls}, family
        for p in decls:
            assert str(entry["parameters"][p.name]["default"]) == p.default_text(), (family, p.name)
            assert f"--{p.name} {{{p.name}}}" in entry["command"], (family, p.name)
        checked += 1
    assert checked == len(FAMILIES)


@pytest.mark.parametrize("family", FAMILIES.names())
def test_help_lists_every_declared_parameter(family):
    from zoo.families.cli import family_help

    text = family_help(family)
    for p in (*COMMON_PARAMS, *FAMILIES.get(family).declarations()):
        assert f"--{p.name} " in text and p.help.split(";")[0][:30] in text, p.name


def test_errors_use_the_callers_syntax():
    with pytest.raises(ValueError, match=r"e\.g\. -P epochs=10"):
        resolve_config("tml", {"epochs": "ten"})
    with param_syntax("cli"), pytest.raises(ValueError, match=r"e\.g\. --epochs 10"):
        resolve_config("tml", {"epochs": "ten"})
    out = subprocess.run([sys.executable, str(project_dir() / "entrypoints" / "train.py"), "tml", "--epochs", "ten"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "-P epochs=10" in out.stderr


def test_param_parse_when_and_suggest():
    kappa = Param("kappa", float, 0.2, "smoothing", low=0.0, high=0.999, when={"loss": "inverse_umap"})
    assert kappa.applies({"loss": "inverse_umap"}) and not kappa.applies({"loss": "distance"})
    assert kappa.parse("0.5") == 0.5
    with pytest.raises(ValueError, match="'kappa' must lie in"):
        kappa.parse("1")
    optuna = pytest.importorskip("optuna")
    trial = optuna.trial.FixedTrial({"kappa": 0.3})
    assert kappa.suggest(trial) == 0.3


def test_guided_search_space_samples_kappa_only_for_inverse_umap():
    optuna = pytest.importorskip("optuna")
    fam = FAMILIES.get("guided")(resolve_config("guided", {}, FAMILIES.get("guided").param_names()))
    seen = set()
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(12):
        trial = study.ask()
        raw = fam.search_space(trial)
        seen.add(raw["loss"])
        assert ("kappa" in raw) == (raw["loss"] == "inverse_umap")
        assert 0.0 <= raw.get("kappa", 0.0) < 1.0 and 0.0 < raw["alpha"] < 1.0 and raw["lr"] > 0
        study.tell(trial, 0.0)
    assert seen == {"distance", "inverse_umap"}


def test_a_family_must_say_what_it_trains():
    class NoLoss(EmbeddingFamily):
        def search_space(self, trial):
            return {}

    with pytest.raises(TypeError, match="build_loss"):
        NoLoss(resolve_config("noloss", {}))

    class Bare(Family):
        kind = "embedding_svm"

    with pytest.raises(TypeError, match="fit_fold"):
        Bare(resolve_config("bare", {}))


def test_a_family_cannot_redeclare_a_common_parameter():
    with pytest.raises(ValueError, match="common parameters"):
        type("Clash", (EmbeddingFamily,), {"params": (Param("epochs", int, 3, "again"),)})


# --------------------------------------------------------------------------------------------
# splits and digests
# --------------------------------------------------------------------------------------------
class _Data:
    """A stand-in prepared dataset: a manifest and a 3-fold split."""

    def __init__(self, n_per_class: int = 10):
        labels = [c for c in ("blast", "eosinophil", "lymphocyte") for _ in range(n_per_class)]
        self.manifest = pd.DataFrame({"image": [f"{l}/{i}.png" for i, l in enumerate(labels)], "label": labels,
                                      "fold": [i % 3 for i in range(len(labels))]})

    def split(self, k):
        m = self.manifest
        return {"test": m[m.fold == k], "val": m[m.fold == (k + 1) % 3], "train": m[m.fold == (k + 2) % 3]}


def test_final_split_keeps_a_stratified_validation_slice_and_no_test():
    from zoo.families.runner import fold_split

    parts = fold_split(_Data(), "final", None, 0)
    assert len(parts["test"]) == 0
    assert parts["val"]["label"].value_counts().to_dict() == {"blast": 1, "eosinophil": 1, "lymphocyte": 1}
    assert len(parts["train"]) + len(parts["val"]) == 30
    assert not set(parts["train"]["image"]) & set(parts["val"]["image"])


def test_test_rows_digest_tells_folds_and_limits_apart():
    from zoo.families.runner import fold_split, rows_digest

    data = _Data()
    f0, f1 = fold_split(data, 0, None, 0)["test"], fold_split(data, 1, None, 0)["test"]
    small = fold_split(data, 0, 15, 0)["test"]
    assert rows_digest(f0) == rows_digest(f0.sample(frac=1, random_state=1))  # order does not matter
    assert len({rows_digest(f0), rows_digest(f1), rows_digest(small)}) == 3


# --------------------------------------------------------------------------------------------
# the artifact
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def model():
    import torch

    from zoo.evaluate import SVMStage
    from zoo.models import create_encoder
    from zoo.models.embedding_svm import EmbeddingSVMModel

    torch.manual_seed(0)
    encoder = create_encoder("resnet10t", embedding_dim=8, img_size=32).eval()
    rng = np.random.default_rng(0)
    svm = SVMStage(cv=2, gammas=("scale",), Cs=(1.0,)).fit(rng.normal(size=(30, 8)), np.repeat([0, 1, 2], 10))
    return EmbeddingSVMModel("tml", encoder, svm, ["blast", "eosinophil", "lymphocyte"], img_size=32, device="cpu",
                             training={"dataset": "tiny", "fold": 0})


@pytest.fixture
def saved(model, tmp_path):
    return model.save(tmp_path / "model")


def test_saved_model_is_data_only(saved):
    from zoo.models import load_zoo_model

    names = {p.name for p in saved.iterdir()}
    assert {"zoo_model.json", "encoder.safetensors", "svm.skops", "knowledge"} <= names
    assert not [p for p in saved.rglob("*") if p.suffix in (".pkl", ".joblib", ".pickle")]
    meta = json.loads((saved / "zoo_model.json").read_text())
    assert meta["kind"] == "embedding_svm" and meta["training"]["dataset"] == "tiny"
    assert load_zoo_model(saved, device="cpu").kind == "embedding_svm"


def test_a_dropped_in_pickle_is_refused(saved):
    import pickle

    from zoo.models import UnsafeArtifactError, load_zoo_model

    (saved / "extras.pkl").write_bytes(pickle.dumps({"x": 1}))
    with pytest.raises(UnsafeArtifactError, match=r"only pickle can read: \['extras.pkl'\]"):
        load_zoo_model(saved)


def test_an_svm_replaced_by_a_pickle_is_refused(saved):
    import pickle

    from zoo.models import UnsafeArtifactError, load_zoo_model

    (saved / "svm.skops").write_bytes(pickle.dumps(object()))
    with pytest.raises(UnsafeArtifactError, match="svm.skops"):
        load_zoo_model(saved)


def test_an_unknown_kind_is_refused_listing_the_known(saved):
    from zoo.models import UnsafeArtifactError, load_zoo_model

    meta = json.loads((saved / "zoo_model.json").read_text())
    meta["kind"] = "evil_kind"
    (saved / "zoo_model.json").write_text(json.dumps(meta))
    with pytest.raises(UnsafeArtifactError, match="unknown model kind 'evil_kind'; known kinds: .*embedding_svm"):
        load_zoo_model(saved)


def test_a_module_path_in_the_json_is_refused(saved):
    from zoo.models import UnsafeArtifactError, load_zoo_model

    meta = json.loads((saved / "zoo_model.json").read_text())
    meta["extras"] = {"guided": {"module": "os", "config": {}}}
    (saved / "zoo_model.json").write_text(json.dumps(meta))
    with pytest.raises(UnsafeArtifactError, match=r"names Python code at \['extras.guided.module'\]"):
        load_zoo_model(saved)


def test_an_unknown_extras_name_is_refused(saved):
    from zoo.models import UnsafeArtifactError, load_zoo_model

    meta = json.loads((saved / "zoo_model.json").read_text())
    meta["extras"] = {"somebody_elses": {}}
    (saved / "zoo_model.json").write_text(json.dumps(meta))
    with pytest.raises(UnsafeArtifactError, match="extras 'somebody_elses'"):
        load_zoo_model(saved)


def test_an_untrusted_type_in_the_skops_file_is_refused(tmp_path):
    import skops.io as sio
    from sklearn.neighbors import KNeighborsClassifier

    from zoo.models.safe_io import UntrustedArtifactError, dump_estimator, load_estimator

    path = tmp_path / "svm.skops"
    path.write_bytes(sio.dumps(KNeighborsClassifier().fit([[0.0], [1.0]], [0, 1])))
    with pytest.raises(UntrustedArtifactError, match="KNeighborsClassifier"):
        load_estimator(path)
    with pytest.raises(UntrustedArtifactError, match="KNeighborsClassifier"):
        dump_estimator(KNeighborsClassifier(), tmp_path / "other.skops")


@pytest.mark.parametrize("empty", [np.zeros((0, 32, 32, 3), np.uint8), pd.DataFrame({"image": []}), []])
def test_empty_input_gives_an_empty_frame_of_the_declared_columns(model, empty):
    from zoo.tracking.pyfunc_model import to_images

    out = model.predict(to_images(empty))
    assert len(out) == 0 and list(out.columns) == [c for c, _ in model.output_schema()]
    assert out["confidence"].dtype == np.float64


def test_guide_extras_round_trip_as_arrays(model, tmp_path):
    from zoo.guides import GuideProjector, create_guide
    from zoo.models import load_zoo_model
    from zoo.models.embedding_svm import EmbeddingSVMModel
    from zoo.models.guide_extras import GuideExtras

    classes = ["blast", "eosinophil", "lymphocyte"]
    guide = create_guide("fr_sim_mat", classes=classes, unknown="place")
    rng = np.random.default_rng(1)
    emb = rng.normal(size=(30, 8))
    projector = GuideProjector().fit(emb, [classes[i % 3] for i in range(30)], guide)
    guided = EmbeddingSVMModel("guided", model.encoder, model.svm, classes, img_size=32,
                               extras={"guided": GuideExtras(projector)}, device="cpu")
    folder = guided.save(tmp_path / "guided")
    again = load_zoo_model(folder, device="cpu").extras["guided"]
    assert np.allclose(again.projector.transform(emb), projector.transform(emb), atol=1e-8)
    cols = again.columns(emb, np.zeros((30, 3)))
    assert set(cols) == {c for c, _ in again.output_schema()}


# --------------------------------------------------------------------------------------------
# checkpoints
# --------------------------------------------------------------------------------------------
def test_checkpoints_are_read_with_weights_only(tmp_path):
    import pickle
    import random

    import torch

    from zoo.train import checkpoint as ckpt
    from zoo.train.seeding import get_rng_state

    state = {"rng": get_rng_state(), "history": [{"epoch": 1.0, "val": np.float64(0.5)}], "w": torch.ones(2)}
    ckpt.save_torch(state, tmp_path / "last.pt")
    back = ckpt.load_torch(tmp_path / "last.pt")
    assert np.array_equal(back["rng"]["numpy"][1], state["rng"]["numpy"][1])
    assert back["rng"]["numpy"][1].dtype == state["rng"]["numpy"][1].dtype
    random.setstate(back["rng"]["python"])
    assert back["history"][0]["val"] == 0.5 and torch.equal(back["w"], state["w"])

    class Payload:  # what a malicious checkpoint would carry
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"x": Payload()}, tmp_path / "evil.pt", pickle_protocol=pickle.DEFAULT_PROTOCOL)
    with pytest.raises(ValueError, match="weights_only"):
        ckpt.load_torch(tmp_path / "evil.pt")


# --------------------------------------------------------------------------------------------
# one tiny training per family: equal initial weights
# --------------------------------------------------------------------------------------------
class _Stop(Exception):
    pass


def _capture_initial_weights():
    """A Trainer callback from outside (FoldContext.callbacks): records the weights at fit start
    and stops the run there."""
    from zoo.train import Callback

    class CaptureInitialWeights(Callback):
        digest = None

        def on_fit_start(self, trainer):
            import hashlib

            blob = b"".join(v.detach().cpu().numpy().tobytes() for v in trainer.model.state_dict().values())
            self.digest = hashlib.sha1(blob).hexdigest()
            raise _Stop

    return CaptureInitialWeights()


@pytest.fixture(scope="module")
def tiny_home(tmp_path_factory):
    from tiny_data import tiny_project

    home = tmp_path_factory.mktemp("tiny_home")
    with tiny_project(home):
        yield home


def test_configurations_of_a_fold_start_from_equal_weights(tiny_home):
    """TML and guided (whose preparation draws a guide layout) build their encoders from the same
    reseeded state: a comparison of losses is not a comparison of initialisations."""
    from tiny_data import TINY

    from zoo.families.runner import run_training

    digests = {}
    for family, extra in (("tml", {}), ("guided", {"loss": "inverse_umap"})):
        capture = _capture_initial_weights()
        with pytest.raises(_Stop):
            run_training(family, {**TINY, **FAMILIES.get(family).contract_params, **extra, "register": "false"},
                         progress=False, callbacks=[capture])
        digests[family] = capture.digest
    assert digests["tml"] is not None and digests["tml"] == digests["guided"]


@pytest.mark.parametrize("sampler", ["m_per_class", "random"])
def test_embedding_sampler_parameter_decides_the_training_batches(tiny_home, sampler):
    """sampler=random is one shuffled pass over every training image per epoch; m_per_class is
    pytorch-metric-learning's MPerClassSampler (m images of each class it draws)."""
    import torch
    from pytorch_metric_learning.samplers import MPerClassSampler
    from tiny_data import TINY

    from zoo.families.runner import run_training
    from zoo.train import Callback

    class CaptureLoader(Callback):
        def on_fit_start(self, trainer):
            self.loader = trainer.train_loader
            raise _Stop

    capture = CaptureLoader()
    with pytest.raises(_Stop):
        run_training("tml", {**TINY, **FAMILIES.get("tml").contract_params, "sampler": sampler, "register": "false"},
                     progress=False, callbacks=[capture])
    loader = capture.loader
    order = [int(i) for i in loader.sampler]
    if sampler == "random":
        assert isinstance(loader.sampler, torch.utils.data.RandomSampler)
        assert sorted(order) == list(range(len(loader.dataset)))  # every image once
    else:
        assert isinstance(loader.sampler, MPerClassSampler)
        labels = [int(loader.dataset.targets[i]) for i in order[:8]]  # batch 8: 2 classes x m=4 (3 classes)
        assert sorted(np.bincount(labels, minlength=3).tolist()) == [0, 4, 4]


def test_metric_weight_end_lowers_the_metric_loss_in_a_real_run(tiny_home):
    """metric_weight_end reaches the Trainer through fit_fold: over 2 epochs the weight starts at 1
    and, at half the training, is halfway down its cosine to 0.2; the run logs it per epoch."""
    from tiny_data import TINY

    from zoo.families.runner import run_training
    from zoo.train import Callback

    class Capture(Callback):
        def on_fit_end(self, trainer, result):
            self.weights = [row.get("metric_weight") for row in result.history]

    capture = Capture()
    run_training("tml", {**TINY, **FAMILIES.get("tml").contract_params, "epochs": "2", "patience": "2",
                         "metric_weight_end": "0.2", "register": "false"}, progress=False, callbacks=[capture])
    assert capture.weights == pytest.approx([1.0, 0.6])


def test_budget_last_epoch_reaches_the_trainers_budget_in_a_real_run(tiny_home):
    """budget, budget_last_epoch and budget_schedule reach the Trainer through fit_fold as one
    TimeBudget (what the shortened last epoch and the planned cosine read; tests/test_speed_budget.py
    drives those rules with a fake clock)."""
    from tiny_data import TINY

    from zoo.families.runner import run_training
    from zoo.train import Callback

    class Capture(Callback):
        def on_fit_end(self, trainer, result):
            self.budget = (trainer.budget.seconds, trainer.budget.last_epoch_min, trainer.budget.schedule)

    capture = Capture()
    run_training("tml", {**TINY, **FAMILIES.get("tml").contract_params, "epochs": "1", "patience": "1",
                         "budget": "5", "budget_last_epoch": "0.3", "budget_schedule": "epochs",
                         "register": "false"},
                 progress=False, callbacks=[capture])
    assert capture.budget == (300.0, 0.3, "epochs")


def test_sampler_parameter_rejects_unknown_values():
    cls = FAMILIES.get("tml")
    with pytest.raises(ValueError, match="m_per_class"):
        cls(resolve_config("tml", {"sampler": "balanced"}, cls.param_names()))


def test_svm_input_features_feeds_the_svm_and_the_model_the_backbone_features(tiny_home, tmp_path):
    """svm_input=features: the loss still trains the head's embedding (what the callbacks see), while
    the validation SVM, the registered SVM and the packaged model read the pooled backbone features;
    the saved model says so and predicts from the same features after a reload."""
    import mlflow
    import torch
    from PIL import Image
    from tiny_data import TINY, cells

    from zoo.families.runner import run_training
    from zoo.models import load_zoo_model
    from zoo.train import Callback

    class Capture(Callback):
        def on_fit_end(self, trainer, result):
            self.svm_train = trainer.last_train_embeddings[0].shape[1]
            self.callback_view = trainer.train_embeddings()[0].shape[1]
            self.svm_dims = trainer.best_svm.n_features_in_ if trainer.best_svm is not None else None
            self.num_features = trainer.model.num_features
            self.embedding_dim = trainer.model.embedding_dim

    capture = Capture()
    result = run_training("tml", {**TINY, **FAMILIES.get("tml").contract_params, "svm_input": "features",
                                  "register": "false"}, progress=False, callbacks=[capture])
    assert capture.num_features != capture.embedding_dim  # resnet10t: 512 vs 16, so the check can fail
    assert capture.svm_train == capture.num_features
    assert capture.callback_view == capture.embedding_dim
    fold = result.folds[0]
    folder = Path(mlflow.artifacts.download_artifacts(fold.model_uri, dst_path=str(tmp_path / "m"))) / "artifacts" \
        / "zoo_model"
    assert json.loads((folder / "zoo_model.json").read_text())["represent"] == "features"
    model = load_zoo_model(folder, device="cpu")
    images = cells(["blast", "lymphocyte", "eosinophil"], seed=9)
    out = model.predict(images, return_embedding=True)
    got = np.asarray(out["embedding"].tolist(), dtype=np.float32)
    assert got.shape == (3, capture.num_features) and model.svm.n_features_in_ == capture.num_features
    x = torch.stack([model.transform(Image.fromarray(a)) for a in images])
    with torch.inference_mode():
        want = model.encoder.features(x.contiguous(memory_format=torch.channels_last)).float().numpy()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_svm_input_is_refused_where_a_family_needs_the_embedding():
    """SMR's curves live in the head's embedding space: features are refused with the valid values."""
    smr = FAMILIES.get("smr")
    with pytest.raises(ValueError, match="embedding"):
        smr(resolve_config("smr", {"svm_input": "features"}, smr.param_names()))
    tml = FAMILIES.get("tml")
    assert tml(resolve_config("tml", {"svm_input": "features"}, tml.param_names())).params["svm_input"] == "features"
    assert tml(resolve_config("tml", {}, tml.param_names())).params["svm_input"] == "embedding"


def test_models_saved_before_svm_input_existed_read_the_embedding(model, tmp_path):
    """A zoo_model.json without ``represent`` (older models) loads as the encoder's embedding."""
    from zoo.models import load_zoo_model

    folder = tmp_path / "old"
    model.save(folder)
    meta = json.loads((folder / "zoo_model.json").read_text())
    assert meta.pop("represent") == "embedding"
    (folder / "zoo_model.json").write_text(json.dumps(meta))
    again = load_zoo_model(folder, device="cpu")
    assert again.represent == "embedding"
    images = np.zeros((2, 32, 32, 3), np.uint8)
    np.testing.assert_allclose(again.embed(images), model.embed(images), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("family", ["classifier", "autoencoder"])
def test_a_family_with_a_trainer_takes_budget_precision_and_val_every(tiny_home, family):
    """The classifier and the autoencoder hand the common budget, precision and val_every to their
    Trainer, as the embedding families do: a 3-second budget stops a 1000-epoch run, validations
    fall every 3 epochs and at the last, and bf16 is what trains on a CPU that has it (and is refused
    with the message naming the fix on one that does not: never silently fp32)."""
    from tiny_data import TINY

    from zoo.families.runner import run_training
    from zoo.train import Callback
    from zoo.train.precision import cpu_supports_bf16

    class Capture(Callback):
        def on_fit_end(self, trainer, result):
            self.budget, self.precision, self.result = trainer.budget.seconds, trainer.precision.name, result

    capture = Capture()
    raw = {**TINY, **FAMILIES.get(family).contract_params, "epochs": "1000", "patience": "1000", "budget": "0.05",
           "val_every": "3", "precision": "bf16", "register": "false"}
    if not cpu_supports_bf16():
        with pytest.raises(ValueError, match="precision='bf16' needs a CPU with native bfloat16"):
            run_training(family, raw, progress=False, callbacks=[capture])
        raw["precision"] = "fp32"
    run_training(family, raw, progress=False, callbacks=[capture])
    result = capture.result
    assert capture.budget == 3.0 and capture.precision == raw["precision"]
    assert result.stopped_on_budget and result.epochs_run < 1000
    validated = [int(r["epoch"]) for r in result.history if r["validated"]]
    assert validated == [e for e in range(3, result.epochs_run + 1, 3)] + (
        [result.epochs_run] if result.epochs_run % 3 else [])
    assert all(("val_macro_f1" in r) == bool(r["validated"]) for r in result.history)
