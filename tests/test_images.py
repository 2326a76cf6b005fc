"""Tests of keras_resnet.images: every file format, mode and EXIF orientation against Pillow's reading.

The reference is ``PIL.ImageOps.exif_transpose(im).convert("RGB" or "L")`` (16-bit: values
// 257). Measured tolerances (Pillow 13, TensorFlow 2.21): RGB from 8-bit files and JPEGs
(libjpeg's accurate IDCT) is exact; grey from colour pixels differs by at most 1 level (PIL's
fixed-point luma against a float one rounded: 0.05% of all 2**24 colours); 16-bit PNGs by at
most 1 (libpng keeps the high byte, v >> 8); CMYK JPEGs by at most 1 (the CMYK -> RGB rounding).
"""

from __future__ import annotations

import io
import struct

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image, ImageOps

from keras_resnet import images

H, W = 10, 14  # not square, so that an EXIF transpose shows in the shape
GREY_MODES = {"L", "LA", "I;16"}


def encode(im, fmt, **kwargs):
    buffer = io.BytesIO()
    im.save(buffer, fmt, **kwargs)
    return buffer.getvalue()


def odd_images(rng, upright=True):
    """{file name: bytes} of every kind of file the decoder takes, H x W once upright.

    With ``upright=False`` the EXIF-oriented JPEGs are all stored H x W (so orientations 5-8
    come out W x H).
    """
    def rgb(h=H, w=W):
        return Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))

    def grey():
        return Image.fromarray(rng.integers(0, 256, (H, W), dtype=np.uint8), "L")

    files = {
        "grey.png": encode(grey(), "PNG"),
        "rgb.png": encode(rgb(), "PNG"),
        "rgba.png": encode(Image.fromarray(rng.integers(0, 256, (H, W, 4), dtype=np.uint8), "RGBA"), "PNG"),
        "palette.png": encode(rgb().quantize(16), "PNG"),
        "grey16.png": encode(Image.fromarray(rng.integers(0, 65536, (H, W), dtype=np.uint16)), "PNG"),
        "grey_alpha.png": encode(Image.fromarray(rng.integers(0, 256, (H, W, 2), dtype=np.uint8), "LA"), "PNG"),
        "palette.bmp": encode(rgb().quantize(16), "BMP"),
        "rgb.bmp": encode(rgb(), "BMP"),
        "palette.gif": encode(rgb().quantize(16), "GIF"),
        "cmyk.jpg": encode(Image.fromarray(rng.integers(0, 256, (H, W, 4), dtype=np.uint8), "CMYK"), "JPEG"),
        "grey.jpg": encode(grey(), "JPEG"),
        "progressive.jpg": encode(rgb(), "JPEG", progressive=True),
    }
    for o in range(1, 9):
        exif = Image.Exif()
        exif[0x0112] = o
        transposed = o >= 5 and upright
        files[f"exif{o}.jpg"] = encode(rgb(W, H) if transposed else rgb(), "JPEG", exif=exif)
    return files


def reference(contents, channels):
    """Pillow's pixels of a file: upright, converted to ``channels``, as (h, w, channels) uint8."""
    im = Image.open(io.BytesIO(contents))
    im = ImageOps.exif_transpose(im)
    if im.mode.startswith("I;16"):
        grey = np.asarray(im).astype(np.int64) // 257
        return np.repeat(grey[..., None], channels, -1).astype(np.uint8)
    out = np.asarray(im.convert("RGB" if channels == 3 else "L"))
    return out if channels == 3 else out[..., None]


def tolerance(contents, channels):
    """The measured largest difference from Pillow (see the module's docstring)."""
    mode = Image.open(io.BytesIO(contents)).mode
    if mode in ("I;16", "CMYK"):
        return 1
    return 1 if channels == 1 and mode not in GREY_MODES else 0


@pytest.fixture(scope="module")
def files():
    return odd_images(np.random.default_rng(0), upright=False)


@pytest.mark.parametrize("channels", [3, 1])
def test_decode_matches_pillow_for_every_format_mode_and_orientation(files, channels):
    assert len(files) == 20
    for name, contents in files.items():
        got = images.decode(contents, channels).numpy()
        expected = reference(contents, channels)
        assert got.dtype == np.uint8
        assert got.shape == expected.shape, name
        diff = np.abs(got.astype(int) - expected.astype(int)).max()
        assert diff <= tolerance(contents, channels), (name, diff)
    # The orientation is applied: the stored H x W images of orientations 5-8 come out W x H.
    for o in range(1, 9):
        shape = images.decode(files[f"exif{o}.jpg"], channels).shape
        assert tuple(shape) == ((W, H) if o >= 5 else (H, W)) + (channels,)


