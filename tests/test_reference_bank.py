"""Reference banks: nearest references, SOM order, near-duplicate exclusion, vote, persistence."""

from __future__ import annotations

import numpy as np
import pytest

from zoo.reference import ReferenceBank, image_ahash
from zoo.reference.metrics import precision_at_k
from zoo.som import BatchSOM


def two_class_bank(n=20, seed=0, som=None):
    rng = np.random.default_rng(seed)
    v = np.concatenate([rng.normal(0, 0.2, (n, 4)), rng.normal(3, 0.2, (n, 4))]).astype(np.float32)
    labels = ["a"] * n + ["b"] * n
    ids = [f"r{i}" for i in range(2 * n)]
    # distinct hashes far apart from each other (one bit set per row, 64 rows max)
    ahash = [f"{(1 << i) | (1 << ((i + 17) % 64)) | (1 << ((i + 41) % 64)):016x}" for i in range(2 * n)]
    return ReferenceBank.build(v, labels, ids, ahash=ahash, som=som), v


def test_eight_nearest_references_by_mse_are_in_distance_order():
    bank, v = two_class_bank()
    res = bank.query(v[:1] + 0.01, k=8)
    assert res.indices.shape == (1, 8)
    assert set(bank.labels[res.indices[0]]) == {"a"}
    assert np.all(np.diff(res.distances[0]) >= 0)
    expected = ((v - (v[0] + 0.01)) ** 2).mean(1)
    np.testing.assert_allclose(res.distances[0], np.sort(expected)[:8], rtol=1e-4, atol=1e-6)


def test_references_exclude_near_duplicates_of_the_query():
    bank, v = two_class_bank()
    q_hash = bank.ahash[3]
    near = f"{int(q_hash, 16) ^ 0b11:016x}"   # 2 bits away from row 3: a near-duplicate
    res = bank.query(v[3:4], ahashes=[near], k=8)
    assert 3 not in res.indices[0]
    assert "r3" not in bank.ids[res.indices[0]]
    # without the hash the identical vector is the first reference
    assert bank.query(v[3:4], k=8).indices[0, 0] == 3
    # three bits away is not a duplicate
    far = f"{int(q_hash, 16) ^ 0b111:016x}"
    assert bank.query(v[3:4], ahashes=[far], k=8).indices[0, 0] == 3
    # the query's own id is excluded too
    assert 3 not in bank.query(v[3:4], ids=["r3"], k=8).indices[0]


def test_build_drops_near_duplicates_within_a_class_only():
    v = np.zeros((4, 2), np.float32)
    bank = ReferenceBank.build(v, ["a", "a", "b", "a"], ["x", "y", "z", "w"],
                               ahash=["ff00000000000000", "ff00000000000001", "ff00000000000000", "00000000000000ff"])
    assert bank.ids.tolist() == ["x", "z", "w"]


def test_image_ahash_matches_manifest_rule():
    img = np.zeros((32, 32, 3), np.uint8)
    img[8:24, 8:24] = 255
    h = image_ahash(img)
    assert len(h) == 16 and int(h, 16) != 0


def test_som_references_take_the_node_first_then_nearest_nodes():
    rng = np.random.default_rng(1)
    x = np.concatenate([rng.normal(0, 0.2, (30, 3)), rng.normal(4, 0.2, (30, 3))]).astype(np.float32)
    som = BatchSOM(4, 4, epochs=8, device="cpu").fit(x)
    bank = ReferenceBank.build(x, ["a"] * 30 + ["b"] * 30, [f"c{i}" for i in range(60)], som=som)
    q = x[:1]
    res = bank.query(q, k=8, method="som")
    node = som.predict(q)[0]
    members = bank.node_members(node)
    got = res.indices[0]
    head = got[:min(8, len(members))]
    np.testing.assert_array_equal(head, members[:len(head)])     # own node first, by quantization error
    cols = 4
    grid = [np.hypot(*np.subtract(divmod(int(bank.node[i]), cols), divmod(int(node), cols))) for i in got]
    assert grid == sorted(grid)
    assert set(bank.labels[got]) == {"a"}


def test_vote_confidence_and_label_distribution():
    bank, v = two_class_bank()
    res = bank.query(v[[0, 25]], k=8)
    labels, conf = bank.vote(res)
    assert labels == ["a", "b"] and conf.tolist() == [1.0, 1.0]
    dist = bank.label_distribution(v[:1], n=30)[0]
    assert dist["a"] == pytest.approx(20 / 30) and dist["b"] == pytest.approx(10 / 30)
    assert precision_at_k(bank.labels[res.indices], ["a", "a"]) == pytest.approx(0.5)


def test_bank_roundtrip_without_pickle(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(30, 3)).astype(np.float32)
    bank = ReferenceBank.build(x, ["a", "b", "c"] * 10, [f"i{k}" for k in range(30)],
                               som=BatchSOM(3, 3, epochs=3, device="cpu").fit(x))
    bank.save(tmp_path)
    with np.load(tmp_path / "bank.npz", allow_pickle=False) as z:   # would raise on object arrays
        assert z["labels"].dtype.kind == "U"
    back = ReferenceBank.load(tmp_path, device="cpu")
    for method in ("mse", "som"):
        np.testing.assert_array_equal(back.query(x[:5], method=method).indices, bank.query(x[:5], method=method).indices)


def test_errors_name_the_problem():
    bank, v = two_class_bank()
    with pytest.raises(ValueError, match="valid: mse, som"):
        bank.query(v[:1], method="cosine")
    with pytest.raises(RuntimeError, match="needs a bank with a SOM"):
        bank.query(v[:1], method="som")
    with pytest.raises(ValueError, match="must be unique"):
        ReferenceBank(np.zeros((2, 2)), ["a", "b"], ["x", "x"])
