"""Every reader on small layouts written here, a user-registered reader, unknown labels."""

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from zoo.data.ingest import ingest
from zoo.data.readers import READERS, check_reader_output
from zoo.knowledge import UnknownLabelError


@pytest.fixture(autouse=True)
def _isolated_data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("ZOO_DATA_DIR", str(tmp_path / "zoo_data"))
    monkeypatch.setenv("ZOO_HOME", str(tmp_path))


def _img(path, seed, size=(24, 24), fmt=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.random.RandomState(seed).randint(0, 256, (size[1] // 4, size[0] // 4, 3), dtype=np.uint8)
    Image.fromarray(arr).resize(size, Image.Resampling.NEAREST).save(path, format=fmt)
    return path


def test_registry_lists_builtin_readers():
    assert {"imagefolder", "matek", "pbc", "zheng", "synth"} <= set(READERS.names())


def test_imagefolder_recursive_top_folder_is_class(tmp_path):
    root = tmp_path / "ds"
    _img(root / "myelocyte" / "a.png", 1)
    _img(root / "myelocyte" / "sub" / "deeper" / "b.png", 2)
    _img(root / "blast" / "c.jpg", 3)
    _img(root / "loose.png", 4)
    (root / ".hidden_dir").mkdir()
    _img(root / ".hidden_dir" / "x.png", 5)
    df = READERS.get("imagefolder")(root)
    got = {k: (None if pd.isna(v) else v) for k, v in zip(df["image"], df["source_label"])}
    assert got == {"blast/c.jpg": "blast", "loose.png": None, "myelocyte/a.png": "myelocyte",
                   "myelocyte/sub/deeper/b.png": "myelocyte"}
    grouped = READERS.get("imagefolder")(root, group_depth=2)
    assert grouped.set_index("image").loc["myelocyte/sub/deeper/b.png", "group"] == "sub"
    with pytest.raises(TypeError, match="unknown option"):
        READERS.get("imagefolder")(root, colour="red")


def test_matek_nested_layout(tmp_path):
    base = tmp_path / "matek" / "bone_marrow_cell_dataset"
    _img(base / "NGB" / "NGB_00001.jpg", 1)
    _img(base / "ART" / "0001-1000" / "ART_00001.jpg", 2)
    _img(base / "ART" / "0001-1000" / "ART_00002.jpg", 3)
    (tmp_path / "matek" / "abbreviations.csv").write_text("Abbreviation;Meaning\nNGB;Band neutrophil\n")
    df = READERS.get("matek")(tmp_path / "matek")
    assert set(df["image"]) == {"bone_marrow_cell_dataset/NGB/NGB_00001.jpg",
                                "bone_marrow_cell_dataset/ART/0001-1000/ART_00001.jpg",
                                "bone_marrow_cell_dataset/ART/0001-1000/ART_00002.jpg"}
    assert sorted(df["source_label"]) == ["ART", "ART", "NGB"]
    ds = ingest(tmp_path / "matek", "matek", reader="matek", n_folds=2, verbose=False)
    assert sorted(ds.classes) == ["artefact", "band_neutrophil"]
    # the same layout read from inside bone_marrow_cell_dataset/
    inner = READERS.get("matek")(base)
    assert "NGB/NGB_00001.jpg" in set(inner["image"])


def test_pbc_fine_label_from_prefix(tmp_path):
    base = tmp_path / "pbc" / "PBC_dataset_normal_DIB"
    _img(base / "ig" / "PMY_101.jpg", 1)
    _img(base / "ig" / "MY_102.jpg", 2)
    _img(base / "ig" / "MMY_103.jpg", 3)
    _img(base / "neutrophil" / "BNE_104.jpg", 4)
    _img(base / "neutrophil" / "SNE_105.jpg", 5)
    _img(base / "platelet" / "PLATELET_106.jpg", 6)
    _img(base / "platelet" / "noprefix.jpg", 7)
    df = READERS.get("pbc")(tmp_path / "pbc")
    labels = dict(zip(df["image"].str.split("/").str[-1], df["source_label"]))
    assert labels == {"PMY_101.jpg": "PMY", "MY_102.jpg": "MY", "MMY_103.jpg": "MMY", "BNE_104.jpg": "BNE",
                      "SNE_105.jpg": "SNE", "PLATELET_106.jpg": "PLATELET", "noprefix.jpg": "platelet"}
    coarse = READERS.get("pbc")(tmp_path / "pbc", fine=False)
    assert set(coarse["source_label"]) == {"ig", "neutrophil", "platelet"}
    ds = ingest(tmp_path / "pbc", "pbc", reader="pbc", n_folds=2, verbose=False)
    assert ds.classes == ["promyelocyte", "myelocyte", "metamyelocyte", "band_neutrophil",
                          "segmented_neutrophil", "platelet"]
    # maturity from the ontology for staged classes, null for the platelet
    m = ds.manifest.set_index("label")["maturity"]
    assert m["promyelocyte"] == 0.0 and m["segmented_neutrophil"] == 1.0 and np.isnan(m["platelet"]).all()


def _zheng(root, stray=False):
    for n, labels in ((1, [1, 2, 5]), (2, [3, 4])):
        folder = root / f"Dataset {n}"
        for i, _ in enumerate(labels, start=1):
            _img(folder / f"{i:03d}.bmp", 10 * n + i, size=(20, 16), fmt="BMP")
            mask = np.zeros((16, 20), np.uint8)
            mask[4:12, 5:15] = 128
            mask[6:10, 8:12] = 255
            if stray and n == 2 and i == 1:
                mask[0, 0], mask[0, 1], mask[15, 19] = 7, 45, 200
            Image.fromarray(mask, "L").save(folder / f"{i:03d}.png")
        header = "image ID,class label" if n == 1 else "image ID,class"
        rows = "\r\n".join(f"{i},{lab}" for i, lab in enumerate(labels, start=1))
        (root / f"Class Labels of Dataset {n}.csv").write_text(header + "\r\n" + rows + "\r\n")


def test_zheng_labels_masks_groups_and_threshold(tmp_path):
    root = tmp_path / "zheng"
    _zheng(root, stray=True)
    before = {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}
    df = READERS.get("zheng")(root)
    assert list(df["source_label"]) == ["1", "2", "5", "3", "4"]
    assert list(df["group"]) == ["Dataset 1"] * 3 + ["Dataset 2"] * 2
    assert df["mask"].tolist()[0] == "Dataset 1/001.png"
    only2 = READERS.get("zheng")(root, sets=[2])
    assert set(only2["group"]) == {"Dataset 2"}
    ds = ingest(root, "zheng", reader="zheng", n_folds=2, verbose=False)
    m = ds.manifest.set_index("image")
    assert m.loc["Dataset 1/001.bmp", "label"] == "neutrophil"
    assert m.loc["Dataset 2/002.bmp", "label"] == "eosinophil"
    cleaned = m.loc["Dataset 2/001.bmp", "mask"]
    assert cleaned.startswith("@prepared/masks/")
    mask_file = ds.mask_paths(ds.manifest.loc[ds.manifest["image"] == "Dataset 2/001.bmp"])[0]
    assert ds.path in mask_file.parents
    values = np.unique(np.asarray(Image.open(mask_file)))
    assert set(values.tolist()) <= {0, 128, 255}
    assert np.asarray(Image.open(mask_file))[15, 19] == 255  # 200 snaps to the nucleus level
    assert m.loc["Dataset 1/001.bmp", "mask"] == "Dataset 1/001.png"  # clean masks are used in place
    report = ds.report
    assert report["reason"].str.contains("mask grey levels").sum() == 1
    # the source is never modified
    assert {p: p.read_bytes() for p in root.rglob("*") if p.is_file()} == before


def test_synth_reader_reads_cells_csv(tmp_path):
    root = tmp_path / "synth"
    rows = []
    for i, (label, mat) in enumerate([("myelocyte", 0.3), ("band_neutrophil", 0.7), ("blast", 0.0),
                                      ("myelocyte", 0.32)]):
        _img(root / "images" / f"{i}.png", i)
        Image.fromarray(np.full((24, 24), 128, np.uint8), "L").save(root / "images" / f"{i}_mask.png")
        rows.append({"image": f"images/{i}.png", "source_label": label, "group": f"slide{i % 2}",
                     "mask": f"images/{i}_mask.png", "maturity": mat})
    pd.DataFrame(rows).to_csv(root / "cells.csv", index=False)
    df = READERS.get("synth")(root)
    assert list(df.columns) == ["image", "source_label", "group", "mask", "maturity"]
    ds = ingest(root, "synth", reader="synth", n_folds=2, verbose=False)
    m = ds.manifest.set_index("image")
    assert m.loc["images/1.png", "maturity"] == pytest.approx(0.7)  # the generator's true value wins
    assert m.loc["images/0.png", "group"] == "slide0" and m.loc["images/0.png", "mask"] == "images/0_mask.png"
    (root / "cells.csv").unlink()
    with pytest.raises(FileNotFoundError, match="cells.csv"):
        READERS.get("synth")(root)


def test_user_registered_reader_is_one_function(tmp_path):
    root = tmp_path / "mylab"
    _img(root / "x1.png", 1)
    _img(root / "x2.png", 2)
    _img(root / "x3.png", 3)
    (root / "labels.txt").write_text("x1.png stab\nx2.png seg\nx3.png stab\n")

    @READERS.register("test_mylab", dataset="test_mylab")
    def read_mylab(root, **opts):
        lines = [ln.split() for ln in (root / "labels.txt").read_text().splitlines()]
        return pd.DataFrame({"image": [a for a, _ in lines], "source_label": [b for _, b in lines]})

    try:
        ds = ingest(root, "mylab", reader="test_mylab", n_folds=2, verbose=False)
        assert sorted(ds.manifest["label"]) == ["band_neutrophil", "band_neutrophil", "segmented_neutrophil"]
        # labels.txt was never listed by the reader, so it is not in the report either
        assert "labels.txt" not in set(ds.report["image"])
    finally:
        READERS._entries.pop("test_mylab"), READERS._meta.pop("test_mylab")


def test_unknown_labels_stop_with_list_and_label_map_fix(tmp_path):
    root = tmp_path / "ds"
    for i, cls in enumerate(["myelocyte", "weirdcell", "weirdcell", "blob"]):
        _img(root / cls / f"{i}.png", i)
    with pytest.raises(UnknownLabelError) as err:
        ingest(root, "ds", n_folds=2, verbose=False)
    msg = str(err.value)
    assert "'weirdcell' (2 items)" in msg and "'blob'" in msg and "label map" in msg.lower()
    fix = tmp_path / "map.yaml"
    fix.write_text("weirdcell: blast\nblob: lymphocyte\n")
    ds = ingest(root, "ds", n_folds=2, label_map=fix, verbose=False)
    assert sorted(ds.manifest["label"]) == ["blast", "blast", "lymphocyte", "myelocyte"]
    assert ds.manifest.set_index("label").loc["lymphocyte", "source_label"] == "blob"


def test_reader_output_checks():
    with pytest.raises(ValueError, match="source_label"):
        check_reader_output(pd.DataFrame({"image": ["a.png"]}), "r")
    with pytest.raises(ValueError, match="relative"):
        check_reader_output(pd.DataFrame({"image": ["/abs/a.png"], "source_label": ["x"]}), "r")
    with pytest.raises(ValueError, match="twice"):
        check_reader_output(pd.DataFrame({"image": ["a.png", "a.png"], "source_label": ["x", "x"]}), "r")
    with pytest.raises(ValueError, match="maturity"):
        check_reader_output(pd.DataFrame({"image": ["a.png"], "source_label": ["x"], "maturity": [1.5]}), "r")
