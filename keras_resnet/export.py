"""Exports a trained classifier for serving: a SavedModel in TF Serving's layout and TFLite files.

Every artifact takes raw pixels (0-255) of a fixed height and width and is checked against
the Keras model before it is kept; the SavedModel also takes encoded image files (its
``serving_bytes`` signature decodes them as evaluation and ``predict`` do). Layout under
``base`` (see ``saved_models/README.md``)::

    base/name/1/                            SavedModel, TF Serving's integer version folder
    base/name/1/assets/class_names.txt      one class name per line
    base/name/1/assets.extra/tf_serving_warmup_requests
    base/name/tflite/name_1_int8.tflite     TFLite files, outside the version folders
    base/name/onnx/name_1.onnx              ONNX (``onnx=True``; :mod:`keras_resnet.onnx_export`)
    base/name/export_report.json            what verify() measured for the last export

Writes are atomic: everything is staged in a hidden folder next to its destination and moved
into place with ``os.rename`` / ``os.replace`` only after its checks pass, so a server never
sees a half-written version.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import uuid
import warnings
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

import keras_resnet.models  # noqa: F401  (registers the package's classes for load_model)
from keras_resnet import fileio
from keras_resnet.defaults import (
    BYTES_INPUT,
    BYTES_SIGNATURE,
    CLASS_NAMES_FILE,
    DEFAULT_CALIBRATION_SAMPLES,
    ONNX_DIR,
    TFLITE_DIR,
)
from keras_resnet.images import decode, evaluation_fit
from keras_resnet.litert import (
    INT8_IO_TYPES,
    QUANTIZATIONS,
    ExportError,
    convert_saved_model,
)
from keras_resnet.tflite_metadata import (
    MEDIAPIPE_INPUT_TYPES,
    add_metadata,
    rgb_calibration_images,
    rgb_input_model,
)
from keras_resnet.validation import check_bool, check_choice, check_int, check_type
from keras_resnet.verification import (
    DEFAULT_THRESHOLDS,
    ONNX,
    SAVED_MODEL,
    check_thresholds,
    encode_png,
    image_bytes_parity,
    verify,
)

__all__ = [
    "BYTES_INPUT", "BYTES_SIGNATURE", "DEFAULT_THRESHOLDS", "INT8_IO_TYPES", "QUANTIZATIONS", "SAVED_MODEL",
    "ExportError", "export_all", "export_saved_model", "export_tflite", "load_model", "next_version",
    "read_warmup_requests", "tf_serving_versions", "tflite_path", "verify",
]

INPUT_NAME = "images"
PIXEL_SIGNATURES = (("serving_default", tf.float32), ("serving_uint8", tf.uint8))
SIGNATURES = (*(key for key, _ in PIXEL_SIGNATURES), BYTES_SIGNATURE)  # serving_default first
BYTES_CHANNELS = (1, 3)  # what the image decoder makes: grey or RGB
WARMUP_FILE = Path("assets.extra") / "tf_serving_warmup_requests"
REPORT_FILE = "export_report.json"
FAILED_SUFFIX = ".failed"
DEFAULT_TOP_K = 5

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_VERSION_DIR = re.compile(r"^([0-9]+)(?:\.failed)?$")
# safe_strto64's grammar: C isspace() around an optional minus sign and ASCII digits.
_TF_SERVING_VERSION = re.compile(r"[ \t\n\v\f\r]*(-?[0-9]+)[ \t\n\v\f\r]*", re.ASCII)


# ---- validation -------------------------------------------------------------------------

def load_model(path: str | os.PathLike) -> keras.Model:
    """Loads a ``.keras`` file for export, with a clear error for anything else.

    Args:
        path: the ``.keras`` file written by ``model.save``.

    Returns:
        The model, uncompiled (export needs only the forward pass).

    Example:
    >>> model = load_model("runs/digits/best.keras")  # doctest: +SKIP
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"model file {str(path)!r} does not exist or is not a file; expected a .keras file")
    if path.suffix != ".keras" or not zipfile.is_zipfile(path):
        raise ValueError(f"{str(path)!r} is not a Keras model file; expected a .keras file written by model.save()")
    try:
        model = keras.saving.load_model(path, compile=False)
    except Exception as e:  # Keras raises many types for a broken archive; all mean the same here
        raise ValueError(f"could not load {str(path)!r} as a Keras model: {e}") from e
    if not isinstance(model, keras.Model):
        raise ValueError(f"{str(path)!r} holds a {type(model).__name__}, not a keras.Model")
    return model


