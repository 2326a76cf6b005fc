"""A training run's folder: what :func:`keras_resnet.training.train` writes, and how it resumes.

The folder holds ``history.csv`` (one row per epoch) and ``state.json`` from the first epoch
on; ``model.keras`` (best by validation accuracy), ``curves.png`` and ``metrics.json`` once the
run has finished; ``backup/resume.npz`` while it is unfinished; ``logs/`` the optional
TensorBoard logs.

``state.json`` records the run's *signature* (model, overrides, dataset and settings), whether
it finished, the history rows, the best epoch and one entry per session. A second call with the
same signature continues an unfinished run from its last finished epoch; another signature, or
a finished run, is refused unless the caller overwrites.

``backup/resume.npz`` (:class:`Checkpoint`) is what resuming restores: after every epoch, one
file with the model's variables, the optimizer's (its step count and momentum), the best
epoch's weights and the state, so that all of them always belong to the same epoch. It replaces
``keras.callbacks.BackupAndRestore`` (a TensorFlow checkpoint written twice: 89 ms per epoch
for a ResNet-20 on 2 CPU cores, against 13 ms) and saving ``model.keras`` at every improvement
(90 ms): the best weights stay in memory and in the backup, and ``model.keras`` is written
once, at the end. Every file is written atomically (:mod:`keras_resnet.fileio`), so a kill at
any moment leaves either the old file or the new one.

This module imports Keras and matplotlib only when they are used.
"""

from __future__ import annotations

import dataclasses
import functools
import io
import json
import math
import os
import shutil
import time
import zipfile
from pathlib import Path
from typing import Any

from keras_resnet import fileio

