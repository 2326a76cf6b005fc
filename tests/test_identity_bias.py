"""Tests of keras_resnet.identity_bias and the `keras-resnet identity-bias` command (De & Smith, 2020)."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest
from harness import forbid_calls

from keras_resnet import ResNet, cli, data, models
from keras_resnet.diagnostics import identity_closeness
from keras_resnet.identity_bias import (
    check_unnormalised_at_init,
    fit_exponent,
    identity_bias,
    parse_net,
    residual_ratios,
    variance_count,
)


def v2_net(depth=20, size=8, width=0.25, seed=0, **kw):
    keras.utils.set_random_seed(seed)
    return ResNet(depth=depth, version="v2", shortcut="identity", include_top=False, input_shape=(size, size, 1),
                  width_multiplier=width, **kw)


def images(n=8, size=8, seed=0):
    return np.random.default_rng(seed).normal(size=(n, size, size, 1)).astype("float32")


def exponent(rows):
    return fit_exponent([r["index"] for r in rows], [r["ratio"] for r in rows])["exponent"]


# ---- the fit ------------------------------------------------------------------------------------

@pytest.mark.backend_neutral
def test_the_fit_recovers_a_known_power_law_and_skips_the_first_blocks():
    index = np.arange(1, 41)
    ratio = 2.5 * index ** -0.37
    fit = fit_exponent(index, ratio, first=1)
    assert fit["exponent"] == pytest.approx(-0.37) and fit["prefactor"] == pytest.approx(2.5)
    assert fit["r2"] == pytest.approx(1.0) and fit["blocks"] == 40
    # A first block off the law changes nothing once it is left out (the default: from block 2).
    ratio[0] = 50.0
    assert fit_exponent(index, ratio)["exponent"] == pytest.approx(-0.37)
    assert fit_exponent(index, ratio)["blocks"] == 39
    assert fit_exponent(index, ratio, first=1)["exponent"] < -0.5


@pytest.mark.backend_neutral
@pytest.mark.parametrize("index,ratio,message", [
    ([1, 2, 3], [1.0, 0.0, 0.5], "finite positive ratios"),
    ([1, 2, 3], [1.0, np.inf, 0.5], "finite positive ratios"),
    ([1, 2], [1.0, 0.5, 0.3], "of one length"),
    ([1, 2], [1.0, 0.5], "received 1 blocks"),
])
def test_the_fit_refuses_what_it_cannot_fit(index, ratio, message):
    with pytest.raises(ValueError, match=message):
        fit_exponent(index, ratio)


# ---- "without BatchNorm" is BatchNorm in inference mode at initialisation ---------------------------

@pytest.mark.backend_neutral
def test_inference_mode_at_init_is_the_block_without_batchnorm():
    model = v2_net()
    check_unnormalised_at_init(model)  # moving mean 0, variance 1, gamma 1, beta 0 everywhere
    block = model.residual_blocks[1]
    x = images(4, 8)[..., :1].repeat(block.filters, axis=-1)
    conv1, conv2 = (layer for layer in block.branch_layers if isinstance(layer, keras.layers.Conv2D))
    scale = 1 / np.sqrt(1 + block.bn_epsilon)  # all an initial BatchNorm does in inference mode
    by_hand = conv2(keras.ops.relu(scale * conv1(keras.ops.relu(scale * x))))
    np.testing.assert_allclose(np.asarray(block.residual_branch(x, training=False)), np.asarray(by_hand),
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(block(x, training=False)), x + np.asarray(by_hand), rtol=1e-5, atol=1e-6)


def test_a_model_whose_batchnorm_has_trained_is_refused_without_batchnorm():
    model = v2_net()
    model(images(), training=True)  # updates the moving statistics
    with pytest.raises(ValueError, match="moving_mean is not 0 everywhere"):
        residual_ratios(model, images(), batchnorm=False)


# ---- the measurement ---------------------------------------------------------------------------

@pytest.mark.backend_neutral
def test_ratios_match_diagnostics_in_both_settings_and_leave_the_model_unchanged():
    model, x = v2_net(), images()
    before = [keras.ops.convert_to_numpy(v) for v in model.non_trainable_variables]
    for batchnorm in (True, False):
        # Without BatchNorm each block's input is rescaled first; diagnostics runs the plain chain.
        got = residual_ratios(model, x, batchnorm=batchnorm)
        expected = identity_closeness(model, x, training=batchnorm)
        assert [r["block"] for r in got] == [r["block"] for r in expected]
        assert [r["index"] for r in got] == list(range(1, 10))
        assert [r["ratio"] for r in got] == pytest.approx([r["residual_ratio"] for r in expected], rel=1e-4)
    for a, b in zip(before, model.non_trainable_variables):
        np.testing.assert_array_equal(a, keras.ops.convert_to_numpy(b))


@pytest.mark.backend_neutral
def test_rescaling_measures_a_signal_the_plain_forward_pass_overflows():
    model, x = v2_net(depth=56, size=16), images(4, 16)
    huge = x * 1e36  # the variance doubles per block: float32 overflows before the last block
    assert not np.all(np.isfinite(np.asarray(model(huge, training=False))))
    got = [r["ratio"] for r in residual_ratios(model, huge, batchnorm=False)]
    assert np.all(np.isfinite(got))
    # A block without normalisation and without biases is positively homogeneous.
    assert got == pytest.approx([r["ratio"] for r in residual_ratios(model, x, batchnorm=False)], rel=1e-4)


@pytest.mark.backend_neutral
def test_with_batchnorm_the_ratio_falls_with_depth_without_it_it_does_not():
    model, x = v2_net(depth=56, size=16, width=1.0), images(8, 16)
    with_bn = exponent(residual_ratios(model, x, batchnorm=True))
    without = exponent(residual_ratios(model, x, batchnorm=False))
    assert with_bn < -0.2, with_bn
    assert without > -0.2 and without - with_bn > 0.1, (with_bn, without)
    # Counting variances (1 per branch, halved where option A zero-pads) predicts the slope.
    predicted = fit_exponent(range(1, 28), variance_count(model))["exponent"]
    assert with_bn == pytest.approx(predicted, abs=0.1), (with_bn, predicted)


def test_the_variance_count_adds_one_per_block_and_restarts_at_projections():
    identity = v2_net(depth=20, width=1.0)
    assert variance_count(identity) == pytest.approx(
        [(2 + k) ** -0.5 for k in range(3)] + [(5 / 2 + k) ** -0.5 for k in range(3)] + [(11 / 4 + k) ** -0.5 for k in range(3)])
    keras.utils.set_random_seed(0)
    projection = ResNet(depth=20, version="v2", shortcut="projection", include_top=False, input_shape=(8, 8, 1))
    assert variance_count(projection)[3:6] == pytest.approx([1.0, 2 ** -0.5, 3 ** -0.5])


@pytest.mark.parametrize("kwargs,message", [
    (dict(version="v1"), "version='v1'"),
    (dict(shortcut="none"), "shortcut='none'"),
])
def test_residual_ratios_needs_a_v2_resnet_with_shortcuts(kwargs, message):
    keras.utils.set_random_seed(0)
    model = ResNet(depth=8, input_shape=(8, 8, 1), include_top=False, **{"version": "v2", **kwargs})
    with pytest.raises(ValueError, match=message):
        residual_ratios(model, images())


def test_residual_ratios_checks_the_batch():
    model = v2_net()
    with pytest.raises(ValueError, match="at least 2 images; received 1"):
        residual_ratios(model, images(1))
    with pytest.raises(ValueError, match=r"received an array of shape \(2, 8, 8, 3\)"):
        residual_ratios(model, np.zeros((2, 8, 8, 3)))


# ---- the experiment and the command -------------------------------------------------------------

def test_nets_are_read_as_depths_or_depth_and_block():
    assert parse_net("110") == (110, "basic") and parse_net(1001) == (1001, "bottleneck")
    assert parse_net("164:bottleneck") == (164, "bottleneck") and parse_net((11, "bottleneck")) == (11, "bottleneck")


def test_the_experiment_writes_rows_fits_and_a_plot(tmp_path):
    report = identity_bias(["20", "11"], width_multiplier=0.25, image_size=8, batch=4, out=tmp_path,
                           set_global_seed=True)
    written = json.loads((tmp_path / "identity_bias.json").read_text())
    assert written["meta"]["nets"] == ["20:basic", "11:bottleneck"] and written["meta"]["batch"] == 4
    assert [(f["net"], f["setting"]) for f in written["fits"]] == [
        ("resnet20v2", "batchnorm"), ("resnet20v2", "no_batchnorm"),
        ("resnet11v2", "batchnorm"), ("resnet11v2", "no_batchnorm")]
    assert [f["blocks"] for f in written["fits"]] == [8, 8, 2, 2]
    assert [f["first_stage_exponent"] is None for f in written["fits"]] == [False, False, True, True]
    assert written["fits"][1]["predicted_exponent"] == 0.0 and written["fits"][0]["predicted_exponent"] < 0
    assert len(written["rows"]) == 2 * (9 + 3) and all(r["ratio"] > 0 for r in written["rows"])
    assert written["rows"] == report["rows"]
    assert (tmp_path / "identity_bias.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("kwargs,message", [
    (dict(nets=["21"]), "received depth=21"),
    (dict(nets=["1001:basic"]), "received depth=1001"),
    (dict(nets=["110:wide"]), "received block='wide'"),
    (dict(nets="110"), "received nets='110'"),
    (dict(nets=[]), "received nets=[]"),
    (dict(nets=["110", "110:basic"]), "must be distinct"),
    (dict(width_multiplier=0), "received width_multiplier=0"),
    (dict(image_size=3), "received image_size=3"),
    (dict(batch=1), "received batch=1"),
    (dict(batch=2000), "received batch=2000"),
    (dict(seed=-1), "received seed=-1"),
    (dict(out=""), "received out=''"),
])
def test_bad_arguments_fail_before_anything_is_built(kwargs, message, monkeypatch):
    forbid_calls(monkeypatch, (data, "load_dataset"), (models, "ResNet"))
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        identity_bias(**kwargs)


def test_the_command_prints_the_exponents(tmp_path, capsys):
    out = tmp_path / "out"
    assert cli.main(["identity-bias", "--nets", "20", "--width-multiplier", "0.25", "--image-size", "8", "--batch", "4",
                     "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    for text in ("resnet20v2", "no_batchnorm", "exponent", "predicted", "stage 1", "identity_bias.png"):
        assert text in printed
    assert json.loads((out / "identity_bias.json").read_text())["meta"]["seed"] == 0


@pytest.mark.parametrize("args,message", [
    (["--nets", "21"], "received depth=21"),
    (["--batch", "1"], "received batch=1"),
    (["--width-multiplier", "-1"], "received width_multiplier=-1.0"),
])
def test_the_command_refuses_bad_arguments_with_exit_2(args, message, capsys, tmp_path, monkeypatch):
    forbid_calls(monkeypatch, (data, "load_dataset"), (models, "ResNet"))
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["identity-bias", *args, "--out", str(tmp_path)])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