def image_shape(model: keras.Model) -> tuple[int, int, int]:
    """The input size of a one-input, one-output image classifier, checked for export.

    Args:
        model: a built keras.Model.

    Returns:
        ``(height, width, channels)``; ValueError when a dimension is not fixed, or the model
        has several inputs or outputs, or its output is not ``(batch, classes)``.

    Example:
    >>> from keras_resnet.models import ResNet
    >>> image_shape(ResNet(depth=8, input_shape=(16, 16, 1), classes=10))
    (16, 16, 1)
    """
    if not isinstance(model, keras.Model):
        raise ValueError(f"expected a keras.Model; received {type(model).__name__}")
    try:
        inputs, outputs = model.inputs, model.outputs
    except AttributeError:
        raise ValueError(f"model {model.name!r} is not built; build it with keras.Input or call it once") from None
    if len(inputs) != 1 or len(outputs) != 1:
        raise ValueError(f"export needs a model with one input and one output; model {model.name!r} "
                         f"has {len(inputs)} inputs and {len(outputs)} outputs")
    shape = tuple(inputs[0].shape)
    if len(shape) != 4 or any(d is None for d in shape[1:]):
        raise ValueError(
            f"export needs a fixed input size (batch, height, width, channels); model {model.name!r} "
            f"has input shape {shape}. Rebuild it with a fixed input_shape and load the weights"
        )
    if len(outputs[0].shape) != 2:
        raise ValueError(f"export needs a classifier with output (batch, classes); model {model.name!r} "
                         f"has output shape {tuple(outputs[0].shape)}")
    return shape[1:]


def _check_probabilities(model: keras.Model, shape) -> None:
    # A logits model would make every "probabilities" output and threshold meaningless.
    p = np.asarray(model(np.full((2, *shape), 128, "float32"), training=False), "float64")
    if np.any(p < -1e-6) or np.max(np.abs(p.sum(axis=-1) - 1)) > 1e-3:
        raise ValueError(f"export needs a model that outputs class probabilities (softmax); model "
                         f"{model.name!r} gave rows summing to {p.sum(axis=-1).round(4).tolist()}")


