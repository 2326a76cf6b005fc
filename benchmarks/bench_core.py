"""Training-step speed of keras-resnet's models against hand-written Keras twins, on the CPU.

- ResNet-56 (CIFAR, 32x32, option B shortcuts) against an inline functional Keras twin of the
  same graph.
- The ``resnet50`` preset against ``keras.applications.ResNet50`` (224x224).

Both are measured in the same run, alternating, after warm-up; the ratio is reference step
time / our step time (>= 0.97 is the goal: the block layers add no overhead).

Usage: python benchmarks/bench_core.py [--rounds 5] [--quick]
"""

from __future__ import annotations

import argparse

import numpy as np
from common import alternate, median, quiet_tensorflow, write_result

keras = quiet_tensorflow()

from keras_resnet import ResNet  # noqa: E402


def inline_cifar_twin(depth: int, input_shape=(32, 32, 3), classes=10) -> keras.Model:
    """The CIFAR ResNet (v1, option B) written out by hand with plain Keras layers."""
    n = (depth - 2) // 6

    def conv(x, filters, strides=1, kernel=3):
        if strides > 1 and kernel > 1:
            x = keras.layers.ZeroPadding2D(1)(x)
            return keras.layers.Conv2D(filters, kernel, strides, use_bias=False,
                                       kernel_initializer="he_normal")(x)
        return keras.layers.Conv2D(filters, kernel, strides, padding="same", use_bias=False,
                                   kernel_initializer="he_normal")(x)

    def bn(x):
        return keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-5)(x)

    inputs = keras.Input(input_shape)
    x = keras.layers.ReLU()(bn(conv(inputs, 16)))
    for stage, filters in enumerate((16, 32, 64)):
        for b in range(n):
            strides = 2 if (stage > 0 and b == 0) else 1
            shortcut = x
            if strides > 1 or x.shape[-1] != filters:
                shortcut = bn(conv(x, filters, strides, kernel=1))
            y = keras.layers.ReLU()(bn(conv(x, filters, strides)))
            y = bn(conv(y, filters))
            x = keras.layers.ReLU()(keras.layers.Add()([shortcut, y]))
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(classes, activation="softmax")(x)
    return keras.Model(inputs, outputs)


def step_fn(model, x, y):
    model.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9),
                  loss="sparse_categorical_crossentropy", jit_compile=False)

    def step():
        model.train_on_batch(x, y)

    for _ in range(2):  # trace and warm up
        step()
    return step


def compare(label, ours, reference, batch, rounds, repeat):
    shape = ours.input_shape[1:]
    assert ours.count_params() == reference.count_params(), (ours.count_params(), reference.count_params())
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (batch, *shape)).astype("float32")
    y = rng.integers(0, ours.output_shape[-1], batch)
    times = alternate({"ours": step_fn(ours, x, y), "reference": step_fn(reference, x, y)}, rounds, repeat)
    t_ours, t_ref = median(times["ours"]), median(times["reference"])
    row = {
        "benchmark": label, "batch": batch, "params": ours.count_params(),
        "ours_ms_per_step": round(t_ours * 1e3, 2), "reference_ms_per_step": round(t_ref * 1e3, 2),
        "ratio_reference_over_ours": round(t_ref / t_ours, 3),
        "ours_images_per_s": round(batch / t_ours, 1), "samples": len(times["ours"]),
    }
    print(f"{label:<48} ours {row['ours_ms_per_step']:>9.1f} ms  reference {row['reference_ms_per_step']:>9.1f} ms  "
          f"ratio {row['ratio_reference_over_ours']:.3f}")
    return row


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="fewer repetitions (a smoke run)")
    args = parser.parse_args(argv)
    rounds = 2 if args.quick else args.rounds
    rows = [
        compare("train step, ResNet-56 (32 px, batch 128) vs inline twin",
                ResNet.from_preset("resnet56", shortcut="B"), inline_cifar_twin(56),
                batch=128, rounds=rounds, repeat=3 if not args.quick else 1),
        compare("train step, resnet50 (224 px, batch 16) vs keras.applications",
                ResNet.from_preset("resnet50"), keras.applications.ResNet50(weights=None),
                batch=16, rounds=rounds, repeat=2 if not args.quick else 1),
    ]
    path = write_result("core_cpu", {"goal": "ratio >= 0.97", "rows": rows})
    print(f"wrote {path}")
    return rows


if __name__ == "__main__":
    main()
