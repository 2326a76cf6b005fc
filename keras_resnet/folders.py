"""Folders of image files as streamed ``tf.data`` pipelines: list, split, decode as they are read.

Layout (``keras.utils.image_dataset_from_directory``'s rules): one sub-folder per class, images
anywhere below it; or ``train/`` and ``test/`` folders (and an optional ``validation/``) that
each hold the same class folders. Files are found by their extension (.bmp, .gif, .jpeg, .jpg,
.png, any case); hidden files and folders (a leading dot, such as macOS's ``._photo.jpg``) and
other files are ignored.

Setting up reads directory entries only: no image is opened except a fixed sample of
:data:`HEADER_SAMPLE` headers (for the most common size and whether every image is grey) and,
unless the caller gives them, the per-channel statistics of a fixed sample of
:data:`STATS_SAMPLE` decoded training images. Images are decoded by the pipeline, in parallel,
each split reading only its own files: an epoch costs one decode per training image, and memory
does not grow with the number of images (only the file names are held).

Unreadable files are found when they are read, not by decoding everything first. Policy
``bad_files="error"`` (the default) stops at the first one with an error that names it: nothing
is trained on garbage silently. ``"skip"`` drops them and appends their paths to a text file.
TensorFlow's decoders cannot be caught inside a graph, so the pipeline numbers the files,
drops the elements that fail (``tf.data``'s ``ignore_errors``) and checks the numbering that
comes out: a gap is an unreadable file, whose name is then looked up.
"""

from __future__ import annotations

import dataclasses
import os
from collections import Counter
from pathlib import Path
from typing import Any

from keras_resnet.images import IMAGE_EXTENSIONS

SPLIT_FOLDERS = ("train", "validation", "test")
BAD_FILE_POLICIES = ("error", "skip")
HEADER_SAMPLE = 100  # image headers read to choose the size and the channels
STATS_SAMPLE = 512  # decoded training images behind the normalisation statistics
UNREADABLE = "unreadable image file"  # the marker of the pipeline's error message
_GREY_MODES = {"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"}


@dataclasses.dataclass(frozen=True)
class FolderIndex:
    """A folder's files and labels per split, found without opening an image.

    ``splits`` maps ``"train"``, ``"validation"`` and ``"test"`` to ``(paths, labels)``
    (a list of str and an int64 array), or to None for a split that does not exist.
    """

    root: str
    class_names: tuple[str, ...]
    splits: dict[str, Any]
    predefined: bool


def class_folders(root: Path) -> list[str]:
    """The sorted class sub-folders of ``root`` (hidden ones left out)."""
    classes = sorted(e.name for e in os.scandir(root) if e.is_dir() and not e.name.startswith("."))
    if not classes:
        raise ValueError(f"dataset folder {str(root)!r} has no class sub-folders (expected one folder of images per class)")
    return classes


def list_images(directory: str | os.PathLike) -> list[str]:
    """Every image file below ``directory``, sorted, hidden files and folders left out."""
    found = []
    stack = [os.fspath(directory)]
    while stack:
        current = stack.pop()
        with os.scandir(current) as entries:
            for entry in entries:
                if entry.name.startswith("."):
                    continue
                if entry.is_dir():
                    stack.append(entry.path)
                elif entry.name.lower().endswith(IMAGE_EXTENSIONS) and entry.is_file():
                    found.append(entry.path)
    found.sort()
    return found


