"""The GPU part of the suite (``make bench-gpu``): training throughput, MFU and search overhead.

Synthetic data of the right shapes, generated once in memory; every figure is the median over
timed epochs after a first epoch that pays for tracing and XLA compilation.

1. ResNet-50 training at 224 px, batch 256, with our GPU defaults (mixed precision
   ``mixed_float16``, XLA ``jit_compile=True``; :func:`keras_resnet.training.compile_model`'s
   recipe: SGD with momentum, the step schedule, accuracy), ``steps_per_execution`` as given
   (``--spe``). Rows: the ``resnet50`` preset (v1, keras.applications' configuration) fed
   uint8 pixels (cast on the GPU), the same fed float32 (four times the host-to-device bytes),
   and v1.5 (the stride on the 3x3 conv; NVIDIA's and MLPerf's ResNet-50) fed uint8. Goal:
   >= 2,400 img/s. MFU = img/s x 3 x 2 x forward multiply-adds (``ResNet.count_macs()``) /
   the peak (default 989 TFLOP/s: H100 SXM dense bf16/fp16).
2. CIFAR ResNet-56 (32 px, batch 128, 390 steps per epoch) with our device defaults
   (:func:`keras_resnet.training.device_settings` and ``compile_model``: mixed precision, XLA,
   ``steps_per_execution=32``) against the same model compiled with Keras's defaults
   (``model.compile(optimizer, loss, metrics)``: float32, ``jit_compile="auto"`` which Keras
   3.15 resolves to XLA on a GPU, ``steps_per_execution=1``). Goal: ours >= 2x. A third row
   feeds ours from ``keras_resnet.data``'s training pipeline (shuffle, pad-and-crop, flip,
   batch, prefetch) over 49,920 in-memory images: does the input pipeline keep up?
3. Search overhead per trial on the GPU (``bench_search.measure``): one KerasTuner trial
   against a bare build + compile + fit of the same model. Goal: <= 1.10.
4. The JAX backend (``--backend both``, the default): parts 1 and 2 again in a child process
   with ``KERAS_BACKEND=jax`` (every step compiled by XLA, as JAX runs), written to
   ``gpu_jax.json``; the summary adds JAX / TensorFlow img/s for ResNet-50 and ResNet-56. JAX
   needs its CUDA wheels (``jax[cuda12]``): ``make bench-gpu`` installs them with TensorFlow's
   (the ``gpu`` extra).

With no GPU visible it refuses with one line and exit status 2 (``--allow-cpu --quick`` runs
tiny sizes on the CPU: a smoke test of the code, not a measurement).

Usage: python benchmarks/bench_gpu.py [--quick] [--spe 8] [--peak-tflops 989] [--skip search] [--backend both]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import subprocess
import sys
import time
import types

REFUSAL = ("bench_gpu: no GPU is visible{where}; run `make bench-gpu` on a machine with an NVIDIA GPU "
           "(the CPU suite is `make bench`)")
PARTS = ("resnet50", "cifar", "search")
BACKEND_CHOICES = ("both", "tensorflow", "jax")
RESNET50_GOAL = ">= 2400"
CIFAR_GOAL = ">= 2.0"
SEARCH_GOAL = "<= 1.10"


def nvidia_driver_present() -> bool:
    """True when an NVIDIA driver shows a GPU, checked without importing TensorFlow."""
    gpus = "/proc/driver/nvidia/gpus"
    if os.path.isdir(gpus) and os.listdir(gpus):
        return True
    smi = shutil.which("nvidia-smi")
    if smi:
        try:
            out = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=30)
            return out.returncode == 0 and "GPU" in out.stdout
        except (OSError, subprocess.TimeoutExpired):
            return False
    return False


def refuse(where: str) -> None:
    print(REFUSAL.format(where=where), file=sys.stderr)
    raise SystemExit(2)


def parse(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes (a smoke run, not a measurement)")
    parser.add_argument("--allow-cpu", action="store_true", help="run without a GPU (with --quick: tests the code)")
    parser.add_argument("--batch", type=int, default=256, help="ResNet-50 batch size (default 256)")
    parser.add_argument("--spe", type=int, default=8, help="ResNet-50 steps_per_execution (default 8)")
    parser.add_argument("--steps", type=int, default=48, help="ResNet-50 steps per timed epoch (default 48)")
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs per row (default 3)")
    parser.add_argument("--peak-tflops", type=float, default=989.0, help="dense 16-bit peak for MFU (H100 SXM: 989)")
    parser.add_argument("--skip", nargs="*", default=[], choices=PARTS, help="parts to leave out")
    parser.add_argument("--backend", choices=BACKEND_CHOICES, default="both",
                        help="TensorFlow, JAX (parts 1 and 2), or both, JAX in a child process (default both)")
    return parser.parse_args(argv)


def jax_gpu_refusal() -> str | None:
    """Why JAX cannot run on a GPU here, or None when it can."""
    import jax

    if any(d.platform == "gpu" for d in jax.devices()):
        return None
    return (f" to JAX (jax.devices() is {jax.devices()}; install its CUDA wheels: pip install 'jax[cuda12]', "
            "which make bench-gpu does)")


def jax_child(args) -> dict:
    """Parts 1 and 2 on the JAX backend, in a fresh process; returns its result record."""
    import json

    from common import results_dir

    command = [sys.executable, os.path.abspath(__file__), "--backend", "jax", "--skip", "search", *args.skip,
               "--batch", str(args.batch), "--spe", str(args.spe), "--steps", str(args.steps),
               "--epochs", str(args.epochs), "--peak-tflops", str(args.peak_tflops),
               *(["--quick"] if args.quick else []), *(["--allow-cpu"] if args.allow_cpu else [])]
    print(f"\n=== the JAX backend: {' '.join(command[1:])} ===", flush=True)
    returncode = subprocess.run(command, env={**os.environ, "KERAS_BACKEND": "jax"}, check=False).returncode
    path = results_dir() / "gpu_jax.json"
    if returncode != 0 or not path.exists():
        return {"returncode": returncode}
    return {"returncode": returncode, **json.loads(path.read_text())}


# ---- measurement helpers ----------------------------------------------------------------------

@contextlib.contextmanager
def policy(name: str):
    import keras

    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def epoch_seconds(model, dataset, steps: int, epochs: int) -> list[float]:
    """Fits ``1 + epochs`` epochs of ``steps`` steps; returns the wall time of the timed ones.

    Keras reads the epoch's metrics at its end, which waits for the device: an epoch's time is
    its compute, not just its dispatch.
    """
    import keras

    class Timer(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.times = []

        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.times.append(time.perf_counter() - self.start)

    timer = Timer()
    model.fit(dataset, epochs=1 + epochs, steps_per_epoch=steps, callbacks=[timer], verbose=0, shuffle=False)
    return timer.times[1:]


def synthetic_batch(batch: int, shape, classes: int, dtype: str, seed: int = 0):
    import numpy as np

    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (batch, *shape), dtype="uint8").astype(dtype)
    y = rng.integers(0, classes, batch).astype("int64")
    return x, y


def repeated(x, y):
    """One batch, repeated: the model's speed without an input pipeline."""
    import tensorflow as tf

    return tf.data.Dataset.from_tensors((x, y)).repeat().prefetch(tf.data.AUTOTUNE)


