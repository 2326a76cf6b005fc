"""Serving throughput and latency: ``keras-resnet serve`` over HTTP against the same SavedModel called in-process.

The model is the committed reference export ``saved_models/digits_resnet/1`` (16x16x1 digits,
ResNet-20). Two servers run as subprocesses, ``keras-resnet serve`` as a user starts it, and
``keras-resnet serve --enable-batching``. Clients are threads in this process, each on its own
keep-alive ``http.client`` connection, sending one image per request: row-format JSON of float
pixels (``{"instances": [[[[...]]]]}``) and, where the model has the exporter's
``serving_bytes`` signature, a PNG file as ``{"b64": ...}``. The reference is the same number of
threads calling the SavedModel's signature in this process (``tf.saved_model.load``), one image
per call: what serving costs on top of the model.

Each (candidate, clients) pair runs for a fixed time; every round runs all of them, in an order
that reverses each round, so a busy moment slows every candidate alike. Reported: requests per
second (all rounds' requests over their time), p50 and p99 latency per request.

Goal: server requests/s / in-process calls/s >= 0.7 with 16 clients (plain server, pixels).
The batching server and 1 and 8 clients are reported for information.

Usage: python benchmarks/bench_serving.py [--rounds 2] [--seconds 2.5] [--batching-flags FLAGS] [--quick]
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time

import numpy as np
from common import ROOT, arguments, quiet_tensorflow, ratio, report

quiet_tensorflow()
import tensorflow as tf  # noqa: E402

BASE = ROOT / "saved_models"
NAME = "digits_resnet"
CLIENTS = (1, 8, 16)
GOAL = ">= 0.7"
GOAL_CLIENTS = 16
START_PATIENCE = 300  # seconds for a server to load; a bound for hangs only


class Server:
    """``keras-resnet serve`` in a subprocess; its port is read from the line it prints."""

    def __init__(self, *flags: str):
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
        self.flags = flags
        self.process = subprocess.Popen(
            [sys.executable, "-m", "keras_resnet", "serve", str(BASE), "--port", "0", "--version-policy", "latest", *flags],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        self.lines: queue.Queue = queue.Queue()
        threading.Thread(target=lambda: [self.lines.put(line) for line in self.process.stdout] + [self.lines.put(None)],
                         daemon=True).start()
        self.port: int | None = None

    def wait_ready(self) -> int:
        while self.port is None:
            line = self.lines.get(timeout=START_PATIENCE)
            if line is None:
                raise RuntimeError(f"keras-resnet serve {' '.join(self.flags)} ended: {self.process.stderr.read()[-2000:]}")
            found = re.search(r"^serving .* at http://127\.0\.0\.1:(\d+)", line)
            if found:
                self.port = int(found.group(1))
        return self.port

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()


def http_client(port: int, path: str, bodies: list[bytes]):
    """A factory of per-thread callables: one keep-alive connection each, one request per call."""
    def make():
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        counter = iter(range(10**12))

        def call():
            connection.request("POST", path, body=bodies[next(counter) % len(bodies)],
                               headers={"Content-Type": "application/json"})
            response = connection.getresponse()
            answer = response.read()
            if response.status != 200:
                raise RuntimeError(f"HTTP {response.status}: {answer[:200]!r}")
            json.loads(answer)

        return call, connection.close
    return make


def local_client(function, key: str, inputs: list):
    def make():
        counter = iter(range(10**12))

        def call():
            function(**{key: inputs[next(counter) % len(inputs)]})["class_id"].numpy()

        return call, lambda: None
    return make


def measure(make, clients: int, seconds: float) -> dict:
    """``clients`` threads call for ``seconds``; returns the requests, elapsed time and latencies."""
    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors: list[BaseException] = []
    deadline = [0.0]
    # The clock starts once every client has connected and made one untimed call.
    barrier = threading.Barrier(clients + 1, action=lambda: deadline.__setitem__(0, time.perf_counter() + seconds))

    def worker(i):
        call, close = make()
        try:
            call()
            barrier.wait()
            while (now := time.perf_counter()) < deadline[0]:
                call()
                latencies[i].append(time.perf_counter() - now)
        except threading.BrokenBarrierError:
            pass
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)
            barrier.abort()
        finally:
            close()

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(clients)]
    for thread in threads:
        thread.start()
    try:
        barrier.wait()
    except threading.BrokenBarrierError:
        pass
    for thread in threads:
        thread.join()
    if errors:
        raise RuntimeError(f"a client failed: {errors[0]!r}")
    elapsed = max(time.perf_counter(), deadline[0]) - (deadline[0] - seconds)
    return {"requests": sum(map(len, latencies)), "seconds": elapsed, "latencies": [x for xs in latencies for x in xs]}


def main(argv=None):
    parser = arguments(__doc__, "short runs, one round (a smoke run)", rounds=2)
    parser.add_argument("--seconds", type=float, default=2.5, help="run time per candidate, clients and round (default 2.5)")
    parser.add_argument("--batching-flags", default="", metavar="FLAGS",
                        help='more flags for the batching server, e.g. "--batch-timeout-micros 2000 --workers 2"')
    args = parser.parse_args(argv)
    quick = args.quick
    rounds, seconds = (1, 0.3) if quick else (args.rounds, args.seconds)

    servers = {"server": Server(), "server --enable-batching": Server("--enable-batching", *args.batching_flags.split())}
    try:
        ports = {name: s.wait_ready() for name, s in servers.items()}
        loaded = tf.saved_model.load(str(BASE / NAME / "1"))
        signatures = loaded.signatures
        spec = signatures["serving_default"].structured_input_signature[1]["images"]
        rng = np.random.default_rng(0)
        pixels = rng.integers(0, 256, (32, *spec.shape[1:])).astype("float32")
        variants = {"pixels": ([json.dumps({"instances": p[None].tolist()}).encode() for p in pixels],
                               "serving_default", "images", [tf.constant(p[None]) for p in pixels])}
        if "serving_bytes" in signatures:
            files = [tf.io.encode_png(tf.constant(p.astype("uint8"))).numpy() for p in pixels]
            variants["b64 PNG"] = (
                [json.dumps({"signature_name": "serving_bytes", "instances": [{"b64": base64.b64encode(f).decode()}]}).encode()
                 for f in files],
                "serving_bytes", "image_bytes", [tf.constant([f]) for f in files])
        else:
            print("saved_models/digits_resnet/1 has no serving_bytes signature: the b64 variant is skipped")

        candidates = {}
        for variant, (bodies, signature, key, inputs) in variants.items():
            candidates[(variant, "in-process signature")] = local_client(signatures[signature], key, inputs)
            for name, port in ports.items():
                candidates[(variant, name)] = http_client(port, f"/v1/models/{NAME}:predict", bodies)

        runs: dict[tuple, list[dict]] = {(*c, n): [] for c in candidates for n in CLIENTS}
        for r in range(rounds):
            order = list(candidates) if r % 2 == 0 else list(reversed(candidates))
            for clients in CLIENTS:
                for candidate in order:
                    runs[(*candidate, clients)].append(measure(candidates[candidate], clients, seconds))
    finally:
        statuses = {name: s.stop() for name, s in servers.items()}

    rows = []
    print(f"\n{'variant':<9} {'candidate':<26} {'clients':>7} {'requests/s':>11} {'p50 ms':>8} {'p99 ms':>8} "
          f"{'vs in-process':>13}")
    by_key = {}
    for (variant, candidate, clients), samples in runs.items():
        latencies = np.array([x for s in samples for x in s["latencies"]])
        rps = sum(s["requests"] for s in samples) / sum(s["seconds"] for s in samples)
        by_key[(variant, candidate, clients)] = rps
        rows.append({"variant": variant, "candidate": candidate, "clients": clients, "requests_per_s": round(rps, 1),
                     "p50_ms": round(float(np.percentile(latencies, 50)) * 1e3, 2) if latencies.size else None,
                     "p99_ms": round(float(np.percentile(latencies, 99)) * 1e3, 2) if latencies.size else None,
                     "requests": int(latencies.size)})
    for row in rows:
        reference = by_key[(row["variant"], "in-process signature", row["clients"])]
        row["ratio_to_in_process"] = round(row["requests_per_s"] / reference, 3) if reference else None
        print(f"{row['variant']:<9} {row['candidate']:<26} {row['clients']:>7} {row['requests_per_s']:>11.1f} "
              f"{row['p50_ms'] or 0:>8.2f} {row['p99_ms'] or 0:>8.2f} {row['ratio_to_in_process'] or 0:>13.3f}")

    def share(variant, candidate, clients):
        return by_key[(variant, candidate, clients)] / by_key[(variant, "in-process signature", clients)]

    ratios = [ratio("serving", f"requests/s: server / in-process signature, {GOAL_CLIENTS} clients",
                    share("pixels", "server", GOAL_CLIENTS), GOAL, quick=quick)]
    for clients in CLIENTS:
        ratios.append(ratio("serving", f"requests/s: batching server / in-process, {clients} clients",
                            share("pixels", "server --enable-batching", clients)))
    for clients in (c for c in CLIENTS if c != GOAL_CLIENTS):
        ratios.append(ratio("serving", f"requests/s: server / in-process signature, {clients} clients",
                            share("pixels", "server", clients)))
    for clients in CLIENTS:
        ratios.append(ratio("serving", f"requests/s: batching server / server, {clients} clients",
                            by_key[("pixels", "server --enable-batching", clients)] / by_key[("pixels", "server", clients)]))
    if "b64 PNG" in variants:
        ratios.append(ratio("serving", f"requests/s: server / in-process, b64 PNG, {GOAL_CLIENTS} clients",
                            share("b64 PNG", "server", GOAL_CLIENTS)))
    report("serving_cpu", {
        "model": f"{BASE.name}/{NAME}/1", "quick": quick, "rounds": rounds, "seconds_per_run": seconds,
        "goal": f"server requests/s {GOAL} x in-process signature calls/s at {GOAL_CLIENTS} clients",
        "batching_flags": ["--enable-batching", *args.batching_flags.split()],
        "variants": list(variants), "server_exit_status": statuses, "rows": rows, "ratios": ratios,
    })
    if any(statuses.values()):
        raise SystemExit(f"a server did not stop cleanly: {statuses}")
    return ratios


if __name__ == "__main__":
    main()
