"""CellDataset (cached / decoded per item, masks), transforms and make_loaders."""

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from torchvision import tv_tensors

from zoo.data.datasets import CellDataset, make_loaders
from zoo.data.ingest import ingest
from zoo.data.transforms import IMAGENET_MEAN, IMAGENET_STD, denormalize, eval_transform, train_transform

torch.set_num_threads(1)

RED, GREEN, BLUE = (220, 30, 30), (30, 200, 30), (30, 30, 220)


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("ZOO_DATA_DIR", str(tmp_path / "zoo_data"))
    monkeypatch.setenv("ZOO_HOME", str(tmp_path))


def _cell(path, mask_path, seed, size=40):
    """Red background (mask 0), green cytoplasm disc (128), blue nucleus (255) off-centre so that
    rotations and flips move it."""
    rng = np.random.RandomState(seed)
    yy, xx = np.mgrid[:size, :size]
    cy, cx = size / 2 + rng.randint(-3, 4), size / 2 + rng.randint(-3, 4)
    r = size * (0.3 + 0.05 * rng.rand())
    cyto = (yy - cy) ** 2 + (xx - cx) ** 2 < r**2
    nuc = (yy - cy + r / 3) ** 2 + (xx - cx - r / 3) ** 2 < (r / 2.5) ** 2
    img = np.empty((size, size, 3), np.uint8)
    img[:] = RED
    img[cyto] = GREEN
    img[nuc] = BLUE
    mask = np.zeros((size, size), np.uint8)
    mask[cyto] = 128
    mask[nuc] = 255
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img).save(path)
    Image.fromarray(mask, "L").save(mask_path)


@pytest.fixture
def cells(tmp_path):
    root = tmp_path / "cells"
    rows = []
    labels = ["myelocyte", "metamyelocyte", "band_neutrophil", "blast"]
    for i in range(48):
        lab = labels[i % 4]
        _cell(root / "img" / f"{i:03d}.png", root / "img" / f"{i:03d}_mask.png", seed=i)
        rows.append({"image": f"img/{i:03d}.png", "source_label": lab, "group": f"s{(i // 4) % 8}",
                     "mask": f"img/{i:03d}_mask.png", "maturity": None})
    pd.DataFrame(rows).to_csv(root / "cells.csv", index=False)
    return root


@pytest.fixture
def prepared(cells):
    return ingest(cells, "cells", reader="synth", n_folds=4, seed=0, verbose=False, near_distance=-1)


def test_cache_and_no_cache_give_identical_eval_tensors(prepared):
    df = prepared.manifest.iloc[:6]
    kw = dict(root=prepared.root, classes=prepared.classes, img_size=24, train=False, prepared_dir=prepared.path)
    cached = CellDataset(df, cache=True, **kw)
    lazy = CellDataset(df, cache=False, **kw)
    assert cached.cached and not lazy.cached
    for i in range(len(df)):
        (a, ya), (b, yb) = cached[i], lazy[i]
        assert a.shape == (3, 24, 24) and a.dtype == torch.float32
        assert torch.equal(a, b) and ya == yb == prepared.classes.index(df["label"].iloc[i])


def test_masks_travel_with_geometric_transforms(prepared):
    df = prepared.manifest.iloc[:8]
    torch.manual_seed(0)
    aug = dict(brightness=0, contrast=0, saturation=0, hue=0)
    for cache in (True, False):
        ds = CellDataset(df, prepared.root, prepared.classes, 32, train=True, cache=cache, return_mask=True,
                         prepared_dir=prepared.path, augment=aug)
        for i in range(len(ds)):
            img, mask, y = ds[i]
            assert img.shape == (3, 32, 32) and mask.shape == (1, 32, 32) and mask.dtype == torch.uint8
            assert set(mask.unique().tolist()) <= {0, 128, 255}
            rgb = denormalize(img)
            nucleus, background = mask[0] == 255, mask[0] == 0
            assert nucleus.sum() > 5
            # where the mask says nucleus the image is blue, where it says background it is red
            assert (rgb[2][nucleus] > rgb[0][nucleus]).float().mean() > 0.9
            assert (rgb[0][background] > rgb[2][background]).float().mean() > 0.9


def test_augmentation_changes_images_but_eval_is_deterministic(prepared):
    df = prepared.manifest.iloc[:1]
    train = CellDataset(df, prepared.root, prepared.classes, 32, train=True, prepared_dir=prepared.path)
    evals = CellDataset(df, prepared.root, prepared.classes, 32, train=False, prepared_dir=prepared.path)
    torch.manual_seed(1)
    outs = [train[0][0] for _ in range(4)]
    assert any(not torch.equal(outs[0], o) for o in outs[1:])
    assert torch.equal(evals[0][0], evals[0][0])


def test_transform_contracts():
    pil = Image.fromarray(np.random.RandomState(0).randint(0, 256, (50, 70, 3), dtype=np.uint8))
    x = eval_transform(28)(pil)
    assert x.shape == (3, 28, 28) and x.dtype == torch.float32
    white = eval_transform(8)(Image.new("RGB", (10, 10), (255, 255, 255)))
    expected = (1 - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)
    assert torch.allclose(white[:, 0, 0], expected, atol=1e-5)
    assert train_transform(28)(pil).shape == (3, 28, 28)
    with pytest.raises(TypeError, match="unknown augmentation"):
        train_transform(28, rotation=10)
    with pytest.raises(ValueError, match="stain"):
        train_transform(28, stain="reinhard")


