"""Tests of keras_resnet.finetune: pretrained backbones, their preprocessing, the two phases,
resuming across the phase boundary, the `train --weights` options and the transfer experiment."""

from __future__ import annotations

import csv
import json
import math
import os
import signal
import socket
import subprocess
import sys
import types
from pathlib import Path

import keras
import numpy as np
import pytest

from keras_resnet import cli, export, finetune
from keras_resnet.data import from_arrays, load_dataset
from keras_resnet.layers import FusedBatchNormalization
from keras_resnet.models import ResNet
from keras_resnet.training import TrainConfig, build_model, train

ROOT = Path(__file__).resolve().parents[1]
TINY_CONFIG = dict(image_size=8, batch_size=256)


def read_history(path):
    with open(path) as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """A model.keras of this package's layout (pixels -> normalize -> ResNet-8) on 8x8 digits,
    with BatchNorm moving statistics that are not their initial values."""
    keras.utils.set_random_seed(0)
    data = load_dataset("digits", image_size=8, batch_size=256)
    model = build_model("resnet20", data, depth=8)
    rng = np.random.default_rng(0)
    for w in model.weights:
        if "moving" in w.path:
            w.assign(rng.uniform(0.5, 1.5, w.shape).astype("float32"))
    path = tmp_path_factory.mktemp("source") / "model.keras"
    model.save(path)
    return path, model


def backbone_features(model, x):
    """The pooled features of a fine-tuning model (everything but the head)."""
    resnet = finetune.backbone(model)
    return np.asarray(resnet(model.get_layer("normalize")(x), training=False))


# ---- preprocessing travels with the weights ----------------------------------------------------

@pytest.mark.slow  # two ResNet-50s: about 10 s
def test_caffe_preprocessing_with_a_flipped_stem_equals_keras_applications(tmp_path):
    keras.utils.set_random_seed(1)
    reference = keras.applications.ResNet50(weights=None, include_top=False, pooling="avg", input_shape=(32, 32, 3))
    rng = np.random.default_rng(1)
    for layer in reference.layers:  # BatchNorm statistics away from 0 and 1, so that their mapping counts
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.moving_mean.assign(rng.normal(0, 0.1, layer.moving_mean.shape).astype("float32"))
            layer.moving_variance.assign(rng.uniform(0.5, 2, layer.moving_variance.shape).astype("float32"))
    path = tmp_path / "resnet50.weights.h5"
    reference.save_weights(path)
    dataset = types.SimpleNamespace(input_shape=(32, 32, 3), num_classes=5, name="rgb", mean=(0,) * 3, std=(1,) * 3)
    model, info = finetune.build_model("resnet50", dataset, TrainConfig(weights=str(path)))
    assert info["source"] == "keras_applications" and info["stages"] == 4
    assert model.input_shape == (None, 32, 32, 3) and model.output_shape == (None, 5)
    normalize = model.get_layer("normalize")
    assert isinstance(normalize, keras.layers.Normalization)
    assert not any(isinstance(layer, keras.layers.Lambda) for layer in model.layers)

    x = rng.uniform(0, 255, (3, 32, 32, 3)).astype("float32")
    expected = np.asarray(reference(keras.applications.resnet.preprocess_input(x.copy()), training=False))
    ours = backbone_features(model, x)
    assert np.abs(expected).max() > 1e-3
    np.testing.assert_allclose(ours, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())
    stem = finetune.backbone(model).get_layer("stem_conv").get_weights()[0]
    np.testing.assert_array_equal(stem, reference.get_layer("conv1_conv").get_weights()[0][:, :, ::-1, :])


def test_finetuning_from_a_keras_model_reuses_its_normalisation(source):
    path, original = source
    # Other images than the source's: the normalisation must still be the source's own.
    rng = np.random.default_rng(2)
    x, y = rng.uniform(200, 255, (20, 8, 8, 1)), np.arange(20) % 3
    dataset = from_arrays(x, y, x[:6], y[:6], batch_size=10)
    model, info = finetune.build_model("resnet20", dataset, TrainConfig(weights=str(path)))
    assert info["source"] == "keras_model" and model.output_shape == (None, 3)
    ours, theirs = model.get_layer("normalize"), original.get_layer("normalize")
    assert ours.get_config()["mean"] == theirs.get_config()["mean"] != list(dataset.mean)
    assert ours.get_config()["variance"] == theirs.get_config()["variance"]
    # The same features as the source's network without its classifier.
    resnet = finetune.backbone(original)
    pooled = keras.Model(resnet.input, resnet.get_layer("avg_pool").output)
    images = x[:4].astype("float32")
    expected = np.asarray(pooled(theirs(images), training=False))
    np.testing.assert_allclose(backbone_features(model, images), expected, rtol=1e-5, atol=1e-5)


