"""Training-step speed of keras-resnet's models against reference Keras implementations (CPU).

- ResNet-56 (CIFAR, 32 px, batch 128, option B shortcuts) against an inline functional Keras
  twin of the same graph (same layers, same parameter count).
- The ``resnet50`` preset (keras.applications' v1 configuration) against
  ``keras.applications.ResNet50`` (224 px, batch 16).
- ResNet-50 in keras-hub's configuration (stride on the 3x3 conv, no conv biases, epsilon 1e-5)
  against ``keras_hub.models.ResNetBackbone`` with a pooling and softmax head, if keras-hub is
  installed (``pip install keras-hub``; skipped with a note otherwise).

Each pair is measured in the same run, alternating (6 rounds; in each, one untimed step after
switching models, then 3 timed steps), after warm-up, with ``train_on_batch`` on fixed random
data (graph mode, no XLA: Keras's CPU default); the ratio is the reference's median step time
over ours (goal >= 1.00: our block layers add nothing).

Usage: python benchmarks/bench_core.py [--rounds 6] [--quick]
"""

from __future__ import annotations

import numpy as np
from common import alternate, arguments, median, quiet_tensorflow, ratio, report, spread

keras = quiet_tensorflow()

from keras_resnet import ResNet  # noqa: E402

GOAL = ">= 1.00"


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


def keras_hub_resnet50(input_shape=(224, 224, 3), classes=1000):
    """keras-hub's ResNet-50 backbone (v1.5 bottleneck blocks) with a pooling + softmax head,
    or None when keras-hub is not installed."""
    try:
        import keras_hub
    except ImportError:
        return None
    backbone = keras_hub.models.ResNetBackbone(
        input_conv_filters=[64], input_conv_kernel_sizes=[7], stackwise_num_filters=[64, 128, 256, 512],
        stackwise_num_blocks=[3, 4, 6, 3], stackwise_num_strides=[1, 2, 2, 2], block_type="bottleneck_block",
        use_pre_activation=False, image_shape=input_shape,
    )
    x = keras.layers.GlobalAveragePooling2D()(backbone.output)
    return keras.Model(backbone.input, keras.layers.Dense(classes, activation="softmax")(x))


def step_fn(model, x, y):
    model.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9),
                  loss="sparse_categorical_crossentropy", jit_compile=False)

    def step():
        model.train_on_batch(x, y)

    for _ in range(2):  # trace and warm up
        step()
    return step


def compare(label, ours, reference, batch, rounds, repeat, settle=1):
    shape = ours.input_shape[1:]
    if ours.count_params() != reference.count_params():
        raise AssertionError(f"{label}: the models differ: {ours.count_params()} vs {reference.count_params()} parameters")
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (batch, *shape)).astype("float32")
    y = rng.integers(0, ours.output_shape[-1], batch)
    times = alternate({"ours": step_fn(ours, x, y), "reference": step_fn(reference, x, y)}, rounds, repeat, settle)
    t_ours, t_ref = median(times["ours"]), median(times["reference"])
    row = {
        "benchmark": label, "batch": batch, "image_size": shape[0], "params": ours.count_params(),
        "ours_ms_per_step": round(t_ours * 1e3, 2), "reference_ms_per_step": round(t_ref * 1e3, 2),
        "ratio_reference_over_ours": round(t_ref / t_ours, 3),
        "ours_images_per_s": round(batch / t_ours, 1), "reference_images_per_s": round(batch / t_ref, 1),
        "ours_spread": round(spread(times["ours"]), 3), "reference_spread": round(spread(times["reference"]), 3),
        "samples": len(times["ours"]),
        "ours_ms": [round(t * 1e3, 1) for t in times["ours"]], "reference_ms": [round(t * 1e3, 1) for t in times["reference"]],
    }
    print(f"{label:<62} ours {row['ours_ms_per_step']:>8.1f} ms  reference {row['reference_ms_per_step']:>8.1f} ms  "
          f"ratio {row['ratio_reference_over_ours']:.3f}", flush=True)
    return row


def main(argv=None):
    args = arguments(__doc__, "tiny sizes and one round (a smoke run)", rounds=6).parse_args(argv)
    quick = args.quick
    rounds = 1 if quick else args.rounds
    big = 32 if quick else 224  # ImageNet-style image size
    big_batch, cifar_batch = (2, 16) if quick else (16, 128)
    depth = 20 if quick else 56  # a smoke run: the same code paths, a third of the layers

    rows = [compare(f"train step, ResNet-{depth} (32 px, batch {cifar_batch}) vs inline Keras twin",
                    ResNet.from_preset("resnet56", depth=depth, shortcut="B"), inline_cifar_twin(depth),
                    batch=cifar_batch, rounds=rounds, repeat=1 if quick else 3, settle=0 if quick else 1)]
    keras.backend.clear_session()
    rows.append(compare(f"train step, resnet50 ({big} px, batch {big_batch}) vs keras.applications",
                        ResNet.from_preset("resnet50", input_shape=(big, big, 3)),
                        keras.applications.ResNet50(weights=None, input_shape=(big, big, 3)),
                        batch=big_batch, rounds=rounds, repeat=1 if quick else 3, settle=0 if quick else 1))
    keras.backend.clear_session()
    hub = keras_hub_resnet50((big, big, 3))
    if hub is None:
        print("keras-hub is not installed: skipping ResNet-50 vs keras_hub.models.ResNetBackbone "
              "(pip install keras-hub)")
    else:
        ours = ResNet.from_preset("resnet50", input_shape=(big, big, 3), use_bias=False, bn_epsilon=1e-5,
                                  stride_in_1x1=False)
        rows.append(compare(f"train step, ResNet-50 v1.5 ({big} px, batch {big_batch}) vs keras-hub",
                            ours, hub, batch=big_batch, rounds=rounds, repeat=1 if quick else 3,
                            settle=0 if quick else 1))
    ratios = [ratio("core", r["benchmark"], r["ratio_reference_over_ours"], GOAL, quick=quick) for r in rows]
    return report("core_cpu", {"goal": f"ratio reference/ours {GOAL}", "quick": quick,
                                     "keras_hub": hub is not None, "rows": rows, "ratios": ratios})


if __name__ == "__main__":
    main()
