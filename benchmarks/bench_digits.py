"""Time to accuracy: ResNet-20 on the offline digits with the default recipe, on the CPU.

Ours: ``keras_resnet.training.train("resnet20", "digits", TrainConfig(seed=...))``, as
``keras-resnet train`` runs it (16x16 digits, 30 epochs, batch 128, lr 0.1 with 5% warm-up at
0.01, steps at 50% and 75%, weight decay 1e-4, pad-2 random crops), with everything it does:
loading the data, building, training with its callbacks (the history, the resume file, the best
epoch's weights), evaluating the best epoch on the 360 test images and saving ``model.keras``.

Reference, in the same run: a bare ``model.fit`` of the same model, data pipeline and schedule
(``load_dataset`` + ``build_model`` + ``compile_model``), no callbacks, evaluated as it ends.
The ratio bare / ours says what ``train``'s bookkeeping costs (1.00: nothing). One pair of
30-epoch runs is one sample, and this machine's speed drifts by 10-20% over minutes, so the
ratio is measured separately: ``--overhead-rounds`` pairs of 10-epoch runs, alternating which
goes first, and the median of each side.

Goal: test accuracy >= 98% in <= 120 s of wall time on 2 CPU cores. Also reported: the
training seconds until the validation accuracy (144 images) first reached 98%.

Usage: python benchmarks/bench_digits.py [--seeds 0 1 2] [--epochs N] [--overhead-rounds 4] [--quick]
"""

from __future__ import annotations

import statistics
import tempfile
import time

from common import arguments, quiet_tensorflow, ratio, report

keras = quiet_tensorflow()

from keras_resnet.data import load_dataset  # noqa: E402
from keras_resnet.training import TrainConfig, build_model, compile_model, default_epochs, train  # noqa: E402

GOAL_ACCURACY = 0.98
GOAL_SECONDS = 120.0


def ours(config: TrainConfig) -> dict:
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        result = train("resnet20", "digits", config, out=out, verbose=0, set_global_seed=True)
        wall = time.perf_counter() - start
    m, rows = result.metrics, result.history
    elapsed, reached = 0.0, None
    for r in rows:
        elapsed += r["seconds"]
        if r.get("val_accuracy", 0) >= GOAL_ACCURACY:
            reached = {"epoch": r["epoch"], "train_seconds": round(elapsed, 1)}
            break
    return {"test_accuracy": round(m["test_accuracy"], 4), "wall_seconds": round(wall, 1),
            "train_seconds": m["seconds"], "epochs": m["epochs"], "best_epoch": m["best_epoch"],
            "val_98": reached, "config": m["config"]}


def bare_fit(config: TrainConfig) -> dict:
    """The same training as a plain ``model.fit`` without callbacks or files."""
    start = time.perf_counter()
    data = load_dataset("digits", image_size=config.image_size, batch_size=128, seed=config.seed)
    keras.utils.set_random_seed(config.seed)
    model = build_model("resnet20", data, weight_decay=config.weight_decay)
    epochs = config.epochs or default_epochs("digits")
    compile_model(model, config, steps_per_epoch=data.steps_per_epoch, epochs=epochs, batch_size=128)
    fit_start = time.perf_counter()
    model.fit(data.train, validation_data=data.validation, epochs=epochs, verbose=0, shuffle=False)
    fit_seconds = time.perf_counter() - fit_start
    _, accuracy = model.evaluate(data.test, verbose=0)
    return {"test_accuracy": round(float(accuracy), 4), "wall_seconds": round(time.perf_counter() - start, 1),
            "fit_seconds": round(fit_seconds, 1)}


def measure_overhead(rounds: int, epochs: int, image_size: int | None) -> dict | None:
    """Medians of ``rounds`` alternating pairs of short runs: ``train()`` and a bare fit."""
    if rounds < 1:
        return None
    config = TrainConfig(epochs=epochs, seed=0, image_size=image_size)
    seconds = {"ours": [], "bare": []}
    for r in range(rounds):
        for kind in (("ours", "bare") if r % 2 == 0 else ("bare", "ours")):
            seconds[kind].append(ours(config)["wall_seconds"] if kind == "ours" else bare_fit(config)["wall_seconds"])
    o, b = statistics.median(seconds["ours"]), statistics.median(seconds["bare"])
    return {"rounds": rounds, "epochs": epochs, "ours_s": seconds["ours"], "bare_s": seconds["bare"],
            "ours_median_s": o, "bare_median_s": b, "ratio_bare_over_ours": round(b / o, 3)}


