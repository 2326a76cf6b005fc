"""Residual block layers: basic and bottleneck, v1 and v2, every shortcut type of the paper.

A residual block computes ``y = F(x) + S(x)``: ``F`` is the residual branch (two 3x3 convs for
a basic block, 1x1-3x3-1x1 for a bottleneck block) and ``S`` the shortcut. He et al., "Deep
Residual Learning for Image Recognition" (arXiv:1512.03385) defines the shortcut options:

- ``"identity"`` (option A): parameter-free. Where the shape changes, the input is subsampled
  by the stride and the new channels are zero-padded.
- ``"projection"`` (option B): a 1x1 convolution (plus BatchNorm in v1) only where the shape
  changes, the identity elsewhere.
- ``"full_projection"`` (option C): a projection on every block.
- ``"none"``: no shortcut, ``y = F(x)``: the plain network of the degradation experiment.

``version="v1"`` is the post-activation block of the ResNet paper (conv-BN-ReLU-conv-BN, add,
ReLU); ``version="v2"`` is the full pre-activation block of He et al., "Identity Mappings in
Deep Residual Networks" (arXiv:1603.05027): BN-ReLU-conv twice, add, nothing after the add.

Layers inside a block have stable names (``conv1``, ``bn1``, ..., ``shortcut_conv``,
``shortcut_bn``) so that weights can be ported by name and diagnostics can find them.
"""

from __future__ import annotations

import keras
from keras import ops

from keras_resnet.layers import FusedBatchNormalization
from keras_resnet.presets import normalize_shortcut, normalize_version
from keras_resnet.validation import check_bool, check_float, check_fraction, check_int, check_keras_object


def conv_macs(layer: keras.layers.Layer, input_shape) -> int:
    """Multiply-adds of one ``Conv2D`` or ``Dense`` layer applied to ``input_shape``.

    Other layers (BatchNorm, pooling, activations) count as zero, following the ResNet paper's
    FLOP counts.
    """
    if isinstance(layer, keras.layers.Conv2D):
        out = layer.compute_output_shape(input_shape)
        kh, kw = layer.kernel_size
        cin = input_shape[-1] // layer.groups
        if None in out[1:3]:
            return 0  # unknown size: count_macs() asks for a fixed input size first
        return int(out[1] * out[2] * out[3] * kh * kw * cin)
    if isinstance(layer, keras.layers.Dense):
        return int(input_shape[-1] * layer.units)
    return 0


