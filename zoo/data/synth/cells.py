"""One nucleated cell: its morphology as a function of lineage and maturity (:func:`morphology`)
and its drawing into stain-concentration maps (:func:`draw_cell`)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import config
from .render import (F, Window, blob_sdf, coverage, disc_points, points_sdf, smooth_noise, splat,
                     tube_sdf)


@dataclass
class Morph:
    """Everything needed to draw one cell; lengths in µm, angles in radians."""

    lineage: str
    maturity: float
    p: dict[str, float]          # programme parameters after per-cell scatter (see config.DEFAULTS)
    outline_amps: np.ndarray     # harmonic amplitudes k = 2.. of the cell outline
    outline_phases: np.ndarray
    n_lobes: int
    s_shaped: bool
    n_nucleoli: int
    n_vacuoles: int


def programme(lineage: str, maturity: float) -> dict[str, float]:
    """The typical cell of ``lineage`` at ``maturity``: keyframes interpolated linearly."""
    try:
        prog = config.PROGRAMS[lineage]
    except KeyError:
        raise ValueError(f"no morphology programme for lineage {lineage!r}; "
                         f"programmes: {', '.join(config.PROGRAMS)}") from None
    knots = prog["knots"]
    out = dict(config.DEFAULTS)
    for name, values in prog.items():
        if name != "knots":
            out[name] = float(np.interp(maturity, knots, values))
    return out


def morphology(lineage: str, maturity: float, rng: np.random.Generator, jitter: float = 1.0) -> Morph:
    """A concrete cell: the programme at ``maturity`` with per-cell scatter (scaled by ``jitter``)."""
    p = programme(lineage, maturity)
    for name, (kind, sd) in config.JITTER.items():
        z = rng.normal(0.0, sd * jitter)
        p[name] = p[name] * float(np.exp(z)) if kind == "rel" else p[name] + z
    for name, (lo, hi) in config.LIMITS.items():
        p[name] = min(max(p[name], lo), hi)
    for name in ("diameter", "nuc_density", "azure", "eosin", "neutral", "azuro", "specific", "eo",
                 "baso", "fold", "outline", "vacuoles", "nucleoli", "blebs"):
        p[name] = max(p[name], 0.0)
    n_harm = 4
    amps = rng.random(n_harm) * p["outline"] / np.arange(1, n_harm + 1) ** 0.7
    if p["blebs"] > 0:  # proerythroblast "ears": one higher harmonic with a visible amplitude
        amps = np.append(amps, [0.0, 0.0, p["blebs"] * 0.06 * rng.random()])
    phases = rng.random(len(amps)) * 2 * np.pi
    lobes = 1
    if p["pinch"] > 0.3:
        lobes = int(np.clip(np.rint(p["lobes"] + rng.normal(0, 0.55 * jitter)), 2, 5))
    return Morph(
        lineage=lineage, maturity=float(maturity), p=p, outline_amps=amps, outline_phases=phases,
        n_lobes=lobes, s_shaped=bool(rng.random() < p["s_shape"]),
        n_nucleoli=int(min(rng.poisson(p["nucleoli"]), 4)), n_vacuoles=int(min(rng.poisson(p["vacuoles"]), 8)),
    )


def nucleus_centreline(m: Morph, r_eq: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Disc centres and radii (pixels, nucleus frame centred on 0) of the nucleus tube.

    A round nucleus is one disc. Otherwise the centre line is an arc of length ``length * r_eq``
    turning by ``bend`` (S-shaped when ``s_shaped``); as ``pinch`` -> 1 the thickness is modulated
    into ``n_lobes`` round lobes (and the line shortened so lobes are about as long as wide). The
    thickness is solved so the nuclear area stays that of a disc of radius ``r_eq``.
    """
    p = m.p
    length = p["length"] * r_eq
    if length < 0.08 * r_eq:
        return np.zeros((1, 2)), np.array([r_eq])
    area = np.pi * r_eq * r_eq
    pinch = p["pinch"]
    n = m.n_lobes
    lobed = pinch > 0.3 and n > 1
    w = (pinch - 0.3) / 0.7 if lobed else 0.0
    elong = 1.3  # lobes are ovals along the centre line
    if lobed:  # n oval lobes of width rho sharing the area, a narrow gap between them
        rho = r_eq / np.sqrt(n * elong * 0.85) * np.exp(rng.normal(0, 0.1, n))
        length = (1 - w) * length + w * 2.25 * elong * float(rho.mean()) * (n - 1)
    k = 32
    s = np.linspace(-0.5, 0.5, k) * length
    # long lobe chains curl up (a rosette) instead of running straight across the cell
    kappa = p["bend"] * (1 + 0.35 * max(n - 2, 0) * w) / length
    heading = kappa * (np.abs(s) if m.s_shaped and n < 4 else s)
    if lobed:  # lobes do not sit on a perfect arc
        heading = heading + np.cumsum(rng.normal(0, 0.15 * pinch, k))
    ds = length / (k - 1)
    x, y = np.cumsum(np.cos(heading)) * ds, np.cumsum(np.sin(heading)) * ds
    pts = np.stack([x - x.mean(), y - y.mean()], axis=1)
    if 0 < pinch and not lobed:  # a band starting to constrict: gentle waists along the tube
        prof = 1 - pinch * 0.5 * (1 + np.cos(2 * np.pi * rng.random() + 6 * np.pi * s / length))
    else:
        prof = np.ones(k)
    # area of a tube ~ pi t^2 p_0 p_end (round ends) + 2 t L mean(prof): solve for t
    qa = np.pi * prof[0] * prof[-1]
    qb = 2 * length * prof.mean()
    t = (-qb + np.sqrt(qb * qb + 4 * qa * area)) / (2 * qa)
    radii = t * prof
    if lobed:
        # discs of radius rho - d/elong at distance d from a lobe centre fill a lens-shaped oval
        # (a circle when elong = 1); a thin chromatin filament remains between lobes
        centres = np.linspace(-0.5, 0.5, n) * length
        d = np.abs(s[:, None] - centres[None, :])
        j = d.argmin(axis=1)
        lobes = np.maximum(rho[j] - d[np.arange(k), j] / elong, 0.1 * rho[j])
        radii = (1 - w) * radii + w * lobes
    return pts, radii