def test_grey_files_decode_to_equal_channels_and_16_bits_keep_the_high_byte(files):
    for name in ("grey.png", "grey.jpg", "grey_alpha.png", "grey16.png"):
        rgb = images.decode(files[name], 3).numpy()
        assert np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 1], rgb[..., 2]), name
        np.testing.assert_array_equal(images.decode(files[name], 1).numpy()[..., 0], rgb[..., 0])
    stored = np.asarray(Image.open(io.BytesIO(files["grey16.png"]))).astype(np.int64)
    assert np.abs(images.decode(files["grey16.png"], 1).numpy()[..., 0] - stored // 257).max() <= 1


def test_animated_gif_gives_its_first_frame():
    frames = [Image.new("RGB", (W, H), colour) for colour in ((255, 0, 0), (0, 0, 255))]
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:])
    got = images.decode(buffer.getvalue(), 3).numpy()
    assert got.shape == (H, W, 3) and np.all(got == [255, 0, 0])


def test_exif_orientation_of_pillow_jpegs(files):
    for o in range(1, 9):
        assert int(images.exif_orientation(files[f"exif{o}.jpg"])) == o
    for name in ("rgb.png", "progressive.jpg", "palette.gif", "rgb.bmp"):
        assert int(images.exif_orientation(files[name])) == 1
    for junk in (b"", b"\xff\xd8", b"\xff\xd8\xff\xe1\x00\x08Exif\x00\x00", b"garbage" * 50):
        assert int(images.exif_orientation(junk)) == 1


def exif_segment(orientation, little_endian):
    """An EXIF APP1 segment by hand: a Make entry, then the orientation (a SHORT)."""
    bo = "<" if little_endian else ">"
    header = (b"II*\x00" if little_endian else b"MM\x00*") + struct.pack(bo + "I", 8)
    entries = [
        struct.pack(bo + "HHI", 0x010F, 2, 4) + b"Cam\x00",  # Make, ASCII, in the value field
        struct.pack(bo + "HHIHH", 0x0112, 3, 1, orientation, 0),
    ]
    ifd = struct.pack(bo + "H", len(entries)) + b"".join(entries) + struct.pack(bo + "I", 0)
    payload = b"Exif\x00\x00" + header + ifd
    return b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload


@pytest.mark.parametrize("little_endian", [True, False], ids=["II", "MM"])
@pytest.mark.parametrize("jfif", [False, True], ids=["exif-first", "jfif+exif"])
def test_exif_orientation_in_either_byte_order_with_or_without_jfif(little_endian, jfif):
    pixels = np.random.default_rng(1).integers(0, 256, (H, W, 3), dtype=np.uint8)
    plain = encode(Image.fromarray(pixels), "JPEG")
    assert plain[2:4] == b"\xff\xe0" and plain[4:6] == b"\x00\x10"  # Pillow's 16-byte JFIF APP0
    for o in (1, 3, 6, 8):
        segment = exif_segment(o, little_endian)
        contents = plain[:20] + segment + plain[20:] if jfif else plain[:2] + segment + plain[20:]
        im = Image.open(io.BytesIO(contents))
        assert im.getexif()[0x0112] == o  # Pillow reads the hand-made segment the same way
        assert int(images.exif_orientation(contents)) == o
        got = images.decode(contents, 3).numpy()
        np.testing.assert_array_equal(got, reference(contents, 3))
        assert got.shape == ((W, H, 3) if o >= 5 else (H, W, 3))


def test_decode_to_a_size_stretch_and_center_crop():
    rng = np.random.default_rng(2)
    upright = odd_images(rng, upright=True)
    for name, contents in upright.items():
        for size in ((9, 9), (7, 12)):  # no JPEG is twice the size: no DCT scaling
            stretched = images.decode(contents, 3, size).numpy()
            assert stretched.shape == (*size, 3), name
            # A PNG of Pillow's upright pixels decodes to the same pixels at the same size.
            png = encode(Image.fromarray(reference(contents, 3)), "PNG")
            if tolerance(contents, 3) == 0:
                np.testing.assert_array_equal(stretched, images.decode(png, 3, size).numpy(), err_msg=name)
            cropped = images.decode(contents, 1, size, "center_crop").numpy()
            assert cropped.shape == (*size, 1), name
    # The central 87.5% window of the target's aspect ratio: 9 x 12 of 10 x 14 at offset (0, 1).
    pixels = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    png = encode(Image.fromarray(pixels), "PNG")
    np.testing.assert_array_equal(images.decode(png, 3, (9, 12), "center_crop").numpy(), pixels[0:9, 1:13])
    np.testing.assert_array_equal(images.center_crop(tf.constant(pixels), (9, 12)).numpy(), pixels[0:9, 1:13])
    # The same size as the image: stretch is the identity.
    np.testing.assert_array_equal(images.decode(png, 3, (H, W)).numpy(), pixels)


