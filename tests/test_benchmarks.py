"""Tests of the benchmark suite (benchmarks/): goals, the summary, the GPU suite's refusal, smoke runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = ROOT / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import common  # noqa: E402
import run_all  # noqa: E402


def test_ratio_judges_goals_and_leaves_information_rows_unjudged():
    assert common.ratio("core", "a", 1.0004, ">= 1.00")["met"] is True  # rounded to 3 digits first
    assert common.ratio("core", "a", 0.994, ">= 1.00")["met"] is False
    assert common.ratio("inference", "b", 0.27, "<= 0.27")["met"] is True
    row = common.ratio("search", "c", 1.23456)
    assert row == {"benchmark": "search", "name": "c", "value": 1.235, "goal": None, "met": None}


def test_alternate_reverses_the_order_every_round():
    calls = []
    times = common.alternate({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, rounds=3,
                             repeat={"a": 2, "b": 1})
    assert calls == ["a", "a", "b", "b", "a", "a", "a", "a", "b"]
    assert len(times["a"]) == 6 and len(times["b"]) == 3


def test_contention_reports_other_processes_cpu():
    report = common.Contention().report()
    assert report["wall_seconds"] >= 0 and report["own_cpu_cores"] >= 0
    if Path("/proc/stat").exists():
        assert report["other_processes_cpu_cores"] >= 0


def test_wait_for_quiet_returns_at_once_below_the_threshold(monkeypatch):
    pauses = []
    monkeypatch.setattr(common.time, "sleep", pauses.append)  # counted, not slept
    waited = common.wait_for_quiet(max_load=1e9, max_wait_s=600, poll_s=60, max_busy=1e9, sample_s=0.2)
    assert waited["quiet"] is True and "busy_cores_before" in waited
    assert pauses == [0.2]  # one sample of the other processes' load, no waiting round


def test_bench_gpu_refuses_with_one_line_and_status_2_without_a_gpu():
    import bench_gpu

    if bench_gpu.nvidia_driver_present():
        pytest.skip("this machine has an NVIDIA GPU")
    proc = subprocess.run([sys.executable, str(BENCHMARKS / "bench_gpu.py")], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "no GPU is visible" in lines[0] and "make bench-gpu" in lines[0]


def test_run_all_collects_every_ratio_and_marks_a_crashed_benchmark(tmp_path, monkeypatch, capsys):
    good = tmp_path / "good.py"
    good.write_text(textwrap.dedent(f"""
        import json, os, sys
        sys.path.insert(0, {str(BENCHMARKS)!r})
        from common import ratio
        rows = [ratio("good", "speed", 1.02, ">= 1.00"), ratio("good", "size", 0.3, "<= 0.27"), ratio("good", "info", 7.0)]
        path = os.path.join(os.environ["BENCH_RESULTS_DIR"], "good_cpu.json")
        json.dump({{"quick": "--quick" in sys.argv, "ratios": rows}}, open(path, "w"))
    """))
    bad = tmp_path / "bad.py"
    bad.write_text("raise SystemExit(3)\n")
    monkeypatch.setattr(run_all, "BENCHMARKS", {"good": (str(good), "good_cpu"), "bad": (str(bad), "bad_cpu")})
    results = tmp_path / "results"
    status = run_all.main(["--quick", "--results", str(results)])
    assert status == 1
    summary = json.loads((results / "summary_cpu.json").read_text())
    by_name = {r["name"]: r for r in summary["ratios"]}
    assert by_name["speed"]["met"] is True and by_name["size"]["met"] is False and by_name["info"]["met"] is None
    assert by_name["bad: the benchmark ran"]["met"] is False
    assert summary["benchmarks"]["bad"]["returncode"] == 3 and summary["quick"] is True
    assert summary["machine"]["load_average_at_end"] is not None
    out = capsys.readouterr().out
    assert "speed" in out and "NOT met" in out and "summary" in out


@pytest.mark.slow
def test_run_all_quick_smoke_runs_every_cpu_benchmark(tmp_path):
    # The serving benchmark's quick run has a test of its own (below), with more checks.
    names = [name for name in run_all.BENCHMARKS if name != "serving"]
    env = {**os.environ, "BENCH_RESULTS_DIR": ""}
    proc = subprocess.run([sys.executable, str(BENCHMARKS / "run_all.py"), "--quick", "--results", str(tmp_path),
                           "--only", *names], capture_output=True, text=True, timeout=900, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = json.loads((tmp_path / "summary_cpu.json").read_text())
    benchmarks = {r["benchmark"] for r in summary["ratios"]}
    assert {"core", "inference", "digits", "search", "data", "backends", "suite"} <= benchmarks
    for name in names:
        record = json.loads((tmp_path / f"{run_all.BENCHMARKS[name][1]}.json").read_text())
        assert record["quick"] is True and record["machine"]["tensorflow"]
    backends = json.loads((tmp_path / "backends_cpu.json").read_text())["rows"][0]
    assert backends["tensorflow"]["params"] == backends["jax"]["params"] > 0
    assert backends["tensorflow"]["finite_loss"] and backends["jax"]["finite_loss"]
    assert backends["jax"]["jit_compile"] and not backends["tensorflow"]["jit_compile"]  # the CPU defaults


@pytest.mark.slow
def test_bench_serving_quick_run_serves_measures_and_stops_its_servers(tmp_path):
    env = {**os.environ, "BENCH_RESULTS_DIR": str(tmp_path)}
    proc = subprocess.run([sys.executable, str(BENCHMARKS / "bench_serving.py"), "--quick"], capture_output=True,
                          text=True, timeout=900, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    record = json.loads((tmp_path / "serving_cpu.json").read_text())
    assert record["quick"] is True and record["server_exit_status"] == {"server": 0, "server --enable-batching": 0}
    rows = {(r["candidate"], r["clients"]) for r in record["rows"] if r["variant"] == "pixels"}
    assert rows == {(c, n) for c in ("in-process signature", "server", "server --enable-batching") for n in (1, 8, 16)}
    assert all(r["requests"] > 0 for r in record["rows"])
    goal = record["ratios"][0]
    assert goal["goal"] == ">= 0.7" and goal["met"] is None and goal["value"] > 0  # a smoke run judges nothing


@pytest.mark.slow
def test_bench_gpu_code_runs_on_the_cpu_at_tiny_sizes(tmp_path):
    env = {**os.environ, "BENCH_RESULTS_DIR": str(tmp_path)}
    # Part 3 calls bench_search.measure, which the quick suite above runs already.
    proc = subprocess.run([sys.executable, str(BENCHMARKS / "bench_gpu.py"), "--allow-cpu", "--quick", "--skip", "search"],
                          capture_output=True, text=True, timeout=900, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    record = json.loads((tmp_path / "gpu.json").read_text())
    assert len(record["resnet50"]) == 3 and len(record["cifar"]) == 3 and "search" not in record
    assert record["backend"] == "tensorflow"
    # The same parts on the JAX backend, in a child process, and the JAX / TensorFlow rows.
    jax_record = json.loads((tmp_path / "gpu_jax.json").read_text())
    assert jax_record["backend"] == "jax" and len(jax_record["resnet50"]) == 3 and len(jax_record["cifar"]) == 3
    assert "search" not in jax_record and record["jax"]["returncode"] == 0
    summary = json.loads((tmp_path / "summary_gpu.json").read_text())
    names = [r["name"] for r in summary["ratios"]]
    assert "CIFAR ResNet-56, ours img/s: JAX / TensorFlow" in names
    assert any(name.startswith("JAX: ResNet-50") for name in names)
