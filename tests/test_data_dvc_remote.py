"""Data for workers on other machines: a prepared dataset (images + manifest) versioned with
``dvc add``, pushed to a DVC remote (a local directory here; S3/SSH in production — same commands),
and pulled into a fresh ``git clone`` of the project. The clone gets the same dataset digest (DVC's
md5 of the images, the ``dataset_digest`` a run records), the same manifest digest, and images
that decode byte-identical. Skipped when git or the dvc command are missing."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.slow  # dvc add/push/pull on 36 images: ~10-30 s of DVC start-up

DVC = Path(sys.executable).parent / "dvc"


def sh(*cmd, cwd) -> str:
    proc = subprocess.run([str(c) for c in cmd], cwd=cwd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"{' '.join(map(str, cmd))} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


def test_clone_pulls_the_prepared_dataset_from_a_remote_with_the_same_digest(tmp_path, monkeypatch):
    if shutil.which("git") is None or not DVC.exists():
        pytest.skip("needs git and the dvc command (pip install dvc)")
    from PIL import Image
    from tiny_data import CLASSES, PER_CLASS, cells

    from zoo.data.ingest import ingest
    from zoo.data.prepared import PreparedDataset
    from zoo.tracking.runs import dataset_digest

    git = ["git", "-c", "user.name=zoo-test", "-c", "user.email=zoo@test", "-c", "init.defaultBranch=main"]
    origin, clone, remote = tmp_path / "origin", tmp_path / "clone", tmp_path / "remote"
    origin.mkdir()
    (origin / "MLproject").write_text("name: zoo-test\n")
    sh(*git, "init", "-q", cwd=origin)
    sh(DVC, "init", "-q", cwd=origin)
    sh(DVC, "config", "core.analytics", "false", cwd=origin)

    # the data owner: images under data/raw, prepared with the zoo, versioned and pushed
    monkeypatch.setenv("ZOO_HOME", str(origin))
    monkeypatch.delenv("ZOO_DATA_DIR", raising=False)
    raw = origin / "data" / "raw" / "tiny"
    labels = [c for c in CLASSES for _ in range(PER_CLASS)]
    for i, (label, img) in enumerate(zip(labels, cells(labels, seed=3))):
        (raw / label).mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(raw / label / f"{i:03d}.png")
    ingest(raw, "tiny", reader="imagefolder", n_folds=3, near_distance=-1, review_distance=-1, workers=1,
           verbose=False)
    sh(DVC, "add", "-q", "data/raw/tiny", "data/prepared/tiny", cwd=origin)
    sh(DVC, "remote", "add", "-d", "storage", remote, cwd=origin)
    sh(*git, "add", "-A", cwd=origin)
    sh(*git, "commit", "-q", "-m", "tiny dataset", cwd=origin)
    sh(DVC, "push", "-q", cwd=origin)
    mine = PreparedDataset.load("tiny")
    digest, manifest = dataset_digest(mine), mine.digest
    assert digest == mine.dvc_md5 and digest.endswith(".dir"), "the digest is DVC's md5 of the images"

    # another machine: a clone has only the .dvc pointers until it pulls
    sh(*git, "clone", "-q", origin, clone, cwd=tmp_path)
    assert not (clone / "data" / "raw" / "tiny").exists()
    sh(DVC, "pull", "-q", cwd=clone)
    monkeypatch.setenv("ZOO_HOME", str(clone))
    theirs = PreparedDataset.load("tiny")
    assert theirs.path == (clone / "data" / "prepared" / "tiny").resolve()
    assert dataset_digest(theirs) == digest and theirs.digest == manifest
    a, b = mine.image_paths(mine.manifest), theirs.image_paths(theirs.manifest)
    assert all(str(p).startswith(str(clone)) for p in b)
    assert all(np.array_equal(np.asarray(Image.open(x)), np.asarray(Image.open(y))) for x, y in zip(a, b))
