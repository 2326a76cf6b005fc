"""Inference latency and throughput of a ResNet-20 (32x32x3) in each deployment format, on the CPU.

The model is ``training.build_model("resnet20", ...)`` (raw pixels in, the normalisation layer
inside, random weights) exported with :func:`keras_resnet.export.export_saved_model` (the
serving SavedModel: probabilities, class ids and names, top-k) and
:func:`keras_resnet.export.export_tflite` (float32, float16 and full-integer int8 calibrated on
random images: fine for latency, not for accuracy) into a temporary folder.

Per-image latency (batch 1, median after warm-up, all candidates alternating): Keras eager
``model(x)``, Keras ``model.predict(x)``, the SavedModel's ``serving_default`` signature
(:class:`keras_resnet.verification.SavedModelRunner`), and the three TFLite files with
``ai_edge_litert`` at 1 and 2 threads (:class:`keras_resnet.litert.TFLiteRunner`).
Throughput at batch 64: Keras ``predict``, Keras eager call, the SavedModel; the TFLite files
(batch 1) through ``TFLiteRunner.predict``, one image at a time.

Every ratio is against the SavedModel. Goals: int8 TFLite latency <= 0.5x the SavedModel's
(at 1 and at 2 threads) and int8 file size <= 0.27x the SavedModel's.

Usage: python benchmarks/bench_inference.py [--rounds 5] [--quick]
"""

from __future__ import annotations

import tempfile
import types
from pathlib import Path

import numpy as np
from common import alternate, arguments, median, quiet_tensorflow, ratio, report, spread

keras = quiet_tensorflow()


from keras_resnet.export import export_saved_model, export_tflite  # noqa: E402
from keras_resnet.litert import TFLiteRunner  # noqa: E402
from keras_resnet.training import build_model  # noqa: E402
from keras_resnet.verification import SavedModelRunner, directory_size  # noqa: E402

SHAPE = (32, 32, 3)
FLAVOURS = ("float32", "float16", "int8")
LATENCY_GOAL = "<= 0.5"
SIZE_GOAL = "<= 0.27"
BATCH = 64


def cifar_meta():
    """What build_model needs of a dataset: CIFAR-10's shape, classes and channel statistics."""
    return types.SimpleNamespace(input_shape=SHAPE, num_classes=10, mean=(125.3, 123.0, 113.9), std=(63.0, 62.1, 66.7))


def distinct_weights(model, seed: int = 0) -> None:
    """Draws every kernel afresh (He normal), so that no two layers share a weight tensor.

    The TFLite converter stores identical constants once; a randomly initialised ResNet whose
    layers start from equal kernels would give a smaller file than a trained one.
    """
    rng = np.random.default_rng(seed)
    for w in model.weights:
        if w.path.endswith("kernel"):
            fan_in = int(np.prod(w.shape[:-1]))
            w.assign(rng.normal(0.0, np.sqrt(2.0 / fan_in), w.shape).astype("float32"))


def export_all_formats(model, folder: Path, calibration: int) -> dict[str, Path]:
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (calibration, *SHAPE)).astype("float32")
    paths = {"saved_model": export_saved_model(model, base=folder, name="resnet20", version=1)}
    for q in FLAVOURS:
        paths[q] = export_tflite(model, folder / f"resnet20_{q}.tflite", q,
                                 representative_data=images if q == "int8" else None)
    return paths


