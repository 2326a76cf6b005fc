"""The ResNet paper's experiments on plain nets and ResNets, with their tables and figures.

He et al., "Deep Residual Learning for Image Recognition" (arXiv:1512.03385):

* :func:`degradation` (Section 4.2, Figure 6): plain nets of growing depth reach a *higher*
  training error, their ResNet twins (same depth, same parameters with option A shortcuts, same
  recipe, data and seed) a lower one.
* :func:`compare_shortcuts` (Table 3): shortcut types (and versions) at one depth; with
  ``versions=("v1", "v2")`` also the pre-activation paper's (arXiv:1603.05027) comparison.
* :func:`residual_responses` (Figure 7): the standard deviation of each residual branch's
  output ``F(x)`` in the trained nets, and ``||F(x)|| / ||x||``.
* :func:`very_deep` (the pre-activation paper, arXiv:1603.05027, Table 2 and Figure 1):
  ResNet-1001 with pre-activation (v2) and original (v1) bottleneck blocks, and a plain net.

Depths are CIFAR style: 6n+2 with basic blocks, 9n+2 with bottleneck blocks; by default each
depth gets basic blocks where it can and bottleneck blocks otherwise (1001); 110 and 164 are
both, so the pre-activation paper's bottleneck ResNet-164 needs ``block="bottleneck"``.

Each net is trained by :func:`keras_resnet.training.train` in
``out/runs/<shortcut>[-v2][-<block>]-<depth>-s<seed>/`` (the block only where it is not the
depth's default); finished runs are read back, not retrained, so
the same call after a crash resumes. Runs use the whole training split, so ``train`` keeps the
last epoch's model: degradation is about how far the optimiser gets, not the best checkpoint.
Arguments are validated before TensorFlow loads.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import time
from pathlib import Path

# numpy, like TensorFlow, is imported inside the functions that use it: `keras-resnet --help`
# reads this module's tables and must answer at once.
from keras_resnet import fileio
from keras_resnet.data import DIGITS, check_dataset
from keras_resnet.figures import plot_degradation, plot_responses, plot_shortcuts, plot_training_curves
from keras_resnet.presets import BLOCK_TYPES, SHORTCUTS, normalize_shortcut, normalize_version, stage_layout
from keras_resnet.training import (
    DEFAULT_EPOCHS,
    PAPER_BATCH_SIZE,
    TrainConfig,
    default_epochs,
    default_warmup_steps,
)
from keras_resnet.validation import (
    check_bool,
    check_choice,
    check_float,
    check_int,
    check_path,
    check_type,
)

# The experiments' defaults differ from training.py's in two places; the results of
# docs/experiments.md were obtained with these, so they are overrides of training's rules,
# not rules of their own:
# - epochs (default_epochs with this table): 20 epochs of 8x8 digits show the degradation in
#   minutes on 2 CPU cores; CIFAR-10 gets the paper's 64k iterations of 128 images over all 50k
#   training images (no validation split here), 164 epochs; other datasets keep training's.
EXPERIMENT_EPOCHS = {**DEFAULT_EPOCHS, DIGITS: 20, "cifar10": 164}
# - warm-up (default_warmup_steps with this fraction, same cap): 10% of training rather than
#   5%; with less, a deep ResNet can stall at lr 0.1, which hides the effect being measured.
EXPERIMENT_WARMUP_FRACTION = 0.1
DEFAULT_IMAGE_SIZE = {DIGITS: 8}
# A one-pixel shift is an eighth of an 8x8 digit: it made the deep ResNets' runs unstable and
# hid their training error's fall with depth (docs/experiments.md). CIFAR keeps the paper's.
DEFAULT_AUGMENT = {DIGITS: False}
RECORD_FILE = "experiment.json"
CSV_COLUMNS = ("run", "model", "depth", "block", "shortcut", "version", "seed", "epochs", "params",
               "train_error", "test_error", "seconds")


@dataclasses.dataclass(frozen=True)
class _Plan:
    """Validated arguments; ``runs`` holds (depth, shortcut, version, seed, block) in training order."""

    dataset: str
    runs: tuple
    epochs: int
    out: Path
    config: TrainConfig
    width_multiplier: float
    verbose: int


# ---- validation (no TensorFlow) -----------------------------------------------------------

def _default_block(depth: int) -> str:
    """Basic blocks where the depth allows them (the ResNet paper's CIFAR nets), else bottleneck."""
    for block, per in (("basic", 6), ("bottleneck", 9)):
        if depth >= per + 2 and (depth - 2) % per == 0:
            return block
    raise ValueError(
        "depth must be 6n+2 (basic blocks: 8, 14, 20, 32, 44, 56, 110, ...) or 9n+2 (bottleneck "
        f"blocks: 11, 29, 164, 1001, ...) for the experiments' CIFAR-style nets; received depth={depth}"
    )


def _net(value, block) -> tuple[int, str]:
    """A validated ``(depth, block)``; ``block`` None is the depth's default."""
    depth = check_int("depth", value)
    block = _default_block(depth) if block is None else block
    stage_layout(depth, "cifar", block)
    return depth, block


def _distinct(name, values, check) -> tuple:
    if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
        raise ValueError(f"{name} must be a non-empty sequence; received {name}={values!r}")
    checked = tuple(check(v) for v in values)
    if not checked:
        raise ValueError(f"{name} must not be empty; received {name}={values!r}")
    if len(set(checked)) != len(checked):
        raise ValueError(f"{name} must not repeat a value; received {name}={values!r}")
    return checked


def _plan(dataset, nets, seeds, epochs, out, config, augment, width_multiplier, verbose, block=None) -> _Plan:
    """Validates everything; ``nets`` are (depth, shortcut, version) with the shortcuts and versions
    already checked, and the depths checked here."""
    check_type("config", config, TrainConfig, "a keras_resnet.training.TrainConfig", optional=True)
    config = (config or TrainConfig()).validate()
    check_dataset(dataset, config.data_dir)
    check_choice("block", block, (*BLOCK_TYPES, None), "'basic', 'bottleneck' or None (each depth's default)")
    nets = tuple((*_net(d, block), s, v) for d, s, v in nets)
    seeds = _distinct("seeds", seeds, lambda s: check_int("seed", s, 0))
    epochs = check_int("epochs", epochs, 1, optional=True)
    check_path("out", out, allowed="a folder path")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"out {str(out)!r} exists and is not a folder")
    if config.validation_split not in (None, 0):
        # With a validation split, train() keeps the best-validation checkpoint, not the last epoch.
        raise ValueError(
            "the experiments train on the whole training split (their model is the last epoch's); "
            f"received config.validation_split={config.validation_split!r}"
        )
    width_multiplier = check_float("width_multiplier", width_multiplier, 0, exclusive_minimum=True)
    check_choice("verbose", verbose, (0, 1, 2), "0, 1 or 2")
    check_bool("augment", augment, optional=True, none_means="the dataset's default")
    augment = DEFAULT_AUGMENT.get(dataset, config.augment) if augment is None else augment
    epochs = epochs or config.epochs or default_epochs(dataset, EXPERIMENT_EPOCHS)
    config = dataclasses.replace(
        config, epochs=epochs, validation_split=0.0, batch_size=config.batch_size or PAPER_BATCH_SIZE, augment=augment,
        image_size=config.image_size or DEFAULT_IMAGE_SIZE.get(dataset),
    )
    runs = tuple((d, s, v, seed, b) for seed in seeds for d, b, s, v in nets)
    return _Plan(dataset, runs, epochs, out, config, float(width_multiplier), verbose)


