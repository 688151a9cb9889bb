"""Drawing primitives: signed-distance shapes with analytic anti-aliasing, noise fields, granule
splats, Beer-Lambert composition and the camera (blur, noise, JPEG softness).

Hand-written because no maintained library draws soft, deformable, partially transparent
stained shapes: PIL's ImageDraw has no anti-aliasing or transparency-by-density, and
scikit-image's draw functions are per-shape binary rasterisers. Everything is vectorised numpy
over small windows; scipy.ndimage does the filtering.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image
from scipy import ndimage

# float64, not float32, so that `dvc repro` gives the same bytes on every CPU. numpy picks its
# exp/cos/tanh kernels by CPU (AVX2, AVX-512, baseline) and they differ in the last bit; in float32
# that bit is ~1e-5 of a grey level, enough to flip the 8-bit rounding of a few pixels per set
# (measured: another md5 for data/cells on an AMD EPYC than on the Intel CPU that made data.dvc).
# A float64 last bit is 2^29 times smaller and no longer reaches the rounding.
F = np.float64


def rgb_to_od(rgb) -> np.ndarray:
    """Optical density of a colour seen on white light: -ln(I / I0)."""
    return (-np.log(np.clip(np.asarray(rgb, dtype=np.float64), 1.0, 255.0) / 255.0)).astype(F)


def coverage(sdf: np.ndarray, soft: float = 1.0) -> np.ndarray:
    """Area fraction of each pixel inside a shape, from its signed distance in pixels (negative
    inside). A linear ramp one pixel wide is the exact coverage of a straight edge, which is the
    anti-aliasing a 2x supersample would approximate at four times the cost."""
    return np.clip(0.5 - sdf / soft, 0.0, 1.0).astype(F, copy=False)


@dataclass(frozen=True)
class Window:
    """The part of the frame (rows y0:y1, columns x0:x1) a shape can touch."""

    y0: int
    y1: int
    x0: int
    x1: int

    @classmethod
    def around(cls, cx: float, cy: float, radius: float, size: int) -> "Window | None":
        x0, x1 = max(0, int(np.floor(cx - radius))), min(size, int(np.ceil(cx + radius)) + 1)
        y0, y1 = max(0, int(np.floor(cy - radius))), min(size, int(np.ceil(cy + radius)) + 1)
        if x0 >= x1 or y0 >= y1:
            return None
        return cls(y0, y1, x0, x1)

    @property
    def shape(self) -> tuple[int, int]:
        return (self.y1 - self.y0, self.x1 - self.x0)

    @property
    def slices(self) -> tuple[slice, slice]:
        return (slice(self.y0, self.y1), slice(self.x0, self.x1))

    def grid(self) -> tuple[np.ndarray, np.ndarray]:
        """Pixel-centre coordinates (x, y) in frame units, broadcastable (1, w) and (h, 1)."""
        x = np.arange(self.x0, self.x1, dtype=F) + F(0.5)
        y = np.arange(self.y0, self.y1, dtype=F) + F(0.5)
        return x[None, :], y[:, None]


def blob_sdf(x, y, cx: float, cy: float, radius: float, amps, phases) -> np.ndarray:
    """Approximate signed distance to a circle whose radius is modulated by low harmonics
    r(θ) = R (1 + Σ a_k cos(kθ + φ_k)), k = 2, 3, ... — a cell outline."""
    dx, dy = x - F(cx), y - F(cy)
    rho = np.sqrt(dx * dx + dy * dy)
    if len(amps):
        theta = np.arctan2(dy, dx)
        mod = np.ones_like(theta)
        for k, (a, p) in enumerate(zip(amps, phases), start=2):
            mod += F(a) * np.cos(k * theta + F(p))
        return rho - F(radius) * mod
    return rho - F(radius)


def tube_sdf(u: np.ndarray, v: np.ndarray, pts: np.ndarray, radii: np.ndarray) -> np.ndarray:
    """Signed distance to a union of discs (centres ``pts`` (K, 2), ``radii`` (K,)) — a tube of
    varying thickness when the discs are dense along a curve: round, kidney, band and lobed
    nuclei are all this one shape with different centre lines and thickness profiles."""
    best = None
    for (px, py), r in zip(pts.astype(F), radii.astype(F)):
        d = np.sqrt((u - px) ** 2 + (v - py) ** 2) - r
        best = d if best is None else np.minimum(best, d)
    return best


def points_sdf(qx: np.ndarray, qy: np.ndarray, pts: np.ndarray, radii: np.ndarray) -> np.ndarray:
    """:func:`tube_sdf` evaluated at scattered points (granule centres)."""
    d = np.hypot(qx[:, None] - pts[None, :, 0], qy[:, None] - pts[None, :, 1]) - radii[None, :]
    return d.min(axis=1)


def smooth_noise(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    """Gaussian-filtered white noise with unit standard deviation (a texture at scale ``sigma``)."""
    if sigma > 4.0:
        # wide kernels are slow: filter coarse noise and interpolate it up (same spectrum, ~10x faster)
        f = sigma / 1.25
        small = (int(np.ceil(shape[0] / f)) + 3, int(np.ceil(shape[1] / f)) + 3)
        n = ndimage.gaussian_filter(rng.standard_normal(small, dtype=F), 1.25, mode="reflect", truncate=3.0)
        n = ndimage.zoom(n, f, order=1, mode="nearest", grid_mode=False)[: shape[0], : shape[1]]
    else:
        n = rng.standard_normal(shape, dtype=F)
        if sigma > 0.3:
            n = ndimage.gaussian_filter(n, sigma, mode="reflect", truncate=3.0)
    sd = float(n.std())
    return n / F(sd if sd > 1e-6 else 1.0)


def splat(shape: tuple[int, int], xs: np.ndarray, ys: np.ndarray, weights: np.ndarray,
          sigma: float) -> np.ndarray:
    """Round soft dots (granules) of peak ``weights`` at sub-pixel positions (window units):
    bilinear deposit then a Gaussian of ``sigma`` pixels."""
    h, w = shape
    out = np.zeros(shape, dtype=F)
    if len(xs) == 0:
        return out
    fx, fy = xs - 0.5, ys - 0.5
    ix, iy = np.floor(fx).astype(np.int64), np.floor(fy).astype(np.int64)
    ax, ay = (fx - ix).astype(F), (fy - iy).astype(F)
    for ddx, ddy, wgt in ((0, 0, (1 - ax) * (1 - ay)), (1, 0, ax * (1 - ay)),
                          (0, 1, (1 - ax) * ay), (1, 1, ax * ay)):
        jx, jy = ix + ddx, iy + ddy
        ok = (jx >= 0) & (jx < w) & (jy >= 0) & (jy < h)
        np.add.at(out, (jy[ok], jx[ok]), (weights * wgt)[ok])
    sigma = max(float(sigma), 0.45)
    # a unit impulse blurred by a 2-D Gaussian peaks at 1 / (2 π σ²): rescale so peaks ~ weights
    return ndimage.gaussian_filter(out, sigma, mode="constant", truncate=3.0) * F(2 * np.pi * sigma * sigma)


def disc_points(rng: np.random.Generator, n: int, radius: float) -> tuple[np.ndarray, np.ndarray]:
    """``n`` points uniform in a disc centred on 0."""
    r = radius * np.sqrt(rng.random(n))
    t = rng.random(n) * 2 * np.pi
    return r * np.cos(t), r * np.sin(t)


def compose(maps: dict[str, np.ndarray], od: dict[str, np.ndarray], white: np.ndarray) -> np.ndarray:
    """Transmitted light: white (H, W, 3) * exp(-Σ_k c_k OD_k), in 0..255 floats."""
    # a fixed-order sum of products, not `conc @ mat`: BLAS picks its kernel (and so its
    # summation order) by CPU, which changes the last bit of the optical density
    total = np.zeros(white.shape, dtype=F)
    for name, conc in maps.items():
        total += conc[..., None] * np.asarray(od[name], dtype=F)
    return white * np.exp(-total)


def camera(img: np.ndarray, rng: np.random.Generator, blur_px: float, noise_sd: float,
           jpeg_quality: int) -> np.ndarray:
    """Focus blur, sensor noise, 8-bit quantisation and a JPEG round trip (the softness and
    blocking of the JPEG sources the real datasets come as)."""
    if blur_px > 0.25:
        img = ndimage.gaussian_filter(img, (blur_px, blur_px, 0), mode="nearest", truncate=3.0)
    if noise_sd > 0:
        img = img + rng.standard_normal(img.shape, dtype=F) * F(noise_sd)
    out = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    if jpeg_quality and jpeg_quality < 100:
        buf = io.BytesIO()
        Image.fromarray(out).save(buf, format="JPEG", quality=int(jpeg_quality), subsampling=0)
        out = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))
    return out


def png_bytes(arr: np.ndarray) -> bytes:
    """Deterministic PNG encoding (no timestamps or text chunks). Level 1: 2.5x faster than
    the default for ~15 % larger files, which matters at 4,560 cells in under a minute."""
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()