def with_uint8_input(model):
    """``model`` behind a uint8 input cast to float32 on the device (4x fewer bytes to copy)."""
    import keras

    inputs = keras.Input(model.input_shape[1:], dtype="uint8", name="pixels_uint8")
    return keras.Model(inputs, model(keras.ops.cast(inputs, "float32")), name=f"{model.name}_uint8")


# ---- 1. ResNet-50 -----------------------------------------------------------------------------

def resnet50_rows(args, sizes) -> list[dict]:
    import statistics

    import keras

    from keras_resnet import ResNet
    from keras_resnet.training import TrainConfig, compile_model, device_scope

    size, batch, steps = sizes["resnet50_size"], sizes["resnet50_batch"], sizes["resnet50_steps"]
    config = TrainConfig(steps_per_execution=args.spe, epochs=10)
    variants = [
        ("resnet50 (v1), uint8 input", {}, "uint8"),
        ("resnet50 (v1), float32 input", {}, "float32"),
        ("ResNet-50 v1.5, uint8 input", {"stride_in_1x1": False, "use_bias": False, "bn_epsilon": 1e-5}, "uint8"),
    ]
    rows = []
    for label, overrides, input_dtype in variants:
        keras.backend.clear_session()
        with device_scope(config) as settings:
            if sizes["resnet50_stage_blocks"]:
                overrides = {**overrides, "stage_blocks": sizes["resnet50_stage_blocks"]}
            net = ResNet.from_preset("resnet50", input_shape=(size, size, 3), **overrides)
            macs = net.count_macs()
            model = with_uint8_input(net) if input_dtype == "uint8" else net
            recipe = compile_model(model, config, steps_per_epoch=steps, batch_size=batch)
            x, y = synthetic_batch(batch, (size, size, 3), 1000, input_dtype)
            times = epoch_seconds(model, repeated(x, y), steps, sizes["epochs"])
        ips = steps * batch / statistics.median(times)
        mfu = ips * 3 * 2 * macs / (args.peak_tflops * 1e12)
        rows.append({
            "name": label, "image_size": size, "batch": batch, "images_per_s": round(ips, 1),
            "mfu": round(mfu, 4), "forward_macs": macs, "train_gflop_per_image": round(6 * macs / 1e9, 2),
            "epoch_seconds": [round(t, 3) for t in times], "steps_per_epoch": steps,
            "mixed_precision": settings["mixed_precision"], "jit_compile": bool(model.jit_compile),
            "steps_per_execution": recipe["device"]["steps_per_execution"],
        })
        print(f"{label:<32} {ips:>8.1f} img/s   MFU {mfu:.1%}   "
              f"(mixed precision {settings['mixed_precision']}, XLA {bool(model.jit_compile)}, "
              f"steps_per_execution {recipe['device']['steps_per_execution']})", flush=True)
    return rows


