"""One shared model test, as keras-hub's ``run_backbone_test``: each model test is then data."""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf


def random_images(input_shape, batch=2, seed=0):
    """Raw-pixel-like float images of ``input_shape`` (without the batch dimension)."""
    return np.random.default_rng(seed).uniform(0, 255, (batch, *input_shape)).astype("float32")


def band_images(n, seed, classes=3, noise=0.0):
    """Dark 8x8 one-channel images with a bright vertical band whose position is the class.

    Learnable in a few epochs by a tiny net, so export and prediction tests have a model that
    means something; ``noise`` is the fraction of labels replaced at random.
    """
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, n)
    x = rng.integers(0, 90, (n, 8, 8, 1))
    for i, c in enumerate(y):
        x[i, :, 1 + 2 * c:3 + 2 * c, 0] += rng.integers(100, 166)
    if noise:
        noisy = rng.random(n) < noise
        y[noisy] = rng.integers(0, classes, noisy.sum())
    return x.astype("uint8"), y


def run_model_test(model_fn, tmp_path, expected_output_shape, save=True, dataset=True, traced=True):
    """Checks a model end to end.

    ``model_fn()`` builds the model. Checked: the config round trip rebuilds the same
    architecture; predict on arrays and on ``tf.data`` agree; a ``.keras`` save and load (without
    ``custom_objects``) gives identical predictions; the output shape. ``save``, ``dataset`` and
    ``traced`` (``predict``, else one eager call in inference mode) can be turned off for the
    deepest nets, whose graphs take a minute to trace: their blocks are the ones the smaller
    presets of their family check traced, saved and reloaded.
    """
    model = model_fn()
    x = random_images(model.input_shape[1:])
    y = model.predict(x, verbose=0) if traced else np.asarray(model(x, training=False))
    assert y.shape == (x.shape[0], *expected_output_shape)
    assert np.all(np.isfinite(y))

    if dataset:
        ds = tf.data.Dataset.from_tensor_slices(x).batch(1)
        np.testing.assert_allclose(model.predict(ds, verbose=0), y, rtol=1e-5, atol=1e-5)

    config = model.get_config()
    clone = model.__class__.from_config(config)
    assert clone.get_config() == config
    assert [tuple(w.shape) for w in clone.weights] == [tuple(w.shape) for w in model.weights]
    assert [w.path for w in clone.weights] == [w.path for w in model.weights]

    if save:
        path = tmp_path / "model.keras"
        model.save(path)
        restored = keras.saving.load_model(path)
        assert type(restored) is type(model)
        np.testing.assert_array_equal(restored.predict(x, verbose=0), y)
    return model


def forbid_calls(monkeypatch, *targets):
    """Makes each ``(owner, name)`` in ``targets`` fail the test when called: for tests that bad
    arguments are refused before any expensive work (saving, converting) starts."""
    def boom(*args, **kwargs):
        raise AssertionError("expensive work started before validation finished")

    for owner, name in targets:
        monkeypatch.setattr(owner, name, boom)