def index_folder(root: str | os.PathLike, validation_split: float, test_split: float, split_seed: int = 0) -> FolderIndex:
    """Lists a dataset folder and splits it, per class, into train / validation / test.

    Without ``train/`` and ``test/`` folders, ``test_split`` of each class is held out for
    testing and ``validation_split`` of the rest for validation; with them, only a missing
    ``validation/`` is cut from ``train/``. The split depends on ``split_seed`` only.
    """
    import numpy as np

    root = Path(root)
    layout = {name: root / name for name in SPLIT_FOLDERS if (root / name).is_dir()}
    predefined = "train" in layout and "test" in layout
    roots = {k: layout[k] for k in SPLIT_FOLDERS if k in layout} if predefined else {"all": root}
    first = next(iter(roots.values()))
    classes = class_folders(first)
    listed = {}
    for key, directory in roots.items():
        if predefined and class_folders(directory) != classes:
            raise ValueError(f"{directory} must hold the same class folders as {first}: {classes}")
        paths, labels = [], []
        for label, cls in enumerate(classes):
            files = list_images(directory / cls) if (directory / cls).is_dir() else []
            paths += files
            labels += [label] * len(files)
        listed[key] = (paths, np.asarray(labels, np.int64))
    if not listed["all" if not predefined else "train"][0]:
        raise ValueError(
            f"dataset folder {str(first)!r} holds no images ({', '.join(IMAGE_EXTENSIONS)}) in its class folders"
        )

    def take(pair, idx):
        paths, labels = pair
        return [paths[i] for i in idx], labels[idx]

    splits = {"train": None, "validation": None, "test": None}
    if predefined:
        splits.update(listed)
        if "validation" not in listed and validation_split > 0:
            parts = stratified(listed["train"][1], validation_split, split_seed)
            splits["validation"] = take(listed["train"], parts["chosen"])
            splits["train"] = take(listed["train"], parts["rest"])
    else:
        everything = listed["all"]
        parts = stratified(everything[1], test_split, split_seed)
        train_idx = parts["rest"]
        splits["test"] = take(everything, parts["chosen"])
        if validation_split > 0:
            inner = stratified(everything[1][train_idx], validation_split, split_seed)
            splits["validation"] = take(everything, train_idx[inner["chosen"]])
            train_idx = train_idx[inner["rest"]]
        splits["train"] = take(everything, train_idx)
    return FolderIndex(root=str(root), class_names=tuple(classes), splits=splits, predefined=predefined)


def stratified(labels, fraction: float, seed: int = 0) -> dict:
    """Indices split per class: {"chosen": about ``fraction`` of each class, "rest": the others}."""
    import numpy as np

    rng = np.random.default_rng(seed)
    chosen, rest = [], []
    for cls in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == cls))
        # At least one image per class on each side, where the class has two.
        k = min(max(int(round(fraction * len(idx))), 1), len(idx) - 1) if len(idx) > 1 else 0
        chosen.append(idx[:k])
        rest.append(idx[k:])
    return {"chosen": np.sort(np.concatenate(chosen)), "rest": np.sort(np.concatenate(rest))}


def evenly_spaced(items: list, count: int) -> list:
    """``count`` items spread evenly over ``items`` (all of them when there are fewer)."""
    if len(items) <= count:
        return list(items)
    step = len(items) / count
    return [items[int(i * step)] for i in range(count)]


def inspect_headers(paths: list[str]) -> tuple[tuple[int, int] | None, int]:
    """The most common ``(height, width)`` (EXIF orientation applied) and the channel count
    (1 when every image is grey, else 3) of a fixed sample of image headers.

    Only headers are read (Pillow opens files lazily); a file it cannot open is left out here
    and reported by the pipeline when it is read.
    """
    from PIL import Image

    sizes, grey = Counter(), True
    for path in evenly_spaced(paths, HEADER_SAMPLE):
        try:
            with Image.open(path) as im:
                width, height = im.size
                mode = im.mode
                if im.format == "JPEG" and im.getexif().get(0x0112, 1) in (5, 6, 7, 8):
                    width, height = height, width
        except Exception:  # unreadable: the pipeline names it when it gets there
            continue
        sizes[(height, width)] += 1
        grey &= mode in _GREY_MODES
    size = sizes.most_common(1)[0][0] if sizes else None
    return size, 1 if grey and sizes else 3