def _run_name(depth, shortcut, version, seed, block) -> str:
    kind = "" if block == _default_block(depth) else f"-{block}"
    return f"{shortcut}{'-v2' if version == 'v2' else ''}{kind}-{depth}-s{seed}"


def _planned(plan: _Plan) -> list[dict]:
    return [{"run": _run_name(*r), "depth": r[0], "block": r[4], "shortcut": r[1], "version": r[2],
             "seed": r[3], "epochs": plan.epochs} for r in plan.runs]


# ---- running ------------------------------------------------------------------------------

def _execute(plan: _Plan, set_global_seed: bool, clear_session: bool) -> list[dict]:
    """Trains (or reads back) every planned run; returns their records in plan order."""
    import keras

    data: dict[int, tuple] = {}  # the current seed's pipelines only (runs are ordered by seed)
    records = []
    for i, (depth, shortcut, version, seed, block) in enumerate(plan.runs, 1):
        name = _run_name(depth, shortcut, version, seed, block)
        folder = plan.out / "runs" / name
        config = dataclasses.replace(plan.config, seed=seed)
        settings = json.loads(json.dumps({
            "dataset": plan.dataset, "depth": depth, "shortcut": shortcut, "version": version,
            "seed": seed, "width_multiplier": plan.width_multiplier, "config": dataclasses.asdict(config),
            # Basic blocks were the only kind before; leaving them out keeps older folders resumable.
            **({} if block == "basic" else {"block": block}),
        }, default=str))
        saved = fileio.read_json(folder / RECORD_FILE)
        if saved is not None and saved.get("settings") != settings:
            raise ValueError(f"{folder} holds a run with other settings ({saved.get('settings')}); choose another out")
        if saved is not None and saved.get("record"):
            records.append(saved["record"])
            if plan.verbose:
                print(f"[{i}/{len(plan.runs)}] {name}: finished earlier, read back")
            continue
        fileio.write_json(folder / RECORD_FILE, {"settings": settings})
        if seed not in data:
            data = {seed: _seed_data(plan, seed)}
        train_data, plain_data = data[seed]
        if config.warmup_steps is None:
            total = plan.epochs * train_data.steps_per_epoch
            config = dataclasses.replace(
                config, warmup_steps=default_warmup_steps(total, fraction=EXPERIMENT_WARMUP_FRACTION))
        started = time.perf_counter()
        if plan.verbose and not (folder / "metrics.json").exists():
            print(f"[{i}/{len(plan.runs)}] {name}: training {plan.epochs} epochs")
        model, metrics, history, note = _train_run(plan, folder, train_data, config, depth, shortcut, version,
                                                   block, set_global_seed)
        # Inference mode, no augmentation, the final weights: what the optimiser reached.
        train_accuracy = model.evaluate(plain_data.train, verbose=0, return_dict=True)["accuracy"]
        record = {
            "run": name, "model": metrics["model"], "depth": depth, "block": block, "shortcut": shortcut,
            "version": version, "seed": seed, "epochs": metrics["epochs"], "params": metrics["trainable_params"],
            "train_error": 1.0 - float(train_accuracy), "test_error": 1.0 - float(metrics["test_accuracy"]),
            "seconds": metrics["seconds"],
            "epoch_train_error": [1.0 - float(r["accuracy"]) for r in history],
            "epoch_loss": [float(r["loss"]) for r in history],
        }
        fileio.write_json(folder / RECORD_FILE, {"settings": settings, "record": record})
        records.append(record)
        if plan.verbose:
            print(f"[{i}/{len(plan.runs)}] {name}: {note}; train error {100 * record['train_error']:.2f}%, "
                  f"test error {100 * record['test_error']:.2f}% ({time.perf_counter() - started:.0f} s)")
        del model
        if clear_session:
            keras.backend.clear_session()  # dozens of deep models in one process add up
    return records


