"""Configurable ResNets built from the residual blocks, and the table of named variants.

``ResNet`` is a ``keras.Model`` whose functional graph is built in ``__init__`` from
:mod:`keras_resnet.blocks`; its constructor arguments are its config, so a ``.keras`` file
loads without ``custom_objects``.
"""

from __future__ import annotations

import difflib

import keras

from keras_resnet.blocks import BLOCKS, ResidualBlock, conv_macs
from keras_resnet.layers import FusedBatchNormalization
from keras_resnet.presets import (  # noqa: F401 - the depth rules' tables, importable from here too
    CONVS_PER_BLOCK,
    IMAGENET_DEPTHS,
    PRESETS,
    STYLES,
    normalize_shortcut,
    normalize_version,
    stage_layout,
)
from keras_resnet.validation import (
    check_bool,
    check_choice,
    check_float,
    check_fraction,
    check_int,
    check_ints,
    check_keras_object,
    check_type,
    is_int,
)
from keras_resnet.weights import check_weights, load_weights

POOLINGS = (None, "avg", "max")
STAGE_FILTERS = {"cifar": (16, 32, 64), "imagenet": (64, 128, 256, 512)}
STEM_FILTERS = {"cifar": 16, "imagenet": 64}
DEFAULT_SIZE = {"cifar": 32, "imagenet": 224}
_ARCHITECTURE_KEYS = {"depth", "style", "shortcut", "version", "block", "stage_blocks"}


