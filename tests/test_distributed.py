"""Multi-process data-parallel training (keras_resnet.distributed): settings, and 2 processes on
127.0.0.1 in subprocesses on the JAX backend (CPU, gloo collectives)."""

from __future__ import annotations

import csv
import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from keras_resnet import cli, distributed
from keras_resnet.training import TrainConfig, check_cluster, train

ROOT = Path(__file__).resolve().parents[1]
DEADLINE = 900  # for hangs only: a lost peer leaves the others waiting in a collective


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def jax_env() -> dict:
    # The package's default compilation cache (a user folder, warm after the first run) is kept:
    # a fresh one per test made every process compile every step and initialiser again.
    return {**os.environ, "KERAS_BACKEND": "jax", "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(ROOT)}


def epochs_of(out: Path) -> list[int]:
    with open(out / "history.csv", newline="") as f:
        return [int(row["epoch"]) for row in csv.DictReader(f)]


# ---- settings -----------------------------------------------------------------------------------

def test_no_settings_mean_one_process():
    assert distributed.resolve(TrainConfig(), {}) is None
    assert distributed.resolve(TrainConfig(num_processes=1), {}) is None


def test_the_config_wins_over_keras_variables():
    env = {distributed.NUM_PROCESSES_ENV: "4", distributed.PROCESS_ID_ENV: "3",
           distributed.ADDRESSES_ENV: "10.0.0.1:1234,10.0.0.2:1234,10.0.0.3:1234,10.0.0.4:1234"}
    assert distributed.resolve(TrainConfig(), env) == distributed.Cluster(4, 3, "10.0.0.1:1234")
    config = TrainConfig(num_processes=2, process_id=1, coordinator="host-a:29500")
    assert distributed.resolve(config, env) == distributed.Cluster(2, 1, "host-a:29500")


@pytest.mark.parametrize("config, env, message", [
    (dict(num_processes=2, process_id=2), {}, r"process_id must be in \[0, num_processes\) = \[0, 2\); received process_id=2"),
    (dict(num_processes=0), {}, r"num_processes must be"),
    (dict(coordinator="10.0.0.1"), {}, r"coordinator must be process 0's address as HOST:PORT .*received coordinator='10.0.0.1'"),
    (dict(coordinator="10.0.0.1:70000"), {}, r"HOST:PORT"),
])
def test_bad_settings_fail_in_the_config(config, env, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**config)


@pytest.mark.parametrize("config, env, message", [
    (dict(num_processes=2, coordinator="127.0.0.1:1234"), {}, r"process id must be in \[0, 2\).*--process-id I"),
    (dict(num_processes=2, process_id=1), {}, r"--coordinator HOST:PORT"),
    (dict(process_id=1), {}, r"--num-processes N"),
    (dict(), {distributed.NUM_PROCESSES_ENV: "two"}, r"KERAS_DISTRIBUTION_NUM_PROCESSES must be an integer"),
    (dict(), {distributed.NUM_PROCESSES_ENV: "2", distributed.PROCESS_ID_ENV: "5",
              distributed.ADDRESSES_ENV: "h:1"}, r"process id must be in \[0, 2\)"),
])
def test_incomplete_settings_name_the_flag(config, env, message):
    with pytest.raises(ValueError, match=message):
        distributed.resolve(TrainConfig(**config), env)


def test_train_refuses_several_processes_on_tensorflow_before_anything(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_BACKEND", "tensorflow")
    config = TrainConfig(epochs=1, num_processes=2, process_id=0, coordinator="127.0.0.1:1234")
    with pytest.raises(ValueError, match="runs through keras.distribution on the JAX backend; pass --backend jax"):
        train("resnet20", "digits", config, out=tmp_path / "run", depth=8)
    assert not (tmp_path / "run").exists()
    config = TrainConfig(epochs=1, batch_size=63, num_processes=2, process_id=0, coordinator="127.0.0.1:1234")
    with pytest.raises(ValueError, match=r"global batch size \(63\) must divide evenly between the 2 processes"):
        train("resnet20", "digits", config, out=tmp_path / "run", depth=8)


@pytest.mark.parametrize("flags, message", [
    (["--num-processes", "2", "--process-id", "2", "--coordinator", "127.0.0.1:1"], "process_id must be in [0, num_processes)"),
    (["--backend", "tensorflow", "--num-processes", "2", "--process-id", "0", "--coordinator", "127.0.0.1:1"],
     "pass --backend jax"),
    (["--num-processes", "2", "--process-id", "1"], "--coordinator HOST:PORT"),
])
def test_the_command_checks_the_flags(flags, message, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["train", "--out", str(tmp_path / "out"), "--epochs", "1", *flags])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_the_tf_config_error_names_the_flags(monkeypatch):
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": {"worker": ["a:1", "b:1"]}, "task": {"type": "worker", "index": 0}}))
    with pytest.raises(ValueError, match="--num-processes N --process-id I --coordinator HOST:PORT"):
        check_cluster(TrainConfig())


# ---- two processes on 127.0.0.1 -----------------------------------------------------------------

# One process of a run: train(), then the final weights into an .npz file. 1280 training images
# (validation_split=0.109) make 20 full batches of 64, so no batch is cut short. One epoch: the
# all-reduce sums the gradients in another order than one process does, and training amplifies
# that float32 rounding (measured: 1.2e-7 after one step, 3.2e-6 after this epoch's 20, 7e-5
# after 40), so the comparison with one process is made where it is still rounding.
TRAIN_AND_DUMP = """
import sys
import numpy as np
from keras_resnet.training import TrainConfig, train

n, i, port, out, dump = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
ranks = {} if n == 1 else dict(num_processes=n, process_id=i, coordinator=f"127.0.0.1:{port}")
config = TrainConfig(epochs=1, image_size=8, batch_size=64, validation_split=0.109, **ranks)
result = train("resnet20", "digits", config, out=out, verbose=0, depth=8, set_global_seed=True)
np.savez(dump, *result.model.get_weights())
"""


def start(args, env, **kwargs):
    return subprocess.Popen([sys.executable, *args], env=env, cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, **kwargs)


def finish(processes) -> list[str]:
    outputs = []
    try:
        for p in processes:
            outputs.append(p.communicate(timeout=DEADLINE)[0])
    finally:
        for p in processes:
            if p.poll() is None:
                p.kill()
    return outputs


@pytest.mark.slow
def test_two_processes_train_as_one_with_the_same_global_batch(tmp_path):
    import numpy as np

    env, port = jax_env(), free_port()
    runs = [start(["-c", TRAIN_AND_DUMP, "2", str(i), str(port), str(tmp_path / "two"), str(tmp_path / f"p{i}.npz")], env)
            for i in range(2)]
    runs.append(start(["-c", TRAIN_AND_DUMP, "1", "0", "0", str(tmp_path / "one"), str(tmp_path / "single.npz")], env))
    outputs = finish(runs)
    for p, output in zip(runs, outputs):
        assert p.returncode == 0, output[-3000:]
    p0, p1, single = (np.load(tmp_path / name) for name in ("p0.npz", "p1.npz", "single.npz"))
    assert len(p0.files) == len(single.files) > 0  # BatchNorm's moving statistics included
    for key in single.files:
        np.testing.assert_array_equal(p0[key], p1[key])
        np.testing.assert_allclose(p0[key], single[key], rtol=0, atol=1e-5)
    # Only process 0 wrote the run folder, as a single process does.
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == sorted(p.name for p in (tmp_path / "one").iterdir())
    assert epochs_of(tmp_path / "two") == [1]
    metrics = json.loads((tmp_path / "two" / "metrics.json").read_text())
    assert metrics["device"]["processes"] == 2 and metrics["config"]["batch_size"] == 64


# Both processes SIGKILL themselves right after epoch 2 (process 0 has written its resume file:
# the run's callbacks come first), as when a machine is lost and the job is stopped everywhere.
KILLED_AFTER_EPOCH_2 = """
import os, signal, sys
import keras
from keras_resnet.training import TrainConfig, train

class KillAfterEpoch2(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 == 2:
            sys.stdout.flush()
            os.kill(os.getpid(), signal.SIGKILL)

i, port, out, epochs = int(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4])
config = TrainConfig(epochs=epochs, image_size=8, batch_size=128, num_processes=2, process_id=i,
                     coordinator=f"127.0.0.1:{port}")
train("resnet20", "digits", config, out=out, verbose=2, depth=8, set_global_seed=True, callbacks=[KillAfterEpoch2()])
"""


@pytest.mark.slow
def test_killed_processes_restarted_with_the_same_commands_resume(tmp_path):
    env, out, epochs = jax_env(), tmp_path / "run", 3
    port = free_port()
    first = [start(["-c", KILLED_AFTER_EPOCH_2, str(i), str(port), str(out), str(epochs)], env) for i in range(2)]
    outputs = finish(first)
    assert [p.returncode for p in first] == [-signal.SIGKILL] * 2, outputs[0][-3000:] + outputs[1][-3000:]
    assert epochs_of(out) == [1, 2] and (out / "backup" / "resume.npz").exists()

    def commands(outs):
        port = free_port()
        return [["-m", "keras_resnet.cli", "train", "--backend", "jax", "--model", "resnet20", "--depth", "8",
                 "--dataset", "digits", "--image-size", "8", "--batch-size", "128", "--epochs", str(epochs),
                 "--out", str(outs[i]), "--progress", "2", "--num-processes", "2", "--process-id", str(i),
                 "--coordinator", f"127.0.0.1:{port}"] for i in range(2)]

    # A run folder that process 1 cannot see (a local folder on another machine): both stop, untrained.
    apart = [start(c, env) for c in commands([out, tmp_path / "elsewhere"])]
    outputs = finish(apart)
    for p, output in zip(apart, outputs):
        assert p.returncode == 2, output[-3000:]
        assert "disagree on the last finished epoch (process 0: 2, process 1: 0)" in output
        assert "must be shared storage" in output
    assert epochs_of(out) == [1, 2]

    second = [start(c, env) for c in commands([out, out])]
    outputs = finish(second)
    for p, output in zip(second, outputs):
        assert p.returncode == 0, output[-3000:]
        assert "Resuming" in output and f"Epoch 3/{epochs}" in output and f"Epoch 2/{epochs}" not in output
    assert epochs_of(out) == list(range(1, epochs + 1))  # each epoch once
    state = json.loads((out / "state.json").read_text())
    assert state["finished"] and [s["first_epoch"] for s in state["sessions"]] == [1, 3]
    assert not (out / "backup").exists()
    assert "process 1 of 2: process 0 writes" in outputs[1]
