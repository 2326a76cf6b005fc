"""ONNX export of a trained classifier with named outputs, checked with ONNX Runtime.

The ONNX file takes what the SavedModel takes and answers with the same names (Keras's own
``model.export(format="onnx")`` names its one output ``Identity:0``)::

    input    images               float32 [batch, height, width, channels], raw pixels 0-255
    outputs  probabilities        float32 [batch, classes]
             class_id             int64   [batch]
             top_k_classes        int64   [batch, k]   (k = min(top_k, classes), best first)
             top_k_probabilities  float32 [batch, k]

The class names travel in the model's ``metadata_props`` under ``class_names`` (a JSON list),
since ONNX has no string lookup that every runtime supports. Conversion goes through
``tf2onnx.convert.from_function`` on a ``tf.function`` that calls the Keras model; ``tf2onnx``,
``onnx`` and ``onnxruntime`` are imported only when needed (``pip install
"keras-residual[onnx]"``).

Opset 17 (ONNX 1.12, 2022): every op the ResNets need (Conv, Pad, GlobalAveragePool, MatMul,
Softmax, ArgMax, TopK) has its current form there, ONNX Runtime has run it since 1.12 and
TensorRT, OpenVINO and ONNX Runtime Web load it; opset 18, the newest tf2onnx 1.17 writes, only
moves reduction axes into inputs, which older runtimes handle less well.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from keras_resnet import fileio
from keras_resnet.defaults import ONNX_DIR
from keras_resnet.validation import check_int, check_path

__all__ = [
    "CLASS_NAMES_KEY", "INPUT_NAME", "ONNX_PACKAGES", "OPSET", "OUTPUT_NAMES", "ONNXRunner", "export_onnx",
    "check_available", "missing_packages", "onnx_path", "output_failures", "require",
]

INPUT_NAME = "images"
OUTPUT_NAMES = ("probabilities", "class_id", "top_k_classes", "top_k_probabilities")
CLASS_NAMES_KEY = "class_names"  # metadata_props key: a JSON list, entry i names class id i
OPSET = 17
OPSETS = (13, 18)  # what tf2onnx 1.17 writes and the exported ops allow
BATCH_DIM = "batch"
ONNX_PACKAGES = ("tf2onnx", "onnx", "onnxruntime")
INSTALL_HINT = 'pip install "keras-residual[onnx]"'
DEFAULT_TOP_K = 5
_NUMPY_TYPES = {"tensor(float)": np.float32, "tensor(uint8)": np.uint8}


def missing_packages(packages: Sequence[str] = ONNX_PACKAGES) -> list[str]:
    """The packages of ``packages`` that are not installed (found without importing them).

    Example:
    >>> missing_packages(["json", "no_such_package_here"])
    ['no_such_package_here']
    """
    return [p for p in packages if importlib.util.find_spec(p) is None]


def require(package: str):
    """Imports one of :data:`ONNX_PACKAGES`; ImportError with the install command when it is missing."""
    try:
        return importlib.import_module(package)
    except ImportError as e:
        raise ImportError(f"ONNX export and ONNX models need {', '.join(ONNX_PACKAGES)} ({package} could not be "
                          f"imported: {e}); install them with: {INSTALL_HINT}") from e


def check_available(packages: Sequence[str] = ONNX_PACKAGES) -> None:
    """ImportError naming the missing packages and the install command, before any work starts."""
    missing = missing_packages(packages)
    if missing:
        raise ImportError(f"ONNX export needs {', '.join(ONNX_PACKAGES)}; missing: {', '.join(missing)}. "
                          f"Install them with: {INSTALL_HINT}")


def onnx_path(base: str | os.PathLike, name: str, version: int) -> Path:
    """Where :func:`keras_resnet.export.export_all` puts the ONNX file: ``base/name/onnx/name_version.onnx``.

    Example:
    >>> str(onnx_path("saved_models", "digits", 3))
    'saved_models/digits/onnx/digits_3.onnx'
    """
    return Path(base) / name / ONNX_DIR / f"{name}_{version}.onnx"


def _check_onnx_path(path) -> Path:
    check_path("path", path, allowed="a path ending in .onnx")
    path = Path(path)
    if path.suffix != ".onnx":
        raise ValueError(f"path must end in .onnx; received path={str(path)!r}")
    if path.is_dir():
        raise ValueError(f"path {str(path)!r} is a folder; expected a .onnx file path")
    return path


# ---- conversion -------------------------------------------------------------------------

def convert(model, shape: tuple[int, int, int], class_names: Sequence[str], top_k: int = DEFAULT_TOP_K,
            opset: int = OPSET) -> bytes:
    """Converts a checked Keras classifier to ONNX bytes with named outputs and class-name metadata.

    :func:`export_onnx` validates the arguments first; this is the conversion step alone.

    Raises:
        keras_resnet.litert.ExportError: tf2onnx failed, or left ops that are not standard ONNX.
    """
    import tensorflow as tf

    from keras_resnet import __version__
    from keras_resnet.litert import ExportError

    tf2onnx, onnx = require("tf2onnx"), require("onnx")
    k = min(top_k, len(class_names))
    input_dtype = model.inputs[0].dtype

    @tf.function
    def serve(images):
        probabilities = tf.cast(model(tf.cast(images, input_dtype), training=False), tf.float32)
        top = tf.math.top_k(probabilities, k=k)
        return {
            "probabilities": probabilities,
            "class_id": tf.argmax(probabilities, axis=-1, output_type=tf.int64),
            "top_k_classes": tf.cast(top.indices, tf.int64),
            "top_k_probabilities": top.values,
        }

    spec = tf.TensorSpec([None, *shape], tf.float32, name=INPUT_NAME)
    try:
        proto, _ = tf2onnx.convert.from_function(serve, input_signature=[spec], opset=opset)
    except Exception as e:  # tf2onnx raises many types; all mean the graph did not convert
        raise ExportError(f"ONNX conversion failed: {str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__}") from e
    _fold_captured_constants(proto, serve.get_concrete_function(spec), onnx)
    # tf2onnx keeps ops it cannot convert (continue_on_error) under their TensorFlow names.
    unknown = sorted({n.op_type for n in proto.graph.node if not onnx.defs.has(n.op_type, n.domain)})
    if unknown:
        raise ExportError(f"ONNX conversion left ops that are not standard ONNX (opset {opset}): {', '.join(unknown)}; "
                          "replace them with layers tf2onnx can convert")
    _name_outputs_and_batch(proto)
    onnx.helper.set_model_props(proto, {
        CLASS_NAMES_KEY: json.dumps(list(class_names)),
        "top_k": str(k),
        "input": f"{INPUT_NAME}: float32 [batch, {shape[0]}, {shape[1]}, {shape[2]}] raw pixels 0-255",
        "keras_resnet_version": __version__,
    })
    proto.doc_string = "Image classifier exported by keras-resnet: raw pixels in, class probabilities out."
    try:
        onnx.checker.check_model(proto, full_check=True)
    except Exception as e:  # onnx.checker.ValidationError and shape-inference errors
        raise ExportError(f"the converted ONNX model is not valid: {str(e).strip().splitlines()[0]}") from e
    return proto.SerializeToString()


def _fold_captured_constants(proto, concrete, onnx) -> None:
    """Turns the graph inputs that tf2onnx made of captured constants into initializers.

    tf2onnx freezes the variables a function reads, but makes every other captured tensor a
    graph input; ``keras.layers.Normalization`` built with a mean and a variance (as
    :func:`keras_resnet.data.preprocessing` builds it) captures two. Their values are the
    concrete function's ``captured_inputs``, in the order of its trailing ``inputs``.
    """
    import tensorflow as tf

    from keras_resnet.litert import ExportError

    captured = concrete.captured_inputs
    placeholders = concrete.inputs[len(concrete.inputs) - len(captured):]
    values = {t.name: v for t, v in zip(placeholders, captured) if t.dtype != tf.resource}
    extra = [i for i in proto.graph.input if i.name != INPUT_NAME]
    unknown = [i.name for i in extra if i.name not in values]
    if unknown:
        raise ExportError(f"the converted ONNX model takes inputs {unknown} besides {INPUT_NAME!r}; expected one image batch")
    for value_info in extra:
        proto.graph.initializer.append(onnx.numpy_helper.from_array(np.asarray(values[value_info.name]), value_info.name))
        proto.graph.input.remove(value_info)


def _name_outputs_and_batch(proto) -> None:
    """Puts the outputs in :data:`OUTPUT_NAMES` order and names the dynamic batch dimension ``batch``."""
    outputs = {o.name: o for o in proto.graph.output}
    if set(outputs) != set(OUTPUT_NAMES):
        from keras_resnet.litert import ExportError

        raise ExportError(f"the converted ONNX model has outputs {sorted(outputs)}; expected {list(OUTPUT_NAMES)}")
    ordered = [outputs[n] for n in OUTPUT_NAMES]
    del proto.graph.output[:]
    proto.graph.output.extend(ordered)
    for value in [*proto.graph.input, *proto.graph.output]:
        dim = value.type.tensor_type.shape.dim[0]
        if not dim.HasField("dim_value"):
            dim.dim_param = BATCH_DIM


# ---- running ----------------------------------------------------------------------------

class ONNXRunner:
    """Runs an ONNX image classifier with ONNX Runtime on the CPU.

    Args:
        path: the ``.onnx`` file, or its bytes.
        num_threads: ONNX Runtime's intra-op threads.

    Attributes:
        input_name, input_shape (``[batch, h, w, c]``, the batch a name or an int),
        output_names, metadata (``metadata_props`` as a dict), probabilities (the output
        read as probabilities: ``probabilities``, else the first).

    Example:
    >>> runner = ONNXRunner("saved_models/digits/onnx/digits_1.onnx")  # doctest: +SKIP
    >>> runner.predict(images).shape, runner.class_names[:2]  # doctest: +SKIP
    ((360, 10), ['0', '1'])
    """

    def __init__(self, path: str | os.PathLike | bytes, num_threads: int = 2):
        num_threads = check_int("num_threads", num_threads, 1)
        ort = require("onnxruntime")
        options = ort.SessionOptions()
        options.intra_op_num_threads = num_threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3  # errors only; the CPU provider's notes are noise here
        what = "the ONNX model" if isinstance(path, bytes) else f"the ONNX model {str(path)!r}"
        try:
            self.session = ort.InferenceSession(path if isinstance(path, bytes) else str(path), options,
                                                providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime's Fail/InvalidProtobuf/NoSuchFile errors
            raise ValueError(f"could not load {what}: {str(e).strip().splitlines()[0]}") from e
        inputs = self.session.get_inputs()
        if len(inputs) != 1:
            raise ValueError(f"{what} takes {len(inputs)} inputs; expected one image batch")
        self.input_name, self.input_shape = inputs[0].name, list(inputs[0].shape)
        if inputs[0].type not in _NUMPY_TYPES:
            raise ValueError(f"{what} takes {inputs[0].type}; expected float32 or uint8 images")
        self.input_dtype = _NUMPY_TYPES[inputs[0].type]
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.output_shapes = {o.name: list(o.shape) for o in self.session.get_outputs()}
        # Files from elsewhere (Keras's own export names its output Identity:0): the first output.
        self.probabilities = "probabilities" if "probabilities" in self.output_names else self.output_names[0]
        self.metadata = dict(self.session.get_modelmeta().custom_metadata_map)

    @property
    def class_names(self) -> list[str] | None:
        """The class names from the metadata, or None when there are none (or they are not a JSON list of strings)."""
        try:
            names = json.loads(self.metadata.get(CLASS_NAMES_KEY, "null"))
        except ValueError:
            return None
        return names if isinstance(names, list) and all(isinstance(n, str) for n in names) else None

    def outputs(self, images: np.ndarray) -> dict[str, np.ndarray]:
        """Every output for a batch, by name."""
        x = np.asarray(images, "float32")
        if self.input_dtype is np.uint8:
            x = np.clip(np.round(x), 0, 255)
        batch = self.input_shape[0]
        if isinstance(batch, int) and batch != len(x):
            # A file exported with a fixed batch (usually 1) runs that many images per call.
            parts = [self.outputs(x[i:i + batch]) for i in range(0, len(x), batch)]
            return {k: np.concatenate([p[k] for p in parts]) for k in self.output_names}
        return dict(zip(self.output_names, self.session.run(None, {self.input_name: x.astype(self.input_dtype)})))

    def __call__(self, images: np.ndarray) -> np.ndarray:
        """Probabilities (float32) for a batch of raw pixels."""
        x = np.asarray(images, "float32")
        if isinstance(self.input_shape[0], int) and self.input_shape[0] != len(x):
            return self.outputs(x)[self.probabilities].astype("float32")
        x = np.clip(np.round(x), 0, 255) if self.input_dtype is np.uint8 else x
        out = self.session.run([self.probabilities], {self.input_name: x.astype(self.input_dtype)})[0]
        return out.astype("float32")

    def predict(self, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
        return np.concatenate([self(images[i:i + batch_size]) for i in range(0, len(images), batch_size)])


def output_failures(runner: ONNXRunner, images: np.ndarray, classes: int | None = None) -> list[str]:
    """Checks an exported file's interface on ``images``; returns what is wrong, in words (empty: fine).

    Checks the input (``images``, float32, dynamic batch), the output names and order, that
    ``class_id`` is the argmax of ``probabilities``, that the top-k outputs are the largest
    probabilities in order, and that the metadata names each class once.
    """
    failures = []
    if runner.input_name != INPUT_NAME or runner.input_dtype is not np.float32 or isinstance(runner.input_shape[0], int):
        failures.append(f"input is {runner.input_name!r} {runner.input_dtype.__name__} {runner.input_shape}; "
                        f"expected {INPUT_NAME!r} float32 with a dynamic batch")
    if runner.output_names != list(OUTPUT_NAMES):
        return [*failures, f"outputs are {runner.output_names}; expected {list(OUTPUT_NAMES)}"]
    out = runner.outputs(images)
    p, class_id = out["probabilities"], out["class_id"]
    classes = p.shape[-1] if classes is None else classes
    if class_id.dtype != np.int64 or out["top_k_classes"].dtype != np.int64:
        failures.append(f"class_id and top_k_classes are {class_id.dtype} and {out['top_k_classes'].dtype}; expected int64")
    if not np.array_equal(class_id, p.argmax(-1)):
        failures.append(f"class_id disagrees with the argmax of probabilities on {int(np.sum(class_id != p.argmax(-1)))} "
                        f"of {len(p)} images")
    top_p = np.take_along_axis(p, out["top_k_classes"].astype("int64"), axis=-1)
    if not (np.allclose(top_p, out["top_k_probabilities"], atol=1e-6) and np.all(np.diff(top_p, axis=-1) <= 0)
            and np.allclose(top_p[:, 0], p.max(-1), atol=1e-6)):
        failures.append("top_k_classes and top_k_probabilities are not the largest probabilities, best first")
    names = runner.class_names
    if names is None or len(names) != classes:
        failures.append(f"metadata {CLASS_NAMES_KEY!r} must be a JSON list of {classes} class names; "
                        f"found {runner.metadata.get(CLASS_NAMES_KEY)!r}")
    return failures


# ---- export -----------------------------------------------------------------------------

def export_onnx(
    source,
    path: str | os.PathLike,
    class_names: Sequence[str] | None = None,
    top_k: int = DEFAULT_TOP_K,
    opset: int = OPSET,
    verify_data=None,
    max_abs_diff: float = 1e-4,
) -> Path:
    """Converts a classifier to an ONNX file, checks it with ONNX Runtime, and writes it atomically.

    The file takes ``images`` (float32 raw pixels ``[batch, h, w, c]``, any batch) and returns
    ``probabilities``, ``class_id``, ``top_k_classes`` and ``top_k_probabilities``; the class
    names are in its metadata (``class_names``, a JSON list). Before the file is written, the
    converted model runs in ONNX Runtime on ``verify_data`` (or 8 random images): its interface
    (:func:`output_failures`) and its probabilities (within ``max_abs_diff`` of the Keras
    model's) must pass, else :class:`keras_resnet.litert.ExportError` and nothing is written.

    Args:
        source: a keras.Model (raw pixels in, probabilities out, fixed input size) or its
            ``.keras`` file.
        path: the ``.onnx`` file to write.
        class_names: one string per class; default ``"0"``, ``"1"``, ...
        top_k: how many classes ``top_k_classes`` holds (at most the number of classes).
        opset: the ONNX opset, 13 to 18 (default 17).
        verify_data: images (array or iterable of batches) to check parity on.
        max_abs_diff: the largest difference of probabilities allowed against Keras.

    Returns:
        The written path.

    Example:
    >>> export_onnx(model, "digits.onnx", class_names=[str(i) for i in range(10)])  # doctest: +SKIP
    PosixPath('digits.onnx')
    """
    import keras

    from keras_resnet import export
    from keras_resnet.litert import ExportError
    from keras_resnet.validation import check_float

    path = _check_onnx_path(path)
    top_k = check_int("top_k", top_k, 1)
    opset = check_int("opset", opset, *OPSETS)
    max_abs_diff = check_float("max_abs_diff", max_abs_diff, 0)
    if isinstance(source, (str, os.PathLike)):
        source = export.load_model(source)
    elif not isinstance(source, keras.Model):
        raise ValueError(f"source must be a keras.Model or a .keras file; received {type(source).__name__}")
    shape = export.image_shape(source)
    class_names = export._check_class_names(class_names, source.outputs[0].shape[-1])
    images = (export._random_images(shape, 8) if verify_data is None
              else export._take_images(verify_data, shape, 256, "verify_data"))
    check_available()
    export._check_probabilities(source, shape)

    content = convert(source, shape, class_names, top_k, opset)
    runner = ONNXRunner(content)
    failures = output_failures(runner, images, len(class_names))
    diff = float(np.max(np.abs(runner(images) - np.asarray(source.predict(images, verbose=0), "float32"))))
    if diff > max_abs_diff:
        failures.append(f"probabilities differ from the Keras model's by up to {diff:.3g} (allowed: {max_abs_diff:g})")
    if failures:
        raise ExportError(f"the ONNX model failed its checks, nothing was written: {'; '.join(failures)}")
    fileio.write_bytes(path, content)
    return path
