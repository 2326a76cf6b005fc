"""Does pretraining pay off? Few-shot fine-tuning against training from scratch, offline.

:func:`digits_transfer` pretrains a ResNet on scikit-learn's digits 0-4, then learns the digits
5-9 from ``shots`` training images per class twice, with the same recipe, epochs, images and
seed: once fine-tuned from the pretrained ``model.keras`` (:mod:`keras_resnet.finetune`: the
head first with the backbone frozen, then everything at a tenth of the rate), once from
scratch. Both are measured once, at the end, on the standard digits test split restricted to
5-9 (no validation split: each run keeps its last epoch, nothing is chosen on the test set).

Every run is a :func:`keras_resnet.training.train` run under ``out/runs/``; finished runs are
read back, so the same call after a crash resumes. Arguments are validated before TensorFlow
loads.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from keras_resnet import fileio
from keras_resnet.finetune import DEFAULT_FINETUNE_LR_FACTOR, check_unfreeze
from keras_resnet.presets import stage_layout
from keras_resnet.validation import check_bool, check_choice, check_float, check_int, check_path, is_int

SOURCE_CLASSES = (0, 1, 2, 3, 4)
TARGET_CLASSES = (5, 6, 7, 8, 9)
RESULTS_FILE = "results.json"
SETTINGS_FILE = "experiment.json"


@dataclasses.dataclass(frozen=True)
class _Plan:
    seeds: tuple
    shots: int
    pretrain_epochs: int
    epochs: int
    freeze_epochs: int
    unfreeze: str | int
    finetune_lr_factor: float
    freeze_batchnorm: bool
    lr: float
    batch_size: int
    depth: int
    image_size: int
    out: Path
    verbose: int


def _plan(seeds, shots, pretrain_epochs, epochs, freeze_epochs, unfreeze, finetune_lr_factor, freeze_batchnorm, lr,
          batch_size, depth, image_size, out, verbose) -> _Plan:
    if isinstance(seeds, (str, bytes)) or not hasattr(seeds, "__iter__"):
        raise ValueError(f"seeds must be a non-empty sequence of integers >= 0; received seeds={seeds!r}")
    seeds = tuple(check_int("seed", s, 0) for s in seeds)
    if not seeds or len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must be distinct integers >= 0, at least one; received seeds={seeds!r}")
    depth = int(depth) if is_int(depth) else depth
    stage_layout(depth, "cifar", "basic")
    epochs = check_int("epochs", epochs, 1)
    freeze_epochs = check_int("freeze_epochs", freeze_epochs, 0, epochs, note="(at most epochs)")
    check_path("out", out, allowed="a folder path")
    if Path(out).exists() and not Path(out).is_dir():
        raise ValueError(f"out {str(out)!r} exists and is not a folder")
    return _Plan(
        seeds=seeds, shots=check_int("shots", shots, 1), pretrain_epochs=check_int("pretrain_epochs", pretrain_epochs, 1),
        epochs=epochs, freeze_epochs=freeze_epochs, unfreeze=check_unfreeze(unfreeze),
        finetune_lr_factor=check_float("finetune_lr_factor", finetune_lr_factor, 0, exclusive_minimum=True),
        freeze_batchnorm=check_bool("freeze_batchnorm", freeze_batchnorm),
        lr=check_float("lr", lr, 0, exclusive_minimum=True), batch_size=check_int("batch_size", batch_size, 1),
        depth=depth, image_size=check_int("image_size", image_size, 8), out=Path(out),
        verbose=check_choice("verbose", verbose, (0, 1, 2), "0, 1 or 2"),
    )


def digits_transfer(
    seeds=(0, 1, 2),
    shots: int = 10,
    pretrain_epochs: int = 30,
    epochs: int = 40,
    freeze_epochs: int = 10,
    unfreeze: str | int = "all",
    finetune_lr_factor: float = DEFAULT_FINETUNE_LR_FACTOR,
    freeze_batchnorm: bool = False,
    lr: float = 0.05,
    batch_size: int = 10,
    depth: int = 20,
    image_size: int = 16,
    out: str | os.PathLike = "runs/transfer",
    verbose: int = 0,
    dry_run: bool = False,
) -> dict:
    """Fine-tuning from a ResNet pretrained on the digits 0-4 against training from scratch, on
    the digits 5-9 with ``shots`` training images per class.

    Per seed: pretrain ``resnet<depth>`` on the training digits 0-4 (``pretrain_epochs``, the
    package's recipe with its augmentation); draw ``shots`` training images of each of 5-9; train
    on them for ``epochs`` (SGD at ``lr``, batches of ``batch_size``) (a) fine-tuned from the
    pretrained model, the first ``freeze_epochs`` with the backbone frozen, then ``unfreeze``
    at ``finetune_lr_factor * lr`` (with the BatchNorm layers frozen in inference mode if
    ``freeze_batchnorm``), and (b) from scratch. Test accuracy on the 180 test digits 5-9.

    Args:
        seeds: one pretraining, draw of images and pair of runs per seed.
        shots: training images per target class.
        pretrain_epochs: epochs of pretraining on the digits 0-4 (about 720 images).
        epochs: epochs of both target runs; freeze_epochs of them are fine-tuning's phase 1.
        unfreeze, finetune_lr_factor, freeze_batchnorm: fine-tuning's phase 2 (see ``TrainConfig``).
        lr: peak learning rate of the target runs. batch_size: their batch size.
        depth: a CIFAR-style depth, 6n+2. image_size: digits are resized to this size.
        out: the experiment's folder: ``runs/``, ``experiment.json`` (the settings; another
            experiment in the same folder is refused) and ``results.json``.
        verbose: Keras verbosity, 0 (default), 1 or 2.
        dry_run: validate and return the plan, train nothing.

    Returns:
        ``{"settings", "records", "summary"}``, as written to ``out/results.json``: per seed the
        pretrained model's accuracy on the digits 0-4 and both target runs' accuracy on 5-9;
        the summary has their mean and standard deviation (over seeds, ddof=1) and the gain.

    Example:
    >>> digits_transfer(seeds=(0, 1), dry_run=True)["settings"]["seeds"]
    [0, 1]
    >>> result = digits_transfer(seeds=(0, 1, 2), out="runs/transfer")  # doctest: +SKIP
    """
    plan = _plan(seeds, shots, pretrain_epochs, epochs, freeze_epochs, unfreeze, finetune_lr_factor, freeze_batchnorm,
                 lr, batch_size, depth, image_size, out, verbose)
    settings = {k: (str(v) if isinstance(v, Path) else list(v) if isinstance(v, tuple) else v)
                for k, v in dataclasses.asdict(plan).items() if k != "verbose"}
    if dry_run:
        return {"settings": settings, "records": [], "summary": {}}
    # Finished runs are read back by folder name: another experiment's folder would hand back its runs.
    saved = fileio.read_json(plan.out / SETTINGS_FILE)
    if saved is not None:  # written before freeze_batchnorm existed: the BatchNorms trained in phase 2
        saved = {"freeze_batchnorm": False, **saved}
    if saved is not None and {k: v for k, v in saved.items() if k != "seeds"} != {
            k: v for k, v in settings.items() if k != "seeds"}:
        raise ValueError(f"out {str(plan.out)!r} holds an experiment with other settings ({saved}); choose another out")
    fileio.write_json(plan.out / SETTINGS_FILE, settings)
    arrays = _digit_arrays(plan.image_size)
    records = [_run_seed(plan, seed, *arrays) for seed in plan.seeds]
    result = {"settings": settings, "records": records, "summary": summarize(records)}
    fileio.write_json(plan.out / RESULTS_FILE, result)
    return result


def summarize(records: list[dict]) -> dict:
    """Mean and standard deviation (ddof=1; 0 for one seed) of the accuracies over seeds.

    Example:
    >>> s = summarize([{"finetune_accuracy": 0.9, "scratch_accuracy": 0.6, "pretrain_accuracy": 1.0},
    ...                {"finetune_accuracy": 0.8, "scratch_accuracy": 0.6, "pretrain_accuracy": 1.0}])
    >>> round(s["finetune_accuracy_mean"], 3), round(s["gain_mean"], 3), s["seeds"]
    (0.85, 0.25, 2)
    """
    import numpy as np

    rows = {"seeds": len(records)}
    for key in ("pretrain_accuracy", "finetune_accuracy", "scratch_accuracy", "gain"):
        values = np.array([r["finetune_accuracy"] - r["scratch_accuracy"] if key == "gain" else r[key] for r in records])
        rows[f"{key}_mean"] = float(values.mean())
        rows[f"{key}_std"] = float(values.std(ddof=1)) if len(values) > 1 else 0.0
    return rows


def _digit_arrays(image_size: int):
    """The digits' fixed training and test splits as arrays (raw pixels, labels)."""
    import numpy as np

    from keras_resnet.data import load_dataset

    data = load_dataset("digits", image_size=image_size, validation_split=0.0, augment=False, batch_size=4096)

    def arrays(ds):
        xs, ys = zip(*ds.as_numpy_iterator())
        return np.concatenate(xs), np.concatenate(ys)

    return arrays(data.train), arrays(data.test)


