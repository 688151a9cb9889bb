"""The model knows what it was trained on (zoo.tracking.provenance) and says so: loading the pyfunc
prints a one-line notice naming the training dataset; predicting warns when the input looks unlike
the training data; MLflow's type-hint warning is not emitted on load + predict (issue 15)."""

from __future__ import annotations

import runpy
import types
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

torch = pytest.importorskip("torch")
mlflow = pytest.importorskip("mlflow")

from zoo.tracking.provenance import input_warnings, training_notice  # noqa: E402

SIZE = 32
CLASSES = ("blast", "eosinophil", "lymphocyte")
PYFUNC_FILE = Path(__file__).resolve().parents[1] / "zoo" / "tracking" / "pyfunc_model.py"


def _model(dataset: str = "synth", img_size: int = SIZE):
    """A tiny untrained embedding+SVM model recording its training data like the runner does."""
    from zoo.data.transforms import eval_transform
    from zoo.evaluate import SVMStage
    from zoo.models import create_encoder
    from zoo.models.embedding_svm import EmbeddingSVMModel

    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    X = rng.integers(0, 255, (18, img_size, img_size, 3), dtype=np.uint8)
    y = np.array([c for c in CLASSES for _ in range(6)])
    encoder = create_encoder("resnet10t", embedding_dim=16, img_size=img_size).eval()
    tf = eval_transform(img_size)
    with torch.inference_mode():
        emb = encoder(torch.stack([tf(Image.fromarray(a)) for a in X])).numpy()
    training = {"dataset": dataset, "dataset_digest": "0bba66c4" + "0" * 24, "fold": 0, "limit": None, "seed": 0}
    return EmbeddingSVMModel("tml", encoder, SVMStage(cv=2).fit(emb, y), CLASSES, img_size=img_size,
                             device="cpu", training=training)


@pytest.fixture(scope="module")
def saved_synth_model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("model") / "zoo_model"
    _model("synth").save(folder)
    return folder


def _png(path: Path, side: int) -> str:
    Image.fromarray(np.full((side, side, 3), 200, dtype=np.uint8)).save(path)
    return str(path)


def test_notice_names_dataset_digest_fold_and_synthetic():
    text = training_notice(_model("synth"))
    assert "'synth'" in text and "0bba66c4" in text and "fold 0" in text and "3 classes" in text
    assert "synthetic" in text
    real = training_notice(_model("pbc"))
    assert "'pbc'" in real and "synthetic" not in real


def test_warns_for_real_files_given_to_a_synth_model_and_far_sizes(tmp_path):
    synth, pbc = _model("synth"), _model("pbc")
    same = [_png(tmp_path / "a.png", SIZE)]
    big = [_png(tmp_path / "b.png", 360)]
    assert any("synthetic dataset 'synth'" in w for w in input_warnings(synth, same))
    assert input_warnings(pbc, same) == []  # real-cell model, training size: nothing to say
    assert any("360 px" in w and f"{SIZE} px" in w for w in input_warnings(pbc, big))
    arrays = np.zeros((2, SIZE, SIZE, 3), dtype=np.uint8)
    assert input_warnings(synth, arrays) == []  # arrays are not files; size matches


def test_pyfunc_load_prints_notice_and_emits_no_type_hint_warning(saved_synth_model, tmp_path, capsys):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        module = runpy.run_path(str(PYFUNC_FILE))  # defines the PythonModel subclass again
        pyfunc = module["ZooPyfuncModel"]()
        context = types.SimpleNamespace(model_config={"device": "cpu"},
                                        artifacts={"zoo_model": str(saved_synth_model)})
        pyfunc.load_context(context)
        out = pyfunc.predict(None, pd.DataFrame({"image": [_png(tmp_path / "c.png", SIZE)]}))
        batch = pyfunc.predict(None, np.zeros((2, SIZE, SIZE, 3), dtype=np.uint8))  # both inputs work
    assert len(out) == 1 and len(batch) == 2
    hints = [w for w in caught if "type hint" in str(w.message).lower()]
    assert hints == [], [str(w.message) for w in hints]
    err = capsys.readouterr().err
    assert "model trained on dataset 'synth'" in err
    assert "synthetic dataset 'synth'" in err  # a file given to a synth model


def test_pyfunc_bad_row_is_a_400_mlflow_error_and_still_a_value_error(saved_synth_model):
    from mlflow.exceptions import MlflowException

    module = runpy.run_path(str(PYFUNC_FILE))
    pyfunc = module["ZooPyfuncModel"]()
    pyfunc.load_context(types.SimpleNamespace(model_config={"device": "cpu"},
                                              artifacts={"zoo_model": str(saved_synth_model)}))
    with pytest.raises(MlflowException, match="row 0") as info:
        pyfunc.predict(None, pd.DataFrame({"image": ["bm90IGFuIGltYWdl"]}))
    assert isinstance(info.value, ValueError)
    assert info.value.get_http_status_code() == 400