def packed_points(rng: np.random.Generator, radius: float, spacing: float) -> tuple[np.ndarray, np.ndarray]:
    """Points on a randomly rotated, jittered hexagonal grid inside a disc (dense, even granules)."""
    spacing = max(spacing, 0.8)
    k = int(np.ceil(radius / spacing)) + 1
    i, j = np.meshgrid(np.arange(-k, k + 1), np.arange(-k, k + 1))
    x = (i + 0.5 * (j % 2)) * spacing
    y = j * spacing * np.sqrt(3) / 2
    t = rng.random() * 2 * np.pi
    x, y = x * np.cos(t) - y * np.sin(t), x * np.sin(t) + y * np.cos(t)
    x = x.ravel() + rng.normal(0, 0.18 * spacing, x.size)
    y = y.ravel() + rng.normal(0, 0.18 * spacing, y.size)
    inside = np.hypot(x, y) < radius
    return x[inside], y[inside]


@dataclass
class Drawn:
    """Where a cell landed: its window, coverages (window-sized) and a few measurements."""

    window: Window
    cell: np.ndarray
    nucleus: np.ndarray


def draw_cell(m: Morph, maps: dict[str, np.ndarray], cx: float, cy: float, ppu: float,
              rng: np.random.Generator) -> Drawn | None:
    """Add cell ``m`` centred at (cx, cy) (frame pixels) into the stain ``maps``; ``ppu`` = pixels
    per µm. Returns None when the cell falls outside the frame."""
    p = m.p
    size = next(iter(maps.values())).shape[0]
    radius = 0.5 * p["diameter"] * ppu
    reach = radius * (1 + float(np.abs(m.outline_amps).sum())) + 2
    win = Window.around(cx, cy, reach, size)
    if win is None:
        return None
    x, y = win.grid()
    sl = win.slices
    shape = win.shape
    sdf_c = blob_sdf(x, y, cx, cy, radius, m.outline_amps, m.outline_phases)
    cell = coverage(sdf_c)

    # -- nucleus geometry ------------------------------------------------------------------------
    r_eq = radius * np.sqrt(p["nuc_frac"])
    pts, radii = nucleus_centreline(m, r_eq, rng)
    ax = float(np.sqrt(p["aspect"]))
    extent = float(np.max(np.hypot(pts[:, 0], pts[:, 1]) + radii)) * ax
    allowed = radius * (1 - float(np.abs(m.outline_amps).sum())) * 0.93 - 0.6
    if extent > allowed:  # bent tubes or big nuclei that would poke out of the cell: shrink to fit
        scale = allowed / extent
        pts, radii, extent = pts * scale, radii * scale, allowed
    psi = rng.random() * 2 * np.pi
    off = p["ecc"] * max(allowed - extent, 0.0)
    ncx, ncy = cx + off * np.cos(psi), cy + off * np.sin(psi)
    rot = rng.random() * 2 * np.pi
    cr, sr = np.cos(rot), np.sin(rot)
    dx, dy = x - F(ncx), y - F(ncy)
    u = (dx * F(cr) + dy * F(sr)) / F(ax)
    v = (-dx * F(sr) + dy * F(cr)) * F(ax)
    sdf_n = tube_sdf(u, v, pts, radii)
    low = smooth_noise(rng, shape, 1.0 * ppu)  # ~1 µm: cytoplasm mottling, slight nuclear unevenness
    if p["fold"] > 0.06:  # real folds (monocytes, basophils): smooth, on the scale of the nucleus
        sdf_n = sdf_n + F(p["fold"] * r_eq) * smooth_noise(rng, shape, max(0.4 * r_eq, 1.0))
    elif p["fold"] > 0:
        sdf_n = sdf_n + F(p["fold"] * r_eq) * low
    nuc = np.minimum(coverage(sdf_n), cell)

    # -- chromatin ---------------------------------------------------------------------------------
    fine = smooth_noise(rng, shape, 0.22 * ppu)
    clumps = np.tanh(1.6 * smooth_noise(rng, shape, 0.55 * ppu))
    c = p["coarse"]
    texture = (1 - c) * fine + c * clumps
    contrast = 0.1 + 0.5 * c
    if p["nuc_density"] > 1.3:  # pyknosis: chromatin condenses into a homogeneous dark mass
        contrast *= float(np.clip(1.0 - (p["nuc_density"] - 1.3) * 2.5, 0.2, 1.0))
    conc_n = nuc * F(p["nuc_density"]) * np.clip(1 + F(contrast) * texture, 0.15, 2.2)
    conc_n *= 1 + F(0.12) * np.exp(np.minimum(sdf_n, 0) / F(0.5 * ppu))  # chromatin along the membrane
    azure_extra = np.zeros(shape, dtype=F)
    for _ in range(m.n_nucleoli):
        i = rng.integers(len(pts))
        ox, oy = disc_points(rng, 1, 0.45 * radii[i])
        nu, nv = pts[i, 0] + ox[0], pts[i, 1] + oy[0]
        rr = 0.5 * p["nucleolus_um"] * ppu * (0.75 + 0.5 * rng.random())
        nol = coverage(np.sqrt((u - F(nu)) ** 2 + (v - F(nv)) ** 2) - F(rr), soft=1.6) * nuc
        conc_n *= 1 - F(0.55) * nol
        azure_extra += F(0.35) * nol
    maps["nucleus"][sl] += conc_n

    # -- cytoplasm -----------------------------------------------------------------------------------
    cyto = cell - nuc * F(0.6)  # the nucleus displaces most, not all, cytoplasm above and below it
    base = cyto * (1 + F(0.1) * low) * (1 + F(p["rim"]) * np.exp(np.minimum(sdf_c, 0) / F(1.0 * ppu)))
    if p["golgi"] > 0.02:  # pale paranuclear zone on the side of the cell centre
        gx, gy = (ncx - cx, ncy - cy) if off > 0.5 else (np.cos(psi + np.pi), np.sin(psi + np.pi))
        norm = np.hypot(gx, gy) or 1.0
        hx, hy = ncx - gx / norm * (extent + 0.1 * radius), ncy - gy / norm * (extent + 0.1 * radius)
        g = np.exp(-((x - F(hx)) ** 2 + (y - F(hy)) ** 2) / F(2 * (0.22 * radius) ** 2))
        base *= 1 - F(p["golgi"]) * g
    if p["halo"] > 0.02:  # perinuclear clear ring of erythroblasts
        base *= 1 - F(p["halo"]) * np.exp(-np.maximum(sdf_n, 0) / F(0.7 * ppu)) * (1 - nuc)
    for _ in range(m.n_vacuoles):
        vx, vy = disc_points(rng, 1, 0.8 * radius)
        vr = (0.35 + 0.5 * rng.random()) * ppu
        vac = coverage(np.sqrt((x - F(cx + vx[0])) ** 2 + (y - F(cy + vy[0])) ** 2) - F(vr), soft=1.2)
        base *= 1 - F(0.8) * vac * (1 - nuc)
    base = np.maximum(base, 0)
    maps["azure"][sl] += base * F(p["azure"]) + azure_extra
    maps["eosin"][sl] += base * F(p["eosin"])
    maps["neutral"][sl] += base * F(p["neutral"])
    if p["specific"] > 0:  # fine specific granules: below resolution, a grainy pinkish texture
        maps["specific"][sl] += base * F(p["specific"]) * np.clip(0.7 + 0.5 * fine, 0, None) * (1 - nuc)

    # -- granules ------------------------------------------------------------------------------------
    area_um2 = np.pi * (0.5 * p["diameter"]) ** 2
    for kind, over_nucleus in (("azuro", 0.8), ("eo", 0.25), ("baso", 0.9)):
        dens = p[kind]
        if dens <= 0:
            continue
        if kind == "eo":  # eosinophil granules fill the cytoplasm evenly: a jittered hexagonal packing
            gx, gy = packed_points(rng, 0.9 * radius, 1.35 * p["eo_um"] * ppu / np.sqrt(dens))
            n = len(gx)
        else:
            n = int(rng.poisson(dens * area_um2))
            gx, gy = disc_points(rng, n, 0.9 * radius)
        if n == 0:
            continue
        gx, gy = gx + cx, gy + cy
        # keep granules off the nucleus except a share ``over_nucleus`` (the rest lie beside it)
        gu = ((gx - ncx) * cr + (gy - ncy) * sr) / ax
        gv = (-(gx - ncx) * sr + (gy - ncy) * cr) * ax
        on_nuc = points_sdf(gu, gv, pts, radii) < 0
        keep = ~on_nuc | (rng.random(n) < over_nucleus)
        gx, gy = gx[keep], gy[keep]
        size_px = p[f"{kind}_um"] * ppu * (0.8 + 0.4 * rng.random())
        w = ((0.6 + 0.3 * rng.random(len(gx))) if kind == "eo" else (0.55 + 0.6 * rng.random(len(gx)))).astype(F)
        dots = splat(shape, gx - win.x0, gy - win.y0, w, 0.5 * size_px)
        maps[kind][sl] += np.minimum(dots, 1.6) * cell
    return Drawn(window=win, cell=cell, nucleus=nuc)
