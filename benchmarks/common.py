"""Shared benchmark plumbing: alternating timed runs, medians, and a JSON record of the machine.

Every benchmark measures ours and the reference in the same run, alternating between them so
that a busy machine slows both alike, and reports the ratio (reference time / our time: above 1
means we are faster).
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def quiet_tensorflow():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from keras_resnet.cli import import_keras

    return import_keras(verbose=False)


def alternate(candidates: dict[str, Callable[[], None]], rounds: int, repeat: int) -> dict[str, list[float]]:
    """Times each callable ``repeat`` times per round, alternating over ``rounds`` rounds.

    Returns seconds per call, per name. Callers warm each callable up before.
    """
    times: dict[str, list[float]] = {name: [] for name in candidates}
    for r in range(rounds):
        order = list(candidates) if r % 2 == 0 else list(reversed(candidates))
        for name in order:
            fn = candidates[name]
            for _ in range(repeat):
                start = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - start)
    return times


def median(values: list[float]) -> float:
    return statistics.median(values)


def machine() -> dict:
    import keras
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    gpu_names = []
    for gpu in gpus:
        try:
            gpu_names.append(tf.config.experimental.get_device_details(gpu).get("device_name", gpu.name))
        except Exception:  # noqa: BLE001 - details are best effort
            gpu_names.append(gpu.name)
    return {
        "date": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "gpus": gpu_names,
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
    }


def write_result(name: str, record: dict) -> Path:
    """Writes ``benchmarks/results/<name>.json`` atomically and returns its path."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    record = {"benchmark": name, "machine": machine(), **record}
    fd, tmp = tempfile.mkstemp(dir=RESULTS, suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(record, f, indent=2)
        f.write("\n")
    os.replace(tmp, path)
    return path
