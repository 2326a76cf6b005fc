"""Fine-tuning from pretrained weights: a pretrained backbone, a new head, and two phases.

:func:`keras_resnet.training.train` fine-tunes when ``TrainConfig.weights`` is set:

* The backbone comes from keras.applications' ImageNet weights (``"imagenet"``, for the presets
  ``resnet50``, ``resnet101`` and ``resnet152``), from a ``.weights.h5`` file of those
  networks (``keras.applications.ResNet50(...).save_weights(path)``) or of this package's
  ``ResNet``, or from a ``.keras`` model of this package (a ``model.keras`` that ``train``
  wrote: ``pixels -> Normalization -> ResNet``). Its classifier is dropped; a new one (global
  average pooling, then ``Dense(classes, softmax)`` named ``predictions``) gets the dataset's
  classes.
* The preprocessing the weights were trained with travels with them, inside the model, so the
  model still takes raw pixels (0..255) and exports unchanged. keras.applications' v1 ResNets
  expect Caffe-style input (RGB to BGR, minus the ImageNet mean, no scaling): here a
  ``keras.layers.Normalization`` subtracts the mean in RGB order (variance 1) and the stem
  convolution's kernel has its input channels reversed, which equals feeding BGR
  (:func:`caffe_preprocessing`, :func:`flip_stem_channels`). A ``.keras`` model brings its own
  ``Normalization`` layer, which is reused. A ``.weights.h5`` of this package's ``ResNet`` holds
  no normalisation: the dataset's mean and standard deviation are used, as for a fresh model.
* Phase 1 (``freeze_epochs`` epochs) trains the head with the backbone frozen. A frozen
  BatchNormalization runs in inference mode in Keras 3 (the blocks'
  :class:`keras_resnet.layers.FusedBatchNormalization` too), so its moving statistics do not
  move. Phase 2 (the remaining epochs) unfreezes every stage (``unfreeze="all"``) or the last
  ``unfreeze`` stages, at ``finetune_lr_factor`` times the rate, with a fresh optimizer and
  schedule of its own. One ``train`` call runs both and resumes anywhere, the phase boundary
  included.

Validation (:func:`check_config`, :func:`check_train_arguments`) imports neither TensorFlow nor
Keras; the rest imports them when called.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import zipfile
from pathlib import Path
from typing import Any

from keras_resnet.validation import check_bool, check_float, check_int, check_path

IMAGENET = "imagenet"
KERAS_APPLICATIONS_PRESETS = {"resnet50": "ResNet50", "resnet101": "ResNet101", "resnet152": "ResNet152"}
# keras.applications.resnet.preprocess_input ("caffe" mode) subtracts these from BGR pixels;
# here in RGB order, as the model's input is RGB.
CAFFE_MEAN_RGB = (123.68, 116.779, 103.939)
UNFREEZE_ALL = "all"
DEFAULT_UNFREEZE = UNFREEZE_ALL
DEFAULT_FINETUNE_LR_FACTOR = 0.1
WEIGHT_SUFFIXES = (".weights.h5", ".keras")
HEAD = "head"  # what phase 1 trains
IMAGENET_URL = "https://storage.googleapis.com/tensorflow/keras-applications/resnet/"


# ---- validation (no TensorFlow) ---------------------------------------------------------------

def check_weights_argument(weights) -> str | None:
    """Returns ``weights`` if it is None, ``"imagenet"`` or an existing ``.weights.h5`` or ``.keras``
    file.

    Example:
    >>> check_weights_argument("imagenet")
    'imagenet'
    >>> check_weights_argument("missing.keras")
    Traceback (most recent call last):
    ...
    ValueError: weights file 'missing.keras' does not exist
    """
    if weights is None or weights == IMAGENET:
        return weights
    check_path("weights", weights, optional=True,
               allowed="None, 'imagenet', or the path of a .weights.h5 or .keras file")
    weights = os.fspath(weights)
    if not weights.endswith(WEIGHT_SUFFIXES):
        raise ValueError(
            "weights must be None, 'imagenet', or the path of a .weights.h5 file (model.save_weights) or "
            f"a .keras model of this package (e.g. a run's model.keras); received weights={weights!r}"
        )
    if not os.path.isfile(weights):
        raise ValueError(f"weights file {weights!r} does not exist")
    return weights


def check_unfreeze(unfreeze) -> str | int:
    """Returns ``"all"`` or the number of last stages (an integer >= 1) that phase 2 trains.

    Example:
    >>> check_unfreeze(2), check_unfreeze("all")
    (2, 'all')
    >>> check_unfreeze("some")
    Traceback (most recent call last):
    ...
    ValueError: unfreeze must be 'all' or an integer >= 1 (the last stages to train); received unfreeze='some'
    """
    if unfreeze == UNFREEZE_ALL and isinstance(unfreeze, str):
        return unfreeze
    try:
        return check_int("unfreeze", unfreeze, 1)
    except ValueError:
        raise ValueError("unfreeze must be 'all' or an integer >= 1 (the last stages to train); "
                         f"received unfreeze={unfreeze!r}") from None


def check_config(config) -> None:
    """Checks a :class:`keras_resnet.training.TrainConfig`'s fine-tuning fields (called by its
    ``validate``): ``weights``, ``freeze_epochs``, ``unfreeze``, ``finetune_lr_factor`` and
    ``freeze_batchnorm``."""
    check_weights_argument(config.weights)
    check_int("freeze_epochs", config.freeze_epochs, 0, optional=True, none_means="half of the epochs")
    check_unfreeze(config.unfreeze)
    check_float("finetune_lr_factor", config.finetune_lr_factor, 0, exclusive_minimum=True)
    check_bool("freeze_batchnorm", config.freeze_batchnorm, optional=True, none_means="False: they train")
    if config.weights is None:
        given = [name for name, value, default in (
            ("freeze_epochs", config.freeze_epochs, None), ("unfreeze", config.unfreeze, DEFAULT_UNFREEZE),
            ("finetune_lr_factor", config.finetune_lr_factor, DEFAULT_FINETUNE_LR_FACTOR),
            ("freeze_batchnorm", config.freeze_batchnorm, None)) if value != default]
        if given:
            raise ValueError(f"{', '.join(given)} only matter when fine-tuning: pass weights ('imagenet' or a "
                             ".weights.h5 or .keras file) too, or leave them at their defaults")
    if config.epochs is not None and config.freeze_epochs is not None and config.freeze_epochs > config.epochs:
        raise ValueError(f"freeze_epochs must be at most epochs ({config.epochs}); received "
                         f"freeze_epochs={config.freeze_epochs}")


def check_train_arguments(model, overrides: dict, config) -> None:
    """What fine-tuning asks of :func:`keras_resnet.training.train`'s other arguments.

    Example:
    >>> from keras_resnet.training import TrainConfig
    >>> check_train_arguments("resnet20", {}, TrainConfig(weights="imagenet"))
    Traceback (most recent call last):
    ...
    ValueError: weights='imagenet' exists for the presets resnet50, resnet101, resnet152 (keras.applications' ResNets); received model='resnet20'
    """
    if config.weights is None:
        return
    if not isinstance(model, str):
        raise ValueError("fine-tuning (weights=...) builds its model: pass a preset name, not a built model")
    if overrides:
        raise ValueError(f"model overrides {sorted(overrides)} do not apply when fine-tuning: the architecture "
                         "comes from the weights, input shape and classes from the dataset")
    if config.weights == IMAGENET and model not in KERAS_APPLICATIONS_PRESETS:
        raise ValueError(f"weights='imagenet' exists for the presets {', '.join(KERAS_APPLICATIONS_PRESETS)} "
                         f"(keras.applications' ResNets); received model={model!r}")


def resolved_freeze_batchnorm(config) -> bool:
    """Whether phase 2 keeps the backbone's BatchNorm layers frozen: ``config.freeze_batchnorm``,
    by default False (the BatchNorm layers of the unfrozen stages train with them: on the
    few-shot digits evidence, docs/finetuning.md, freezing them was worse in every seed and let
    phase 2 diverge).

    Example:
    >>> from keras_resnet.training import TrainConfig
    >>> resolved_freeze_batchnorm(TrainConfig(weights="imagenet")), resolved_freeze_batchnorm(TrainConfig())
    (False, False)
    >>> resolved_freeze_batchnorm(TrainConfig(weights="imagenet", freeze_batchnorm=True))
    True
    """
    return bool(config.freeze_batchnorm)


def weights_stats(weights: str | None) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
    """The per-channel ``(mean, std)`` that the weights normalise their input with, when they bring
    their own, read without building a model; None when the dataset's statistics are to be used.

    * ``"imagenet"`` and keras.applications ``.weights.h5`` files: the Caffe means (RGB order),
      std 1 (no scaling), as :func:`caffe_preprocessing`.
    * A ``.keras`` model of this package: its ``Normalization`` layer's mean and the square root
      of its variance, from the file's ``config.json`` (None if the layer was adapted rather
      than given its statistics).
    * A ``.weights.h5`` of this package's ``ResNet``: None (it holds no normalisation).

    Example:
    >>> weights_stats("imagenet")
    ((123.68, 116.779, 103.939), (1.0, 1.0, 1.0))
    >>> weights_stats(None) is None
    True
    """
    if weights is None:
        return None
    if weights == IMAGENET:
        return CAFFE_MEAN_RGB, (1.0,) * 3
    if os.fspath(weights).endswith(".keras"):
        try:
            with zipfile.ZipFile(weights) as archive:
                config = json.loads(archive.read("config.json"))
        except (OSError, KeyError, ValueError, zipfile.BadZipFile):
            return None  # not readable here: building the model says what is wrong with it
        found = list(_normalization_configs(config))
        return normalization_stats(found[0]) if len(found) == 1 else None
    from keras_resnet.weights import _is_keras_applications_file

    if _is_keras_applications_file(weights):
        return CAFFE_MEAN_RGB, (1.0,) * 3
    return None


def _normalization_configs(node):
    """The configs of the Normalization layers in a Keras model's serialized config."""
    if isinstance(node, dict):
        if node.get("class_name") == "Normalization" and isinstance(node.get("config"), dict):
            yield node["config"]
            return
        for value in node.values():
            yield from _normalization_configs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _normalization_configs(value)


