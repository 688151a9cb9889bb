"""Feature sources and layers: timm networks, saved zoo models, forward hooks; the disk cache."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from zoo.reference import FeatureCache, FeatureExtractor, resolve_source


def images(n=5, size=24, seed=0):
    return list(np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8))


@pytest.mark.slow
def test_timm_source_is_seeded_random_init_and_layers_have_the_right_shapes():
    a = resolve_source("timm:test_resnet", device="cpu", img_size=32, seed=3)
    b = resolve_source("timm:test_resnet", device="cpu", img_size=32, seed=3)
    assert a.key == b.key == "timm:test_resnet:seed3"
    for x, y in zip(a.module.state_dict().values(), b.module.state_dict().values()):
        assert torch.equal(x, y)
    imgs = images()
    pre = FeatureExtractor(a.module, "pre_logits", img_size=32, device="cpu", progress=False)(imgs)
    assert pre.shape == (5, a.module.num_features)
    fmap = FeatureExtractor(a.module, "features", img_size=64, device="cpu", progress=False)(imgs)  # 2x2 map
    assert fmap.shape[0] == 5 and fmap.shape[1] > pre.shape[1]            # unpooled, flattened
    ext = FeatureExtractor(a.module, "layer1", img_size=32, device="cpu", progress=False, batch_size=2)
    hooked = ext(imgs)
    assert hooked.shape[0] == 5 and hooked.ndim == 2
    np.testing.assert_allclose(ext(imgs[:2]), hooked[:2], rtol=1e-5, atol=1e-6)   # batching does not matter


def test_unknown_layer_and_source_name_the_fix():
    src = resolve_source("timm:test_resnet", device="cpu")
    with pytest.raises(ValueError, match="unknown layer 'layer9'.*pre_logits"):
        FeatureExtractor(src.module, "layer9", device="cpu")
    with pytest.raises(ValueError, match="unknown timm backbone"):
        resolve_source("timm:resnet_nonexistent")
    with pytest.raises(FileNotFoundError, match="models:/<name>/<version>"):
        resolve_source("/no/such/model")
    with pytest.raises(FileNotFoundError, match="never downloaded"):
        resolve_source("none", pretrained="resnet18.a1_in1k")


def test_saved_zoo_classifier_is_a_source(tmp_path):
    from zoo.models.classifier import ClassifierModel, create_classifier

    net = create_classifier("sequential_cnn", num_classes=2)
    ClassifierModel("classifier", net, ["a", "b"], img_size=32).save(tmp_path / "clf")
    src = resolve_source(str(tmp_path / "clf"), device="cpu")
    assert src.key.startswith("dir:") and src.img_size == 32
    feats = FeatureExtractor(src.module, "pre_logits", img_size=src.img_size, device="cpu", progress=False)(images(3))
    assert feats.shape == (3, net.num_features)
    logits = FeatureExtractor(src.module, "output", img_size=32, device="cpu", progress=False)(images(3))
    assert logits.shape == (3, 2)


def test_cache_reads_back_and_keys_by_model_layer_and_rows(tmp_path):
    cache = FeatureCache(tmp_path)
    calls = []

    def compute():
        calls.append(1)
        return np.arange(6, dtype=np.float32).reshape(3, 2)

    key = FeatureCache.key("timm:x:seed0", "pre_logits", 32, "digest", ["a", "b", "c"])
    first = cache.get_or_compute(key, ["a", "b", "c"], compute)
    again = cache.get_or_compute(key, ["a", "b", "c"], compute)
    np.testing.assert_array_equal(first, again)
    assert len(calls) == 1
    assert key != FeatureCache.key("timm:x:seed0", "features", 32, "digest", ["a", "b", "c"])
    assert key != FeatureCache.key("models:/m/2", "pre_logits", 32, "digest", ["a", "b", "c"])
    assert key != FeatureCache.key("timm:x:seed0", "pre_logits", 32, "other", ["a", "b", "c"])
    assert key != FeatureCache.key("timm:x:seed0", "pre_logits", 32, "digest", ["a", "b"])
