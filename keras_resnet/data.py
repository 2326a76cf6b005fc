"""Datasets as ``tf.data`` pipelines: digits (offline), TFDS datasets and image folders.

``load_dataset`` returns a :class:`Dataset`: batched train, validation and test pipelines that
yield *raw pixels* (float32 in 0..255) and sparse integer labels, plus what a model needs (input
shape, classes, class names) and the per-channel mean and standard deviation of the training
split. Normalisation belongs in the model (:func:`preprocessing`), so that exported models take
raw pixels; augmentation belongs in the training pipeline, seeded, so that it never reaches an
exported graph. Two recipes (:data:`AUGMENTATIONS`):

* ``"cifar"``, the ResNet paper's CIFAR augmentation (He et al., 2015, section 4.2): zero-pad,
  random crop back to size, random horizontal flip; the default below 64 px;
* ``"imagenet"``, its ImageNet one (section 3.4, as in Szegedy et al., 2015): a random window
  of 8-100% of the area and aspect ratio 3/4-4/3 resized to the input size, plus the flip; the
  default from 64 px on, where evaluation resizes and takes the central 87.5%
  (:func:`keras_resnet.images.evaluation_fit`);

or ``"none"``. Image folders stream from disk (:mod:`keras_resnet.folders`).

This module imports TensorFlow only inside the functions that need it: :func:`check_dataset`
validates a dataset name or folder at once, without it.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
from pathlib import Path
from typing import Any

from keras_resnet.augment import AUGMENTATIONS, augmentation_settings, augmenter, random_flip
from keras_resnet.folders import BAD_FILE_POLICIES
from keras_resnet.validation import (
    check_bool,
    check_choice,
    check_fraction,
    check_int,
    check_path,
    check_type,
)

DIGITS = "digits"
# TFDS image-classification datasets known to load with ``as_supervised=True``, and whether a
# horizontal flip keeps an image's class (not for digits and characters). Any other TFDS
# dataset is reached as "tfds:<name>".
TFDS_FLIP = {
    "cifar10": True,
    "cifar100": True,
    "mnist": False,
    "fashion_mnist": True,
    "kmnist": False,
    "svhn_cropped": False,
    "stl10": True,
    "tf_flowers": True,
    "imagenette": True,
}
DATASET_NAMES = (DIGITS, *TFDS_FLIP)

DIGITS_TEST_SIZE = 360  # of scikit-learn's 1,797 digits (20%): 1,437 to train on, 360 to test
SPLIT_SEED = 0  # splits are fixed, so that runs with different seeds share one test set
DIGITS_IMAGE_SIZE = 16  # 8x8 digits resized to 16x16 train a CIFAR-style net best
DEFAULT_VALIDATION_SPLIT = 0.1  # CIFAR: 45k / 5k as in the ResNet paper
FOLDER_TEST_SPLIT = 0.2
MEMORY_CACHE_LIMIT = 4 * 2**30  # decoded bytes of a split that cache=True keeps in memory


@dataclasses.dataclass(frozen=True)
class Dataset:
    """Batched pipelines and the metadata a model needs.

    Every pipeline yields ``(images, labels)``: float32 raw pixels in 0..255 of shape
    ``(batch, *input_shape)`` and int labels of shape ``(batch,)``. ``validation`` is None when
    ``validation_split=0``. ``augmentation`` says what the training split does (``"recipe"``,
    its settings) and how every split fits images to the input size (``"fit"``).
    ``skipped_files``: with ``bad_files="skip"``, the text file that unreadable files are
    listed in as the pipelines meet them (:meth:`skipped`).
    """

    name: str
    train: Any
    validation: Any
    test: Any
    input_shape: tuple[int, int, int]
    num_classes: int
    class_names: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    train_count: int
    validation_count: int
    test_count: int
    batch_size: int
    augmentation: dict
    skipped_files: str | None = None

    @property
    def steps_per_epoch(self) -> int:
        """Training batches per epoch (the last one may be partial)."""
        return -(-self.train_count // self.batch_size)

    def skipped(self) -> list[str]:
        """The unreadable files dropped so far (``bad_files="skip"``), each once."""
        from keras_resnet.folders import skipped_files

        return skipped_files(self.skipped_files)


def check_dataset(name: str, data_dir: str | os.PathLike | None = None) -> tuple[str, str]:
    """Validates a dataset name without importing TensorFlow.

    Args:
        name: ``"digits"``, a TFDS name (``"cifar10"``, ``"mnist"``, ... or ``"tfds:<name>"``
            for any TFDS image-classification dataset), or the path of a folder holding one
            sub-folder of images per class (or ``train/`` and ``test/`` folders that do).
        data_dir: TFDS's data directory; must exist when given.

    Returns:
        ``(kind, resolved)``: kind is ``"digits"``, ``"tfds"`` or ``"folder"``; resolved is the
        TFDS name or the folder's absolute path.

    Raises:
        ValueError: unknown name, missing folder, or a folder without class sub-folders.

    Example:
    >>> check_dataset("cifar10")
    ('tfds', 'cifar10')
    """
    if isinstance(name, os.PathLike):
        name = os.fspath(name)
    if not isinstance(name, str) or not name:
        raise ValueError(f"dataset must be a non-empty string or a folder path; received dataset={name!r}")
    if data_dir is not None and not Path(data_dir).is_dir():
        raise ValueError(f"data_dir {str(data_dir)!r} does not exist or is not a folder")
    if name == DIGITS:
        return "digits", name
    if name in TFDS_FLIP:
        return "tfds", name
    if name.startswith("tfds:") and len(name) > 5:
        return "tfds", name[5:]
    path = Path(name).expanduser()
    if path.is_dir():
        from keras_resnet.folders import class_folders

        class_folders(path)
        return "folder", str(path.resolve())
    if os.sep in name or "/" in name or name.startswith((".", "~")):
        raise ValueError(f"dataset folder {name!r} does not exist")
    close = difflib.get_close_matches(name, DATASET_NAMES, n=2)
    hint = f" (did you mean {' or '.join(close)}?)" if close else ""
    raise ValueError(
        f"unknown dataset {name!r}{hint}; choose {', '.join(DATASET_NAMES)}, 'tfds:<name>' for "
        "another TFDS dataset, or the path of a folder with one sub-folder of images per class"
    )


def load_dataset(
    name: str = DIGITS,
    *,
    image_size: int | None = None,
    batch_size: int = 128,
    validation_split: float | None = None,
    seed: int = 0,
    augment: bool = True,
    augmentation: str | None = None,
    flip: bool | None = None,
    pad: int | None = None,
    data_dir: str | os.PathLike | None = None,
    cache: bool | str = True,
    shuffle_buffer: int = 50_000,
    bad_files: str = "error",
    skipped_files: str | os.PathLike | None = None,
    stats: tuple | None = None,
) -> Dataset:
    """Loads a dataset as batched, prefetched ``tf.data`` pipelines.

    Sources:
    * ``"digits"``: scikit-learn's 1,797 handwritten 8x8 digits (offline), pixel values 0..16
      scaled to 0..255, one channel, resized to 16x16 by default. A fixed stratified split:
      360 test images; ``validation_split`` (default 10%) of the other 1,437, stratified, for
      validation (1,293 / 144 / 360).
    * TFDS with ``data_dir`` (what ``tfds.load`` does, step by step, so that a failed download
      says what to do): the ``train`` split's last ``validation_split``
      (default 10%: CIFAR's 45k / 5k as in the ResNet paper) for validation; ``test`` (or
      ``validation`` where there is no ``test``) for testing.
    * A folder with one sub-folder per class (``keras.utils.image_dataset_from_directory``'s
      layout), split 80% / 20% per class into train and test, then ``validation_split`` of
      train; or a folder with ``train/`` and ``test/`` (and optional ``validation/``) folders.
      Images stream from disk (:mod:`keras_resnet.folders`): set-up reads no image but a
      fixed sample; any format, mode and EXIF orientation is converted
      (:func:`keras_resnet.images.decode`) to one channel if every sampled image is grey,
      else RGB.

    Augmentation (training split only): ``augmentation`` picks the recipe (see the module's
    docstring; default ``"imagenet"`` from 64 px on, else ``"cifar"``). Its randomness comes
    from stateless ops keyed by ``seed``: it differs between epochs and repeats exactly with
    the same seed.

    Args:
        name: a dataset accepted by :func:`check_dataset`.
        image_size: resize images to ``image_size`` x ``image_size``; default: 16 for digits,
            the dataset's own size otherwise (a folder's most common size in a sample).
        batch_size: images per batch (the global batch under a distribution strategy).
        validation_split: fraction of the training images held out for validation, in [0, 1).
        seed: seeds shuffling and augmentation (the splits are fixed).
        augment: False turns augmentation off (the same as ``augmentation="none"``).
        augmentation: ``"cifar"``, ``"imagenet"`` or ``"none"``; default by image size.
        flip: random horizontal flips; default: per dataset (never for digits, MNIST, SVHN).
        pad: the cifar recipe's zero padding before the random crop (default an eighth of
            the image: 4 at 32x32); 0 turns translation off.
        data_dir: TFDS's data directory.
        cache: True: keep decoded images in memory (each split whose decoded pixels fit in
            4 GiB; not a folder's training split under the imagenet recipe, which crops the
            full images); a str: cache files under this folder; False: decode every epoch.
        shuffle_buffer: shuffle buffer of a training split held in memory (a folder read
            from disk is shuffled whole, by file name).
        bad_files: an image folder's unreadable files: ``"error"`` stops at the first one
            with an error naming it; ``"skip"`` drops them and lists them in
            ``skipped_files``.
        skipped_files: the text file for ``"skip"``; default a new temporary file.
        stats: ``(mean, std)`` per channel to use instead of measuring them (a pretrained
            model's own): then no image is decoded while setting up.

    Returns:
        A :class:`Dataset`.

    Example:
    >>> ds = load_dataset("digits", batch_size=32)
    >>> ds.input_shape, ds.num_classes, ds.train_count, ds.validation_count, ds.test_count
    ((16, 16, 1), 10, 1293, 144, 360)
    >>> ds.augmentation["recipe"], ds.augmentation["fit"]
    ('cifar', 'stretch')
    """
    batch_size = check_int("batch_size", batch_size, 1)
    seed = check_int("seed", seed, 0)
    shuffle_buffer = check_int("shuffle_buffer", shuffle_buffer, 1)
    image_size = check_int("image_size", image_size, 1, optional=True, none_means="the dataset's own size")
    pad = check_int("pad", pad, 0, optional=True, none_means="an eighth of the image")
    if validation_split is None:
        validation_split = DEFAULT_VALIDATION_SPLIT
    validation_split = check_fraction("validation_split", validation_split)
    check_bool("augment", augment)
    check_choice("augmentation", augmentation, (*AUGMENTATIONS, None), "one of cifar, imagenet, none, or None (by image size)")
    check_bool("flip", flip, optional=True, none_means="the dataset's default")
    check_type("cache", cache, (bool, str), "True, False or a folder path for cache files")
    check_path("data_dir", data_dir, optional=True, allowed="a folder path")
    check_choice("bad_files", bad_files, BAD_FILE_POLICIES)
    check_path("skipped_files", skipped_files, optional=True, allowed="a file path")
    if stats is not None:
        stats = _check_stats(stats)
    name = os.fspath(name) if isinstance(name, os.PathLike) else name
    kind, resolved = check_dataset(name, data_dir)

    if kind == "folder":
        return _load_folder(
            name, Path(resolved), image_size=image_size, batch_size=batch_size,
            validation_split=validation_split, seed=seed, augment=augment, augmentation=augmentation,
            flip=flip, pad=pad, cache=cache, shuffle_buffer=shuffle_buffer, bad_files=bad_files,
            skipped_files=skipped_files, stats=stats,
        )
    if kind == "digits":
        splits, class_names = _digits(image_size or DIGITS_IMAGE_SIZE, validation_split)
        default_flip = False
    else:
        splits, class_names = _tfds(resolved, image_size, validation_split, data_dir)
        default_flip = TFDS_FLIP.get(resolved, True)

    return _in_memory(name, splits, class_names, batch_size=batch_size, seed=seed, augment=augment,
                      augmentation=augmentation, flip=default_flip if flip is None else flip, pad=pad, cache=cache,
                      shuffle_buffer=shuffle_buffer, stats=stats)


def _in_memory(name, splits, class_names, *, batch_size, seed, augment, augmentation, flip, pad, cache,
               shuffle_buffer, stats) -> Dataset:
    """A Dataset from unbatched (uint8 image, int64 label) splits of one image size."""
    import tensorflow as tf

    shape = tuple(int(d) for d in splits["train"].element_spec[0].shape)
    settings = augmentation_settings(shape, augment, augmentation, flip, pad)
    counts = {k: (_count(v) if v is not None else 0) for k, v in splits.items()}
    if counts["train"] == 0:
        raise ValueError(f"dataset {name!r} has no training images")
    if settings["fit"] == "center_crop":  # the evaluation geometry of inputs from 64 px on
        for key in ("validation", "test"):
            if splits[key] is not None:
                splits[key] = splits[key].map(
                    lambda x, y: (_center_crop_uint8(x, shape[:2], tf), y), num_parallel_calls=tf.data.AUTOTUNE
                )
    # Cached before the statistics pass, which then fills the training split's cache.
    splits = {k: None if v is None else _cache(v, cache, k, counts[k]) for k, v in splits.items()}
    mean, std = stats or _channel_stats(splits["train"])
    pipelines = {
        key: None if ds is None else _pipeline(
            ds, training=key == "train", batch_size=batch_size, seed=seed,
            augmentation=settings, shuffle_buffer=shuffle_buffer, tf=tf,
        )
        for key, ds in splits.items()
    }
    return Dataset(
        name=name, train=pipelines["train"], validation=pipelines["validation"],
        test=pipelines["test"], input_shape=shape, num_classes=len(class_names),
        class_names=tuple(class_names), mean=mean, std=std, train_count=counts["train"],
        validation_count=counts["validation"], test_count=counts["test"], batch_size=batch_size,
        augmentation=settings,
    )


def from_arrays(
    x_train,
    y_train,
    x_test,
    y_test,
    *,
    x_validation=None,
    y_validation=None,
    class_names=None,
    name: str = "arrays",
    batch_size: int = 128,
    seed: int = 0,
    augment: bool = True,
    augmentation: str | None = None,
    flip: bool = False,
    pad: int | None = None,
) -> Dataset:
    """A :class:`Dataset` from in-memory arrays, with the same pipelines as :func:`load_dataset`.

    Args:
        x_train, x_test, x_validation: images of shape ``(n, height, width, channels)``, raw
            pixels in 0..255 (any numeric dtype; stored as uint8).
        y_train, y_test, y_validation: integer labels in ``0 .. num_classes - 1``.
        class_names: one name per class; default ``"0", "1", ...`` for the labels present.
        name: the dataset's name (what a run records).
        batch_size, seed, augment, augmentation, flip, pad: as for :func:`load_dataset` (flip
            off by default: the caller knows whether a mirror image keeps its class).

    Returns:
        A :class:`Dataset` whose statistics come from ``x_train``.

    Example:
    >>> import numpy as np
    >>> x, y = np.zeros((20, 8, 8, 1)), np.arange(20) % 2
    >>> ds = from_arrays(x, y, x[:4], y[:4], batch_size=8)
    >>> ds.input_shape, ds.num_classes, ds.train_count, ds.steps_per_epoch
    ((8, 8, 1), 2, 20, 3)
    """
    import numpy as np
    import tensorflow as tf

    batch_size = check_int("batch_size", batch_size, 1)
    seed = check_int("seed", seed, 0)
    check_bool("augment", augment)
    check_bool("flip", flip)
    check_choice("augmentation", augmentation, (*AUGMENTATIONS, None), "one of cifar, imagenet, none, or None (by image size)")
    pad = check_int("pad", pad, 0, optional=True, none_means="an eighth of the image")
    if (x_validation is None) != (y_validation is None):
        raise ValueError("pass both x_validation and y_validation, or neither")
    arrays = {"train": (x_train, y_train), "validation": (x_validation, y_validation), "test": (x_test, y_test)}
    splits, shape, top = {}, None, -1
    for key, (x, y) in arrays.items():
        if x is None:
            splits[key] = None
            continue
        x, y = np.asarray(x), np.asarray(y)
        if x.ndim != 4 or len(x) != len(y) or y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
            raise ValueError(
                f"x_{key} must be (n, height, width, channels) images and y_{key} n integer labels; "
                f"received shapes {x.shape} and {y.shape} ({y.dtype})"
            )
        if shape is not None and x.shape[1:] != shape:
            raise ValueError(f"x_{key} has images of shape {x.shape[1:]}, x_train {shape}")
        shape = x.shape[1:]
        if len(y) and y.min() < 0:
            raise ValueError(f"y_{key} has a negative label {y.min()}")
        top = max(top, int(y.max()) if len(y) else -1)
        pixels = np.clip(np.rint(x), 0, 255).astype("uint8")
        splits[key] = tf.data.Dataset.from_tensor_slices((pixels, y.astype("int64")))
    if len(np.asarray(y_train)) == 0:
        raise ValueError("x_train holds no images")
    names = tuple(str(c) for c in (class_names if class_names is not None else range(top + 1)))
    if len(names) <= top:
        raise ValueError(f"class_names has {len(names)} names, but the labels go up to {top}")
    return _in_memory(name, splits, names, batch_size=batch_size, seed=seed, augment=augment,
                      augmentation=augmentation, flip=flip, pad=pad, cache=True,
                      shuffle_buffer=max(len(np.asarray(y_train)), 1), stats=None)


def preprocessing(source, name: str = "normalize"):
    """The normalisation layer that goes in front of a model: raw pixels in, standardised out.

    A ``keras.layers.Normalization`` with the training split's per-channel mean and variance,
    so that a saved or exported model needs no outside preprocessing.

    Args:
        source: a :class:`Dataset` (or anything with ``mean`` and ``std``), or a ``(mean, std)``
            pair of per-channel sequences.
        name: the layer's name.

    Returns:
        A ``keras.layers.Normalization`` layer.

    Example:
    >>> import numpy as np
    >>> layer = preprocessing(([127.5], [64.0]))
    >>> float(layer(np.full((1, 2, 2, 1), 191.5, "float32"))[0, 0, 0, 0])
    1.0
    """
    import keras

    mean, std = (source.mean, source.std) if hasattr(source, "mean") and hasattr(source, "std") else source
    mean, std = [float(m) for m in mean], [float(s) for s in std]
    if len(mean) != len(std) or not mean or min(std) <= 0:
        raise ValueError(f"preprocessing needs per-channel means and positive stds of equal length; received mean={mean}, std={std}")
    return keras.layers.Normalization(axis=-1, mean=mean, variance=[s * s for s in std], name=name)


# ---- sources: each returns ({"train", "validation", "test"} -> unbatched (uint8 image, int
# label) datasets, class names) --------------------------------------------------------------

def _digits(size, validation_split):
    import numpy as np
    import tensorflow as tf
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = digits.images.astype("float32") * (255.0 / 16.0)
    labels = digits.target.astype("int64")
    x_rest, x_test, y_rest, y_test = train_test_split(
        images, labels, test_size=DIGITS_TEST_SIZE, stratify=labels, random_state=SPLIT_SEED
    )
    if validation_split > 0:
        x_train, x_val, y_train, y_val = train_test_split(
            x_rest, y_rest, test_size=validation_split, stratify=y_rest, random_state=SPLIT_SEED
        )
    else:
        x_train, y_train, x_val, y_val = x_rest, y_rest, None, None

    def as_ds(x, y):
        if x is None:
            return None
        x = x[..., None]
        if size != x.shape[1]:
            x = tf.image.resize(x, (size, size), method="bilinear").numpy()
        x = np.clip(np.rint(x), 0, 255).astype("uint8")
        return tf.data.Dataset.from_tensor_slices((x, y))

    splits = {"train": as_ds(x_train, y_train), "validation": as_ds(x_val, y_val), "test": as_ds(x_test, y_test)}
    return splits, [str(d) for d in digits.target_names]


def _tfds(name, image_size, validation_split, data_dir):
    import tensorflow as tf
    import tensorflow_datasets as tfds

    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except Exception as e:  # tfds raises its own DatasetNotFoundError
        raise ValueError(f"TFDS does not know dataset {name!r}: {str(e).splitlines()[0]}") from None
    features = builder.info.features
    if "image" not in features or "label" not in features:
        raise ValueError(f"TFDS dataset {name!r} is not an image-classification dataset (it needs 'image' and 'label' features)")
    class_names = list(features["label"].names)
    native = tuple(features["image"].shape)
    if image_size is None and None in native[:2]:
        raise ValueError(f"TFDS dataset {name!r} has images of varying sizes ({native}); pass image_size")
    # In tfds.testing.mock_data the split table is empty; the mock serves any split name.
    available = set(builder.info.splits.keys())
    test_split = "test" if not available or "test" in available else "validation"
    if available and test_split not in available:
        raise ValueError(f"TFDS dataset {name!r} has no 'test' or 'validation' split (it has {sorted(available)})")
    train_info = builder.info.splits["train"] if "train" in available else None
    n = train_info.num_examples if train_info is not None else 0
    if validation_split > 0:
        # Whole images where the size is known (CIFAR: exactly 45,000 / 5,000).
        cut = f"{n - round(n * validation_split)}" if n else f"{round(100 * (1 - validation_split))}%"
        names = {"train": f"train[:{cut}]", "validation": f"train[{cut}:]", "test": test_split}
    else:
        names = {"train": "train", "test": test_split}
    try:
        builder.download_and_prepare()  # a no-op once the data is in data_dir
    except Exception as e:  # no network, no disk space, a missing optional dependency, ...
        first = str(e).splitlines()[0] if str(e) else ""
        raise ValueError(
            f"could not download or prepare TFDS dataset {name!r} in {builder.data_dir}: "
            f"{type(e).__name__}: {first}. Prepare it where there is a network "
            f"(tfds build {name} --data_dir DIR) and pass data_dir=DIR"
        ) from e
    loaded = {key: builder.as_dataset(split=split, as_supervised=True, shuffle_files=False) for key, split in names.items()}
    loaded.setdefault("validation", None)

    def fix(ds):
        if ds is None:
            return None
        if image_size is not None and tuple(native[:2]) != (image_size, image_size):
            ds = ds.map(
                lambda x, y: (_resize_uint8(x, image_size, tf), y), num_parallel_calls=tf.data.AUTOTUNE
            )
        return ds.map(lambda x, y: (x, tf.cast(y, tf.int64)))

    return {k: fix(v) for k, v in loaded.items()}, class_names


def _load_folder(name, root, *, image_size, batch_size, validation_split, seed, augment, augmentation, flip, pad,
                 cache, shuffle_buffer, bad_files, skipped_files, stats) -> Dataset:
    """A folder's dataset: files listed and split at once, images decoded by the pipelines."""
    import tensorflow as tf

    from keras_resnet import folders
    from keras_resnet.images import decode, decode_random_crop

    index = folders.index_folder(root, validation_split, FOLDER_TEST_SPLIT, SPLIT_SEED)
    train_paths = index.splits["train"][0]
    size, channels = folders.inspect_headers(train_paths)
    if image_size is not None:
        size = (image_size, image_size)
    elif size is None:
        raise ValueError(f"none of the sampled images in {str(root)!r} could be opened; are they images?")
    shape = (*size, channels)
    settings = augmentation_settings(shape, augment, augmentation, True if flip is None else flip, pad)
    if bad_files == "skip" and skipped_files is None:
        import tempfile

        handle, skipped_files = tempfile.mkstemp(prefix="keras-resnet-skipped-", suffix=".txt")
        os.close(handle)
    log = None if skipped_files is None else os.path.abspath(skipped_files)
    fit = settings["fit"]

    def evaluate(contents, _):
        return decode(contents, channels, size, fit)

    def stream(paths, labels, transform=evaluate, shuffle_seed=None, batch=batch_size):
        return folders.file_pipeline(paths, labels, transform, output_shape=shape, batch_size=batch,
                                     shuffle_seed=shuffle_seed, bad_files=bad_files, log=log)

    if stats is None:
        paths, labels = index.splits["train"]
        sample = folders.evenly_spaced(list(range(len(paths))), folders.STATS_SAMPLE)
        try:
            stats = _channel_stats(stream([paths[i] for i in sample], labels[sample], batch=256), batched=True)
        except tf.errors.InvalidArgumentError as e:
            folders.reraise_unreadable(e)
            raise

    counts = {k: 0 if v is None else len(v[0]) for k, v in index.splits.items()}
    pipelines = {}
    for key in ("validation", "test"):
        if index.splits[key] is None:
            pipelines[key] = None
            continue
        ds = stream(*index.splits[key])
        if cache is not False:
            ds = _cache(ds, cache, key, counts[key], batched=True)
        pipelines[key] = _as_float(ds, tf)
    cached_train = cache is not False and settings["recipe"] != "imagenet" and (
        isinstance(cache, str) or counts["train"] * math.prod(shape) <= MEMORY_CACHE_LIMIT
    )
    if cached_train:  # decoded once, then shuffled and augmented in memory
        ds = stream(*index.splits["train"]).unbatch()
        if bad_files == "error":  # every file comes out (or training stops): Keras can count the steps
            ds = ds.apply(tf.data.experimental.assert_cardinality(counts["train"]))
        ds = _cache(ds, cache, "train", counts["train"])
        pipelines["train"] = _pipeline(ds, training=True, batch_size=batch_size, seed=seed, augmentation=settings,
                                       shuffle_buffer=shuffle_buffer, tf=tf)
    else:  # files shuffled by name each epoch, decoded, cropped and flipped in one parallel step
        augment_one = augmenter(settings)
        dtype = "uint8"
        if settings["recipe"] == "imagenet":
            dtype = "float32"  # the resized window unrounded: the model takes floats anyway

            def transform(contents, image_seed):
                image = decode_random_crop(contents, channels, size, image_seed, dtype=dtype)
                return random_flip(image, image_seed) if settings["flip"] else image
        else:
            def transform(contents, image_seed):
                return augment_one(evaluate(contents, None), image_seed)
        ds = folders.file_pipeline(*index.splits["train"], transform, output_shape=shape, batch_size=batch_size,
                                   shuffle_seed=seed, bad_files=bad_files, log=log, dtype=dtype)
        pipelines["train"] = _as_float(ds, tf)
    return Dataset(
        name=name, train=pipelines["train"], validation=pipelines["validation"], test=pipelines["test"],
        input_shape=shape, num_classes=len(index.class_names), class_names=index.class_names,
        mean=stats[0], std=stats[1], train_count=counts["train"], validation_count=counts["validation"],
        test_count=counts["test"], batch_size=batch_size, augmentation=settings,
        skipped_files=log,
    )


def _check_stats(stats) -> tuple[tuple[float, ...], tuple[float, ...]]:
    try:
        mean, std = ([float(v) for v in part] for part in stats)
    except (TypeError, ValueError):
        raise ValueError(f"stats must be a (mean, std) pair of per-channel number sequences; received stats={stats!r}") from None
    if len(mean) != len(std) or not mean or min(std) <= 0:
        raise ValueError(f"stats needs per-channel means and positive stds of equal length; received stats={stats!r}")
    return tuple(mean), tuple(std)


# ---- pipelines ------------------------------------------------------------------------------

def _resize_uint8(image, size, tf):
    image = tf.image.resize(image, (size, size), method="bilinear", antialias=True)
    return tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8)


