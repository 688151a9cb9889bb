"""The ``reference`` model kind: predict columns, near-duplicates excluded, data-only round trip."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from zoo.models import load_zoo_model
from zoo.models.reference import ReferenceModel
from zoo.reference import ReferenceBank, create_reducer, image_ahash, resolve_source
from zoo.reference.features import FeatureExtractor
from zoo.som import BatchSOM


def cell_images(n_per_class=8, size=24, seed=0):
    """Two 'classes': a dark disc on light background vs. a light disc on dark background."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    imgs, labels = [], []
    for k, (fg, bg) in enumerate([(40, 220), (220, 40)]):
        for _ in range(n_per_class):
            r = rng.uniform(5, 9)
            cy, cx = rng.uniform(9, 15, 2)
            disc = (yy - cy) ** 2 + (xx - cx) ** 2 < r * r
            img = np.where(disc[..., None], fg, bg) + rng.normal(0, 12, (size, size, 3))
            imgs.append(np.clip(img, 0, 255).astype(np.uint8))
            labels.append(["lymphocyte", "neutrophil"][k])
    return np.stack(imgs), labels


@pytest.fixture(scope="module")
def model():
    imgs, labels = cell_images()
    src = resolve_source("timm:test_resnet", device="cpu", img_size=32)
    feats = FeatureExtractor(src.module, "pre_logits", img_size=32, device="cpu", progress=False)(list(imgs))
    red = create_reducer("pca", latent=6).fit(feats)
    vec = red.transform(feats)
    ids = [f"bank/{i}.png" for i in range(len(imgs))]
    bank = ReferenceBank.build(vec, labels, ids, ahash=[image_ahash(i) for i in imgs],
                               som=BatchSOM(3, 3, epochs=4, device="cpu").fit(vec))
    return ReferenceModel("reference", src.module, "pre_logits", red, bank, img_size=32, device="cpu"), imgs, labels


def test_predict_columns_and_vote(model):
    m, imgs, labels = model
    out = m.predict(imgs[[1, 12]])
    assert list(out.columns) == [c for c, _ in m.output_schema()]
    refs = [json.loads(r) for r in out["references"]]
    assert all(len(r) == 8 for r in refs)
    ref_labels = [json.loads(r) for r in out["reference_labels"]]
    assert out["label"].tolist() == [max(set(r), key=r.count) for r in ref_labels]
    assert ((out["confidence"] > 0) & (out["confidence"] <= 1)).all()
    d = json.loads(out["distances"][0])
    assert d == sorted(d)
    assert abs(sum(json.loads(out["label_distribution"][0]).values()) - 1.0) < 1e-9


def test_query_never_returns_itself_or_near_duplicates(model):
    m, imgs, _ = model
    out = m.predict(imgs[[3]], k=15)          # the query is in the bank (bank/3.png)
    assert "bank/3.png" not in json.loads(out["references"][0])
    assert len(json.loads(out["references"][0])) <= 15
    # a re-capture (brighter, a little noise) with an average hash within 2 bits: excluded as well
    rng = np.random.default_rng(1)
    recapture = np.clip(imgs[3].astype(int) + 6 + rng.integers(-3, 4, imgs[3].shape), 0, 255).astype(np.uint8)
    bits = bin(int(image_ahash(recapture), 16) ^ int(image_ahash(imgs[3]), 16)).count("1")
    assert bits <= 2
    assert "bank/3.png" not in json.loads(m.predict(recapture[None])["references"][0])
    # while the same query without the hash rule would get it back first (it is the nearest)
    vec = m.embed(recapture[None])
    assert m.bank.ids[m.bank.query(vec, k=1).indices[0, 0]] == "bank/3.png"


def test_som_method_and_empty_input(model):
    m, imgs, _ = model
    assert len(json.loads(m.predict(imgs[:1], method="som")["references"][0])) == 8
    empty = m.predict(pd.DataFrame({"image": []}))
    assert empty.empty and list(empty.columns) == [c for c, _ in m.output_schema()]
    with pytest.raises(ValueError, match="unknown predict parameter"):
        m.predict(imgs[:1], neighbours=3)


def test_roundtrip_is_data_only(model, tmp_path):
    m, imgs, _ = model
    m.save(tmp_path / "ref")
    suffixes = {p.suffix for p in (tmp_path / "ref").rglob("*") if p.is_file()}
    assert suffixes <= {".json", ".safetensors", ".npz"}
    back = load_zoo_model(tmp_path / "ref", device="cpu")
    assert isinstance(back, ReferenceModel) and back.classes == ["lymphocyte", "neutrophil"]
    for method in ("mse", "som"):
        a, b = back.predict(imgs[:3], method=method), m.predict(imgs[:3], method=method)
        pd.testing.assert_frame_equal(a.drop(columns="distances"), b.drop(columns="distances"))
        np.testing.assert_allclose([json.loads(x) for x in a["distances"]], [json.loads(x) for x in b["distances"]],
                                   rtol=1e-3, atol=1e-5)
