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
EXIF_SEARCH_BYTES = 65536  # an APP1 (EXIF) segment is at most 64 KiB and comes first
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

    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3; received channels={channels!r}")
    if fit not in FITS:
        raise ValueError(f"fit must be one of {', '.join(FITS)}; received fit={fit!r}")
    contents = tf.convert_to_tensor(contents, tf.string)
    target = None if size is None else tf.constant([int(size[0]), int(size[1])], tf.int32)

    def generic():
        image = tf.io.decode_image(contents, channels=3, expand_animations=False)
        return _bmp_palette(contents, image, tf)

    if target is None:
        image = tf.cond(tf.io.is_jpeg(contents), lambda: _decode_jpeg(contents, 1, tf), generic)
    else:
        image = tf.cond(tf.io.is_jpeg(contents), lambda: _decode_jpeg_scaled(contents, target, fit, tf), generic)
    image = _orient(image, exif_orientation(contents), tf)
    if channels == 1:
        image = _to_grey(image, tf)
    image.set_shape([None, None, channels])
    if target is None:
        return image
    if fit == "center_crop":
        image = center_crop(image, target, CENTER_CROP_FRACTION)
    return resize(image, target)


def evaluation_fit(size: Sequence[int]) -> str:
    """How images of a model's input ``size`` are fitted for evaluation and prediction.

    ``"center_crop"`` (the ImageNet rule) from 64 px on, ``"stretch"`` below (small images,
    CIFAR-style, are used whole). Training sees the same geometry, plus its augmentation.

    Example:
    >>> evaluation_fit((224, 224)), evaluation_fit((32, 32))
    ('center_crop', 'stretch')
    """
    return "center_crop" if min(int(s) for s in size) >= EVALUATION_CROP_MIN_SIZE else "stretch"


def resize(image, size):
    """Resizes a uint8 image to ``size`` (bilinear, antialiased when shrinking); a no-op at that size."""
    import tensorflow as tf

    size = tf.cast(size, tf.int32)
    same = tf.reduce_all(tf.equal(tf.shape(image)[:2], size))

    def scaled():
        resized = tf.image.resize(image, size, method="bilinear", antialias=True)
        return tf.cast(tf.clip_by_value(tf.round(resized), 0, 255), tf.uint8)

    channels = image.shape[-1]
    out = tf.cond(same, lambda: tf.identity(image), scaled)
    out.set_shape([None, None, channels])
    return out


def center_crop(image, size, fraction: float = CENTER_CROP_FRACTION):
    """The central window of ``image`` with ``size``'s aspect ratio, ``fraction`` of the largest one."""
    import tensorflow as tf

    shape = tf.cast(tf.shape(image)[:2], tf.float32)
    target = tf.cast(size, tf.float32)
    scale = tf.reduce_min(shape / target) * fraction
    window = tf.maximum(tf.cast(tf.round(target * scale), tf.int32), 1)
    window = tf.minimum(window, tf.shape(image)[:2])
    offset = (tf.shape(image)[:2] - window) // 2
    return tf.image.crop_to_bounding_box(image, offset[0], offset[1], window[0], window[1])


def random_resized_crop(image, size, seed, scale=CROP_SCALE, ratio=CROP_RATIO):
    """A random window (``scale`` of the area, aspect ratio in ``ratio``) resized to ``size``.

    The Inception / ResNet ImageNet augmentation; Keras 3 has no layer for it, so it is
    ``tf.image.stateless_sample_distorted_bounding_box`` keyed by ``seed`` (a ``(2,)`` int
    tensor): the same seed gives the same window. Where ten attempts find no window that fits,
    the whole image is used.
    """
    import tensorflow as tf

    whole = tf.constant([[[0.0, 0.0, 1.0, 1.0]]], tf.float32)
    begin, window, _ = tf.image.stateless_sample_distorted_bounding_box(
        tf.shape(image), bounding_boxes=whole, seed=seed, min_object_covered=0.0,
        aspect_ratio_range=tuple(ratio), area_range=tuple(scale), max_attempts=10,
        use_image_if_no_bounding_boxes=True,
    )
    return resize(tf.slice(image, begin, window), size)


