"""A toy with known probabilities for the conformal tests: cells whose true class is drawn from
the model's own probabilities (a perfectly calibrated model), with a sharpness knob."""

from __future__ import annotations

import numpy as np


def softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def draw_labels(probs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One class per row drawn from that row's probabilities."""
    u = rng.random(len(probs))[:, None]
    return np.minimum((probs.cumsum(axis=1) < u).sum(axis=1), probs.shape[1] - 1)


def calibrated_toy(n: int, n_classes: int, sharpness: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(probs, y): y ~ Categorical(probs); higher ``sharpness`` = a better model."""
    rng = np.random.default_rng(seed)
    probs = softmax(sharpness * rng.normal(size=(n, n_classes)))
    return probs, draw_labels(probs, rng)