@keras.saving.register_keras_serializable(package="keras_resnet")
class ResNet(keras.Model):
    """A residual network (or its plain twin) built from :mod:`keras_resnet.blocks`.

    Implements He et al., "Deep Residual Learning for Image Recognition" (arXiv:1512.03385)
    and, with ``version="v2"``, "Identity Mappings in Deep Residual Networks"
    (arXiv:1603.05027). The signature follows ``keras.applications``.

    Args:
        depth: int, default 20. CIFAR style: 6n+2 with basic blocks (20, 32, 44, 56, 110,
            1202) or 9n+2 with bottleneck blocks (164, 1001). ImageNet style: 18, 34 (basic),
            50, 101, 152, 200 (bottleneck). Ignored when ``stage_blocks`` is given.
        style: ``"cifar"`` (3x3 stem with 16 filters, stages of 16/32/64 filters, no max-pool)
            or ``"imagenet"`` (7x7 stride-2 stem with 64 filters, 3x3 stride-2 max-pool, stages
            of 64/128/256/512 filters).
        version: ``"v1"`` (post-activation) or ``"v2"`` (full pre-activation).
        shortcut: ``"identity"`` (``"A"``), ``"projection"`` (``"B"``), ``"full_projection"``
            (``"C"``) or ``"none"`` (a plain network).
        block: ``"basic"``, ``"bottleneck"`` or None (the style's default for ``depth``).
        zero_init_residual: bool, default False. Start every residual block as the identity.
        include_top: bool, default True. Add global average pooling and the classifier.
        input_shape: ``(height, width, channels)``; default (32, 32, 3) for CIFAR style and
            (224, 224, 3) for ImageNet style, or (None, None, 3) without a top.
        classes: int, default 10. Number of classes of the top.
        pooling: None, ``"avg"`` or ``"max"``: pooling of the features when ``include_top``
            is False.
        classifier_activation: activation of the top, default ``"softmax"``; None for logits.
        weights: None, ``"imagenet"`` (only for the keras.applications-compatible
            ``resnet50``/``resnet101``/``resnet152`` presets), or the path of a
            ``.weights.h5`` file saved from this architecture or from the matching
            ``keras.applications`` model.
        name: the model's name.
        stage_blocks: optional sequence, blocks per stage (overrides ``depth``).
        stage_filters: optional sequence, branch widths per stage.
        stem_filters: optional int, filters of the stem convolution.
        width_multiplier: float, default 1. Scales every width.
        drop_path_rate: float, default 0. Stochastic depth, rising linearly to this rate in
            the last block.
        stride_in_1x1: bool, default False. Bottleneck blocks: stride on the first 1x1 conv
            (keras.applications' v1) rather than on the 3x3 conv (v1.5).
        use_bias: bool, default False. Bias on every convolution.
        bn_momentum: float, default 0.9. bn_epsilon: float, default 1e-5.
        kernel_initializer: default ``"he_normal"``.
        weight_decay: float, default 0. L2 penalty on convolution and dense kernels, added to
            the loss as ``weight_decay / 2 * ||w||^2`` so that its gradient is
            ``weight_decay * w``: the coupled weight decay of the paper's SGD.

    Example:
    >>> from keras_resnet import ResNet
    >>> model = ResNet(depth=20, input_shape=(32, 32, 3), classes=10)
    >>> model.count_params() > 270_000
    True
    """

    presets = PRESETS

    def __init__(
        self,
        depth: int = 20,
        style: str = "cifar",
        version: str = "v1",
        shortcut: str = "projection",
        block: str | None = None,
        zero_init_residual: bool = False,
        include_top: bool = True,
        input_shape=None,
        classes: int = 10,
        pooling: str | None = None,
        classifier_activation="softmax",
        weights: str | None = None,
        name: str | None = None,
        stage_blocks=None,
        stage_filters=None,
        stem_filters: int | None = None,
        width_multiplier: float = 1.0,
        drop_path_rate: float = 0.0,
        stride_in_1x1: bool = False,
        use_bias: bool = False,
        bn_momentum: float = 0.9,
        bn_epsilon: float = 1e-5,
        kernel_initializer="he_normal",
        weight_decay: float = 0.0,
        **kwargs,
    ):
        # ---- validate everything before a single layer is built ----
        block, blocks, actual_depth = stage_layout(depth, style, block, stage_blocks)
        version = normalize_version(version)
        shortcut = normalize_shortcut(shortcut)
        n_stages = len(blocks)
        if stage_filters is None:
            base = STAGE_FILTERS[style]
            if n_stages > len(base):
                raise ValueError(f"pass stage_filters for {n_stages} stages; the {style} style defines {len(base)}")
            stage_filters = base[:n_stages]
        stage_filters = check_ints("stage_filters", stage_filters, 1, length=n_stages, note="(one per stage)")
        stem_filters = check_int("stem_filters", stem_filters, 1, optional=True, none_means="the style's default")
        width_multiplier = check_float("width_multiplier", width_multiplier, 0, exclusive_minimum=True)
        include_top = check_bool("include_top", include_top)
        if include_top:
            classes = check_int("classes", classes, 1, note="when include_top=True")
        check_choice("pooling", pooling, POOLINGS, "None, 'avg' or 'max'")
        check_keras_object("classifier_activation", classifier_activation, "activation", optional=True)
        check_type("name", name, str, "a string", optional=True)
        zero_init_residual = check_bool("zero_init_residual", zero_init_residual)
        drop_path_rate = check_fraction("drop_path_rate", drop_path_rate)
        stride_in_1x1 = check_bool("stride_in_1x1", stride_in_1x1)
        use_bias = check_bool("use_bias", use_bias)
        bn_momentum = check_float("bn_momentum", bn_momentum, 0, 1, exclusive_maximum=True)
        bn_epsilon = check_float("bn_epsilon", bn_epsilon, 0, exclusive_minimum=True)
        check_keras_object("kernel_initializer", kernel_initializer, "initializer")
        weight_decay = check_float("weight_decay", weight_decay, 0)
        if shortcut == "none" and (zero_init_residual or drop_path_rate):
            raise ValueError(
                "zero_init_residual and drop_path_rate need shortcuts; a plain network "
                f"(shortcut='none') received zero_init_residual={zero_init_residual!r}, "
                f"drop_path_rate={drop_path_rate!r}"
            )
        input_shape = _resolve_input_shape(input_shape, style, include_top, n_stages)
        config = dict(
            depth=depth, style=style, version=version, shortcut=shortcut, block=block,
            zero_init_residual=zero_init_residual, include_top=include_top,
            input_shape=input_shape, classes=classes, pooling=pooling,
            classifier_activation=classifier_activation, weights=weights,
            stage_blocks=None if stage_blocks is None else list(blocks),
            stage_filters=list(stage_filters), stem_filters=stem_filters,
            width_multiplier=width_multiplier, drop_path_rate=drop_path_rate,
            stride_in_1x1=stride_in_1x1, use_bias=use_bias,
            bn_momentum=bn_momentum, bn_epsilon=bn_epsilon,
            kernel_initializer=kernel_initializer, weight_decay=weight_decay,
        )
        weights_source = check_weights(weights, config)

        inputs, outputs = _build_graph(config, blocks, kwargs.get("dtype"))
        super().__init__(inputs=inputs, outputs=outputs, name=name or _default_name(config, actual_depth), **kwargs)
        self._resnet_config = config
        self.depth = actual_depth
        self.style = style
        self.version = version
        self.shortcut = shortcut
        self.block_type = block
        if weights_source is not None:
            load_weights(self, weights_source, config)

    # -- config ---------------------------------------------------------------------------
    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "dtype": keras.saving.serialize_keras_object(self.dtype_policy),
            **{k: (list(v) if isinstance(v, tuple) else v) for k, v in self._resnet_config.items()},
            # Weights travel in the .keras file; loading must not fetch or read them again.
            "weights": None,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    @classmethod
    def from_preset(cls, preset: str, **overrides) -> ResNet:
        """Builds a named variant: ``ResNet(**{**ResNet.presets[preset], **overrides})``.

        Example:
        >>> from keras_resnet import ResNet
        >>> model = ResNet.from_preset("resnet20", classes=10)
        >>> model.depth
        20
        """
        if preset not in PRESETS:
            close = difflib.get_close_matches(str(preset), PRESETS, n=3)
            hint = f" Did you mean {', '.join(close)}?" if close else ""
            raise ValueError(
                f"unknown preset {preset!r}; available: {', '.join(PRESETS)}.{hint}"
            )
        args = {**PRESETS[preset], **overrides}
        if not overrides.keys() & _ARCHITECTURE_KEYS:
            # The preset's name, unless the overrides made it another network (then the
            # default name says what it is, e.g. plain110 for resnet110 with shortcut="none").
            args.setdefault("name", preset)
        return cls(**args)

    # -- inspection -----------------------------------------------------------------------
    @property
    def residual_blocks(self) -> list:
        """The model's residual blocks, in network order."""
        return [layer for layer in self.layers if isinstance(layer, ResidualBlock)]

    def block_table(self) -> list[dict]:
        """One row per block: name, type, kind (identity or convolutional block), shapes."""
        rows = []
        for layer in self.residual_blocks:
            kind = layer.resolved_shortcut
            rows.append(
                {
                    "block": layer.name,
                    "type": type(layer).__name__,
                    "kind": {"identity": "identity block", "subsample": "identity block (zero-pad)",
                             "projection": "convolutional block", "none": "plain block"}[kind],
                    "input": tuple(layer.input.shape[1:]),
                    "output": tuple(layer.output.shape[1:]),
                    "strides": layer.strides,
                }
            )
        return rows

    def count_macs(self) -> int:
        """Multiply-adds of one forward pass on one image (needs a fixed input size)."""
        total = 0
        for layer in self.layers:
            in_shape = tuple(layer.input.shape) if hasattr(layer, "input") and not isinstance(
                layer, keras.layers.InputLayer) else None
            if in_shape is None:
                continue
            if None in in_shape[1:]:
                raise ValueError(f"count_macs needs a fixed input size; the model's input is {in_shape[1:]}")
            in_shape = (1,) + in_shape[1:]
            total += layer.count_macs(in_shape) if isinstance(layer, ResidualBlock) else conv_macs(layer, in_shape)
        return total

    def summary(self, *args, **kwargs):
        """Keras's summary, followed by a table that marks identity and convolutional blocks."""
        super().summary(*args, **kwargs)
        print_fn = kwargs.get("print_fn") or print
        rows = self.block_table()
        if not rows:
            return
        width = max(len(r["block"]) for r in rows)
        lines = [f"Residual blocks ({self.version}, shortcut={self.shortcut!r}):"]
        for r in rows:
            lines.append(
                f"  {r['block']:<{width}}  {r['type']:<15}  {r['kind']:<27}  "
                f"{r['input']} -> {r['output']}"
            )
        print_fn("\n".join(lines))


