"""decode_image on every input kind and mode; ImageDecodeError reasons."""

import base64
import io

import numpy as np
import pytest
from PIL import Image

from zoo.data.images import ImageDecodeError, decode_image, load_rgb_resized, to_rgb


def _rgb_array(h=20, w=24, seed=0):
    return np.random.RandomState(seed).randint(0, 256, (h, w, 3), dtype=np.uint8)


def _png_bytes(img: Image.Image, fmt="PNG") -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


@pytest.fixture
def rgb():
    return _rgb_array()


def test_path_str_path_bytes_base64_and_array_give_same_pixels(tmp_path, rgb):
    img = Image.fromarray(rgb)
    p = tmp_path / "cell.png"
    img.save(p)
    data = p.read_bytes()
    b64 = base64.b64encode(data).decode()
    for x in (p, str(p), data, bytearray(data), b64, "data:image/png;base64," + b64, rgb, img):
        out = decode_image(x)
        assert out.mode == "RGB" and out.size == (24, 20)
        np.testing.assert_array_equal(np.asarray(out), rgb)


def test_base64_with_whitespace_and_urlsafe(rgb):
    data = _png_bytes(Image.fromarray(rgb))
    wrapped = "\n".join(base64.b64encode(data).decode()[i:i + 60] for i in range(0, 200000, 60))
    np.testing.assert_array_equal(np.asarray(decode_image(wrapped.strip())), rgb)
    urlsafe = base64.urlsafe_b64encode(data).decode().rstrip("=")
    np.testing.assert_array_equal(np.asarray(decode_image(urlsafe)), rgb)


def test_jpeg_bytes():
    data = _png_bytes(Image.fromarray(_rgb_array(32, 32)), fmt="JPEG")
    assert decode_image(data).size == (32, 32)


@pytest.mark.parametrize("arr,expected", [
    (np.full((5, 6), 7, np.uint8), (7, 7, 7)),
    (np.full((5, 6, 1), 9, np.uint8), (9, 9, 9)),
])
def test_gray_arrays(arr, expected):
    out = np.asarray(decode_image(arr))
    assert out.shape == (5, 6, 3) and tuple(out[0, 0]) == expected


def test_rgba_array_and_file_flattened_on_white(tmp_path):
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[:2, :, 3] = 255  # top half opaque red, bottom transparent
    out = np.asarray(decode_image(rgba))
    assert tuple(out[0, 0]) == (200, 0, 0) and tuple(out[3, 0]) == (255, 255, 255)
    p = tmp_path / "a.png"
    Image.fromarray(rgba, "RGBA").save(p)
    assert tuple(np.asarray(decode_image(p))[3, 3]) == (255, 255, 255)


def test_grayscale_palette_and_16bit_files(tmp_path):
    Image.fromarray(np.full((6, 6), 100, np.uint8), "L").save(tmp_path / "g.png")
    assert tuple(np.asarray(decode_image(tmp_path / "g.png"))[0, 0]) == (100, 100, 100)
    pal = Image.new("P", (6, 6), 1)
    pal.putpalette([0, 0, 0, 10, 20, 30] + [0] * 762)
    pal.save(tmp_path / "p.png")
    assert tuple(np.asarray(decode_image(tmp_path / "p.png"))[0, 0]) == (10, 20, 30)
    sixteen = np.full((6, 6), 65535, np.uint16)
    sixteen[0, 0] = 0
    Image.fromarray(sixteen).save(tmp_path / "s.png")
    assert Image.open(tmp_path / "s.png").mode.startswith("I")
    out = np.asarray(decode_image(tmp_path / "s.png"))
    assert tuple(out[0, 0]) == (0, 0, 0) and tuple(out[1, 1]) == (255, 255, 255)  # scaled, not clipped


def test_to_rgb_reports_conversion():
    assert to_rgb(Image.new("RGB", (2, 2)))[1] is None
    assert "grayscale" in to_rgb(Image.new("L", (2, 2)))[1]
    assert "RGBA" in to_rgb(Image.new("RGBA", (2, 2)))[1]


@pytest.mark.parametrize("bad,needle", [
    (b"", "empty"),
    (b"this is not an image at all", "not an image"),
    ("data:image/png;base64,@@@notbase64", "base64"),
    ("/no/such/file.png", "neither an existing file nor a base64"),
    (np.zeros((4, 4, 3), np.float32), "uint8"),
    (np.zeros((2, 4, 4, 3), np.uint8), "HxWx3"),
    (12345, "cannot decode an image from a int"),
])
def test_errors_name_the_reason(bad, needle):
    with pytest.raises(ImageDecodeError, match=needle):
        decode_image(bad)


def test_truncated_and_zero_size_files(tmp_path):
    data = _png_bytes(Image.fromarray(_rgb_array(64, 64)), fmt="JPEG")
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(ImageDecodeError, match="truncated"):
        decode_image(tmp_path / "cut.jpg")
    with pytest.raises(ImageDecodeError, match="zero-size"):
        decode_image(tmp_path / "empty.png")
    assert issubclass(ImageDecodeError, ValueError)


def test_load_rgb_resized_uses_whole_patch(tmp_path):
    arr = np.zeros((90, 60, 3), np.uint8)
    arr[:, :30] = 255
    Image.fromarray(arr).save(tmp_path / "x.jpg", quality=95)
    Image.fromarray(arr).save(tmp_path / "x.png")
    for name in ("x.jpg", "x.png"):
        out = np.asarray(load_rgb_resized(tmp_path / name, 16))
        assert out.shape == (16, 16, 3)
        assert out[:, :6].mean() > 200 and out[:, 10:].mean() < 50  # left half white: no crop