def check_name(name: str) -> str:
    """Returns ``name`` if it can name a served model (a folder under the base); else ValueError."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(f"name must be letters, digits, '_', '.' or '-', starting with a letter or digit; "
                         f"received name={name!r}")
    return name


def _check_class_names(class_names, classes: int) -> list[str]:
    if class_names is None:
        return [str(i) for i in range(classes)]
    names = list(class_names)
    if len(names) != classes or not all(isinstance(n, str) and n and "\n" not in n for n in names):
        raise ValueError(f"class_names must be {classes} non-empty one-line strings (one per class); "
                         f"received {names!r}")
    return names


def _take_images(data, shape, limit: int | None = None, what: str = "data") -> np.ndarray:
    """Collects up to ``limit`` images from an array or an iterable of batches or (x, y) pairs."""
    if isinstance(data, (np.ndarray, tf.Tensor)):
        batches: Iterable = [data]
    elif isinstance(data, tuple) and len(data) == 2 and not np.isscalar(data[0]):
        batches = [data[0]]
    else:
        batches = data
    if not isinstance(batches, Iterable) or isinstance(batches, (str, bytes)):
        raise ValueError(f"{what} must be an array of images or an iterable of batches; received {type(data).__name__}")
    out, count = [], 0
    for item in batches:
        if isinstance(item, (tuple, list)) and len(item) in (2, 3) and np.ndim(item[1]) <= 1:
            item = item[0]  # (images, labels[, weights])
        arr = np.asarray(item)
        if arr.ndim == len(shape):
            arr = arr[None]
        if arr.shape[1:] != tuple(shape):
            raise ValueError(f"{what} must hold images of shape {tuple(shape)}; received a batch of shape {arr.shape}")
        out.append(arr)
        count += len(arr)
        if limit is not None and count >= limit:
            break
    if not count:
        raise ValueError(f"{what} holds no images")
    images = np.concatenate(out)[:limit].astype("float32")
    return images


def _calibration_images(data, shape, limit: int) -> np.ndarray:
    limit = check_int("calibration_samples", limit, 1)
    images = _take_images(data, shape, limit, "representative_data")
    if len(images) < min(limit, 100):
        # Too few images leave activation ranges unrepresentative and int8 accuracy collapses.
        warnings.warn(f"int8 calibration on only {len(images)} images; a few hundred training images "
                      "give reliable ranges", stacklevel=3)
    return images


def _used_versions(model_dir: Path) -> set[int]:
    used = set()
    if model_dir.is_dir():
        for child in model_dir.iterdir():
            m = _VERSION_DIR.match(child.name)
            if m and child.is_dir():
                used.add(int(m.group(1)))
        tflite = re.compile(rf"^{re.escape(model_dir.name)}_([0-9]+)_")
        for child in (model_dir / TFLITE_DIR).glob("*.tflite"):
            m = tflite.match(child.name)
            if m:
                used.add(int(m.group(1)))
        onnx = re.compile(rf"^{re.escape(model_dir.name)}_([0-9]+)(?:{re.escape(FAILED_SUFFIX)})?\.onnx$")
        for child in (model_dir / ONNX_DIR).glob("*.onnx"):
            m = onnx.match(child.name)
            if m:
                used.add(int(m.group(1)))
    return used


def next_version(model_dir: str | os.PathLike) -> int:
    """The next free integer version under ``base/name`` (1 for a new model).

    Example:
    >>> next_version("saved_models/does-not-exist")
    1
    """
    return max(_used_versions(Path(model_dir)), default=0) + 1


def _resolve_version(model_dir: Path, version) -> int:
    if version is None:
        return next_version(model_dir)
    version = check_int("version", version, 1)
    if version in _used_versions(model_dir):
        raise ValueError(f"version {version} already exists under {str(model_dir)!r}; pass another "
                         f"version or none for the next free one ({next_version(model_dir)})")
    return version


def tf_serving_versions(model_dir: str | os.PathLike) -> dict[int, Path]:
    """What TF Serving takes for the versions of the model whose base path is ``model_dir``.

    TF Serving's file-system source (``file_system_storage_path_source.cc``) lists the base
    path's children, files and folders alike, and takes as a version every child whose whole
    name parses as a 64-bit integer (``strings::safe_strto64``: optional spaces around an
    optional ``-`` and digits, so ``007`` is version 7); the rest (``tflite/``, ``3.failed/``,
    the hidden ``.staging-*`` folders, ``export_report.json``) it skips. Where two names give
    one number, the last in sorted order wins, as there. With its default version policy it
    loads the highest version only; every listed path must hold a complete SavedModel.

    Args:
        model_dir: the model's base path, ``BASE/NAME``.

    Returns:
        ``{version: path}``, in increasing version order.

    Example:
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as base:
    ...     for child in ("1", "2.failed", "tflite", ".staging-3-0a1b", "007"):
    ...         (Path(base) / child).mkdir()
    ...     print({version: path.name for version, path in tf_serving_versions(base).items()})
    {1: '1', 7: '007'}
    """
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise ValueError(f"model_dir must be a model's base path (a folder of version folders); "
                         f"received {str(model_dir)!r}, which is not a folder")
    versions = {}
    for child in sorted(model_dir.iterdir(), key=lambda p: p.name):
        match = _TF_SERVING_VERSION.fullmatch(child.name)
        if match and -2**63 <= int(match.group(1)) < 2**63:
            versions[int(match.group(1))] = child
    return dict(sorted(versions.items()))


def tflite_path(base: str | os.PathLike, name: str, version: int, quantization: str) -> Path:
    """Where :func:`export_all` puts a TFLite file: ``base/name/tflite/name_version_quantization.tflite``."""
    return Path(base) / name / TFLITE_DIR / f"{name}_{version}_{quantization}.tflite"


# ---- SavedModel -------------------------------------------------------------------------

def _save_module(model: keras.Model, path: Path, shape, outputs, signatures: Sequence[tuple[str, tf.DType]],
                 image_bytes: bool = False, **resources) -> None:
    """Saves a SavedModel with one signature per (name, input dtype) calling ``model``.

    ``outputs(probabilities)`` returns the signature's output dict; with ``image_bytes`` a
    ``serving_bytes`` signature decodes encoded files first; ``resources`` (lookup tables) are
    tracked so that their assets are saved.
    """
    input_dtype = model.inputs[0].dtype

    def serve(images):
        return outputs(tf.cast(model(tf.cast(images, input_dtype), training=False), tf.float32))

    functions = {
        key: tf.function(serve).get_concrete_function(tf.TensorSpec([None, *shape], dtype, name=INPUT_NAME))
        for key, dtype in signatures
    }
    if image_bytes:
        height, width, channels = shape
        fit = evaluation_fit((height, width))

        # The decoder is plain TensorFlow ops; AutoGraph's conversion of it would only cost a second.
        @tf.autograph.experimental.do_not_convert
        def decode_file(contents):
            return decode(contents, channels, (height, width), fit)

        def serve_bytes(files):
            # The decoder of evaluation and predict(), one file at a time; a file that does not
            # decode fails the whole call with InvalidArgumentError (a 400 from TF Serving).
            pixels = tf.map_fn(decode_file, files, fn_output_signature=tf.TensorSpec([height, width, channels], tf.uint8))
            return serve(tf.cast(pixels, tf.float32))

        functions[BYTES_SIGNATURE] = tf.function(serve_bytes).get_concrete_function(
            tf.TensorSpec([None], tf.string, name=BYTES_INPUT))
    module = tf.Module()
    for key, value in resources.items():
        setattr(module, key, value)
    # Track the tf.Variables the traced functions read, not the Keras model: tracking the model
    # too (as keras.export.ExportArchive does in Keras 3.15) saves every weight twice, and the
    # TFLite converter then keeps the variables as VAR_HANDLE ops instead of folding them.
    module.weights = list({id(v): v for fn in functions.values() for v in fn.variables}.values())
    tf.saved_model.save(module, str(path), signatures=functions)


def _write_saved_model(model: keras.Model, path: Path, shape, class_names: list[str], top_k: int) -> None:
    """Writes the serving SavedModel (float32 pixels, uint8 pixels, image files) to ``path``."""
    k = min(top_k, len(class_names))
    with tempfile.TemporaryDirectory() as tmp:
        names_file = Path(tmp) / CLASS_NAMES_FILE
        names_file.write_text("\n".join(class_names) + "\n", encoding="utf-8")
        # A table initialised from the file makes the SavedModel carry it as an asset.
        table = tf.lookup.StaticHashTable(
            tf.lookup.TextFileInitializer(
                str(names_file), tf.int64, tf.lookup.TextFileIndex.LINE_NUMBER,
                tf.string, tf.lookup.TextFileIndex.WHOLE_LINE,
            ),
            default_value="",
        )

        def outputs(probabilities):
            class_id = tf.argmax(probabilities, axis=-1)
            top = tf.math.top_k(probabilities, k=k)
            return {
                "probabilities": probabilities,
                "class_id": class_id,
                "class_name": table.lookup(class_id),
                "top_k_classes": tf.cast(top.indices, tf.int64),
                "top_k_probabilities": top.values,
            }

        _save_module(model, path, shape, outputs, PIXEL_SIGNATURES, image_bytes=shape[-1] in BYTES_CHANNELS,
                     class_names=table)


def _write_warmup_requests(saved_model_dir: Path, model_name: str, images: np.ndarray) -> None:
    """Writes TF Serving's warm-up file: a TFRecord of ``PredictionLog`` protos.

    Pixels in batches of 1 and 4 for ``serving_default``, and one PNG file of the first image
    for ``serving_bytes`` (its decoding graph is traced and run at load too).
    """
    from tensorflow_serving.apis import predict_pb2, prediction_log_pb2

    inputs = [(SIGNATURES[0], INPUT_NAME, images[:batch].astype("float32"))
              for batch in sorted({1, min(4, len(images))})]
    if images.shape[-1] in BYTES_CHANNELS:
        inputs.append((BYTES_SIGNATURE, BYTES_INPUT, np.array(encode_png(images[:1]), dtype=object)))
    path = saved_model_dir / WARMUP_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    with tf.io.TFRecordWriter(str(path)) as writer:
        for signature, input_name, value in inputs:
            request = predict_pb2.PredictRequest()
            request.model_spec.name = model_name
            request.model_spec.signature_name = signature
            request.inputs[input_name].CopyFrom(tf.make_tensor_proto(value))
            log = prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=request))
            writer.write(log.SerializeToString())


def read_warmup_requests(saved_model_dir: str | os.PathLike) -> list:
    """Parses a version folder's warm-up file back into ``PredictRequest`` protos.

    Example:
    >>> requests = read_warmup_requests("saved_models/digits/1")  # doctest: +SKIP
    >>> requests[0].model_spec.signature_name  # doctest: +SKIP
    'serving_default'
    """
    from tensorflow_serving.apis import prediction_log_pb2

    path = Path(saved_model_dir) / WARMUP_FILE
    requests = []
    for record in tf.data.TFRecordDataset(str(path)).as_numpy_iterator():
        requests.append(prediction_log_pb2.PredictionLog.FromString(record).predict_log.request)
    return requests


def _check_saved_model(path: Path, model: keras.Model, images: np.ndarray, class_names, max_abs_diff,
                       bytes_limits: Mapping[str, float] | None = None) -> None:
    """Loads the staged SavedModel and checks its signatures, asset and warm-up requests.

    With ``max_abs_diff``, parity with the Keras model; with ``bytes_limits`` (the
    ``bytes_*`` thresholds), the image-bytes signature against the pixel one on ``images``.
    """
    loaded = tf.saved_model.load(str(path))
    expected = SIGNATURES if images.shape[-1] in BYTES_CHANNELS else SIGNATURES[:-1]
    missing = [s for s in expected if s not in loaded.signatures]
    if missing:
        raise ExportError(f"the SavedModel at {path} lacks the signatures {missing}")
    if not (path / "assets" / CLASS_NAMES_FILE).is_file():
        raise ExportError(f"the SavedModel at {path} lacks its class-name asset")
    out = loaded.signatures[SIGNATURES[0]](**{INPUT_NAME: tf.constant(images)})
    probabilities = out["probabilities"].numpy()
    class_id = out["class_id"].numpy()
    if not np.array_equal(class_id, probabilities.argmax(-1)) or [
        n.decode() for n in out["class_name"].numpy()
    ] != [class_names[i] for i in class_id]:
        raise ExportError(f"the SavedModel at {path} gives class ids or names that disagree with its probabilities")
    if max_abs_diff is not None:
        diff = float(np.max(np.abs(probabilities - model.predict(images, verbose=0))))
        if diff > max_abs_diff:
            raise ExportError(f"the SavedModel's probabilities differ from the Keras model's by up to {diff:.3g} "
                              f"(allowed: {max_abs_diff:g})")
    parity = image_bytes_parity(loaded, images) if bytes_limits is not None and BYTES_SIGNATURE in expected else None
    if parity is not None and (parity["bytes_max_abs_diff"] > bytes_limits["bytes_max_abs_diff"]
                               or parity["bytes_top1_agreement"] < bytes_limits["bytes_min_agreement"]):
        raise ExportError(
            f"the SavedModel's {BYTES_SIGNATURE} signature disagrees with serving_default on the same PNG files: "
            f"max abs diff {parity['bytes_max_abs_diff']:.3g} (allowed: {bytes_limits['bytes_max_abs_diff']:g}), "
            f"top-1 agreement {parity['bytes_top1_agreement']:.2%} (required: {bytes_limits['bytes_min_agreement']:.2%})"
        )
    for request in read_warmup_requests(path) if (path / WARMUP_FILE).is_file() else []:
        loaded.signatures[request.model_spec.signature_name](
            **{k: tf.constant(tf.make_ndarray(v)) for k, v in request.inputs.items()}
        )


def _stage_saved_model(model, staging: Path, name, shape, class_names, top_k, images, max_abs_diff,
                       warmup: bool = True, bytes_limits: Mapping[str, float] | None = None) -> None:
    _write_saved_model(model, staging, shape, class_names, top_k)
    if warmup:
        _write_warmup_requests(staging, name, images)
    _check_saved_model(staging, model, images, class_names, max_abs_diff, bytes_limits)


def _staging_dir(model_dir: Path, version: int) -> Path:
    # Hidden and not an integer: TF Serving and our server skip it while it is being written.
    model_dir.mkdir(parents=True, exist_ok=True)
    return model_dir / f".staging-{version}-{uuid.uuid4().hex[:8]}"


def _move_into_place(src: Path, dst: Path) -> None:
    if dst.exists():
        raise ExportError(f"{dst} appeared while exporting (another export running?); nothing was replaced")
    os.rename(src, dst)


def export_saved_model(
    model: keras.Model,
    base: str | os.PathLike = "saved_models",
    name: str | None = None,
    version: int | None = None,
    class_names: Sequence[str] | None = None,
    warmup: bool = True,
    verify_data=None,
    top_k: int = DEFAULT_TOP_K,
    thresholds: Mapping[str, Mapping[str, float]] | None = None,
) -> Path:
    """Exports ``model`` as a SavedModel in TF Serving's layout, atomically.

    Signatures ``serving_default`` (float32 pixels 0-255) and ``serving_uint8`` (uint8 pixels)
    take ``images`` of shape ``(batch, height, width, channels)``; ``serving_bytes`` takes
    ``image_bytes``, a ``(batch,)`` string tensor of JPEG, PNG, BMP or GIF files, each decoded
    by :func:`keras_resnet.images.decode` at the model's size with
    :func:`keras_resnet.images.evaluation_fit` (models with 1 or 3 channels). All return
    ``probabilities``, ``class_id``, ``class_name``, ``top_k_classes`` and
    ``top_k_probabilities``. The version is written to a hidden staging folder, loaded back and
    checked (signatures, class names, warm-up requests, ``serving_bytes`` against
    ``serving_default`` on the check images as PNG files within 1e-6, and with ``verify_data``
    parity with the Keras model within 1e-4), then renamed into place; on any failure nothing
    is left.

    Args:
        model: a one-input keras.Model with a fixed input size that outputs probabilities.
        base: the model base folder; the version lands in ``base/name/version``.
        name: the served model's name; default ``model.name``.
        version: an integer >= 1 that is not taken yet; default the next free one.
        class_names: one string per class (stored as ``assets/class_names.txt``); default
            ``"0"``, ``"1"``, ...
        warmup: write TF Serving warm-up requests to ``assets.extra/``.
        verify_data: optional images (array or iterable of batches) to check parity on, and to
            use as warm-up requests.
        top_k: how many classes ``top_k_classes`` holds (at most the number of classes).
        thresholds: overrides of :data:`DEFAULT_THRESHOLDS`; the parity check uses
            ``thresholds["saved_model"]["max_abs_diff"]``, the image-bytes check its
            ``"bytes_max_abs_diff"`` and ``"bytes_min_agreement"``.

    Returns:
        The version folder.

    Example:
    >>> path = export_saved_model(model, base="saved_models", name="digits")  # doctest: +SKIP
    >>> path.name  # doctest: +SKIP
    '1'
    """
    shape = image_shape(model)
    name = check_name(model.name if name is None else name)
    check_int("version", version, 1, optional=True, none_means="the next free one")
    top_k = check_int("top_k", top_k, 1)
    check_bool("warmup", warmup)
    class_names = _check_class_names(class_names, model.outputs[0].shape[-1])
    model_dir = Path(base) / name
    version = _resolve_version(model_dir, version)
    images = (_random_images(shape, 4) if verify_data is None
              else _take_images(verify_data, shape, 64, "verify_data"))
    _check_probabilities(model, shape)
    limits = check_thresholds(thresholds)
    staging = _staging_dir(model_dir, version)
    try:
        parity = limits[SAVED_MODEL]["max_abs_diff"] if verify_data is not None else None
        # The image-bytes signature is checked against the pixel one on any images, random or not.
        _stage_saved_model(model, staging, name, shape, class_names, top_k, images, parity, warmup,
                           bytes_limits=limits[SAVED_MODEL])
        final = model_dir / str(version)
        _move_into_place(staging, final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return final


def _random_images(shape, n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, *shape)).astype("float32")


# ---- TFLite -----------------------------------------------------------------------------

def _write_probability_model(model: keras.Model, path: Path, shape) -> None:
    """A SavedModel with one float32 ``images`` -> ``probabilities`` signature, to convert."""
    _save_module(model, path, shape, lambda p: {"probabilities": p}, [("serving_default", tf.float32)])


def _check_tflite_args(quantization, representative_data, int8_io) -> None:
    check_choice("quantization", quantization, QUANTIZATIONS)
    check_choice("int8_io", int8_io, INT8_IO_TYPES)
    if quantization == "int8" and representative_data is None:
        raise ValueError("int8 quantization needs representative_data: a few hundred training images to "
                         "calibrate the activation ranges; received representative_data=None")


def _check_metadata_args(metadata, int8_io: str) -> None:
    check_bool("metadata", metadata)
    if metadata and int8_io not in MEDIAPIPE_INPUT_TYPES:
        raise ValueError(f"metadata is for MediaPipe's ImageClassifier, which takes {' or '.join(MEDIAPIPE_INPUT_TYPES)} "
                         f"input and refuses int8; received int8_io={int8_io!r} (uint8 takes raw pixel bytes)")


def _write_tflite_source(model: keras.Model, path: Path, shape, sample, metadata: bool):
    """Writes the SavedModel to convert; returns the calibration images it takes.

    With ``metadata`` the model goes behind an RGB input (grey models convert it in the graph),
    as MediaPipe feeds RGB only.
    """
    if not metadata:
        _write_probability_model(model, path, shape)
        return sample
    _write_probability_model(rgb_input_model(model), path, (*shape[:2], 3))
    return None if sample is None else rgb_calibration_images(sample)


def export_tflite(
    source: keras.Model | str | os.PathLike,
    path: str | os.PathLike,
    quantization: str = "float32",
    representative_data=None,
    int8_io: str = "float32",
    calibration_samples: int = DEFAULT_CALIBRATION_SAMPLES,
    metadata: bool = False,
    class_names: Sequence[str] | None = None,
) -> Path:
    """Converts a model to a TFLite (LiteRT) file that needs only builtin ops.

    The converter runs on a SavedModel (Keras 3 models go through a temporary one) with Select
    TF ops off; if the model needs ops outside the builtins, :class:`ExportError` names them.
    With ``metadata``, the file carries TFLite Metadata and its labels, as MediaPipe's
    ImageClassifier needs them (:func:`keras_resnet.tflite_metadata.add_metadata`), and takes
    RGB images: a grey model gets an RGB input converted to grey in the graph
    (:func:`keras_resnet.tflite_metadata.rgb_input_model`).

    Args:
        source: a keras.Model, or a SavedModel folder whose ``serving_default`` signature takes
            float32 images.
        path: the ``.tflite`` file to write (atomically).
        quantization: ``"float32"``, ``"float16"`` (float16 weights), ``"dynamic"`` (int8
            weights, float activations) or ``"int8"`` (full integer, calibrated).
        representative_data: images (array, or iterable of batches or (images, labels) pairs)
            from the training data; needed for ``"int8"``.
        int8_io: ``"float32"``, ``"int8"`` or ``"uint8"``: the input and output type of an
            int8 model (uint8 takes raw pixels as they are).
        calibration_samples: at most this many images are used to calibrate.
        metadata: write TFLite Metadata (name, RGB input, normalisation, labels); the int8
            input must then be float32 or uint8, the types MediaPipe accepts.
        class_names: with ``metadata``, one string per class for the labels file; default
            ``"0"``, ``"1"``, ...

    Returns:
        The written path.

    Example:
    >>> export_tflite(model, "digits_int8.tflite", "int8", representative_data=x_train)  # doctest: +SKIP
    PosixPath('digits_int8.tflite')
    """
    _check_tflite_args(quantization, representative_data, int8_io)
    calibration_samples = check_int("calibration_samples", calibration_samples, 1)
    _check_metadata_args(metadata, int8_io if quantization == "int8" else "float32")
    path = Path(path)
    if path.suffix != ".tflite":
        raise ValueError(f"path must end in .tflite; received path={str(path)!r}")
    if isinstance(source, keras.Model):
        shape = image_shape(source)
        _check_probabilities(source, shape)
        if metadata:
            class_names = _check_class_names(class_names, source.outputs[0].shape[-1])
    else:
        if not (Path(source) / "saved_model.pb").is_file():
            raise ValueError(f"source must be a keras.Model or a SavedModel folder; {str(source)!r} "
                             "holds no saved_model.pb")
        spec = tf.saved_model.load(str(source)).signatures["serving_default"].structured_input_signature[1]
        shape = tuple(next(iter(spec.values())).shape[1:])
        if metadata and shape[-1] != 3:
            raise ValueError(f"metadata needs an RGB input, and the SavedModel {str(source)!r} takes {shape}; pass "
                             "the keras.Model instead, which is exported behind an RGB input")
    sample = _calibration_images(representative_data, shape, calibration_samples) if quantization == "int8" else None
    with tempfile.TemporaryDirectory() as tmp:
        if isinstance(source, keras.Model):
            saved_model = Path(tmp) / "probabilities"
            sample = _write_tflite_source(source, saved_model, shape, sample, metadata)
        else:
            saved_model = Path(source)
        content = convert_saved_model(saved_model, quantization, sample, int8_io)
    if metadata:
        name = source.name if isinstance(source, keras.Model) else Path(source).name
        content = add_metadata(content, class_names, name=name, grey_model=shape[-1] == 1)
    fileio.write_bytes(path, content)
    return path


# ---- everything at once -----------------------------------------------------------------

def export_all(
    model: keras.Model,
    name: str | None = None,
    base: str | os.PathLike = "saved_models",
    version: int | None = None,
    tflite: Sequence[str] = (),
    representative_data=None,
    x_test=None,
    y_test=None,
    class_names: Sequence[str] | None = None,
    int8_io: str = "float32",
    keep_failed: bool = False,
    thresholds: Mapping[str, Mapping[str, float]] | None = None,
    calibration_samples: int = DEFAULT_CALIBRATION_SAMPLES,
    latency_runs: int = 50,
    num_threads: int = 2,
    onnx: bool = False,
    metadata: bool = False,
) -> list[dict]:
    """Exports the SavedModel and TFLite files, verifies them, keeps what passes, writes the report.

    Everything is staged, verified with :func:`verify` on ``x_test`` / ``y_test`` (random images
    when none are given: parity only, no accuracy; the SavedModel's ``serving_bytes`` signature
    against its ``serving_default`` on the first 256 as PNG files), then moved into place. A
    failed artifact is deleted, or with ``keep_failed`` kept under a ``.failed`` name that
    servers ignore (``base/name/3.failed/``, ``name_3_int8.failed.tflite``; see
    :func:`tf_serving_versions`). The records are written to ``base/name/export_report.json``.

    Args:
        model: the trained classifier (raw pixels in, probabilities out, fixed input size).
        name: the served model's name; default ``model.name``.
        base: the model base folder.
        version: integer version; default the next free one.
        tflite: TFLite variants to write, any of ``QUANTIZATIONS``.
        representative_data: training images for int8 calibration.
        x_test: held-out images for verification. y_test: their integer labels.
        class_names: one string per class.
        int8_io: input/output type of the int8 file: ``"float32"``, ``"int8"`` or ``"uint8"``.
        keep_failed: keep failed artifacts under a ``.failed`` name instead of deleting them.
        thresholds: overrides of :data:`DEFAULT_THRESHOLDS`, per format.
        calibration_samples: at most this many images calibrate the int8 file.
        latency_runs: timed runs per artifact. num_threads: TFLite interpreter and ONNX
            Runtime threads.
        onnx: also write ``base/name/onnx/name_version.onnx`` (:mod:`keras_resnet.onnx_export`),
            verified with ONNX Runtime; needs ``pip install "keras-residual[onnx]"``.
        metadata: write TFLite Metadata and the labels into every TFLite file, for MediaPipe's
            ImageClassifier (see :func:`export_tflite`); the files then take RGB images, and
            a grey model's are verified on its test images replicated to RGB.

    Returns:
        One record per artifact (see :func:`verify`), with ``path`` the kept path (None when
        deleted), ``kept``, ``name`` and ``version``.

    Example:
    >>> report = export_all(model, "digits", tflite=["float32", "int8"],  # doctest: +SKIP
    ...                     representative_data=x_train, x_test=x_test, y_test=y_test)
    """
    # ---- everything is validated before the first file is written ----
    shape = image_shape(model)
    name = check_name(model.name if name is None else name)
    check_int("version", version, 1, optional=True, none_means="the next free one")
    check_type("tflite", tflite, (list, tuple), f"a list of quantizations (any of {', '.join(QUANTIZATIONS)})")
    tflite = list(dict.fromkeys(tflite))
    for q in tflite:
        check_choice("quantization", q, QUANTIZATIONS)
    _check_tflite_args("int8" if "int8" in tflite else "float32", representative_data, int8_io)
    if int8_io != "float32" and "int8" not in tflite:
        raise ValueError(f"int8_io={int8_io!r} applies to an int8 export; add 'int8' to tflite={tflite!r}")
    _check_metadata_args(metadata, int8_io)
    class_names = _check_class_names(class_names, model.outputs[0].shape[-1])
    check_thresholds(thresholds)
    check_bool("keep_failed", keep_failed)
    calibration_samples = check_int("calibration_samples", calibration_samples, 1)
    latency_runs = check_int("latency_runs", latency_runs, 1)
    num_threads = check_int("num_threads", num_threads, 1)
    if check_bool("onnx", onnx):
        from keras_resnet import onnx_export

        onnx_export.check_available()
    x_test, y_test = _verification_data(x_test, y_test, shape)
    sample = _calibration_images(representative_data, shape, calibration_samples) if "int8" in tflite else None
    model_dir = Path(base) / name
    version = _resolve_version(model_dir, version)
    _check_probabilities(model, shape)

    staging = _staging_dir(model_dir, version)
    try:
        staged = _stage_artifacts(model, staging, name, shape, class_names, tflite, x_test, sample, int8_io,
                                  metadata=metadata, version=version)
        if onnx:
            staged[ONNX] = staging / "model.onnx"
            fileio.write_bytes(staged[ONNX], onnx_export.convert(model, shape, class_names, DEFAULT_TOP_K))
        records = verify(model, staged, x_test, y_test, thresholds, latency_runs=latency_runs, num_threads=num_threads)
        for record in records:
            path = _place(staged[record["format"]], record, base, name, version, keep_failed)
            record.update(name=name, version=version, path=None if path is None else str(path), kept=path is not None)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    fileio.write_bytes(model_dir / REPORT_FILE, (json.dumps(records, indent=2) + "\n").encode())
    return records


def _verification_data(x_test, y_test, shape) -> tuple[np.ndarray, np.ndarray | None]:
    """Checked test images and labels; 64 random images (parity only) when none are given."""
    if x_test is None:
        if y_test is not None:
            raise ValueError("y_test was given without x_test")
        return _random_images(shape, 64), None
    x_test = _take_images(x_test, shape, what="x_test")
    if y_test is not None:
        y_test = np.asarray(y_test).reshape(-1)
        if len(y_test) != len(x_test):
            raise ValueError(f"y_test must hold one label per image of x_test ({len(x_test)}); received {len(y_test)}")
    return x_test, y_test


def _stage_artifacts(model, staging: Path, name, shape, class_names, tflite, x_test, sample, int8_io,
                     metadata: bool = False, version: int | None = None) -> dict:
    """Writes the SavedModel and each TFLite file under ``staging``; returns {format: path}."""
    staged = {SAVED_MODEL: staging / "saved_model"}
    _stage_saved_model(model, staged[SAVED_MODEL], name, shape, class_names, DEFAULT_TOP_K, x_test[:4], None)
    if tflite:
        source = staging / "probabilities"
        sample = _write_tflite_source(model, source, shape, sample, metadata)
        for q in tflite:
            staged[q] = staging / f"{q}.tflite"
            content = convert_saved_model(source, q, sample, int8_io if q == "int8" else "float32")
            if metadata:
                content = add_metadata(content, class_names, name=name, version=version, grey_model=shape[-1] == 1)
            fileio.write_bytes(staged[q], content)
    return staged


def _place(staged: Path, record: dict, base, name: str, version: int, keep_failed: bool) -> Path | None:
    """Moves a verified artifact into place (a failed one under a ``.failed`` name, or deletes it)."""
    fmt = record["format"]
    if fmt == SAVED_MODEL:
        final = Path(base) / name / str(version)
    elif fmt == ONNX:
        from keras_resnet.onnx_export import onnx_path

        final = onnx_path(base, name, version)
    else:
        final = tflite_path(base, name, version, fmt)
    if not record["passed"]:
        if not keep_failed:
            return None
        suffix = final.name + FAILED_SUFFIX if fmt == SAVED_MODEL else final.stem + FAILED_SUFFIX + final.suffix
        final = final.with_name(suffix)
    final.parent.mkdir(parents=True, exist_ok=True)
    _move_into_place(staged, final)
    return final
