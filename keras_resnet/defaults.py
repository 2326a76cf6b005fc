"""Choices and defaults of the modules that import TensorFlow, as plain data without it.

The search (KerasTuner), the export (TFLite), the server and the diagnostics import TensorFlow
when they load; the values they accept are defined here instead, once, so that the command line
can offer them as choices and print them as defaults while ``keras-resnet --help`` still answers
without TensorFlow. Each module imports its names from here and keeps them importable under
its own name (``serving.DEFAULT_PORT``, ``litert.QUANTIZATIONS``, ``tuning.TUNERS``, ...).
Where a tuple of choices has a default, it is the first choice.
"""

from __future__ import annotations

# ---- search (keras_resnet.tuning) ---------------------------------------------------------------
TUNERS = ("hyperband", "bayesian", "random", "grid")  # the first is the default
# tf.distribute strategies a search can spread each trial over (None: one device).
SEARCH_DISTRIBUTIONS = ("mirrored",)
CIFAR_DEPTHS = (20, 32, 44, 56, 110)  # the CIFAR-style depths searched by default
SEARCH_EPOCHS = 9  # Hyperband's largest budget; the epochs of every trial for the other tuners
HYPERBAND_FACTOR = 3

# ---- export (keras_resnet.litert, keras_resnet.export, keras_resnet.pipeline) -------------------
MODEL_BASE = "saved_models"  # the model base folder: BASE/NAME/VERSION/, as TF Serving reads it
QUANTIZATIONS = ("float32", "float16", "dynamic", "int8")
INT8_IO_TYPES = ("float32", "int8", "uint8")  # the first is the default
DEFAULT_CALIBRATION_SAMPLES = 500  # training images that calibrate a full-integer (int8) file
CLASS_NAMES_FILE = "class_names.txt"  # in a SavedModel's assets/: one class name per line
TFLITE_DIR = "tflite"  # BASE/NAME/tflite/NAME_VERSION_QUANT.tflite
ONNX_DIR = "onnx"  # BASE/NAME/onnx/NAME_VERSION.onnx
# The SavedModel signature that takes encoded image files, and its string input. TF Serving's REST
# API decodes {"b64": ...} into string inputs; "_bytes" is the name ending it (and Google Cloud's
# prediction service) uses for binary data.
BYTES_SIGNATURE = "serving_bytes"
BYTES_INPUT = "image_bytes"

# ---- serving (keras_resnet.serving) -------------------------------------------------------------
DEFAULT_PORT = 8501  # TF Serving's REST port
DEFAULT_MAX_BODY_BYTES = 32 * 2**20
VERSION_POLICIES = ("all", "latest")  # the first is the default
DEFAULT_WORKERS = 4  # threads that run model calls; the event loop itself holds no model call
DEFAULT_IDLE_CONNECTION_TIMEOUT = 60.0  # seconds to send a request's headers, first request included
DEFAULT_BODY_TIMEOUT = 60.0  # seconds to send a request's body
DEFAULT_MAX_HEADER_BYTES = 64 * 2**10
DEFAULT_MAX_BATCH_SIZE = 32  # --enable-batching: most examples joined into one signature call
DEFAULT_BATCH_TIMEOUT_MICROS = 0  # --enable-batching: how long a batch waits to fill (TF Serving's default)

# ---- diagnostics (keras_resnet.diagnostics) -----------------------------------------------------
DIAGNOSIS_DATASETS = ("random", "digits")  # the first is the default
BN_STATISTICS = ("auto", "batch", "moving")  # the first is the default

# ---- prediction (keras_resnet.predict) ----------------------------------------------------------
DEFAULT_TOP_K = 5  # classes shown per image
DEFAULT_BATCH_SIZE = 32  # images per model call
