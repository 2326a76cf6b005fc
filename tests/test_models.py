"""Tests of ResNet: presets, parameter counts, multiply-adds, config, saving, weights, errors."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
from harness import random_images, run_model_test

from keras_resnet import ResNet
from keras_resnet.presets import PRESETS

# Presets that take more than ~10 s to build and save run in the slow tier; the fast tier keeps
# the smallest of each family (resnet20, plain20).
DEEP = {"resnet1202", "resnet1001", "resnet152", "resnet152v2", "resnet101", "resnet101v2", "resnet164",
        "resnet110", "plain110", "resnet50", "resnet50v2", "resnet34", "resnet18", "resnet32", "resnet44",
        "resnet56", "plain18", "plain34", "plain44", "plain56"}
# In the slow tier, one preset per family gets the whole harness (traced predict, tf.data,
# .keras round trip); the deeper members of a family repeat its blocks, so they are built,
# called once eagerly and rebuilt from their config (the 1,000-layer nets take a minute to trace).
FAMILY = {"resnet18", "resnet50", "resnet50v2", "resnet164", "plain18"}


def trainable_params(model) -> int:
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


def small_input(name):
    return (8, 8, 3) if PRESETS[name]["style"] == "cifar" else (32, 32, 3)


@pytest.mark.parametrize(  # the deep nets' traced graphs take minutes to compile on JAX: TensorFlow only
    "name", [pytest.param(n, marks=pytest.mark.slow) if n in DEEP else pytest.param(n, marks=pytest.mark.backend_neutral)
             for n in PRESETS]
)
def test_preset_harness(name, tmp_path):
    # Untrained, in inference mode (BatchNorm statistics 0 and 1), hundreds of residual blocks
    # add up to overflowing activations; zero-init keeps the deepest nets finite at the start.
    extra = {"zero_init_residual": True} if name in ("resnet1202", "resnet1001") else {}
    model = run_model_test(
        lambda: ResNet.from_preset(name, input_shape=small_input(name), classes=5, **extra),
        tmp_path,
        expected_output_shape=(5,),
        save=name not in DEEP or name in FAMILY,
        dataset=name not in DEEP or name in FAMILY,
        traced=name not in DEEP or name in FAMILY,
    )
    assert model.name == name
    assert model.depth == PRESETS[name]["depth"]
    blocks = model.residual_blocks
    assert blocks and all(b.shortcut == PRESETS[name]["shortcut"] for b in blocks)
    assert blocks[0].name == "stage1_block1"


# The ResNet paper's CIFAR nets (He et al., arXiv:1512.03385, Table 6: 0.27M, 0.46M, 0.66M, 0.85M and
# 1.7M parameters for depths 20 to 110), as exact trainable counts: convolutions without bias, BatchNorm
# gamma and beta, a dense head with bias; option A adds no parameters, option B's 1x1 projections on
# the two downsampling blocks add 2,752.
OPTION_A = {20: 269_722, 32: 464_154, 44: 658_586, 56: 853_018, 110: 1_727_962}
OPTION_B = {20: 272_474, 32: 466_906, 44: 661_338, 56: 855_770, 110: 1_730_714}


@pytest.mark.parametrize("depth", sorted(OPTION_A))
def test_cifar_parameter_counts_match_the_paper(depth):
    resnet = ResNet.from_preset(f"resnet{depth}")
    plain = ResNet.from_preset(f"plain{depth}")
    projection = ResNet.from_preset(f"resnet{depth}", shortcut="B")
    assert trainable_params(resnet) == OPTION_A[depth]
    assert trainable_params(plain) == OPTION_A[depth]  # option A adds no parameters
    assert trainable_params(projection) == OPTION_B[depth]


def test_keras_counts_include_batchnorm_statistics():
    assert ResNet.from_preset("resnet20").count_params() == 271_098


@pytest.mark.parametrize(
    "name,expected", [("resnet18", 11_689_512), ("resnet34", 21_797_672), ("resnet50", 25_557_032)]
)
def test_imagenet_parameter_counts_match_torchvision(name, expected):
    model = ResNet.from_preset(name, use_bias=False)
    assert model.input_shape == (None, 224, 224, 3)
    assert trainable_params(model) == expected


@pytest.mark.parametrize("depth,macs_m", [(20, 40.6), (56, 125.5), (110, 252.9)])
def test_cifar_multiply_adds_match_the_reference(depth, macs_m):
    assert round(ResNet.from_preset(f"resnet{depth}").count_macs() / 1e6, 1) == macs_m


def test_imagenet_multiply_adds():
    # Paper: 1.8G (18), 3.6G (34), 3.8G (50, stride on the 1x1 conv as in the original).
    assert round(ResNet.from_preset("resnet18").count_macs() / 1e9, 1) == 1.8
    assert round(ResNet.from_preset("resnet50").count_macs() / 1e9, 1) == 3.9
    # v1.5 (stride on the 3x3 conv): torchvision's 4.09G.
    assert round(ResNet.from_preset("resnet50", stride_in_1x1=False).count_macs() / 1e9, 2) == 4.09


def test_bottleneck_cifar_depths():
    model = ResNet(depth=164, block="bottleneck", version="v2", input_shape=(8, 8, 3))
    assert len(model.residual_blocks) == 54
    assert model.output_shape == (None, 10)


@pytest.mark.backend_neutral
def test_get_config_returns_the_constructor_arguments():
    args = dict(depth=32, style="cifar", version="v2", shortcut="full_projection", block="basic",
                zero_init_residual=True, include_top=True, input_shape=(16, 16, 1), classes=7,
                pooling=None, classifier_activation=None, width_multiplier=0.5, drop_path_rate=0.1)
    config = ResNet(**args).get_config()
    for key, value in args.items():
        assert config[key] == (list(value) if isinstance(value, tuple) else value), key
    assert ResNet(**{k: v for k, v in config.items()}).get_config() == config


def test_shortcut_aliases_are_canonical_in_config():
    assert ResNet(shortcut="A").get_config()["shortcut"] == "identity"
    assert ResNet(shortcut="C").shortcut == "full_projection"


@pytest.mark.parametrize("pooling,shape", [(None, (None, 2, 2, 64)), ("avg", (None, 64)), ("max", (None, 64))])
def test_include_top_false_and_pooling(pooling, shape):
    model = ResNet(depth=8, include_top=False, pooling=pooling, input_shape=(8, 8, 3))
    assert model.output_shape == shape


def test_headless_default_input_is_variable_size():
    model = ResNet(depth=8, include_top=False)
    assert model.input_shape == (None, None, None, 3)
    for size in (8, 12):
        assert model.predict(random_images((size, size, 3)), verbose=0).shape[1] == size // 4


def test_classifier_activation_none_gives_logits():
    model = ResNet(depth=8, input_shape=(8, 8, 3), classifier_activation=None)
    y = model.predict(random_images((8, 8, 3)), verbose=0)
    assert not np.allclose(y.sum(axis=1), 1.0)


def test_plain_twin_has_the_same_layers_without_shortcuts():
    resnet = ResNet.from_preset("resnet20", shortcut="B")
    plain = ResNet.from_preset("plain20")
    assert [layer.name for layer in resnet.layers] == [layer.name for layer in plain.layers]
    assert all(b.resolved_shortcut == "none" for b in plain.residual_blocks)


def test_summary_marks_identity_and_convolutional_blocks():
    lines = []
    ResNet.from_preset("resnet20", shortcut="B").summary(print_fn=lambda s, **_: lines.append(s))
    text = "\n".join(lines)
    assert "stage1_block1 (BasicBlock)" in text
    assert "stage2_block1  BasicBlock       convolutional block" in text
    assert "stage2_block2  BasicBlock       identity block" in text


@pytest.mark.backend_neutral
def test_mixed_precision_keeps_the_classifier_in_float32():
    model = ResNet(depth=8, input_shape=(8, 8, 3), dtype="mixed_float16")
    assert model.get_layer("stage1_block1").compute_dtype == "float16"
    assert model.get_layer("predictions").compute_dtype == "float32"
    y = model.predict(random_images((8, 8, 3)), verbose=0)
    assert y.dtype == np.float32
    np.testing.assert_allclose(y.sum(axis=1), 1.0, rtol=1e-3)


@pytest.mark.backend_neutral
def test_drop_path_rises_linearly_and_is_off_at_inference():
    model = ResNet(depth=20, drop_path_rate=0.2, input_shape=(8, 8, 3))
    rates = [b.drop_path_rate for b in model.residual_blocks]
    assert rates[0] == 0.0 and rates[-1] == pytest.approx(0.2)
    assert all(a < b for a, b in zip(rates, rates[1:]))
    x = random_images((8, 8, 3))
    np.testing.assert_array_equal(model(x, training=False), model(x, training=False))


@pytest.mark.backend_neutral
def test_weight_decay_adds_l2_losses_on_kernels():
    model = ResNet(depth=8, input_shape=(8, 8, 3), weight_decay=1e-4)
    model(random_images((8, 8, 3)))
    kernels = [w for w in model.trainable_weights if w.path.endswith("kernel")]
    expected = sum(float(np.sum(np.square(w.numpy()))) for w in kernels) * 1e-4 / 2
    assert len(model.losses) == len(kernels)
    assert float(sum(model.losses)) == pytest.approx(expected, rel=1e-4)


@pytest.mark.backend_neutral
def test_fit_trains_on_sparse_labels():
    model = ResNet(depth=8, input_shape=(8, 8, 1), classes=3)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    x = random_images((8, 8, 1), batch=16)
    y = np.arange(16) % 3
    history = model.fit(x, y, epochs=2, batch_size=8, verbose=0)
    assert np.isfinite(history.history["loss"]).all()


# ---- keras.applications weights ---------------------------------------------------------

def _randomize_batchnorm(model, seed=0):
    # Fresh BatchNorm statistics are 0/1, which would let a wrong mapping of them go unnoticed.
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            g, b, m, v = layer.get_weights()
            layer.set_weights([rng.uniform(0.5, 1.5, g.shape), rng.normal(0, 0.1, b.shape),
                               rng.normal(0, 0.1, m.shape), rng.uniform(0.5, 1.5, v.shape)])


@pytest.fixture(scope="module")
def keras_applications_resnet50(tmp_path_factory):
    reference = keras.applications.ResNet50(
        weights=None, input_shape=(64, 64, 3), classes=7, classifier_activation=None
    )
    _randomize_batchnorm(reference)
    path = tmp_path_factory.mktemp("weights") / "resnet50.weights.h5"
    reference.save_weights(path)
    return reference, str(path)


@pytest.mark.slow
def test_resnet50_loads_keras_applications_weights(keras_applications_resnet50):
    reference, path = keras_applications_resnet50
    ours = ResNet.from_preset("resnet50", weights=path, input_shape=(64, 64, 3), classes=7,
                              classifier_activation=None)
    x = random_images((64, 64, 3), batch=3)
    expected = reference.predict(x, verbose=0)
    np.testing.assert_allclose(ours.predict(x, verbose=0), expected, atol=1e-5, rtol=0)
    # The comparison can fail: the same architecture without the weights disagrees.
    fresh = ResNet.from_preset("resnet50", input_shape=(64, 64, 3), classes=7, classifier_activation=None)
    assert np.abs(fresh.predict(x, verbose=0) - expected).max() > 1e-2


@pytest.mark.slow
def test_headless_resnet50_loads_keras_applications_weights(keras_applications_resnet50, tmp_path):
    reference, _ = keras_applications_resnet50
    headless = keras.applications.ResNet50(weights=None, include_top=False, input_shape=(64, 64, 3), pooling="avg")
    headless.set_weights(reference.get_weights()[:-2])
    path = str(tmp_path / "notop.weights.h5")
    headless.save_weights(path)
    ours = ResNet.from_preset("resnet50", weights=path, include_top=False, pooling="avg", input_shape=(64, 64, 3))
    x = random_images((64, 64, 3))
    np.testing.assert_allclose(ours.predict(x, verbose=0), headless.predict(x, verbose=0), atol=1e-5, rtol=0)


@pytest.mark.slow
def test_mismatched_keras_applications_weights_name_the_layer(keras_applications_resnet50):
    _, path = keras_applications_resnet50
    with pytest.raises(ValueError, match=r"layer 'predictions.*\(2048, 5\).*\(2048, 7\)"):
        ResNet.from_preset("resnet50", weights=path, input_shape=(64, 64, 3), classes=5)
    with pytest.raises(ValueError, match="conv4_block7"):
        ResNet.from_preset("resnet101", weights=path, input_shape=(64, 64, 3), classes=7)
    with pytest.raises(ValueError, match="fit only the presets"):
        ResNet.from_preset("resnet20", weights=path)


@pytest.mark.backend_neutral
def test_own_weights_round_trip_and_mismatch(tmp_path):
    model = ResNet.from_preset("resnet20", input_shape=(8, 8, 3))
    path = str(tmp_path / "r20.weights.h5")
    model.save_weights(path)
    again = ResNet.from_preset("resnet20", input_shape=(8, 8, 3), weights=path)
    x = random_images((8, 8, 3))
    np.testing.assert_array_equal(again.predict(x, verbose=0), model.predict(x, verbose=0))
    with pytest.raises(ValueError, match=r"does not match resnet32: layer 'stage\d_block\d/conv\d'"):
        ResNet.from_preset("resnet32", input_shape=(8, 8, 3), weights=path)


@pytest.mark.slow
def test_save_and_load_in_a_fresh_process(tmp_path):
    model = ResNet.from_preset("resnet20", shortcut="B", version="v2", input_shape=(16, 16, 1), zero_init_residual=True)
    x = random_images((16, 16, 1), batch=4)
    # Trained-looking weights: zero-init and fresh statistics would hide loading mistakes.
    model.set_weights([w + np.random.default_rng(i).normal(0, 0.05, w.shape)
                       for i, w in enumerate(model.get_weights())])
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", model.predict(x, verbose=0))
    model.save(tmp_path / "m.keras")
    script = textwrap.dedent(f"""
        import numpy as np, keras
        import keras_resnet.models  # registers the package's classes: no custom_objects needed
        m = keras.saving.load_model({str(tmp_path / "m.keras")!r})
        assert type(m).__name__ == "ResNet", type(m)
        y = m.predict(np.load({str(tmp_path / "x.npy")!r}), verbose=0)
        np.testing.assert_array_equal(y, np.load({str(tmp_path / "y.npy")!r}))
        print("OK", m.name)
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "OK resnet20" in result.stdout


