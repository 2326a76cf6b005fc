"""Tests of keras_resnet.diagnostics and the `keras-resnet diagnose` command."""

from __future__ import annotations

import json
import math
import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_resnet import ResNet, cli
from keras_resnet.diagnostics import (
    DiagnosticsCallback,
    compare,
    diagnose,
    gradient_norms,
    gradient_summary,
    identity_closeness,
    plain_twin,
    plot_diagnostics,
    response_std,
)

SHAPE = (8, 8, 1)


def batch(n=8, shape=SHAPE, classes=10, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, *shape)).astype("float32"), rng.integers(0, classes, n)


def resnet20(**kw):
    keras.utils.set_random_seed(kw.pop("seed", 0))
    return ResNet.from_preset("resnet20", input_shape=SHAPE, classes=10, **kw)


def option_a(x, stride, channels):
    """Subsample by ``stride`` and zero-pad to ``channels``: the paper's option A shortcut."""
    x = x[:, ::stride, ::stride, :]
    return np.pad(x, [(0, 0), (0, 0), (0, 0), (0, channels - x.shape[-1])])


# ---- claim 2: zero-init residual blocks start as the identity -----------------------------

@pytest.mark.backend_neutral
@pytest.mark.parametrize("version", ["v1", "v2"])
@pytest.mark.parametrize("training", [False, True])
def test_zero_init_makes_every_block_and_the_stack_the_identity(version, training):
    model = resnet20(version=version, zero_init_residual=True)
    x, _ = batch()
    rows = identity_closeness(model, x, training=training)
    assert [r["block"] for r in rows] == [b.name for b in model.residual_blocks]
    assert [r["residual_ratio"] for r in rows] == [0.0] * 9
    assert [r["cosine"] for r in rows] == pytest.approx([1.0] * 9, abs=1e-6)
    # The two downsampling blocks are compared with their shortcut's output S(x).
    assert [r["reference"] for r in rows].count("shortcut") == 2
    assert rows[3]["reference"] == "shortcut" and rows[3]["stage"] == 2

    # Whole stack: the last block's output is the first block's input, subsampled by 4 and
    # zero-padded from 16 to 64 channels.
    blocks = model.residual_blocks
    probe = keras.Model(model.inputs, [blocks[0].input, blocks[-1].output])
    first_in, last_out = (np.asarray(t) for t in probe([x], training=training))
    np.testing.assert_array_equal(last_out, option_a(first_in, 4, 64))


def test_without_zero_init_no_block_is_the_identity():
    x, _ = batch()
    for training in (False, True):
        for row in identity_closeness(resnet20(), x, training=training):
            assert row["residual_ratio"] > 0.1, row
            assert row["cosine"] < 0.99, row


def test_plain_blocks_compare_with_the_subsampled_input():
    model = resnet20(shortcut="none")
    rows = identity_closeness(model, batch()[0])
    assert [r["reference"] for r in rows if r["block"].endswith("block1")] == ["input", "subsampled input", "subsampled input"]
    assert all(0 < r["residual_ratio"] < math.inf for r in rows)


# ---- response std (the paper's Figure 7) -------------------------------------------------

def test_response_std_is_zero_for_zero_init_and_the_bn_output_std_otherwise():
    x, _ = batch()
    assert [r["response_std"] for r in response_std(resnet20(zero_init_residual=True), x)] == [0.0] * 9
    # In a v1 block F(x) is the last BatchNorm's output: with batch statistics and gamma 1 its
    # std is 1 (up to epsilon); with the initial moving statistics it is not normalised.
    model = resnet20()
    batch_stats = [r["response_std"] for r in response_std(model, x, training=True)]
    assert batch_stats == pytest.approx([1.0] * 9, abs=1e-3)
    moving = [r["response_std"] for r in response_std(model, x, training=False)]
    assert all(np.isfinite(moving)) and min(moving) > 0 and max(abs(s - 1) for s in moving) > 0.1


@pytest.mark.backend_neutral
def test_batch_statistics_leave_the_model_unchanged():
    model = resnet20()
    before = [w.numpy() for w in model.weights]
    diagnose(model, *batch(), training=True)
    for old, new in zip(before, model.weights):
        np.testing.assert_array_equal(old, new.numpy())


# ---- gradient norms ----------------------------------------------------------------------

@pytest.mark.backend_neutral
def test_gradient_norms_one_finite_positive_value_per_block_in_order():
    model = resnet20()
    x, y = batch()
    rows = gradient_norms(model, x, y)
    assert [r["block"] for r in rows] == [b.name for b in model.residual_blocks]
    assert [r["depth_index"] for r in rows] == list(range(1, 10))
    assert [r["stage"] for r in rows] == [1, 1, 1, 2, 2, 2, 3, 3, 3]
    for row in rows:
        assert np.isfinite(row["grad_norm"]) and row["grad_norm"] > 0, row
        assert np.isfinite(row["weight_grad_norm"]) and row["weight_grad_norm"] > 0, row


