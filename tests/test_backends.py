"""The Keras backend: choosing it, the JAX compilation cache, and a JAX-trained model on TensorFlow."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from keras_resnet import backends, cli
from keras_resnet.backends import compilation_cache_dir, select_backend

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_cache_folder_follows_the_environment(tmp_path):
    assert compilation_cache_dir({"XDG_CACHE_HOME": str(tmp_path)}) == tmp_path / "keras-resnet" / "jax"
    assert compilation_cache_dir({"KERAS_RESNET_JAX_CACHE": str(tmp_path / "c")}) == tmp_path / "c"
    for off in ("off", "0", "False", "no"):
        assert compilation_cache_dir({"KERAS_RESNET_JAX_CACHE": off}) is None
    assert compilation_cache_dir({}) == compilation_cache_dir({"HOME": "unused"})


def test_a_process_keeps_the_backend_keras_was_imported_with():
    current = keras.backend.backend()
    other = next(b for b in backends.BACKENDS if b != current)
    assert select_backend(None) == select_backend(current) == current
    with pytest.raises(ValueError, match=rf"already imported in this process with the '{current}' backend.*KERAS_BACKEND={other}"):
        select_backend(other)
    with pytest.raises(ValueError, match=r"backend must be one of tensorflow, jax; received backend='torch'"):
        select_backend("torch")


def test_jax_missing_is_named_with_the_install_command(monkeypatch):
    monkeypatch.setattr(backends.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ValueError, match=r"needs JAX, which is not installed: pip install 'keras-residual\[jax\]'"):
        select_backend("jax")


@pytest.mark.parametrize("command", [
    ["train", "--backend", "jax", "--strategy", "mirrored"],
    ["tune", "--backend", "jax", "--export"],
])
def test_cli_refuses_what_needs_tensorflow_on_jax(command, tmp_path, capsys, monkeypatch):
    # Checked before the backend would have to change: the message is about the flag, not the process.
    monkeypatch.setattr(backends, "select_backend", lambda name=None: name or "tensorflow")
    with pytest.raises(SystemExit) as exit_info:
        cli.main([*command, "--out", str(tmp_path / "out")])
    assert exit_info.value.code == 2
    assert "tensorflow" in capsys.readouterr().err.lower()


def test_cli_backend_flag_cannot_switch_a_running_process(tmp_path, capsys):
    other = next(b for b in backends.BACKENDS if b != keras.backend.backend())
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["train", "--backend", other, "--out", str(tmp_path / "out")])
    assert exit_info.value.code == 2
    assert "already imported in this process" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="exports run on TensorFlow")
def test_a_model_trained_on_jax_loads_evaluates_and_exports_on_tensorflow(tmp_path):
    pytest.importorskip("jax")
    cache, out = tmp_path / "jax-cache", tmp_path / "run"
    env = {**os.environ, "KERAS_RESNET_JAX_CACHE": str(cache), "PYTHONPATH": ROOT}
    env.pop("KERAS_BACKEND")  # the flag alone chooses
    trained = subprocess.run(
        [sys.executable, "-m", "keras_resnet", "train", "--backend", "jax", "--model", "resnet20", "--depth", "8",
         "--epochs", "2", "--image-size", "8", "--batch-size", "128", "--out", str(out), "--progress", "0"],
        capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path)
    assert trained.returncode == 0, trained.stdout + trained.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["versions"]["backend"] == "jax" and metrics["device"]["jit_compile"] is True
    assert any(cache.iterdir())  # the compiled programs, for the next process

    import keras_resnet.models  # noqa: F401 - registers the classes
    from keras_resnet.data import load_dataset
    from keras_resnet.pipeline import export_trained

    model = keras.saving.load_model(out / "model.keras")
    data = load_dataset("digits", image_size=8, batch_size=128)
    model.compile(loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    _, accuracy = model.evaluate(data.test, verbose=0)
    assert accuracy == pytest.approx(metrics["test_accuracy"], abs=1 / 360)  # one test image at most
    records = export_trained(out / "model.keras", "from_jax", base=tmp_path / "models", tflite=("float32",))
    assert [r["format"] for r in records] == ["saved_model", "float32"], records
    assert all(r["passed"] for r in records), records
    assert np.isfinite([r["max_abs_diff"] for r in records]).all()
