"""Image files to pixels, in TensorFlow ops: one decoder for training, evaluation and prediction.

Every path that turns a file into a model's input goes through :func:`decode`: the folder
datasets' pipelines (:mod:`keras_resnet.data`), :func:`keras_resnet.predict.predict`, and the
exported image-bytes signature. So an image is converted the same way wherever it is read:

* formats: JPEG (baseline, progressive, grayscale and CMYK), PNG (8 and 16 bits per channel,
  grayscale, palette, with or without alpha), BMP (including 8-bit palette files, whose
  indices TensorFlow's own decoder returns as if they were grey levels), GIF (the first frame);
* EXIF orientation (JPEG): the image is turned the way a camera or a photo viewer shows it
  (``PIL.ImageOps.exif_transpose``'s rule), which TensorFlow's decoders and
  ``keras.utils.image_dataset_from_directory`` do not do;
* channels: any of those to RGB (alpha dropped, as ``PIL.Image.convert("RGB")`` does), then to
  one grey channel where the model takes one (ITU-R 601 luma, as PIL's ``"L"``);
* size: ``fit="stretch"`` resizes to the target size (``image_dataset_from_directory``'s rule),
  ``fit="center_crop"`` takes the central 87.5% window of the target's aspect ratio and resizes
  it (the ImageNet evaluation rule: resize to size / 0.875, then crop the centre). Where a JPEG
  is at least twice the size needed, it is decoded at 1/2, 1/4 or 1/8 scale by libjpeg's
  DCT scaling, which is several times faster than a full decode and a resize.

Training augmentation for ImageNet-style inputs (:func:`random_resized_crop`) lives here too;
it is stateless and keyed by a per-image seed, so it repeats exactly for a seed and never
reaches an exported graph.

The functions take and return ``tf.Tensor`` values and work inside ``tf.data`` and
``tf.function``; this module imports TensorFlow only when they are called.
"""

from __future__ import annotations

from collections.abc import Sequence

# keras.utils.image_dataset_from_directory's extensions: the folders' layout rules are Keras's.
IMAGE_EXTENSIONS = (".bmp", ".gif", ".jpeg", ".jpg", ".png")
FITS = ("stretch", "center_crop")
CENTER_CROP_FRACTION = 0.875  # the ImageNet evaluation crop (224 of 256)
CROP_SCALE = (0.08, 1.0)  # random-resized-crop: area fraction (Szegedy et al., 2015) ...
CROP_RATIO = (3 / 4, 4 / 3)  # ... and aspect ratio of the sampled window
EVALUATION_CROP_MIN_SIZE = 64  # inputs this large are evaluated ImageNet-style (centre crop)
_EXIF_READ_BYTES = 1024  # the TIFF header and first directory (64 entries of 12 bytes)
_ORIENTATION_TAG = 0x0112
_MAX_IFD_ENTRIES = 64


