"""keras-resnet: residual networks for Keras 3.

Blocks (:mod:`keras_resnet.blocks`), configurable ResNets and their presets
(:mod:`keras_resnet.models`), data, training, diagnostics, experiments, search and export.

``import keras_resnet`` registers the package's Keras classes, so ``.keras`` files load
without ``custom_objects``; the other public names are imported on first use.

Example:
>>> import keras_resnet
>>> model = keras_resnet.ResNet.from_preset("resnet20")
"""

from __future__ import annotations

import importlib
import os
import sys

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
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'keras_resnet' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


# Registration needs Keras, which takes seconds to import. The `keras-resnet` command skips it
# at start-up so that `--help` answers at once; its subcommands import what they use.
if os.path.basename(sys.argv[0] if sys.argv else "") != "keras-resnet":
    from keras_resnet import blocks as _blocks  # noqa: F401
    from keras_resnet import models as _models  # noqa: F401


def __dir__():
    return sorted(set(globals()) | set(__all__))