class ResidualBlock(keras.layers.Layer):
    """Base class of the residual blocks: shortcut handling, version, zero-init and naming.

    Subclasses only say which convolutions form the residual branch (``_branch_convs``) and
    how many output channels a block has (``expansion``). Use :class:`BasicBlock` or
    :class:`BottleneckBlock`.

    Args:
        filters: int. Width of the branch; the block outputs ``filters * expansion`` channels.
        strides: int, default 1. Spatial stride of the block (2 to downsample).
        version: ``"v1"`` (post-activation) or ``"v2"`` (full pre-activation).
        shortcut: ``"identity"``/``"A"``, ``"projection"``/``"B"``,
            ``"full_projection"``/``"C"`` or ``"none"``.
        zero_init: bool, default False. Start the block as the identity: v1 sets the gamma of
            the branch's last BatchNorm to zero, v2 (which has no BatchNorm at the end of the
            branch) sets the kernel of the branch's last convolution to zero. Either way
            ``F(x) = 0`` at initialisation.
        drop_path_rate: float in [0, 1), default 0. Stochastic depth: during training the
            residual branch of each sample is dropped with this probability (and rescaled).
        use_bias: bool, default False. Bias on every convolution (keras.applications' ResNet50
            has them; the paper's networks do not need them because BatchNorm follows).
        bn_momentum: float, default 0.9. BatchNorm moving-average momentum. 0.9 rather than
            Keras's 0.99 so that the moving statistics keep up on small datasets.
        bn_epsilon: float, default 1e-5.
        kernel_initializer: default ``"he_normal"`` (the paper's initialisation).
        kernel_regularizer: optional regularizer for convolution kernels.
        preact: bool, default True. v2 only: whether the block applies its own BatchNorm-ReLU
            pre-activation (``bn0``/``relu0``). Set False when the input is already activated.
    """

    expansion = 1

    def __init__(
        self,
        filters: int,
        strides: int = 1,
        version: str = "v1",
        shortcut: str = "projection",
        zero_init: bool = False,
        drop_path_rate: float = 0.0,
        use_bias: bool = False,
        bn_momentum: float = 0.9,
        bn_epsilon: float = 1e-5,
        kernel_initializer="he_normal",
        kernel_regularizer=None,
        preact: bool = True,
        **kwargs,
    ):
        # Every argument is checked before the layer itself is set up.
        filters = check_int("filters", filters, 1)
        strides = check_int("strides", strides, 1)
        version = normalize_version(version)
        shortcut = normalize_shortcut(shortcut)
        zero_init = check_bool("zero_init", zero_init)
        drop_path_rate = check_fraction("drop_path_rate", drop_path_rate)
        use_bias = check_bool("use_bias", use_bias)
        bn_momentum = check_float("bn_momentum", bn_momentum, 0, 1, exclusive_maximum=True)
        bn_epsilon = check_float("bn_epsilon", bn_epsilon, 0, exclusive_minimum=True)
        kernel_initializer = check_keras_object("kernel_initializer", kernel_initializer, "initializer")
        kernel_regularizer = check_keras_object("kernel_regularizer", kernel_regularizer, "regularizer",
                                                optional=True)
        preact = check_bool("preact", preact)
        if shortcut == "none" and zero_init:
            raise ValueError(
                "zero_init=True would make a block without shortcut (shortcut='none') output "
                "zeros; use zero_init=False for plain blocks"
            )
        if shortcut == "none" and drop_path_rate:
            raise ValueError(
                "drop_path_rate needs a shortcut to fall back on; received "
                f"drop_path_rate={drop_path_rate!r} with shortcut='none'"
            )
        super().__init__(**kwargs)
        self.filters = filters
        self.strides = strides
        self.version = version
        self.shortcut = shortcut
        self.zero_init = zero_init
        self.drop_path_rate = drop_path_rate
        self.use_bias = use_bias
        self.bn_momentum = bn_momentum
        self.bn_epsilon = bn_epsilon
        self.kernel_initializer = kernel_initializer
        self.kernel_regularizer = kernel_regularizer
        self.preact = preact
        self.out_channels = self.filters * self.expansion
        # Filled in build(), once the input's channel count is known.
        self.preact_layers: list = []
        self.branch_layers: list = []
        self.shortcut_layers: list = []
        self.drop_path = None
        self._pad_channels = 0
        self._shortcut_kind = None  # set in build(); read it as resolved_shortcut

    # -- layer factories: one place for the arguments every conv and BatchNorm shares -------
    def _conv(self, filters: int, kernel_size: int, strides: int, name: str, zero=False):
        layers = []
        if strides > 1 and kernel_size > 1:
            # Symmetric padding, as in the paper's Torch code and torchvision, so that a strided
            # 3x3 conv samples the same pixels as the stride-2 identity shortcut.
            layers.append(
                keras.layers.ZeroPadding2D(kernel_size // 2, name=f"{name}_pad", dtype=self.dtype_policy)
            )
            padding = "valid"
        else:
            padding = "same"
        layers.append(
            keras.layers.Conv2D(
                filters,
                kernel_size,
                strides=strides,
                padding=padding,
                use_bias=self.use_bias,
                kernel_initializer="zeros" if zero else self._fresh_initializer(),
                kernel_regularizer=self.kernel_regularizer,
                name=name,
                dtype=self.dtype_policy,
            )
        )
        return layers

    def _fresh_initializer(self):
        # A Keras random initializer fixes its seed when it is created and returns the same values
        # on every call. Shared by the block's convolutions, it gave same-shaped kernels identical
        # weights, and so did every block (resolving the argument leaves Python's generator as it
        # was, so each block drew the same seed). A copy per convolution draws its own seed from
        # Python's generator: distinct kernels, reproducible under keras.utils.set_random_seed. A
        # seed the user gave is copied with the rest of the config.
        return keras.initializers.get(keras.initializers.serialize(self.kernel_initializer))

    def _bn(self, name: str, zero=False):
        return FusedBatchNormalization(
            momentum=self.bn_momentum,
            epsilon=self.bn_epsilon,
            gamma_initializer="zeros" if zero else "ones",
            name=name,
            dtype=self.dtype_policy,
        )

    def _relu(self, name: str):
        return keras.layers.ReLU(name=name, dtype=self.dtype_policy)

    def _branch_convs(self):
        """Returns ``[(filters, kernel_size, strides), ...]`` for the residual branch."""
        raise NotImplementedError

    # -- structure ------------------------------------------------------------------------
    def shortcut_kind(self, in_channels: int) -> str:
        """What the shortcut does for an input with ``in_channels`` channels.

        One of ``"identity"`` (a pure identity), ``"subsample"`` (option A where the shape
        changes: stride and zero-pad), ``"projection"`` (1x1 conv) or ``"none"``.
        """
        if self.shortcut == "none":
            return "none"
        reshapes = self.strides > 1 or in_channels != self.out_channels
        if self.shortcut == "full_projection" or (self.shortcut == "projection" and reshapes):
            return "projection"
        return "subsample" if reshapes else "identity"

    @property
    def resolved_shortcut(self) -> str | None:
        """What the built block's shortcut does: :meth:`shortcut_kind` of the input it was built
        for (``"identity"``, ``"subsample"``, ``"projection"`` or ``"none"``); None before
        ``build``. Read-only; ``shortcut`` is the option the block was given.
        """
        return self._shortcut_kind if self.built else None

    @property
    def is_identity_block(self) -> bool:
        """True when the shortcut has no parameters (identity or option A's zero-pad)."""
        return self.resolved_shortcut in ("identity", "subsample")

    def build(self, input_shape):
        in_channels = input_shape[-1]
        if in_channels is None:
            raise ValueError(f"{self.name}: the channel dimension of the input must be known")
        self._shortcut_kind = kind = self.shortcut_kind(in_channels)
        if kind == "subsample" and in_channels > self.out_channels:
            raise ValueError(
                f"{self.name}: the identity shortcut (option A) can only zero-pad channels, not "
                f"drop them ({in_channels} -> {self.out_channels}); use shortcut='projection'"
            )
        v1 = self.version == "v1"
        convs = self._branch_convs()
        if not v1 and self.preact:
            self.preact_layers = [self._bn("bn0"), self._relu("relu0")]
        branch = []
        for i, (filters, kernel, strides) in enumerate(convs, start=1):
            last = i == len(convs)
            if not v1:
                if i > 1:
                    branch += [self._bn(f"bn{i - 1}"), self._relu(f"relu{i - 1}")]
                branch += self._conv(filters, kernel, strides, f"conv{i}", zero=last and self.zero_init)
            else:
                branch += self._conv(filters, kernel, strides, f"conv{i}")
                branch.append(self._bn(f"bn{i}", zero=last and self.zero_init))
                if not last:
                    branch.append(self._relu(f"relu{i}"))
        # v2 names its BatchNorms after the conv they follow: bn1 sits between conv1 and conv2.
        self.branch_layers = branch
        if kind == "projection":
            self.shortcut_layers = self._conv(self.out_channels, 1, self.strides, "shortcut_conv")
            if v1:
                self.shortcut_layers.append(self._bn("shortcut_bn"))
        elif kind == "subsample" and self.strides > 1:
            self.shortcut_layers = [
                keras.layers.MaxPooling2D(1, self.strides, name="shortcut_pool", dtype=self.dtype_policy)
            ]
        self._pad_channels = self.out_channels - in_channels if kind == "subsample" else 0
        if self.drop_path_rate > 0:
            self.drop_path = keras.layers.Dropout(
                self.drop_path_rate, noise_shape=(None, 1, 1, 1), name="drop_path", dtype=self.dtype_policy
            )
        self._run_shapes(input_shape, build=True)

    def _run_shapes(self, input_shape, build=False):
        """Walks the block's layers on shapes; builds them when ``build``. Returns MACs."""
        macs = 0

        def walk(layers, shape):
            nonlocal macs
            for layer in layers:
                if build:
                    layer.build(shape)
                macs += conv_macs(layer, shape)
                shape = layer.compute_output_shape(shape)
            return shape

        h = walk(self.preact_layers, input_shape)
        walk(self.branch_layers, h)
        walk(self.shortcut_layers, h if self._shortcut_uses_preact else input_shape)
        return macs

    @property
    def _shortcut_uses_preact(self) -> bool:
        # v2's projection sees the pre-activated input (the pre-activation paper, and
        # keras.applications' ResNetV2); the identity path always carries the raw input.
        return self.version == "v2" and self._shortcut_kind == "projection"

    def count_macs(self, input_shape) -> int:
        """Multiply-adds of this block for one input of ``input_shape`` (batch included)."""
        return self._run_shapes(tuple(input_shape))

    # -- forward ----------------------------------------------------------------------------
    @staticmethod
    def _apply(layers, x, training):
        for layer in layers:
            x = layer(x, training=training)
        return x

    def _preactivate(self, inputs, training):
        return self._apply(self.preact_layers, inputs, training)

    def residual_branch(self, inputs, training=False):
        """Returns ``F(x)``, the residual branch's output, for diagnostics.

        With ``training=True`` the BatchNorm layers use batch statistics *and update their
        moving statistics*, as in any training-mode call.

        Example:
        >>> block = BasicBlock(8, zero_init=True)
        >>> x = keras.random.normal((2, 4, 4, 8))
        >>> float(keras.ops.max(keras.ops.abs(block.residual_branch(x))))
        0.0
        """
        if not self.built:
            self.build(tuple(inputs.shape))
        return self._apply(self.branch_layers, self._preactivate(inputs, training), training)

    def shortcut_branch(self, inputs, training=False):
        """Returns ``S(x)``, the shortcut's output (None for a plain block), for diagnostics."""
        if not self.built:
            self.build(tuple(inputs.shape))
        if self._shortcut_kind == "none":
            return None
        source = self._preactivate(inputs, training) if self._shortcut_uses_preact else inputs
        return self._shortcut(source, training)

    def _shortcut(self, x, training):
        x = self._apply(self.shortcut_layers, x, training)
        if self._pad_channels:
            x = ops.pad(x, [[0, 0], [0, 0], [0, 0], [0, self._pad_channels]])
        return x

    def call(self, inputs, training=None):
        h = self._preactivate(inputs, training)
        y = self._apply(self.branch_layers, h, training)
        if self.drop_path is not None:
            y = self.drop_path(y, training=training)
        if self._shortcut_kind != "none":
            y = ops.add(self._shortcut(h if self._shortcut_uses_preact else inputs, training), y)
        if self.version == "v1":
            y = ops.relu(y)
        return y

    def compute_output_shape(self, input_shape):
        n, h, w, _ = input_shape

        def down(size):
            return None if size is None else -(-size // self.strides)

        return (n, down(h), down(w), self.out_channels)

    def get_config(self):
        config = super().get_config()
        config.update(
            filters=self.filters,
            strides=self.strides,
            version=self.version,
            shortcut=self.shortcut,
            zero_init=self.zero_init,
            drop_path_rate=self.drop_path_rate,
            use_bias=self.use_bias,
            bn_momentum=self.bn_momentum,
            bn_epsilon=self.bn_epsilon,
            kernel_initializer=keras.initializers.serialize(self.kernel_initializer),
            kernel_regularizer=keras.regularizers.serialize(self.kernel_regularizer),
            preact=self.preact,
        )
        return config


@keras.saving.register_keras_serializable(package="keras_resnet")
class BasicBlock(ResidualBlock):
    """The basic residual block: two 3x3 convolutions (ResNet paper, Figure 2 left).

    Args:
        filters: int. Number of output channels.
        **kwargs: every argument of :class:`ResidualBlock` (``strides``, ``version``,
            ``shortcut``, ``zero_init``, ...) and of ``keras.layers.Layer``.

    Example:
    >>> import keras
    >>> from keras_resnet import BasicBlock
    >>> inputs = keras.Input((32, 32, 16))
    >>> x = BasicBlock(32, strides=2, shortcut="identity", name="stage2_block1")(inputs)
    >>> tuple(x.shape)
    (None, 16, 16, 32)
    """

    expansion = 1

    def _branch_convs(self):
        return [(self.filters, 3, self.strides), (self.filters, 3, 1)]


@keras.saving.register_keras_serializable(package="keras_resnet")
class BottleneckBlock(ResidualBlock):
    """The bottleneck block: 1x1 reduce, 3x3, 1x1 expand by 4 (ResNet paper, Figure 5 right).

    Args:
        filters: int. Width of the 3x3 convolution; the block outputs ``4 * filters`` channels.
        stride_in_1x1: bool, default False. Put the stride on the first 1x1 convolution, as
            the original Caffe ResNet and ``keras.applications.ResNet50`` do, instead of on the
            3x3 convolution ("ResNet v1.5", torchvision's choice, a little more accurate).
        **kwargs: every argument of :class:`ResidualBlock`.

    Example:
    >>> import keras
    >>> from keras_resnet import BottleneckBlock
    >>> inputs = keras.Input((8, 8, 64))
    >>> tuple(BottleneckBlock(16, version="v2")(inputs).shape)
    (None, 8, 8, 64)
    """

    expansion = 4

    def __init__(self, filters: int, stride_in_1x1: bool = False, **kwargs):
        stride_in_1x1 = check_bool("stride_in_1x1", stride_in_1x1)
        super().__init__(filters, **kwargs)
        self.stride_in_1x1 = stride_in_1x1

    def _branch_convs(self):
        s1, s3 = (self.strides, 1) if self.stride_in_1x1 else (1, self.strides)
        return [(self.filters, 1, s1), (self.filters, 3, s3), (self.out_channels, 1, 1)]

    def get_config(self):
        return {**super().get_config(), "stride_in_1x1": self.stride_in_1x1}


BLOCKS = {"basic": BasicBlock, "bottleneck": BottleneckBlock}