def test_our_own_weights_file_loads_without_its_top_and_normalises_with_the_dataset(tmp_path):
    keras.utils.set_random_seed(5)
    original = ResNet.from_preset("resnet20", input_shape=(8, 8, 1), classes=10)
    path = tmp_path / "resnet20.weights.h5"
    original.save_weights(path)
    data = types.SimpleNamespace(input_shape=(8, 8, 1), num_classes=4, name="d", mean=(100.0,), std=(50.0,))
    model, info = finetune.build_model("resnet20", data, TrainConfig(weights=str(path)))
    assert info["source"] == "keras_resnet_weights" and model.output_shape == (None, 4)
    assert model.get_layer("normalize").get_config()["mean"] == [100.0]
    assert model.get_layer("normalize").get_config()["variance"] == [2500.0]
    resnet = finetune.backbone(model)
    for name in ("stem_conv", "stage1_block1", "stage3_block3"):
        for ours, theirs in zip(resnet.get_layer(name).get_weights(), original.get_layer(name).get_weights()):
            np.testing.assert_array_equal(ours, theirs)


# ---- the phases -------------------------------------------------------------------------------

def test_frozen_batchnorm_runs_in_inference_mode():
    bn = FusedBatchNormalization()
    bn.build((None, 4, 4, 3))
    bn.trainable = False
    x = np.random.default_rng(0).normal(3, 2, (8, 4, 4, 3)).astype("float32")
    y = np.asarray(bn(x, training=True))
    np.testing.assert_array_equal(np.asarray(bn.moving_mean), np.zeros(3))
    np.testing.assert_array_equal(np.asarray(bn.moving_variance), np.ones(3))
    np.testing.assert_allclose(y, x / np.sqrt(1 + bn.epsilon), rtol=1e-6)  # moving statistics, not the batch's


def test_phase_1_trains_the_head_and_leaves_the_backbone_and_its_statistics_alone(tmp_path, source):
    path, original = source
    rng = np.random.default_rng(4)
    x, y = rng.uniform(0, 255, (40, 8, 8, 1)), np.arange(40) % 10
    data = from_arrays(x, y, x[:10], y[:10], batch_size=10)
    config = TrainConfig(epochs=1, freeze_epochs=1, weights=str(path))
    result = train("resnet20", data, config, out=tmp_path / "run", verbose=0)
    before, after = finetune.backbone(original), finetune.backbone(result.model)
    moving = [w for w in after.weights if "moving" in w.path]
    assert len(moving) == 2 * 7  # the stem's BatchNorm and two in each of the 3 blocks of a ResNet-8
    old = {w.path: np.asarray(w) for w in before.weights}
    for w in after.weights:  # kernels, gammas, betas and moving statistics: all unchanged
        np.testing.assert_array_equal(np.asarray(w), old[w.path], err_msg=w.path)
    assert not np.allclose(np.asarray(result.model.get_layer("predictions").kernel), 0)
    phases = result.metrics["finetune"]["phases"]
    assert [p["trains"] for p in phases] == ["the new head (backbone frozen)"]
    assert phases[0]["trainable_params"] == 64 * 10 + 10  # the new head: 64 features -> 10 classes

    # Other weights make another fine-tune (the signature holds their SHA-256): no resuming with them.
    state = json.loads((tmp_path / "run" / "state.json").read_text())
    (tmp_path / "run" / "state.json").write_text(json.dumps({**state, "finished": False}))
    other = tmp_path / "other" / "model.keras"
    other.parent.mkdir()
    keras.models.clone_model(original).save(other)  # the same architecture, fresh weights
    with pytest.raises(ValueError, match=r"other settings \(config.weights: .* then, .* now; weights: 'sha256:"):
        train("resnet20", data, TrainConfig(epochs=1, freeze_epochs=1, weights=str(other)), out=tmp_path / "run")


