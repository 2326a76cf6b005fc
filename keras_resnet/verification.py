"""Parity, accuracy, size and latency of exported artifacts against the Keras model.

Used by :mod:`keras_resnet.export` (``export.verify`` is :func:`verify`).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from types import MappingProxyType

import numpy as np
import tensorflow as tf

from keras_resnet.defaults import BYTES_INPUT, BYTES_SIGNATURE
from keras_resnet.images import decode, evaluation_fit
from keras_resnet.litert import QUANTIZATIONS, TFLiteRunner
from keras_resnet.validation import check_choice, check_float, check_int

SAVED_MODEL = "saved_model"
ONNX = "onnx"  # run with ONNX Runtime (keras_resnet.onnx_export)
FORMATS = (SAVED_MODEL, *QUANTIZATIONS, ONNX)
# The SavedModel's image-bytes signature against its own pixel signature (SavedModel only).
BYTES_THRESHOLD_KEYS = ("bytes_max_abs_diff", "bytes_min_agreement")
THRESHOLD_KEYS = ("max_abs_diff", "min_agreement", "max_accuracy_drop", *BYTES_THRESHOLD_KEYS)
BYTES_CHECK_IMAGES = 256  # test images, PNG-encoded, that the image-bytes check decodes

# Float32 artifacts must match the Keras model to rounding; the quantized ones may move a few
# borderline images (post-training int8 typically costs 0.2-0.6 points on ResNets). Read-only:
# other limits are passed as ``thresholds`` to the functions that check.
DEFAULT_THRESHOLDS: Mapping[str, Mapping[str, float]] = MappingProxyType({
    fmt: MappingProxyType(limits) for fmt, limits in {
        # A same-size PNG decodes to the very pixels and runs the same graph: equal up to rounding.
        SAVED_MODEL: {"max_abs_diff": 1e-4, "min_agreement": 1.0, "bytes_max_abs_diff": 1e-6, "bytes_min_agreement": 1.0},
        "float32": {"max_abs_diff": 1e-4, "min_agreement": 1.0},
        "float16": {"min_agreement": 0.995},
        "dynamic": {"min_agreement": 0.98, "max_accuracy_drop": 0.01},
        "int8": {"min_agreement": 0.98, "max_accuracy_drop": 0.01},
        # A float32 graph like the SavedModel's, only with ops reordered or fused (measured
        # about 5e-7): the float32 limits hold, and 100% agreement as for every float32 file.
        ONNX: {"max_abs_diff": 1e-4, "min_agreement": 1.0},
    }.items()
})


def check_thresholds(thresholds: Mapping[str, Mapping[str, float]] | None) -> dict[str, dict[str, float]]:
    """Merges overrides into :data:`DEFAULT_THRESHOLDS`; raises ValueError on unknown keys.

    Example:
    >>> check_thresholds({"int8": {"min_agreement": 0.9}})["int8"]
    {'min_agreement': 0.9, 'max_accuracy_drop': 0.01}
    """
    merged = {fmt: dict(limits) for fmt, limits in DEFAULT_THRESHOLDS.items()}
    for fmt, limits in (thresholds or {}).items():
        check_choice("thresholds format", fmt, FORMATS)
        for key, value in limits.items():
            check_choice(f"thresholds[{fmt!r}] key", key, THRESHOLD_KEYS)
            if key in BYTES_THRESHOLD_KEYS and fmt != SAVED_MODEL:
                raise ValueError(f"thresholds[{fmt!r}][{key!r}] applies to the SavedModel's {BYTES_SIGNATURE} "
                                 f"signature only; received it for format {fmt!r}")
            check_float(f"thresholds[{fmt!r}][{key!r}]", value)
        merged[fmt].update(limits)
    return merged


def directory_size(path: str | os.PathLike) -> int:
    """Bytes of a file, or of every file under a folder."""
    path = Path(path)
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def median_latency_ms(fn: Callable[[], object], runs: int = 50, warmup: int = 5) -> float:
    """Median wall time of ``fn()`` in milliseconds, after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000.0 * float(np.median(times))


