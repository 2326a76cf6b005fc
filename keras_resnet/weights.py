"""Loading weights into a ``ResNet``: its own ``.weights.h5`` files and keras.applications'.

``resnet50``, ``resnet101`` and ``resnet152`` are layer for layer the same networks as
``keras.applications.ResNet50/101/152``; their weights (``"imagenet"``, or a file saved with
``ka_model.save_weights(path)``) are mapped onto our layer names here.
"""

from __future__ import annotations

import os
import re
import warnings

import keras

from keras_resnet.blocks import ResidualBlock
from keras_resnet.presets import KERAS_APPLICATIONS_V1

KERAS_APPLICATIONS = {50: "ResNet50", 101: "ResNet101", 152: "ResNet152"}
IMAGENET_STAGE_FILTERS = [64, 128, 256, 512]



def _keras_applications_twin(config) -> str | None:
    """The keras.applications model name whose architecture equals ``config``, or None."""
    depth = config["depth"] if config["stage_blocks"] is None else None
    same = all(config[k] == v for k, v in KERAS_APPLICATIONS_V1.items() if k != "classes")
    plain_widths = list(config["stage_filters"]) == IMAGENET_STAGE_FILTERS
    if (same and depth in KERAS_APPLICATIONS and plain_widths and config["width_multiplier"] == 1.0
            and config["stem_filters"] in (None, 64) and config["input_shape"][2] == 3):
        return KERAS_APPLICATIONS[depth]
    return None


def check_weights(weights, config):
    """Validates ``weights`` before anything is built; returns what to load, or None."""
    if weights is None:
        return None
    twin = _keras_applications_twin(config)
    if weights == "imagenet":
        if twin is None:
            raise ValueError(
                "weights='imagenet' exists only for the keras.applications-compatible presets "
                "'resnet50', 'resnet101' and 'resnet152' (v1, bottleneck, use_bias=True, "
                "stride_in_1x1=True, bn_epsilon=1.001e-5, default widths, 3 channels); received "
                f"depth={config['depth']}, style={config['style']!r}, version={config['version']!r}"
            )
        if config["include_top"] and config["classes"] != 1000:
            raise ValueError(f"weights='imagenet' with include_top=True needs classes=1000; received classes={config['classes']}")
        return ("keras_applications", twin, "imagenet")
    if not isinstance(weights, str):
        raise ValueError(f"weights must be None, 'imagenet' or the path of a .weights.h5 file; received weights={weights!r}")
    if not os.path.isfile(weights):
        raise ValueError(f"weights file {weights!r} does not exist")
    if not weights.endswith(".weights.h5"):
        raise ValueError(f"weights must be a '.weights.h5' file (saved with model.save_weights); received {weights!r}")
    if _is_keras_applications_file(weights):
        if twin is None:
            raise ValueError(
                f"{weights!r} holds keras.applications ResNet weights, which fit only the presets "
                "'resnet50', 'resnet101' and 'resnet152' (use them, or keep their architecture arguments)"
            )
        return ("keras_applications", twin, weights)
    return ("own", None, weights)


def _is_keras_applications_file(path) -> bool:
    import h5py

    with h5py.File(path, "r") as f:
        names = list(f.get("layers", {}).keys())
    # Our models store blocks (basic_block, bottleneck_block, ...); keras.applications stores
    # a flat graph of activations, adds and convolutions.
    return not any(n.endswith("_block") or "_block_" in n for n in names) and any(
        n.startswith("add") for n in names
    )


def _keras_applications_name(our_layer: str, sub: str | None) -> str:
    """Maps our layer names onto keras.applications' ResNet v1 names."""
    if our_layer in ("stem_conv", "stem_bn"):
        return {"stem_conv": "conv1_conv", "stem_bn": "conv1_bn"}[our_layer]
    match = re.fullmatch(r"stage(\d+)_block(\d+)", our_layer)
    if match and sub:
        prefix = f"conv{int(match.group(1)) + 1}_block{match.group(2)}"
        if sub.startswith("shortcut_"):
            return f"{prefix}_0_{sub.split('_', 1)[1]}"
        kind, number = sub[:-1], sub[-1]
        return f"{prefix}_{number}_{kind}"
    return our_layer


def load_weights(model, source, config) -> None:
    kind, twin, path = source
    if kind == "own":
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                model.load_weights(path)
        except ValueError as e:
            raise ValueError(f"weights file {path!r} does not match {model.name}: {_first_mismatch(e)}") from None
        return
    builder = getattr(keras.applications, twin)
    reference = builder(
        weights=None if path != "imagenet" else "imagenet",
        include_top=config["include_top"],
        input_shape=config["input_shape"],
        classes=config["classes"] if config["include_top"] else 1000,
        pooling=config["pooling"],
    )
    if path != "imagenet":
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                reference.load_weights(path)
        except ValueError as e:
            raise ValueError(
                f"weights file {path!r} does not match keras.applications.{twin} "
                f"(the architecture of {model.name}): {_first_mismatch(e)}"
            ) from None
    source_layers = {layer.name: layer for layer in reference.layers}
    targets = [(layer.name, None, layer) for layer in model.layers if layer.weights and not isinstance(layer, ResidualBlock)]
    for blk in model.residual_blocks:
        # A block keeps its sub-layers in public lists (the drop-path Dropout has no weights).
        subs = [*blk.preact_layers, *blk.branch_layers, *blk.shortcut_layers]
        targets += [(blk.name, sub.name, sub) for sub in subs if sub.weights]
    for name, sub, layer in targets:
        theirs = _keras_applications_name(name, sub)
        ours = f"{name}/{sub}" if sub else name
        if theirs not in source_layers:
            raise ValueError(f"keras.applications.{twin} has no layer {theirs!r} for our layer {ours!r}")
        values = source_layers[theirs].get_weights()
        expected = [tuple(w.shape) for w in layer.weights]
        if [tuple(v.shape) for v in values] != expected:
            raise ValueError(
                f"layer {ours!r} expects weights of shapes {expected}, but {theirs!r} in "
                f"{path!r} has {[tuple(v.shape) for v in values]}"
            )
        layer.set_weights(values)


def _first_mismatch(error: Exception) -> str:
    """Turns Keras's long load error into one line that names the layer and the shapes."""
    text = str(error)
    layer = re.search(r"path=([\w/.-]+)/\w+,", text) or re.search(r"name=([\w/.-]+)", text)
    shapes = re.search(r"variable\.shape=(\([^)]*\)), Received: value\.shape=(\([^)]*\))", text)
    if layer and shapes:
        return f"layer {layer.group(1)!r} expects shape {shapes.group(1)}, the file has {shapes.group(2)}"
    return text.splitlines()[0] if text else type(error).__name__
