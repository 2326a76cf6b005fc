"""Classifies image files with a trained model of any kind: ``.keras``, SavedModel, TF Serving folder, TFLite, ONNX.

A model is found by what its path is (:func:`resolve_model`, which needs no TensorFlow, so the
command line checks it before TensorFlow starts) and loaded into a :class:`Classifier` (raw
pixels in, probabilities out) by :func:`load_classifier`:

* a ``.keras`` file of this package (class names from ``metrics.json``'s ``"class_names"`` in
  the same folder, where a training run wrote one);
* a SavedModel folder, through its ``serving_default`` signature (class names from
  ``assets/class_names.txt``);
* a ``BASE/NAME`` folder in TF Serving's layout: its latest integer version, as TF Serving's
  default version policy picks it;
* a ``.tflite`` file, float or integer input and output (quantized and dequantized with the
  tensors' scale and zero point); class names from the labels packed in its TFLite Metadata,
  else for ``BASE/NAME/tflite/NAME_V_QUANT.tflite`` those of SavedModel version ``V``. A grey
  model exported with metadata (behind an RGB input) is fed its grey images replicated to RGB;
* a ``.onnx`` file, run with ONNX Runtime (class names from its metadata's ``class_names``, as
  :mod:`keras_resnet.onnx_export` writes them; needs ``pip install "keras-residual[onnx]"``).

Every image file is read by :func:`keras_resnet.images.read_image_file` with the model's
channels and size and, by default, the evaluation fit of training's pipeline
(:func:`keras_resnet.images.evaluation_fit`), so a model sees the pixels it was evaluated on.
An unreadable file gives a :class:`Prediction` with its ``error``; the others are classified,
``batch_size`` at a time.

``keras_resnet.predict`` is both this module and its :func:`predict` function: calling the
module calls the function.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import sys
import types
import warnings
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from keras_resnet.defaults import CLASS_NAMES_FILE, DEFAULT_BATCH_SIZE, DEFAULT_TOP_K, ONNX_DIR, TFLITE_DIR
from keras_resnet.images import FITS, center_crop, evaluation_fit, read_image_file, resize
from keras_resnet.validation import check_choice, check_int, check_path

__all__ = [
    "DEFAULT_BATCH_SIZE", "DEFAULT_TOP_K", "MODEL_KINDS", "Classifier", "ModelSource", "Prediction",
    "load_classifier", "model_versions", "predict", "read_class_names", "resolve_model",
]

MODEL_KINDS = ("keras", "saved_model", "tflite", "onnx")
SIGNATURE = "serving_default"
METRICS_FILE = "metrics.json"  # a training run's summary; its "class_names" name the classes
_TFLITE_MAGIC = b"TFL3"  # the flatbuffer's file identifier, at bytes 4-8
# TensorFlow's op errors wrap their message in "{{function_node ...}} ... [Op:DecodeImage] name:";
# read_image_file passes that through, and a person needs only the middle.
_OP_ERROR_NOISE = re.compile(r"\{\{function_node [^}]*\}\}\s*|\s*\[Op:\w+\](?: name:.*)?$")
_EXPECTED = "a .keras file, a SavedModel folder, a BASE/NAME folder of versions, a .tflite or a .onnx file"


# ---- finding a model ------------------------------------------------------------------------------

@dataclass(frozen=True)
class ModelSource:
    """A model found on disk, not loaded yet.

    Attributes:
        kind: one of :data:`MODEL_KINDS`: ``"keras"``, ``"saved_model"``, ``"tflite"`` or ``"onnx"``.
        path: the ``.keras`` file, the SavedModel folder (for ``BASE/NAME`` its latest version
            folder), the ``.tflite`` or the ``.onnx`` file.
        class_names_file: the file naming the classes that travels with the model
            (``class_names.txt`` or a run's ``metrics.json``), or None (an ONNX file carries
            its names inside).
        version: the version number for a ``BASE/NAME`` folder, a ``.tflite`` file under
            ``BASE/NAME/tflite/`` or a ``.onnx`` file under ``BASE/NAME/onnx/``; else None.
    """

    kind: str
    path: Path
    class_names_file: Path | None = None
    version: int | None = None


def model_versions(model_dir: str | os.PathLike) -> list[int]:
    """The versions under ``BASE/NAME``, in increasing order: integer folders with a ``saved_model.pb``.

    As for TF Serving, anything else (staging folders, ``3.failed``) is not a version.

    Example:
    >>> model_versions("saved_models/does-not-exist")
    []
    """
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        return []
    return sorted(
        int(child.name) for child in model_dir.iterdir()
        if child.name.isascii() and child.name.isdigit() and (child / "saved_model.pb").is_file()
    )


def resolve_model(path: str | os.PathLike) -> ModelSource:
    """Finds what kind of model ``path`` is, without loading it (and without TensorFlow).

    Args:
        path: a ``.keras`` file, a SavedModel folder, a ``BASE/NAME`` folder (TF Serving's
            ``BASE/NAME/<version>/saved_model.pb``; the latest version is taken), a
            ``.tflite`` or a ``.onnx`` file.

    Returns:
        A :class:`ModelSource`; ValueError naming the path when it is none of these kinds.

    Example:
    >>> resolve_model("saved_models/digits")  # doctest: +SKIP
    ModelSource(kind='saved_model', path=PosixPath('saved_models/digits/3'), class_names_file=PosixPath('saved_models/digits/3/assets/class_names.txt'), version=3)
    >>> resolve_model("notes.txt")
    Traceback (most recent call last):
    ...
    ValueError: model 'notes.txt' does not exist; expected a .keras file, a SavedModel folder, a BASE/NAME folder of versions, a .tflite or a .onnx file
    """
    check_path("model", path, allowed=_EXPECTED)
    path = Path(path)
    if not path.exists():
        raise ValueError(f"model {str(path)!r} does not exist; expected {_EXPECTED}")
    if path.is_file():
        if path.suffix == ".keras":
            if not zipfile.is_zipfile(path):
                raise ValueError(f"{str(path)!r} is not a Keras model file (not a .keras archive written by model.save())")
            metrics = path.parent / METRICS_FILE
            return ModelSource("keras", path, metrics if metrics.is_file() else None)
        if path.suffix == ".tflite":
            with open(path, "rb") as f:
                if f.read(8)[4:] != _TFLITE_MAGIC:
                    raise ValueError(f"{str(path)!r} is not a TFLite model (no TFL3 flatbuffer identifier)")
            return ModelSource("tflite", path, *_tflite_class_names(path))
        if path.suffix == ".onnx":
            return ModelSource("onnx", path, None, _onnx_version(path))
        raise ValueError(f"model {str(path)!r} is not a model file; expected {_EXPECTED}")
    if (path / "saved_model.pb").is_file():
        return ModelSource("saved_model", path, _asset(path), int(path.name) if path.name.isdigit() else None)
    versions = model_versions(path)
    if versions:
        latest = path / str(versions[-1])
        return ModelSource("saved_model", latest, _asset(latest), versions[-1])
    names = sorted(c.name for c in path.iterdir() if c.is_dir() and model_versions(c))
    if names:
        raise ValueError(f"{str(path)!r} is a model base folder holding {', '.join(names)}; pass one model's "
                         f"folder, e.g. {str(path / names[0])!r}")
    raise ValueError(f"folder {str(path)!r} holds no saved_model.pb and no version folders "
                     f"(<integer>/saved_model.pb); expected {_EXPECTED}")


def _asset(saved_model_dir: Path) -> Path | None:
    names = saved_model_dir / "assets" / CLASS_NAMES_FILE
    return names if names.is_file() else None


def _tflite_class_names(path: Path) -> tuple[Path | None, int | None]:
    """For ``BASE/NAME/tflite/NAME_V_QUANT.tflite``: SavedModel version V's class names, and V."""
    if path.parent.name != TFLITE_DIR:
        return None, None
    model_dir = path.parent.parent
    match = re.match(rf"^{re.escape(model_dir.name)}_([0-9]+)_", path.name)
    if not match:
        return None, None
    version = int(match.group(1))
    return _asset(model_dir / str(version)), version