def file_pipeline(paths, labels, transform, *, output_shape, batch_size, shuffle_seed=None, bad_files="error",
                  log=None, dtype="uint8"):
    """Batches of decoded files, read in parallel, in order (or shuffled anew each pass).

    Args:
        paths, labels: the files and their int labels.
        transform: ``(contents, seed) -> image`` of ``output_shape`` and ``dtype``; ``seed``
            is a ``(2,)`` int64 tensor unique to the image and the pass (for augmentation).
        output_shape: ``(height, width, channels)`` of every transformed image.
        batch_size: images per batch (a batch is shorter where ``"skip"`` dropped files).
        shuffle_seed: None reads the files in order; an int shuffles them with a new
            permutation on each pass (which repeats exactly for the seed).
        bad_files: ``"error"`` or ``"skip"`` (see the module's docstring).
        log: with ``"skip"``, the text file the skipped paths are appended to.
        dtype: the images' dtype, ``"uint8"`` or ``"float32"``.

    Returns:
        A ``tf.data.Dataset`` of ``(images, int64 labels)`` batches.
    """
    import tensorflow as tf

    n = len(paths)
    table = tf.constant(list(paths), tf.string)
    label_table = tf.constant(labels, tf.int64)
    positions = tf.range(n, dtype=tf.int64)

    def order_of(pass_seed):
        if shuffle_seed is None:
            return positions
        return tf.random.experimental.stateless_shuffle(positions, seed=tf.stack([pass_seed, tf.constant(0, tf.int64)]))

    # Only the file numbers go through the per-pass stage (a pass's permutation is made
    # there); decoding is one parallel map whose functions are built once.
    if shuffle_seed is None:
        numbers = tf.data.Dataset.from_tensor_slices((positions, positions, tf.zeros([n], tf.int64)))
    else:
        def one_pass(pass_seed):
            return tf.data.Dataset.from_tensor_slices((positions, order_of(pass_seed))).map(lambda i, j: (i, j, pass_seed))

        numbers = tf.data.Dataset.random(seed=shuffle_seed, rerandomize_each_iteration=True).take(1).flat_map(one_pass)

    def load(i, j, pass_seed):
        image = transform(tf.io.read_file(tf.gather(table, j)), tf.stack([pass_seed, i]))
        return i, pass_seed, tf.ensure_shape(image, output_shape), tf.gather(label_table, j)

    ds = numbers.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).ignore_errors()
    # The bookkeeping works on whole batches: per image, each tf.data stage with a function
    # costs about as much as decoding a small JPEG. A last batch of one marks the end.
    sentinel = (tf.constant([n], tf.int64), tf.constant([-1], tf.int64), tf.zeros((1, *output_shape), dtype),
                tf.constant([-1], tf.int64))
    ds = ds.batch(batch_size).concatenate(tf.data.Dataset.from_tensors(sentinel))

    def check(state, batch):
        expected, pass_seed = state[0], state[1]
        ids = batch[0]
        pass_seed = tf.where(batch[1][0] >= 0, batch[1][0], pass_seed)
        last = ids[-1]
        # The positions from `expected` to the batch's last that did not come out.
        span = tf.cast(last - expected + 1, tf.int32)
        present = tf.scatter_nd(tf.expand_dims(ids - expected, 1), tf.ones_like(ids, tf.int32), [span])
        missing = tf.boolean_mask(tf.range(expected, last + 1), tf.equal(present, 0))

        def report():
            names = tf.gather(table, tf.gather(order_of(pass_seed), missing))
            if bad_files == "skip":
                return _append_lines(names, log, tf)
            assertion = tf.debugging.Assert(False, [UNREADABLE, names[:1]], summarize=1)
            with tf.control_dependencies([assertion]):
                return tf.constant(True)

        reported = tf.cond(tf.size(missing) > 0, report, lambda: tf.constant(True))
        with tf.control_dependencies([reported]):
            return tf.stack([last + 1, pass_seed]), batch

    ds = ds.scan(tf.constant([0, 0], tf.int64), check).filter(lambda ids, seeds, images, labels: ids[0] < n)
    ds = ds.map(lambda ids, seeds, images, labels: (images, labels))
    if bad_files == "error":
        ds = ds.apply(tf.data.experimental.assert_cardinality(-(-n // batch_size)))
    return ds


def unreadable_file(error: BaseException) -> str | None:
    """The path named by a pipeline's unreadable-file error, or None for any other error."""
    text = str(getattr(error, "message", "") or error)
    marker = f"[{UNREADABLE}] ["
    start = text.find(marker)
    if start < 0:
        return None
    rest = text[start + len(marker):]
    end = rest.find("]\n") if "]\n" in rest else rest.rfind("]")
    return rest[:end] if end >= 0 else rest


def reraise_unreadable(error: BaseException) -> None:
    """Raises a ValueError naming the file when ``error`` is a pipeline's unreadable-file error."""
    path = unreadable_file(error)
    if path is not None:
        raise ValueError(
            f"cannot read image {path!r}: it is not a JPEG, PNG, BMP or GIF file TensorFlow can decode "
            "(or it is truncated); fix or remove it, or pass bad_files='skip' (keras-resnet train "
            "--skip-bad-files) to drop unreadable files and list them"
        ) from None


def skipped_files(log: str | os.PathLike | None) -> list[str]:
    """The distinct paths a ``"skip"`` pipeline has written to ``log`` (each pass writes them again)."""
    if log is None or not os.path.exists(log):
        return []
    lines = Path(log).read_text(encoding="utf-8").splitlines()
    return list(dict.fromkeys(line for line in lines if line))


def _append_lines(lines, log, tf):
    text = tf.strings.reduce_join(lines, separator="\n")
    print_op = tf.print(text, output_stream=f"file://{os.path.abspath(log)}")
    with tf.control_dependencies([print_op]):
        return tf.constant(True)