def test_phase_2_unfreezes_all_or_the_last_k_stages(source):
    path, _ = source
    data = types.SimpleNamespace(input_shape=(8, 8, 1), num_classes=4, name="d", mean=(0,), std=(1,))
    model, _ = finetune.build_model("resnet20", data, TrainConfig(weights=str(path)))
    resnet = finetune.backbone(model)
    groups = [[layer.name for layer in g] for g in finetune.stage_groups(resnet)]
    assert groups == [["stem_conv", "stem_bn"], ["stage1_block1"], ["stage2_block1"], ["stage3_block1"]]

    def trainable():
        return {layer.name for layer in resnet.layers if layer.weights and layer.trainable}

    def phase(what):
        finetune.apply_phase(model, finetune.Phase(2, 1, 2, what))
        return trainable(), model.get_layer("predictions").trainable, len(model.trainable_weights)

    assert phase("head") == (set(), True, 2)
    assert phase(1) == ({"stage3_block1"}, True, 2 + len(resnet.get_layer("stage3_block1").trainable_weights))
    assert phase(2)[0] == {"stage2_block1", "stage3_block1"}
    assert phase(3)[0] == {"stage1_block1", "stage2_block1", "stage3_block1"}  # the stem stays frozen
    assert phase("all") == ({"stem_conv", "stem_bn", "stage1_block1", "stage2_block1", "stage3_block1"}, True,
                            2 + len(resnet.trainable_weights))
    # A frozen block freezes its inner layers (BatchNorms included), an unfrozen one frees them.
    phase(1)
    assert not any(bn.trainable for bn in resnet.get_layer("stage2_block1").branch_layers)
    assert all(layer.trainable for layer in resnet.get_layer("stage3_block1").branch_layers)
    with pytest.raises(ValueError, match=r"unfreeze must be 'all' or at most the backbone's 3 stages; received unfreeze=4"):
        phase(4)


def moving_statistics(model):
    return {w.path: np.asarray(w).copy() for w in finetune.backbone(model).weights if "moving" in w.path}


def test_phase_2_keeps_every_batchnorm_frozen_unless_told(source):
    path, _ = source
    data = types.SimpleNamespace(input_shape=(8, 8, 1), num_classes=4, name="d", mean=(0,), std=(1,))
    model, info = finetune.build_model("resnet20", data, TrainConfig(weights=str(path)))
    assert info["freeze_batchnorm"] is False  # the default: they train
    resnet = finetune.backbone(model)
    norms = finetune.batchnorm_layers(resnet)
    assert len(norms) == 7 and all(isinstance(n, FusedBatchNormalization) for n in norms)  # stem + 2 per block
    convs = [layer for layer in resnet.get_layer("stage3_block1").branch_layers if isinstance(layer, keras.layers.Conv2D)]

    finetune.apply_phase(model, finetune.Phase(2, 1, 2, "all", 0.1, freeze_batchnorm=True))
    assert not any(n.trainable for n in norms) and all(c.trainable for c in convs)
    assert resnet.get_layer("stem_conv").trainable
    trained = {w.path for w in model.trainable_weights}
    assert not any("gamma" in p or "beta" in p for p in trained)  # gamma and beta stay too
    assert sum(math.prod(n.gamma.shape) * 2 for n in norms) == (
        sum(math.prod(w.shape) for w in resnet.weights if "moving" not in w.path)
        - sum(math.prod(w.shape) for w in model.trainable_weights if "predictions" not in w.path))
    finetune.apply_phase(model, finetune.Phase(2, 1, 2, 1, 0.1, freeze_batchnorm=True))  # the last stage only
    assert not any(n.trainable for n in norms) and all(c.trainable for c in convs)
    finetune.apply_phase(model, finetune.Phase(2, 1, 2, "all", 0.1, freeze_batchnorm=False))
    assert all(n.trainable for n in norms)


