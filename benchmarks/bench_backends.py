"""Training-step time on the TensorFlow and the JAX backend (CPU), measured in the same run.

Rows (issue 15):
- ResNet-20 at the digits' shape (8x8x1, batch 128: the recipe's batch on digits),
- ResNet-56 at 32 px (32x32x3, batch 32).

Each model is built by :func:`keras_resnet.training.build_model` (raw pixels in, probabilities
out, coupled weight decay) and compiled by :func:`keras_resnet.training.compile_model` with the
device defaults that ``keras-resnet train`` uses on a CPU: on TensorFlow a graph without XLA
(XLA made a ResNet step slower on this CPU), on JAX every step compiled by XLA (how JAX runs).
A backend is chosen once per process, so every measurement is a fresh Python process with
``KERAS_BACKEND`` set; the sides alternate (TF, JAX, JAX, TF, ...) for ``--rounds`` rounds so
that a busy machine slows both alike. In each process: build, one untimed ``train_on_batch``
(tracing, or XLA compilation on JAX; its time is reported as ``first_step_s``), one more
untimed step, then ``--steps`` timed steps on one fixed batch of seeded random pixels, in
``--repeat`` groups. On JAX the persistent compilation cache is on (the package's default;
``KERAS_RESNET_JAX_CACHE``), so only the first JAX process of a shape pays the full compilation.

The ratio is TensorFlow's median step time over JAX's (above 1: JAX is faster). There is no goal:
the figures say what to expect of ``--backend jax`` on a CPU.

Usage: python benchmarks/bench_backends.py [--rounds 2] [--steps 10] [--quick]
"""

from __future__ import annotations

import json
import os
import sys
import time

from common import arguments, median, ratio, report, run_json, spread

BACKENDS = ("tensorflow", "jax")
# name, preset, depth, input shape, batch
MODELS = (
    ("ResNet-20, digits shape (8x8x1), batch 128", "resnet20", 20, (8, 8, 1), 128),
    ("ResNet-56, 32 px (32x32x3), batch 32", "resnet56", 56, (32, 32, 3), 32),
)
QUICK_MODELS = (("ResNet-8, digits shape (8x8x1), batch 16", "resnet20", 8, (8, 8, 1), 16),)


def measure(preset: str, depth: int, shape: tuple, batch: int, steps: int, repeat: int) -> dict:
    """One side, in this process (its backend is ``KERAS_BACKEND``'s): per-step times."""
    import types

    from keras_resnet.backends import current_backend, enable_compilation_cache

    if current_backend() == "jax":
        enable_compilation_cache()
    import keras
    import numpy as np

    from keras_resnet.training import TrainConfig, build_model, compile_model

    classes = 10
    meta = types.SimpleNamespace(input_shape=shape, num_classes=classes, mean=(127.5,) * shape[-1],
                                 std=(64.0,) * shape[-1])
    keras.utils.set_random_seed(0)
    started = time.perf_counter()
    model = build_model(preset, meta, depth=depth)
    build_s = time.perf_counter() - started
    compile_model(model, TrainConfig(epochs=10), steps_per_epoch=steps, batch_size=batch)
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (batch, *shape)).astype("float32")
    y = rng.integers(0, classes, batch)
    started = time.perf_counter()
    model.train_on_batch(x, y)
    first_step_s = time.perf_counter() - started
    model.train_on_batch(x, y)
    step_ms = []
    for _ in range(repeat):
        started = time.perf_counter()
        for _ in range(steps):
            loss = model.train_on_batch(x, y)
        # train_on_batch returns host values, so the last step has finished.
        step_ms.append((time.perf_counter() - started) / steps * 1e3)
    return {"backend": keras.backend.backend(), "params": model.count_params(), "jit_compile": bool(model.jit_compile),
            "build_s": round(build_s, 3), "first_step_s": round(first_step_s, 3),
            "step_ms": [round(t, 3) for t in step_ms], "finite_loss": bool(np.all(np.isfinite(loss)))}


def run_side(backend: str, preset: str, depth: int, shape: tuple, batch: int, steps: int, repeat: int) -> dict:
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3"}
    spec = json.dumps({"preset": preset, "depth": depth, "shape": list(shape), "batch": batch, "steps": steps,
                       "repeat": repeat})
    result = run_json([sys.executable, __file__, "--measure", spec], env, f"the {backend} side")
    if result["backend"] != backend:
        raise RuntimeError(f"asked for the {backend} backend, measured on {result['backend']}")
    return result


def main(argv=None):
    parser = arguments(__doc__, "tiny nets, one round, few steps (a smoke run)", rounds=2, internal=("--measure",))
    parser.add_argument("--steps", type=int, default=10, help="timed steps per group (default 10)")
    parser.add_argument("--repeat", type=int, default=3, help="timed groups per process (default 3)")
    args = parser.parse_args(argv)
    if args.measure:
        spec = json.loads(args.measure)
        print(json.dumps(measure(spec["preset"], spec["depth"], tuple(spec["shape"]), spec["batch"], spec["steps"],
                                 spec["repeat"])), flush=True)
        return None
    quick = args.quick
    rounds, steps, repeat = (1, 2, 1) if quick else (args.rounds, args.steps, args.repeat)
    rows, ratios = [], []
    for label, preset, depth, shape, batch in QUICK_MODELS if quick else MODELS:
        runs = {backend: [] for backend in BACKENDS}
        for r in range(rounds):
            for backend in BACKENDS if r % 2 == 0 else BACKENDS[::-1]:
                result = run_side(backend, preset, depth, shape, batch, steps, repeat)
                runs[backend].append(result)
                print(f"{label:<44} {backend:<10} build {result['build_s']:6.2f} s  first step "
                      f"{result['first_step_s']:6.2f} s  step {median(result['step_ms']):8.2f} ms", flush=True)
        sides = {}
        for backend, results in runs.items():
            times = [t for result in results for t in result["step_ms"]]
            sides[backend] = {
                "ms_per_step": round(median(times), 3), "spread": round(spread(times), 3),
                "images_per_s": round(batch / median(times) * 1e3, 1),
                "first_step_s": [result["first_step_s"] for result in results],
                "build_s": [result["build_s"] for result in results],
                "jit_compile": results[0]["jit_compile"], "params": results[0]["params"],
                "finite_loss": all(result["finite_loss"] for result in results), "step_ms": times,
            }
        if sides["tensorflow"]["params"] != sides["jax"]["params"]:
            raise AssertionError(f"{label}: the backends built different models: {sides}")
        rows.append({"benchmark": label, "preset": preset, "depth": depth, "input_shape": list(shape), "batch": batch,
                     **sides})
        speedup = sides["tensorflow"]["ms_per_step"] / sides["jax"]["ms_per_step"]
        ratios.append(ratio("backends", f"train step, TF / JAX time: {label}", speedup, quick=quick))
        print(f"{label:<44} TensorFlow {sides['tensorflow']['ms_per_step']:.2f} ms, JAX "
              f"{sides['jax']['ms_per_step']:.2f} ms: TF / JAX {speedup:.3f}", flush=True)
    return report("backends_cpu", {"goal": "none: information for --backend jax on a CPU", "quick": quick,
                                         "rounds": rounds, "steps": steps, "repeat": repeat, "rows": rows,
                                         "ratios": ratios})


if __name__ == "__main__":
    main()