def main(argv=None):
    parser = arguments(__doc__, "2 epochs on 8x8 digits (a smoke run)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="one pair of runs per seed (default 0)")
    parser.add_argument("--epochs", type=int, help="default: the recipe's (30 for digits)")
    parser.add_argument("--overhead-rounds", type=int, default=4,
                        help="alternating pairs of 10-epoch runs that measure bare / train() (default 4; 0 skips)")
    args = parser.parse_args(argv)
    quick = args.quick
    epochs = 2 if quick else args.epochs

    rows = []
    for seed in args.seeds:
        config = TrainConfig(epochs=epochs, seed=seed, image_size=8 if quick else None)
        runs = {"ours": ours, "bare": bare_fit}
        # Alternating: the reference goes first on odd seeds.
        order = ["ours", "bare"] if seed % 2 == 0 else ["bare", "ours"]
        results = {kind: runs[kind](config) for kind in order}
        o, b = results["ours"], results["bare"]
        rows.append({"seed": seed, "ours": {k: v for k, v in o.items() if k != "config"}, "bare_fit": b,
                     "ratio_bare_over_ours": round(b["wall_seconds"] / o["wall_seconds"], 3)})
        reached = f"epoch {o['val_98']['epoch']} after {o['val_98']['train_seconds']:.1f} s" if o["val_98"] else "never"
        print(f"seed {seed}: ours test accuracy {o['test_accuracy']:.2%}, wall {o['wall_seconds']:.1f} s "
              f"({o['train_seconds']:.1f} s in {o['epochs']} epochs, best epoch {o['best_epoch']}; "
              f"validation 98%: {reached}) | bare fit {b['test_accuracy']:.2%}, wall {b['wall_seconds']:.1f} s "
              f"(fit {b['fit_seconds']:.1f} s)", flush=True)

    overhead = measure_overhead(1 if quick else args.overhead_rounds, 1 if quick else 10, 8 if quick else None)
    if overhead:
        print(f"overhead: {overhead['rounds']} alternating pairs of {overhead['epochs']}-epoch runs: train() "
              f"{overhead['ours_median_s']:.1f} s, bare fit {overhead['bare_median_s']:.1f} s (medians)", flush=True)

    accuracy = statistics.mean(r["ours"]["test_accuracy"] for r in rows)
    wall = statistics.mean(r["ours"]["wall_seconds"] for r in rows)
    ratios = [
        ratio("digits", "ResNet-20 digits: test accuracy (worst seed)", min(r["ours"]["test_accuracy"] for r in rows),
              f">= {GOAL_ACCURACY}", digits=4, quick=quick),
        ratio("digits", "ResNet-20 digits: wall seconds of train() (slowest seed)", max(r["ours"]["wall_seconds"] for r in rows),
              f"<= {GOAL_SECONDS:.0f}", digits=1, quick=quick),
    ]
    if overhead:
        ratios.append(ratio("digits", "ResNet-20 digits: bare fit / train() wall, alternating",
                            overhead["ratio_bare_over_ours"]))
    return report("digits_cpu", {
        "goal": f"test_accuracy >= {GOAL_ACCURACY} and wall_seconds <= {GOAL_SECONDS}", "quick": quick,
        "met": all(r["met"] for r in ratios[:2]) if not quick else None,
        "mean_test_accuracy": round(accuracy, 4), "mean_wall_seconds": round(wall, 1),
        "recipe": {k: v for k, v in results["ours"]["config"].items() if k not in ("mean", "std")},
        "rows": rows, "overhead": overhead, "ratios": ratios,
    })


if __name__ == "__main__":
    main()