@pytest.mark.slow
def test_phase_2_with_frozen_batchnorm_trains_convolutions_and_keeps_the_statistics(tmp_path, source, monkeypatch):
    # A dataset by name with weights that bring their own normalisation: nothing is measured on it.
    import keras_resnet.data

    def measured(*args, **kwargs):
        raise AssertionError("the dataset's statistics were measured")

    monkeypatch.setattr(keras_resnet.data, "_channel_stats", measured)
    path, original = source
    config = TrainConfig(epochs=1, freeze_epochs=0, weights=str(path), freeze_batchnorm=True, **TINY_CONFIG)
    result = train("resnet20", "digits", config, out=tmp_path / "frozen", verbose=0)
    before = moving_statistics(original)
    after = moving_statistics(result.model)
    assert after.keys() == before.keys() and len(after) == 14
    for key, value in after.items():
        np.testing.assert_array_equal(value, before[key], err_msg=key)
    old, new = finetune.backbone(original), finetune.backbone(result.model)
    assert not np.allclose(new.get_layer("stem_conv").kernel, old.get_layer("stem_conv").kernel)  # convolutions train
    for name in ("gamma", "beta"):
        np.testing.assert_array_equal(new.get_layer("stem_bn").get_weights()[0 if name == "gamma" else 1],
                                      old.get_layer("stem_bn").get_weights()[0 if name == "gamma" else 1])
    ft = result.metrics["finetune"]
    assert ft["freeze_batchnorm"] is True
    assert [(p["phase"], p["batchnorm_frozen"], p["batchnorm"]) for p in ft["phases"]] == [
        (2, True, "frozen (inference mode)")]
    norm = original.get_layer("normalize").get_config()
    assert result.metrics["config"]["mean"] == ft["mean"] == norm["mean"]
    assert ft["std"] == pytest.approx(np.sqrt(norm["variance"]).tolist())
    state = json.loads((tmp_path / "frozen" / "state.json").read_text())
    assert state["signature"]["config"]["freeze_batchnorm"] is True


@pytest.mark.slow
def test_phase_2_with_trained_batchnorm_moves_the_statistics(tmp_path, source):
    path, original = source
    rng = np.random.default_rng(6)
    x, y = rng.uniform(0, 255, (20, 8, 8, 1)), np.arange(20) % 4
    data = from_arrays(x, y, x[:8], y[:8], batch_size=10)
    config = TrainConfig(epochs=1, freeze_epochs=0, weights=str(path))  # the default: BatchNorm trains
    result = train("resnet20", data, config, out=tmp_path / "trained", verbose=0)
    before, after = moving_statistics(original), moving_statistics(result.model)
    assert all(not np.allclose(after[k], before[k]) for k in after)
    phases = result.metrics["finetune"]["phases"]
    assert [(p["batchnorm_frozen"], p["batchnorm"]) for p in phases] == [(False, "7 of 7 layers train (batch statistics)")]
    assert result.metrics["config"]["freeze_batchnorm"] is None and result.metrics["finetune"]["freeze_batchnorm"] is False


def test_weights_stats_come_from_the_weights_without_building_a_model(tmp_path, source):
    path, original = source
    norm = original.get_layer("normalize").get_config()
    mean, std = finetune.weights_stats(str(path))
    assert list(mean) == norm["mean"] and std == pytest.approx(np.sqrt(norm["variance"]))
    assert finetune.weights_stats("imagenet") == (finetune.CAFFE_MEAN_RGB, (1.0, 1.0, 1.0))
    own = tmp_path / "own.weights.h5"
    finetune.backbone(original).save_weights(own)
    assert finetune.weights_stats(str(own)) is None  # no normalisation in the file: the dataset's are measured
    assert finetune.weights_stats(None) is None
    assert finetune.normalization_stats({"mean": None, "variance": None, "axis": -1}) is None  # an adapted layer


def test_freeze_batchnorm_is_validated():
    with pytest.raises(ValueError, match=r"freeze_batchnorm must be True, False or None \(False: they train\); "
                                         r"received freeze_batchnorm='no'"):
        TrainConfig(weights="imagenet", freeze_batchnorm="no")
    with pytest.raises(ValueError, match="freeze_batchnorm only matter when fine-tuning: pass weights"):
        TrainConfig(freeze_batchnorm=True)
    assert finetune.resolved_freeze_batchnorm(TrainConfig(weights="imagenet")) is False