def _seed_data(plan: _Plan, seed: int) -> tuple:
    """The seed's training pipeline and, for measuring training error, its unaugmented twin."""
    from keras_resnet.data import load_dataset

    c = plan.config
    kw = dict(image_size=c.image_size, batch_size=c.batch_size, validation_split=0.0, seed=seed,
              flip=c.flip, data_dir=c.data_dir, cache=c.cache)
    augmented = load_dataset(plan.dataset, augment=c.augment, **kw)
    return augmented, load_dataset(plan.dataset, augment=False, **kw) if c.augment else augmented


def _train_run(plan: _Plan, folder: Path, train_data, config, depth, shortcut, version, block, set_global_seed):
    """Trains one run, or loads one that was trained but not yet evaluated.

    Returns ``(model, metrics, history, note)``; the model is the last epoch's, which the
    experiments measure (there is no validation split to pick another).
    """
    import keras

    from keras_resnet.training import train

    if (folder / "metrics.json").exists():  # trained, but stopped before its evaluation
        model = keras.saving.load_model(str(folder / "model.keras"))
        metrics, history = fileio.read_json(folder / "metrics.json"), _read_history(folder / "history.csv")
        note = "trained earlier, evaluated now"
    else:
        result = train("resnet20", train_data, config, out=folder, verbose=plan.verbose,
                       set_global_seed=set_global_seed, depth=depth, shortcut=shortcut, version=version,
                       block=block, width_multiplier=plan.width_multiplier)
        model, metrics, history = result.model, result.metrics, result.history
        note = "trained"
    if metrics["best_epoch"] != metrics["epochs"] or len(history) != plan.epochs:
        raise RuntimeError(f"{folder}: expected the model of the last of {plan.epochs} epochs; metrics say "
                           f"epoch {metrics['best_epoch']} of {metrics['epochs']}")
    return model, metrics, history, note