def test_gradient_at_the_last_block_matches_a_split_model():
    # Independent of the layer-by-layer pass: split the functional graph at the last block.
    model = resnet20()
    x, y = batch()
    last = model.residual_blocks[-1]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Keras warns about the intermediate input's name
        head, tail = keras.Model(model.inputs, last.input), keras.Model(last.input, model.output)
        h = head(x, training=False)
        with tf.GradientTape() as tape:
            tape.watch(h)
            loss = keras.ops.mean(keras.losses.sparse_categorical_crossentropy(y, tail(h, training=False)))
    expected = float(tf.norm(tape.gradient(loss, h)))
    assert gradient_norms(model, x, y)[-1]["grad_norm"] == pytest.approx(expected, rel=1e-4)


# ResNet-110, 16x16x1, batch 32, BatchNorm on batch statistics, seeds 0-2: the first block's
# gradient norm was 53-67x the last block's (plain-110: 7e6-2e7x). Bound with a wide margin.
HIGHWAY_BOUNDS = (15.0, 250.0)


@pytest.mark.slow
def test_resnet110_gradient_highway_stays_bounded_where_plain110s_explodes():
    for seed in (0, 1, 2):
        x, y = batch(32, (16, 16, 1), seed=seed)
        keras.utils.set_random_seed(seed)
        model = ResNet.from_preset("resnet110", input_shape=(16, 16, 1), classes=10)
        resnet = gradient_summary(gradient_norms(model, x, y, training=True))["first_over_last"]
        assert HIGHWAY_BOUNDS[0] < resnet < HIGHWAY_BOUNDS[1], (seed, resnet)
        if seed == 0:  # the plain twin, from the same initial weights, on the same batch
            twin = plain_twin(model, seed=seed)
            plain = gradient_summary(gradient_norms(twin, x, y, training=True))["first_over_last"]
            assert plain > 1e4 * resnet, (resnet, plain)
        keras.backend.clear_session()


# ---- compare, plot, callback -------------------------------------------------------------

def test_plain_twin_starts_from_the_resnets_weights():
    model = resnet20(seed=3)
    twin = plain_twin(model, seed=3)
    assert twin.name == "plain20" and twin.shortcut == "none"
    assert len(twin.weights) == len(model.weights)
    for a, b in zip(model.weights, twin.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


@pytest.mark.backend_neutral
def test_compare_and_plot(tmp_path):
    x, y = batch()
    results = compare("resnet20", x, y, input_shape=SHAPE, classes=10)
    assert list(results) == ["resnet20", "plain20"]
    keys = {"block", "stage", "depth_index", "reference", "residual_ratio", "cosine", "response_std",
            "grad_norm", "weight_grad_norm"}
    assert all(set(row) == keys for rows in results.values() for row in rows)
    path = tmp_path / "plots" / "d.png"
    plot_diagnostics(results, str(path), title="t")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in path.parent.iterdir()] == ["d.png"]  # no temporary file left
    with pytest.raises(ValueError, match="non-empty"):
        plot_diagnostics({"empty": []}, str(path))


def test_the_global_random_generators_are_reseeded_only_when_asked(tmp_path):
    from keras_resnet.diagnostics import run_diagnosis

    x, y = batch(2)
    np.random.seed(123)  # noqa: NPY002 - the legacy global generator is what set_random_seed seeds
    before = np.random.get_state()[1].copy()  # noqa: NPY002
    compare("resnet20", x, y, plain=False, input_shape=SHAPE, classes=10)
    run_diagnosis("resnet20", batch=2, plain=False, out=tmp_path, input_shape=SHAPE)
    assert np.array_equal(np.random.get_state()[1], before)  # noqa: NPY002
    compare("resnet20", x, y, plain=False, seed=0, input_shape=SHAPE, classes=10)
    assert not np.array_equal(np.random.get_state()[1], before)  # noqa: NPY002


def test_callback_records_one_entry_per_epoch(tmp_path):
    keras.utils.set_random_seed(0)
    model = ResNet(depth=8, input_shape=SHAPE, classes=3)
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="sparse_categorical_crossentropy")
    x, y = batch(16, classes=3)
    out = tmp_path / "diag.json"
    every_epoch = DiagnosticsCallback(x[:8], y[:8], out=out)
    every_other = DiagnosticsCallback(x[:8], every=2)
    model.fit(x, y, epochs=2, batch_size=8, verbose=0, callbacks=[every_epoch, every_other])
    assert [h["epoch"] for h in every_epoch.history] == [1, 2]
    assert [h["epoch"] for h in every_other.history] == [2]
    assert "grad_norm" not in every_other.history[0]["blocks"][0]
    first, second = (h["blocks"] for h in every_epoch.history)
    assert len(first) == 3 and "loss" in every_epoch.history[0]["logs"]
    assert first[0]["grad_norm"] != second[0]["grad_norm"]  # measured on the trained weights
    saved = json.loads(out.read_text())
    assert saved["model"] == model.name and len(saved["history"]) == 2
    assert saved["history"][1]["blocks"][2]["cosine"] == pytest.approx(second[2]["cosine"])
    assert [p.name for p in tmp_path.iterdir()] == ["diag.json"]


