"""Search overhead per trial: one KerasTuner trial against a bare ``model.fit`` of the same model.

Trial: a ``RandomSearch`` tuner from :func:`keras_resnet.tuning.make_tuner` with
``max_trials=1`` over a one-point space (ResNet-20, projection shortcuts, v1), on the offline
digits (16x16, batch 128, 3 epochs): ``tuner.search(...)`` builds the model through
:class:`keras_resnet.tuning.ResNetHyperModel`, compiles it with the recipe, fits it with
KerasTuner's callbacks (best-epoch checkpoint, trial bookkeeping) and writes the oracle's files.
Timed with and without the one-time tuner construction (which builds the hypermodel once to
learn the space).

Reference, alternating with it in the same run: ``build_model`` + ``compile_model`` +
``model.fit`` of the same model, data and epochs, no tuner.

Goal: trial time / bare time <= 1.10 (tuner construction included).

Usage: python benchmarks/bench_search.py [--rounds 5] [--epochs 3] [--quick]
"""

from __future__ import annotations

import tempfile
import time

from common import arguments, median, quiet_tensorflow, ratio, report

keras = quiet_tensorflow()

from keras_resnet.data import load_dataset  # noqa: E402
from keras_resnet.training import TrainConfig, build_model, compile_model, device_scope, device_settings  # noqa: E402
from keras_resnet.tuning import ResNetHyperModel, SearchSpace, make_tuner  # noqa: E402

GOAL = "<= 1.10"
ARCH = {"depth": 20, "shortcut": "projection", "version": "v1"}


class _RecordingHyperModel(ResNetHyperModel):
    """Notes the dtype policy of each model it builds (the trial's is the last)."""

    policies: list

    def build(self, hp):
        model = super().build(hp)
        self.policies = [*getattr(self, "policies", []), model.dtype_policy.name]
        return model


def one_trial(data, epochs: int, directory: str) -> dict:
    """Seconds of a one-trial search: with the tuner's construction, and the search alone."""
    start = time.perf_counter()
    hypermodel = _RecordingHyperModel(
        data.input_shape, data.num_classes, mean=data.mean, std=data.std,
        space=SearchSpace(depths=[ARCH["depth"]], shortcuts=[ARCH["shortcut"]], versions=[ARCH["version"]]),
        train_config=TrainConfig(epochs=epochs), steps_per_epoch=data.steps_per_epoch,
    )
    tuner = make_tuner("random", hypermodel, directory=directory, project_name="bench", max_trials=1,
                       max_epochs=epochs, overwrite=True, freeze_gc=True)  # as `keras-resnet tune`
    built = time.perf_counter()
    tuner.search(data.train, validation_data=data.validation, epochs=epochs, verbose=0)
    end = time.perf_counter()
    score = tuner.oracle.get_best_trials(1)[0].score
    return {"with_construction": end - start, "search_only": end - built, "construction": built - start,
            "val_accuracy": score, "dtype_policy": hypermodel.policies[-1]}


def bare_fit(data, epochs: int) -> dict:
    """Seconds of build + compile + fit of the same model without a tuner."""
    start = time.perf_counter()
    model = build_model("resnet20", data, weight_decay=1e-4, **ARCH)
    compile_model(model, TrainConfig(epochs=epochs), steps_per_epoch=data.steps_per_epoch, epochs=epochs)
    fit_start = time.perf_counter()
    history = model.fit(data.train, validation_data=data.validation, epochs=epochs, verbose=0, shuffle=False)
    end = time.perf_counter()
    return {"total": end - start, "fit_only": end - fit_start, "val_accuracy": max(history.history["val_accuracy"]),
            "dtype_policy": model.dtype_policy.name}


def measure(rounds: int, epochs: int, image_size: int) -> dict:
    """Alternates one-trial searches and bare fits; returns medians, ratios and every sample."""
    data = load_dataset("digits", image_size=image_size, batch_size=128, seed=0)
    trials, bares = [], []
    with tempfile.TemporaryDirectory(prefix="bench-search-") as tmp:
        # Warm-up, untimed: a process's first traces cost more (autograph converts Keras's code
        # once), which would fall on whichever side ran first.
        with device_scope(TrainConfig()):
            one_trial(data, 1, f"{tmp}/warmup")
            bare_fit(data, 1)
        for r in range(rounds):
            order = ("trial", "bare") if r % 2 == 0 else ("bare", "trial")
            for kind in order:
                keras.backend.clear_session()
                # The device's global settings (mixed precision on GPUs), as search() applies them.
                with device_scope(TrainConfig()):
                    if kind == "trial":
                        trials.append(one_trial(data, epochs, f"{tmp}/{r}"))
                    else:
                        bares.append(bare_fit(data, epochs))
    t_with = median([t["with_construction"] for t in trials])
    t_search = median([t["search_only"] for t in trials])
    t_bare = median([b["total"] for b in bares])
    return {
        "epochs": epochs, "image_size": image_size, "steps_per_epoch": data.steps_per_epoch,
        "device": device_settings(TrainConfig(), params=270_000, steps_per_epoch=data.steps_per_epoch),
        "trial_seconds_with_construction": round(t_with, 2), "trial_seconds_search_only": round(t_search, 2),
        "tuner_construction_seconds": round(median([t["construction"] for t in trials]), 2),
        "bare_seconds": round(t_bare, 2), "bare_fit_only_seconds": round(median([b["fit_only"] for b in bares]), 2),
        "ratio_with_construction": round(t_with / t_bare, 3), "ratio_search_only": round(t_search / t_bare, 3),
        "overhead_seconds_per_trial": round(t_with - t_bare, 2),
        "trial_dtype_policy": trials[-1]["dtype_policy"], "bare_dtype_policy": bares[-1]["dtype_policy"],
        "samples": {"trial": [_rounded(t) for t in trials], "bare": [_rounded(b) for b in bares]},
    }


def _rounded(sample: dict) -> dict:
    return {k: round(float(v), 3) if isinstance(v, (int, float)) else v for k, v in sample.items()}


def main(argv=None):
    parser = arguments(__doc__, "one round of 1 epoch on 8x8 digits (a smoke run)", rounds=5)
    parser.add_argument("--epochs", type=int, default=3, help="epochs per trial (default 3)")
    args = parser.parse_args(argv)
    quick = args.quick
    record = measure(1 if quick else args.rounds, 1 if quick else args.epochs, 8 if quick else 16)
    print(f"one trial ({record['epochs']} epochs, ResNet-20, digits {record['image_size']} px): "
          f"{record['trial_seconds_with_construction']:.2f} s with the tuner's construction "
          f"({record['tuner_construction_seconds']:.2f} s), {record['trial_seconds_search_only']:.2f} s search only; "
          f"bare build+compile+fit {record['bare_seconds']:.2f} s (fit {record['bare_fit_only_seconds']:.2f} s)")
    if record["trial_dtype_policy"] != record["bare_dtype_policy"]:
        print(f"note: the trial's model ran in {record['trial_dtype_policy']}, the bare fit's in "
              f"{record['bare_dtype_policy']} (KerasTuner's clear_session() resets the global dtype policy)")
    ratios = [
        ratio("search", "search trial / bare fit (tuner construction included)", record["ratio_with_construction"], GOAL, quick=quick),
        ratio("search", "search trial / bare fit (search only)", record["ratio_search_only"]),
    ]
    return report("search_cpu", {"goal": f"trial / bare {GOAL}", "quick": quick, **record, "ratios": ratios})


if __name__ == "__main__":
    main()