def _read_history(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return [{k: float(v) for k, v in row.items() if v} for row in csv.DictReader(f)]


def _write_results(plan: _Plan, experiment: str, records: list[dict]) -> None:
    settings = {"experiment": experiment, "dataset": plan.dataset, "epochs": plan.epochs,
                "width_multiplier": plan.width_multiplier, "config": dataclasses.asdict(plan.config)}
    fileio.write_json(plan.out / "results.json",
                      {"settings": settings, "records": records, "summary": summarize(records)})
    fileio.write_csv(plan.out / "results.csv", records, list(CSV_COLUMNS))


def summarize(records: list[dict]) -> list[dict]:
    """Mean, min and max over seeds of the final errors, per (shortcut, version, depth).

    Example:
    >>> rows = summarize([{"shortcut": "none", "version": "v1", "depth": 20, "seed": s,
    ...                    "train_error": e, "test_error": 0.1} for s, e in ((0, 0.1), (1, 0.3))])
    >>> rows[0]["seeds"], round(rows[0]["train_error_mean"], 3), rows[0]["train_error_max"]
    (2, 0.2, 0.3)
    """
    import numpy as np

    groups: dict[tuple, list[dict]] = {}
    for r in records:
        groups.setdefault((r["shortcut"], r["version"], r["depth"]), []).append(r)
    rows = []
    for (shortcut, version, depth), rs in groups.items():
        row = {"shortcut": shortcut, "version": version, "depth": depth, "seeds": len(rs)}
        for key in ("train_error", "test_error"):
            values = [r[key] for r in rs]
            row.update({f"{key}_mean": float(np.mean(values)), f"{key}_min": min(values), f"{key}_max": max(values)})
        rows.append(row)
    return rows


# ---- the experiments ----------------------------------------------------------------------

def degradation(
    dataset: str = DIGITS,
    depths=(20, 32, 44, 56),
    seeds=(0,),
    epochs: int | None = None,
    out: str | os.PathLike = "runs/degradation",
    shortcut: str = "identity",
    version: str = "v1",
    config: TrainConfig | None = None,
    augment: bool | None = None,
    width_multiplier: float = 1.0,
    block: str | None = None,
    responses: bool = True,
    verbose: int = 1,
    dry_run: bool = False,
    set_global_seed: bool = False,
    clear_session: bool = False,
) -> list[dict]:
    """The degradation experiment: plain nets against ResNets of the same depths (Figure 6).

    Each depth is trained as a plain net (``shortcut="none"``, v1) and as a ResNet (``shortcut``,
    ``version``) with the same recipe, data and seed, by :func:`keras_resnet.training.train`.
    The ResNet paper (Section 4.2) finds the plain nets' *training* error rising with depth and
    the ResNets' falling. With option A shortcuts (the default) both twins have the same
    parameters, and the same initial weights.

    Writes into ``out``: ``runs/<run>/`` (one training run each; finished runs are reused),
    ``results.json`` (settings, one record per run, the per-depth summary over seeds),
    ``results.csv``, ``degradation.png`` (:func:`plot_degradation`), and with ``responses``
    ``responses.json`` and ``responses.png`` (:func:`residual_responses`).

    Args:
        dataset: ``"digits"`` (offline; default 8x8 images, 20 epochs) or a dataset name for
            :func:`keras_resnet.data.load_dataset`, e.g. ``"cifar10"`` (default its own size,
            164 epochs: the paper's 64k iterations).
        depths: CIFAR-style depths, 6n+2 (or 9n+2 with bottleneck blocks); default (20, 32, 44,
            56) as in the paper.
        seeds: seeds of weights, shuffling and augmentation; one run per depth, net and seed.
        epochs: epochs per run; default 20 for digits, 164 for CIFAR-10, 182 otherwise.
        out: the experiment's folder; default ``runs/degradation``.
        shortcut: the ResNets' shortcut: ``"identity"`` (A, default), ``"projection"`` (B) or
            ``"full_projection"`` (C).
        version: the ResNets' block version, ``"v1"`` (default) or ``"v2"`` (pre-activation).
        config: the training recipe (:class:`keras_resnet.training.TrainConfig`); its epochs
            and seed are replaced by ``epochs`` and ``seeds``, it must have no validation
            split, and a ``warmup_steps`` of None means 10% of training (at most 400 steps).
        augment: the paper's pad-and-crop (and flips where they keep the class) while
            training; default None: off for digits, ``config.augment`` (on) otherwise.
        width_multiplier: scales every width of both nets; default 1.
        block: ``"basic"``, ``"bottleneck"`` or None (default: basic where the depth is 6n+2, as
            in the ResNet paper, bottleneck where it is only 9n+2, e.g. 1001).
        responses: also measure the trained nets' residual responses; default True.
        verbose: 0 silent, 1 progress bars (default), 2 one line per epoch.
        dry_run: only validate, and return the planned runs without training.
        set_global_seed: call ``keras.utils.set_random_seed(seed)`` before each run, so that
            its initial weights follow its seed (and plain and residual twins start alike);
            this re-seeds Python's, NumPy's and the backend's global generators in the whole
            process. Off by default; the ``keras-resnet`` experiment commands turn it on.
        clear_session: call ``keras.backend.clear_session()`` after each run, which frees the
            memory of dozens of deep models but also resets Keras's global state (layer-name
            counters, the dtype policy) in the whole process. Off by default; the commands turn
            it on.

    Returns:
        One record per run: ``run``, ``model``, ``depth``, ``shortcut``, ``version``, ``seed``,
        ``epochs``, ``params``, ``train_error`` (final weights, inference mode, the whole
        training split without augmentation), ``test_error``, ``seconds`` (training time),
        ``epoch_train_error`` and ``epoch_loss`` (per epoch, from the training history: the
        running mean over the epoch's batches, in training mode, on augmented images if
        ``augment``).

    Example:
    >>> records = degradation(depths=(20, 56), seeds=(0,), out="runs/degradation")  # doctest: +SKIP
    >>> sorted({(r["shortcut"], r["depth"]) for r in records})  # doctest: +SKIP
    [('identity', 20), ('identity', 56), ('none', 20), ('none', 56)]
    """
    shortcut = normalize_shortcut(shortcut)
    if shortcut == "none":
        raise ValueError("shortcut is the ResNets' shortcut and cannot be 'none'; the plain nets are trained anyway")
    variants = (("none", "v1"), (shortcut, normalize_version(version)))
    nets = [(d, s, v) for d in _distinct("depths", depths, lambda d: d) for s, v in variants]
    plan = _plan(dataset, nets, seeds, epochs, out, config, augment, width_multiplier, verbose, block)
    check_bool("responses", responses)
    if dry_run:
        return _planned(plan)
    records = _execute(plan, set_global_seed=set_global_seed, clear_session=clear_session)
    _write_results(plan, "degradation", records)
    plot_degradation(records, plan.out / "degradation.png")
    if responses:
        residual_responses(plan.out, verbose=verbose, clear_session=clear_session)
    return records


def compare_shortcuts(
    dataset: str = DIGITS,
    depth: int = 32,
    shortcuts=SHORTCUTS,
    versions=("v1",),
    seeds=(0,),
    epochs: int | None = None,
    out: str | os.PathLike = "runs/shortcuts",
    config: TrainConfig | None = None,
    augment: bool | None = None,
    width_multiplier: float = 1.0,
    block: str | None = None,
    verbose: int = 1,
    dry_run: bool = False,
    set_global_seed: bool = False,
    clear_session: bool = False,
) -> list[dict]:
    """Shortcut types (and block versions) at one depth: the ResNet paper's Table 3 comparison.

    Option A (``"identity"``: parameter-free, zero-padded where the shape changes), B
    (``"projection"`` where the shape changes), C (``"full_projection"`` everywhere) and no
    shortcut at all (``"none"``) are trained with the same recipe, data and seed. On ImageNet the
    paper finds A < B < C only marginally apart and all far better than plain; with
    ``versions=("v1", "v2")`` this also compares post- and pre-activation blocks (the
    pre-activation paper's claim that v2 trains very deep nets at least as well).

    Writes ``out/runs/<run>/``, ``results.json``, ``results.csv`` and ``shortcuts.png``
    (:func:`plot_shortcuts`); finished runs are reused. ``"none"`` is trained once, as v1.

    Args:
        dataset, seeds, epochs, out, config, augment, width_multiplier, block, verbose, dry_run,
            set_global_seed, clear_session: as :func:`degradation`.
        depth: one CIFAR-style depth (6n+2, or 9n+2 with bottleneck blocks); default 32.
        shortcuts: shortcut types (or A, B, C); default all four.
        versions: block versions of the nets with shortcuts; default ("v1",).

    Returns:
        One record per run, with the keys of :func:`degradation`'s.

    Example:
    >>> records = compare_shortcuts(depth=20, shortcuts=("A", "B"), out="runs/shortcuts")  # doctest: +SKIP
    >>> [r["shortcut"] for r in records]  # doctest: +SKIP
    ['identity', 'projection']
    """
    shortcuts = _distinct("shortcuts", shortcuts, normalize_shortcut)
    versions = _distinct("versions", versions, normalize_version)
    variants = [(s, "v1" if s == "none" else v) for s in shortcuts for v in versions]
    nets = tuple(dict.fromkeys((depth, *variant) for variant in variants))
    plan = _plan(dataset, nets, seeds, epochs, out, config, augment, width_multiplier, verbose, block)
    if dry_run:
        return _planned(plan)
    records = _execute(plan, set_global_seed=set_global_seed, clear_session=clear_session)
    _write_results(plan, "shortcuts", records)
    plot_shortcuts(records, plan.out / "shortcuts.png")
    return records


def very_deep(
    dataset: str = DIGITS,
    depth: int = 1001,
    plain_depth: int | None = 110,
    shortcut: str = "identity",
    seeds=(0,),
    epochs: int | None = None,
    out: str | os.PathLike = "runs/very-deep",
    config: TrainConfig | None = None,
    augment: bool | None = None,
    width_multiplier: float = 1.0,
    block: str | None = None,
    verbose: int = 1,
    dry_run: bool = False,
    set_global_seed: bool = False,
    clear_session: bool = False,
) -> list[dict]:
    """Pre-activation against original blocks in a very deep ResNet, with a plain net for scale.

    He et al., "Identity Mappings in Deep Residual Networks" (arXiv:1603.05027): on CIFAR-10,
    ResNet-1001 (bottleneck blocks) reaches 4.92% test error with pre-activation (v2) blocks
    and 7.61% with the original (v1) ones, whose ReLU after the addition keeps the signal off a
    clean identity path; v1 also trains more slowly at first (their Figure 1). Trains
    ``depth`` as v2 and as v1 (``shortcut``), then ``plain_depth`` as a plain net, with the same
    recipe, data and seed, in that order; writes ``out/runs/<run>/``, ``results.json``,
    ``results.csv`` and ``very_deep.png`` (:func:`plot_training_curves`). Finished runs are
    reused, so the same call resumes.

    Args:
        dataset, seeds, epochs, out, config, augment, width_multiplier, verbose, dry_run,
            set_global_seed, clear_session: as :func:`degradation`. A 1001-layer net takes
            minutes to trace before its first step; on CPU use a small ``width_multiplier``.
        depth: the ResNets' depth; default 1001 (bottleneck blocks, 9n+2).
        plain_depth: the plain net's depth, or None for no plain net; default 110 (basic
            blocks), where the ResNet paper's plain net already fails to train.
        shortcut: the ResNets' shortcut (not ``"none"``); default ``"identity"`` (option A).
        block: as :func:`degradation`; applies to both depths.

    Returns:
        One record per run, with the keys of :func:`degradation`'s.

    Example:
    >>> records = very_deep(width_multiplier=0.25, epochs=10, out="runs/very-deep")  # doctest: +SKIP
    >>> [r["model"] for r in records]  # doctest: +SKIP
    ['resnet1001v2', 'resnet1001', 'plain110']
    """
    shortcut = normalize_shortcut(shortcut)
    if shortcut == "none":
        raise ValueError("shortcut is the ResNets' shortcut and cannot be 'none'; set plain_depth for the plain net")
    nets = [(depth, shortcut, "v2"), (depth, shortcut, "v1")] + ([] if plain_depth is None else [(plain_depth, "none", "v1")])
    plan = _plan(dataset, nets, seeds, epochs, out, config, augment, width_multiplier, verbose, block)
    if dry_run:
        return _planned(plan)
    records = _execute(plan, set_global_seed=set_global_seed, clear_session=clear_session)
    _write_results(plan, "very_deep", records)
    plot_training_curves(records, plan.out / "very_deep.png")
    return records


def residual_responses(out: str | os.PathLike, max_images: int = 512, verbose: int = 1,
                       clear_session: bool = False) -> list[dict]:
    """Residual responses of the trained nets of an experiment (the ResNet paper's Figure 7).

    For every run in ``out/results.json``, loads its final model and measures, on up to
    ``max_images`` test images in inference mode, each block's
    :func:`keras_resnet.diagnostics.response_std` (std of ``F(x)``: the last BatchNorm's
    output in a v1 block, before the addition) and
    :func:`keras_resnet.diagnostics.identity_closeness` (``||F(x)|| / ||x||``). The paper finds
    ResNets' responses smaller than plain nets', and smaller in deeper ResNets.
    Writes ``responses.json`` and ``responses.png`` (:func:`plot_responses`).

    Args:
        out: an experiment's folder, holding ``results.json``.
        max_images: test images to measure on (the measurement keeps every block's output).
        verbose: 0 quiet, else one line per model.
        clear_session: call ``keras.backend.clear_session()`` after each model (see
            :func:`degradation`).

    Returns:
        One dict per run: ``run``, ``depth``, ``shortcut``, ``version``, ``seed`` and
        ``blocks`` (rows with ``depth_index``, ``response_std``, ``residual_ratio``,
        ``cosine``), plus ``mean_response_std`` and ``mean_residual_ratio``.

    Example:
    >>> rows = residual_responses("runs/degradation")  # doctest: +SKIP
    >>> sorted({r["depth"] for r in rows})  # doctest: +SKIP
    [20, 32, 44, 56]
    """
    import numpy as np

    out = Path(out)
    results = fileio.read_json(out / "results.json") if out.is_dir() else None
    if not results or not results.get("records"):
        raise ValueError(f"{str(out)!r} holds no results.json with records; run an experiment there first")
    check_int("max_images", max_images, 1)
    import keras

    from keras_resnet import diagnostics
    from keras_resnet.data import load_dataset

    settings = results["settings"]
    c = settings["config"]
    data = load_dataset(settings["dataset"], image_size=c["image_size"], batch_size=max_images,
                        validation_split=0.0, augment=False, data_dir=c["data_dir"], cache=False)
    x = next(iter(data.test))[0].numpy()
    rows = []
    for record in results["records"]:
        model = keras.saving.load_model(str(out / "runs" / record["run"] / "model.keras"))
        blocks = diagnostics.diagnose(model, x)  # identity_closeness and response_std in one pass
        row = {k: record[k] for k in ("run", "depth", "shortcut", "version", "seed")}
        row.update(images=len(x), blocks=blocks,
                   mean_response_std=float(np.mean([b["response_std"] for b in blocks])),
                   mean_residual_ratio=float(np.mean([b["residual_ratio"] for b in blocks])))
        rows.append(row)
        if verbose:
            print(f"{record['run']}: mean std of F(x) {row['mean_response_std']:.3f}, "
                  f"mean ||F(x)||/||x|| {row['mean_residual_ratio']:.3f}")
        del model
        if clear_session:
            keras.backend.clear_session()
    diagnostics.write_json({"images": len(x), "mode": "inference", "runs": rows}, out / "responses.json")
    plot_responses(rows, out / "responses.png")
    return rows