# ---- bad input -------------------------------------------------------------------------------

def test_bad_input_raises_value_errors_naming_the_value():
    model = resnet20()
    x, y = batch(4)
    with pytest.raises(ValueError, match=r"received an array of shape \(4, 9, 8, 1\)"):
        identity_closeness(model, np.zeros((4, 9, 8, 1)))
    with pytest.raises(ValueError, match=r"one integer class label per sample \(4\); received an array of shape \(3,\)"):
        gradient_norms(model, x, y[:3])
    with pytest.raises(ValueError, match="received every=0"):
        DiagnosticsCallback(x, every=0)
    dense = keras.Sequential([keras.Input(SHAPE), keras.layers.Flatten(), keras.layers.Dense(2)])
    with pytest.raises(ValueError, match="has no residual blocks"):
        diagnose(dense, x)
    headless = ResNet.from_preset("resnet20", input_shape=SHAPE, include_top=False, pooling="avg")
    with pytest.raises(ValueError, match="needs a classifier output"):
        gradient_norms(headless, x, y)


def test_a_model_that_is_not_a_chain_is_refused():
    from keras_resnet import BasicBlock

    inputs = keras.Input(SHAPE)
    x = keras.layers.Conv2D(4, 3, padding="same")(inputs)
    y = BasicBlock(4)(x)
    branched = keras.Model(inputs, keras.layers.Add()([x, y]))  # a skip around the block
    with pytest.raises(ValueError, match="do not compute the model's output"):
        identity_closeness(branched, batch(2)[0])


def test_nested_model_with_normalization_is_diagnosed_through():
    model = resnet20()
    wrapped = keras.Sequential([keras.Input(SHAPE), keras.layers.Normalization(mean=[100.0], variance=[400.0]), model])
    raw = np.random.default_rng(0).uniform(0, 255, (4, *SHAPE)).astype("float32")
    y = np.arange(4)
    got, expected = diagnose(wrapped, raw, y), diagnose(model, (raw - 100) / 20, y)
    for a, b in zip(got, expected):
        assert a["grad_norm"] == pytest.approx(b["grad_norm"], rel=1e-4)
        assert a["cosine"] == pytest.approx(b["cosine"], rel=1e-4)


# ---- the command -----------------------------------------------------------------------------

def test_diagnose_command_end_to_end(tmp_path, capsys):
    out = tmp_path / "out"
    assert cli.main(["diagnose", "resnet20", "--input-shape", "8", "8", "1", "--batch", "4", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    for text in ("resnet20", "plain20", "stage3_block3", "residual_ratio", "grad_norm", "first_over_last"):
        assert text in printed
    report = json.loads((out / "diagnostics.json").read_text())
    assert list(report["results"]) == ["resnet20", "plain20"]
    assert report["bn_statistics"] == "batch" and report["batch"] == 4 and report["input_shape"] == [8, 8, 1]
    assert all(len(rows) == 9 for rows in report["results"].values())
    assert (out / "diagnostics.png").read_bytes()[:4] == b"\x89PNG"


def test_diagnose_command_on_a_file_and_on_digits(tmp_path, capsys):
    path = tmp_path / "tiny.keras"
    ResNet(depth=8, input_shape=SHAPE, classes=10).save(path)
    assert cli.main(["diagnose", str(path), "--batch", "4", "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "diagnostics.json").read_text())
    assert report["bn_statistics"] == "moving" and list(report["results"]) == ["resnet8", "plain8"]
    assert "plain8 is freshly initialised" in capsys.readouterr().out

    assert cli.main(["diagnose", "resnet20", "--dataset", "digits", "--input-shape", "8", "8", "1",
                     "--batch", "4", "--no-plain", "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "diagnostics.json").read_text())
    assert report["data"].startswith("digits") and report["input_shape"] == [8, 8, 1]


@pytest.mark.parametrize(
    "args,message",
    [
        (["resnet21"], "unknown model 'resnet21'"),
        (["no/such/model.keras"], "model file 'no/such/model.keras' does not exist"),
        (["resnet20", "--batch", "0"], "received batch=0"),
        (["resnet20", "--depth", "21"], "received depth=21"),
        (["resnet20", "--seed", "-1"], "received seed=-1"),
        (["resnet20", "--dataset", "digits", "--input-shape", "8", "8", "3"], "received a model input shape of (8, 8, 3)"),
    ],
)
def test_diagnose_bad_arguments_exit_2(args, message, capsys, tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["diagnose", *args, "--out", str(tmp_path)])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_diagnose_rejects_overrides_for_a_model_file(tmp_path, capsys):
    path = tmp_path / "tiny.keras"
    ResNet(depth=8, input_shape=SHAPE, classes=10).save(path)
    with pytest.raises(SystemExit):
        cli.main(["diagnose", str(path), "--depth", "20"])
    assert "apply to presets" in capsys.readouterr().err
