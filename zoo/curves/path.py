"""Bézier paths: evaluation and projection of points onto a curve ``l(t), t in [0, 1]``.

Every curve model of SMR (paper 001) is a Bézier path: the two lines are degree-1 paths (their two
control points are the line's ends, ``l(t) = a + t (b - a)``), the Bézier model has the class means
as control points. So one evaluation and one projection serve all three.

Projection ``p(x) = argmin_t ||x - l(t)||`` (the paper's root finding):

* degree 1: closed form, ``t = <x - a, b - a> / ||b - a||^2``;
* degree n > 1: the stationary points are the real roots in [0, 1] of the degree-(2n - 1) polynomial
  ``g(t) = <l(t) - x, l'(t)>``; together with the end points they are the candidates and the
  nearest one wins. The roots are the eigenvalues of the companion matrices, computed for every
  point at once (``numpy.linalg.eigvals`` on a stack) — scipy/numpy offer only one polynomial per
  call, which would be a Python loop over the batch.

:func:`project_torch` returns a *differentiable* ``t(x)`` for the projected loss: the root is found
without gradient and one Newton step ``t - g(t, x) / g'(t, x)`` is taken with gradient. At a root
``g = 0``, so the value does not change, and the gradient is exactly the implicit-function-theorem
derivative ``dt/dx = l'(t) / (||l'(t)||^2 + <l(t) - x, l''(t)>)``.
"""

from __future__ import annotations

from math import comb

import numpy as np
import torch


def bernstein(t: np.ndarray, degree: int) -> np.ndarray:
    """Bernstein basis ``B_{i,n}(t)``: (len(t), degree + 1)."""
    t = np.asarray(t, dtype=float)[:, None]
    i = np.arange(degree + 1)[None, :]
    coef = np.array([comb(degree, k) for k in range(degree + 1)], dtype=float)[None, :]
    return coef * t**i * (1.0 - t) ** (degree - i)


def power_coefficients(control: np.ndarray) -> np.ndarray:
    """Power-basis coefficients ``A`` with ``l(t) = sum_k A_k t^k``: (n + 1, D)."""
    control = np.asarray(control, dtype=float)
    n = len(control) - 1
    # A_k = C(n, k) * sum_i (-1)^(k - i) C(k, i) P_i
    out = np.zeros_like(control)
    for k in range(n + 1):
        s = sum((-1) ** (k - i) * comb(k, i) * control[i] for i in range(k + 1))
        out[k] = comb(n, k) * s
    return out


