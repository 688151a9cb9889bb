"""The real public datasets in ../shared/data (PBC subset, Zheng sets, Matek sample).

Skipped with a reason when the folder is absent (a user's fresh clone)."""

import time

import numpy as np
import pytest
from PIL import Image

from zoo.data.ingest import ingest
from zoo.data.readers import READERS
from zoo.paths import shared_data_dir

pytestmark = pytest.mark.shared_data

SHARED = shared_data_dir()
needs_shared = pytest.mark.skipif(SHARED is None, reason="../shared/data (real public cell images) not present; "
                                  "set ZOO_SHARED_DATA to run these tests")

# README of ../shared/data/pbc: images per fine label in the subset.
PBC_COUNTS = {"BA": 500, "EO": 500, "ERB": 500, "PMY": 400, "MY": 500, "MMY": 500, "BNE": 500, "SNE": 500,
              "LY": 500, "MO": 500, "PLATELET": 150}


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("ZOO_DATA_DIR", str(tmp_path / "data"))


@needs_shared
def test_pbc_reader_counts_match_readme():
    df = READERS.get("pbc")(SHARED / "pbc")
    assert len(df) == 5050
    assert df["source_label"].value_counts().to_dict() == PBC_COUNTS


@needs_shared
@pytest.mark.slow
def test_pbc_ingest(capsys):
    t0 = time.perf_counter()
    ds = ingest(SHARED / "pbc", "pbc", reader="pbc", seed=0)
    elapsed = time.perf_counter() - t0
    report = ds.report
    dropped = report[report["action"] == "dropped"]
    # before = the README's counts; after = before minus what dedup dropped (no file is unreadable)
    text = (ds.path / "report.txt").read_text()
    assert "5050 files listed" in text
    assert len(ds.manifest) + len(dropped) == 5050
    assert set(dropped["reason"].str.split(" \\(").str[0]) <= {"near-duplicate", "byte-identical duplicate"}
    # the subset was already cleaned of byte-identical groups (README); one recapture remains
    assert dropped["image"].tolist() == ["PBC_dataset_normal_DIB/monocyte/MO_415531.jpg"]
    assert dropped["related"].tolist() == ["PBC_dataset_normal_DIB/monocyte/MO_231316.jpg"]
    assert ds.classes == ["promyelocyte", "myelocyte", "metamyelocyte", "band_neutrophil", "segmented_neutrophil",
                          "erythroblast", "basophil", "eosinophil", "monocyte", "lymphocyte", "platelet"]
    assert ds.manifest["width"].between(359, 366).all()
    counts = ds.manifest.groupby(["label", "fold"]).size().unstack()
    assert (counts.max(axis=1) - counts.min(axis=1) <= 1).all()  # stratified 6 folds
    print(f"\nPBC ingest: {elapsed:.1f} s, dropped {len(dropped)}: {dropped['reason'].tolist()}")
    assert elapsed < 120


@needs_shared
def test_zheng_sets_with_masks():
    root = SHARED / "segmentation_wbc"
    ds = ingest(root, "zheng", reader="zheng", seed=0, verbose=False)
    report = ds.report
    # 112.bmp and 139.bmp of Dataset 1 are the same image: one of them is dropped
    dup = report[report["image"].isin(["Dataset 1/112.bmp", "Dataset 1/139.bmp"]) & (report["action"] == "dropped")]
    assert len(dup) == 1 and dup["related"].iloc[0] in ("Dataset 1/112.bmp", "Dataset 1/139.bmp")
    # ... and 171 is a recapture of 166 (near-duplicate confirmed by pixels); nothing else goes
    gone = report.loc[report["action"] == "dropped", "image"]
    assert sorted(gone) == ["Dataset 1/139.bmp", "Dataset 1/171.bmp"]
    assert len(ds.manifest) == 398 and ds.manifest["mask"].notna().all()
    assert set(ds.manifest["group"]) == {"Dataset 1", "Dataset 2"}
    assert set(ds.classes) == {"neutrophil", "lymphocyte", "monocyte", "eosinophil", "basophil"}
    # the five masks with stray grey levels are thresholded into the prepared folder
    cleaned = ds.manifest[ds.manifest["mask"].str.startswith("@prepared/")]
    assert sorted(cleaned["image"]) == [f"Dataset 2/{n}.bmp" for n in ("034", "035", "047", "050", "076")]
    for path in ds.mask_paths(cleaned):
        assert set(np.unique(np.asarray(Image.open(path))).tolist()) <= {0, 128, 255}
        assert ds.path in path.parents
    assert "groups not used" in ds.info["folds_method"]  # 2 sets < 6 folds


@needs_shared
def test_matek_sample_nested_layout():
    ds = ingest(SHARED / "matek_bm_sample", "matek", reader="matek", n_folds=2, seed=0, verbose=False)
    listed = READERS.get("matek")(SHARED / "matek_bm_sample")
    assert len(listed) == 43
    assert (listed["image"].str.contains("/ART/0001-1000/")).sum() == 30
    assert len(ds.classes) == 14 and "artefact" in ds.classes and "not_identifiable" in ds.classes
    assert len(ds.manifest) + (ds.report["action"] == "dropped").sum() == 43
