"""Tests of the residual block layers."""

from __future__ import annotations

import itertools

import keras
import numpy as np
import pytest

from keras_resnet import BasicBlock, BottleneckBlock
from keras_resnet.presets import normalize_shortcut

pytestmark = pytest.mark.backend_neutral


def nonnegative(shape, seed=0):
    # Blocks in a v1 network see post-ReLU inputs.
    return np.abs(np.random.default_rng(seed).normal(size=shape)).astype("float32")


def param_count(layer) -> int:
    return sum(int(np.prod(w.shape)) for w in layer.trainable_weights)


COMBOS = list(itertools.product(
    (BasicBlock, BottleneckBlock), ("v1", "v2"), ("identity", "projection", "full_projection", "none"), (1, 2)
))


@pytest.mark.parametrize("cls,version,shortcut,strides", COMBOS)
def test_output_shapes(cls, version, shortcut, strides):
    filters = 8
    in_channels = 4 if strides == 2 else filters * cls.expansion
    block = cls(filters, strides=strides, version=version, shortcut=shortcut)
    x = nonnegative((2, 6, 6, in_channels))
    y = block(x)
    assert tuple(y.shape) == (2, 6 // strides, 6 // strides, filters * cls.expansion)
    assert block.compute_output_shape(x.shape) == (2, 6 // strides, 6 // strides, filters * cls.expansion)
    if version == "v1":
        assert float(keras.ops.min(y)) >= 0.0  # post-activation: the ReLU comes after the add


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_option_a_adds_no_parameters_and_zero_pads(version):
    plain = BasicBlock(16, strides=2, version=version, shortcut="none")
    option_a = BasicBlock(16, strides=2, version=version, shortcut="identity")
    x = nonnegative((1, 8, 8, 8))
    plain(x), option_a(x)
    assert param_count(option_a) == param_count(plain)
    s = keras.ops.convert_to_numpy(option_a.shortcut_branch(x))
    np.testing.assert_array_equal(s[..., :8], x[:, ::2, ::2, :])  # subsampled by the stride
    np.testing.assert_array_equal(s[..., 8:], 0.0)  # new channels are zeros


def test_projection_only_where_the_shape_changes():
    same = BasicBlock(8, shortcut="B")
    change = BasicBlock(8, strides=2, shortcut="B")
    always = BasicBlock(8, shortcut="C")
    x = nonnegative((1, 8, 8, 8))
    assert same.resolved_shortcut is None  # known once the block is built
    same(x), change(x), always(x)
    assert (same.resolved_shortcut, change.resolved_shortcut, always.resolved_shortcut) == (
        "identity", "projection", "projection")
    with pytest.raises(AttributeError):
        same.resolved_shortcut = "none"  # read-only
    assert same.shortcut_kind(8) == "identity" and same.is_identity_block
    assert change.shortcut_kind(8) == "projection" and not change.is_identity_block
    assert always.shortcut_kind(8) == "projection"
    # conv 1x1 (8*8) + BatchNorm (2*8) on the projection shortcut
    assert param_count(change) - param_count(same) == 8 * 8 + 2 * 8
    assert param_count(always) - param_count(same) == 8 * 8 + 2 * 8
    assert [layer.name for layer in change.shortcut_layers] == ["shortcut_conv", "shortcut_bn"]


def test_v2_projection_has_no_batchnorm_and_reads_the_preactivation():
    block = BasicBlock(8, strides=2, version="v2", shortcut="projection")
    x = nonnegative((1, 8, 8, 4))
    block(x)
    assert [layer.name for layer in block.shortcut_layers] == ["shortcut_conv"]
    assert [layer.name for layer in block.preact_layers] == ["bn0", "relu0"]


def test_bottleneck_structure_and_stride_placement():
    x = nonnegative((1, 8, 8, 64))
    v15 = BottleneckBlock(16, strides=2)
    caffe = BottleneckBlock(16, strides=2, stride_in_1x1=True)
    v15(x), caffe(x)
    convs = {b: [c for c in b.branch_layers if isinstance(c, keras.layers.Conv2D)] for b in (v15, caffe)}
    assert [c.kernel_size for c in convs[v15]] == [(1, 1), (3, 3), (1, 1)]
    assert [c.strides for c in convs[v15]] == [(1, 1), (2, 2), (1, 1)]
    assert [c.strides for c in convs[caffe]] == [(2, 2), (1, 1), (1, 1)]
    assert convs[v15][-1].filters == 64


@pytest.mark.parametrize("cls", [BasicBlock, BottleneckBlock])
@pytest.mark.parametrize("version", ["v1", "v2"])
def test_zero_init_blocks_start_as_the_identity(cls, version):
    channels = 8 * cls.expansion
    x = nonnegative((2, 6, 6, channels))
    block = cls(8, version=version, shortcut="identity", zero_init=True)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(block(x)), x)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(block.residual_branch(x)), 0.0)
    # The zero sits where the docs say: v1 the last BatchNorm gamma, v2 the last conv kernel.
    last = block.branch_layers[-1]
    assert isinstance(last, keras.layers.BatchNormalization if version == "v1" else keras.layers.Conv2D)
    assert not np.any(keras.ops.convert_to_numpy(last.weights[0]))
    # Without zero-init a fresh block is not the identity.
    other = cls(8, version=version, shortcut="identity")
    assert np.abs(keras.ops.convert_to_numpy(other(x)) - x).max() > 1e-2


