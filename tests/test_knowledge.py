"""Knowledge layer: ontology, aliases, label maps, tolerance pairs, similarity/severity matrices."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from zoo.knowledge import (
    DEFAULT_CLASSES,
    KNOWLEDGE_DIR,
    CellClass,
    KnowledgeFileError,
    UnknownLabelError,
    knowledge_files,
    load_label_map,
    load_matrix,
    load_ontology,
)
from zoo.paths import shared_data_dir

NEUTROPHIL_STAGES = ["promyelocyte", "myelocyte", "metamyelocyte", "band_neutrophil", "segmented_neutrophil"]
ERYTHROID_STAGES = ["proerythroblast", "basophilic_erythroblast", "polychromatic_erythroblast",
                    "orthochromatic_erythroblast"]


@pytest.fixture(scope="module")
def ont():
    return load_ontology()


@pytest.fixture
def kdir(tmp_path):
    """A writable copy of the packaged knowledge files, to break one at a time."""
    for f in knowledge_files():
        shutil.copy(f, tmp_path / f.name)
    return tmp_path


def _edit_yaml(path: Path, fn) -> None:
    data = yaml.safe_load(path.read_text())
    fn(data)
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def _cls(data, cid):
    return next(c for c in data["classes"] if c["id"] == cid)


def _shared(*parts) -> Path:
    root = shared_data_dir()
    if root is None or not root.joinpath(*parts).exists():
        pytest.skip(f"shared data {'/'.join(parts)} not available (../shared/data or $ZOO_SHARED_DATA)")
    return root.joinpath(*parts)


# -- the packaged ontology -------------------------------------------------------------------------


def test_default_classes(ont):
    assert DEFAULT_CLASSES == (*NEUTROPHIL_STAGES, "blast", *ERYTHROID_STAGES, "basophil", "eosinophil",
                               "promonocyte", "monocyte", "lymphocyte")
    assert ont.default_classes == DEFAULT_CLASSES
    assert all(isinstance(ont.classes[c], CellClass) for c in DEFAULT_CLASSES)


def test_lineages_and_ranks(ont):
    assert ont.stages("neutrophil") == tuple(NEUTROPHIL_STAGES)
    assert ont.stages("erythroid") == tuple(ERYTHROID_STAGES)
    assert ont.stages("monocyte") == ("promonocyte", "monocyte")
    assert [ont[c].maturity_rank for c in NEUTROPHIL_STAGES] == [0, 1, 2, 3, 4]
    assert ont.lineage("blast") == "blast" and ont.maturity("blast") == 0.0
    assert ont.lineage("lymphocyte") == "lymphoid"
    assert ont.lineage("erythroblast") == "erythroid" and ont.maturity("erythroblast") is None
    assert "neutrophil" in ont.lineages["blast"].progenitor_of


def test_maturity_range(ont):
    for cid, c in ont.classes.items():
        m = ont.maturity(cid)
        assert (m is None) == (c.maturity_rank is None), cid
        if m is not None:
            assert 0.0 <= m <= 1.0, cid
    assert [ont.maturity(c) for c in NEUTROPHIL_STAGES] == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert ont.maturity("polychromatic_erythroblast") == pytest.approx(2 / 3)
    assert ont.maturity("monocyte") == 1.0


def test_order(ont):
    assert ont.order(reversed(DEFAULT_CLASSES)) == list(DEFAULT_CLASSES)
    assert ont.order(["segmented_neutrophil", "erythroblast", "promyelocyte", "neutrophil", "artefact"]) == [
        "promyelocyte", "segmented_neutrophil", "neutrophil", "erythroblast", "artefact"]
    with pytest.raises(KeyError, match="NGB"):
        ont.order(["NGB"])


def test_default_is_cached_and_read_only(ont):
    assert load_ontology() is ont
    with pytest.raises(TypeError):
        ont.classes["x"] = None  # type: ignore[index]


def test_ontology_pickles(ont):
    import copy
    import pickle

    clone = pickle.loads(pickle.dumps(ont))
    assert clone.ids == ont.ids and clone.classes["blast"] == ont.classes["blast"]
    assert clone.canonical("NGB", dataset="matek") == "band_neutrophil"
    assert clone.is_tolerable("band_neutrophil", "segmented_neutrophil")
    assert copy.deepcopy(ont.classes["myelocyte"]).aliases["matek"] == ("MYB",)
    assert hash(ont.classes["blast"]) == hash(clone.classes["blast"])


# -- aliases ---------------------------------------------------------------------------------------


def test_every_matek_abbreviation_maps(ont):
    path = _shared("matek_bm_sample", "abbreviations.csv")
    with path.open(newline="", encoding="utf-8-sig") as fh:
        rows = list(csv.DictReader(fh, delimiter=";"))
    assert len(rows) == 21
    mapping = ont.map_labels([r["Abbreviation"] for r in rows], dataset="matek")
    assert len(mapping) == 21
    assert len(set(mapping.values())) == 21, "two Matek classes collapse onto one id"
    # The long names in the same file resolve too (display names / generic aliases).
    for r in rows:
        assert ont.canonical(r["Meaning"]) == mapping[r["Abbreviation"]], r


def test_matek_expected_ids(ont):
    expected = {"ABE": "abnormal_eosinophil", "ART": "artefact", "BAS": "basophil", "BLA": "blast",
                "EBO": "erythroblast", "EOS": "eosinophil", "FGC": "faggot_cell", "HAC": "hairy_cell",
                "KSC": "smudge_cell", "LYI": "immature_lymphocyte", "LYT": "lymphocyte",
                "MMZ": "metamyelocyte", "MON": "monocyte", "MYB": "myelocyte", "NGB": "band_neutrophil",
                "NGS": "segmented_neutrophil", "NIF": "not_identifiable", "OTH": "other_cell",
                "PEB": "proerythroblast", "PLM": "plasma_cell", "PMO": "promyelocyte"}
    assert ont.map_labels(expected, dataset="matek") == expected


def test_pbc_labels_map(ont):
    expected = {"BA": "basophil", "EO": "eosinophil", "ERB": "erythroblast", "LY": "lymphocyte",
                "MO": "monocyte", "PMY": "promyelocyte", "MY": "myelocyte", "MMY": "metamyelocyte",
                "BNE": "band_neutrophil", "SNE": "segmented_neutrophil", "PLATELET": "platelet",
                "IG": "immature_granulocyte", "NEUTROPHIL": "neutrophil"}
    assert ont.map_labels(expected, dataset="pbc") == expected
    # PBC's folder names (coarse classes) resolve through generic aliases.
    folders = ["basophil", "eosinophil", "erythroblast", "ig", "lymphocyte", "monocyte", "neutrophil",
               "platelet"]
    assert set(ont.map_labels(folders, dataset="pbc").values()) == {
        "basophil", "eosinophil", "erythroblast", "immature_granulocyte", "lymphocyte", "monocyte",
        "neutrophil", "platelet"}


def test_pbc_index_labels_map(ont):
    index = pd.read_csv(_shared("pbc", "index.csv"))
    mapping = ont.map_labels(index["fine_label"], dataset="pbc")
    assert set(mapping) == set(index["fine_label"])
    # The maturity ordinal shipped with PBC agrees with the ontology's ranks.
    ranked = index.dropna(subset=["neutrophil_maturity_ordinal"])
    for label, ordinal in ranked.groupby("fine_label")["neutrophil_maturity_ordinal"].first().items():
        assert ont[mapping[label]].maturity_rank == int(ordinal), label


def test_zheng_labels_map(ont):
    expected = {"1": "neutrophil", "2": "lymphocyte", "3": "monocyte", "4": "eosinophil", "5": "basophil"}
    assert ont.map_labels(expected, dataset="zheng") == expected
    # pandas reads the label column as ints: the keys come back as given.
    assert ont.map_labels([1, 2, 5], dataset="zheng") == {1: "neutrophil", 2: "lymphocyte", 5: "basophil"}
    # '1' means nothing outside Zheng's datasets.
    with pytest.raises(UnknownLabelError):
        ont.canonical("1")


def test_zheng_label_files_map(ont):
    root = _shared("segmentation_wbc")
    for f in sorted(root.glob("Class Labels of Dataset *.csv")):
        labels = pd.read_csv(f).iloc[:, 1]
        assert set(ont.map_labels(labels, dataset="zheng").values()) <= {
            "neutrophil", "lymphocyte", "monocyte", "eosinophil", "basophil"}, f.name


def test_generic_aliases(ont):
    assert ont.canonical("band_neutrophil") == "band_neutrophil"
    assert ont.canonical("Band Neutrophil") == "band_neutrophil"
    assert ont.canonical("  BAND-neutrophil ") == "band_neutrophil"
    assert ont.canonical("Polychromatic erythroblast") == "polychromatic_erythroblast"
    assert ont.canonical("stab cell") == "band_neutrophil"
    assert ont.canonical("artifact") == "artefact"
    assert ont.canonical("ngb", dataset="matek") == "band_neutrophil"  # case-insensitive
    # Dataset aliases come before generic ones; an unknown dataset falls back to generic.
    assert ont.canonical("PMO", dataset="matek") == "promyelocyte"
    assert ont.canonical("monocyte", dataset="somewhere_else") == "monocyte"


def test_unknown_labels_error_lists_all_with_counts(ont):
    labels = ["NGB"] * 3 + ["XYZ"] * 4 + ["weird cell"] + [None, float("nan")]
    with pytest.raises(UnknownLabelError) as info:
        ont.map_labels(labels, dataset="matek")
    err = info.value
    assert isinstance(err, ValueError)
    assert err.unknown == {"XYZ": 4, "<missing>": 2, "weird cell": 1}
    msg = str(err)
    assert "'XYZ' (4 items)" in msg and "'weird cell' (1 item)" in msg and "<missing>" in msg
    assert "label map" in msg and "XYZ: band_neutrophil" in msg and "ontology.yaml" in msg


def test_unknown_label_hints_at_dataset(ont):
    # 'MO' is PBC's monocyte but no generic alias: the error says which dataset knows it.
    with pytest.raises(UnknownLabelError, match=r"'MO' is an alias of 'monocyte' in dataset 'pbc'"):
        ont.map_labels(["SNE", "MO"], dataset="zheng")
    with pytest.raises(UnknownLabelError, match="no aliases for dataset 'matk'"):
        ont.map_labels(["QQQ"], dataset="matk")


# -- label maps ------------------------------------------------------------------------------------


def test_label_map_override(ont, tmp_path):
    path = tmp_path / "labels.yaml"
    path.write_text("neutro: segmented_neutrophil\nNGB: segmented_neutrophil\nblasten: Blast\n7: lymphocyte\n")
    lm = load_label_map(path)
    assert lm == {"neutro": "segmented_neutrophil", "NGB": "segmented_neutrophil", "blasten": "blast",
                  "7": "lymphocyte"}
    # The map wins over the ontology's own alias (NGB would otherwise be a band neutrophil).
    mapping = ont.map_labels(["neutro", "NGB", "BLASTEN", "MON", 7], dataset="matek", label_map=path)
    assert mapping == {"neutro": "segmented_neutrophil", "NGB": "segmented_neutrophil", "BLASTEN": "blast",
                       "MON": "monocyte", 7: "lymphocyte"}
    assert ont.map_labels(["x"], label_map={"x": "monocyte"}) == {"x": "monocyte"}


def test_label_map_errors(ont, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("foo: band_neutrofil\n")
    with pytest.raises(KnowledgeFileError, match=r"bad\.yaml.*'foo'.*band_neutrofil.*Did you mean 'band_neutrophil'"):
        load_label_map(bad)
    bad.write_text("- a\n- b\n")
    with pytest.raises(KnowledgeFileError, match="non-empty YAML mapping"):
        load_label_map(bad)
    bad.write_text("Foo: monocyte\nfoo: lymphocyte\n")
    with pytest.raises(KnowledgeFileError, match="differ only in case"):
        load_label_map(bad)
    with pytest.raises(ValueError, match="not a canonical class id"):
        ont.map_labels(["x"], label_map={"x": "nonsense"})


# -- tolerance -------------------------------------------------------------------------------------


def test_tolerance(ont):
    assert ont.is_tolerable("band_neutrophil", "segmented_neutrophil")
    assert ont.is_tolerable("segmented_neutrophil", "band_neutrophil")  # symmetric
    assert ont.is_tolerable("blast", "blast")  # diagonal
    assert not ont.is_tolerable("promyelocyte", "metamyelocyte")  # two stages apart
    assert not ont.is_tolerable("blast", "lymphocyte")
    for stage in ERYTHROID_STAGES:
        assert ont.is_tolerable("erythroblast", stage)
    for a, b in zip(NEUTROPHIL_STAGES, NEUTROPHIL_STAGES[1:]):
        assert ont.is_tolerable(a, b)
    mask = ont.tolerance_mask(DEFAULT_CLASSES)
    assert mask.shape == (15, 15) and mask.diagonal().all() and (mask == mask.T).all()
    assert all(a in ont and b in ont for a, b in ont.tolerance_pairs)
    with pytest.raises(KeyError, match="NGB"):
        ont.is_tolerable("NGB", "band_neutrophil")


# -- matrices --------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["similarity", "severity"])
def test_matrix_shape_and_values(kind):
    m = load_matrix(kind)
    assert list(m.index) == list(m.columns) == list(DEFAULT_CLASSES)
    assert m.index.name == "true" and m.columns.name == "predicted"
    assert all(np.issubdtype(t, np.integer) for t in m.dtypes)
    off = m.to_numpy()[~np.eye(len(m), dtype=bool)]
    assert off.min() >= 1 and off.max() <= 5
    assert set(np.diag(m)) == {5 if kind == "similarity" else 0}


@pytest.mark.parametrize("kind", ["similarity", "severity"])
def test_matrices_are_asymmetric(kind):
    m = load_matrix(kind).to_numpy()
    assert (m != m.T).any()


def test_specific_asymmetries():
    sev = load_matrix("severity")
    assert sev.loc["blast", "promyelocyte"] > sev.loc["promyelocyte", "blast"]
    assert sev.loc["metamyelocyte", "band_neutrophil"] != sev.loc["band_neutrophil", "metamyelocyte"]
    sim = load_matrix("similarity")
    assert sim.loc["blast", "promyelocyte"] > sim.loc["promyelocyte", "blast"]


def test_adjacency_property():
    sim, sev = load_matrix("similarity"), load_matrix("severity")
    for a, b in zip(NEUTROPHIL_STAGES, NEUTROPHIL_STAGES[1:]):
        for t, p in ((a, b), (b, a)):
            assert sim.loc[t, p] == 5, (t, p)
            assert sev.loc[t, p] <= 2, (t, p)
    for a, b in zip(ERYTHROID_STAGES, ERYTHROID_STAGES[1:]):
        assert sev.loc[a, b] <= 2 and sev.loc[b, a] <= 2
    # Severity is low only for adjacent same-lineage stages; blast errors are the worst.
    ont = load_ontology()
    for t in DEFAULT_CLASSES:
        for p in DEFAULT_CLASSES:
            if t != p and sev.loc[t, p] <= 2:
                assert ont.lineage(t) == ont.lineage(p), (t, p)
    assert sev.loc["blast"].drop("blast").min() >= sev.drop("blast").drop(columns="blast").to_numpy().max() - 1
    assert (sev.loc["blast"].drop("blast") >= 4).all()


def test_matrix_restriction():
    m = load_matrix("severity", classes=["monocyte", "blast", "lymphocyte"])
    assert list(m.index) == list(m.columns) == ["monocyte", "blast", "lymphocyte"]
    assert m.loc["blast", "monocyte"] == load_matrix("severity").loc["blast", "monocyte"]
    with pytest.raises(KeyError, match=r"\['plasma_cell', 'artefact'\]"):
        load_matrix("similarity", classes=["blast", "plasma_cell", "artefact"])
    with pytest.raises(ValueError, match="unknown matrix kind 'similarty'"):
        load_matrix("similarty")


# -- validation of broken files --------------------------------------------------------------------


def _write_matrix(path: Path, df: pd.DataFrame) -> Path:
    df.to_csv(path)
    return path


@pytest.mark.parametrize("breakage, message", [
    (lambda d: d.drop(columns="blast"), "square"),
    (lambda d: d.rename(columns={"blast": "artefact"}), "row and column ids differ"),
    (lambda d: d.rename(index={"blast": "blastoid"}, columns={"blast": "blastoid"}),
     "unknown to the ontology: \\['blastoid'\\]"),
    (lambda d: d.replace({4: 7}), "value 7 outside 1..5"),
    (lambda d: d.astype(float).replace({4.0: 4.5}), "'4.5' is not an integer"),
    (lambda d: d.astype(object).replace({3: "x"}), "'x' is not an integer"),
])
def test_matrix_validation(tmp_path, breakage, message):
    df = breakage(load_matrix("severity"))
    path = _write_matrix(tmp_path / "severity.csv", df)
    with pytest.raises(KnowledgeFileError, match=message) as info:
        load_matrix("severity", path=path)
    assert str(path) in str(info.value)


def test_matrix_validation_names_cell(tmp_path):
    df = load_matrix("similarity")
    df.loc["blast", "monocyte"] = 0
    path = _write_matrix(tmp_path / "sim.csv", df)
    with pytest.raises(KnowledgeFileError, match="row 'blast', column 'monocyte': value 0 outside 1..5"):
        load_matrix("similarity", path=path)


@pytest.mark.parametrize("kind, value", [("similarity", 4), ("severity", 1)])
def test_matrix_diagonal_rule(tmp_path, kind, value):
    df = load_matrix(kind)
    df.loc["lymphocyte", "lymphocyte"] = value
    path = _write_matrix(tmp_path / f"{kind}.csv", df)
    with pytest.raises(KnowledgeFileError, match=f"diagonal of the {kind} matrix must be"):
        load_matrix(kind, path=path)


def test_matrix_accepts_permuted_columns(tmp_path):
    df = load_matrix("similarity")
    path = _write_matrix(tmp_path / "sim.csv", df[list(reversed(df.columns))])
    pd.testing.assert_frame_equal(load_matrix("similarity", path=path), df)


def test_copied_knowledge_loads(kdir):
    ont = load_ontology(kdir / "ontology.yaml")
    assert ont is not load_ontology() and ont.ids == load_ontology().ids
    assert ont.tolerance_pairs == load_ontology().tolerance_pairs


@pytest.mark.parametrize("breakage, message", [
    (lambda d: _cls(d, "blast").update(lineage="progenitor"), r"classes/blast.*lineage 'progenitor' is not declared"),
    (lambda d: _cls(d, "monocyte")["aliases"].update(matek=["MON", "PMO"]),
     r"alias 'PMO' \(dataset 'matek'\) maps to both 'promyelocyte' and 'monocyte'"),
    (lambda d: _cls(d, "lymphocyte")["aliases"].update(generic=["monocyte"]),
     r"alias 'monocyte' \(dataset 'generic'\)"),
    (lambda d: _cls(d, "myelocyte").update(maturity_rank=3), r"lineages/neutrophil.*maturity ranks \[0, 2, 3, 3, 4\]"),
    (lambda d: _cls(d, "myelocyte").update(maturity_rank="one"), r"classes/myelocyte.*non-negative int or null"),
    (lambda d: _cls(d, "myelocyte").pop("maturity_rank"), r"classes/myelocyte.*maturity_rank` is required"),
    (lambda d: _cls(d, "myelocyte").update(id="Myelocyte"), "must be snake_case"),
    (lambda d: d["classes"].append(dict(_cls(d, "blast"))), "class 'blast' declared twice"),
    (lambda d: _cls(d, "blast").update(colour="blue"), r"classes/blast.*unknown keys \['colour'\]"),
    (lambda d: d["default_classes"].append("megaloblast"), r"default_classes.*unknown ids \['megaloblast'\]"),
    (lambda d: d["lineages"][1].update(progenitor_of=["myeloid"]), "undeclared lineages"),
    (lambda d: d.update(clases=[]), r"unknown top-level keys \['clases'\]"),
])
def test_ontology_validation(kdir, breakage, message):
    path = kdir / "ontology.yaml"
    _edit_yaml(path, breakage)
    with pytest.raises(KnowledgeFileError, match=message) as info:
        load_ontology(path)
    assert str(path) in str(info.value)


def test_ontology_invalid_yaml(kdir):
    path = kdir / "ontology.yaml"
    path.write_text("classes: [\n  - id: blast\n")
    with pytest.raises(KnowledgeFileError, match="invalid YAML"):
        load_ontology(path)


@pytest.mark.parametrize("pairs, message", [
    ([["blast", "megaloblast"]], r"pairs\[0\].*unknown class id\(s\) \['megaloblast'\]"),
    ([["blast", "blast"]], "names one class twice"),
    ([["blast", "promyelocyte"], ["promyelocyte", "blast"]], r"pairs\[1\].*repeats pairs\[0\]"),
    ([["blast"]], "a pair is a list of two class ids"),
])
def test_tolerance_validation(kdir, pairs, message):
    (kdir / "tolerance.yaml").write_text(yaml.safe_dump({"pairs": pairs}))
    with pytest.raises(KnowledgeFileError, match=message) as info:
        load_ontology(kdir / "ontology.yaml")
    assert "tolerance.yaml" in str(info.value)


def test_explicit_tolerance_file(kdir, tmp_path):
    other = tmp_path / "other_tolerance.yaml"
    other.write_text("pairs:\n  - [monocyte, lymphocyte]\n")
    ont = load_ontology(kdir / "ontology.yaml", tolerance=other)
    assert ont.is_tolerable("lymphocyte", "monocyte")
    assert not ont.is_tolerable("band_neutrophil", "segmented_neutrophil")


def test_knowledge_files_are_packaged():
    names = {f.name for f in knowledge_files()}
    assert {"ontology.yaml", "tolerance.yaml", "similarity.csv", "severity.csv", "README.md"} <= names
    assert all(f.parent == KNOWLEDGE_DIR for f in knowledge_files())