def exif_orientation(contents):
    """The EXIF orientation (1-8) of a JPEG's bytes; 1 where there is none (or not a JPEG).

    Parsed in TensorFlow ops from the APP1 segment: the ``Exif\\0\\0`` marker in the first
    64 KiB, the TIFF header's byte order, and the 0x0112 entry of the first image directory.

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

    contents = tf.convert_to_tensor(contents, tf.string)
    head = tf.io.decode_raw(tf.strings.substr(contents, 0, EXIF_SEARCH_BYTES), tf.uint8)
    data = tf.cast(head, tf.int32)
    n = tf.size(data)
    marker = [0x45, 0x78, 0x69, 0x66, 0, 0]  # "Exif\0\0"
    span = tf.maximum(n - len(marker) + 1, 0)
    hits = tf.ones([span], tf.bool)
    for k, byte in enumerate(marker):
        hits &= tf.equal(data[k:k + span], byte)
    found = tf.where(hits)

    def at(i):  # a byte, 0 past the end
        i = tf.convert_to_tensor(i)
        inside = (i >= 0) & (i < n)
        return tf.where(inside, tf.gather(data, tf.clip_by_value(i, 0, tf.maximum(n - 1, 0))), 0)

    def parse():
        tiff = tf.cast(found[0, 0], tf.int32) + len(marker)
        little = tf.equal(at(tiff), 0x49)  # "II": little-endian; "MM": big-endian

        def u16(i):
            return tf.where(little, at(i) + 256 * at(i + 1), 256 * at(i) + at(i + 1))

        def u32(i):
            return tf.where(little, u16(i) + 65536 * u16(i + 2), 65536 * u16(i) + u16(i + 2))

        ifd = tiff + u32(tiff + 4)
        entries = ifd + 2 + 12 * tf.range(_MAX_IFD_ENTRIES)
        tags = u16(entries)
        valid = tf.range(_MAX_IFD_ENTRIES) < u16(ifd)
        match = tf.where(valid & tf.equal(tags, _ORIENTATION_TAG))
        value = tf.cond(tf.size(match) > 0, lambda: u16(entries[tf.cast(match[0, 0], tf.int32)] + 8), lambda: 1)
        return tf.where((value >= 1) & (value <= 8), value, 1)

    is_jpeg = tf.equal(tf.strings.substr(contents, 0, 2), b"\xff\xd8")
    return tf.cond(is_jpeg & (tf.shape(found)[0] > 0), parse, lambda: tf.constant(1, tf.int32))


def read_image_file(path, channels: int, size: Sequence[int] | None = None, fit: str = "stretch"):
    """Reads and decodes one image file eagerly: a uint8 numpy array ``(height, width, channels)``.

    Raises:
        ValueError: naming the file, when it cannot be read or is not a readable image.
    """
    import tensorflow as tf

    try:
        contents = tf.io.read_file(str(path))
        return decode(contents, channels, size, fit).numpy()
    except (tf.errors.OpError, OSError) as e:
        reason = getattr(e, "message", str(e)).strip().splitlines()[0] if str(e) else type(e).__name__
        raise ValueError(f"cannot read image {str(path)!r}: {reason}") from None


# ---- pieces --------------------------------------------------------------------------------------

def _decode_jpeg_scaled(contents, target, fit, tf):
    """A JPEG decoded at the smallest of 1, 1/2, 1/4, 1/8 scale that still covers the target."""
    shape = tf.io.extract_jpeg_shape(contents)[:2]
    # The orientation may swap height and width: compare the short sides for a crop (whose
    # target is square or nearly so) and each side against the larger target side otherwise.
    if fit == "center_crop":
        room = tf.cast(tf.reduce_min(shape), tf.float32) * CENTER_CROP_FRACTION / tf.cast(tf.reduce_max(target), tf.float32)
    else:
        room = tf.cast(tf.reduce_min(shape), tf.float32) / tf.cast(tf.reduce_max(target), tf.float32)
    ratio_index = tf.cast(tf.clip_by_value(tf.floor(tf.math.log(tf.maximum(room, 1.0)) / tf.math.log(2.0)), 0, 3), tf.int32)
    branches = [lambda r=r: _decode_jpeg(contents, r, tf) for r in (1, 2, 4, 8)]
    return tf.switch_case(ratio_index, branches)


def _decode_jpeg(contents, ratio, tf):
    # libjpeg's accurate integer IDCT: the same pixels as PIL (the default fast one differs by
    # up to 13 levels on sharp edges), at no measurable cost.
    return tf.io.decode_jpeg(contents, channels=3, ratio=ratio, dct_method="INTEGER_ACCURATE")


def _orient(image, orientation, tf):
    """Turns ``image`` upright for an EXIF orientation (PIL.ImageOps.exif_transpose's table)."""
    branches = [
        lambda: image,  # 1: as stored
        lambda: tf.image.flip_left_right(image),  # 2
        lambda: tf.image.rot90(image, 2),  # 3
        lambda: tf.image.flip_up_down(image),  # 4
        lambda: tf.image.transpose(image),  # 5
        lambda: tf.image.rot90(image, 3),  # 6: stored turned left; shown turned right
        lambda: tf.image.rot90(tf.image.transpose(image), 2),  # 7
        lambda: tf.image.rot90(image, 1),  # 8
    ]
    return tf.switch_case(orientation - 1, branches)


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
