"""Turning anything that holds a cell image into an RGB ``PIL.Image``.

One decoder for training, ``zoo predict`` and the pyfunc alike, so that a 16-bit PNG, a palette
GIF or a base64 string sent to ``mlflow models serve`` end up as the same RGB pixels the model
was trained on. Pillow does the decoding; this module only normalises modes and inputs.
"""

from __future__ import annotations

import base64
import binascii
import io
import os
import re
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

# Flatten transparent pixels onto white: smears are imaged in transmitted light, so "nothing" is
# bright, and a black fill would look like a stained structure to the model.
BACKGROUND = (255, 255, 255)

_DATA_URI = re.compile(r"^data:[\w/+.-]*(;[\w=-]+)*;base64,", re.IGNORECASE)
_B64_CHARS = re.compile(r"^[A-Za-z0-9+/=_-]+$")


class ImageDecodeError(ValueError):
    """An input that cannot be turned into an RGB image; the message says why."""


def decode_image(x: Any) -> Image.Image:
    """Decode a path, raw bytes, a base64 string (optionally a ``data:`` URI) or a uint8 array
    (HxWx3, also HxW, HxWx1, HxWx4) into a fully loaded RGB ``PIL.Image``.

    Grayscale, RGBA/LA (flattened on white), palette, CMYK and 16-bit images are converted.
    Raises :class:`ImageDecodeError` naming the reason (truncated file, not an image, bad
    base64, wrong array shape or dtype...).
    """
    if isinstance(x, Image.Image):
        return to_rgb(x)[0]
    if isinstance(x, np.ndarray):
        return _from_array(x)
    if isinstance(x, (bytes, bytearray, memoryview)):
        return _from_bytes(bytes(x), what="bytes")
    if isinstance(x, Path):
        return _from_path(x)
    if isinstance(x, str):
        s = x.strip()
        if _DATA_URI.match(s):
            return _from_bytes(_b64decode(_DATA_URI.sub("", s, count=1)), what="base64 data URI")
        if _looks_like_path(s):
            return _from_path(Path(s))
        compact = "".join(s.split())  # MIME-style base64 is wrapped at 76 columns
        if len(compact) >= 16 and _B64_CHARS.match(compact):
            return _from_bytes(_b64decode(compact), what="base64 string")
        raise ImageDecodeError(
            f"{_short(s)!r} is neither an existing file nor a base64-encoded image"
        )
    raise ImageDecodeError(
        f"cannot decode an image from a {type(x).__name__}; pass a file path, bytes, a base64 "
        "string or a uint8 HxWx3 array"
    )


def open_image(path: str | os.PathLike) -> Image.Image:
    """Open and fully load an image file as-is (no mode conversion); ImageDecodeError if it is
    missing, empty, not an image or truncated."""
    path = Path(path)
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise ImageDecodeError(f"file not found: {path}") from None
    if size == 0:
        raise ImageDecodeError(f"zero-size file: {path}")
    with path.open("rb") as fh:
        data = fh.read()
    return load_bytes(data, what=str(path))


def load_bytes(data: bytes, what: str = "bytes") -> Image.Image:
    """Open and fully load encoded image bytes without mode conversion."""
    if not data:
        raise ImageDecodeError(f"{what}: empty input")
    try:
        img = Image.open(io.BytesIO(data))
        # load() decodes every pixel, so a truncated JPEG/PNG fails here and not mid-training.
        img.load()
    except UnidentifiedImageError:
        raise ImageDecodeError(f"{what}: not an image (Pillow cannot identify the format)") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise ImageDecodeError(f"{what}: unreadable or truncated image ({exc})") from None
    return img