def main(argv=None):
    args = arguments(__doc__, "few calls and one round (a smoke run)", rounds=5).parse_args(argv)
    quick = args.quick
    rounds = 1 if quick else args.rounds

    keras.utils.set_random_seed(0)
    model = build_model("resnet20", cifar_meta())
    distinct_weights(model)
    rng = np.random.default_rng(0)
    x1 = rng.integers(0, 256, (1, *SHAPE)).astype("float32")
    x64 = rng.integers(0, 256, (BATCH, *SHAPE)).astype("float32")

    with tempfile.TemporaryDirectory(prefix="bench-inference-") as tmp:
        paths = export_all_formats(model, Path(tmp), calibration=16 if quick else 200)
        sizes = {k: directory_size(p) for k, p in paths.items()}
        saved = SavedModelRunner(paths["saved_model"])
        runners = {f"TFLite {q}, {t} thread{'s' if t > 1 else ''}": TFLiteRunner(paths[q], num_threads=t)
                   for q in FLAVOURS for t in (1, 2)}

        latency = {
            "Keras eager model(x)": lambda: model(x1, training=False),
            "Keras model.predict(x)": lambda: model.predict(x1, verbose=0),
            "SavedModel serving_default": lambda: saved(x1),
            **{name: (lambda r=r: r(x1)) for name, r in runners.items()},
        }
        slow = ("Keras eager model(x)", "Keras model.predict(x)")
        repeat = {name: (2 if quick else (12 if name in slow else 60)) for name in latency}
        for fn in latency.values():  # warm-up: traces, allocations, thread pools
            for _ in range(3 if quick else 10):
                fn()
        lat_times = alternate(latency, rounds, repeat)

        throughput = {
            "Keras model.predict (batch 64)": lambda: model.predict(x64, batch_size=BATCH, verbose=0),
            "Keras eager model(x) (batch 64)": lambda: model(x64, training=False),
            "SavedModel serving_default (batch 64)": lambda: saved(x64),
            "TFLite int8, 2 threads (64 calls of 1)": lambda: runners["TFLite int8, 2 threads"].predict(x64),
            "TFLite float32, 2 threads (64 calls of 1)": lambda: runners["TFLite float32, 2 threads"].predict(x64),
        }
        for fn in throughput.values():
            for _ in range(2 if quick else 3):
                fn()
        thr_times = alternate(throughput, rounds, 1 if quick else 4)

    ref = median(lat_times["SavedModel serving_default"])
    latency_rows = []
    print(f"\nper-image latency, batch 1 (median of {len(lat_times['SavedModel serving_default'])} calls "
          "for the SavedModel)")
    for name, times in lat_times.items():
        ms = median(times) * 1e3
        latency_rows.append({"format": name, "latency_ms": round(ms, 3), "images_per_s": round(1e3 / ms, 1),
                             "ratio_to_saved_model": round(ms / (ref * 1e3), 3), "spread": round(spread(times), 3),
                             "samples": len(times)})
        print(f"  {name:<34} {ms:>9.3f} ms   {ms / (ref * 1e3):>7.3f}x the SavedModel")
    throughput_rows = []
    print(f"\nthroughput, {BATCH} images per call")
    saved_ips = BATCH / median(thr_times["SavedModel serving_default (batch 64)"])
    for name, times in thr_times.items():
        ips = BATCH / median(times)
        throughput_rows.append({"format": name, "images_per_s": round(ips, 1),
                                "ms_per_batch": round(median(times) * 1e3, 2),
                                "ratio_to_saved_model": round(ips / saved_ips, 3), "samples": len(times)})
        print(f"  {name:<42} {ips:>9.1f} images/s   {ips / saved_ips:>6.3f}x the SavedModel")
    print("\nfile sizes")
    for name, size in sizes.items():
        print(f"  {name:<12} {size / 1024:>9.1f} KB   {size / sizes['saved_model']:.3f}x the SavedModel   "
              f"{size / sizes['float32']:.3f}x TFLite float32")

    by_name = {r["format"]: r for r in latency_rows}
    ratios = [
        ratio("inference", "latency: TFLite int8 (1 thread) / SavedModel", by_name["TFLite int8, 1 thread"]["ratio_to_saved_model"], LATENCY_GOAL, quick=quick),
        ratio("inference", "latency: TFLite int8 (2 threads) / SavedModel", by_name["TFLite int8, 2 threads"]["ratio_to_saved_model"], LATENCY_GOAL, quick=quick),
        ratio("inference", "size: TFLite int8 / SavedModel", sizes["int8"] / sizes["saved_model"], SIZE_GOAL, quick=quick),
        ratio("inference", "size: TFLite int8 / TFLite float32", sizes["int8"] / sizes["float32"]),
        ratio("inference", "latency: TFLite float32 (2 threads) / SavedModel", by_name["TFLite float32, 2 threads"]["ratio_to_saved_model"]),
        ratio("inference", "latency: TFLite float16 (2 threads) / SavedModel", by_name["TFLite float16, 2 threads"]["ratio_to_saved_model"]),
        ratio("inference", "latency: Keras eager model(x) / SavedModel", by_name["Keras eager model(x)"]["ratio_to_saved_model"]),
        ratio("inference", "latency: Keras predict / SavedModel", by_name["Keras model.predict(x)"]["ratio_to_saved_model"]),
    ]
    return report("inference_cpu", {
        "model": "resnet20 (32x32x3, random weights, normalisation inside)", "params": model.count_params(),
        "quick": quick, "goal": f"int8 latency {LATENCY_GOAL} x SavedModel; int8 size {SIZE_GOAL} x SavedModel",
        "latency_batch1": latency_rows, "throughput_batch64": throughput_rows,
        "size_bytes": sizes, "ratios": ratios,
    })


if __name__ == "__main__":
    main()