class SavedModelRunner:
    """Calls a SavedModel's ``serving_default`` signature and returns its probabilities.

    ``path`` is a SavedModel folder, or what ``tf.saved_model.load`` returned for one.

    Example:
    >>> SavedModelRunner("saved_models/digits/1").predict(images).shape  # doctest: +SKIP
    (360, 10)
    """

    def __init__(self, path):
        # Keep the loaded object: the signature's captured variables live on it.
        self.loaded = tf.saved_model.load(str(path)) if isinstance(path, (str, os.PathLike)) else path
        self.fn = self.loaded.signatures["serving_default"]
        self.input_name = next(iter(self.fn.structured_input_signature[1]))

    def __call__(self, images: np.ndarray) -> np.ndarray:
        return self.fn(**{self.input_name: tf.constant(images, tf.float32)})["probabilities"].numpy()

    def predict(self, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
        return np.concatenate([self(images[i:i + batch_size]) for i in range(0, len(images), batch_size)])


def encode_png(images: np.ndarray) -> list[bytes]:
    """PNG files of raw-pixel images ``(n, height, width, 1 or 3)``, rounded and clipped to 0..255."""
    pixels = np.clip(np.round(np.asarray(images, "float32")), 0, 255).astype("uint8")
    return [tf.io.encode_png(image).numpy() for image in pixels]


def image_bytes_parity(saved_model, images: np.ndarray, limit: int = BYTES_CHECK_IMAGES) -> dict | None:
    """Checks a SavedModel's image-bytes signature against its pixel signature on the same PNG files.

    The first ``limit`` images are PNG-encoded at their own size (the model's). The files go
    through ``serving_bytes``; the pixels that :func:`keras_resnet.images.decode` reads from the
    same files, as :func:`keras_resnet.predict.predict` reads any file, go through
    ``serving_default``. Below 64 px those pixels are the images themselves (a same-size PNG
    decodes exactly); from 64 px on they are the files' centre crops, resized.

    Args:
        saved_model: a SavedModel folder, or what ``tf.saved_model.load`` returned for one.
        images: raw pixels ``(n, height, width, channels)`` at the model's size.
        limit: at most this many images are checked.

    Returns:
        ``{"bytes_max_abs_diff", "bytes_top1_agreement", "bytes_images"}``: the largest
        probability difference, the share of equal top-1 classes, and how many files were
        compared; None when the SavedModel has no ``serving_bytes`` signature.

    Example:
    >>> image_bytes_parity("saved_models/digits/1", x_test)  # doctest: +SKIP
    {'bytes_max_abs_diff': 0.0, 'bytes_top1_agreement': 1.0, 'bytes_images': 256}
    """
    pixel_signature = SavedModelRunner(saved_model)
    loaded = pixel_signature.loaded
    if BYTES_SIGNATURE not in loaded.signatures:
        return None
    images = np.asarray(images)[:check_int("limit", limit, 1)]
    height, width, channels = images.shape[1:]
    files = encode_png(images)
    fit = evaluation_fit((height, width))
    decoded = np.stack([decode(f, channels, (height, width), fit).numpy() for f in files]).astype("float32")
    expected = pixel_signature.predict(decoded)
    bytes_signature = loaded.signatures[BYTES_SIGNATURE]
    got = np.concatenate([
        bytes_signature(**{BYTES_INPUT: tf.constant(files[i:i + 256])})["probabilities"].numpy()
        for i in range(0, len(files), 256)
    ])
    return {
        "bytes_max_abs_diff": float(np.max(np.abs(got - expected))),
        "bytes_top1_agreement": float(np.mean(got.argmax(-1) == expected.argmax(-1))),
        "bytes_images": len(files),
    }


def verify(
    model,
    artifacts: Mapping[str, str | os.PathLike],
    x: np.ndarray,
    y: np.ndarray | None = None,
    thresholds: Mapping[str, Mapping[str, float]] | None = None,
    latency_runs: int = 50,
    num_threads: int = 2,
) -> list[dict]:
    """Runs the Keras model and each artifact on held-out data and checks them.

    Per artifact: max and mean absolute difference of probabilities, top-1 agreement with the
    Keras model, accuracy (with labels), size, and median latency per image (batch 1, after
    warm-up); for a SavedModel also its image-bytes signature against its pixel signature on
    the first 256 images as PNG files. Checks use :data:`DEFAULT_THRESHOLDS` updated with
    ``thresholds``.

    Args:
        model: the Keras model the artifacts were exported from.
        artifacts: ``{format: path}``, format ``"saved_model"``, a quantization name (a TFLite
            file) or ``"onnx"`` (run with ONNX Runtime, whose interface is checked too: see
            :func:`keras_resnet.onnx_export.output_failures`).
        x: images (raw pixels), shape ``(n, height, width, channels)``.
        y: optional integer labels; without them accuracy is None and not checked.
        thresholds: ``{format: {"max_abs_diff"|"min_agreement"|"max_accuracy_drop": value}}``.
        latency_runs: timed runs per artifact.
        num_threads: TFLite interpreter and ONNX Runtime (intra-op) threads.

    Returns:
        One record per artifact: ``format``, ``path``, ``size_bytes``, ``max_abs_diff``,
        ``mean_abs_diff``, ``top1_agreement``, ``accuracy``, ``reference_accuracy``,
        ``latency_ms``, ``passed`` and ``failures`` (the failed checks, in words). A SavedModel's
        record adds :func:`image_bytes_parity`'s ``bytes_max_abs_diff``,
        ``bytes_top1_agreement`` and ``bytes_images`` (None without a ``serving_bytes``
        signature, which is then not checked).

    Example:
    >>> records = verify(model, {"saved_model": "saved_models/digits/1"}, x_test, y_test)  # doctest: +SKIP
    >>> records[0]["passed"]  # doctest: +SKIP
    True
    """
    limits = check_thresholds(thresholds)
    for fmt, path in artifacts.items():
        check_choice("artifact format", fmt, FORMATS)
        if not Path(path).exists():
            raise ValueError(f"artifact {fmt!r} does not exist: {str(path)!r}")
    x = np.asarray(x, "float32")
    expected = tuple(model.inputs[0].shape[1:])
    if x.ndim != 4 or x.shape[1:] != expected or not len(x):
        raise ValueError(f"x must be a non-empty batch of images of shape {expected}; received shape {x.shape}")
    if y is not None:
        y = np.asarray(y).reshape(-1)
        if len(y) != len(x):
            raise ValueError(f"y must hold one label per image ({len(x)}); received {len(y)}")
    latency_runs = check_int("latency_runs", latency_runs, 1)
    num_threads = check_int("num_threads", num_threads, 1)

    reference = np.asarray(model.predict(x, batch_size=256, verbose=0), "float32")
    ref_top1 = reference.argmax(-1)
    ref_accuracy = None if y is None else float(np.mean(ref_top1 == y))
    records = []
    for fmt, path in artifacts.items():
        runner = _runner(fmt, path, num_threads)
        probabilities = runner.predict(x)
        diff = np.abs(probabilities - reference)
        top1 = probabilities.argmax(-1)
        record = {
            "format": fmt,
            "path": str(path),
            "size_bytes": directory_size(path),
            "max_abs_diff": float(diff.max()),
            "mean_abs_diff": float(diff.mean()),
            "top1_agreement": float(np.mean(top1 == ref_top1)),
            "accuracy": None if y is None else float(np.mean(top1 == y)),
            "reference_accuracy": ref_accuracy,
            "latency_ms": median_latency_ms(lambda runner=runner: runner(x[:1]), latency_runs),
        }
        if fmt == SAVED_MODEL:
            record.update(image_bytes_parity(runner.loaded, x) or dict.fromkeys(
                ("bytes_max_abs_diff", "bytes_top1_agreement", "bytes_images")))
        failures = _failures(record, limits[fmt])
        if fmt == ONNX:
            from keras_resnet.onnx_export import output_failures

            failures += output_failures(runner, x[:256], reference.shape[-1])
        record.update(passed=not failures, failures=failures)
        records.append(record)
    return records


def _runner(fmt: str, path, num_threads: int):
    if fmt == SAVED_MODEL:
        return SavedModelRunner(path)
    if fmt == ONNX:
        from keras_resnet.onnx_export import ONNXRunner

        return ONNXRunner(path, num_threads)
    return TFLiteRunner(path, num_threads)


def _failures(record: dict, limits: Mapping[str, float]) -> list[str]:
    failures = []
    if "max_abs_diff" in limits and record["max_abs_diff"] > limits["max_abs_diff"]:
        failures.append(f"max abs diff {record['max_abs_diff']:.3g} > {limits['max_abs_diff']:g}")
    if "min_agreement" in limits and record["top1_agreement"] < limits["min_agreement"]:
        failures.append(f"top-1 agreement {record['top1_agreement']:.2%} < {limits['min_agreement']:.2%}")
    if "max_accuracy_drop" in limits and record["accuracy"] is not None:
        drop = record["reference_accuracy"] - record["accuracy"]
        if drop > limits["max_accuracy_drop"]:
            failures.append(f"accuracy drop {drop:.2%} > {limits['max_accuracy_drop']:.2%}")
    if record.get("bytes_max_abs_diff") is not None:
        if "bytes_max_abs_diff" in limits and record["bytes_max_abs_diff"] > limits["bytes_max_abs_diff"]:
            failures.append(f"{BYTES_SIGNATURE} differs from serving_default by {record['bytes_max_abs_diff']:.3g} "
                            f"> {limits['bytes_max_abs_diff']:g} on the same PNG files")
        if "bytes_min_agreement" in limits and record["bytes_top1_agreement"] < limits["bytes_min_agreement"]:
            failures.append(f"{BYTES_SIGNATURE} top-1 agreement with serving_default "
                            f"{record['bytes_top1_agreement']:.2%} < {limits['bytes_min_agreement']:.2%}")
    return failures
