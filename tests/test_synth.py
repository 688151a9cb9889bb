"""The synthetic bone marrow (zoo.data.synth): determinism, layout, masks, class frequencies,
maturity, density, argument checks. Small sets (<= 60 cells at 48 px) keep the file fast; the
CPU-independence check uses 120 cells at 96 px, where generator 1.0 showed differing pixels."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from scipy import ndimage

from zoo.data.synth import class_counts, class_frequencies, generate, sample_cells, stages
from zoo.data.synth import config
from zoo.knowledge import DEFAULT_CLASSES, load_ontology

SIZE = 48
REQUIRED = ["image", "source_label", "group", "mask", "maturity"]


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Three small runs: seed 0 with 1 worker, seed 0 with 2 workers, seed 1."""
    base = tmp_path_factory.mktemp("synth")
    out = {}
    for name, seed, workers in (("a", 0, 1), ("b", 0, 2), ("c", 1, 1)):
        out[name] = generate(base / name, n_cells=45, img_size=SIZE, seed=seed, workers=workers, progress=False)
    return out


def test_same_seed_same_bytes_whatever_the_workers(runs):
    a, b = _files(runs["a"]), _files(runs["b"])
    assert a.keys() == b.keys()
    assert len([k for k in a if k.endswith(".png")]) == 2 * 45
    diff = [k for k in a if a[k] != b[k]]
    assert not diff, f"files differ between workers=1 and workers=2: {diff[:5]}"


def test_different_seed_different_data(runs):
    a, c = _files(runs["a"]), _files(runs["c"])
    assert a["cells.csv"] != c["cells.csv"]
    common = [k for k in a if k.startswith("images/") and k in c]
    assert common and sum(a[k] != c[k] for k in common) == len(common)


def test_manifest_columns_and_values(runs):
    root = runs["a"]
    df = pd.read_csv(root / "cells.csv")
    assert list(df.columns[:5]) == REQUIRED
    for col in ("lineage", "density", "nucleus_area", "cell_area", "nc_ratio", "n_red_cells", "n_neighbours"):
        assert col in df.columns
    assert len(df) == 45 and df.image.is_unique
    assert set(df.source_label) <= set(DEFAULT_CLASSES)
    assert df.maturity.between(0, 1).all()
    assert df.density.between(0, 1).all()
    assert df.group.str.fullmatch(r"slide_\d\d").all() and df.group.nunique() <= 12
    ont = load_ontology()
    assert (df.lineage == df.source_label.map(ont.lineage)).all()
    for _, row in df.iterrows():
        assert re.fullmatch(rf"images/{row.source_label}/{row.source_label}_\d{{5}}\.png", row.image)
        assert row["mask"] == row.image.replace("images/", "masks/", 1)
        im = Image.open(root / row.image)
        assert im.size == (SIZE, SIZE) and im.mode == "RGB"
    info = json.loads((root / "synth.json").read_text())
    assert info["version"] == config.VERSION
    assert info["params"] == dict(n_cells=45, img_size=SIZE, seed=0, classes=list(DEFAULT_CLASSES),
                                  density=0.5, n_slides=12, difficulty=1.0)
    assert sum(info["class_counts"].values()) == 45
    assert df.source_label.value_counts().to_dict() == {k: v for k, v in info["class_counts"].items() if v}


