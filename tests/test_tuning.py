"""Tests of the KerasTuner search: the space, the hypermodel, resuming and distributed mode."""

from __future__ import annotations

import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import keras_tuner as kt
import numpy as np
import pytest
import tensorflow as tf

from keras_resnet import cli
from keras_resnet.tuning import (
    ResNetHyperModel,
    SearchSpace,
    make_tuner,
    read_trial_log,
    search,
    valid_depths,
)

ENTRY = str(Path(sys.executable).with_name("keras-resnet"))
SMALL = ["--depths", "8", "--image-size", "8", "--max-epochs", "1", "--tuner", "random", "--progress", "0"]


def hypermodel(**space):
    return ResNetHyperModel((8, 8, 1), 3, mean=[100.0], std=[50.0], space=SearchSpace(**space), steps_per_epoch=2)


def tiny_data(n=16):
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (n, 8, 8, 1)).astype("float32")
    y = np.arange(n) % 3
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(8)


def fixed(**values):
    hp = kt.HyperParameters()
    for name, value in values.items():
        hp.Fixed(name, value)
    return hp


def inner_resnet(model):
    return next(layer for layer in model.layers if type(layer).__name__ == "ResNet")


# Two combinations in the fast tier (between them every block kind and version); all eight in
# the full suite.
@pytest.mark.parametrize("shortcut,version", [
    pytest.param(s, v, marks=() if (s, v) in (("identity", "v1"), ("full_projection", "v2")) else pytest.mark.slow)
    for s, v in itertools.product(("identity", "projection", "full_projection", "none"), ("v1", "v2"))
])
def test_every_combination_builds_and_trains_one_step(shortcut, version):
    hm = hypermodel(depths=[8, 14])
    hp = fixed(depth=8, shortcut=shortcut, version=version)
    model = hm.build(hp)
    resnet = inner_resnet(model)
    assert (resnet.depth, resnet.shortcut, resnet.version) == (8, shortcut, version)
    assert model.optimizer is not None  # the hypermodel always compiles
    result = hm.fit(hp, model, tiny_data(), validation_data=tiny_data(), epochs=1, verbose=0)
    assert np.isfinite(result["val_loss"]) and result["params"] == model.count_params()
    assert result["epochs_run"] == 1 and result["seconds"] > 0


def test_default_hyperparameters_give_the_baseline():
    model = hypermodel(depths=[8, 20, 32]).build(kt.HyperParameters())
    resnet = inner_resnet(model)
    assert (resnet.depth, resnet.shortcut, resnet.version) == (20, "projection", "v1")
    assert model.layers[1].name == "normalize"  # raw pixels in: the normalisation is inside


def test_zero_init_is_searched_only_where_there_is_a_shortcut():
    hm = hypermodel(depths=[8], zero_init=True)
    hp = fixed(depth=8, shortcut="none", version="v1")
    hm.build(hp)
    assert "zero_init_residual" not in hp.values or not hp.is_active("zero_init_residual")
    hp = fixed(depth=8, shortcut="identity", version="v1", zero_init_residual=True)
    model = hm.build(hp)
    assert inner_resnet(model).get_config()["zero_init_residual"] is True


def test_searched_recipe_values_reach_the_optimizer():
    hm = hypermodel(depths=[8], lr=(1e-3, 1.0), weight_decay=(1e-5, 1e-3))
    model = hm.build(fixed(depth=8, shortcut="identity", version="v1", lr=0.3, weight_decay=1e-3))
    schedule = model.optimizer.get_config()["learning_rate"]["config"]
    assert max(schedule["values"]) == pytest.approx(0.3)  # the peak rate of the step schedule
    kernels = [w for w in model.trainable_weights if w.path.endswith("kernel")]
    assert len(model.losses) == len(kernels)  # coupled L2 on every kernel


