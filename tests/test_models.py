"""The encoder: shapes, config round trip, local checkpoints, offline hub weights failing fast."""

from __future__ import annotations

import logging
import time

import pytest
import timm
import torch
from safetensors.torch import save_file

from zoo.models import Encoder, PretrainedWeightsError, create_encoder

TINY = "test_resnet"  # timm's test model: a few hundred k parameters


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def test_shapes_and_head():
    enc = create_encoder(TINY, embedding_dim=32, dropout=0.05)
    out = enc(torch.randn(3, 3, 32, 32))
    assert out.shape == (3, 32) and enc.embedding_dim == 32
    assert enc.features(torch.randn(2, 3, 32, 32)).shape == (2, enc.num_features)
    assert isinstance(enc.head[0], torch.nn.Dropout) and enc.head[0].p == 0.05
    assert enc.head[1].in_features == enc.num_features and enc.head[1].out_features == 32


def test_default_is_resnet18_256d_random_init_with_a_clear_message(caplog):
    with caplog.at_level(logging.INFO, logger="zoo.models.encoder"):
        enc = create_encoder()
    assert enc.config["backbone"] == "resnet18" and enc.embedding_dim == 256 and enc.dropout_p == 0.05
    assert "random init; pass pretrained=/path/to/checkpoint" in caplog.text


def test_channels_last_memory_format():
    enc = create_encoder(TINY, embedding_dim=8)
    conv = next(m for m in enc.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    plain = create_encoder(TINY, embedding_dim=8, channels_last=False)
    plain.load_state_dict(enc.state_dict())
    enc.eval(), plain.eval()
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(enc(x), plain(x), rtol=1e-4, atol=1e-5)


def test_config_round_trip_rebuilds_the_same_network():
    enc = create_encoder(TINY, embedding_dim=16, dropout=0.1, img_size=32).eval()
    clone = Encoder.from_config(enc.config)
    assert clone.config == enc.config
    clone.load_state_dict(enc.state_dict())
    clone.eval()
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(clone(x), enc(x))
    with pytest.raises(ValueError, match="unknown encoder config keys"):
        Encoder.from_config({**enc.config, "colour": "red"})


def test_unknown_backbone_names_similar_ones():
    with pytest.raises(ValueError, match="resnet18"):
        create_encoder("resnet18x")


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_pretrained_local_checkpoint_loads_backbone_weights(tmp_path, suffix):
    source = timm.create_model(TINY, num_classes=1000)  # with a classifier, as a hub checkpoint has
    path = tmp_path / f"weights{suffix}"
    if suffix == ".pth":
        torch.save({"state_dict": source.state_dict()}, path)  # nested, as training scripts save
    else:
        save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(path))
    enc = create_encoder(TINY, embedding_dim=8, pretrained=str(path))
    for name, tensor in source.state_dict().items():
        if not name.startswith("fc."):
            torch.testing.assert_close(enc.backbone.state_dict()[name], tensor)
    assert enc.load_report["missing"] == [] and enc.load_report["unexpected"] == []
    assert sorted(enc.load_report["ignored"]) == ["fc.bias", "fc.weight"]


def test_pretrained_timm_overlay_dict_and_whole_encoder_checkpoint(tmp_path):
    trained = create_encoder(TINY, embedding_dim=8)
    path = tmp_path / "encoder.pth"
    torch.save(trained.state_dict(), path)
    enc = create_encoder(TINY, embedding_dim=8, pretrained={"file": str(path)})
    for name, tensor in trained.state_dict().items():  # head included
        torch.testing.assert_close(enc.state_dict()[name], tensor)


def test_partial_checkpoint_reports_missing_keys(tmp_path, caplog):
    source = timm.create_model(TINY, num_classes=0).state_dict()
    dropped = sorted(source)[0]
    del source[dropped]
    path = tmp_path / "partial.pth"
    torch.save(source, path)
    with caplog.at_level(logging.WARNING, logger="zoo.models.encoder"):
        enc = create_encoder(TINY, embedding_dim=8, pretrained=path)
    assert enc.load_report["missing"] == [dropped]
    assert "missing 1" in caplog.text


def test_checkpoint_of_another_architecture_is_refused(tmp_path):
    path = tmp_path / "r10.pth"
    torch.save(timm.create_model("resnet10t", num_classes=0).state_dict(), path)
    with pytest.raises(PretrainedWeightsError, match="does not fit backbone"):
        create_encoder(TINY, embedding_dim=8, pretrained=str(path))


def test_missing_checkpoint_file_says_so(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        create_encoder(TINY, pretrained=str(tmp_path / "nope.safetensors"))


@pytest.mark.parametrize("pretrained", [True, "resnet18.a1_in1k", "a1_in1k"])
def test_hub_weights_offline_fail_fast_with_a_clear_message(pretrained):
    start = time.perf_counter()
    with pytest.raises(PretrainedWeightsError) as err:
        create_encoder("resnet18", pretrained=pretrained)
    assert time.perf_counter() - start < 5.0
    message = str(err.value)
    assert "not reachable" in message and "pretrained='/path/to/checkpoint" in message