def _center_crop_uint8(image, size, tf):
    from keras_resnet.images import center_crop, resize

    out = resize(center_crop(image, size), size)
    out.set_shape([*size, image.shape[-1]])
    return out


def _count(ds) -> int:
    n = int(ds.cardinality())
    if n >= 0:
        return n
    return int(ds.reduce(0, lambda c, _: c + 1))


def _channel_stats(ds, batched: bool = False) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and standard deviation over a split (one pass, float64 sums)."""
    import numpy as np

    total = sq = None
    n = 0
    for images, _ in (ds if batched else ds.batch(1024)).as_numpy_iterator():
        x = images.astype("float64").reshape(-1, images.shape[-1])
        total = x.sum(0) if total is None else total + x.sum(0)
        sq = (x * x).sum(0) if sq is None else sq + (x * x).sum(0)
        n += x.shape[0]
    if not n:
        raise ValueError("no training image could be read to measure the normalisation statistics")
    mean = total / n
    # A constant channel carries no signal; a floor of one grey level keeps the division sane.
    std = np.maximum(np.sqrt(np.maximum(sq / n - mean * mean, 0.0)), 1.0)
    return tuple(round(float(m), 6) for m in mean), tuple(round(float(s), 6) for s in std)


def _cache(ds, cache, name, count, batched=False):
    if isinstance(cache, str):
        os.makedirs(cache, exist_ok=True)
        return ds.cache(os.path.join(cache, name))
    image_shape = ds.element_spec[0].shape[1:] if batched else ds.element_spec[0].shape
    if cache and count * math.prod(image_shape) <= MEMORY_CACHE_LIMIT:
        return ds.cache()
    return ds


def _as_float(batches, tf):
    return batches.map(lambda x, y: (tf.cast(x, tf.float32), y), num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def _pipeline(ds, *, training, batch_size, seed, augmentation, shuffle_buffer, tf):
    """Batches a split; a training split (held in memory) is shuffled and augmented first."""
    if training:
        ds = ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
        if augmentation["recipe"] != "none":
            # One stateless seed per image from a seeded random stream that starts over
            # differently on each pass: images vary per epoch and repeat exactly per seed.
            seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
            augment = augmenter(augmentation)
            ds = tf.data.Dataset.zip(ds, seeds).map(
                lambda xy, s: (augment(xy[0], s), xy[1]), num_parallel_calls=tf.data.AUTOTUNE
            )
    ds = ds.map(lambda x, y: (tf.cast(x, tf.float32), y), num_parallel_calls=tf.data.AUTOTUNE)
    return ds.batch(batch_size, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)