OUTPUTS = ("state.json", "history.csv", "model.keras", "metrics.json", "curves.png", "skipped_files.txt")
STATE_FORMAT = 1
# Settings that change no result: a run resumes with other values (another process count, another
# coordinator; the global batch is what the recipe sees).
NOT_IN_SIGNATURE = ("tensorboard", "num_processes", "process_id", "coordinator")


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the last finished epoch stays in the backup."""


def signature(model: Any, overrides: dict, dataset: str, config: Any) -> dict:
    """What identifies a run for resuming: the same signature continues, another is refused.

    Args:
        model: a preset name, or a ``keras.Model`` (identified by its name).
        overrides: the preset's ``ResNet`` overrides.
        dataset: the dataset's name.
        config: a :class:`keras_resnet.training.TrainConfig` (``tensorboard`` and the process
            settings are left out: they change no result).

    Returns:
        A dict as ``state.json`` holds it (values JSON-normalised, so a reloaded signature
        compares equal).

    Example:
    >>> from keras_resnet.training import TrainConfig
    >>> signature("resnet20", {}, "digits", TrainConfig())["config"]["schedule"]
    'step'
    """
    return json.loads(json.dumps({
        "model": model if isinstance(model, str) else getattr(model, "name", "model"),
        "overrides": overrides, "dataset": dataset,
        "config": {k: v for k, v in dataclasses.asdict(config).items() if k not in NOT_IN_SIGNATURE},
    }, default=str))


def prepare(out: Path, signature: dict, overwrite: bool, create: bool = True) -> dict:
    """Checks ``out`` against ``signature``, creates it, and returns the run's state.

    Args:
        out: the run's folder (it may not exist yet).
        signature: from :func:`signature`.
        overwrite: delete a previous run's files (finished or not) and start afresh.
        create: False checks ``out`` and returns the state without deleting or creating
            anything (what processes other than process 0 of a multi-process run do).

    Returns:
        The state dict (``signature``, ``finished``, ``history``, ``best``, ``sessions``): the
        unfinished run's to resume it, or a new one.

    Raises:
        ValueError: ``out`` holds a finished run, a run with another signature, or run files
            without ``state.json``.

    Example:
    >>> from keras_resnet.training import TrainConfig
    >>> state = prepare(Path("r20"), signature("resnet20", {}, "digits", TrainConfig()), False)
    >>> state["finished"], state["history"], Path("r20").is_dir()
    (False, [], True)
    """
    state = _read_state(out / "state.json")
    leftovers = [n for n in OUTPUTS if (out / n).exists()] + (["backup"] if (out / "backup").exists() else [])
    if overwrite and not create:
        state = None
    elif overwrite:
        for name in leftovers + (["logs"] if (out / "logs").exists() else []):
            path = out / name
            shutil.rmtree(path) if path.is_dir() else path.unlink()
        state = None
    elif state is None and leftovers:
        raise ValueError(f"out {str(out)!r} holds {', '.join(leftovers)} but no state.json; choose another folder or overwrite")
    elif state is not None and state.get("finished"):
        raise ValueError(
            f"out {str(out)!r} already holds a finished run ({len(state['history'])} epochs); "
            "choose another folder, or overwrite (--overwrite) to train again"
        )
    elif state is not None and state.get("signature") != signature:
        diff = _differences(state.get("signature", {}), signature)
        raise ValueError(
            f"out {str(out)!r} holds an unfinished run with other settings ({diff}); rerun with "
            "the same settings to resume it, or choose another folder, or overwrite"
        )
    if create:
        out.mkdir(parents=True, exist_ok=True)
    if state is None:
        state = {"format": STATE_FORMAT, "signature": signature, "finished": False, "history": [], "best": None, "sessions": []}
    return state


class Checkpoint:
    """The run's resume file, ``backup/resume.npz``, and the best epoch's weights in memory.

    :meth:`save` writes, in one atomic file: the model's variables (``model.get_weights()``:
    trainable, and BatchNorm's moving statistics), the optimizer's variables (step count and
    momentum, so the learning-rate schedule and SGD continue where they stopped), the best
    epoch's weights (left out while the best epoch is the last one) and the run's state as JSON.
    :meth:`restore` puts all of it back. The file stays until :func:`finish`: a crash while the
    finished run is being evaluated does not mean training again.

    Args:
        folder: the run's folder.

    Example:
    >>> from keras_resnet.models import ResNet
    >>> model = ResNet(depth=8, input_shape=(8, 8, 1), classes=3)
    >>> checkpoint = Checkpoint(Path("run"))
    >>> checkpoint.restore(model, {})  # no resume file yet: training starts at epoch 0
    0
    """

    def __init__(self, folder: Path):
        self.path = Path(folder) / "backup" / "resume.npz"
        self.best: list | None = None  # the best epoch's weights (numpy arrays)

    def save(self, model, state: dict) -> None:
        """Writes the resume file for the epoch that ``state["history"]`` ends with."""
        import numpy as np

        weights = model.get_weights()
        optimizer = [np.asarray(v) for v in model.optimizer.variables]
        epoch = state["history"][-1]["epoch"] if state["history"] else 0
        best_is_last = self.best is None or (state["best"] or {}).get("epoch") == epoch
        arrays = {f"w{i}": w for i, w in enumerate(weights)}
        arrays.update({f"o{i}": v for i, v in enumerate(optimizer)})
        if not best_is_last:
            arrays.update({f"b{i}": w for i, w in enumerate(self.best)})
        meta = {"format": STATE_FORMAT, "epoch": epoch, "weights": len(weights), "optimizer": len(optimizer),
                "best_is_last": best_is_last, "state": state}
        arrays["meta"] = np.array(json.dumps(meta, default=str))
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        fileio.write_bytes(self.path, buffer.getvalue())

    def stored_epoch(self) -> int:
        """The last finished epoch that the resume file holds; 0 without a file."""
        import numpy as np

        if not self.path.exists():
            return 0
        try:
            with np.load(self.path) as stored:
                return int(json.loads(str(stored["meta"]))["epoch"])
        except (OSError, ValueError, KeyError, zipfile.BadZipFile) as e:
            raise ValueError(f"{self.path} is not a readable resume file ({e}); remove it or overwrite") from None

    def restore(self, model, state: dict, restore_optimizer: bool = True) -> int:
        """Loads the resume file, if there is one, into ``model``, its optimizer and ``state``.

        Args:
            model: the compiled model.
            state: the run's state, updated in place.
            restore_optimizer: also restore the optimizer's variables; False where the run goes on with
                a fresh optimizer (a fine-tuning run resumed at its phase boundary).

        Returns:
            The number of finished epochs (``initial_epoch`` for ``model.fit``); 0 without a file.

        Raises:
            ValueError: the file does not fit the model (another architecture).
        """
        import numpy as np

        if not self.path.exists():
            return 0
        try:
            with np.load(self.path) as stored:
                meta = json.loads(str(stored["meta"]))
                weights = [stored[f"w{i}"] for i in range(meta["weights"])]
                optimizer = [stored[f"o{i}"] for i in range(meta["optimizer"])]
                best = None if meta["best_is_last"] else [stored[f"b{i}"] for i in range(meta["weights"])]
        except (OSError, ValueError, KeyError, zipfile.BadZipFile) as e:  # not a file this module wrote
            raise ValueError(f"{self.path} is not a readable resume file ({e}); remove it or overwrite") from None
        if not model.optimizer.built:
            model.optimizer.build(model.trainable_variables)
        if not restore_optimizer:
            optimizer = list(model.optimizer.variables)  # kept as they are
        expected = [tuple(w.shape) for w in model.weights] + [tuple(v.shape) for v in model.optimizer.variables]
        found = [tuple(w.shape) for w in weights] + [tuple(v.shape) for v in optimizer]
        if expected != found:
            raise ValueError(
                f"{self.path} holds {len(weights)} model and {len(optimizer)} optimizer variables that do not "
                f"fit this model ({len(model.weights)} and {len(model.optimizer.variables)}, or other shapes); "
                "remove it or overwrite to start the run afresh"
            )
        model.set_weights(weights)
        if restore_optimizer:
            for variable, value in zip(model.optimizer.variables, optimizer):
                variable.assign(value)
        self.best = best if best is not None else [w.copy() for w in weights]
        state.update({k: v for k, v in meta["state"].items() if k != "signature"})
        return int(meta["epoch"])

    def best_weights(self, model) -> list:
        """The best epoch's weights (the model's own when no epoch was recorded)."""
        return self.best if self.best is not None else model.get_weights()


def callbacks(folder: Path, state: dict, monitor: str | None, checkpoint: Checkpoint,
              tensorboard: bool = False) -> list:
    """The callbacks that keep ``folder`` current during ``model.fit``, in the order they need.

    Per epoch: the best weights (by ``monitor``; every epoch's when None), the resume file
    (``checkpoint``), then ``history.csv`` and ``state.json``. A NaN or infinite loss raises
    :class:`TrainingDiverged` at once.

    Args:
        folder: the run's folder (a scratch folder on workers other than the chief).
        state: from :func:`prepare`; updated in place.
        monitor: the log key that picks the best model (``"val_accuracy"``), or None.
        checkpoint: the run's :class:`Checkpoint` (restored before ``fit``).
        tensorboard: also write TensorBoard logs to ``folder/logs``.

    Returns:
        A list of ``keras.callbacks.Callback``.

    Example:
    >>> out = Path("run")
    >>> state = prepare(out, {"model": "example"}, False)
    >>> [type(c).__name__ for c in callbacks(out, state, "val_accuracy", Checkpoint(out))]
    ['TerminateOnNaN', 'Recorder']
    """
    import keras

    classes = _callback_classes()
    result = [classes.TerminateOnNaN(folder / "backup"), classes.Recorder(folder, state, monitor, checkpoint)]
    if tensorboard:
        result.append(keras.callbacks.TensorBoard(log_dir=str(folder / "logs")))
    return result


def save_model(model, path: Path) -> None:
    """Saves ``model`` as a ``.keras`` file atomically."""
    # Keras saves only to a path that ends in .keras (not to a file object), so fileio cannot
    # stream it: save beside the target, then rename over it.
    tmp = path.parent / f".{path.stem}.tmp.keras"
    model.save(tmp)
    os.replace(tmp, path)


def finish(folder: Path, state: dict, metrics: dict, keep: bool = True) -> None:
    """Closes a run: writes ``curves.png`` and ``metrics.json``, marks ``state.json`` finished,
    and removes the backup.

    Args:
        folder: the run's folder.
        state: the run's state (its history is plotted).
        metrics: what ``metrics.json`` holds.
        keep: False (a temporary folder, or a worker's scratch folder) writes nothing and only
            removes the backup.

    Example:
    >>> out = Path("run")
    >>> state = prepare(out, {"model": "example"}, False)
    >>> state["history"] = [{"epoch": 1, "loss": 0.5, "accuracy": 0.9}]
    >>> finish(out, state, {"test_accuracy": 0.98})
    >>> sorted(p.name for p in out.iterdir()), state["finished"]
    (['curves.png', 'metrics.json', 'state.json'], True)
    """
    if keep:
        plot_history(state["history"], folder / "curves.png")
        fileio.write_json(folder / "metrics.json", metrics)
        state["finished"] = True
        fileio.write_json(folder / "state.json", state)
        for leftover in folder.glob(".*.tmp*"):  # from a process killed while saving
            leftover.unlink()
    shutil.rmtree(folder / "backup", ignore_errors=True)


def plot_history(rows: list[dict], path: str | os.PathLike) -> None:
    """Plots loss and error (train and validation) per epoch into an image file.

    Args:
        rows: history rows with ``epoch``, ``loss``, ``accuracy`` and optionally
            ``val_loss``, ``val_accuracy``.
        path: the image file to write (atomically).

    Example:
    >>> plot_history([{"epoch": 1, "loss": 1.0, "accuracy": 0.5}], "curves.png")
    """
    # A Figure without pyplot: no global backend switch (a notebook keeps its inline plots)
    # and no figure left open in pyplot's registry.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 4))
    FigureCanvasAgg(fig)
    ax_loss, ax_err = fig.subplots(1, 2)
    epochs = [r["epoch"] for r in rows]
    for prefix, label, style in (("", "train", "-"), ("val_", "validation", "--")):
        if rows and f"{prefix}loss" in rows[0]:
            ax_loss.plot(epochs, [r.get(f"{prefix}loss") for r in rows], style, label=label)
            ax_err.plot(epochs, [100 * (1 - r.get(f"{prefix}accuracy", 0)) for r in rows], style, label=label)
    ax_loss.set(xlabel="epoch", ylabel="loss", title="Loss", yscale="log")
    # Linear below 1%, logarithmic above: the last tenths of a percent stay readable.
    ax_err.set(xlabel="epoch", ylabel="error (%)", title="Error")
    ax_err.set_yscale("symlog", linthresh=1)
    for ax in (ax_loss, ax_err):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fileio.savefig(fig, path, dpi=100)


@functools.cache
def _callback_classes():
    """The Keras callback classes, defined on first use so that this module imports without TF."""
    import keras

    class Recorder(keras.callbacks.Callback):
        """Per epoch: the best weights (copied when the monitored value improves), the resume
        file, then the history row (one per epoch) and ``state.json``. The resume file comes
        first and holds the state too, so a kill between the writes loses nothing: resuming
        takes the state from it."""

        def __init__(self, out: Path, state: dict, monitor: str | None, checkpoint: Checkpoint):
            super().__init__()
            self.out, self.state, self.monitor, self.checkpoint = out, state, monitor, checkpoint
            self.first_epoch = None

        def on_epoch_begin(self, epoch, logs=None):
            if self.first_epoch is None:
                self.first_epoch = epoch
                self.state["sessions"].append({"first_epoch": epoch + 1, "started": time.strftime("%Y-%m-%dT%H:%M:%S")})
            self.started = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            logs = logs or {}
            row = {"epoch": epoch + 1}
            row.update({k: float(v) for k, v in logs.items() if k in ("loss", "accuracy", "val_loss", "val_accuracy")})
            row["lr"] = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
            row["seconds"] = round(time.perf_counter() - self.started, 3)
            best = self.state["best"]
            value = row.get(self.monitor) if self.monitor else None
            if self.monitor is None or best is None or value > best["value"]:
                self.checkpoint.best = self.model.get_weights()
                self.state["best"] = {"epoch": epoch + 1, "monitor": self.monitor, "value": value}
            self.state["history"] = [r for r in self.state["history"] if r["epoch"] < epoch + 1] + [row]
            self.checkpoint.save(self.model, self.state)
            fileio.write_csv(self.out / "history.csv", self.state["history"])
            fileio.write_json(self.out / "state.json", self.state)

    class TerminateOnNaN(keras.callbacks.TerminateOnNaN):
        """Stops at the first NaN or infinite loss with a message that says what to do; raising
        skips the epoch's end, so the backup keeps the last finished epoch."""

        def __init__(self, backup: Path):
            super().__init__(raise_error=True)
            self.backup = backup
            self.epoch = 0

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch

        def on_batch_end(self, batch, logs=None):
            loss = (logs or {}).get("loss")
            if loss is not None and not math.isfinite(float(loss)):
                raise TrainingDiverged(
                    f"training diverged: the loss became {float(loss)} in epoch {self.epoch + 1}, "
                    f"batch {batch + 1}. The last finished epoch is kept in {self.backup}. Lower "
                    "the learning rate or add warm-up, and start again with overwrite (--overwrite)"
                )

    return type("Callbacks", (), {"Recorder": Recorder, "TerminateOnNaN": TerminateOnNaN})


def _read_state(path: Path) -> dict | None:
    try:
        return fileio.read_json(path)
    except ValueError as e:  # a hand-edited or foreign file: say which, and the way out
        raise ValueError(f"{path} is not valid JSON ({e}); remove it or overwrite") from None


def _differences(old: dict, new: dict, prefix: str = "") -> str:
    """``key: old then, new now`` for each differing leaf, nested keys dotted."""
    diffs = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            inner = _differences(a, b, f"{prefix}{key}.")
            diffs += [inner] if inner else []
        elif a != b:
            diffs.append(f"{prefix}{key}: {a!r} then, {b!r} now")
    return "; ".join(diffs)