def decode(contents, channels: int, size: Sequence[int] | None = None, fit: str = "stretch"):
    """Decodes one encoded image into uint8 pixels of shape ``(height, width, channels)``.

    Args:
        contents: a scalar string tensor, the bytes of a JPEG, PNG, BMP or GIF file.
        channels: 1 (grey) or 3 (RGB).
        size: ``(height, width)`` of the result; None keeps the image's own size.
        fit: ``"stretch"`` or ``"center_crop"`` (see the module's docstring).

    Returns:
        A uint8 tensor ``(height, width, channels)``.

    Raises:
        tf.errors.InvalidArgumentError: when the bytes are not a readable image (at run time).

    Example:
    >>> import io, numpy as np
    >>> from PIL import Image
    >>> buffer = io.BytesIO()
    >>> Image.new("RGB", (40, 20), (255, 0, 0)).save(buffer, "PNG")
    >>> pixels = decode(buffer.getvalue(), channels=1, size=(8, 8))
    >>> pixels.shape, int(pixels[0, 0, 0])
    (TensorShape([8, 8, 1]), 76)
    """
    import tensorflow as tf

    _check(channels, fit)
    contents = tf.convert_to_tensor(contents, tf.string)
    if size is None:
        image = _dispatch(contents, lambda: _decode_jpeg(contents, 1, tf), lambda: _decode_other(contents, tf), tf)
        return _finish(image, channels, None, tf)
    target = tf.constant([int(size[0]), int(size[1])], tf.int32)
    if size[0] == size[1]:
        stored_target = target
    else:  # the target as the stored (not yet turned) image is laid out
        stored_target = tf.where(exif_orientation(contents) >= 5, tf.reverse(target, [0]), target)

    if fit == "center_crop":
        def jpeg():
            window = _center_window(tf.io.extract_jpeg_shape(contents)[:2], stored_target, tf)
            return tf.io.decode_and_crop_jpeg(contents, window, channels=3, dct_method="INTEGER_ACCURATE")

        def other():
            image = _decode_other(contents, tf)
            window = _center_window(tf.shape(image)[:2], stored_target, tf)
            return tf.slice(image, [window[0], window[1], 0], [window[2], window[3], -1])
    else:
        def jpeg():
            return _decode_jpeg_scaled(contents, stored_target, tf)

        def other():
            return _decode_other(contents, tf)

    return _finish(_dispatch(contents, jpeg, other, tf), channels, size, tf)


def decode_random_crop(contents, channels: int, size: Sequence[int], seed, scale=CROP_SCALE, ratio=CROP_RATIO,
                       dtype="uint8"):
    """Decodes a random window of an image (the ImageNet training crop), resized to ``size``.

    The window covers ``scale`` of the image's area with an aspect ratio in ``ratio``
    (:func:`random_resized_crop`'s rule), and is drawn from ``seed`` (a ``(2,)`` int tensor).
    A JPEG decodes only that window. The window is drawn on the image as stored, before its
    EXIF turn: the area and the (symmetric) aspect-ratio range are the same either way.
    ``dtype="float32"`` returns the resized window unrounded.
    """
    import tensorflow as tf

    _check(channels, "stretch")
    contents = tf.convert_to_tensor(contents, tf.string)

    def jpeg():
        begin, window = _random_window(tf.io.extract_jpeg_shape(contents), seed, scale, ratio, tf)
        crop = tf.concat([begin[:2], window[:2]], 0)
        return tf.io.decode_and_crop_jpeg(contents, crop, channels=3, dct_method="INTEGER_ACCURATE")

    def other():
        image = _decode_other(contents, tf)
        begin, window = _random_window(tf.shape(image), seed, scale, ratio, tf)
        return tf.slice(image, begin, window)

    return _finish(_dispatch(contents, jpeg, other, tf), channels, size, tf, dtype)


def evaluation_fit(size: Sequence[int]) -> str:
    """How images of a model's input ``size`` are fitted for evaluation and prediction.

    ``"center_crop"`` (the ImageNet rule) from 64 px on, ``"stretch"`` below (small images,
    CIFAR-style, are used whole). Training sees the same geometry, plus its augmentation.

    Example:
    >>> evaluation_fit((224, 224)), evaluation_fit((32, 32))
    ('center_crop', 'stretch')
    """
    return "center_crop" if min(int(s) for s in size) >= EVALUATION_CROP_MIN_SIZE else "stretch"


def resize(image, size, dtype="uint8"):
    """Resizes a uint8 image to ``size`` (bilinear, as Keras's loader; the same pixels at that size).

    Big reductions happen before, where they are cheap: a JPEG is decoded at 1/2, 1/4 or 1/8
    scale when that still covers the target. ``dtype="float32"`` returns the interpolated
    values unrounded (what a training pipeline feeds the model anyway).
    """
    import tensorflow as tf

    channels = image.shape[-1]
    # tf.image.resize's bilinear kernel without its argument checks (in a tf.data map each small
    # op costs microseconds per image), on float32 input, which it interpolates in half the time
    # it takes for uint8.
    resized = tf.raw_ops.ResizeBilinear(images=tf.expand_dims(tf.cast(image, tf.float32), 0),
                                        size=tf.cast(size, tf.int32), half_pixel_centers=True)[0]
    # Bilinear weights are convex: the values stay in 0..255 and only need rounding.
    out = resized if dtype == "float32" else tf.cast(resized + 0.5, tf.uint8)
    if isinstance(size, (tuple, list)):
        out.set_shape([int(size[0]), int(size[1]), channels])
    else:
        out.set_shape([None, None, channels])
    return out