# ---- errors -------------------------------------------------------------------------------

BAD_ARGUMENTS = [
    (dict(style="mobile"), r"style must be 'cifar' or 'imagenet'; received style='mobile'"),
    (dict(version="v3"), r"version must be 'v1' or 'v2'; received version='v3'"),
    (dict(shortcut="D"), r"shortcut must be one of .*; received shortcut='D'"),
    (dict(block="wide"), r"block must be .*; received block='wide'"),
    (dict(depth=21), r"depth must be 6n\+2 .*20, 32, 44, 56, 110, 1202.*received depth=21"),
    (dict(depth=1001), r"received depth=1001; depth 1001 is 9n\+2: pass block='bottleneck'"),
    (dict(depth=32, block="bottleneck"), r"depth must be 9n\+2 .*received depth=32"),
    (dict(depth=42, style="imagenet"), r"one of \[18, 34, 50, 101, 152, 200\].*received depth=42"),
    (dict(depth=50, style="imagenet", block="basic"), r"ResNet-50 uses bottleneck blocks; received block='basic'"),
    (dict(classes=0), r"classes must be an integer >= 1 .*received classes=0"),
    (dict(pooling="sum", include_top=False), r"pooling must be None, 'avg' or 'max'; received pooling='sum'"),
    (dict(input_shape=(2, 2, 3)), r"input_shape=\(2, 2, 3\) is too small .* at least 4"),
    (dict(style="imagenet", depth=18, input_shape=(16, 16, 3)), r"at least 32"),
    (dict(input_shape=(32, 32)), r"input_shape must be \(height, width, channels\)"),
    (dict(weights="imagenet"), r"weights='imagenet' exists only for .*resnet50"),
    (dict(weights="missing.weights.h5"), r"weights file 'missing.weights.h5' does not exist"),
    (dict(shortcut="none", zero_init_residual=True), r"need shortcuts.*zero_init_residual=True"),
    (dict(stage_blocks=(3, 0, 3)), r"stage_blocks must hold integers >= 1; received 0 in stage_blocks=\(3, 0, 3\)"),
    (dict(stage_filters=(16, 32)), r"stage_filters must hold 3 integers"),
    (dict(width_multiplier=0), r"width_multiplier must be a number > 0; received width_multiplier=0"),
    (dict(drop_path_rate=1.0), r"drop_path_rate must be a fraction in \[0, 1\); received drop_path_rate=1.0"),
]


