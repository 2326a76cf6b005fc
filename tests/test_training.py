"""Tests of keras_resnet.training and the `train` command: recipe, schedule, files, resume, errors."""

from __future__ import annotations

import csv
import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from keras_resnet import cli, runs
from keras_resnet.data import load_dataset
from keras_resnet.runs import TrainingDiverged
from keras_resnet.training import (
    TrainConfig,
    build_model,
    compile_model,
    device_scope,
    device_settings,
    learning_rate_schedule,
    train,
)

ROOT = Path(__file__).resolve().parents[1]
# A ResNet-8 on 8x8 digits: the real code paths at a fraction of the cost.
TINY = dict(depth=8)
TINY_CONFIG = dict(image_size=8, batch_size=256)


def read_history(path):
    with open(path) as f:
        return list(csv.DictReader(f))


# ---- configuration ------------------------------------------------------------------------

@pytest.mark.parametrize(
    "field, value, message",
    [
        ("epochs", 0, r"epochs must be an integer >= 1; received epochs=0"),
        ("epochs", 2.5, r"epochs must be an integer >= 1"),
        ("batch_size", 0, r"batch_size must be an integer >= 1; received batch_size=0"),
        ("lr", 0.0, r"lr must be a number > 0; received lr=0.0"),
        ("lr", -0.1, r"lr must be a number > 0"),
        ("momentum", 1.0, r"momentum must be a number in \[0, 1\); received momentum=1.0"),
        ("weight_decay", -1e-4, r"weight_decay must be a number >= 0"),
        ("schedule", "linear", r"schedule must be one of step, cosine; received schedule='linear'"),
        ("milestones", (0.75, 0.5), r"milestones must be increasing fractions"),
        ("warmup_steps", -1, r"warmup_steps must be an integer >= 0"),
        ("label_smoothing", 1.0, r"label_smoothing must be a number in \[0, 1\)"),
        ("strategy", "tpu", r"strategy must be one of default, mirrored, multi_worker"),
        ("mixed_precision", "yes", r"mixed_precision must be True, False or None"),
        ("data_dir", "/no/such/dir", r"data_dir '/no/such/dir' does not exist"),
    ],
)
def test_config_validation_names_the_bad_value(field, value, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**{field: value})  # at construction, not when the run starts
    config = TrainConfig()
    setattr(config, field, value)  # a field changed afterwards is caught by validate()
    with pytest.raises(ValueError, match=message):
        config.validate()


def test_defaults_follow_the_paper():
    config = TrainConfig().validate()
    assert (config.momentum, config.weight_decay, config.schedule, config.milestones) == (0.9, 1e-4, "step", (0.5, 0.75))
    assert config.resolved_lr(128) == pytest.approx(0.1)
    assert config.resolved_lr(512) == pytest.approx(0.4)  # linear scaling with the batch
    assert TrainConfig(lr=0.05).resolved_lr(512) == 0.05
    assert config.resolved_warmup(30 * 11) == 16  # 5% of a short run
    assert config.resolved_warmup(64_000) == 400  # the paper's ResNet-110 warm-up
    assert TrainConfig(warmup_steps=0).resolved_warmup(64_000) == 0


def test_default_epochs_and_warmup_are_one_rule_with_named_overrides():
    from keras_resnet import experiments, training

    assert training.default_epochs("digits") == 30 and training.default_epochs("cifar10") == training.PAPER_EPOCHS == 182
    # The experiments pass their own table and fraction to the same functions.
    assert training.default_epochs("digits", experiments.EXPERIMENT_EPOCHS) == 20
    assert training.default_epochs("cifar10", experiments.EXPERIMENT_EPOCHS) == 164
    assert training.default_epochs("mnist", experiments.EXPERIMENT_EPOCHS) == 182
    assert training.default_warmup_steps(1000, fraction=experiments.EXPERIMENT_WARMUP_FRACTION) == 100
    assert training.default_warmup_steps(64_000, fraction=experiments.EXPERIMENT_WARMUP_FRACTION) == 400
    assert not hasattr(experiments, "WARMUP_FRACTION") and not hasattr(experiments, "MAX_WARMUP_STEPS")


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(model="resnet21"), r"unknown model 'resnet21'"),
        (dict(dataset="cifar11"), r"unknown dataset 'cifar11'"),
        (dict(dataset="/no/such/folder"), r"dataset folder '/no/such/folder' does not exist"),
        (dict(config={"epochs": 2}), r"config must be a keras_resnet.training.TrainConfig"),
        (dict(weight_decay=0.1), r"pass weight_decay in TrainConfig"),
        (dict(verbose=3), r"verbose must be 0, 1 or 2"),
    ],
)
def test_train_rejects_bad_arguments_before_any_work(tmp_path, kwargs, message):
    out = tmp_path / "run"
    with pytest.raises(ValueError, match=message):
        train(**{"out": out, **kwargs})
    assert not out.exists()