def center_crop(image, size, fraction: float = CENTER_CROP_FRACTION):
    """The central window of ``image`` with ``size``'s aspect ratio, ``fraction`` of the largest one."""
    import tensorflow as tf

    window = _center_window(tf.shape(image)[:2], tf.convert_to_tensor(size, tf.int32), tf, fraction)
    return tf.slice(image, [window[0], window[1], 0], [window[2], window[3], -1])


def random_resized_crop(image, size, seed, scale=CROP_SCALE, ratio=CROP_RATIO):
    """A random window (``scale`` of the area, aspect ratio in ``ratio``) resized to ``size``.

    The Inception / ResNet ImageNet augmentation; Keras 3 has no layer for it, so it is
    ``tf.image.stateless_sample_distorted_bounding_box`` keyed by ``seed`` (a ``(2,)`` int
    tensor): the same seed gives the same window. Where ten attempts find no window that fits,
    the whole image is used.
    """
    import tensorflow as tf

    begin, window = _random_window(tf.shape(image), seed, scale, ratio, tf)
    return resize(tf.slice(image, begin, window), size)


def exif_orientation(contents):
    """The EXIF orientation (1-8) of a JPEG's bytes; 1 where there is none (or not a JPEG).

    Parsed in TensorFlow ops. The EXIF APP1 segment follows the start-of-image marker (EXIF
    2.3, section 4.5.4), or a JFIF APP0 segment; in it, the TIFF header's byte order and the
    0x0112 entry of the first image directory (within its first KiB) give the orientation.

    Example:
    >>> import io
    >>> from PIL import Image
    >>> buffer, exif = io.BytesIO(), Image.Exif()
    >>> exif[0x0112] = 6
    >>> Image.new("RGB", (4, 2)).save(buffer, "JPEG", exif=exif)
    >>> int(exif_orientation(buffer.getvalue()))
    6
    """
    import tensorflow as tf

    # Branch-free (a tf.cond per image costs more than these few small ops): the directory is
    # read at whatever offset the marker would be, and used only if the marker is there.
    contents = tf.convert_to_tensor(contents, tf.string)
    length = tf.strings.length(contents)
    start = tf.cast(tf.io.decode_raw(tf.strings.substr(tf.strings.join([contents, b"\0" * 6]), 0, 6), tf.uint8), tf.int32)
    is_jpeg = tf.equal(start[0], 0xFF) & tf.equal(start[1], 0xD8)
    jfif = tf.equal(start[2], 0xFF) & tf.equal(start[3], 0xE0)
    # "Exif\0\0" sits 4 bytes into the APP1 segment: at 6, or after APP0 (2 + 2 + its length).
    at = tf.minimum(tf.where(jfif, 8 + start[4] * 256 + start[5], 6), length)
    found = is_jpeg & tf.equal(tf.strings.substr(contents, at, 6), b"Exif\0\0")
    tiff = tf.minimum(at + 6, length)
    padded = tf.strings.join([tf.strings.substr(contents, tiff, _EXIF_READ_BYTES), b"\0" * _EXIF_READ_BYTES])
    data = tf.cast(tf.io.decode_raw(tf.strings.substr(padded, 0, _EXIF_READ_BYTES), tf.uint8), tf.int32)
    little = tf.equal(data[0], 0x49)  # "II": little-endian; "MM": big-endian

    def u16(i):
        i = tf.clip_by_value(i, 0, _EXIF_READ_BYTES - 2)
        lo, hi = tf.gather(data, i), tf.gather(data, i + 1)
        return tf.where(little, lo + 256 * hi, 256 * lo + hi)

    ifd = tf.where(little, u16(4) + 65536 * u16(6), 65536 * u16(4) + u16(6))
    entries = ifd + 2 + 12 * tf.range(_MAX_IFD_ENTRIES)
    valid = (tf.range(_MAX_IFD_ENTRIES) < u16(ifd)) & (entries + 10 <= _EXIF_READ_BYTES)
    hits = tf.cast(valid & tf.equal(u16(entries), _ORIENTATION_TAG), tf.int32)
    value = tf.reduce_sum(hits * u16(entries + 8))  # at most one entry has the tag
    return tf.where(found & (value >= 1) & (value <= 8), value, 1)