def normalization_stats(config: dict) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
    """``(mean, std)`` per channel from a ``keras.layers.Normalization`` config that holds its mean
    and variance (this package's layers do); None otherwise.

    Example:
    >>> normalization_stats({"mean": [100.0], "variance": [2500.0]})
    ((100.0,), (50.0,))
    """
    mean, variance = config.get("mean"), config.get("variance")
    if not isinstance(mean, list) or not isinstance(variance, list) or len(mean) != len(variance) or not mean:
        return None
    try:
        mean, variance = [float(m) for m in mean], [float(v) for v in variance]
    except (TypeError, ValueError):
        return None
    if min(variance) <= 0:
        return None
    return tuple(mean), tuple(math.sqrt(v) for v in variance)


def fingerprint(weights: str | None) -> str | None:
    """What identifies the weights in a run's signature: ``"imagenet"``, or the file's SHA-256
    (a retrained ``model.keras`` at the same path is another fine-tune)."""
    if weights is None or weights == IMAGENET:
        return weights
    digest = hashlib.sha256()
    with open(weights, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return f"sha256:{digest.hexdigest()}"


# ---- phases -----------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Phase:
    """A stretch of a run with one trainable set, one optimizer and one learning-rate schedule.

    Epochs ``start + 1`` to ``end`` (``model.fit``'s ``initial_epoch`` and ``epochs``).
    ``trainable`` is None (a plain run: everything trains), ``"head"``, ``"all"`` or the number
    of last stages; ``lr_factor`` scales the recipe's learning rate; ``freeze_batchnorm`` keeps
    every BatchNormalization of the backbone frozen (inference mode) while its stages train.
    """

    number: int
    start: int
    end: int
    trainable: str | int | None
    lr_factor: float = 1.0
    freeze_batchnorm: bool = False

    @property
    def epochs(self) -> int:
        return self.end - self.start

    def config(self, config, batch_size: int):
        """``config`` with this phase's learning rates (the warm-up rate scaled alike)."""
        if self.lr_factor == 1.0:
            return config
        warmup_lr = None if config.warmup_lr is None else config.warmup_lr * self.lr_factor
        return dataclasses.replace(config, lr=config.resolved_lr(batch_size) * self.lr_factor, warmup_lr=warmup_lr)


def resolved_freeze_epochs(config, epochs: int) -> int:
    """Phase 1's epochs: ``config.freeze_epochs``, or half of ``epochs`` (at least 1)."""
    if config.freeze_epochs is None:
        return max(1, epochs // 2)
    if config.freeze_epochs > epochs:
        raise ValueError(f"freeze_epochs must be at most epochs ({epochs}); received freeze_epochs={config.freeze_epochs}")
    return config.freeze_epochs


def plan_phases(config, epochs: int) -> list[Phase]:
    """The run's phases: one for a plain run; a frozen-backbone phase and a fine-tuning phase
    (either may be empty, and is then left out) when ``config.weights`` is set.

    Example:
    >>> from keras_resnet.training import TrainConfig
    >>> [(p.trainable, p.start, p.end, p.lr_factor) for p in plan_phases(TrainConfig(), 30)]
    [(None, 0, 30, 1.0)]
    >>> config = TrainConfig(weights="imagenet", freeze_epochs=2, unfreeze=1)
    >>> [(p.trainable, p.start, p.end, p.lr_factor, p.freeze_batchnorm) for p in plan_phases(config, 5)]
    [('head', 0, 2, 1.0, False), (1, 2, 5, 0.1, False)]
    """
    if config.weights is None:
        return [Phase(1, 0, epochs, None)]
    frozen = resolved_freeze_epochs(config, epochs)
    # Phase 1's backbone is frozen whole, BatchNorms included.
    phases = [Phase(1, 0, frozen, HEAD), Phase(2, frozen, epochs, config.unfreeze, config.finetune_lr_factor,
                                               resolved_freeze_batchnorm(config))]
    return [p for p in phases if p.epochs > 0]


def describe(phase: Phase) -> str:
    """What ``phase`` trains, in words.

    Example:
    >>> describe(Phase(2, 3, 6, 2, 0.1))
    'trains the last 2 stages and the head at 0.1 x lr'
    >>> describe(Phase(2, 3, 6, "all", 0.1, freeze_batchnorm=True))
    'trains all layers at 0.1 x lr, BatchNorm frozen (inference mode)'
    """
    rate = f" at {phase.lr_factor:g} x lr" if phase.lr_factor != 1.0 else ""
    batchnorm = ", BatchNorm frozen (inference mode)" if phase.freeze_batchnorm and phase.trainable != HEAD else ""
    return f"trains {_describe(phase.trainable)}{rate}{batchnorm}"


def _describe(trainable) -> str:
    if trainable in (None, UNFREEZE_ALL):
        return "all layers"
    if trainable == HEAD:
        return "the new head (backbone frozen)"
    return f"the last {trainable} stage{'s' if trainable > 1 else ''} and the head"


# ---- the model --------------------------------------------------------------------------------

def backbone(model):
    """The :class:`keras_resnet.models.ResNet` inside ``model`` (or ``model`` itself)."""
    from keras_resnet.models import ResNet

    if isinstance(model, ResNet):
        return model
    found = [layer for layer in model.layers if isinstance(layer, ResNet)]
    if len(found) != 1:
        raise ValueError(f"model {model.name!r} holds {len(found)} keras_resnet ResNets; expected one")
    return found[0]


def stage_groups(resnet) -> list[list]:
    """The ResNet's layers with weights grouped as ``[stem, stage1, stage2, ...]``; a v2 net's
    final BatchNorm belongs to the last stage."""
    groups: dict[int, list] = {0: []}
    for layer in resnet.layers:
        if not layer.weights:
            continue
        name = layer.name
        if name.startswith("stage") and "_block" in name:
            stage = int(name[len("stage"):name.index("_block")])
        elif name.startswith("post_"):
            stage = max(groups)
        else:
            stage = 0  # the stem
        groups.setdefault(stage, []).append(layer)
    return [groups[k] for k in sorted(groups)]


def batchnorm_layers(resnet) -> list:
    """Every BatchNormalization in the ResNet (the blocks' :class:`keras_resnet.layers.FusedBatchNormalization`
    included), in the order of its layers."""
    return _batchnorms(resnet.layers)


def _batchnorms(layers) -> list:
    import keras

    found = []

    def walk(layer):
        if isinstance(layer, keras.layers.BatchNormalization):
            found.append(layer)
            return
        children = list(layer.layers) if isinstance(layer, keras.Model) else []
        for name in ("preact_layers", "branch_layers", "shortcut_layers"):  # this package's blocks
            children += list(getattr(layer, name, None) or [])
        for child in children:
            walk(child)

    for layer in layers:
        walk(layer)
    return found


def apply_phase(model, phase: Phase) -> None:
    """Sets the trainable flags of ``phase``: the head only, all layers, or the last stages; with
    ``phase.freeze_batchnorm`` every BatchNormalization of the backbone stays frozen.

    Keras 3 runs a BatchNormalization whose ``trainable`` is False in inference mode (its moving
    statistics normalise, and do not move) and does not train its gamma and beta, so frozen
    stages, and frozen BatchNorms in unfrozen stages, keep them. Recompile after this (a new
    trainable set).
    """
    if phase.trainable is None:
        return
    resnet = backbone(model)
    groups = stage_groups(resnet)
    stages = len(groups) - 1
    if isinstance(phase.trainable, int) and phase.trainable > stages:
        raise ValueError(f"unfreeze must be 'all' or at most the backbone's {stages} stages; "
                         f"received unfreeze={phase.trainable}")
    trained = {HEAD: 0, UNFREEZE_ALL: len(groups)}.get(phase.trainable, phase.trainable)
    model.trainable = resnet.trainable = True
    # Each layer is set, not only the ResNet: a Keras model's flag does not reach layers that
    # were frozen one by one.
    for i, group in enumerate(groups):
        for layer in group:
            layer.trainable = i >= len(groups) - trained
        # Each BatchNorm is set too: setting a block's flag to the value it already has does not
        # reach its inner layers, so a BatchNorm that an earlier phase froze would stay frozen.
        for layer in _batchnorms(group):
            layer.trainable = i >= len(groups) - trained and not phase.freeze_batchnorm
    resnet.trainable = trained > 0


def caffe_preprocessing(name: str = "normalize"):
    """keras.applications' Caffe-style preprocessing as a layer on RGB pixels: minus the ImageNet
    mean (in RGB order), no scaling. With :func:`flip_stem_channels` on the stem it equals
    ``keras.applications.resnet.preprocess_input`` (which also turns RGB into BGR).

    Example:
    >>> import numpy as np
    >>> layer = caffe_preprocessing()
    >>> [round(float(v), 3) for v in layer(np.full((1, 1, 1, 3), 200.0, "float32"))[0, 0, 0]]
    [76.32, 83.221, 96.061]
    """
    import keras

    return keras.layers.Normalization(axis=-1, mean=list(CAFFE_MEAN_RGB), variance=[1.0] * 3, name=name)


def flip_stem_channels(resnet) -> None:
    """Reverses the input-channel axis of the stem convolution's kernel: a net trained on BGR
    pixels then takes RGB ones, with the same outputs."""
    stem = resnet.get_layer("stem_conv")
    values = stem.get_weights()
    values[0] = values[0][:, :, ::-1, :]
    stem.set_weights(values)


def imagenet_cache_file(preset: str) -> Path:
    """Where Keras keeps a preset's ImageNet weights without the top (``get_file``'s cache:
    ``$KERAS_HOME/models``, by default ``~/.keras/models``)."""
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return Path(home) / "models" / f"{preset}_weights_tf_dim_ordering_tf_kernels_notop.h5"


def build_model(preset: str, dataset, config) -> tuple[Any, dict]:
    """The fine-tuning model for ``dataset``: preprocessing, pretrained backbone, new head.

    Args:
        preset: the preset name (``"imagenet"`` and keras.applications files need resnet50,
            resnet101 or resnet152; a ``.keras`` file brings its own architecture).
        dataset: a :class:`keras_resnet.data.Dataset` (input shape, classes; its statistics
            normalise the input for a ``.weights.h5`` of this package).
        config: the :class:`keras_resnet.training.TrainConfig` (``weights``, ``weight_decay``).

    Returns:
        ``(model, info)``: a functional ``keras.Model`` ``pixels -> normalize -> ResNet (no top,
        average pooling) -> predictions``, and what ``metrics.json`` records of its source (with
        the ``mean`` and ``std`` that ``normalize`` uses, and ``freeze_batchnorm``).

    Example:
    >>> from keras_resnet.training import TrainConfig
    >>> from keras_resnet.data import load_dataset
    >>> config = TrainConfig(weights="imagenet")
    >>> model, info = build_model("resnet50", load_dataset("digits"), config)
    Traceback (most recent call last):
    ...
    ValueError: keras.applications' ImageNet weights need RGB images (3 channels); dataset 'digits' has 1
    """
    import keras

    from keras_resnet.data import preprocessing
    from keras_resnet.weights import _is_keras_applications_file

    weights, shape = config.weights, tuple(dataset.input_shape)
    if weights.endswith(".keras"):
        resnet, normalize = _from_keras_file(weights, shape, config.weight_decay)
        info = {"source": "keras_model", "preprocessing": "the .keras model's own Normalization layer"}
    else:
        base = {"include_top": False, "pooling": "avg", "input_shape": shape, "weight_decay": config.weight_decay}
        kind = IMAGENET if weights == IMAGENET else "keras_applications" if _is_keras_applications_file(weights) else "own"
        if kind != "own" and shape[2] != 3:
            raise ValueError(f"keras.applications' ImageNet weights need RGB images (3 channels); dataset "
                             f"{dataset.name!r} has {shape[2]}")
        resnet = _load_resnet(preset, base, weights)
        if kind == "own":
            normalize = preprocessing(dataset)
            info = {"source": "keras_resnet_weights", "preprocessing": "the dataset's mean and std"}
        else:
            flip_stem_channels(resnet)
            normalize = caffe_preprocessing()
            info = {"source": "keras_applications", "preprocessing": "caffe (RGB to BGR, minus the ImageNet mean)"}
    mixed = keras.config.dtype_policy().compute_dtype != keras.config.dtype_policy().variable_dtype
    regularizer = keras.regularizers.L2(config.weight_decay / 2) if config.weight_decay else None
    inputs = keras.Input(shape=shape, name="pixels")
    features = resnet(normalize(inputs))
    outputs = keras.layers.Dense(int(dataset.num_classes), activation="softmax", kernel_regularizer=regularizer,
                                 name="predictions", dtype="float32" if mixed else None)(features)
    model = keras.Model(inputs, outputs, name=resnet.name)
    info.update({"weights": weights, "backbone": resnet.name, "stages": len(stage_groups(resnet)) - 1,
                 "freeze_batchnorm": resolved_freeze_batchnorm(config)})
    stats = normalization_stats(normalize.get_config())  # what the model normalises with
    if stats is not None:
        info["mean"], info["std"] = list(stats[0]), list(stats[1])
    return model, info


def _load_resnet(preset, base: dict, weights):
    from keras_resnet.models import ResNet

    if weights == IMAGENET:
        _fetch_imagenet(preset)  # before building anything, so that offline fails at once
    return ResNet.from_preset(preset, **base, weights=weights)


def _fetch_imagenet(preset: str) -> None:
    """Puts the preset's ImageNet weights (no top) into Keras's cache, where keras.applications
    looks for them, or says where to put them by hand."""
    import keras

    cache = imagenet_cache_file(preset)
    if cache.exists():
        return
    try:
        keras.utils.get_file(cache.name, IMAGENET_URL + cache.name, cache_subdir="models")
    except Exception as e:  # keras.utils.get_file raises a bare Exception when the download fails
        raise ValueError(
            f"could not download keras.applications' ImageNet weights for {preset} "
            f"({str(e).splitlines()[0] if str(e) else type(e).__name__}). Without a network, fetch "
            f"{IMAGENET_URL}{cache.name} elsewhere and place it at {cache} (Keras's cache, ~/.keras/models "
            "unless KERAS_HOME is set), or pass the path of a .weights.h5 file"
        ) from None


def _from_keras_file(path: str, shape: tuple, weight_decay: float):
    """A ResNet without top with the weights of the one in ``path``, and a copy of its Normalization."""
    import keras

    import keras_resnet.models  # noqa: F401 - registers the classes the file names
    from keras_resnet.models import ResNet

    try:
        source = keras.saving.load_model(path, compile=False)
    except Exception as e:
        raise ValueError(f"cannot load {path!r} as a Keras model: {str(e).splitlines()[0] if str(e) else e!r}") from None
    found = [layer for layer in getattr(source, "layers", ()) if isinstance(layer, ResNet)]
    norms = [layer for layer in getattr(source, "layers", ()) if isinstance(layer, keras.layers.Normalization)]
    if isinstance(source, ResNet) or len(found) != 1 or len(norms) != 1:
        raise ValueError(
            f"{path!r} is not a model of this package's layout (pixels -> Normalization -> ResNet, as train "
            f"writes model.keras); it holds {len(found)} ResNet and {len(norms)} Normalization layers"
        )
    old = found[0]
    channels = old.input_shape[-1]
    if channels != shape[2]:
        raise ValueError(f"{path!r} takes images with {channels} channels; the dataset has {shape[2]}")
    config = {k: v for k, v in old.get_config().items() if k not in ("trainable", "dtype")}
    config.update(include_top=False, pooling="avg", input_shape=shape, weight_decay=weight_decay, weights=None)
    resnet = ResNet(**config)
    by_name = {layer.name: layer for layer in old.layers}
    for layer in resnet.layers:
        if layer.weights:
            layer.set_weights(by_name[layer.name].get_weights())
    norm = norms[0]
    clone = keras.layers.Normalization.from_config({**norm.get_config(), "name": "normalize", "trainable": True})
    clone.build((None, *shape))
    clone.set_weights(norm.get_weights())
    return resnet, clone


def describe_phases(model, phases: list[Phase], config, batch_size: int, steps_per_epoch: int) -> list[dict]:
    """One record per phase for ``metrics.json``: epochs, what trains, learning rate, trainable
    parameters, and the backbone's BatchNorm layers as the phase leaves them (``batchnorm_frozen``,
    and ``batchnorm``: ``"frozen (inference mode)"`` or how many train with batch statistics).
    Leaves ``model``'s flags as the last phase set them."""
    rows = []
    norms = batchnorm_layers(backbone(model))
    for phase in phases:
        apply_phase(model, phase)
        phase_config = phase.config(config, batch_size)
        training = sum(layer.trainable for layer in norms)
        rows.append({
            "phase": phase.number, "first_epoch": phase.start + 1, "last_epoch": phase.end,
            "trains": _describe(phase.trainable), "lr": phase_config.resolved_lr(batch_size),
            "warmup_steps": phase_config.resolved_warmup(phase.epochs * steps_per_epoch),
            "trainable_params": int(sum(math.prod(w.shape) for w in model.trainable_weights)),
            "batchnorm_frozen": not training,
            "batchnorm": ("frozen (inference mode)" if not training else
                          f"{training} of {len(norms)} layers train (batch statistics)"),
        })
    return rows