# ---- schedule --------------------------------------------------------------------------------

def lr_at(schedule, steps):
    return [float(schedule(step)) for step in steps]


def test_step_schedule_with_warmup():
    s = learning_rate_schedule(0.1, 1000, warmup_steps=10)
    # Updates 0..9 warm up at 0.01; the rate drops after 500 and 750 updates.
    assert lr_at(s, [0, 9, 10, 499, 500, 749, 750, 999]) == pytest.approx(
        [0.01, 0.01, 0.1, 0.1, 0.01, 0.01, 0.001, 0.001]
    )
    plain = learning_rate_schedule(0.2, 100, milestones=(0.5,))
    assert lr_at(plain, [0, 49, 50, 99]) == pytest.approx([0.2, 0.2, 0.02, 0.02])
    with pytest.raises(ValueError, match=r"warmup_steps must end before the first learning-rate drop \(step 500"):
        learning_rate_schedule(0.1, 1000, warmup_steps=500)


def test_cosine_schedule_with_warmup():
    s = learning_rate_schedule(0.1, 1000, schedule="cosine", warmup_steps=100)
    start, peak, middle, end = lr_at(s, [0, 100, 550, 1000])
    assert start == pytest.approx(0.01) and peak == pytest.approx(0.1)
    assert middle == pytest.approx(0.05, rel=1e-3) and end == pytest.approx(0.0, abs=1e-7)


@pytest.mark.parametrize("schedule", ["step", "cosine"])
def test_schedules_serialize_without_custom_objects(schedule):
    s = learning_rate_schedule(0.1, 1000, schedule=schedule, warmup_steps=10)
    config = keras.optimizers.schedules.serialize(s)
    clone = keras.optimizers.schedules.deserialize(json.loads(json.dumps(config)))
    steps = [0, 5, 10, 300, 600, 800, 999]
    assert lr_at(clone, steps) == pytest.approx(lr_at(s, steps))


# ---- device ------------------------------------------------------------------------------------

