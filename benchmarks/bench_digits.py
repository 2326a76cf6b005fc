"""ResNet-20 on the digits with the default recipe: test accuracy and wall time.

Trains the ``resnet20`` preset with ``TrainConfig()`` defaults (16x16 digits, 30 epochs, batch
128, lr 0.1 with 5% warm-up at 0.01, steps at 50% and 75%, weight decay 1e-4, pad-2 random
crops) through ``keras_resnet.training.train``, as ``keras-resnet train`` does. The wall time
covers everything: loading the data, building, training, evaluating the best model.

Goal: test accuracy >= 98% in <= 120 s on 2 CPU cores.

Usage: python benchmarks/bench_digits.py [--seeds 0 1 2] [--epochs N]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

from common import quiet_tensorflow, write_result

quiet_tensorflow()

from keras_resnet.training import TrainConfig, train  # noqa: E402

GOAL_ACCURACY = 0.98
GOAL_SECONDS = 120.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="one run per seed (default 0)")
    parser.add_argument("--epochs", type=int, help="default: the recipe's (30 for digits)")
    args = parser.parse_args()

    rows = []
    for seed in args.seeds:
        with tempfile.TemporaryDirectory() as out:
            start = time.perf_counter()
            result = train("resnet20", "digits", TrainConfig(epochs=args.epochs, seed=seed), out=out, verbose=0)
            wall = time.perf_counter() - start
        m = result.metrics
        rows.append({
            "seed": seed, "test_accuracy": round(m["test_accuracy"], 4), "wall_seconds": round(wall, 1),
            "train_seconds": m["seconds"], "epochs": m["epochs"], "best_epoch": m["best_epoch"],
        })
        print(f"seed {seed}: test accuracy {m['test_accuracy']:.2%} ({m['counts']['test']} images), "
              f"wall time {wall:.1f} s ({m['seconds']:.1f} s in {m['epochs']} epochs), best epoch {m['best_epoch']}")

    accuracy = statistics.mean(r["test_accuracy"] for r in rows)
    wall = statistics.mean(r["wall_seconds"] for r in rows)
    ok = min(r["test_accuracy"] for r in rows) >= GOAL_ACCURACY and max(r["wall_seconds"] for r in rows) <= GOAL_SECONDS
    print(f"\nResNet-20 on digits: mean test accuracy {accuracy:.2%}, mean wall time {wall:.1f} s "
          f"(goal >= {GOAL_ACCURACY:.0%} in <= {GOAL_SECONDS:.0f} s): {'met' if ok else 'NOT met'}")
    path = write_result("digits_cpu", {
        "goal": f"test_accuracy >= {GOAL_ACCURACY} and wall_seconds <= {GOAL_SECONDS}",
        "met": ok, "mean_test_accuracy": round(accuracy, 4), "mean_wall_seconds": round(wall, 1),
        "recipe": {k: v for k, v in result.metrics["config"].items() if k not in ("mean", "std")},
        "rows": rows,
    })
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