def test_plan_phases_and_their_rates():
    config = TrainConfig(weights="imagenet", epochs=6, lr=0.2, finetune_lr_factor=0.05, warmup_lr=0.02)
    phases = finetune.plan_phases(config, 6)
    assert [(p.number, p.start, p.end, p.trainable) for p in phases] == [(1, 0, 3, "head"), (2, 3, 6, "all")]
    second = phases[1].config(config, 128)
    assert second.lr == pytest.approx(0.01) and second.warmup_lr == pytest.approx(0.001)
    only_head = finetune.plan_phases(TrainConfig(weights="imagenet", freeze_epochs=4), 4)
    assert [p.trainable for p in only_head] == ["head"]
    at_once = finetune.plan_phases(TrainConfig(weights="imagenet", freeze_epochs=0, unfreeze=2), 4)
    assert [(p.start, p.end, p.trainable) for p in at_once] == [(0, 4, 2)]


# ---- argument errors ---------------------------------------------------------------------------

@pytest.mark.parametrize(
    "args, message",
    [
        (["--weights", "weights.h5"], "weights must be None, 'imagenet', or the path of a .weights.h5 file"),
        (["--weights", "missing.keras"], "weights file 'missing.keras' does not exist"),
        (["--weights", "imagenet"], "weights='imagenet' exists for the presets resnet50, resnet101, resnet152 (keras.applications' ResNets); received model='resnet20'"),
        (["--weights", "imagenet", "--model", "resnet50", "--depth", "101"], "model overrides ['depth'] do not apply when fine-tuning"),
        (["--weights", "SOURCE", "--model", "resnet20"], "--model resnet20 does not apply with --weights"),
        (["--freeze-epochs", "2"], "freeze_epochs only matter when fine-tuning: pass weights"),
        (["--weights", "SOURCE", "--freeze-epochs", "-1"], "freeze_epochs must be an integer >= 0 or None (half of the epochs); received freeze_epochs=-1"),
        (["--weights", "SOURCE", "--epochs", "2", "--freeze-epochs", "3"], "freeze_epochs must be at most epochs (2); received freeze_epochs=3"),
        (["--weights", "SOURCE", "--unfreeze", "0"], "unfreeze must be 'all' or an integer >= 1 (the last stages to train); received unfreeze=0"),
        (["--weights", "SOURCE", "--unfreeze", "some"], "received unfreeze='some'"),
        (["--weights", "SOURCE", "--finetune-lr-factor", "0"], "finetune_lr_factor must be a number > 0; received finetune_lr_factor=0.0"),
        (["--unfreeze", "2"], "unfreeze only matter when fine-tuning"),
        (["--freeze-batchnorm"], "freeze_batchnorm only matter when fine-tuning"),
    ],
)
def test_bad_finetuning_arguments_exit_2_naming_the_value(tmp_path, capsys, source, args, message):
    args = [str(source[0]) if a == "SOURCE" else a for a in args]
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["train", "--out", str(tmp_path / "run"), *args])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_bad_finetuning_arguments_in_python(tmp_path, source):
    with pytest.raises(ValueError, match=r"fine-tuning \(weights=...\) builds its model: pass a preset name"):
        train(keras.Sequential([keras.Input((8, 8, 1))]), "digits", TrainConfig(weights=str(source[0])), out=tmp_path / "r")
    with pytest.raises(ValueError, match=r"keras.applications' ImageNet weights need RGB images \(3 channels\); "
                                         r"dataset 'digits' has 1"):
        train("resnet50", "digits", TrainConfig(weights="imagenet", epochs=1), out=tmp_path / "r2", verbose=0)


def _offline() -> bool:
    try:
        socket.getaddrinfo("storage.googleapis.com", 443)
        return False
    except OSError:
        return True


@pytest.mark.skipif(not _offline() or finetune.imagenet_cache_file("resnet50").exists(),
                    reason="needs a machine without network and without the cached ImageNet weights")
def test_imagenet_weights_offline_fail_saying_where_to_put_the_file(tmp_path):
    x, y = np.zeros((4, 32, 32, 3)), np.arange(4) % 2
    data = from_arrays(x, y, x, y, batch_size=2)
    with pytest.raises(ValueError, match=r"could not download keras.applications' ImageNet weights for resnet50 .*"
                                         r"place it at .*models/resnet50_weights_tf_dim_ordering_tf_kernels_notop\.h5 "
                                         r"\(Keras's cache, ~/\.keras/models"):
        train("resnet50", data, TrainConfig(weights="imagenet", epochs=1), out=tmp_path / "run", verbose=0)