def _build_graph(c: dict, blocks: tuple, dtype) -> tuple:
    """Builds the functional graph for a validated config ``c``; returns (inputs, outputs)."""

    def width(filters):
        return max(1, int(round(filters * c["width_multiplier"])))

    def bn(name):
        return FusedBatchNormalization(
            momentum=c["bn_momentum"], epsilon=c["bn_epsilon"], name=name, dtype=dtype
        )

    reg = keras.regularizers.L2(c["weight_decay"] / 2) if c["weight_decay"] else None
    v1 = c["version"] == "v1"
    inputs = keras.Input(shape=c["input_shape"], name="images")
    stem_conv = keras.layers.Conv2D(
        width(c["stem_filters"] or STEM_FILTERS[c["style"]]),
        3 if c["style"] == "cifar" else 7,
        strides=1 if c["style"] == "cifar" else 2,
        padding="same" if c["style"] == "cifar" else "valid",
        use_bias=c["use_bias"], kernel_initializer=c["kernel_initializer"],
        kernel_regularizer=reg, name="stem_conv", dtype=dtype,
    )
    if c["style"] == "cifar":
        x = stem_conv(inputs)
    else:
        x = stem_conv(keras.layers.ZeroPadding2D(3, name="stem_pad", dtype=dtype)(inputs))
    if v1:
        # In v2 the first block's pre-activation normalises the stem's output.
        x = keras.layers.ReLU(name="stem_relu", dtype=dtype)(bn("stem_bn")(x))
    if c["style"] == "imagenet":
        x = keras.layers.ZeroPadding2D(1, name="stem_pool_pad", dtype=dtype)(x)
        x = keras.layers.MaxPooling2D(3, strides=2, name="stem_pool", dtype=dtype)(x)

    block_cls = BLOCKS[c["block"]]
    extra = {"stride_in_1x1": c["stride_in_1x1"]} if c["block"] == "bottleneck" else {}
    total, index = sum(blocks), 0
    for s, (n_blocks, filters) in enumerate(zip(blocks, c["stage_filters"]), start=1):
        for b in range(1, n_blocks + 1):
            x = block_cls(
                width(filters),
                strides=2 if (b == 1 and s > 1) else 1,
                version=c["version"],
                shortcut=c["shortcut"],
                zero_init=c["zero_init_residual"],
                # Stochastic depth rises linearly from 0 at the first block.
                drop_path_rate=c["drop_path_rate"] * index / max(1, total - 1),
                use_bias=c["use_bias"],
                bn_momentum=c["bn_momentum"],
                bn_epsilon=c["bn_epsilon"],
                kernel_initializer=c["kernel_initializer"],
                kernel_regularizer=reg,
                name=f"stage{s}_block{b}",
                dtype=dtype,
                **extra,
            )(x)
            index += 1
    if not v1:
        x = keras.layers.ReLU(name="post_relu", dtype=dtype)(bn("post_bn")(x))
    if c["include_top"]:
        x = keras.layers.GlobalAveragePooling2D(name="avg_pool", dtype=dtype)(x)
        # Under mixed precision the classifier stays in float32 for a stable softmax.
        x = keras.layers.Dense(
            c["classes"], activation=c["classifier_activation"], kernel_regularizer=reg,
            name="predictions", dtype="float32" if _is_mixed(dtype) else dtype,
        )(x)
    elif c["pooling"] == "avg":
        x = keras.layers.GlobalAveragePooling2D(name="avg_pool", dtype=dtype)(x)
    elif c["pooling"] == "max":
        x = keras.layers.GlobalMaxPooling2D(name="max_pool", dtype=dtype)(x)
    return inputs, x


