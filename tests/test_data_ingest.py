"""Cleaning rules, manifest contract, report files and PreparedDataset on a messy fixture."""

import hashlib
import json

import imagehash
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from zoo.data.dedup import close_pairs, find_duplicates, hash_ints
from zoo.data.ingest import ingest
from zoo.data.manifest import COLUMNS, manifest_digest, read_manifest, resolve_path
from zoo.data.prepared import PreparedDataset, list_prepared


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("ZOO_DATA_DIR", str(tmp_path / "zoo_data"))
    monkeypatch.setenv("ZOO_HOME", str(tmp_path))


def _block(bits: np.ndarray, size: int = 64, shift: int = 0, borderline=(), delta: int = 0) -> Image.Image:
    """An image whose 8x8 average hash is exactly ``bits`` (one bright/dark block per bit);
    ``borderline`` blocks sit ``delta`` grey levels from the mean, so their bit flips with the
    sign of ``delta`` while the pixels barely change."""
    v = np.where(bits, 230, 25).astype(float)
    v[list(borderline)] = v.mean() + delta
    a = np.clip(v, 0, 255).astype(np.uint8).reshape(8, 8)
    a = np.kron(a, np.ones((size // 8, size // 8), np.uint8))
    a = np.clip(a.astype(int) + shift, 0, 255).astype(np.uint8)
    return Image.fromarray(np.stack([a, a // 2 + 40, a], -1))


def _flip(bits, k, start=0):
    out = bits.copy()
    out[start:start + k] = ~out[start:start + k]
    return out


@pytest.fixture
def messy(tmp_path):
    """Three classes with every problem the cleaning must handle."""
    root = tmp_path / "messy"
    rng = np.random.RandomState(0)
    patterns = [rng.rand(64) > 0.5 for _ in range(13)]
    for d in ("myelocyte", "blast", "lymphocyte"):
        (root / d).mkdir(parents=True)
    _block(patterns[0]).save(root / "myelocyte" / "a_orig.png")
    (root / "myelocyte" / "b_bytecopy.png").write_bytes((root / "myelocyte" / "a_orig.png").read_bytes())
    _block(patterns[0], shift=4).save(root / "myelocyte" / "c_brighter.png")          # ahash 0, phash 0: drop
    _block(patterns[3], borderline=(20, 21), delta=20).save(root / "myelocyte" / "d_base.png")
    _block(patterns[3], borderline=(20, 21), delta=-20).save(root / "myelocyte" / "e_two_bits.png")  # ahash 2: drop
    _block(patterns[2], borderline=(5, 6, 7), delta=20).save(root / "myelocyte" / "f_base.png")
    _block(patterns[2], borderline=(5, 6, 7), delta=-20).save(root / "myelocyte" / "g_three_bits.png")  # 3: review
    _block(patterns[4]).save(root / "myelocyte" / "h_ok.png")
    _block(patterns[1]).save(root / "myelocyte" / "i_base.png")
    _block(_flip(patterns[1], 2)).save(root / "myelocyte" / "j_lookalike.png")  # ahash 2, pixels differ: kept
    _block(patterns[5]).save(root / "blast" / "cross.png")
    (root / "lymphocyte" / "cross_copy.png").write_bytes((root / "blast" / "cross.png").read_bytes())
    _block(patterns[6]).save(root / "blast" / "ok1.jpg", quality=95)
    _block(patterns[7]).save(root / "blast" / "ok2.png")
    jpeg = (root / "blast" / "ok1.jpg").read_bytes()
    (root / "blast" / "truncated.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    (root / "blast" / "empty.png").write_bytes(b"")
    (root / "blast" / "fake.png").write_bytes(b"<html>not an image</html>")
    (root / "blast" / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    (root / "blast" / "notes.txt").write_text("scanner notes")
    _block(patterns[8]).convert("L").save(root / "lymphocyte" / "gray.png")
    rgba = _block(patterns[9]).convert("RGBA")
    rgba.putalpha(200)
    rgba.save(root / "lymphocyte" / "rgba.png")
    sixteen = (np.asarray(_block(patterns[10]).convert("L")).astype(np.uint16) * 257)
    Image.fromarray(sixteen).save(root / "lymphocyte" / "deep16.png")
    _block(patterns[11]).save(root / "lymphocyte" / "ok3.png")
    _block(patterns[12]).save(root / "lymphocyte" / "ok4.png")
    return root


def _tree_hash(root):
    return {p.relative_to(root).as_posix(): hashlib.md5(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_cleaning_rules(messy, capsys):
    source_before = _tree_hash(messy)
    ds = ingest(messy, "messy", n_folds=2, seed=0)
    printed = capsys.readouterr().out
    report = ds.report.set_index("image")
    m = ds.manifest

    def reason(img):
        return report.loc[img, "reason"] if isinstance(report.loc[img, "reason"], str) else report.loc[img, "reason"].iloc[0]

    # byte-identical and near-identical within a class: one kept
    assert "myelocyte/a_orig.png" in set(m["image"])
    assert reason("myelocyte/b_bytecopy.png") == "byte-identical duplicate"
    assert report.loc["myelocyte/b_bytecopy.png", "related"] == "myelocyte/a_orig.png"
    assert reason("myelocyte/c_brighter.png") == "near-duplicate (average-hash distance 0, pixel difference 0.0)"
    assert reason("myelocyte/e_two_bits.png").startswith("near-duplicate (average-hash distance 2,")
    assert report.loc["myelocyte/e_two_bits.png", "related"] == "myelocyte/d_base.png"
    # distance 3: kept, listed for review
    img = "myelocyte/g_three_bits.png"
    assert img in set(m["image"]) and report.loc[img, "action"] == "flagged"
    assert reason(img).startswith("possible duplicate for review (average-hash distance 3")
    # distance 2 but different pixels (a look-alike, not a duplicate): kept, not reported
    assert "myelocyte/j_lookalike.png" in set(m["image"]) and "myelocyte/j_lookalike.png" not in report.index
    # identical bytes under two labels: all copies dropped
    for img in ("blast/cross.png", "lymphocyte/cross_copy.png"):
        assert img not in set(m["image"])
        assert "different labels" in reason(img)
    # unreadable, truncated, zero-size, non-image, hidden
    assert "truncated" in reason("blast/truncated.jpg")
    assert reason("blast/empty.png") == "zero-size file"
    assert "not an image" in reason("blast/fake.png")
    assert "hidden/system" in reason("blast/.DS_Store")
    assert "extension '.txt'" in reason("blast/notes.txt")
    # grayscale, RGBA, 16-bit: converted copies inside the prepared folder
    for name, needle in (("gray", "grayscale"), ("rgba", "RGBA"), ("deep16", "16-bit")):
        src = f"lymphocyte/{name}.png"
        assert report.loc[src, "action"] == "converted" and needle in reason(src)
        conv = f"@prepared/converted/lymphocyte/{name}.png"
        assert conv in set(m["image"]) and report.loc[src, "related"] == conv
        path = resolve_path(conv, ds.root, ds.path)
        assert ds.path in path.parents and Image.open(path).mode == "RGB"
    assert sorted(m["label"].value_counts().items()) == [("blast", 2), ("lymphocyte", 5), ("myelocyte", 7)]
    # the source folder is untouched
    assert _tree_hash(messy) == source_before
    # the report table is printed and written, with before/after per class
    text = (ds.path / "report.txt").read_text()
    assert text in printed
    table = {ln.split()[0]: ln.split()[1:] for ln in text.splitlines()
             if ln.strip().split(" ")[0] in ("myelocyte", "blast", "lymphocyte", "total")}
    assert table["myelocyte"] == ["10", "3", "0", "1", "7"]   # before dropped converted flagged after
    assert table["lymphocyte"] == ["6", "1", "3", "0", "5"]
    assert table["blast"] == ["8", "6", "0", "0", "2"]  # incl. .DS_Store, notes.txt, empty.png
    assert table["total"] == ["24", "10", "3", "1", "14"]


def test_manifest_columns_dtypes_and_files(messy):
    ds = ingest(messy, "messy", n_folds=2, seed=0, verbose=False)
    m = read_manifest(ds.path / "manifest.parquet")
    assert tuple(m.columns) == COLUMNS
    for col in ("width", "height", "fold"):
        assert pd.api.types.is_integer_dtype(m[col])
    assert pd.api.types.is_float_dtype(m["maturity"])
    for col in ("image", "label", "source_label", "lineage", "sha256", "ahash"):
        assert pd.api.types.is_string_dtype(m[col]) and m[col].notna().all()
    assert m["group"].isna().all() and m["mask"].isna().all()
    assert (m["width"] == 64).all() and (m["height"] == 64).all()
    row = m.set_index("image").loc["myelocyte/h_ok.png"]
    raw = (messy / "myelocyte" / "h_ok.png").read_bytes()
    assert row["sha256"] == hashlib.sha256(raw).hexdigest()
    assert row["ahash"] == str(imagehash.average_hash(Image.open(messy / "myelocyte" / "h_ok.png")))
    assert row["lineage"] == "neutrophil" and row["maturity"] == pytest.approx(0.25)
    folds = pd.read_csv(ds.path / "folds.csv")
    assert list(folds.columns) == ["image", "fold"] and len(folds) == len(m)
    info = json.loads((ds.path / "dataset.json").read_text())
    assert {"name", "root", "reader", "n_folds", "seed", "classes", "digest", "created", "zoo_version"} <= set(info)
    assert info["root"] == "messy"  # inside the project (ZOO_HOME): stored relative
    assert info["classes"] == ds.classes == ["myelocyte", "blast", "lymphocyte"]
    report = pd.read_csv(ds.path / "report.csv")
    assert list(report.columns) == ["image", "source_label", "label", "action", "reason", "related"]


def test_digest_stable_and_content_sensitive(messy, tmp_path):
    a = ingest(messy, "one", n_folds=2, seed=0, verbose=False)
    b = ingest(messy, "two", n_folds=2, seed=0, verbose=False, workers=2)  # process pool: same result
    assert a.digest == b.digest == a.info["digest"]
    shuffled = a.manifest.sample(frac=1.0, random_state=3)
    assert manifest_digest(shuffled) == a.digest
    c = ingest(messy, "three", n_folds=2, seed=1, verbose=False)
    assert c.digest != a.digest  # other folds, other digest


def test_prepared_dataset_load_split_and_errors(messy, tmp_path):
    ds = ingest(messy, "messy", n_folds=3, seed=0, verbose=False)
    assert list_prepared() == ["messy"]
    same = PreparedDataset.load("messy")
    assert same.path == ds.path and PreparedDataset.load(ds.path).name == "messy"
    assert same.root == messy.resolve() and same.n_folds == 3
    parts = same.split(1)
    assert set(parts["test"]["fold"]) == {1} and set(parts["val"]["fold"]) == {2}
    assert set(parts["train"]["fold"]) == {0}
    assert set(same.split(2)["val"]["fold"]) == {0}  # wraps around
    assert sum(len(p) for p in parts.values()) == len(same.manifest)
    for bad in (3, -1, "x"):
        with pytest.raises(ValueError, match="fold"):
            same.split(bad)
    with pytest.raises(FileNotFoundError, match="available: messy"):
        PreparedDataset.load("nope")
    assert same.dvc_md5 is None
    counts = same.counts()
    assert counts.loc["total", "total"] == len(same.manifest)


def test_dvc_md5_from_lock_and_dvc_files(messy, tmp_path):
    ds = ingest(messy, "messy", n_folds=2, verbose=False)
    (tmp_path / "dvc.lock").write_text(
        "schema: '2.0'\nstages:\n  synth:\n    cmd: x\n    outs:\n    - path: messy\n"
        "      hash: md5\n      md5: 0123456789abcdef0123456789abcdef.dir\n")
    assert PreparedDataset.load("messy").dvc_md5 == "0123456789abcdef0123456789abcdef.dir"
    (tmp_path / "dvc.lock").unlink()
    (tmp_path / "datasets").mkdir()
    (tmp_path / "datasets" / "all.dvc").write_text(
        "outs:\n- md5: fedcba9876543210fedcba9876543210.dir\n  path: ../messy\n")
    assert PreparedDataset.load(ds.path).dvc_md5 == "fedcba9876543210fedcba9876543210.dir"


def test_classes_filter_and_empty_errors(messy, tmp_path):
    ds = ingest(messy, "onlyblast", n_folds=2, classes=["blast"], verbose=False)
    assert set(ds.manifest["label"]) == {"blast"}
    assert (ds.report["reason"] == "class not selected (classes=...)").sum() > 0
    with pytest.raises(ValueError, match="not canonical"):
        ingest(messy, "x", n_folds=2, classes=["blasts!"], verbose=False)
    empty = tmp_path / "empty"
    (empty / "blast").mkdir(parents=True)
    (empty / "blast" / ".DS_Store").write_bytes(b"x")
    with pytest.raises(ValueError, match="no images left"):
        ingest(empty, "empty", n_folds=2, verbose=False)
    with pytest.raises(FileNotFoundError):
        ingest(tmp_path / "missing", "m", verbose=False)
    with pytest.raises(ValueError, match="plain folder name"):
        ingest(messy, "../evil", verbose=False)
    with pytest.raises(ValueError, match="inside the source"):
        ingest(messy, "x", out=messy / "prepared", verbose=False)


def test_close_pairs_matches_bruteforce():
    rng = np.random.RandomState(1)
    base = rng.randint(0, 2**63, size=40, dtype=np.int64).astype(np.uint64)
    near = base ^ np.uint64(0b101)  # distance 2 partners
    hashes = np.concatenate([base, near])
    i, j, d = close_pairs(hashes, 3)
    brute = {(a, b) for a in range(len(hashes)) for b in range(a + 1, len(hashes))
             if bin(int(hashes[a]) ^ int(hashes[b])).count("1") <= 3}
    assert set(zip(i.tolist(), j.tolist())) == brute and len(brute) >= 40
    assert hash_ints(pd.Series(["ffffffffffffffff"]))[0] == np.uint64(2**64 - 1)


def test_near_duplicate_chain_keeps_far_end():
    # A~B (2 bits), B~C (2 bits), A-C 4 bits apart: B goes, C stays (it is far from kept A).
    a = 0
    b = 0b11
    c = 0b1111
    df = pd.DataFrame({"image": ["a", "b", "c"], "label": ["x"] * 3, "sha256": ["1", "2", "3"],
                       "ahash": [f"{v:016x}" for v in (a, b, c)]})
    found = {f.index: f for f in find_duplicates(df, confirm=None)}
    assert set(found) == {1} and found[1].related == "a"
    same = {f.index for f in find_duplicates(df, thumbnail=lambda i: np.zeros((2, 2, 3), np.float32))}
    assert same == {1}


def test_pixel_confirmation_and_paper_rule():
    # b: ahash 2 from a but a different picture; c: ahash 3 from a, same picture; d: ahash 1 from
    # a, borderline pixels (review band); e: ahash 0 from a, same picture
    df = pd.DataFrame({"image": list("abcde"), "label": ["x"] * 5, "sha256": list("12345"),
                       "ahash": [f"{v:016x}" for v in (0, 0b11, 0b111 << 20, 1 << 40, 0)]})
    pixels = {0: 0.0, 1: 20.0, 2: 1.0, 3: 6.5, 4: 0.5}  # thumbnails: constant images, |a-b| = value gap
    thumbs = lambda i: np.full((4, 4, 3), pixels[i], np.float32)  # noqa: E731
    found = {f.index: f for f in find_duplicates(df, thumbnail=thumbs)}
    assert found[4].action == "dropped" and found[4].related == "a" and "pixel difference 0.5" in found[4].reason
    assert found[2].action == "flagged" and found[3].action == "flagged" and "pixel difference 6.5" in found[3].reason
    assert 1 not in found  # look-alike: hash close, pixels far
    strict = {f.index: f.action for f in find_duplicates(df, confirm=None)}
    assert strict == {1: "dropped", 3: "dropped", 4: "dropped", 2: "flagged"}
    with pytest.raises(ValueError, match="thumbnail"):
        find_duplicates(df)


def test_digest_independent_of_ingest_root(tmp_path):
    """The same PBC-layout files ingested from the parent folder or from PBC_dataset_normal_DIB
    itself (paths in the manifest differ by that prefix) give one digest; a relabelled copy does not."""
    root = tmp_path / "pbc"
    rng = np.random.RandomState(1)
    for folder, prefix in (("neutrophil", "BNE"), ("neutrophil", "SNE"), ("lymphocyte", "LY")):
        d = root / "PBC_dataset_normal_DIB" / folder
        d.mkdir(parents=True, exist_ok=True)
        for i in range(4):
            Image.fromarray(rng.randint(0, 255, (24, 24, 3), dtype=np.uint8)).save(d / f"{prefix}_{i}.png")
    outer = ingest(root, "outer", reader="pbc", n_folds=2, seed=0, verbose=False)
    inner = ingest(root / "PBC_dataset_normal_DIB", "inner", reader="pbc", n_folds=2, seed=0, verbose=False)
    assert outer.manifest["image"].iloc[0].startswith("PBC_dataset_normal_DIB/")
    assert not inner.manifest["image"].iloc[0].startswith("PBC_dataset_normal_DIB/")
    assert outer.digest == inner.digest
    relabelled = outer.manifest.copy()
    first = relabelled.index[0]
    relabelled.loc[first, "label"] = "lymphocyte" if relabelled.loc[first, "label"] != "lymphocyte" else "myelocyte"
    assert manifest_digest(relabelled) != outer.digest