# ---- end to end (slow) ------------------------------------------------------------------------

@pytest.mark.slow
def test_resnet50_finetunes_from_keras_applications_weights_and_exports(tmp_path):
    keras.utils.set_random_seed(3)
    reference = keras.applications.ResNet50(weights=None, include_top=False, input_shape=(32, 32, 3))
    weights = tmp_path / "resnet50.weights.h5"
    reference.save_weights(weights)
    keras.backend.clear_session()
    rng = np.random.default_rng(3)
    y = np.arange(10) % 5
    x = rng.integers(0, 80, (10, 32, 32, 3)) + 30 * y[:, None, None, None]  # brightness says the class
    names = ["a", "b", "c", "d", "e"]
    data = from_arrays(x, y, x[:5], y[:5], class_names=names, batch_size=2, augment=False)
    config = TrainConfig(epochs=2, freeze_epochs=1, lr=0.01, weights=str(weights))
    result = train("resnet50", data, config, out=tmp_path / "run", verbose=0, set_global_seed=True)
    model, metrics = result.model, result.metrics
    assert model.input_shape == (None, 32, 32, 3) and model.output_shape == (None, 5)
    assert [layer.name for layer in model.layers] == ["pixels", "normalize", "resnet50", "predictions"]
    ft = metrics["finetune"]
    assert ft["source"] == "keras_applications" and ft["preprocessing"].startswith("caffe")
    assert [(p["phase"], p["first_epoch"], p["last_epoch"]) for p in ft["phases"]] == [(1, 1, 1), (2, 2, 2)]
    assert ft["phases"][0]["trainable_params"] == 2048 * 5 + 5
    assert ft["phases"][1]["trainable_params"] > 23_000_000 and ft["phases"][1]["lr"] == pytest.approx(0.001)
    assert ft["phases"][1]["batchnorm"].endswith("train (batch statistics)")
    assert finetune.weights_stats(str(weights)) == (finetune.CAFFE_MEAN_RGB, (1.0, 1.0, 1.0))
    assert metrics["config"]["mean"] == list(finetune.CAFFE_MEAN_RGB) and metrics["config"]["std"] == [1.0] * 3
    assert metrics["epochs"] == 2 and 0 <= metrics["test_accuracy"] <= 1

    # It exports like any other model (model.keras loading without custom objects is tested for
    # every run in tests/test_training.py).
    records = export.export_all(model, "finetuned", tmp_path / "models", x_test=x[:5].astype("float32"), y_test=y[:5],
                                class_names=names, latency_runs=2)
    assert [r["format"] for r in records] == ["saved_model"] and records[0]["passed"], records
    assert records[0]["max_abs_diff"] <= 1e-4


# Sessions of one fine-tuning run (2 epochs with the backbone frozen, 3 fine-tuning), each killed
# as by the OOM killer right after the epoch given on its command line has finished.
KILLED_AFTER = """
import os, signal, sys

import keras

from keras_resnet.training import TrainConfig, train


class KillAfter(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 == int(sys.argv[3]):
            sys.stdout.flush()
            os.kill(os.getpid(), signal.SIGKILL)


config = TrainConfig(epochs=5, freeze_epochs=2, weights=sys.argv[2], image_size=8, batch_size=128)
train("resnet20", "digits", config, out=sys.argv[1], verbose=2, callbacks=[KillAfter()], set_global_seed=True)
"""


