"""Runs the CPU benchmark suite (``make bench``) and prints every ratio against its goal.

Each benchmark runs in its own Python process (a fresh TensorFlow, nothing left over from the
one before) and writes ``<results>/<name>.json``; this script then prints one table of every
ratio and writes ``<results>/summary_cpu.json``. Before a full run it waits (up to
``--wait-minutes``, polling every minute) until the 1-minute load average is below
``--max-load``: other jobs on the machine would slow whichever side they overlap. The load
average before the run and the CPU that other processes took during each benchmark are
recorded in every result file.

Usage:
    python benchmarks/run_all.py            # the full suite, about 15 minutes on 2 cores
    python benchmarks/run_all.py --quick    # tiny sizes, one round: checks the suite runs
    python benchmarks/run_all.py --only inference search
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import common  # noqa: E402
from common import RESULTS, Contention, load_average, print_ratios, wait_for_quiet  # noqa: E402

# name -> (script, result file); in the order they run.
BENCHMARKS = {
    "core": ("bench_core.py", "core_cpu"),
    "inference": ("bench_inference.py", "inference_cpu"),
    "digits": ("bench_digits.py", "digits_cpu"),
    "search": ("bench_search.py", "search_cpu"),
    "data": ("bench_data.py", "data_cpu"),
    "serving": ("bench_serving.py", "serving_cpu"),
    "backends": ("bench_backends.py", "backends_cpu"),
}
SUITE_GOAL_SECONDS = 15 * 60


def run(names: list[str], quick: bool, results: Path, env_extra: dict) -> tuple[list[dict], dict]:
    """Runs each benchmark in its own process: one after the other, except in a quick smoke run,
    which judges nothing and so runs two at a time (the suite's test takes half as long)."""
    env = {**os.environ, **env_extra, "BENCH_RESULTS_DIR": str(results)}
    ratios, status, running = [], {}, []

    def start(name):
        script, result = BENCHMARKS[name]
        print(f"\n=== {name}: {script}{' --quick' if quick else ''} (load average {load_average()}) ===", flush=True)
        path = results / f"{result}.json"
        before = path.stat().st_mtime if path.exists() else None
        proc = subprocess.Popen([sys.executable, str(HERE / script), *(["--quick"] if quick else [])], env=env)
        return name, path, before, time.perf_counter(), proc

    def finish(job):
        name, path, before, started, proc = job
        returncode = proc.wait()
        fresh = path.exists() and path.stat().st_mtime != before
        status[name] = {"returncode": returncode, "seconds": round(time.perf_counter() - started, 1)}
        if returncode != 0 or not fresh:
            print(f"{name} FAILED (exit status {returncode})", flush=True)
            return [{"benchmark": name, "name": f"{name}: the benchmark ran", "value": float(returncode),
                     "goal": "<= 0", "met": False}]
        return json.loads(path.read_text()).get("ratios", [])

    at_once = 2 if quick else 1
    finished = {}
    for name in names:
        running.append(start(name))
        if len(running) >= at_once:
            job = running.pop(0)
            finished[job[0]] = finish(job)
    for job in running:
        finished[job[0]] = finish(job)
    for name in names:  # the summary keeps the suite's order
        ratios += finished[name]
    return ratios, {name: status[name] for name in names}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes and one round: a smoke run (no waiting)")
    parser.add_argument("--only", nargs="+", choices=list(BENCHMARKS), help="run only these benchmarks")
    parser.add_argument("--results", type=Path, help="results folder (default benchmarks/results; "
                        "with --quick a temporary folder, so that a smoke run never replaces real results)")
    parser.add_argument("--max-load", type=float, default=1.5, help="wait until the 1-minute load is below this")
    parser.add_argument("--max-busy", type=float, default=0.5, help="... and other processes use fewer cores than this")
    parser.add_argument("--wait-minutes", type=float, default=20, help="give up waiting after this long (then run)")
    parser.add_argument("--no-wait", action="store_true", help="do not wait for a quiet machine")
    args = parser.parse_args(argv)

    results = args.results or (Path(tempfile.mkdtemp(prefix="keras-resnet-bench-quick-")) if args.quick else RESULTS)
    results.mkdir(parents=True, exist_ok=True)
    names = args.only or list(BENCHMARKS)
    if args.quick or args.no_wait:
        quiet = {"load_before": load_average(), "busy_cores_before": None, "waited_seconds": 0, "quiet": None}
    else:
        quiet = wait_for_quiet(args.max_load, args.wait_minutes * 60, max_busy=args.max_busy)
    print(f"load average before the run: {quiet['load_before']}, other processes busy on "
          f"{quiet['busy_cores_before']} cores (waited {quiet['waited_seconds']} s)", flush=True)

    common.reset_contention()  # the result files' "contention" covers the run, not the waiting
    started, contention = time.perf_counter(), Contention()
    ratios, status = run(names, args.quick, results, {"BENCH_LOAD_BEFORE": json.dumps(quiet["load_before"])})
    seconds = time.perf_counter() - started
    complete = not args.quick and names == list(BENCHMARKS)
    ratios.append({"benchmark": "suite", "name": "suite wall seconds" + ("" if complete else " (partial or quick)"),
                   "value": round(seconds, 1), "goal": f"<= {SUITE_GOAL_SECONDS}" if complete else None,
                   "met": (seconds <= SUITE_GOAL_SECONDS) if complete else None})

    during = contention.report()
    from common import machine, quiet_tensorflow

    quiet_tensorflow()
    summary = {"benchmark": "summary_cpu", "machine": machine(), "quick": args.quick, "waited": quiet,
               "contention_during_run": during, "benchmarks": status, "ratios": ratios}
    path = results / "summary_cpu.json"
    path.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"\n=== summary ({'quick smoke run, not a measurement' if args.quick else 'CPU'}; "
          f"load average before {quiet['load_before']}) ===")
    print_ratios(ratios)
    failed = [r for r in ratios if r["met"] is False]
    print(f"{len(ratios) - len(failed)} of {len(ratios)} rows met or informational; wrote {path}")
    return 1 if any(s["returncode"] for s in status.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