def evaluate(control: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Points ``l(t)`` of the path with ``control`` points (K, D), for t of shape (N,): (N, D)."""
    control = np.asarray(control, dtype=float)
    return bernstein(np.atleast_1d(t), len(control) - 1) @ control


def project(control: np.ndarray, x: np.ndarray, *, clamp: bool = True) -> np.ndarray:
    """Curve parameter of the point of the path nearest to each row of ``x`` (N, D): (N,).

    ``clamp=False`` (lines only) returns the parameter on the infinite line."""
    control = np.asarray(control, dtype=float)
    x = np.asarray(x, dtype=float)
    if x.ndim != 2 or x.shape[1] != control.shape[1]:
        raise ValueError(f"points must be (N, {control.shape[1]}) to project onto this curve, got {x.shape}")
    degree = len(control) - 1
    if degree < 1:
        raise ValueError("a curve needs at least 2 control points")
    if degree == 1:
        a, d = control[0], control[1] - control[0]
        t = (x - a) @ d / max(float(d @ d), 1e-24)
        return np.clip(t, 0.0, 1.0) if clamp else t
    if not clamp:
        raise ValueError("only lines can be projected without clamping (a Bézier curve is defined on [0, 1])")
    if len(x) == 0:
        return np.zeros(0)
    A = power_coefficients(control)                      # l(t)  = sum_k A_k t^k
    B = A[1:] * np.arange(1, degree + 1)[:, None]        # l'(t) = sum_j B_j t^j
    # g(t) = <l(t) - x, l'(t)>: coefficient of t^m is sum_{k+j=m} <A_k, B_j> - [k=0] <x, B_j>
    gram = A @ B.T                                       # (n+1, n)
    m = 2 * degree - 1
    base = np.zeros(m + 1)
    for k in range(degree + 1):
        for j in range(degree):
            base[k + j] += gram[k, j]
    coeffs = np.repeat(base[None, :], len(x), 0)         # ascending powers, (N, m+1)
    coeffs[:, :degree] -= x @ B.T
    lead = coeffs[:, -1]
    candidates = [np.zeros((len(x), 1)), np.ones((len(x), 1))]
    ok = np.abs(lead) > 1e-12 * np.abs(coeffs).max(1).clip(min=1e-300)
    if ok.any():
        c = coeffs[ok] / lead[ok, None]
        companion = np.zeros((int(ok.sum()), m, m))
        companion[:, 1:, :-1] = np.eye(m - 1)
        companion[:, :, -1] = -c[:, :-1]
        roots = np.linalg.eigvals(companion)             # (n_ok, m)
        real = np.where(np.abs(roots.imag) < 1e-7, roots.real, np.nan)
        full = np.full((len(x), m), np.nan)
        full[ok] = real
        candidates.append(np.clip(full, 0.0, 1.0))
    if (~ok).any():  # degenerate (e.g. coincident control points): dense search is good enough
        grid = np.linspace(0, 1, 513)
        pts = evaluate(control, grid)
        d = ((x[~ok, None, :] - pts[None]) ** 2).sum(-1)
        extra = np.full((len(x), 1), np.nan)
        extra[~ok, 0] = grid[d.argmin(1)]
        candidates.append(extra)
    cand = np.concatenate(candidates, axis=1)            # (N, K)
    cand_safe = np.nan_to_num(cand, nan=0.0)
    pts = np.einsum("nkb,bd->nkd", bernstein(cand_safe.ravel(), degree).reshape(*cand.shape, degree + 1), control)
    dist = ((pts - x[:, None, :]) ** 2).sum(-1)
    dist[np.isnan(cand)] = np.inf
    return cand_safe[np.arange(len(x)), dist.argmin(1)]


# --- torch (losses) --------------------------------------------------------------------------


def bernstein_torch(t: torch.Tensor, degree: int) -> torch.Tensor:
    i = torch.arange(degree + 1, device=t.device, dtype=t.dtype)
    coef = torch.tensor([comb(degree, k) for k in range(degree + 1)], device=t.device, dtype=t.dtype)
    t = t[:, None]
    return coef * t**i * (1.0 - t) ** (degree - i)


def evaluate_torch(control: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """``l(t)`` for a tensor of parameters (N,): (N, D); differentiable in both arguments."""
    return bernstein_torch(t, control.shape[0] - 1) @ control


def _derivative_control(control: torch.Tensor) -> torch.Tensor:
    n = control.shape[0] - 1
    return n * (control[1:] - control[:-1])


def project_torch(control: torch.Tensor, x: torch.Tensor, *, clamp: bool = True) -> torch.Tensor:
    """Differentiable projection parameter ``t(x)`` (N,) — see the module docstring."""
    degree = control.shape[0] - 1
    control = control.to(dtype=x.dtype, device=x.device)
    if degree == 1:
        a, d = control[0], control[1] - control[0]
        t = (x - a) @ d / (d @ d).clamp_min(1e-24)
        return t.clamp(0.0, 1.0) if clamp else t
    t0 = torch.as_tensor(project(control.detach().cpu().numpy(), x.detach().cpu().numpy()),
                         dtype=x.dtype, device=x.device)
    d1 = _derivative_control(control)
    d2 = _derivative_control(d1)
    diff = evaluate_torch(control, t0) - x
    tangent = evaluate_torch(d1, t0)
    g = (diff * tangent).sum(1)
    dg = (tangent * tangent).sum(1) + (diff * evaluate_torch(d2, t0)).sum(1)
    interior = (t0 > 0.0) & (t0 < 1.0) & (dg > 1e-12)
    step = t0 - g / torch.where(interior, dg, torch.ones_like(dg))
    return torch.where(interior, step, t0).clamp(0.0, 1.0)