def test_large_jpeg_is_decoded_scaled_close_to_the_full_decode():
    y, x = np.mgrid[0:80, 0:112]
    smooth = np.stack([2 * x, 3 * y, x + y], -1).astype(np.uint8)
    jpeg = encode(Image.fromarray(smooth), "JPEG", quality=95)
    png = encode(Image.fromarray(smooth), "PNG")
    for size in ((10, 14), (20, 28), (11, 13)):  # 1/8, 1/4 and 1/4 scale
        got = images.decode(jpeg, 3, size).numpy().astype(int)
        assert got.shape == (*size, 3)
        assert np.abs(got - images.decode(png, 3, size).numpy()).max() <= 3  # measured 2-3 levels


def test_decode_random_crop_is_seeded_and_the_whole_window_equals_stretch(files):
    size = (6, 8)
    for name in ("rgb.png", "progressive.jpg", "exif6.jpg", "palette.bmp"):
        contents = files[name]
        a = images.decode_random_crop(contents, 3, size, tf.constant([1, 2], tf.int64)).numpy()
        b = images.decode_random_crop(contents, 3, size, tf.constant([1, 2], tf.int64)).numpy()
        assert a.shape == (*size, 3)
        np.testing.assert_array_equal(a, b)
        others = [images.decode_random_crop(contents, 1, size, tf.constant([1, s], tf.int64)).numpy() for s in range(3, 7)]
        assert all(o.shape == (*size, 1) for o in others)
        assert any(not np.array_equal(others[0], o) for o in others[1:]), name
    # A window of the whole area at the image's own aspect ratio is the whole image.
    contents = files["rgb.png"]
    whole = images.decode_random_crop(contents, 3, size, tf.constant([1, 2], tf.int64), scale=(1.0, 1.0),
                                      ratio=(W / H, W / H)).numpy()
    np.testing.assert_array_equal(whole, images.decode(contents, 3, size).numpy())
    image = tf.constant(reference(contents, 3))
    crop = images.random_resized_crop(image, (5, 5), tf.constant([3, 4], tf.int64))
    assert crop.shape == (5, 5, 3) and crop.dtype == tf.uint8
    np.testing.assert_array_equal(crop, images.random_resized_crop(image, (5, 5), tf.constant([3, 4], tf.int64)))


def test_evaluation_fit():
    assert images.evaluation_fit((63, 63)) == "stretch"
    assert images.evaluation_fit((64, 64)) == "center_crop"
    assert images.evaluation_fit((64, 300)) == "center_crop"
    assert images.evaluation_fit((300, 32)) == "stretch"


def test_bad_arguments_name_the_value(files):
    with pytest.raises(ValueError, match=r"channels must be 1 or 3; received channels=2"):
        images.decode(files["rgb.png"], 2)
    with pytest.raises(ValueError, match=r"fit must be one of stretch, center_crop; received fit='zoom'"):
        images.decode(files["rgb.png"], 3, (4, 4), fit="zoom")
    with pytest.raises(ValueError, match=r"received channels=4"):
        images.decode_random_crop(files["rgb.png"], 4, (4, 4), tf.constant([1, 2], tf.int64))


def test_read_image_file(tmp_path, files):
    good = tmp_path / "exif7.jpg"
    good.write_bytes(files["exif7.jpg"])
    np.testing.assert_array_equal(images.read_image_file(good, 3), reference(files["exif7.jpg"], 3))
    assert images.read_image_file(str(good), 1, (4, 5), "center_crop").shape == (4, 5, 1)
    truncated_jpeg, truncated_png = tmp_path / "cut.jpg", tmp_path / "cut.png"
    truncated_jpeg.write_bytes(files["progressive.jpg"][:200])
    truncated_png.write_bytes(files["rgb.png"][: len(files["rgb.png"]) // 2])
    garbage = tmp_path / "garbage.png"
    garbage.write_bytes(b"not an image at all")
    for bad in (truncated_jpeg, truncated_png, garbage, tmp_path / "missing.png"):
        with pytest.raises(ValueError, match=f"cannot read image '{bad}'"):
            images.read_image_file(bad, 3)