def _is_mixed(dtype) -> bool:
    policy = keras.dtype_policies.get(dtype) if dtype is not None else keras.config.dtype_policy()
    return policy.compute_dtype != policy.variable_dtype


def _default_name(config, depth) -> str:
    prefix = "plain" if config["shortcut"] == "none" else "resnet"
    suffix = "v2" if config["version"] == "v2" else ""
    return f"{prefix}{depth}{suffix}"


def _resolve_input_shape(input_shape, style, include_top, n_stages):
    min_size = 2 ** (n_stages - 1) * (4 if style == "imagenet" else 1)
    if input_shape is None:
        size = DEFAULT_SIZE[style] if include_top else None
        return (size, size, 3)
    shape = tuple(input_shape) if isinstance(input_shape, (tuple, list)) else ()
    if len(shape) != 3 or any(d is not None and not (is_int(d) and d >= 1) for d in shape):
        raise ValueError(
            "input_shape must be (height, width, channels) with positive integers (or None for "
            f"a variable height or width); received input_shape={input_shape!r}"
        )
    if shape[2] is None:
        raise ValueError(f"the channel dimension of input_shape must be known; received input_shape={input_shape!r}")
    small = [d for d in shape[:2] if d is not None and d < min_size]
    if small:
        raise ValueError(
            f"input_shape={input_shape!r} is too small for a {style}-style ResNet with {n_stages} "
            f"stages: height and width must be at least {min_size} (the network downsamples by "
            f"{min_size})"
        )
    return tuple(None if d is None else int(d) for d in shape)


def preset_table(names=None, *, clear_session: bool = False) -> list[dict]:
    """One row per preset: name, style, version, shortcut, block, depth, params, multiply-adds.

    Args:
        names: preset names; default all of them.
        clear_session: call ``keras.backend.clear_session()`` after each model, which frees
            its memory but also resets Keras's global state in the whole process (layer-name
            counters, the dtype policy). Off by default; the ``keras-resnet presets --count``
            command turns it on.

    Example:
    >>> [(row["preset"], row["params"]) for row in preset_table(["resnet20"])]
    [('resnet20', 271098)]
    """
    rows = []
    for name in names or PRESETS:
        model = ResNet.from_preset(name)
        cfg = model.get_config()
        rows.append(
            {
                "preset": name, "style": cfg["style"], "version": cfg["version"],
                "shortcut": cfg["shortcut"], "block": cfg["block"], "depth": model.depth,
                "params": model.count_params(),
                "MACs (M)": round(model.count_macs() / 1e6, 1),
                "input": "x".join(str(d) for d in cfg["input_shape"]),
            }
        )
        if clear_session:
            keras.backend.clear_session()
    return rows
