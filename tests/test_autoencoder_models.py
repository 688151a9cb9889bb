"""VAE-256 / RAE-1024 networks, contour reconstruction metrics on a toy image, probes, and one
training step of the autoencoder Trainer."""

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from zoo.autoencoder import create_suppression
from zoo.autoencoder.metrics import contour_metrics, summarize_contour
from zoo.autoencoder.probe import cv_macro_f1, probe_macro_f1
from zoo.autoencoder.training import AutoencoderObjective, AutoencoderTrainer, ProbeCallback, ValidationLoss
from zoo.autoencoder.radial import distance_map
from zoo.losses.reconstruction import ReconstructionLoss
from zoo.models import create_encoder
from zoo.models.autoencoder import AUTOENCODERS, Autoencoder, create_autoencoder

torch.set_num_threads(1)


@pytest.mark.parametrize("arch,latent,size", [("vae256", 256, 32), ("rae1024", 1024, 32), ("vae256", 256, 22)])
def test_autoencoder_shapes_range_and_determinism(arch, latent, size):
    torch.manual_seed(0)
    model = create_autoencoder(arch, img_size=size)
    x = torch.randn(2, 3, size, size)
    out = model(x)
    assert out.recon.shape == (2, 3, size, size) and out.mu.shape == (2, latent)
    assert out.recon.min() >= 0 and out.recon.max() <= 1
    assert (out.logvar is not None) == (arch == "vae256")
    model.eval()
    assert torch.equal(model.represent(x), model.represent(x))
    assert torch.equal(model(x).z, model(x).mu)  # eval: the decoder sees the mean
    again = Autoencoder.from_config(model.config)
    again.load_state_dict(model.state_dict())
    assert torch.equal(again.eval().represent(x), model.represent(x))


def test_decoder_is_four_transposed_conv_blocks_with_bilinear_upsampling():
    dec = create_autoencoder("vae256", img_size=64).decoder
    kinds = [type(m).__name__ for m in dec.blocks]
    assert kinds.count("ConvTranspose2d") == 4 and kinds.count("Upsample") == 4 and kinds.count("ReLU") == 3
    assert all(m.mode == "bilinear" for m in dec.blocks if type(m).__name__ == "Upsample")
    assert dec.s0 == 4
    with pytest.raises(KeyError, match="Valid autoencoder architectures: rae1024, vae256"):
        AUTOENCODERS.get("vae512")


def test_backbone_weights_load_into_a_supervised_encoder(tmp_path):
    model = create_autoencoder("vae256", img_size=32)
    path = tmp_path / "backbone.safetensors"
    save_file(model.backbone_state_dict(), str(path))
    enc = create_encoder("resnet18", pretrained=str(path))
    assert torch.equal(enc.backbone.conv1.weight, model.encoder.backbone.conv1.weight)
    assert not enc.load_report["missing"]


def _toy():
    """A grey 32 px image with a disc cell (radius 6) at the centre; the reconstruction equals it
    inside the disc's SSIM window and is noise far outside."""
    torch.manual_seed(0)
    d = distance_map(32, 32)
    image = torch.full((1, 3, 32, 32), 0.5)
    image[:, :, d < 6] = 0.2
    mask = (d < 6).to(torch.uint8)[None, None] * 128
    recon = image.clone()
    far = d > 12
    recon[:, :, far] = torch.rand(1, 3, int(far.sum()))
    return image, recon, mask


def test_contour_metrics_only_count_pixels_inside_the_cell():
    image, recon, mask = _toy()
    m = contour_metrics(image, recon, mask)
    assert m["l1"][0] == pytest.approx(0.0) and m["ssim"][0] == pytest.approx(1.0, abs=1e-4)
    assert float((image - recon).abs().mean()) > 0.1  # the whole image is badly reconstructed
    shifted = recon.clone()
    shifted[:, :, distance_map(32, 32) < 6] += 0.1
    m = contour_metrics(image, shifted, mask)
    assert m["l1"][0] == pytest.approx(0.1, abs=1e-5) and m["ssim"][0] < 0.99
    empty = summarize_contour(image, recon, torch.zeros_like(mask))
    assert empty == {"n_masked": 0.0}
    both = contour_metrics(torch.cat([image, image]), torch.cat([recon, recon]), torch.cat([mask, 0 * mask]))
    assert np.isnan(both["l1"][1]) and both["l1"][0] == pytest.approx(0.0)


def test_probes_separate_clusters_and_not_noise():
    rng = np.random.RandomState(0)
    y = np.repeat(np.arange(3), 40)
    x = rng.randn(120, 16) * 0.2 + np.eye(3, 16)[y] * 8
    assert probe_macro_f1(x[::2], y[::2], x[1::2], y[1::2], kind="mlp", hidden=64) >= 0.95
    assert probe_macro_f1(x[::2], y[::2], x[1::2], y[1::2], kind="linear") == 1.0
    cv = cv_macro_f1(x, y, kind="linear", n_splits=5)
    assert cv["mean"] == 1.0 and cv["folds"] == 5
    noise = cv_macro_f1(rng.randn(120, 16), y, kind="linear")
    assert noise["mean"] < 0.6
    with pytest.raises(ValueError, match="probe kind"):
        probe_macro_f1(x, y, x, y, kind="svm")


def _loader(n=24, size=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    images = (torch.rand(n, 3, size, size, generator=g) - 0.45) / 0.226
    labels = torch.arange(n) % 3
    images[labels == 1, 0] += 1.0  # a class signal the probe can find
    return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(images, labels), batch_size=8)