@pytest.mark.parametrize(
    "space,message",
    [
        (dict(shortcuts=["identity", "D"]), r"received shortcut='D'"),
        (dict(depths=[20, 21]), r"received depth=21"),
        (dict(depths=[]), r"depths must hold at least one choice"),
        (dict(shortcuts=[]), r"shortcuts must hold at least one choice"),
        (dict(versions=["v3"]), r"received version='v3'"),
        (dict(style="imagenet", depths=[20]), r"one of \[18, 34, 50, 101, 152, 200\].*received depth=20"),
        (dict(lr=(0.1, 0.01)), r"lr must be a \(low, high\) pair"),
        (dict(batch_sizes=[0]), r"batch_sizes must hold integers >= 1; received 0"),
    ],
)
def test_bad_search_spaces_fail_at_once(space, message):
    with pytest.raises(ValueError, match=message):
        SearchSpace(**space).validate()


def test_bad_search_arguments(tmp_path):
    with pytest.raises(ValueError, match="tuner must be one of .*received tuner='annealing'"):
        search(out=tmp_path, tuner="annealing")
    with pytest.raises(ValueError, match="max_epochs must be an integer >= 1; received max_epochs=0"):
        search(out=tmp_path, max_epochs=0)
    with pytest.raises(ValueError, match="unknown dataset 'cifar11'"):
        search("cifar11", out=tmp_path)
    with pytest.raises(ValueError, match="tuner must be one of"):
        make_tuner("annealing", hypermodel(depths=[8]), directory=tmp_path)


def test_valid_depths():
    assert valid_depths("cifar", 20, 56) == (20, 26, 32, 38, 44, 50, 56)
    assert valid_depths("imagenet", 18, 60) == (18, 34, 50)


def test_space_size_counts_conditional_choices():
    space = SearchSpace(depths=[8, 14], shortcuts=["A", "B", "none"], versions=["v1"], zero_init=True).validate()
    assert space.size() == 2 * (2 * 2 + 1)


def test_trials_keep_the_device_dtype_policy_after_keras_tuner_clears_the_session():
    import keras

    from keras_resnet.training import TrainConfig

    hm = ResNetHyperModel((8, 8, 1), 3, mean=[100.0], std=[50.0], space=SearchSpace(depths=[8]),
                          train_config=TrainConfig(mixed_precision=True), steps_per_epoch=2)
    keras.config.set_dtype_policy("mixed_float16")  # as search() sets it on a GPU ...
    keras.backend.clear_session()  # ... and as KerasTuner resets it before every trial
    assert keras.config.dtype_policy().name == "float32"
    model = hm.build(kt.HyperParameters())
    assert inner_resnet(model).dtype_policy.name == "mixed_float16"
    assert model.optimizer.__class__.__name__ == "LossScaleOptimizer"
    assert keras.config.dtype_policy().name == "float32"  # the global policy is left as it was


class _FreezeRecorder(ResNetHyperModel):
    frozen: list = []
    interrupt = False

    def build(self, hp):
        import gc

        type(self).frozen.append(gc.get_freeze_count())
        if type(self).interrupt:
            raise KeyboardInterrupt
        return super().build(hp)


@pytest.mark.slow
def test_tuner_freezes_survivors_between_trials_and_unfreezes_at_the_end(tmp_path):
    import gc

    hm = _FreezeRecorder((8, 8, 1), 3, mean=[100.0], std=[50.0], space=SearchSpace(depths=[8, 14], shortcuts=["A"], versions=["v1"]),
                         steps_per_epoch=2)
    plain = make_tuner("grid", hm, directory=tmp_path / "plain", max_epochs=1)  # freeze_gc is opt-in
    _FreezeRecorder.frozen = []
    plain.search(tiny_data(), validation_data=tiny_data(), epochs=1, verbose=0)
    assert _FreezeRecorder.frozen == [0, 0]
    tuner = make_tuner("grid", hm, directory=tmp_path, max_epochs=1, freeze_gc=True)
    _FreezeRecorder.frozen = []
    tuner.search(tiny_data(), validation_data=tiny_data(), epochs=1, verbose=0)
    # In each trial the collector skips what was alive before it: TensorFlow, Keras, the data.
    assert len(_FreezeRecorder.frozen) == 2 and min(_FreezeRecorder.frozen) > 100_000
    assert gc.get_freeze_count() == 0
    assert len(tuner.oracle.get_best_trials(2)) == 2
    stopped = make_tuner("grid", hm, directory=tmp_path / "stopped", max_epochs=1, freeze_gc=True)
    _FreezeRecorder.interrupt = True  # a search stopped mid-trial hands the frozen objects back too
    try:
        with pytest.raises(KeyboardInterrupt):
            stopped.search(tiny_data(), validation_data=tiny_data(), epochs=1, verbose=0)
    finally:
        _FreezeRecorder.interrupt = False
    assert gc.get_freeze_count() == 0