# ---- 2. CIFAR ResNet-56 -------------------------------------------------------------------------

def cifar_rows(args, sizes) -> list[dict]:
    import statistics

    import keras
    import numpy as np

    from keras_resnet.data import from_arrays
    from keras_resnet.training import TrainConfig, build_model, compile_model, device_scope

    batch, steps, epochs = sizes["cifar_batch"], sizes["cifar_steps"], sizes["epochs"]
    meta = types.SimpleNamespace(input_shape=(32, 32, 3), num_classes=10, mean=(125.3, 123.0, 113.9),
                                 std=(63.0, 62.1, 66.7))
    x, y = synthetic_batch(batch, (32, 32, 3), 10, "float32")
    config = TrainConfig(epochs=182)
    rows = []

    def measure(label, make, dataset):
        keras.backend.clear_session()
        model, settings = make()
        times = epoch_seconds(model, dataset, steps, epochs)
        ips = steps * batch / statistics.median(times)
        rows.append({"name": label, "batch": batch, "images_per_s": round(ips, 1),
                     "epoch_seconds": [round(t, 3) for t in times], "steps_per_epoch": steps, **settings})
        print(f"{label:<58} {ips:>9.1f} img/s   {settings}", flush=True)

    def ours():
        with device_scope(config):
            model = build_model("resnet56", meta, weight_decay=config.weight_decay, depth=sizes["cifar_depth"])
            recipe = compile_model(model, config, steps_per_epoch=steps, batch_size=batch)
        d = recipe["device"]
        return model, {"mixed_precision": d["mixed_precision"], "jit_compile": bool(model.jit_compile),
                       "steps_per_execution": d["steps_per_execution"]}

    def keras_defaults():
        model = build_model("resnet56", meta, weight_decay=config.weight_decay, depth=sizes["cifar_depth"])
        model.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9), loss="sparse_categorical_crossentropy",
                      metrics=["accuracy"])
        return model, {"mixed_precision": False, "jit_compile": bool(model.jit_compile),
                       "steps_per_execution": model.steps_per_execution}

    measure("ResNet-56, Keras defaults (float32, jit auto, spe 1)", keras_defaults, repeated(x, y))
    measure("ResNet-56, ours (device defaults)", ours, repeated(x, y))
    # The same, fed by keras_resnet.data's training pipeline over CIFAR-sized in-memory data.
    images = np.random.default_rng(1).integers(0, 256, (sizes["cifar_images"], 32, 32, 3), dtype="uint8")
    labels = np.random.default_rng(2).integers(0, 10, sizes["cifar_images"]).astype("int64")
    pipeline = from_arrays(images, labels, images[:batch], labels[:batch], batch_size=batch, flip=True,
                           augmentation="cifar").train.repeat()
    measure("ResNet-56, ours, fed by keras_resnet.data's pipeline", ours, pipeline)
    return rows


def jax_ratios(jax_run: dict, record: dict, quick: bool) -> list[dict]:
    """The JAX child's rows, and JAX / TensorFlow img/s where both backends ran a part."""
    from common import ratio

    if jax_run["returncode"] != 0:
        return [{"benchmark": "gpu", "name": "JAX backend: the benchmark ran", "value": float(jax_run["returncode"]),
                 "goal": "<= 0", "met": False}]
    rows = [{**r, "name": f"JAX: {r['name']}"} for r in jax_run.get("ratios", [])]
    for part, label in (("resnet50", "ResNet-50 (v1, uint8 input)"), ("cifar", "CIFAR ResNet-56, ours")):
        if part in record and part in jax_run:
            index = 0 if part == "resnet50" else 1
            rows.append(ratio("gpu", f"{label} img/s: JAX / TensorFlow",
                              jax_run[part][index]["images_per_s"] / record[part][index]["images_per_s"], quick=quick))
    return rows


# ---- main -------------------------------------------------------------------------------------