def test_device_settings_on_cpu_and_overrides(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    settings = device_settings()
    assert settings["device"] == "CPU" and settings["gpus"] == 0
    assert (settings["strategy"], settings["mixed_precision"], settings["jit_compile"]) == ("default", False, False)
    assert settings["steps_per_execution"] == 1 and settings["is_chief"]
    forced = device_settings(TrainConfig(jit_compile=True, mixed_precision=True, steps_per_execution=4))
    assert (forced["jit_compile"], forced["mixed_precision"], forced["steps_per_execution"]) == (True, True, 4)
    cluster = {"cluster": {"worker": ["localhost:1", "localhost:2"]}, "task": {"type": "worker", "index": 1}}
    monkeypatch.setenv("TF_CONFIG", json.dumps(cluster))
    settings = device_settings()
    assert settings["strategy"] == "multi_worker" and not settings["is_chief"]


# ---- model -------------------------------------------------------------------------------------

@pytest.mark.backend_neutral
def test_build_model_takes_raw_pixels_and_saves_without_custom_objects(tmp_path):
    data = load_dataset("digits", image_size=8, batch_size=64)
    model = build_model("resnet20", data, weight_decay=1e-4, **TINY)
    assert isinstance(model.layers[1], keras.layers.Normalization)
    assert model.input_shape == (None, 8, 8, 1) and model.output_shape == (None, 10)
    x, _ = next(data.test.as_numpy_iterator())
    normalised = np.asarray(model.layers[1](x))
    assert abs(normalised.mean()) < 0.3 and 0.7 < normalised.std() < 1.3
    # Coupled weight decay: the loss gains weight_decay / 2 * ||w||^2 over conv and dense kernels.
    kernels = [w for w in model.trainable_weights if w.path.endswith("kernel")]
    expected = 1e-4 / 2 * sum(float(np.sum(np.square(w.numpy()))) for w in kernels)
    assert float(sum(model.losses)) == pytest.approx(expected, rel=1e-4)
    path = tmp_path / "m.keras"
    model.save(path)
    restored = keras.saving.load_model(path)  # no custom_objects
    assert [type(layer).__name__ for layer in restored.layers] == ["InputLayer", "Normalization", "ResNet"]
    np.testing.assert_allclose(restored.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)


@pytest.mark.backend_neutral
def test_compile_model_applies_the_recipe_without_decoupled_decay():
    data = load_dataset("digits", image_size=8, batch_size=256)
    model = build_model("resnet20", data, **TINY)
    recipe = compile_model(model, TrainConfig(epochs=4), steps_per_epoch=data.steps_per_epoch, batch_size=256)
    assert recipe["lr"] == pytest.approx(0.2) and recipe["total_steps"] == 4 * 6 and recipe["warmup_steps"] == 1
    optimizer = model.optimizer
    assert isinstance(optimizer, keras.optimizers.SGD) and optimizer.momentum == 0.9
    assert not optimizer.weight_decay and not optimizer.nesterov
    assert optimizer.get_config()["learning_rate"]["class_name"] == "PiecewiseConstantDecay"
    assert isinstance(model.loss, keras.losses.SparseCategoricalCrossentropy)
    with device_scope(TrainConfig(mixed_precision=True)):
        assert keras.config.dtype_policy().name == "mixed_float16"
    assert keras.config.dtype_policy().name == "float32"


def test_build_model_rejects_a_shape_that_does_not_fit_the_data():
    data = load_dataset("digits", image_size=8, batch_size=64)
    with pytest.raises(ValueError, match=r"classes=5 does not match the dataset, which needs classes=10"):
        build_model("resnet20", data, classes=5)


# ---- training runs ---------------------------------------------------------------------------

@pytest.mark.backend_neutral
def test_train_writes_the_run_and_refuses_to_redo_it(tmp_path):
    out = tmp_path / "run"
    config = TrainConfig(epochs=2, **TINY_CONFIG)
    result = train("resnet20", "digits", config, out=out, verbose=0, **TINY)
    for name in ("model.keras", "history.csv", "curves.png", "metrics.json", "state.json"):
        assert (out / name).is_file(), name
    assert not (out / "backup").exists()  # removed once the run finished
    rows = read_history(out / "history.csv")
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert {"loss", "accuracy", "val_loss", "val_accuracy", "lr", "seconds"} <= set(rows[0])
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics == result.metrics | {"sessions": metrics["sessions"]}
    assert 0 <= metrics["test_accuracy"] <= 1 and math.isfinite(metrics["test_loss"])
    assert metrics["epochs"] == 2 and metrics["params"] == result.model.count_params() > 0
    assert metrics["seconds"] > 0 and metrics["config"]["lr"] == pytest.approx(0.2)  # batch 256
    assert metrics["device"]["device"] == "CPU"
    assert metrics["device"]["jit_compile"] is (keras.backend.backend() == "jax")  # JAX always compiles
    best = max(rows, key=lambda r: float(r["val_accuracy"]))
    assert metrics["best_epoch"] == int(best["epoch"])
    # The evaluated model is the saved best one.
    loaded = keras.saving.load_model(out / "model.keras")
    assert loaded.evaluate(load_dataset("digits", image_size=8).test, verbose=0)[1] == pytest.approx(metrics["test_accuracy"])

    with pytest.raises(ValueError, match="already holds a finished run"):
        train("resnet20", "digits", config, out=out, verbose=0, **TINY)
    state = json.loads((out / "state.json").read_text())
    (out / "state.json").write_text(json.dumps({**state, "finished": False}))
    with pytest.raises(ValueError, match=r"other settings \(config.lr: None then, 0.05 now\)"):
        train("resnet20", "digits", TrainConfig(epochs=2, lr=0.05, **TINY_CONFIG), out=out, verbose=0, **TINY)
    # overwrite starts again; also the options: cosine, label smoothing, no validation split.
    options = TrainConfig(epochs=1, schedule="cosine", label_smoothing=0.1, validation_split=0, tensorboard=True, **TINY_CONFIG)
    again = train("resnet20", "digits", options, out=out, verbose=0, overwrite=True, **TINY)
    assert len(read_history(out / "history.csv")) == 1 and again.metrics["best_epoch"] == 1
    assert again.metrics["counts"]["validation"] == 0 and any((out / "logs").rglob("*tfevents*"))
    assert not list(out.glob(".*tmp*"))


def _compiled_tiny_model(data, seed):
    keras.utils.set_random_seed(seed)
    model = build_model("resnet20", data, **TINY)
    compile_model(model, TrainConfig(epochs=3), steps_per_epoch=data.steps_per_epoch)
    return model


@pytest.mark.backend_neutral
def test_checkpoint_restores_weights_optimizer_best_epoch_and_state(tmp_path):
    data = load_dataset("digits", image_size=8, batch_size=256)
    model = _compiled_tiny_model(data, seed=1)
    checkpoint = runs.Checkpoint(tmp_path)
    state = {"history": [], "best": None, "sessions": [], "signature": {"model": "a"}}
    model.fit(data.train, epochs=1, verbose=0, shuffle=False)
    checkpoint.best = model.get_weights()  # epoch 1 is the best ...
    state["best"] = {"epoch": 1, "monitor": "val_accuracy", "value": 0.5}
    model.fit(data.train, epochs=1, verbose=0, shuffle=False)  # ... and epoch 2 the last
    state["history"] = [{"epoch": 1}, {"epoch": 2}]
    checkpoint.save(model, state)

    fresh = _compiled_tiny_model(data, seed=2)
    restored_state = {"history": [], "best": None, "sessions": [], "signature": {"model": "kept"}}
    again = runs.Checkpoint(tmp_path)
    assert again.restore(fresh, restored_state) == 2
    for ours, theirs in zip(fresh.weights, model.weights):  # BN moving statistics included
        np.testing.assert_array_equal(np.asarray(ours), np.asarray(theirs))
    for ours, theirs in zip(fresh.optimizer.variables, model.optimizer.variables):
        np.testing.assert_array_equal(np.asarray(ours), np.asarray(theirs))
    assert int(fresh.optimizer.iterations) == 2 * data.steps_per_epoch  # the schedule continues
    for ours, theirs in zip(again.best_weights(fresh), checkpoint.best):
        np.testing.assert_array_equal(ours, theirs)
    assert not all(np.array_equal(a, b) for a, b in zip(again.best, fresh.get_weights()))
    assert restored_state["history"] == state["history"] and restored_state["best"] == state["best"]
    assert restored_state["signature"] == {"model": "kept"}

    # When the best epoch is the last, its weights are not stored twice.
    state["best"]["epoch"] = 2
    checkpoint.save(model, state)
    with np.load(checkpoint.path) as stored:
        assert not any(name.startswith("b") for name in stored.files)
    third = runs.Checkpoint(tmp_path)
    third.restore(_compiled_tiny_model(data, seed=3), {})
    for ours, theirs in zip(third.best, model.get_weights()):
        np.testing.assert_array_equal(ours, theirs)


def test_checkpoint_of_another_model_is_refused(tmp_path):
    data = load_dataset("digits", image_size=8, batch_size=256)
    checkpoint = runs.Checkpoint(tmp_path)
    checkpoint.save(_compiled_tiny_model(data, seed=1), {"history": [{"epoch": 1}], "best": None})
    keras.utils.set_random_seed(0)
    other = build_model("resnet20", data, depth=14)
    compile_model(other, TrainConfig(epochs=3), steps_per_epoch=data.steps_per_epoch)
    with pytest.raises(ValueError, match=r"resume.npz holds \d+ model and \d+ optimizer variables that do not fit"):
        runs.Checkpoint(tmp_path).restore(other, {})
    assert runs.Checkpoint(tmp_path / "empty").restore(other, {}) == 0
    checkpoint.path.write_bytes(b"not a zip file")
    with pytest.raises(ValueError, match=r"resume.npz is not a readable resume file .*remove it or overwrite"):
        runs.Checkpoint(tmp_path).restore(other, {})


@pytest.mark.backend_neutral
def test_a_crash_after_the_last_epoch_does_not_retrain(tmp_path, monkeypatch):
    out = tmp_path / "run"
    config = TrainConfig(epochs=2, **TINY_CONFIG)
    save_model = runs.save_model

    def crash(*args, **kwargs):
        raise KeyboardInterrupt  # killed after the evaluation, while saving the best model

    monkeypatch.setattr(runs, "save_model", crash)
    with pytest.raises(KeyboardInterrupt):
        train("resnet20", "digits", config, out=out, verbose=0, **TINY)
    assert (out / "backup" / "resume.npz").is_file() and not (out / "metrics.json").exists()
    monkeypatch.setattr(runs, "save_model", save_model)
    result = train("resnet20", "digits", config, out=out, verbose=0, **TINY)
    assert len(result.metrics["sessions"]) == 1  # no epoch ran again
    assert [int(r["epoch"]) for r in read_history(out / "history.csv")] == [1, 2]
    assert (out / "metrics.json").is_file() and not (out / "backup").exists()


@pytest.mark.backend_neutral
def test_a_cluster_of_several_workers_is_refused_with_the_reason(tmp_path, monkeypatch):
    cluster = {"cluster": {"worker": ["localhost:1", "localhost:2"]}, "task": {"type": "worker", "index": 0}}
    monkeypatch.setenv("TF_CONFIG", json.dumps(cluster))
    with pytest.raises(ValueError, match=r"cluster of 2 workers.*keras-team/keras#20585"):
        train("resnet20", "digits", TrainConfig(epochs=1), out=tmp_path / "run")
    assert not (tmp_path / "run").exists()


MIRRORED = """
import json, sys
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from keras_resnet import training
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
training.distribution_strategy = lambda kind: strategy  # two CPU replicas stand in for two GPUs
config = training.TrainConfig(epochs=2, image_size=8, strategy="mirrored")
result = training.train("resnet20", "digits", config, out=sys.argv[1], verbose=0, depth=8)
print(json.dumps({"replicas": strategy.num_replicas_in_sync, **result.metrics}))
"""


@pytest.mark.slow
def test_mirrored_strategy_over_two_replicas(tmp_path):
    run = subprocess.run([sys.executable, "-c", MIRRORED, str(tmp_path / "run")], capture_output=True, text=True,
                         timeout=300, cwd=ROOT, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert run.returncode == 0, run.stderr[-3000:]
    metrics = json.loads(run.stdout.strip().splitlines()[-1])
    assert metrics["replicas"] == 2 and metrics["device"]["strategy"] == "mirrored"
    assert metrics["epochs"] == 2 and 0 <= metrics["test_accuracy"] <= 1
    assert [int(r["epoch"]) for r in read_history(tmp_path / "run" / "history.csv")] == [1, 2]


def test_divergence_stops_with_a_clear_message(tmp_path):
    data = load_dataset("digits", image_size=8, batch_size=256)
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Rescaling(float("inf"))(inputs)  # inf * 0 = NaN on the first batch
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(x))
    with pytest.raises(TrainingDiverged, match=r"the loss became nan in epoch 1, batch 1.*Lower the learning rate"):
        train(model, data, TrainConfig(epochs=2), out=tmp_path / "run", verbose=0)
    # No epoch finished: nothing was recorded, and nothing half-trained passes for a result.
    assert not any((tmp_path / "run" / name).exists() for name in ("model.keras", "metrics.json", "history.csv"))


def command(out, epochs):
    return [sys.executable, "-m", "keras_resnet.cli", "train", "--model", "resnet20", "--depth", "8",
            "--dataset", "digits", "--image-size", "8", "--batch-size", "128", "--epochs", str(epochs),
            "--out", str(out), "--progress", "2"]


# The first session of the run below, killed as by the OOM killer or a pulled plug right after
# epoch 2 has finished (its resume file, history row and state are on disk: see train()'s
# callbacks argument). The kill comes from inside, so it lands at the same point however busy
# the machine is.
KILLED_AFTER_EPOCH_2 = """
import os, signal, sys

import keras

from keras_resnet.training import TrainConfig, train


class KillAfterEpoch2(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 == 2:
            sys.stdout.flush()
            os.kill(os.getpid(), signal.SIGKILL)


train("resnet20", "digits", TrainConfig(epochs=int(sys.argv[2]), image_size=8, batch_size=128), out=sys.argv[1],
      verbose=2, depth=8, callbacks=[KillAfterEpoch2()])
"""


@pytest.mark.slow
def test_killed_run_resumes_from_the_last_finished_epoch(tmp_path):
    out, epochs = tmp_path / "run", 6
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    first = subprocess.run([sys.executable, "-c", KILLED_AFTER_EPOCH_2, str(out), str(epochs)], capture_output=True,
                           text=True, env=env, cwd=ROOT, timeout=900)
    assert first.returncode == -signal.SIGKILL, first.stdout[-3000:] + first.stderr[-3000:]
    assert [int(r["epoch"]) for r in read_history(out / "history.csv")] == [1, 2]
    assert (out / "backup" / "resume.npz").exists() and not (out / "metrics.json").exists()

    # The same run from the command line: the same signature, so it continues at epoch 3.
    second = subprocess.run(command(out, epochs), capture_output=True, text=True, env=env, cwd=ROOT, timeout=900)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert [int(r["epoch"]) for r in read_history(out / "history.csv")] == list(range(1, epochs + 1))
    state = json.loads((out / "state.json").read_text())
    assert [s["first_epoch"] for s in state["sessions"]] == [1, 3]
    assert f"Epoch 3/{epochs}" in second.stdout and f"Epoch 2/{epochs}" not in second.stdout
    assert "Resuming" in second.stdout
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["epochs"] == epochs and 0 <= metrics["test_accuracy"] <= 1


def test_bad_callbacks_are_refused_before_anything_is_written(tmp_path):
    with pytest.raises(ValueError, match=r"callbacks must be a list of keras.callbacks.Callback objects; "
                                         r"received callbacks=\['not a callback'\]"):
        train("resnet20", "digits", TrainConfig(epochs=1), out=tmp_path / "run", callbacks=["not a callback"])
    assert not (tmp_path / "run").exists()


# ---- the command's argument errors ------------------------------------------------------------

@pytest.mark.parametrize(
    "args, message",
    [
        (["--model", "resnet21"], "unknown model 'resnet21'"),
        (["--dataset", "cifar11"], "unknown dataset 'cifar11'"),
        (["--dataset", "./no/such/folder"], "does not exist"),
        (["--epochs", "0"], "epochs must be an integer >= 1; received epochs=0"),
        (["--batch-size", "-1"], "batch_size must be an integer >= 1"),
        (["--lr", "0"], "lr must be a number > 0"),
        (["--image-size", "0"], "image_size must be an integer >= 1"),
    ],
)
def test_cli_bad_arguments_exit_2(tmp_path, capsys, args, message):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["train", "--out", str(tmp_path / "run"), *args])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_cli_bad_arguments_fail_before_tensorflow_starts(tmp_path):
    script = ROOT / ".venv" / "bin" / "keras-resnet"
    if not script.exists():
        pytest.skip("the keras-resnet entry point is not installed")
    run = subprocess.run([sys.executable, "-X", "importtime", str(script), "train", "--epochs", "0", "--out", str(tmp_path)],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 2 and "epochs must be an integer >= 1" in run.stderr
    imported = {line.split("|")[-1].strip() for line in run.stderr.splitlines() if line.startswith("import time:")}
    assert "keras_resnet.training" in imported  # the check ran, through the library's validation
    assert not {name.split(".")[0] for name in imported} & {"tensorflow", "keras", "numpy"}


def _write_pets(root, per_class=12, bad=None):
    """Two class folders of tiny PNGs, plus an unreadable file named ``bad``."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for cls in ("cat", "dog"):
        (root / cls).mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)).save(root / cls / f"{i:02d}.png")
    if bad:
        (root / "dog" / bad).write_bytes(b"not an image")
    return root


@pytest.mark.slow
def test_training_on_a_folder_names_an_unreadable_file_or_skips_and_lists_it(tmp_path):
    pets = _write_pets(tmp_path / "pets", bad="broken.png")
    config = TrainConfig(epochs=1, batch_size=8)
    with pytest.raises(ValueError, match=r"cannot read image '.*dog/broken\.png'.*bad_files='skip'"):
        train("resnet20", str(pets), config, out=tmp_path / "strict", verbose=0, depth=8)
    skip = TrainConfig(epochs=2, batch_size=8, bad_files="skip")
    result = train("resnet20", str(pets), skip, out=tmp_path / "lenient", verbose=0, depth=8)
    listed = (tmp_path / "lenient" / "skipped_files.txt").read_text().splitlines()
    assert listed == [str(pets / "dog" / "broken.png")]  # once, though two epochs met it
    assert result.metrics["skipped_files"] == 1 and result.metrics["class_names"] == ["cat", "dog"]
    assert result.metrics["config"]["augmentation"]["recipe"] == "cifar"  # 12 px, a CIFAR-style preset


def test_imagenet_style_presets_default_to_the_imagenet_recipe():
    from keras_resnet.training import _preset_augmentation

    assert _preset_augmentation("resnet18", {}) == "imagenet"
    assert _preset_augmentation("resnet20", {}) is None  # by image size
    assert _preset_augmentation("resnet20", {"style": "imagenet", "depth": 18}) == "imagenet"
    with pytest.raises(ValueError, match=r"augmentation must be one of cifar, imagenet, none or None.*'autumn'"):
        TrainConfig(augmentation="autumn")
    with pytest.raises(ValueError, match=r"bad_files must be one of error, skip; received bad_files='ignore'"):
        TrainConfig(bad_files="ignore")
