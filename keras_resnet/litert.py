"""TFLite (LiteRT) conversion with builtin ops only, the op check, and a runner for the files.

Used by :mod:`keras_resnet.export`. Conversion goes through ``tf.lite.TFLiteConverter`` on a
SavedModel with Select TF ops off (Keras's ``model.export(format="litert")`` turns them on);
files run with ``ai_edge_litert`` (``tf.lite.Interpreter`` is deprecated).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import tensorflow as tf
from ai_edge_litert import schema_py_generated as schema
from ai_edge_litert.interpreter import Interpreter

from keras_resnet.defaults import INT8_IO_TYPES, QUANTIZATIONS  # noqa: F401 - importable from here
from keras_resnet.validation import check_choice, check_int

_BUILTIN_NAMES = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
# The converter reports unsupported ops in these forms (TF 2.21's MLIR converter).
_OP_PATTERNS = (
    re.compile(r"'tf\.(\w+)' op is neither a custom op nor a flex op"),
    re.compile(r"(?:TF Select|Flex|Custom) ops: ([\w, ]+)"),
)


class ExportError(RuntimeError):
    """A conversion or a check of an exported artifact failed; nothing half-written was kept."""


def tflite_ops(model: bytes | str | os.PathLike) -> list[str]:
    """The operator names a TFLite flatbuffer uses: builtin names, or the custom op's code.

    Select TF ops appear as custom ops named ``Flex<Op>``.

    Example:
    >>> tflite_ops("digits_1_int8.tflite")  # doctest: +SKIP
    ['QUANTIZE', 'CONV_2D', 'ADD', 'PAD', 'MEAN', 'FULLY_CONNECTED', 'SOFTMAX', 'DEQUANTIZE']
    """
    content = model if isinstance(model, (bytes, bytearray)) else Path(model).read_bytes()
    root = schema.Model.GetRootAsModel(content, 0)
    names = []
    for i in range(root.OperatorCodesLength()):
        code = root.OperatorCodes(i)
        # Codes above 127 live in builtin_code; the deprecated byte field saturates at 127.
        builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
        if builtin == schema.BuiltinOperator.CUSTOM:
            names.append((code.CustomCode() or b"?").decode())
        else:
            names.append(_BUILTIN_NAMES.get(builtin, str(builtin)))
    return names


def check_builtin_ops(model: bytes | str | os.PathLike) -> list[str]:
    """Returns the model's ops; raises :class:`ExportError` naming any that are not builtins."""
    ops = tflite_ops(model)
    custom = [op for op in ops if op not in _BUILTIN_NAMES.values()]
    if custom:
        raise ExportError(
            f"the TFLite model needs ops outside the TFLite builtins: {', '.join(custom)} "
            "(Flex ops need the Select TF ops delegate, which phones and many runtimes lack)"
        )
    return ops


def _offending_ops(message: str) -> list[str]:
    found = []
    for pattern in _OP_PATTERNS:
        for match in pattern.findall(message):
            found += [op.strip() for op in match.split(",") if op.strip()]
    return list(dict.fromkeys(found))


def convert_saved_model(
    saved_model_dir: str | os.PathLike,
    quantization: str = "float32",
    representative_images: np.ndarray | None = None,
    int8_io: str = "float32",
) -> bytes:
    """Converts a SavedModel's ``serving_default`` signature to a builtin-ops TFLite flatbuffer.

    Args:
        saved_model_dir: the SavedModel folder.
        quantization: one of :data:`QUANTIZATIONS`.
        representative_images: calibration images (float32, model input shape), for ``"int8"``.
        int8_io: input and output type of an int8 model, one of :data:`INT8_IO_TYPES`.

    Returns:
        The flatbuffer's bytes.

    Example:
    >>> content = convert_saved_model("/tmp/probabilities", "float16")  # doctest: +SKIP
    """
    check_choice("quantization", quantization, QUANTIZATIONS)
    check_choice("int8_io", int8_io, INT8_IO_TYPES)
    if quantization == "int8" and (representative_images is None or not len(representative_images)):
        raise ValueError("int8 quantization needs representative images; received none")
    # serving_default only: an exported SavedModel also has serving_uint8 and serving_bytes (whose
    # image decoding has no TFLite builtins).
    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model_dir), signature_keys=["serving_default"])
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if quantization != "float32":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantization == "float16":
        converter.target_spec.supported_types = [tf.float16]
    elif quantization == "int8":
        images = np.asarray(representative_images, "float32")
        converter.representative_dataset = lambda: ([image[None]] for image in images)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        if int8_io != "float32":
            converter.inference_input_type = converter.inference_output_type = getattr(tf, int8_io)
    try:
        content = converter.convert()
    except Exception as e:  # ConverterError and friends; the message lists the ops
        ops = _offending_ops(str(e))
        if ops:
            raise ExportError(
                f"{quantization} TFLite conversion needs ops outside the TFLite builtins: {', '.join(ops)} "
                "(only the Flex delegate could run them; replace them with builtin-friendly layers)"
            ) from None
        raise ExportError(f"{quantization} TFLite conversion failed: {str(e).strip().splitlines()[0]}") from e
    check_builtin_ops(content)
    return content


class TFLiteRunner:
    """Runs a TFLite file one image at a time, quantizing inputs and dequantizing outputs.

    Args:
        path: the ``.tflite`` file.
        num_threads: interpreter threads.

    Example:
    >>> runner = TFLiteRunner("digits_1_int8.tflite")  # doctest: +SKIP
    >>> runner.predict(images).shape  # doctest: +SKIP
    (360, 10)
    """

    def __init__(self, path: str | os.PathLike, num_threads: int = 2):
        num_threads = check_int("num_threads", num_threads, 1)
        self.interpreter = Interpreter(model_path=str(path), num_threads=num_threads)
        self.interpreter.allocate_tensors()
        self.input = self.interpreter.get_input_details()[0]
        self.output = self.interpreter.get_output_details()[0]

    def __call__(self, image: np.ndarray) -> np.ndarray:
        """Probabilities (float32) for a batch of one image given as raw pixels.

        Grey images given to a file that takes RGB (a grey model exported with TFLite Metadata,
        behind :class:`keras_resnet.tflite_metadata.RGBToGrey`) are replicated to three
        channels, which the file turns back into exactly the grey image.
        """
        x = np.asarray(image, "float32")
        if x.shape[-1] == 1 and self.input["shape"][-1] == 3:
            x = np.repeat(x, 3, axis=-1)
        scale, zero_point = self.input["quantization"]
        dtype = self.input["dtype"]
        if scale:
            info = np.iinfo(dtype)
            x = np.clip(np.round(x / scale + zero_point), info.min, info.max)
        self.interpreter.set_tensor(self.input["index"], x.astype(dtype))
        self.interpreter.invoke()
        y = self.interpreter.get_tensor(self.output["index"]).astype("float32")
        scale, zero_point = self.output["quantization"]
        return (y - zero_point) * scale if scale else y

    def predict(self, images: np.ndarray) -> np.ndarray:
        """Probabilities for a batch, one image per call (the file's batch size is 1)."""
        return np.concatenate([self(images[i:i + 1]) for i in range(len(images))])
