"""Shared benchmark plumbing: alternating timed runs, medians, goals, and a JSON record of the run.

Every benchmark measures ours and the reference in the same run, alternating between them so
that a busy machine slows both alike, and reports the ratio (for times: reference time / our
time, so above 1 means we are faster). Each result file holds the machine, the versions, the
date, the load average before the run and how much CPU other processes took while it ran.

Environment:
    BENCH_RESULTS_DIR: where result files go (default ``benchmarks/results``).
    BENCH_LOAD_BEFORE: the 1-minute load average that ``run_all.py`` saw before starting.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import operator
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
ROOT = RESULTS.parent.parent
if str(ROOT) not in sys.path:  # run as `python benchmarks/x.py` from anywhere, without install
    sys.path.insert(0, str(ROOT))

_OPS = {">=": operator.ge, "<=": operator.le}


def quiet_tensorflow():
    """Imports Keras (TensorFlow backend) with TensorFlow's C++ start-up lines off; returns keras."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    # Importing TensorFlow prints C++ start-up lines: send file descriptor 2 to /dev/null meanwhile.
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        from keras_resnet.console import import_keras
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
    return import_keras(verbose=False)


def arguments(doc: str, quick_help: str, rounds: int | None = None, internal: tuple[str, ...] = ()) -> argparse.ArgumentParser:
    """A benchmark's argument parser: its docstring's first line, ``--quick`` and, when
    ``rounds`` is given, ``--rounds`` (alternating rounds; 1 under ``--quick``). ``internal``
    names hidden string options with which the script runs one side of a measurement in a child
    process (see :func:`run_json`)."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    if rounds is not None:
        parser.add_argument("--rounds", type=int, default=rounds, help=f"alternating rounds (default {rounds})")
    parser.add_argument("--quick", action="store_true", help=quick_help)
    for flag in internal:
        parser.add_argument(flag, help=argparse.SUPPRESS)
    return parser


def run_json(command: list[str], env: dict | None, what: str) -> dict:
    """Runs one side of a measurement in a fresh process; returns the last JSON object it
    printed (a line starting with ``{``), or raises with the end of its stderr."""
    out = subprocess.run(command, capture_output=True, text=True, check=False, env=env)
    lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
    if out.returncode != 0 or not lines:
        raise RuntimeError(f"{what} failed (exit status {out.returncode}):\n{out.stderr[-3000:]}")
    return json.loads(lines[-1])


def results_dir() -> Path:
    return Path(os.environ.get("BENCH_RESULTS_DIR") or RESULTS)


def alternate(candidates: dict[str, Callable[[], object]], rounds: int,
              repeat: int | dict[str, int], settle: int = 0) -> dict[str, list[float]]:
    """Times each callable ``repeat`` times per round, alternating over ``rounds`` rounds.

    The order reverses every round, so neither side always runs first. ``repeat`` may be a
    dict (per candidate: a slow one needs fewer calls). ``settle`` untimed calls start each
    turn: the first training step after switching models pays for caches the other model
    evicted (oneDNN's primitive cache, the CPU caches), which is not the model's own speed.
    Returns seconds per call, per name. Callers warm each callable up before.
    """
    times: dict[str, list[float]] = {name: [] for name in candidates}
    for r in range(rounds):
        order = list(candidates) if r % 2 == 0 else list(reversed(candidates))
        for name in order:
            fn = candidates[name]
            for _ in range(settle):
                fn()
            for _ in range(repeat[name] if isinstance(repeat, dict) else repeat):
                start = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - start)
    return times


def median(values: list[float]) -> float:
    return statistics.median(values)


def spread(values: list[float]) -> float:
    """Interquartile range relative to the median (0.05: the middle half lies within 5%)."""
    if len(values) < 4:
        return 0.0
    q = statistics.quantiles(values, n=4)
    return (q[2] - q[0]) / statistics.median(values)


def ratio(benchmark: str, name: str, value: float, goal: str | None = None, digits: int = 3,
          quick: bool = False) -> dict:
    """One row of the summary: ``goal`` is ``">= 1.00"``, ``"<= 0.5"`` or None (for information).

    ``met`` is None for information rows and for quick (smoke) runs, which judge nothing.
    """
    met = None
    if goal is not None and not quick:
        op, target = goal.split()
        met = bool(_OPS[op](round(value, digits), float(target)))
    return {"benchmark": benchmark, "name": name, "value": round(value, digits), "goal": goal, "met": met}


def print_ratios(rows: list[dict]) -> None:
    for r in rows:
        verdict = ("info" if r["goal"] is None else "not judged") if r["met"] is None else ("met" if r["met"] else "NOT met")
        goal = r["goal"] or "-"
        print(f"  {r['name']:<62} {r['value']:>10.3f}   goal {goal:<8} {verdict}")


def load_average() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:  # pragma: no cover - not on Linux
        return []


def _cpu_busy_seconds() -> float | None:
    """Busy CPU seconds of the whole machine since boot (/proc/stat), or None."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except OSError:  # pragma: no cover - not on Linux
        return None
    values = [int(v) for v in fields]
    idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
    return (sum(values[:8]) - idle) / os.sysconf("SC_CLK_TCK")


class Contention:
    """How many cores *other* processes kept busy while a benchmark ran.

    Machine-wide busy time (``/proc/stat``) minus this process's and its children's CPU time,
    divided by the wall time. Near 0: the numbers are clean; near the core count: they are not.
    """

    def __init__(self):
        self.start_wall = time.perf_counter()
        self.start_busy = _cpu_busy_seconds()
        self.start_own = self._own()

    @staticmethod
    def _own() -> float:
        t = os.times()
        return t.user + t.system + t.children_user + t.children_system

    def report(self) -> dict:
        wall = time.perf_counter() - self.start_wall
        busy = _cpu_busy_seconds()
        out = {"wall_seconds": round(wall, 1), "own_cpu_cores": round((self._own() - self.start_own) / wall, 2)}
        if busy is not None and self.start_busy is not None:
            foreign = (busy - self.start_busy) - (self._own() - self.start_own)
            out["other_processes_cpu_cores"] = round(max(0.0, foreign) / wall, 2)
        return out


_CONTENTION = Contention()  # started at import: covers the whole benchmark script


def reset_contention() -> None:
    """Starts the contention record that :func:`machine` reports afresh (after waiting)."""
    global _CONTENTION
    _CONTENTION = Contention()


def busy_cores(seconds: float = 5.0) -> float | None:
    """Cores that other processes keep busy, sampled over ``seconds`` (None off Linux)."""
    probe = Contention()
    time.sleep(seconds)
    return probe.report().get("other_processes_cpu_cores")


def wait_for_quiet(max_load: float = 1.5, max_wait_s: float = 1200, poll_s: float = 60,
                   max_busy: float = 0.5, sample_s: float = 5.0) -> dict:
    """Waits until the machine is quiet, at most ``max_wait_s``.

    Quiet: the 1-minute load average is below ``max_load`` and, over a ``sample_s`` sample, other
    processes keep fewer than ``max_busy`` cores busy (one busy job holds a 2-core machine's load
    near 1: below 1.5, yet half the machine). Returns ``{"load_before": [1, 5, 15 min],
    "busy_cores_before": n, "waited_seconds": s, "quiet": bool}``.
    """
    started = time.monotonic()
    while True:
        load = load_average()
        busy = busy_cores(sample_s) if not load or load[0] < max_load else None
        waited = time.monotonic() - started
        state = {"load_before": load, "busy_cores_before": busy, "waited_seconds": round(waited)}
        if (not load or load[0] < max_load) and (busy is None or busy < max_busy):
            return {**state, "quiet": True}
        if waited >= max_wait_s:
            print(f"load average still {load[0]:.2f} after {waited / 60:.0f} min; measuring anyway", flush=True)
            return {**state, "quiet": False}
        print(f"load average {load[0]:.2f} (limit {max_load}), other processes busy on "
              f"{'-' if busy is None else f'{busy:.1f}'} cores (limit {max_busy}): waiting for other jobs "
              f"({waited / 60:.0f} of {max_wait_s / 60:.0f} min)", flush=True)
        time.sleep(poll_s)


def versions() -> dict:
    import keras
    import tensorflow as tf

    out = {"python": platform.python_version(), "tensorflow": tf.__version__, "keras": keras.__version__}
    for module in ("keras_resnet", "keras_tuner", "ai_edge_litert", "keras_hub", "numpy"):
        try:
            mod = __import__(module)
            out[module] = getattr(mod, "__version__", None) or _dist_version(module)
        except ImportError:
            out[module] = None
    return out


def _dist_version(module: str) -> str | None:
    from importlib import metadata

    names = {"ai_edge_litert": "ai-edge-litert", "keras_resnet": "keras-residual"}
    try:
        return metadata.version(names.get(module, module.replace("_", "-")))
    except metadata.PackageNotFoundError:
        return None


def machine() -> dict:
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    gpu_names = []
    for gpu in gpus:
        try:
            gpu_names.append(tf.config.experimental.get_device_details(gpu).get("device_name", gpu.name))
        except Exception:  # noqa: BLE001 - details are best effort
            gpu_names.append(gpu.name)
    cpu_model = None
    try:
        cpu_model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                          if line.startswith("model name")), None)
    except OSError:  # pragma: no cover - not on Linux
        pass
    load_before = os.environ.get("BENCH_LOAD_BEFORE")
    return {
        "date": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_model": cpu_model,
        "cpu_count": os.cpu_count(),
        "gpus": gpu_names,
        **versions(),
        "load_average_before": json.loads(load_before) if load_before else None,
        "load_average_at_end": load_average(),
        "contention": _CONTENTION.report(),
    }


def report(name: str, record: dict) -> list[dict]:
    """A benchmark's last step: writes ``record`` (which holds its ``ratios``) as
    ``<results>/<name>.json``, prints the ratios and the path; returns the ratios."""
    path = write_result(name, record)
    print()
    print_ratios(record["ratios"])
    print(f"wrote {path}")
    return record["ratios"]


def write_result(name: str, record: dict) -> Path:
    """Writes ``<results>/<name>.json`` atomically and returns its path."""
    directory = results_dir()
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.json"
    record = {"benchmark": name, "machine": machine(), **record}
    fd, tmp = tempfile.mkstemp(dir=directory, suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(record, f, indent=2)
        f.write("\n")
    os.replace(tmp, path)
    return path