@pytest.mark.parametrize("kwargs,message", BAD_ARGUMENTS, ids=[str(k) for k, _ in BAD_ARGUMENTS])
def test_bad_arguments_fail_before_building(kwargs, message, monkeypatch):
    def no_graph(*args, **kw):
        raise AssertionError("a layer was built before the arguments were checked")

    monkeypatch.setattr(keras, "Input", no_graph)
    with pytest.raises(ValueError, match=message):
        ResNet(**kwargs)


def test_imagenet_weights_need_1000_classes():
    with pytest.raises(ValueError, match="needs classes=1000; received classes=10"):
        ResNet.from_preset("resnet50", weights="imagenet", classes=10)


def test_unknown_preset_suggests_names():
    with pytest.raises(ValueError, match=r"unknown preset 'resnet21'.*Did you mean"):
        ResNet.from_preset("resnet21")


def test_custom_stages():
    model = ResNet(stage_blocks=(1, 1), stage_filters=(8, 16), input_shape=(8, 8, 3), classes=3)
    assert model.depth == 6
    assert [b.name for b in model.residual_blocks] == ["stage1_block1", "stage2_block1"]
    assert model.output_shape == (None, 3)


@pytest.mark.parametrize("version,shortcut", [("v1", "identity"), ("v2", "projection")])
def test_converts_to_tflite_builtin_ops_only(version, shortcut, tmp_path):
    # Only keras.layers / keras.ops inside the blocks: no Flex (Select TF ops) delegate needed.
    import tensorflow as tf
    from ai_edge_litert.interpreter import Interpreter

    from keras_resnet.litert import tflite_ops

    model = ResNet(depth=8, version=version, shortcut=shortcut, input_shape=(8, 8, 1), classes=3)
    model.export(str(tmp_path / "sm"), format="tf_saved_model", verbose=False)
    converter = tf.lite.TFLiteConverter.from_saved_model(str(tmp_path / "sm"))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    content = converter.convert()
    ops = set(tflite_ops(content))
    assert "CONV_2D" in ops and not any(op.startswith("Flex") for op in ops)
    interpreter = Interpreter(model_content=content)
    interpreter.allocate_tensors()
    x = random_images((8, 8, 1), batch=1)
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x)
    interpreter.invoke()
    y = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
    np.testing.assert_allclose(y, model.predict(x, verbose=0), atol=1e-5)