@pytest.mark.slow
def test_finetuning_resumes_in_phase_1_at_the_boundary_and_in_phase_2_after_sigkill(tmp_path, source):
    out, weights = tmp_path / "run", str(source[0])
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    # Exactly at the boundary and inside phase 2 (a kill inside one phase is the resume that
    # tests/test_training.py checks for every run).
    for kill_after in (2, 4):
        run = subprocess.run([sys.executable, "-c", KILLED_AFTER, str(out), weights, str(kill_after)],
                             capture_output=True, text=True, env=env, cwd=ROOT, timeout=900)
        assert run.returncode == -signal.SIGKILL, run.stdout[-3000:] + run.stderr[-3000:]
        assert [int(r["epoch"]) for r in read_history(out / "history.csv")] == list(range(1, kill_after + 1))
        if kill_after > 2:  # a resumed session; Keras counts up to the phase's last epoch
            assert "Resuming" in run.stdout and f"Epoch {kill_after}/5" in run.stdout
        if kill_after == 4:
            assert ("Phase 2 of fine-tuning: trains all layers at 0.1 x lr, "
                    "epochs 3-5 of 5") in run.stdout
    # The last session from the command line: the same signature, so it continues at epoch 5.
    last = subprocess.run([sys.executable, "-m", "keras_resnet.cli", "train", "--dataset", "digits", "--image-size", "8",
                           "--batch-size", "128", "--epochs", "5", "--freeze-epochs", "2", "--weights", weights,
                           "--out", str(out), "--progress", "2"], capture_output=True, text=True, env=env, cwd=ROOT,
                          timeout=900)
    assert last.returncode == 0, last.stdout[-3000:] + last.stderr[-3000:]
    assert "Epoch 5/5" in last.stdout and "Epoch 4/5" not in last.stdout
    rows = read_history(out / "history.csv")
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4, 5]  # each epoch once
    state = json.loads((out / "state.json").read_text())
    assert [s["first_epoch"] for s in state["sessions"]] == [1, 3, 5]
    # Phase 2 started with a fresh optimizer and schedule at 0.1 x the rate, even though it was
    # resumed exactly at the boundary: 11 steps into its 33 it runs at its peak, 0.01 (a schedule
    # that had kept phase 1's 22 steps would be at 0.001 by then).
    assert float(rows[2]["lr"]) == pytest.approx(0.01)
    metrics = json.loads((out / "metrics.json").read_text())
    phases = metrics["finetune"]["phases"]
    assert [(p["first_epoch"], p["last_epoch"], p["lr"]) for p in phases] == [(1, 2, 0.1), (3, 5, pytest.approx(0.01))]
    assert metrics["epochs"] == 5 and not (out / "backup").exists()


@pytest.mark.slow
def test_transfer_command_with_tiny_settings(tmp_path, capsys):
    out = tmp_path / "transfer"
    args = ["transfer", "--out", str(out), "--seeds", "0", "--shots", "4", "--pretrain-epochs", "1", "--epochs", "2",
            "--freeze-epochs", "1", "--batch-size", "5", "--depth", "8", "--image-size", "8"]
    assert cli.main(args) == 0
    printed = capsys.readouterr().out
    assert "fine-tuned" in printed and "from scratch" in printed and "mean +- std over 1 seeds" in printed
    result = json.loads((out / "results.json").read_text())
    record = result["records"][0]
    assert record["train_images"] == 20 and record["test_images"] == 180  # 4 per class; the test digits 5-9
    for key in ("pretrain_accuracy", "finetune_accuracy", "scratch_accuracy"):
        assert 0 <= record[key] <= 1
    tuned = json.loads((out / "runs" / "finetune-s0" / "metrics.json").read_text())
    assert tuned["finetune"]["source"] == "keras_model" and tuned["counts"]["validation"] == 0
    assert tuned["finetune"]["phases"][-1]["batchnorm"].endswith("train (batch statistics)")
    assert result["settings"]["freeze_batchnorm"] is False
    assert result["summary"]["gain_mean"] == pytest.approx(record["finetune_accuracy"] - record["scratch_accuracy"])
    # Finished runs are read back, not retrained.
    assert cli.main(args) == 0 and json.loads((out / "results.json").read_text())["records"] == result["records"]
    with pytest.raises(SystemExit) as exit_info:  # other settings do not reuse these runs
        cli.main([*args, "--lr", "0.01"])
    assert exit_info.value.code == 2 and "holds an experiment with other settings" in capsys.readouterr().err
    # An experiment written before freeze_batchnorm existed trained its BatchNorms: the default reads it back,
    # --freeze-batchnorm is another experiment.
    settings = json.loads((out / "experiment.json").read_text())
    (out / "experiment.json").write_text(json.dumps({k: v for k, v in settings.items() if k != "freeze_batchnorm"}))
    with pytest.raises(SystemExit):
        cli.main([*args, "--freeze-batchnorm"])
    assert "holds an experiment with other settings" in capsys.readouterr().err
    assert cli.main(args) == 0