def main(argv=None):
    args = parse(argv)
    if not args.allow_cpu and not nvidia_driver_present():
        refuse(" (no NVIDIA driver)")
    on_jax = args.backend == "jax"
    if on_jax:
        os.environ["KERAS_BACKEND"] = "jax"
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from common import print_ratios, quiet_tensorflow, ratio, report, write_result

    quiet_tensorflow()
    import tensorflow as tf

    if on_jax:
        from keras_resnet.backends import enable_compilation_cache

        enable_compilation_cache()
        why = jax_gpu_refusal()
        if why and not args.allow_cpu:
            refuse(why)
    elif not tf.config.list_physical_devices("GPU") and not args.allow_cpu:
        refuse(" to TensorFlow (tf.config.list_physical_devices('GPU') is empty)")
    quick = args.quick
    sizes = {
        "resnet50_size": 32 if quick else 224, "resnet50_batch": 4 if quick else args.batch,
        "resnet50_steps": (2 if quick else args.steps), "epochs": 1 if quick else args.epochs,
        "cifar_batch": 16 if quick else 128, "cifar_steps": 2 if quick else 390,
        # A smoke run checks the code, not the speed: one block per stage and a depth-8 CIFAR net
        # take the same paths as ResNet-50 and ResNet-56 in a fraction of the build and trace time.
        "resnet50_stage_blocks": (1, 1, 1, 1) if quick else None, "cifar_depth": 8 if quick else 56,
    }
    # Whole batches only: a partial last batch would change the input shape and make XLA compile
    # the step again inside a timed epoch (390 x 128 = 49,920 of CIFAR's 50,000).
    sizes["cifar_images"] = sizes["cifar_steps"] * sizes["cifar_batch"]
    if not quick and args.steps % args.spe:
        raise SystemExit(f"--steps ({args.steps}) must be a multiple of --spe ({args.spe})")
    import keras

    name = "gpu_jax" if on_jax else "gpu"
    record = {"quick": quick, "sizes": sizes, "peak_tflops": args.peak_tflops, "backend": keras.backend.backend()}
    if on_jax:
        import jax

        record["jax_devices"] = [str(d) for d in jax.devices()]
    ratios = []
    if "resnet50" not in args.skip:
        record["resnet50"] = rows = resnet50_rows(args, sizes)
        best = rows[0]
        ratios += [ratio("gpu", f"ResNet-50 ({best['image_size']} px, batch {best['batch']}) training img/s, "
                         f"mixed {best['mixed_precision']}, XLA {best['jit_compile']}", best["images_per_s"],
                         RESNET50_GOAL, digits=1, quick=quick),
                   ratio("gpu", f"ResNet-50 MFU vs {args.peak_tflops:g} TFLOP/s", best["mfu"], digits=4),
                   ratio("gpu", "ResNet-50 v1.5 training img/s", rows[2]["images_per_s"], digits=1),
                   ratio("gpu", "ResNet-50 img/s: uint8 input / float32 input", best["images_per_s"] / rows[1]["images_per_s"])]
    if "cifar" not in args.skip:
        record["cifar"] = rows = cifar_rows(args, sizes)
        ratios += [ratio("gpu", "CIFAR ResNet-56 img/s: ours / Keras defaults", rows[1]["images_per_s"] / rows[0]["images_per_s"],
                         CIFAR_GOAL, quick=quick),
                   ratio("gpu", "CIFAR ResNet-56 img/s: our pipeline / one repeated batch", rows[2]["images_per_s"] / rows[1]["images_per_s"])]
    if "search" not in args.skip:
        from bench_search import measure

        record["search"] = s = measure(1 if quick else 3, 1 if quick else 3, 8 if quick else 16)
        print(f"search trial {s['trial_seconds_with_construction']:.2f} s (search only {s['trial_seconds_search_only']:.2f} s) "
              f"vs bare {s['bare_seconds']:.2f} s; trial model {s['trial_dtype_policy']}, bare {s['bare_dtype_policy']}",
              flush=True)
        ratios += [ratio("gpu", "search trial / bare fit on the GPU (construction included)", s["ratio_with_construction"],
                         SEARCH_GOAL, quick=quick),
                   ratio("gpu", "search trial / bare fit on the GPU (search only)", s["ratio_search_only"])]
    if on_jax:  # the parent adds these rows to its summary
        return report(name, {**record, "ratios": ratios})
    if args.backend == "both":
        record["jax"] = jax_run = jax_child(args)
        ratios += jax_ratios(jax_run, record, quick)
    path = write_result(name, {**record, "ratios": ratios})
    summary = write_result("summary_gpu", {"quick": quick, "ratios": ratios})
    print()
    print_ratios(ratios)
    print(f"wrote {path} and {summary}")
    return ratios


if __name__ == "__main__":
    main()
