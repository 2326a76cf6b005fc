"""keras-resnet: residual networks for Keras 3.

Blocks (:mod:`keras_resnet.blocks`), configurable ResNets and their presets
(:mod:`keras_resnet.models`), data, training, diagnostics, experiments, search and export.

``import keras_resnet`` is light and behaves the same in every process: it imports neither
Keras nor TensorFlow (importing them takes seconds, and the ``keras-resnet`` command must answer
``--help`` at once). The public names below are imported on first use, and each module that
defines Keras classes registers them with Keras when it is imported. So, before loading a
``.keras`` file without ``custom_objects``, import the models (which also imports the blocks and
the layers) or touch one of the names::

    import keras, keras_resnet.models
    model = keras.saving.load_model("model.keras")

Example:
>>> import keras_resnet
>>> model = keras_resnet.ResNet.from_preset("resnet20", input_shape=(8, 8, 1))
>>> model.name, model.count_params()
('resnet20', 270810)
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "ResNet": "keras_resnet.models",
    "PRESETS": "keras_resnet.models",
    "ResidualBlock": "keras_resnet.blocks",
    "BasicBlock": "keras_resnet.blocks",
    "BottleneckBlock": "keras_resnet.blocks",
    "FusedBatchNormalization": "keras_resnet.layers",
    "load_dataset": "keras_resnet.data",
    "identity_closeness": "keras_resnet.diagnostics",
    "gradient_norms": "keras_resnet.diagnostics",
    "response_std": "keras_resnet.diagnostics",
    "residual_ratios": "keras_resnet.identity_bias",
    "predict": "keras_resnet.predict",
    "load_classifier": "keras_resnet.predict",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'keras_resnet' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
