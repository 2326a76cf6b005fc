"""keras-resnet: residual networks for Keras 3.

Blocks (:mod:`keras_resnet.blocks`), configurable ResNets and their presets
(:mod:`keras_resnet.models`), data, training, diagnostics, experiments, search and export.

The public names are imported lazily, so that ``import keras_resnet`` (and the
``keras-resnet`` command's ``--help``) does not pay for importing TensorFlow.

Example:
>>> import keras_resnet
>>> model = keras_resnet.ResNet.from_preset("resnet20")
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
    "load_dataset": "keras_resnet.data",
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