@pytest.mark.slow  # ~10 s unloaded (2 epochs, two probes per epoch)
@pytest.mark.parametrize("method,kw", [("mask_learned", {"radius_penalty": 1.0}), ("crop", {"crop_size": 172})])
def test_autoencoder_trainer_trains_and_monitors_val_loss(method, kw):
    sup = create_suppression(method, 16, **({"latent_dim": 256} if method == "mask_learned" else {}), **kw)
    model = create_autoencoder("vae256", img_size=sup.input_size)
    objective = AutoencoderObjective(sup, ReconstructionLoss(beta=1.0))
    train, val = _loader(), _loader(seed=1)
    trainer = AutoencoderTrainer(model, objective, train, val, epochs=2, patience=None, svm=False,
                                 monitor="val_loss", mode="min", progress=False, device="cpu",
                                 train_eval_loader=train, callbacks=[ValidationLoss(val), ProbeCallback()])
    if method == "mask_learned":
        assert any(p is sup.head[0].weight for p in trainer.params)  # the head is optimised
    result = trainer.fit()
    assert result.epochs_run == 2 and result.best_epoch in (1, 2)
    row = result.history[-1]
    for key in ("train_loss", "train_loss_l1", "train_loss_kl", "val_loss", "val_macro_f1", "val_linear_macro_f1"):
        assert np.isfinite(row[key]), key
    if method == "mask_learned":
        assert "train_loss_radius" in row and "train_loss_penalty" in row
    emb, labels = trainer.embed(val)
    assert emb.shape == (24, 256) and labels.tolist() == (torch.arange(24) % 3).tolist()


def test_autoencoder_model_kind_saves_data_and_predicts_representations(tmp_path):
    import base64
    import io

    from PIL import Image

    from zoo.models import load_zoo_model
    from zoo.models.autoencoder_model import AutoencoderModel

    torch.manual_seed(0)
    net = create_autoencoder("vae256", img_size=22)
    model = AutoencoderModel("autoencoder", net, img_size=32, view={"crop_px": 22}, config={"method": "crop"})
    folder = model.save(tmp_path / "m")
    assert sorted(p.name for p in folder.iterdir()) == ["autoencoder.safetensors", "backbone.safetensors",
                                                        "zoo_model.json"]
    again = load_zoo_model(folder, device="cpu")
    assert isinstance(again, AutoencoderModel) and again.view == {"crop_px": 22}
    images = np.random.RandomState(0).randint(0, 255, (3, 40, 40, 3)).astype(np.uint8)
    out = again.predict(images)
    assert list(out.columns) == [f"z_{i:03d}" for i in range(256)] == [c for c, _ in again.output_schema()]
    np.testing.assert_allclose(out.to_numpy(), model.predict(images).to_numpy(), rtol=1e-5, atol=1e-6)
    rec = again.predict(images[:1], return_reconstruction=True)["reconstruction"][0]
    assert Image.open(io.BytesIO(base64.b64decode(rec))).size == (22, 22)
    empty = again.predict(np.zeros((0, 32, 32, 3), np.uint8))
    assert len(empty) == 0 and list(empty.columns) == list(out.columns)
    with pytest.raises(ValueError, match="unknown predict parameter"):
        again.predict(images, return_embedding=True)


@pytest.mark.parametrize("method,kw,middle", [("mask_fixed", {"radius": 90}, "loss mask"),
                                              ("noise", {"sigma": 100}, "input + noise"),
                                              ("crop", {"crop_size": 172}, "crop window")])
def test_reconstruction_panel_shows_input_method_and_reconstruction(method, kw, middle):
    from zoo.autoencoder.panels import reconstruction_panel

    sup = create_suppression(method, 32, **kw)
    model = create_autoencoder("vae256", img_size=sup.input_size)
    fig = reconstruction_panel(model, sup, torch.rand(2, 3, 32, 32), title="t")
    axes = fig.axes
    assert len(axes) == 6 and [a.get_title() for a in axes[:3]] == ["input", middle, "reconstruction"]
    assert axes[2].images[0].get_array().shape[:2] == (sup.input_size, sup.input_size)
    if method == "mask_fixed":
        assert len(axes[1].images) == 2  # the mask is overlaid on the image


def test_backbone_of_a_saved_autoencoder_model_is_found_for_reuse(tmp_path):
    import json

    from zoo.autoencoder.reuse import backbone_checkpoint, find_backbone, resolve_pretrained
    from zoo.models.autoencoder_model import AutoencoderModel

    net = create_autoencoder("rae1024", img_size=16)
    folder = AutoencoderModel("autoencoder", net, img_size=16).save(tmp_path / "mlflow_model" / "artifacts" / "zoo")
    path = backbone_checkpoint(str(tmp_path / "mlflow_model"))
    assert path == folder / "backbone.safetensors"
    enc = create_encoder("resnet18", pretrained=str(path))
    assert torch.equal(enc.backbone.layer4[1].conv2.weight, net.encoder.backbone.layer4[1].conv2.weight)
    assert resolve_pretrained("/some/file.safetensors") == "/some/file.safetensors" and resolve_pretrained(None) is None
    meta = json.loads((folder / "zoo_model.json").read_text())
    (folder / "zoo_model.json").write_text(json.dumps({**meta, "kind": "classifier"}))
    with pytest.raises(ValueError, match="kind 'classifier'; only 'autoencoder' models"):
        find_backbone(tmp_path)
