"""ROTMES and reference precision."""

from __future__ import annotations

import numpy as np
import pytest

from zoo.reference.metrics import precision_at_k, precision_at_k_per_class, rotmes


def images(n=12, size=16, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8), ["a", "b", "c"] * (n // 3)


def test_rotmes_is_zero_for_an_invariant_feature_map():
    imgs, labels = images()
    # per-channel mean and sorted intensities: unchanged by rotation by 90 degrees and by flips
    embed = lambda x: np.concatenate([x.mean((1, 2)), np.sort(x.reshape(len(x), -1), 1)[:, ::37]], 1)
    out = rotmes(embed, imgs, labels)
    assert out["rotmes"] == 0.0
    assert set(out) == {"rotmes", "rotmes/a", "rotmes/b", "rotmes/c"}


def test_rotmes_is_positive_for_a_position_sensitive_map_and_per_class():
    imgs, labels = images()
    embed = lambda x: x[:, :4, :4].reshape(len(x), -1).astype(np.float64)   # top-left corner pixels
    out = rotmes(embed, imgs, labels, per_class=2)
    assert out["rotmes"] > 100.0
    assert out["rotmes"] == pytest.approx(np.mean([out["rotmes/a"], out["rotmes/b"], out["rotmes/c"]]))


def test_rotmes_checks_input():
    with pytest.raises(ValueError, match=r"\(N, H, W, 3\)"):
        rotmes(lambda x: x, np.zeros((2, 4, 4)), ["a", "b"])


def test_precision_at_k():
    refs = np.array([["a", "a", "b", "a"], ["b", None, "b", "b"]], dtype=object)
    assert precision_at_k(refs, ["a", "b"]) == pytest.approx((3 + 3) / 8)
    per = precision_at_k_per_class(refs, ["a", "b"])
    assert per == {"precision_at_4/a": 0.75, "precision_at_4/b": 0.75}
    with pytest.raises(ValueError, match="2 query labels for 1"):
        precision_at_k(refs[:1], ["a", "b"])