def read_image_file(path, channels: int, size: Sequence[int] | None = None, fit: str = "stretch"):
    """Reads and decodes one image file eagerly: a uint8 numpy array ``(height, width, channels)``.

    Raises:
        ValueError: naming the file, when it cannot be read or is not a readable image.
    """
    import re

    import tensorflow as tf

    _check(channels, fit)
    try:
        contents = tf.io.read_file(str(path))
        return decode(contents, channels, size, fit).numpy()
    except (tf.errors.OpError, OSError) as e:
        # TensorFlow wraps an op's message in "{{function_node ...}} ... [Op:Name] name:".
        text = re.sub(r"\{\{function_node [^}]*\}\}\s*|\s*\[Op:\w+\](?: name:.*)?$", "",
                      str(getattr(e, "message", "") or e).strip())
        lines = [line for line in text.splitlines() if line.strip()]
        reason = lines[0].strip() if lines else type(e).__name__
        raise ValueError(f"cannot read image {str(path)!r}: {reason}") from None


# ---- pieces --------------------------------------------------------------------------------------

def _check(channels, fit):
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3; received channels={channels!r}")
    if fit not in FITS:
        raise ValueError(f"fit must be one of {', '.join(FITS)}; received fit={fit!r}")


def _dispatch(contents, jpeg, other, tf):
    """Decodes with ``jpeg()`` or ``other()`` by content, turning JPEGs with EXIF upright.

    One branch per image: a ``tf.cond`` costs about a fifth of decoding a small JPEG, and two
    string comparisons find the EXIF segment that most files do not have.
    """
    length = tf.strings.length(contents)  # a file shorter than the offsets is not an image; let the decoder say so
    has_exif = (tf.equal(tf.strings.substr(contents, tf.minimum(6, length), 4), b"Exif")
                | tf.equal(tf.strings.substr(contents, tf.minimum(24, length), 4), b"Exif"))
    index = tf.where(tf.io.is_jpeg(contents), tf.where(has_exif, 2, 1), 0)
    return tf.switch_case(index, [other, jpeg, lambda: _orient(jpeg(), exif_orientation(contents), tf)])


def _finish(image, channels, size, tf, dtype="uint8"):
    """Converts the channels and resizes."""
    if channels == 1:
        image = _to_grey(image, tf)
    image.set_shape([None, None, channels])
    return image if size is None else resize(image, [int(size[0]), int(size[1])], dtype)


def _decode_other(contents, tf):
    image = tf.io.decode_image(contents, channels=3, expand_animations=False)
    return _bmp_palette(contents, image, tf)


def _center_window(shape, target, tf, fraction=CENTER_CROP_FRACTION):
    """``[top, left, height, width]`` of the central window with ``target``'s aspect ratio."""
    scale = tf.reduce_min(tf.cast(shape, tf.float32) / tf.cast(target, tf.float32)) * fraction
    window = tf.clip_by_value(tf.cast(tf.round(tf.cast(target, tf.float32) * scale), tf.int32), 1, shape)
    offset = (shape - window) // 2
    return tf.concat([offset, window], 0)


