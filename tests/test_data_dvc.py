"""The DVC pipeline files are consistent with the data layer (and DVC itself can read them)."""

from pathlib import Path

import pytest
import yaml

from zoo.data.cli import PREPARE_KEYS, load_dataset_params
from zoo.data.readers import READERS

ROOT = Path(__file__).resolve().parents[1]


def test_params_and_stages_agree():
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    datasets = load_dataset_params(ROOT / "params.yaml")
    assert "synth" in datasets
    for name, cfg in datasets.items():
        assert set(cfg) <= PREPARE_KEYS and cfg["reader"] in READERS, name
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    assert stages["synth"]["outs"] == ["${synth.out}"] and "zoo data synth --no-ingest" in stages["synth"]["cmd"]
    assert stages["prepare"]["foreach"] == "${datasets}"
    assert stages["prepare"]["do"]["outs"] == ["data/prepared/${key}"]
    assert "${item.source}" in stages["prepare"]["do"]["deps"]
    for dep in stages["prepare"]["do"]["deps"][1:] + stages["synth"]["deps"]:
        assert (ROOT / dep).exists(), dep  # code the prepared data depends on
    # data.dvc imports the synth stage's output into the folder the default dataset is read from
    data_dvc = yaml.safe_load((ROOT / "data.dvc").read_text())
    assert data_dvc["deps"][0]["path"] == params["synth"]["out"]
    assert data_dvc["outs"][0]["path"] == datasets["synth"]["source"]
    assert "frozen" not in data_dvc  # `dvc repro` must refresh it


def test_dvc_reads_the_pipeline():
    pytest.importorskip("dvc")
    from dvc.repo import Repo

    with Repo(str(ROOT)) as repo:
        names = {s.addressing for s in repo.index.stages}
        assert {"synth", "prepare@synth", "data.dvc"} <= names
        graph = repo.index.graph
        by_name = {s.addressing: s for s in repo.index.stages}
        # prepare@synth depends on data.dvc, which depends on synth
        assert graph.has_edge(by_name["prepare@synth"], by_name["data.dvc"])
        assert graph.has_edge(by_name["data.dvc"], by_name["synth"])