@pytest.mark.parametrize("version", ["v1", "v2"])
@pytest.mark.parametrize("shortcut", ["identity", "projection", "none"])
def test_output_is_branch_plus_shortcut(version, shortcut):
    block = BasicBlock(8, strides=2, version=version, shortcut=shortcut)
    x = nonnegative((2, 8, 8, 4))
    y = keras.ops.convert_to_numpy(block(x, training=False))
    f = keras.ops.convert_to_numpy(block.residual_branch(x))
    s = block.shortcut_branch(x)
    total = f if s is None else f + keras.ops.convert_to_numpy(s)
    expected = np.maximum(total, 0) if version == "v1" else total
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)
    assert (s is None) == (shortcut == "none")


def test_shortcut_aliases():
    assert [normalize_shortcut(s) for s in ("A", "b", "C", "none", "Projection")] == [
        "identity", "projection", "full_projection", "none", "projection"]
    assert BasicBlock(4, shortcut="A").shortcut == "identity"


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(filters=0), r"filters must be an integer >= 1; received filters=0"),
        (dict(filters=4, strides=0), r"strides must be an integer >= 1; received strides=0"),
        (dict(filters=4, version="v3"), r"received version='v3'"),
        (dict(filters=4, shortcut="X"), r"received shortcut='X'"),
        (dict(filters=4, shortcut="none", zero_init=True), r"zero_init=True would make a block"),
        (dict(filters=4, drop_path_rate=1.5), r"drop_path_rate must be a fraction in \[0, 1\); received drop_path_rate=1.5"),
    ],
)
def test_bad_block_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        BasicBlock(**kwargs)


def test_identity_shortcut_cannot_drop_channels():
    with pytest.raises(ValueError, match=r"can only zero-pad channels, not drop them \(16 -> 8\)"):
        BasicBlock(8, shortcut="identity")(nonnegative((1, 4, 4, 16)))


def test_config_round_trip_rebuilds_the_same_block():
    block = BottleneckBlock(4, strides=2, version="v2", shortcut="C", zero_init=True,
                            drop_path_rate=0.1, stride_in_1x1=True, name="stage2_block1")
    x = nonnegative((2, 8, 8, 8))
    y = block(x)
    clone = BottleneckBlock.from_config(block.get_config())
    clone.build(x.shape)
    clone.set_weights(block.get_weights())
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(clone(x)), keras.ops.convert_to_numpy(y))
    assert clone.get_config() == block.get_config()


def test_blocks_work_in_sequential_and_functional_models(tmp_path):
    model = keras.Sequential([
        keras.Input((8, 8, 3)),
        keras.layers.Conv2D(8, 3, padding="same"),
        BasicBlock(8, name="b1"),
        BasicBlock(16, strides=2, shortcut="A", name="b2"),
        BottleneckBlock(4, version="v2", name="b3"),
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(2),
    ])
    x = nonnegative((2, 8, 8, 3))
    y = model.predict(x, verbose=0)
    model.save(tmp_path / "seq.keras")
    np.testing.assert_array_equal(keras.saving.load_model(tmp_path / "seq.keras").predict(x, verbose=0), y)
    paths = [w.path.split("/", 1)[1] for w in model.get_layer("b1").weights][:2]
    assert paths == ["b1/conv1/kernel", "b1/bn1/gamma"]  # under the Sequential's own name


def test_drop_path_drops_whole_samples_in_training_only():
    block = BasicBlock(8, shortcut="identity", drop_path_rate=0.5)
    x = nonnegative((64, 4, 4, 8))
    keras.utils.set_random_seed(0)
    y_train = keras.ops.convert_to_numpy(block(x, training=True))
    f = keras.ops.convert_to_numpy(block.residual_branch(x, training=True))
    # Each sample is either the shortcut alone or shortcut + 2 * F (rescaled), never a mix.
    dropped = np.all(np.isclose(y_train, np.maximum(x, 0)), axis=(1, 2, 3))
    kept = np.all(np.isclose(y_train, np.maximum(x + 2 * f, 0), atol=1e-5), axis=(1, 2, 3))
    assert np.all(dropped | kept) and 0 < dropped.sum() < 64
    np.testing.assert_array_equal(block(x, training=False), block(x, training=False))


def test_macs_of_a_block():
    block = BasicBlock(16)
    block.build((None, 32, 32, 16))
    assert block.count_macs((1, 32, 32, 16)) == 2 * 32 * 32 * 16 * 16 * 9


def test_every_convolution_gets_its_own_random_kernel_and_a_seed_repeats_them():
    # A Keras initializer instance repeats its values on every call; sharing one (as the blocks
    # once did) gave every same-shaped kernel of a network identical weights.
    def kernels(seed):
        keras.utils.set_random_seed(seed)
        inputs = keras.Input((6, 6, 8))
        x = BasicBlock(8, version="v2", shortcut="identity", name="a")(inputs)
        x = BasicBlock(8, version="v2", shortcut="identity", name="b")(x)
        model = keras.Model(inputs, x)
        return [keras.ops.convert_to_numpy(v) for v in model.trainable_variables if "kernel" in v.path]

    first = kernels(0)
    assert len(first) == 4
    for a, b in itertools.combinations(first, 2):
        assert not np.allclose(a, b)
    for a, b in zip(first, kernels(0)):
        np.testing.assert_array_equal(a, b)