def test_masks_are_three_level_with_the_nucleus_inside_the_cell(runs):
    root = runs["a"]
    df = pd.read_csv(root / "cells.csv")
    touching = 0
    for _, row in df.iterrows():
        m = np.asarray(Image.open(root / row["mask"]))
        assert m.shape == (SIZE, SIZE)
        assert set(np.unique(m)) == {0, 128, 255}, row["mask"]
        assert m[SIZE // 2, SIZE // 2] > 0  # the central cell is central
        nucleus, cell = m == 255, m > 0
        assert (m == 255).sum() == row.nucleus_area and cell.sum() == row.cell_area
        assert nucleus.sum() < cell.sum()
        # the nucleus does not reach the cell's outline (a 1-px cytoplasm rim at least)
        outline = cell & ~ndimage.binary_erosion(cell)
        touching += bool((nucleus & outline).any())
        # one central cell: a single connected region
        assert ndimage.label(cell)[1] == 1
    assert touching <= 0.1 * len(df)


def test_class_counts_follow_marrow_frequencies_with_a_minimum():
    n = 20000
    counts = class_counts(n)
    freqs = class_frequencies()
    assert sum(counts.values()) == n and list(counts) == list(DEFAULT_CLASSES)
    minimum = int(config.MIN_FRACTION * n)
    for c, k in counts.items():
        assert k >= minimum
        if freqs[c] * n > 2 * minimum:  # not lifted by the minimum: proportional (within 5 %)
            assert k == pytest.approx(freqs[c] * n, rel=0.05), c
    assert counts["metamyelocyte"] > counts["myelocyte"] > counts["promyelocyte"]
    default = class_counts(4560)
    assert min(default.values()) >= 60 and sum(default.values()) == 4560
    df = sample_cells(n, seed=3)
    assert df.source_label.value_counts().to_dict() == counts
    # every slide holds every class (group-aware folds stay stratified)
    per_slide = df.groupby(["group", "source_label"]).size().unstack(fill_value=0)
    assert per_slide.shape == (12, 15) and (per_slide.values > 0).all()


def test_class_subset_and_tiny_sets():
    counts = class_counts(100, ["myelocyte", "metamyelocyte"])
    assert counts == {"myelocyte": 38, "metamyelocyte": 62}
    assert all(v >= 1 for v in class_counts(15).values())


def test_maturity_increases_with_stage_and_borders_are_fuzzy():
    ont = load_ontology()
    df = sample_cells(6000, seed=0)
    mean = df.groupby("source_label").maturity.mean()
    lineages = {}
    for c in DEFAULT_CLASSES:
        lineages.setdefault(ont.lineage(c), []).append(c)
    checked = 0
    for lineage, cls in lineages.items():
        ranked = sorted((ont.classes[c].maturity_rank, c) for c in cls if ont.classes[c].maturity_rank is not None)
        if len(ranked) < 2:
            continue
        ordered = [c for _, c in ranked]
        assert list(mean[ordered]) == sorted(mean[ordered]), f"{lineage}: {mean[ordered].to_dict()}"
        for a, b in zip(ordered, ordered[1:]):
            lo_b, hi_a = df.maturity[df.source_label == b].min(), df.maturity[df.source_label == a].max()
            assert hi_a > lo_b, f"{a} and {b} do not overlap in maturity"
            checked += 1
    assert checked == 8  # borders: 4 neutrophil, 3 erythroid, 1 monocyte
    crisp = sample_cells(6000, seed=0, difficulty=0.0)
    st = stages()
    for c, s in st.items():
        m = crisp.maturity[crisp.source_label == c]
        assert (s.lo is None or m.min() >= s.lo - 1e-3) and (s.hi is None or m.max() <= s.hi + 1e-3), c


def test_density_zero_gives_the_cell_alone(tmp_path):
    empty = generate(tmp_path / "d0", n_cells=30, img_size=SIZE, seed=5, density=0.0, workers=1, progress=False)
    busy = generate(tmp_path / "d1", n_cells=30, img_size=SIZE, seed=5, density=1.0, workers=1, progress=False)

    def stray_fraction(root: Path) -> float:
        """Share of the background (away from the central cell) that holds objects: pixels that
        differ from the smoothed background around them. Smooth light falloff (vignetting) and the
        plasma film do not count; red-cell and neighbour edges do."""
        df = pd.read_csv(root / "cells.csv")
        fractions = []
        for _, row in df.iterrows():
            img = np.asarray(Image.open(root / row.image), dtype=float).sum(axis=2)
            bg = ~ndimage.binary_dilation(np.asarray(Image.open(root / row["mask"])) > 0, iterations=3)
            local = ndimage.gaussian_filter(img * bg, 5) / np.maximum(ndimage.gaussian_filter(bg * 1.0, 5), 1e-6)
            fractions.append(np.mean(np.abs(img - local)[bg] > 30))
        return float(np.mean(fractions))

    d0 = pd.read_csv(empty / "cells.csv")
    assert (d0.n_red_cells == 0).all() and (d0.n_neighbours == 0).all() and (d0.density == 0).all()
    assert stray_fraction(empty) < 0.03
    d1 = pd.read_csv(busy / "cells.csv")
    assert d1.n_red_cells.mean() > 3
    assert stray_fraction(busy) > 0.3


def test_stage_shapes_follow_maturity(tmp_path):
    """Rendered morphology tracks maturity: erythroblasts shrink and condense, neutrophils segment."""
    root = generate(tmp_path / "s", n_cells=60, img_size=64, seed=2, workers=1, progress=False,
                    classes=["proerythroblast", "orthochromatic_erythroblast", "myelocyte", "segmented_neutrophil"])
    df = pd.read_csv(root / "cells.csv")
    g = df.groupby("source_label")
    assert g.cell_area.mean()["proerythroblast"] > 2 * g.cell_area.mean()["orthochromatic_erythroblast"]
    assert g.nc_ratio.mean()["proerythroblast"] > g.nc_ratio.mean()["orthochromatic_erythroblast"]
    assert (g.n_lobes.mean()["segmented_neutrophil"] > 1.8) and (g.n_lobes.max()["myelocyte"] == 1)


def test_rerun_replaces_an_earlier_set_but_never_foreign_files(tmp_path):
    out = tmp_path / "set"
    generate(out, n_cells=20, img_size=SIZE, seed=0, workers=1, progress=False)
    generate(out, n_cells=16, img_size=SIZE, seed=0, workers=1, progress=False)
    assert len(list((out / "images").rglob("*.png"))) == 16
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="not empty"):
        generate(foreign, n_cells=16, img_size=SIZE, progress=False)
    assert (foreign / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize("kwargs, name", [
    (dict(n_cells=0), "n_cells"),
    (dict(n_cells=2.5), "n_cells"),
    (dict(img_size=31), "img_size"),
    (dict(classes=["myelocyte", "unicorn_cell"]), "unicorn_cell"),
    (dict(classes=["plasma_cell"]), "plasma_cell"),
    (dict(classes=[]), "classes"),
    (dict(density=1.5), "density"),
    (dict(n_slides=0), "n_slides"),
    (dict(difficulty=-1), "difficulty"),
    (dict(workers=0), "workers"),
    (dict(seed=-3), "seed"),
])
def test_bad_arguments_name_themselves(tmp_path, kwargs, name):
    args = dict(n_cells=10, img_size=SIZE, progress=False) | kwargs
    with pytest.raises(ValueError, match=name):
        generate(tmp_path / "bad", **args)
    assert not (tmp_path / "bad").exists()


def test_the_synth_reader_reads_it(runs):
    readers = pytest.importorskip("zoo.data.readers")
    df = readers.READERS.get("synth")(runs["a"])
    assert len(df) == 45 and {"image", "source_label", "group", "mask", "maturity"} <= set(df.columns)


def _dispatched_kernels_on_this_cpu() -> list[str]:
    """numpy's CPU-specific kernel groups (AVX2, AVX-512, ...) that this CPU runs."""
    try:
        from numpy._core import _multiarray_umath as umath   # numpy >= 2
    except ImportError:
        from numpy.core import _multiarray_umath as umath    # numpy 1.x
    return [f for f in umath.__cpu_dispatch__ if umath.__cpu_features__.get(f)]


def test_the_same_bytes_whatever_kernels_the_cpu_picks(tmp_path):
    """`dvc repro` must give the committed bytes on any CPU. The CPU decides which numpy SIMD
    kernels (exp, cos, tanh) and which OpenBLAS kernel run; a second process runs only numpy's
    baseline kernels and OpenBLAS's Sandybridge kernel, and the files must not change."""
    kernels = _dispatched_kernels_on_this_cpu()
    if not kernels:
        pytest.skip("this CPU runs only numpy's baseline kernels: there is no other kernel to compare with")
    args = dict(n_cells=120, img_size=96, seed=0, workers=1, progress=False)
    generate(tmp_path / "here", **args)
    env = dict(os.environ, NPY_DISABLE_CPU_FEATURES=" ".join(kernels), OPENBLAS_CORETYPE="Sandybridge")
    code = (f"from zoo.data.synth import generate; generate({str(tmp_path / 'plain')!r}, "
            f"**{args!r})")
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=300)
    here, plain = _files(tmp_path / "here"), _files(tmp_path / "plain")
    assert here.keys() == plain.keys()
    diff = [k for k in here if here[k] != plain[k]]
    assert not diff, f"{len(diff)} files change with the CPU's kernels ({', '.join(kernels)} off): {diff[:5]}"
