"""Layers the blocks and models share: a BatchNormalization that trains with one fused kernel.

Keras 3's ``BatchNormalization`` computes the batch statistics and the normalisation from
separate operations (mean, squared difference, mean, rsqrt, multiply, add, and as many again
for the gradient), each a full pass over the activations. TensorFlow has one kernel that does
all of it, ``FusedBatchNormV3``, with a fused gradient. :class:`FusedBatchNormalization` uses it
when training on the TensorFlow backend and keeps Keras's own code everywhere else, so the
variables, the configuration, the inference graph (what SavedModel and TFLite export see) and
the results are those of ``keras.layers.BatchNormalization``.

Measured (``python benchmarks/bench_core.py``, 2 CPU cores): training steps of ResNet-56 and
ResNet-50 run 1.2-1.5x as fast as the same networks built from Keras's layers, with graphs that
are otherwise identical op for op (``benchmarks/README.md``).
"""

from __future__ import annotations

import keras

from keras_resnet.validation import check_choice

MIN_FUSED_EPSILON = 1.001e-5

if keras.backend.backend() == "jax":
    # Every model of the package imports this module: on JAX its first build compiles each
    # initialiser shape, which the persistent cache keeps for the next process (backends.py).
    from keras_resnet.backends import enable_compilation_cache

    try:
        enable_compilation_cache()
    except ValueError as e:
        import warnings

        warnings.warn(f"the JAX compilation cache stays off: {e}", stacklevel=2)


@keras.saving.register_keras_serializable(package="keras_resnet")
class FusedBatchNormalization(keras.layers.BatchNormalization):
    """``keras.layers.BatchNormalization`` whose training step is TensorFlow's fused kernel.

    The fused path is taken when all of these hold: TensorFlow backend, ``training=True`` on a
    trainable layer, a 4-D input normalised over its last axis (channels last), no mask, no
    renormalisation and no cross-replica synchronisation. Otherwise, and always at inference,
    the layer is Keras's. On the fused path the moving variance is updated with the batch's
    biased variance, as Keras does (the kernel's unbiased output is rescaled), so both paths
    give the same statistics up to float rounding. An ``epsilon`` below 1.001e-5 is raised to
    it on the fused path (cuDNN's minimum, as ``tf.nn.fused_batch_norm`` does).

    Args:
        fused: None or True use the fused kernel where it applies; False never.
        **kwargs: ``keras.layers.BatchNormalization`` arguments.

    Example:
    >>> import numpy as np
    >>> bn = FusedBatchNormalization(momentum=0.9)
    >>> y = bn(np.ones((2, 4, 4, 3), "float32"), training=True)
    >>> tuple(y.shape)
    (2, 4, 4, 3)
    """

    def __init__(self, fused: bool | None = None, **kwargs):
        check_choice("fused", fused, (None, True, False), "None, True or False")
        super().__init__(**kwargs)
        self.fused = fused

    def _fusable(self, inputs, training, mask) -> bool:
        return (
            self.fused is not False and bool(training) and self.trainable and mask is None
            and keras.backend.backend() == "tensorflow" and len(inputs.shape) == 4
            and self.axis in (-1, 3) and not self.renorm and not self.synchronized
        )

    def call(self, inputs, training=None, mask=None):
        if not self._fusable(inputs, training, mask):
            return super().call(inputs, training=training, mask=mask)
        import tensorflow as tf

        channels = inputs.shape[-1]
        x = inputs if inputs.dtype in (tf.float16, tf.bfloat16, tf.float32) else tf.cast(inputs, tf.float32)
        scale = tf.cast(self.gamma, tf.float32) if self.scale else tf.ones((channels,), tf.float32)
        offset = tf.cast(self.beta, tf.float32) if self.center else tf.zeros((channels,), tf.float32)
        empty = tf.constant([], tf.float32)
        # cuDNN refuses an epsilon below its minimum (1e-5 in older versions); TensorFlow's own
        # tf.nn.fused_batch_norm raises it to 1.001e-5 the same way. For the default 1e-5 the
        # normaliser changes by 1e-8 in variance + epsilon.
        epsilon = max(float(self.epsilon), MIN_FUSED_EPSILON)
        y, mean, variance, _, _, _ = tf.raw_ops.FusedBatchNormV3(
            x=x, scale=scale, offset=offset, mean=empty, variance=empty, epsilon=epsilon,
            exponential_avg_factor=1.0, data_format="NHWC", is_training=True,
        )
        # The kernel returns the unbiased variance (n / (n - 1)); Keras keeps the biased one.
        count = tf.cast(tf.reduce_prod(tf.shape(x)[:-1]), tf.float32)
        variance = variance * (count - 1.0) / tf.maximum(count, 1.0)
        momentum = self.momentum
        self.moving_mean.assign(tf.cast(self.moving_mean, tf.float32) * momentum + mean * (1.0 - momentum))
        self.moving_variance.assign(tf.cast(self.moving_variance, tf.float32) * momentum + variance * (1.0 - momentum))
        return tf.cast(y, self.compute_dtype)

    def get_config(self):
        return {**super().get_config(), "fused": self.fused}