def _onnx_version(path: Path) -> int | None:
    """V for ``BASE/NAME/onnx/NAME_V.onnx``; else None."""
    if path.parent.name != ONNX_DIR:
        return None
    match = re.match(rf"^{re.escape(path.parent.parent.name)}_([0-9]+)\.onnx$", path.name)
    return int(match.group(1)) if match else None


def read_class_names(path: str | os.PathLike) -> list[str] | None:
    """Class names from a labels file (one per line) or a run's ``metrics.json`` (its ``"class_names"``).

    Returns None for a ``metrics.json`` without that key; ValueError for an unreadable or empty file.

    Example:
    >>> _ = Path("labels.txt").write_text("cat\\ndog\\n")
    >>> read_class_names("labels.txt")
    ['cat', 'dog']
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"cannot read class names from {str(path)!r}: {e}") from None
    if path.name == METRICS_FILE:
        try:
            names = json.loads(text).get("class_names")
        except (ValueError, AttributeError):
            raise ValueError(f"{str(path)!r} is not a JSON object") from None
        if names is None:
            return None
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise ValueError(f"{str(path)!r}'s \"class_names\" must be a list of strings; received {names!r}")
        return names
    names = [line.strip() for line in text.splitlines()]
    while names and not names[-1]:
        names.pop()
    if not names:
        raise ValueError(f"labels file {str(path)!r} holds no class names (expected one per line)")
    return names


# ---- loading a model --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Classifier:
    """A loaded image classifier of any kind: raw pixels ``(n, h, w, c)`` in, probabilities out.

    Made by :func:`load_classifier`; reusable for many calls of :func:`predict`.

    Attributes:
        run: a function from a float32 batch ``(n, height, width, channels)`` of pixels 0-255
            to float32 probabilities ``(n, classes)``.
        input_shape: ``(height, width, channels)``.
        class_names: one name per class.
        source: where the model came from; None for an in-memory keras.Model.
    """

    run: Callable[[np.ndarray], np.ndarray] = dataclasses.field(repr=False)
    input_shape: tuple[int, int, int]
    class_names: tuple[str, ...]
    source: ModelSource | None = None

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def __call__(self, images: np.ndarray) -> np.ndarray:
        return self.run(np.asarray(images, "float32"))


def load_classifier(model, labels: str | os.PathLike | Sequence[str] | None = None) -> Classifier:
    """Loads a model of any kind into a :class:`Classifier`, with its class names.

    Args:
        model: a path (see :func:`resolve_model`), a :class:`ModelSource`, an in-memory
            ``keras.Model`` (raw pixels in, probabilities out) or a :class:`Classifier`.
        labels: class names: a file (one per line) or a list of strings. Default: those that
            travel with the model, else ``"0"``, ``"1"``, ...

    Returns:
        The :class:`Classifier`; ValueError when the model is not a one-input image classifier
        with a fixed input size, or the labels do not name each class once.

    Example:
    >>> from keras_resnet.models import ResNet
    >>> classifier = load_classifier(ResNet(depth=8, input_shape=(8, 8, 1), classes=3), labels=["a", "b", "c"])
    >>> classifier.input_shape, classifier.class_names
    ((8, 8, 1), ('a', 'b', 'c'))
    """
    if isinstance(model, Classifier):
        classifier = model
    elif isinstance(model, ModelSource):
        classifier = _LOADERS[model.kind](model)
    elif isinstance(model, (str, os.PathLike)):
        source = resolve_model(model)
        classifier = _LOADERS[source.kind](source)
    else:
        classifier = _load_keras_model(model, None)
    if labels is not None:
        names = read_class_names(labels) if isinstance(labels, (str, os.PathLike)) else labels
        classifier = dataclasses.replace(classifier, class_names=_check_names(names, classifier.num_classes, "labels"))
    return classifier


def _check_names(names, classes: int, what: str) -> tuple[str, ...]:
    if isinstance(names, (str, bytes)) or not isinstance(names, Sequence) or not all(isinstance(n, str) for n in names):
        raise ValueError(f"{what} must be a list of class names (strings) or a file of them; received {names!r}")
    if len(names) != classes:
        raise ValueError(f"{what} has {len(names)} class names, but the model has {classes} classes")
    return tuple(names)


def _travelling_names(source: ModelSource, classes: int) -> tuple[str, ...]:
    """The class names that travel with the model; the indices as strings where none do."""
    try:
        names = read_class_names(source.class_names_file) if source.class_names_file else None
    except ValueError as e:  # a damaged metrics.json must not stop predictions
        warnings.warn(f"{e}; using the class indices", stacklevel=4)
        names = None
    if names is not None:
        if len(names) == classes:
            return tuple(names)
        warnings.warn(f"{source.class_names_file} has {len(names)} class names, but the model has {classes} "
                      "classes; using the class indices", stacklevel=4)
    return tuple(str(i) for i in range(classes))


def _check_input_shape(shape, what: str) -> tuple[int, int, int]:
    shape = tuple(shape)
    if len(shape) != 3 or any(d is None or int(d) < 1 for d in shape) or int(shape[-1]) not in (1, 3):
        raise ValueError(f"{what} must take images (batch, height, width, 1 or 3 channels) of a fixed size; "
                         f"it takes {(None, *shape)}")
    return tuple(int(d) for d in shape)


def _load_keras_model(model, source: ModelSource | None) -> Classifier:
    import keras

    from keras_resnet.export import image_shape, load_model

    if source is not None:
        model = load_model(source.path)
    elif not isinstance(model, keras.Model):
        raise ValueError(f"model must be a path ({_EXPECTED}) or a keras.Model; received {type(model).__name__}")
    shape = _check_input_shape(image_shape(model), f"model {model.name!r}")
    classes = int(model.outputs[0].shape[-1])

    def run(x):
        return np.asarray(keras.ops.convert_to_numpy(model(x, training=False)), "float32")

    names = _travelling_names(source, classes) if source else tuple(str(i) for i in range(classes))
    return Classifier(run, shape, names, source)


def _load_saved_model(source: ModelSource) -> Classifier:
    import tensorflow as tf

    try:
        loaded = tf.saved_model.load(str(source.path))
    except Exception as e:  # a damaged SavedModel raises any of several TensorFlow errors
        raise ValueError(f"could not load the SavedModel at {str(source.path)!r}: {str(e).strip().splitlines()[0]}") from e
    if SIGNATURE not in loaded.signatures:
        raise ValueError(f"the SavedModel at {str(source.path)!r} has no {SIGNATURE!r} signature; "
                         f"it has {sorted(loaded.signatures)}")
    function = loaded.signatures[SIGNATURE]
    inputs = function.structured_input_signature[1]
    outputs = function.structured_outputs
    if len(inputs) != 1:
        raise ValueError(f"the SavedModel at {str(source.path)!r} takes {len(inputs)} inputs; expected one image batch")
    (input_name, spec), = inputs.items()
    output_name = "probabilities" if "probabilities" in outputs else next(iter(outputs)) if len(outputs) == 1 else None
    if output_name is None:
        raise ValueError(f"the SavedModel at {str(source.path)!r} has outputs {sorted(outputs)} and none "
                         "named 'probabilities'")
    shape = _check_input_shape(spec.shape[1:], f"the SavedModel at {str(source.path)!r}")
    classes = int(outputs[output_name].shape[-1])
    integer = spec.dtype.is_integer

    def run(x):
        if integer:
            x = np.clip(np.round(x), spec.dtype.min, spec.dtype.max)
        out = function(**{input_name: tf.constant(x, spec.dtype)})[output_name]
        return out.numpy().astype("float32")

    run.loaded = loaded  # the signature's functions need the loaded object alive
    return Classifier(run, shape, _travelling_names(source, classes), source)


def _load_tflite(source: ModelSource) -> Classifier:
    from keras_resnet.litert import TFLiteRunner
    from keras_resnet.tflite_metadata import read_metadata

    try:
        runner = TFLiteRunner(source.path)
    except (ValueError, RuntimeError) as e:
        raise ValueError(f"could not load the TFLite model {str(source.path)!r}: {e}") from e
    shape = _check_input_shape(runner.input["shape"][1:], f"the TFLite model {str(source.path)!r}")
    classes = int(runner.output["shape"][-1])
    try:  # TFLite Metadata: packed labels; a grey model behind an RGB input
        metadata = read_metadata(source.path)
    except ValueError as e:  # another tool's damaged metadata must not stop predictions
        warnings.warn(f"{source.path}: {e}; ignoring its metadata", stacklevel=3)
        metadata = None
    if metadata and metadata["model_channels"] == 1:
        shape = (*shape[:2], 1)  # read images as the grey model was trained; the runner replicates them
    # Files converted from a SavedModel with a (None, ...) input take any batch once resized to
    # it; others (a fixed batch, usually 1) run one image per call.
    dynamic = int(runner.input["shape_signature"][0]) == -1
    batch = [int(runner.input["shape"][0])]

    def run(x):
        if not dynamic:
            return runner.predict(x)
        if len(x) != batch[0]:
            runner.interpreter.resize_tensor_input(runner.input["index"], [len(x), *runner.input["shape"][1:]])
            runner.interpreter.allocate_tensors()
            batch[0] = len(x)
        return runner(x)

    labels = metadata and metadata["labels"]
    names = tuple(labels) if labels and len(labels) == classes else _travelling_names(source, classes)
    return Classifier(run, shape, names, source)


def _load_onnx(source: ModelSource) -> Classifier:
    from keras_resnet.onnx_export import ONNXRunner

    runner = ONNXRunner(source.path)  # ValueError for a file ONNX Runtime cannot load
    what = f"the ONNX model {str(source.path)!r}"
    shape = _check_input_shape([d if isinstance(d, int) else None for d in runner.input_shape[1:]], what)
    classes = runner.output_shapes[runner.probabilities][-1]
    if not isinstance(classes, int):
        raise ValueError(f"{what} has output {runner.probabilities!r} of shape "
                         f"{runner.output_shapes[runner.probabilities]}; expected (batch, classes)")
    names = runner.class_names
    if names is not None and len(names) != classes:
        warnings.warn(f"{what} names {len(names)} classes in its metadata, but has {classes}; "
                      "using the class indices", stacklevel=3)
        names = None
    return Classifier(runner, shape, tuple(names or (str(i) for i in range(classes))), source)


_LOADERS = {
    "keras": lambda source: _load_keras_model(None, source),
    "saved_model": _load_saved_model,
    "tflite": _load_tflite,
    "onnx": _load_onnx,
}


# ---- predicting ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Prediction:
    """The top classes of one image, or why it could not be read.

    Attributes:
        index: the image's position in the input.
        path: the image file; None for an array.
        top_k: ``(class name, probability)`` pairs, most probable first; empty on error.
        class_ids: the classes' indices, in the same order.
        error: why the image could not be read (naming the file), else None.
    """

    index: int
    path: str | None
    top_k: list[tuple[str, float]]
    class_ids: list[int]
    error: str | None = None

    @property
    def label(self) -> str | None:
        """The most probable class's name; None on error."""
        return self.top_k[0][0] if self.top_k else None

    def to_dict(self) -> dict:
        """A JSON-ready dict: ``path``, ``predictions`` (class_id, class_name, probability) and ``error``."""
        return {
            "path": self.path,
            "predictions": [{"class_id": i, "class_name": name, "probability": p}
                            for i, (name, p) in zip(self.class_ids, self.top_k)],
            "error": self.error,
        }