def _random_window(shape, seed, scale, ratio, tf):
    """``(begin, size)`` for ``tf.slice`` of a random window of an image of ``shape`` (3-D)."""
    begin, window, _ = tf.raw_ops.StatelessSampleDistortedBoundingBox(
        image_size=tf.cast(shape, tf.int32), bounding_boxes=tf.constant([[[0.0, 0.0, 1.0, 1.0]]]),
        min_object_covered=0.0, seed=tf.cast(seed, tf.int64), aspect_ratio_range=[float(r) for r in ratio],
        area_range=[float(a) for a in scale], max_attempts=10, use_image_if_no_bounding_boxes=True,
    )
    return begin, window


def _decode_jpeg_scaled(contents, target, tf):
    """A JPEG decoded at the smallest of 1, 1/2, 1/4, 1/8 scale that still covers ``target``."""
    shape = tf.io.extract_jpeg_shape(contents)[:2]
    room = tf.reduce_min(tf.cast(shape, tf.float32) / tf.cast(target, tf.float32))
    ratio_index = tf.cast(tf.clip_by_value(tf.floor(tf.math.log(tf.maximum(room, 1.0)) / tf.math.log(2.0)), 0, 3), tf.int32)
    branches = [lambda r=r: _decode_jpeg(contents, r, tf) for r in (1, 2, 4, 8)]
    return tf.switch_case(ratio_index, branches)


def _decode_jpeg(contents, ratio, tf):
    # libjpeg's accurate integer IDCT: the same pixels as PIL (the default fast one differs by
    # up to 13 levels on sharp edges), at no measurable cost.
    return tf.io.decode_jpeg(contents, channels=3, ratio=ratio, dct_method="INTEGER_ACCURATE")


def _orient(image, orientation, tf):
    """Turns ``image`` upright for an EXIF orientation (PIL.ImageOps.exif_transpose's table).

    Each orientation is a transpose (5-8) followed by a left-right and / or an up-down mirror;
    both take their settings as tensors, so there is no branch (and nothing is copied for 1).
    """
    o = orientation
    transpose = o >= 5
    image = tf.transpose(image, tf.where(transpose, [1, 0, 2], [0, 1, 2]))
    left_right = tf.equal(o, 2) | tf.equal(o, 3) | tf.equal(o, 6) | tf.equal(o, 7)
    up_down = tf.equal(o, 3) | tf.equal(o, 4) | tf.equal(o, 7) | tf.equal(o, 8)
    axes = tf.boolean_mask(tf.constant([0, 1]), tf.stack([up_down, left_right]))
    return tf.reverse(image, axes)


def _to_grey(image, tf):
    weights = tf.constant([0.299, 0.587, 0.114], tf.float32)
    grey = tf.tensordot(tf.cast(image, tf.float32), weights, axes=1)[..., None]
    return tf.cast(tf.clip_by_value(tf.round(grey), 0, 255), tf.uint8)


def _bmp_palette(contents, image, tf):
    """Maps an 8-bit palette BMP's indices (which TensorFlow decodes as grey levels) to colours."""
    header = tf.io.decode_raw(tf.strings.substr(contents, 0, 54), tf.uint8)

    def u(i, k):
        value = tf.constant(0, tf.int32)
        for j in reversed(range(k)):
            value = value * 256 + tf.cast(header[i + j], tf.int32)
        return value

    def lookup():
        table_start = 14 + u(14, 4)
        colours = tf.where(u(46, 4) > 0, u(46, 4), 256)
        raw = tf.io.decode_raw(tf.strings.substr(contents, table_start, 4 * colours), tf.uint8)
        palette = tf.reverse(tf.reshape(raw, [-1, 4])[:, :3], axis=[1])  # BGRx -> RGB
        index = tf.minimum(tf.cast(image[..., 0], tf.int32), tf.shape(palette)[0] - 1)
        return tf.gather(palette, index)

    is_bmp = tf.equal(tf.strings.substr(contents, 0, 2), b"BM")
    eight_bit = tf.logical_and(is_bmp, tf.size(header) >= 54)
    return tf.cond(
        eight_bit,
        lambda: tf.cond(tf.equal(u(28, 2), 8), lookup, lambda: image),
        lambda: image,
    )
