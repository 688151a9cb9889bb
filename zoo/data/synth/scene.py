"""A whole patch: the slide's stain and illumination, red cells, platelets and partial neighbour
cells around the central cell, and the camera."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from . import config
from .cells import Drawn, draw_cell, morphology
from .render import F, Window, blob_sdf, camera, compose, coverage, disc_points, rgb_to_od, smooth_noise, splat


@dataclass(frozen=True)
class SlideStyle:
    """How one simulated slide (a ``group``) was stained, lit and photographed."""

    slide: str
    stains: dict[str, tuple[float, float, float]]   # OD at unit concentration per component
    background: tuple[float, float, float]          # white point, 0..255
    vignette: float                                 # brightness loss in the corners (fraction)
    vignette_centre: tuple[float, float]            # in patch-widths from the centre
    blur_um: float                                  # focus blur (Gaussian sigma)
    noise_sd: float                                 # sensor noise, grey levels
    jpeg_quality: int
    magnification: float                            # relative to config.FIELD_UM framing
    density_factor: float                           # thin vs thick smear area
    plasma: float                                   # proteinaceous background film
    rbc_conc: float
    rbc_pallor: float

    def to_dict(self) -> dict:
        d = asdict(self)
        d["stains"] = {k: [round(float(x), 5) for x in v] for k, v in self.stains.items()}
        return d


def make_slide(seed: int, k: int) -> SlideStyle:
    """Slide ``k`` of a run: stain vectors jittered by a common channel mix (hue/saturation
    shift) and per-component strength, a background tint, vignetting, focus, noise and JPEG."""
    rng = np.random.default_rng([int(seed), int(k), 0x511DE])
    mix = np.eye(3) + rng.normal(0, 0.06, (3, 3))          # hue shift shared by all stains
    strength = rng.uniform(0.8, 1.2)                          # staining time
    blue_red = rng.normal(0, 0.12)                            # azure vs eosin balance (buffer pH)
    stains = {}
    for name, rgb in config.STAIN_RGB.items():
        od = mix @ rgb_to_od(rgb).astype(np.float64)
        od *= strength * np.exp(rng.normal(0, 0.05, 3))
        if name in ("azure", "nucleus", "baso"):
            od *= np.exp(blue_red)
        elif name in ("eosin", "eo", "rbc", "specific"):
            od *= np.exp(-blue_red)
        stains[name] = tuple(float(x) for x in np.clip(od, 0.005, None))
    bg = np.asarray(config.BACKGROUNDS[rng.integers(len(config.BACKGROUNDS))], float)
    bg = np.clip(bg + rng.normal(0, 5, 3), 150, 255)
    return SlideStyle(
        slide=f"slide_{k:02d}",
        stains=stains,
        background=tuple(float(x) for x in bg),
        vignette=float(rng.uniform(0.0, 0.2)),
        vignette_centre=tuple(float(x) for x in rng.normal(0, 0.25, 2)),
        blur_um=float(rng.uniform(0.06, 0.26)),
        noise_sd=float(rng.uniform(0.8, 3.5)),
        jpeg_quality=int(rng.integers(72, 96)),
        magnification=float(rng.uniform(0.94, 1.06)),
        density_factor=float(rng.uniform(0.6, 1.4)),
        plasma=float(rng.uniform(0.0, 0.35)),
        rbc_conc=float(rng.uniform(0.55, 0.95)),
        rbc_pallor=float(rng.uniform(0.3, 0.65)),
    )


def make_slides(seed: int, n_slides: int) -> list[SlideStyle]:
    return [make_slide(seed, k) for k in range(n_slides)]


def _add_red_cell(maps, cx, cy, radius, slide: SlideStyle, rng) -> None:
    size = maps["rbc"].shape[0]
    win = Window.around(cx, cy, radius * 1.12 + 2, size)
    if win is None:
        return
    x, y = win.grid()
    amps, phases = rng.random(2) * 0.04, rng.random(2) * 2 * np.pi
    sdf = blob_sdf(x, y, cx, cy, radius, amps, phases)
    cov = coverage(sdf)
    rho2 = ((x - F(cx)) ** 2 + (y - F(cy)) ** 2) / F(radius * radius)
    pallor = slide.rbc_pallor * (0.7 + 0.6 * rng.random())
    # biconcave disc: thick rim, thin centre (central pallor)
    profile = 1 - F(pallor) * np.exp(-rho2 / F(0.22))
    maps["rbc"][win.slices] += cov * profile * F(slide.rbc_conc * (0.85 + 0.3 * rng.random()))


def _add_platelet(maps, cx, cy, ppu, rng) -> None:
    size = maps["azuro"].shape[0]
    radius = (0.8 + 0.8 * rng.random()) * ppu
    win = Window.around(cx, cy, radius + 3, size)
    if win is None:
        return
    x, y = win.grid()
    amps, phases = rng.random(3) * 0.25, rng.random(3) * 2 * np.pi
    cov = coverage(blob_sdf(x, y, cx, cy, radius, amps, phases), soft=1.3)
    maps["azure"][win.slices] += cov * F(0.25)
    n = int(rng.integers(3, 9))
    gx, gy = disc_points(rng, n, 0.7 * radius)
    dots = splat(win.shape, gx + cx - win.x0, gy + cy - win.y0, np.full(n, 0.9, F), 0.3 * ppu)
    maps["azuro"][win.slices] += dots * cov


def render_patch(cell: dict, slide: SlideStyle, img_size: int, seed: int, difficulty: float = 1.0,
                 neighbour_pool: tuple[tuple[str, float, float, float], ...] = ()) -> tuple[np.ndarray, np.ndarray, dict]:
    """Render one patch. ``cell`` holds ``cell_index``, ``lineage``, ``maturity``, ``density``.
    ``neighbour_pool``: (lineage, probability, maturity_lo, maturity_hi) to draw partial neighbour
    cells from. Returns (RGB uint8 (S, S, 3), mask uint8 (S, S) 0/128/255, measurements)."""
    rng = np.random.default_rng([int(seed), int(cell["cell_index"]), 0xCE11])
    size = int(img_size)
    ppu = size / config.FIELD_UM * slide.magnification
    maps = {k: np.zeros((size, size), dtype=F) for k in config.COMPONENTS}
    jitter = config.JITTER_BASE + (1 - config.JITTER_BASE) * float(difficulty)
    density = float(cell["density"])

    centre = size / 2 + rng.normal(0, 0.5 * ppu, 2)
    m = morphology(cell["lineage"], float(cell["maturity"]), rng, jitter)
    r_c = 0.5 * m.p["diameter"] * ppu
    occupied: list[tuple[float, float, float]] = [(centre[0], centre[1], r_c)]

    # partial neighbour cells: centred near the border so the patch cuts them
    n_nb = int(rng.binomial(config.MAX_NEIGHBOURS, min(1.0, config.NEIGHBOUR_P * density))) if neighbour_pool else 0
    drawn_nb = 0
    if n_nb:
        probs = np.array([q[1] for q in neighbour_pool])
        for _ in range(n_nb):
            lin, _, lo, hi = neighbour_pool[rng.choice(len(neighbour_pool), p=probs / probs.sum())]
            nm = morphology(lin, float(rng.uniform(lo, hi)), rng, jitter)
            r_n = 0.5 * nm.p["diameter"] * ppu
            phi = rng.random() * 2 * np.pi
            c, s = np.cos(phi), np.sin(phi)
            border = (size / 2) / max(abs(c), abs(s))
            dist = max(border + r_n * rng.uniform(-0.5, 0.45), r_c + r_n * 0.95)
            nx, ny = size / 2 + dist * c, size / 2 + dist * s
            if any(np.hypot(nx - ox, ny - oy) < 0.9 * (orr + r_n) for ox, oy, orr in occupied):
                continue
            if draw_cell(nm, maps, nx, ny, ppu, rng) is not None:
                drawn_nb += 1
                occupied.append((nx, ny, r_n))

    # red cells: Poisson number over the free area, little overlap with nucleated cells,
    # more overlap among themselves in thick (dense) areas
    r_r = 0.5 * config.RBC_DIAMETER_UM * ppu
    n_rbc = 0
    if density > 0:
        ext = size + 2 * r_r
        free = ext * ext - sum(np.pi * (o[2] + 0.3 * r_r) ** 2 for o in occupied)
        lam = density * config.RBC_FILL * max(free, 0) / (np.pi * r_r * r_r)
        want = int(rng.poisson(lam))
        cand = rng.uniform(-r_r, size + r_r, (4 * want + 4, 2))
        min_rr = r_r * (1.75 - 0.6 * density)
        placed: list[tuple[float, float]] = []
        for qx, qy in cand:
            if len(placed) >= want:
                break
            if any(np.hypot(qx - ox, qy - oy) < orr + 0.75 * r_r for ox, oy, orr in occupied):
                continue
            if any(np.hypot(qx - px, qy - py) < min_rr for px, py in placed):
                continue
            placed.append((qx, qy))
            _add_red_cell(maps, qx, qy, r_r * (0.92 + 0.16 * rng.random()), slide, rng)
        n_rbc = len(placed)
        for _ in range(int(rng.poisson(0.8 * density))):
            _add_platelet(maps, *rng.uniform(0, size, 2), ppu, rng)

    # the central cell last: it is the one that must be complete
    drawn: Drawn = draw_cell(m, maps, centre[0], centre[1], ppu, rng)
    mask = np.zeros((size, size), dtype=np.uint8)
    win = drawn.window
    mask[win.slices] = np.where(drawn.nucleus >= 0.5, 255, np.where(drawn.cell >= 0.5, 128, 0)).astype(np.uint8)

    if slide.plasma > 0:
        maps["plasma"] += F(slide.plasma) * np.clip(0.5 + 0.5 * smooth_noise(rng, (size, size), 3 * ppu), 0, None) * F(
            0.3 + density)
    od = {k: np.asarray(v, dtype=F) for k, v in slide.stains.items()}
    yy, xx = np.mgrid[0:size, 0:size].astype(F) / F(size) - F(0.5)
    vx, vy = slide.vignette_centre
    white = (1 - F(slide.vignette) * ((xx - F(vx)) ** 2 + (yy - F(vy)) ** 2) / F(0.5))[..., None] * np.asarray(
        slide.background, dtype=F)
    img = compose(maps, od, white)
    blur_px = slide.blur_um * ppu * float(rng.uniform(0.8, 1.3))
    rgb = camera(img, rng, blur_px, slide.noise_sd, slide.jpeg_quality)
    n_nuc, n_cell = int((mask == 255).sum()), int((mask > 0).sum())
    stats = dict(
        diameter_um=round(float(m.p["diameter"]), 3),
        nucleus_area=n_nuc,
        cell_area=n_cell,
        nc_ratio=round(n_nuc / max(n_cell, 1), 4),
        n_lobes=m.n_lobes,
        n_red_cells=n_rbc,
        n_neighbours=drawn_nb,
    )
    return rgb, mask, stats