def predict(
    model,
    images,
    *,
    top_k: int = DEFAULT_TOP_K,
    labels: str | os.PathLike | Sequence[str] | None = None,
    fit: str | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> list[Prediction]:
    """Classifies images with a model of any kind: the top ``top_k`` classes of each.

    Image files are read as training's evaluation pipeline reads them
    (:func:`keras_resnet.images.read_image_file` at the model's size and channels); an
    unreadable one gets a :class:`Prediction` whose ``error`` names it, and the others are
    still classified, ``batch_size`` at a time.

    Args:
        model: a ``.keras`` file, a SavedModel folder, a ``BASE/NAME`` folder (its latest
            version), a ``.tflite`` or ``.onnx`` file, an in-memory ``keras.Model`` (raw pixels in,
            probabilities out) or a :class:`Classifier` from :func:`load_classifier`.
        images: image file paths and pixel arrays ``(height, width, channels)`` (0-255; other
            sizes are fitted like files), one path, or one array (a batch when 4-D).
        top_k: how many classes to report per image, at most the number of classes.
        labels: class names (a file, one per line, or a list); default: those that travel with
            the model, else the class indices.
        fit: ``"stretch"`` or ``"center_crop"``; default
            :func:`keras_resnet.images.evaluation_fit` of the model's input size.
        batch_size: images per model call.

    Returns:
        One :class:`Prediction` per image, in order.

    Example:
    >>> import numpy as np
    >>> from keras_resnet.models import ResNet
    >>> model = ResNet(depth=8, input_shape=(8, 8, 1), classes=3)
    >>> [p] = predict(model, np.zeros((1, 8, 8, 1)), top_k=2, labels=["a", "b", "c"])
    >>> len(p.top_k), p.error
    (2, None)
    >>> predict("runs/digits/model.keras", ["seven.png", "two.jpg"])[0].label  # doctest: +SKIP
    '7'
    """
    top_k = check_int("top_k", top_k, 1)
    batch_size = check_int("batch_size", batch_size, 1)
    if fit is not None:
        check_choice("fit", fit, FITS)
    items = _image_items(images)
    classifier = load_classifier(model, labels)
    height, width, channels = classifier.input_shape
    fit = fit or evaluation_fit((height, width))
    arrays = {i: _fit_array(item, classifier.input_shape, fit, i) for i, item in enumerate(items)
              if not isinstance(item, (str, os.PathLike))}
    k = min(top_k, classifier.num_classes)
    results: list[Prediction] = []
    for start in range(0, len(items), batch_size):
        pixels, done, errors = [], [], {}
        for i in range(start, min(start + batch_size, len(items))):
            if i in arrays:
                pixels.append(arrays[i])
                done.append(i)
                continue
            try:
                pixels.append(read_image_file(items[i], channels, (height, width), fit).astype("float32"))
                done.append(i)
            except ValueError as e:
                errors[i] = _OP_ERROR_NOISE.sub("", str(e))
        probabilities = dict(zip(done, classifier(np.stack(pixels)))) if pixels else {}
        for i in range(start, min(start + batch_size, len(items))):
            path = str(items[i]) if isinstance(items[i], (str, os.PathLike)) else None
            if i in errors:
                results.append(Prediction(i, path, [], [], errors[i]))
                continue
            p = probabilities[i]
            order = np.argsort(-p, kind="stable")[:k]
            results.append(Prediction(i, path, [(classifier.class_names[c], float(p[c])) for c in order],
                                      [int(c) for c in order]))
    return results


def _image_items(images) -> list:
    """Paths and 3-D arrays from what :func:`predict` accepts."""
    if isinstance(images, (str, os.PathLike)):
        return [images]
    if hasattr(images, "shape") and hasattr(images, "dtype"):  # numpy arrays and tensors
        array = np.asarray(images)
        if array.ndim in (2, 3):
            return [array]
        if array.ndim == 4:
            return list(array)
        raise ValueError(f"images as one array must be an image (height, width, channels) or a batch of them; "
                         f"received shape {array.shape}")
    if isinstance(images, bytes) or not hasattr(images, "__iter__"):
        raise ValueError(f"images must be image paths or pixel arrays; received {type(images).__name__}")
    items = [item if isinstance(item, (str, os.PathLike)) else np.asarray(item) for item in images]
    if not items:
        raise ValueError("images holds no images")
    return items


def _fit_array(array: np.ndarray, shape, fit: str, index: int) -> np.ndarray:
    """An in-memory image at the model's size: as it is when it fits, else fitted like a file."""
    height, width, channels = shape
    if array.ndim == 2:
        array = array[..., None]
    if array.ndim != 3 or array.shape[-1] != channels or not np.issubdtype(array.dtype, np.number):
        raise ValueError(f"image {index} must be a numeric array (height, width, {channels}) for this model; "
                         f"received shape {array.shape} of {array.dtype}")
    if array.shape[:2] == (height, width):
        return array.astype("float32")
    import tensorflow as tf

    image = tf.constant(np.clip(np.round(array), 0, 255).astype("uint8"))
    if fit == "center_crop":
        image = center_crop(image, (height, width))
    return resize(image, (height, width)).numpy().astype("float32")


class _CallableModule(types.ModuleType):
    """``keras_resnet.predict(...)`` works whether the name is this module or its function.

    Importing ``keras_resnet.predict`` binds the module to the package's ``predict`` attribute,
    which would otherwise hide the function that ``keras_resnet/__init__.py`` re-exports.
    """

    def __call__(self, *args, **kwargs):
        return predict(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