def test_stain_hook_touches_images_not_masks():
    calls = []

    def invert(t):
        calls.append(t.dtype)
        return 255 - t

    t = train_transform(16, stain=invert, stain_p=1.0, rotate=0, hflip=0, vflip=0, translate=0, shear=0,
                        scale=None, brightness=0, contrast=0, saturation=0, hue=0)
    img = tv_tensors.Image(torch.zeros((3, 16, 16), dtype=torch.uint8))
    mask = tv_tensors.Mask(torch.full((1, 16, 16), 128, dtype=torch.uint8))
    out, out_mask = t(img, mask)
    assert calls == [torch.uint8]
    assert torch.allclose(denormalize(out), torch.ones_like(out), atol=1e-5)  # 0 -> 255
    assert (out_mask == 128).all()


def test_macenko_stain_jitter_runs_and_keeps_shape():
    from zoo.data.stain import MacenkoStainJitter

    rng = np.random.RandomState(0)
    img = np.full((32, 32, 3), 235, np.uint8)
    img[8:24, 8:24] = (120, 60, 160) + rng.randint(-20, 20, (16, 16, 3))
    t = torch.from_numpy(img).permute(2, 0, 1).contiguous()
    torch.manual_seed(0)
    out = MacenkoStainJitter()(t)
    assert out.shape == t.shape and out.dtype == torch.uint8
    flat = torch.full((3, 32, 32), 240, dtype=torch.uint8)  # nothing stained: returned unchanged
    assert torch.equal(MacenkoStainJitter()(flat), flat)


def test_make_loaders_splits_limit_and_samplers(prepared):
    loaders = make_loaders(prepared, fold=1, img_size=24, batch_size=8, num_workers=0, seed=0)
    assert set(loaders) == {"train", "val", "test"}
    sizes = {k: len(v.dataset) for k, v in loaders.items()}
    assert sum(sizes.values()) == len(prepared.manifest)
    assert all(v.dataset.classes == prepared.classes for v in loaders.values())
    x, y = next(iter(loaders["train"]))
    assert x.shape == (8, 3, 24, 24) and y.dtype == torch.long
    small = make_loaders("cells", fold=0, img_size=24, batch_size=4, num_workers=0, limit=24, seed=0)
    assert sum(len(v.dataset) for v in small.values()) == 24
    per_class = make_loaders(prepared, 0, 24, batch_size=8, num_workers=0, sampler="m_per_class", m_per_class=2)
    _, yb = next(iter(per_class["train"]))
    assert (torch.bincount(yb, minlength=4) == 2).all()
    balanced = make_loaders(prepared, 0, 24, batch_size=8, num_workers=0, sampler="balanced")
    assert len(next(iter(balanced["train"]))[1]) == 8
    with pytest.raises(ValueError, match="multiple of m"):
        make_loaders(prepared, 0, 24, batch_size=6, num_workers=0, sampler="m_per_class", m_per_class=4)
    with pytest.raises(ValueError, match="sampler must be"):
        make_loaders(prepared, 0, 24, batch_size=8, num_workers=0, sampler="nope")
    with pytest.raises(ValueError, match="out of range"):
        make_loaders(prepared, 4, 24, batch_size=8, num_workers=0)


def test_make_loaders_with_worker_and_masks(prepared):
    loaders = make_loaders(prepared, 0, 16, batch_size=4, num_workers=1, limit=16, return_mask=True)
    x, m, y = next(iter(loaders["val"]))
    assert x.shape == (4, 3, 16, 16) and m.shape == (4, 1, 16, 16) and len(y) == 4


def test_unknown_label_and_missing_masks_raise(prepared):
    df = prepared.manifest.iloc[:2].copy()
    with pytest.raises(ValueError, match="not among classes"):
        CellDataset(df, prepared.root, ["blast"], 16, train=False, cache=False, prepared_dir=prepared.path)
    df["mask"] = None
    with pytest.raises(ValueError, match="no row of this dataset has a mask"):
        CellDataset(df, prepared.root, prepared.classes, 16, train=False, return_mask=True, prepared_dir=prepared.path)


def test_random_affine_reflect_identity_and_no_constant_corners():
    from zoo.data.transforms import RandomAffineReflect

    img = tv_tensors.Image(torch.randint(0, 255, (3, 20, 20), dtype=torch.uint8))
    mask = tv_tensors.Mask(torch.randint(0, 3, (1, 20, 20), dtype=torch.uint8) * 127)
    same_img, same_mask = RandomAffineReflect(degrees=0)(img, mask)
    assert torch.equal(same_img, img) and torch.equal(same_mask, mask)
    assert isinstance(same_mask, tv_tensors.Mask) and same_img.dtype == torch.uint8
    # a 45 degree turn: the corners hold mirrored texture, where torchvision's rotate leaves a
    # constant fill
    torch.manual_seed(0)
    tex = tv_tensors.Image(torch.randint(0, 255, (3, 32, 32), dtype=torch.uint8))
    c = 0.5 ** 0.5
    turned = RandomAffineReflect().transform(tex, {"theta": torch.tensor([[c, c, 0.0], [-c, c, 0.0]])})
    assert turned[:, :3, :3].float().std() > 20
    from torchvision.transforms.v2 import functional as TF

    assert TF.rotate(tex, 45)[:, :3, :3].float().std() == 0


def test_stratified_subsample_by_a_single_column():
    """`by=("label",)` must stratify by label alone (a one-item key list once returned nothing)."""
    import pandas as pd

    from zoo.data.datasets import stratified_subsample

    df = pd.DataFrame({"label": ["a"] * 60 + ["b"] * 30 + ["c"] * 10, "fold": [0, 1] * 50})
    out = stratified_subsample(df, 20, seed=0, by=("label",))
    assert len(out) == 20
    assert out["label"].value_counts().to_dict() == {"a": 12, "b": 6, "c": 2}