def test_preset_table_clears_the_session_only_when_asked():
    from keras_resnet.models import preset_table

    keras.config.set_dtype_policy("mixed_float16")
    try:
        assert preset_table(["resnet20"])[0]["params"] == 271_098
        assert keras.config.dtype_policy().name == "mixed_float16"  # the caller's setting stays
        preset_table(["resnet20"], clear_session=True)
        assert keras.config.dtype_policy().name == "float32"  # clear_session resets it
    finally:
        keras.config.set_dtype_policy("float32")
def test_stage_layout_is_the_one_depth_rule():
    from keras_resnet import experiments, presets, tuning

    assert presets.stage_layout(56) == ("basic", (9, 9, 9), 56)
    assert presets.stage_layout(164, block="bottleneck") == ("bottleneck", (18, 18, 18), 164)
    assert presets.stage_layout(101, "imagenet") == ("bottleneck", (3, 4, 23, 3), 101)
    # The model and the search space refuse depth 21 with the same message; the experiments,
    # which also take bottleneck depths, name both rules.
    message = r"depth must be 6n\+2 for CIFAR-style ResNets with basic blocks .* received depth=21"
    for check in (lambda: presets.stage_layout(21), lambda: ResNet(depth=21),
                  lambda: tuning.SearchSpace(depths=[21]).validate()):
        with pytest.raises(ValueError, match=message):
            check()
    with pytest.raises(ValueError, match=r"depth must be 6n\+2 \(basic blocks: .*\) or 9n\+2 \(bottleneck .* received depth=21"):
        experiments.degradation(depths=(21,), dry_run=True)
    from keras_resnet import models

    assert not hasattr(models, "_resolve_stages")