@pytest.mark.slow
def test_search_writes_the_trials_and_the_best_model(tmp_path, capsys):
    out = tmp_path / "search"
    code = cli.main(["tune", "--out", str(out), *SMALL, "--max-trials", "2", "--shortcuts", "A", "none",
                     "--block-versions", "v1"])
    assert code == 0
    rows = json.loads((out / "trials.json").read_text())
    assert len(rows) == 2 and {r["status"] for r in rows} == {"COMPLETED"}
    assert {r["shortcut"] for r in rows} == {"identity", "none"}
    for key in ("depth", "version", "score", "epochs", "params", "seconds"):
        assert all(r[key] is not None for r in rows), key
    assert (out / "trials.csv").read_text().splitlines()[0].startswith("trial,status,depth")
    assert (out / "search.png").stat().st_size > 1000
    assert (out / "best_model.keras").exists()
    metrics = json.loads((out / "best_metrics.json").read_text())
    assert metrics["epochs"] == 1 and 0 <= metrics["test_accuracy"] <= 1
    # A second run reuses the finished search and training: no trial or epoch runs again.
    assert cli.main(["tune", "--out", str(out), *SMALL, "--max-trials", "2", "--shortcuts", "A", "none",
                     "--block-versions", "v1"]) == 0
    assert len([e for e in read_trial_log(out / "tuner") if e["event"] == "start"]) == 2
    printed = capsys.readouterr().out
    assert "best configuration retrained" in printed and "COMPLETED" in printed


@pytest.mark.slow
def test_tune_command_bad_arguments_exit_2():
    for args, message in ((["--shortcuts", "D"], "received shortcut='D'"), (["--depths", "21"], "received depth=21")):
        result = subprocess.run([ENTRY, "tune", "--out", "/tmp/never", *args], capture_output=True, text=True, timeout=120)
        assert result.returncode == 2 and message in result.stderr
        assert "Traceback" not in result.stderr


PATIENCE = 900  # seconds: a bound for hangs only, far above what a busy 2-core machine needs


def _completed_trials(project: Path) -> set[str]:
    done = set()
    for path in project.glob("trial_*/trial.json"):
        trial = json.loads(path.read_text())
        if trial.get("status") == "COMPLETED":
            done.add(trial["trial_id"])
    return done


# `keras-resnet tune ARGS`, killed as by the OOM killer or a pulled plug right after the first
# trial has ended: KerasTuner's on_trial_end hook has recorded it as completed and saved the
# tuner. The kill comes from inside, so it lands at the same point however busy the machine is.
KILLED_AFTER_THE_FIRST_TRIAL = """
import os, signal, sys

import keras_tuner

from keras_resnet import cli

ended = keras_tuner.Tuner.on_trial_end


def on_trial_end(self, trial):
    ended(self, trial)
    os.kill(os.getpid(), signal.SIGKILL)


keras_tuner.Tuner.on_trial_end = on_trial_end
sys.exit(cli.main(sys.argv[1:]))
"""