def _subset(x, y, classes):
    import numpy as np

    keep = np.isin(y, classes)
    return x[keep], y[keep] - min(classes)


def _run_seed(plan: _Plan, seed: int, train_arrays, test_arrays) -> dict:
    import numpy as np

    from keras_resnet.data import from_arrays
    from keras_resnet.training import TrainConfig

    (x_train, y_train), (x_test, y_test) = train_arrays, test_arrays
    # Sorted by label first, so that the draw does not depend on the training pipeline's order.
    order = np.lexsort((x_train.reshape(len(x_train), -1).sum(1), y_train))
    x_train, y_train = x_train[order], y_train[order]
    source = from_arrays(*_subset(x_train, y_train, SOURCE_CLASSES), *_subset(x_test, y_test, SOURCE_CLASSES),
                         name="digits0-4", batch_size=128, seed=seed)
    pretrained = _train(plan, f"pretrain-s{seed}", source, TrainConfig(epochs=plan.pretrain_epochs, seed=seed))

    rng = np.random.default_rng(seed)
    picked = np.concatenate([rng.choice(np.flatnonzero(y_train == c), plan.shots, replace=False)
                             for c in TARGET_CLASSES])
    target = from_arrays(x_train[picked], y_train[picked] - TARGET_CLASSES[0],
                         *_subset(x_test, y_test, TARGET_CLASSES), name=f"digits5-9-{plan.shots}shot-s{seed}",
                         batch_size=plan.batch_size, seed=seed)
    recipe = dict(epochs=plan.epochs, lr=plan.lr, seed=seed)
    tuned = _train(plan, f"finetune-s{seed}", target, TrainConfig(
        **recipe, weights=str(plan.out / "runs" / f"pretrain-s{seed}" / "model.keras"),
        freeze_epochs=plan.freeze_epochs, unfreeze=plan.unfreeze, finetune_lr_factor=plan.finetune_lr_factor,
        freeze_batchnorm=plan.freeze_batchnorm))
    scratch = _train(plan, f"scratch-s{seed}", target, TrainConfig(**recipe))
    record = {"seed": seed, "pretrain_accuracy": pretrained["test_accuracy"],
              "finetune_accuracy": tuned["test_accuracy"], "scratch_accuracy": scratch["test_accuracy"],
              "train_images": int(target.train_count), "test_images": int(target.test_count)}
    if plan.verbose:
        print(f"seed {seed}: fine-tuned {record['finetune_accuracy']:.4f}, from scratch {record['scratch_accuracy']:.4f}")
    return record


def _train(plan: _Plan, name: str, dataset, config) -> dict:
    """Trains one run (resuming an unfinished one), or reads a finished one's metrics back."""
    import keras

    from keras_resnet.training import train

    folder = plan.out / "runs" / name
    metrics = fileio.read_json(folder / "metrics.json")
    if metrics is None:
        kwargs = {} if config.weights else {"depth": plan.depth}
        metrics = train("resnet20", dataset, config, out=folder, verbose=plan.verbose, set_global_seed=True,
                        **kwargs).metrics
        keras.backend.clear_session()
    return metrics
