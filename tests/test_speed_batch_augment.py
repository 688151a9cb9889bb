"""Batched augmentation: same geometry as the per-sample transform, per-sample parameters."""

from __future__ import annotations

import math

import pytest
import torch
from torchvision import tv_tensors

from zoo.data.batch_augment import BatchAugment, affine_theta, supports
from zoo.data.transforms import RandomAffineReflect

S = 21  # odd: the centre is a pixel


def marker_image() -> torch.Tensor:
    """Black patch, one white 3x3 marker 6 px right of the centre."""
    img = torch.zeros(1, 3, S, S, dtype=torch.uint8)
    c = S // 2
    img[..., c - 1:c + 2, c + 5:c + 8] = 255
    return img


def brightest(x: torch.Tensor) -> tuple[int, int]:
    """(row, col) of the marker's centre: centroid of the pixels above half the maximum."""
    v = x.float().sum(dim=(0, 1))
    rows, cols = torch.nonzero(v > v.max() / 2, as_tuple=True)
    return round(float(rows.float().mean())), round(float(cols.float().mean()))


def _theta(deg: float, flip_x: bool = False) -> torch.Tensor:
    z = torch.zeros(1)
    return affine_theta(torch.tensor([math.radians(deg)]), z, z, torch.ones(1), z, z,
                        torch.tensor([flip_x]), torch.tensor([False]))


@pytest.mark.parametrize("deg, expected", [(0, (10, 16)), (90, (16, 10)), (180, (10, 4)), (-90, (4, 10))])
def test_rotated_marker_lands_where_expected_and_matches_the_per_sample_warp(deg, expected):
    aug = BatchAugment(brightness=0, contrast=0, saturation=0).train()
    img = marker_image()
    theta = _theta(deg)
    batched = aug(img, theta=theta)
    per_sample = RandomAffineReflect(degrees=180).transform(tv_tensors.Image(img[0]), {"theta": theta[0]})
    # same pixels as the per-sample transform (which works on uint8 and rounds)
    ref = aug.normalize(per_sample.as_subclass(torch.Tensor)[None])
    assert torch.allclose(batched, ref, atol=1.5 / 255 / 0.224)
    # and the marker (6 px right of centre) turned by `deg` in image coordinates (y down)
    assert brightest(batched - batched.min()) == expected


def test_flip_is_folded_into_the_same_warp():
    aug = BatchAugment(brightness=0, contrast=0, saturation=0).train()
    out = aug(marker_image(), theta=_theta(0, flip_x=True))
    assert brightest(out - out.min()) == (10, 4)  # mirrored left-right


def test_parameters_are_drawn_per_sample_and_masks_follow():
    torch.manual_seed(0)
    aug = BatchAugment(rotate=180, hflip=0.5, vflip=0.5, translate=0, shear=0, scale=None).train()
    imgs = marker_image().repeat(8, 1, 1, 1)
    masks = (imgs[:, :1] > 0).to(torch.uint8) * 255
    out, warped = aug(imgs, masks)
    assert out.shape == (8, 3, S, S) and out.dtype == torch.float32 and warped.dtype == torch.uint8
    spots = {brightest(o[None] - o.min()) for o in out}
    assert len(spots) > 1  # not one rotation for the whole batch
    for o, m in zip(out, warped):  # the mask's marker sits on the image's (nearest vs bilinear: ~1 px)
        r, c = brightest(o[None] - o.min())
        mr, mc = torch.nonzero(m[0]).float().mean(0).tolist()
        assert abs(mr - r) < 2 and abs(mc - c) < 2


def test_eval_mode_only_normalises_and_unsupported_options_say_so():
    aug = BatchAugment().eval()
    img = marker_image()
    assert torch.equal(aug(img), aug.normalize(img))
    assert not supports({"hue": 0.1}) and not supports({"stain": "macenko"}) and supports({})
    with pytest.raises(ValueError, match="per-sample"):
        BatchAugment(stain="macenko")
    with pytest.raises(TypeError, match="unknown augmentation"):
        BatchAugment(rotation=10)


def _tiny_cells(tmp_path, n=24, size=32):
    import numpy as np
    import pandas as pd
    from PIL import Image

    rng = np.random.RandomState(0)
    rows = []
    for i in range(n):
        label = ("blast", "lymphocyte", "monocyte")[i % 3]
        img = rng.randint(0, 60, (size, size, 3)).astype(np.uint8)
        img[..., i % 3] += 150  # the class is the dominant channel
        Image.fromarray(img).save(tmp_path / f"c{i}.png")
        rows.append({"image": f"c{i}.png", "label": label})
    return pd.DataFrame(rows), ["blast", "lymphocyte", "monocyte"]


def test_batched_dataset_trains_through_the_trainer_and_evaluates_like_eval_transform(tmp_path):
    from torch.utils.data import DataLoader

    from zoo.data.datasets import CellDataset, eval_loader
    from zoo.data.transforms import eval_transform
    from zoo.evaluate import SVMStage
    from zoo.losses import create_loss
    from zoo.models import create_encoder
    from zoo.train import Trainer, seed_everything

    torch.set_num_threads(1)
    df, classes = _tiny_cells(tmp_path)
    ds = CellDataset(df, tmp_path, classes, 32, train=True, batch_augment=True)
    assert ds.batched and isinstance(ds.batch_transform, BatchAugment)
    x, y = next(iter(DataLoader(ds, batch_size=8)))
    assert x.dtype == torch.uint8 and x.shape == (8, 3, 32, 32)  # raw: augmented in the training step
    ev = eval_loader(ds, batch_size=24)
    xe, _ = next(iter(ev))
    reference = torch.stack([eval_transform(32)(tv_tensors.Image(ds._images[i])) for i in range(24)])
    assert torch.allclose(xe, reference, atol=1e-5)  # the same pixels as the per-sample eval path
    assert not ds.batch_transform.training or ds.train  # the eval view did not switch training off

    seed_everything(0)
    trainer = Trainer(create_encoder("test_resnet", embedding_dim=8), create_loss("triplet"),
                      DataLoader(ds, batch_size=12, shuffle=True), eval_loader(ds, batch_size=24), epochs=1,
                      patience=None, svm=SVMStage(gammas=("scale",), Cs=(1.0,), cv=2), progress=False)
    seen = []
    original = trainer.compute_loss
    trainer.compute_loss = lambda batch: (seen.append(batch[0].dtype), original(batch))[1]
    result = trainer.fit()
    assert seen and set(seen) == {torch.float32}  # the model saw augmented, normalised floats
    assert isinstance(trainer.train_eval_loader.dataset, CellDataset) and not trainer.train_eval_loader.dataset.train
    assert 0.0 <= result.history[-1]["val_macro_f1"] <= 1.0
