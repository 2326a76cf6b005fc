"""A training run's folder: what :func:`keras_resnet.training.train` writes, and how it resumes.

The folder holds ``model.keras`` (best by validation accuracy), ``history.csv`` (one row per
epoch), ``curves.png``, ``metrics.json`` and ``state.json``; ``backup/`` holds
``keras.callbacks.BackupAndRestore``'s checkpoint while the run is unfinished, and ``logs/`` the
optional TensorBoard logs.

``state.json`` is the resume record: the run's *signature* (model, overrides, dataset and
settings), whether it finished, the history rows, the best epoch and one entry per session.
A second call with the same signature continues an unfinished run from its last finished epoch;
another signature, or a finished run, is refused unless the caller overwrites. Every file is
written atomically (:mod:`keras_resnet.fileio`), so a kill at any moment leaves either the old
file or the new one.

This module imports Keras and matplotlib only when they are used.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import shutil
import time
from pathlib import Path
from typing import Any

from keras_resnet import fileio

OUTPUTS = ("state.json", "history.csv", "model.keras", "metrics.json", "curves.png")
STATE_FORMAT = 1


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the last finished epoch stays in the backup."""


def signature(model: Any, overrides: dict, dataset: str, config: Any) -> dict:
    """What identifies a run for resuming: the same signature continues, another is refused.

    Args:
        model: a preset name, or a ``keras.Model`` (identified by its name).
        overrides: the preset's ``ResNet`` overrides.
        dataset: the dataset's name.
        config: a :class:`keras_resnet.training.TrainConfig` (``tensorboard`` is left out: it
            changes no result).

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
        "config": {k: v for k, v in dataclasses.asdict(config).items() if k != "tensorboard"},
    }, default=str))


def prepare(out: Path, signature: dict, overwrite: bool) -> dict:
    """Checks ``out`` against ``signature``, creates it, and returns the run's state.

    Args:
        out: the run's folder (it may not exist yet).
        signature: from :func:`signature`.
        overwrite: delete a previous run's files (finished or not) and start afresh.

    Returns:
        The state dict (``signature``, ``finished``, ``history``, ``best``, ``sessions``): the
        unfinished run's to resume it, or a new one.

    Raises:
        ValueError: ``out`` holds a finished run, a run with another signature, or run files
            without ``state.json``.

    Example:
    >>> # state = prepare(Path("runs/r20"), signature("resnet20", {}, "digits", config), False)
    """
    state = _read_state(out / "state.json")
    leftovers = [n for n in OUTPUTS if (out / n).exists()] + (["backup"] if (out / "backup").exists() else [])
    if overwrite:
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
    out.mkdir(parents=True, exist_ok=True)
    if state is None:
        state = {"format": STATE_FORMAT, "signature": signature, "finished": False, "history": [], "best": None, "sessions": []}
    return state


def callbacks(folder: Path, state: dict, monitor: str | None, tensorboard: bool = False) -> list:
    """The callbacks that keep ``folder`` current during ``model.fit``, in the order they need.

    Per epoch: the history row, the best model (by ``monitor``; every epoch's when None) and
    ``state.json``, then the backup that resuming restores. A NaN or infinite loss raises
    :class:`TrainingDiverged` at once.

    Args:
        folder: the run's folder (a scratch folder on workers other than the chief).
        state: from :func:`prepare`; updated in place.
        monitor: the log key that picks the best model (``"val_accuracy"``), or None.
        tensorboard: also write TensorBoard logs to ``folder/logs``.

    Returns:
        A list of ``keras.callbacks.Callback``.

    Example:
    >>> # model.fit(train_ds, epochs=30, callbacks=callbacks(out, state, "val_accuracy"))
    """
    import keras

    classes = _callback_classes()
    result = [classes.TerminateOnNaN(folder / "backup"), classes.Recorder(folder, state, monitor)]
    if tensorboard:
        result.append(keras.callbacks.TensorBoard(log_dir=str(folder / "logs")))
    # Last, so that an epoch's history row and best model are on disk before its backup. Kept
    # until metrics.json is written: a crash during the evaluation must not mean retraining.
    result.append(keras.callbacks.BackupAndRestore(str(folder / "backup"), double_checkpoint=True, delete_checkpoint=False))
    return result


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
    >>> # finish(out, state, {"test_accuracy": 0.98})
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
        """Per epoch: the history row (one per epoch, rewritten atomically), the best model
        (saved atomically when the monitored value improves), and the resume record."""

        def __init__(self, out: Path, state: dict, monitor: str | None):
            super().__init__()
            self.out, self.state, self.monitor = out, state, monitor
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
                # Keras saves only to a path that ends in .keras (not to a file object), so
                # fileio cannot stream it: save beside the target, then rename over it.
                tmp = self.out / ".model.tmp.keras"
                self.model.save(tmp)
                os.replace(tmp, self.out / "model.keras")
                self.state["best"] = {"epoch": epoch + 1, "monitor": self.monitor, "value": value}
            self.state["history"] = [r for r in self.state["history"] if r["epoch"] < epoch + 1] + [row]
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