def to_rgb(img: Image.Image) -> tuple[Image.Image, str | None]:
    """Convert any Pillow mode to 8-bit RGB. Returns the image and a note describing the
    conversion (``None`` when it was already RGB), used by the cleaning report."""
    mode = img.mode
    if mode == "RGB":
        return img, None
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        # Pillow's own convert("L") clips 16-bit values at 255 instead of scaling them; rescale
        # by the dtype's range (full 16 bits for integer data, min-max for float images).
        arr = np.asarray(img)
        if mode == "F":
            lo, hi = float(np.nanmin(arr)), float(np.nanmax(arr))
            scaled = (arr - lo) / (hi - lo if hi > lo else 1.0) * 255.0
        else:
            hi = 65535.0 if mode.startswith("I;16") or arr.max() > 255 else 255.0
            scaled = arr.astype(np.float64) / hi * 255.0
        gray = Image.fromarray(np.clip(np.rint(scaled), 0, 255).astype(np.uint8), "L")
        return gray.convert("RGB"), f"{_mode_name(mode)} converted to 8-bit RGB"
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        flat = Image.new("RGB", rgba.size, BACKGROUND)
        flat.paste(rgba, mask=rgba.getchannel("A"))
        return flat, f"{_mode_name(mode)} flattened onto white RGB"
    try:
        return img.convert("RGB"), f"{_mode_name(mode)} converted to RGB"
    except (ValueError, OSError) as exc:
        raise ImageDecodeError(f"cannot convert image mode {mode!r} to RGB ({exc})") from None


def load_rgb_resized(path: str | os.PathLike, size: int) -> Image.Image:
    """Decode a file straight to an RGB ``size`` x ``size`` image (the whole patch, aspect not
    kept, as in training). For JPEGs, ``draft`` lets libjpeg decode at 1/2, 1/4 or 1/8 scale
    (DCT-domain downscaling), which is what makes per-epoch decoding of 360 px JPEGs affordable."""
    path = Path(path)
    try:
        img = Image.open(path)
        if img.format == "JPEG":
            img.draft("RGB", (size, size))
        img.load()
    except FileNotFoundError:
        raise ImageDecodeError(f"file not found: {path}") from None
    except UnidentifiedImageError:
        raise ImageDecodeError(f"{path}: not an image") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageDecodeError(f"{path}: unreadable or truncated image ({exc})") from None
    rgb = to_rgb(img)[0]
    if rgb.size != (size, size):
        rgb = rgb.resize((size, size), Image.Resampling.BILINEAR, reducing_gap=None)
    return rgb


def _from_path(path: Path) -> Image.Image:
    return to_rgb(open_image(path))[0]


def _from_bytes(data: bytes, what: str) -> Image.Image:
    return to_rgb(load_bytes(data, what=what))[0]


def _from_array(arr: np.ndarray) -> Image.Image:
    if arr.dtype != np.uint8:
        raise ImageDecodeError(
            f"array images must be uint8 (0-255), got dtype {arr.dtype}; convert with "
            "(x * 255).clip(0, 255).astype('uint8') if it holds floats in [0, 1]"
        )
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim == 2:
        return Image.fromarray(np.ascontiguousarray(arr), "L").convert("RGB")
    if arr.ndim == 3 and arr.shape[2] == 3:
        return Image.fromarray(np.ascontiguousarray(arr), "RGB")
    if arr.ndim == 3 and arr.shape[2] == 4:
        return to_rgb(Image.fromarray(np.ascontiguousarray(arr), "RGBA"))[0]
    raise ImageDecodeError(
        f"array image must have shape HxWx3 (or HxW, HxWx1, HxWx4), got {arr.shape}; "
        "a batch (N, H, W, 3) must be split into single images first"
    )


def _b64decode(s: str) -> bytes:
    s = "".join(s.split())
    s += "=" * (-len(s) % 4)
    try:
        if "-" in s or "_" in s:
            return base64.urlsafe_b64decode(s)
        return base64.b64decode(s, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ImageDecodeError(f"invalid base64 image data ({exc})") from None


def _looks_like_path(s: str) -> bool:
    if len(s) > 4096 or "\n" in s:
        return False
    try:
        return Path(s).expanduser().is_file()
    except OSError:  # e.g. "File name too long" for a long base64 string
        return False


def _mode_name(mode: str) -> str:
    return {
        "L": "grayscale",
        "LA": "grayscale+alpha",
        "P": "palette",
        "PA": "palette+alpha",
        "RGBA": "RGBA",
        "CMYK": "CMYK",
        "1": "1-bit",
        "I;16": "16-bit grayscale",
        "I;16B": "16-bit grayscale",
        "I;16L": "16-bit grayscale",
        "I": "32-bit integer",
        "F": "32-bit float",
    }.get(mode, f"mode {mode}")


def _short(s: str, n: int = 40) -> str:
    return s if len(s) <= n else s[:n] + "..."