@pytest.mark.slow
def test_killed_search_resumes_without_rerunning_finished_trials(tmp_path):
    out = tmp_path / "search"
    args = ["tune", "--out", str(out), *SMALL, "--max-trials", "3", "--max-epochs", "2",
            "--shortcuts", "A", "B", "none", "--block-versions", "v1", "--no-retrain"]
    first = subprocess.run([sys.executable, "-c", KILLED_AFTER_THE_FIRST_TRIAL, *args], capture_output=True,
                           text=True, timeout=PATIENCE)
    assert first.returncode == -signal.SIGKILL, first.stdout[-2000:] + first.stderr[-2000:]
    done = _completed_trials(out / "tuner")
    assert len(done) == 1 and [e["event"] for e in read_trial_log(out / "tuner")] == ["start", "end"]

    second = subprocess.run([ENTRY, *args], capture_output=True, text=True, timeout=PATIENCE)
    assert second.returncode == 0, second.stderr[-2000:]
    rows = json.loads((out / "trials.json").read_text())
    assert len(rows) == 3 and all(r["status"] == "COMPLETED" for r in rows)
    log = read_trial_log(out / "tuner")
    # Every trial started and ended exactly once over the two sessions: the finished one did not run again.
    for event in ("start", "end"):
        assert sorted(e["trial"] for e in log if e["event"] == event) == sorted(r["trial"] for r in rows), event
    assert log[0]["trial"] in done


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_until_listening(process: subprocess.Popen, port: int) -> None:
    """Waits until ``port`` accepts TCP connections; fails with the process's output if it exits."""
    deadline = time.monotonic() + PATIENCE
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=10):
                return
        except OSError:
            pass
        try:
            process.wait(timeout=0.2)  # doubles as the pause between attempts
        except subprocess.TimeoutExpired:
            assert time.monotonic() < deadline, f"nothing listens on port {port} after {PATIENCE} s"
            continue
        pytest.fail(f"the chief exited with status {process.returncode} before listening on port {port}:\n"
                    f"{process.stdout.read()[-3000:]}")


@pytest.mark.slow
def test_distributed_search_with_a_chief_and_two_workers(tmp_path):
    out = tmp_path / "search"
    command = [ENTRY, "tune", "--out", str(out), *SMALL, "--max-trials", "4", "--shortcuts", "A", "B", "none",
               "--block-versions", "v1", "v2", "--no-retrain"]
    port = str(_free_port())
    procs = []
    try:
        for tuner_id in ("chief", "tuner0", "tuner1"):
            env = {**os.environ, "KERASTUNER_TUNER_ID": tuner_id, "KERASTUNER_ORACLE_IP": "127.0.0.1",
                   "KERASTUNER_ORACLE_PORT": port}
            procs.append(subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
            if tuner_id == "chief":
                _wait_until_listening(procs[0], int(port))  # the workers ask the chief's oracle for trials
        outputs = [p.communicate(timeout=PATIENCE)[0] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    assert [p.returncode for p in procs] == [0, 0, 0], outputs[0][-2000:]
    rows = json.loads((out / "trials.json").read_text())
    assert len(rows) == 4 and all(r["status"] == "COMPLETED" for r in rows)
    ends = [e for e in read_trial_log(out / "tuner") if e["event"] == "end"]
    assert sorted(e["trial"] for e in ends) == sorted(r["trial"] for r in rows)  # each ran exactly once
    assert {e["tuner"] for e in ends} <= {"tuner0", "tuner1"}  # the chief only serves the oracle
    assert "worker finished" in outputs[1] and "worker finished" in outputs[2]


@pytest.mark.parametrize("env,worker", [
    ({}, False),
    ({"KERASTUNER_TUNER_ID": "chief", "KERASTUNER_ORACLE_IP": "127.0.0.1", "KERASTUNER_ORACLE_PORT": "1"}, False),
    ({"KERASTUNER_TUNER_ID": "tuner0", "KERASTUNER_ORACLE_IP": "127.0.0.1", "KERASTUNER_ORACLE_PORT": "1"}, True),
])
def test_a_worker_is_told_by_keras_tuners_environment_variables(monkeypatch, env, worker):
    from keras_resnet.tuning import _is_worker

    for name in ("KERASTUNER_TUNER_ID", "KERASTUNER_ORACLE_IP", "KERASTUNER_ORACLE_PORT"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert _is_worker() is worker
