"""FusedBatchNormalization: Keras's BatchNormalization, trained with TensorFlow's fused kernel."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_resnet.layers import FusedBatchNormalization


def _pair(seed=0, **kwargs):
    """Ours and Keras's layer, built on the same shape with the same (random) variables."""
    ours, theirs = FusedBatchNormalization(momentum=0.9, **kwargs), keras.layers.BatchNormalization(momentum=0.9, **kwargs)
    for layer in (ours, theirs):
        layer.build((None, 5, 6, 4))
    rng = np.random.default_rng(seed)
    values = [rng.normal(1.0, 0.3, w.shape).astype("float32") if "variance" in w.path else
              rng.normal(0.0, 0.5, w.shape).astype("float32") for w in theirs.weights]
    values = [np.abs(v) if "variance" in w.path else v for v, w in zip(values, theirs.weights)]
    ours.set_weights(values)
    theirs.set_weights(values)
    return ours, theirs


def _ops(layer, x, training):
    graph = tf.function(lambda t: layer(t, training=training)).get_concrete_function(tf.constant(x)).graph
    return {op.type for op in graph.get_operations()}


@pytest.mark.parametrize("center, scale", [(True, True), (False, False)])
def test_training_step_matches_keras_batch_normalization(center, scale):
    ours, theirs = _pair(center=center, scale=scale)
    x = tf.constant(np.random.default_rng(1).normal(2.0, 3.0, (3, 5, 6, 4)).astype("float32"))
    weights = tf.constant(np.random.default_rng(2).normal(size=(3, 5, 6, 4)).astype("float32"))
    results = []
    for layer in (ours, theirs):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x, training=True)
            loss = tf.reduce_sum(y * weights)
        grads = tape.gradient(loss, [x, *layer.trainable_weights])
        results.append((y.numpy(), [g.numpy() for g in grads], [w.numpy() for w in layer.non_trainable_weights]))
    (y1, g1, m1), (y2, g2, m2) = results
    np.testing.assert_allclose(y1, y2, atol=2e-5)
    assert len(g1) == len(g2) == 1 + 2 * scale
    for a, b in zip(g1, g2):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)
    for a, b in zip(m1, m2):  # moving mean and (biased) moving variance
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert "FusedBatchNormV3" in _ops(ours, x.numpy(), True)


def test_inference_and_the_cases_it_does_not_fuse_are_keras_own():
    ours, theirs = _pair()
    x = np.random.default_rng(3).normal(size=(2, 5, 6, 4)).astype("float32")
    np.testing.assert_array_equal(ours(x, training=False).numpy(), theirs(x, training=False).numpy())
    assert "FusedBatchNormV3" not in _ops(ours, x, False)  # the exported graph is Keras's
    off = FusedBatchNormalization(fused=False)
    off.build((None, 5, 6, 4))
    assert "FusedBatchNormV3" not in _ops(off, x, True)
    frozen, _ = _pair()
    frozen.trainable = False  # a frozen layer uses its moving statistics, as Keras's does
    assert "FusedBatchNormV3" not in _ops(frozen, x, True)
    flat = FusedBatchNormalization()
    flat.build((None, 4))
    assert "FusedBatchNormV3" not in _ops(flat, np.ones((3, 4), "float32"), True)


def test_mixed_precision_keeps_float16_activations_and_float32_statistics():
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_float16")
    try:
        ours, theirs = _pair()
    finally:
        keras.config.set_dtype_policy(previous)
    x = np.random.default_rng(4).normal(size=(2, 5, 6, 4)).astype("float16")
    y1, y2 = ours(x, training=True), theirs(x, training=True)
    assert y1.dtype == y2.dtype == "float16" and ours.moving_mean.dtype == "float32"
    np.testing.assert_allclose(y1.numpy().astype("float32"), y2.numpy().astype("float32"), atol=5e-3)
    np.testing.assert_allclose(ours.moving_variance.numpy(), theirs.moving_variance.numpy(), rtol=1e-3)


def test_config_round_trip_and_bad_fused_value(tmp_path):
    layer = FusedBatchNormalization(fused=False, epsilon=1e-3, momentum=0.8)
    again = FusedBatchNormalization.from_config(layer.get_config())
    assert (again.fused, again.epsilon, again.momentum) == (False, 1e-3, 0.8)
    inputs = keras.Input((4, 4, 2))
    model = keras.Model(inputs, FusedBatchNormalization()(inputs))
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    assert type(loaded.layers[-1]) is FusedBatchNormalization
    with pytest.raises(ValueError, match=r"fused must be None, True or False; received fused='yes'"):
        FusedBatchNormalization(fused="yes")


def test_the_fused_step_compiles_with_xla_as_on_a_gpu():
    # GPUs train with jit_compile=True; the fused kernel must lower to XLA (here on the CPU).
    ours, theirs = _pair()
    x = tf.constant(np.random.default_rng(5).normal(size=(2, 5, 6, 4)).astype("float32"))

    def step(layer):
        with tf.GradientTape() as tape:
            y = layer(x, training=True)
            loss = tf.reduce_sum(tf.square(y))
        return y, tape.gradient(loss, layer.trainable_weights)

    y1, g1 = tf.function(lambda: step(ours), jit_compile=True)()
    y2, g2 = step(theirs)
    np.testing.assert_allclose(y1.numpy(), y2.numpy(), atol=2e-5)
    for a, b in zip(g1, g2):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(ours.moving_variance.numpy(), theirs.moving_variance.numpy(), rtol=1e-5)


def test_a_tiny_epsilon_is_raised_to_the_fused_minimum_on_the_fused_path_only():
    from keras_resnet.layers import MIN_FUSED_EPSILON

    ours, theirs = _pair(epsilon=1e-5)
    x = np.random.default_rng(6).normal(size=(2, 5, 6, 4)).astype("float32")
    graph = tf.function(lambda t: ours(t, training=True)).get_concrete_function(tf.constant(x)).graph
    fused = [op for op in graph.get_operations() if op.type == "FusedBatchNormV3"]
    assert len(fused) == 1 and fused[0].get_attr("epsilon") == pytest.approx(MIN_FUSED_EPSILON)
    assert ours.epsilon == 1e-5  # the layer's configuration is untouched
    np.testing.assert_allclose(ours(x, training=True).numpy(), theirs(x, training=True).numpy(), atol=2e-5)
