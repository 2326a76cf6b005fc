"""KerasTuner search over residual-network depth, shortcut type and more.

:class:`ResNetHyperModel` declares the search space and builds every trial's model with
:class:`keras_resnet.models.ResNet` (through :func:`keras_resnet.training.build_model`: raw pixels
in, the training split's normalisation inside); it compiles with the paper's recipe of
:mod:`keras_resnet.training` and takes sparse integer labels. :func:`make_tuner` makes a
Hyperband, Bayesian, random or grid tuner whose directory makes a search resumable: finished
trials are not run again and a trial cut off by a crash is run again. KerasTuner's distributed
mode (a chief oracle and workers, set by ``KERASTUNER_TUNER_ID``, ``KERASTUNER_ORACLE_IP`` and
``KERASTUNER_ORACLE_PORT``) spreads a search over machines; :func:`search` runs the whole job.

Unlike KerasTuner's ``HyperResNet`` (an ImageNet stem on any input, one-hot labels, no shortcut
or CIFAR depth search, uncompiled without a top), the space here is the papers': CIFAR depths
6n+2 or ImageNet depths, the four shortcut types, v1 and v2.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import keras_tuner as kt

from keras_resnet import fileio
from keras_resnet.defaults import CIFAR_DEPTHS, HYPERBAND_FACTOR, SEARCH_DISTRIBUTIONS, SEARCH_EPOCHS, TUNERS
from keras_resnet.presets import (
    CIFAR_STAGES,
    CONVS_PER_BLOCK,
    IMAGENET_DEPTHS,
    SHORTCUTS,
    STYLES,
    VERSIONS,
    normalize_shortcut,
    normalize_version,
    stage_layout,
)
from keras_resnet.validation import (
    check_bool,
    check_choice,
    check_floats,
    check_int,
    check_ints,
    check_path,
    check_type,
    is_number,
)

BASE_PRESET = {"cifar": "resnet20", "imagenet": "resnet18"}
BASELINE = {"depth": {"cifar": 20, "imagenet": 18}, "shortcut": "projection", "version": "v1"}

def valid_depths(style: str, min_depth: int = 0, max_depth: int = 10**6) -> tuple[int, ...]:
    """The depths a ``style`` allows within bounds (CIFAR: 6n+2 basic blocks; ImageNet: table),
    as :func:`keras_resnet.presets.stage_layout` defines them."""
    if style == "imagenet":
        return tuple(d for d in sorted(IMAGENET_DEPTHS) if min_depth <= d <= max_depth)
    per = CIFAR_STAGES * CONVS_PER_BLOCK["basic"]
    return tuple(d for d in range(per + 2, max_depth + 1, per) if d >= min_depth)


def _choices(name: str, values, normalize) -> tuple:
    if isinstance(values, str) or not isinstance(values, Sequence):
        raise ValueError(f"{name} must be a list of choices; received {name}={values!r}")
    if not values:
        raise ValueError(f"{name} must hold at least one choice; received an empty list")
    out = tuple(dict.fromkeys(normalize(v) for v in values))
    return out


@dataclasses.dataclass
class SearchSpace:
    """What a search explores (tuples of choices) and the bounds of its numeric settings.

    Args:
        style: ``"cifar"`` or ``"imagenet"``.
        depths: depth choices; default the style's depths (CIFAR: 20, 32, 44, 56, 110).
        shortcuts: shortcut types to try; default all four of the paper's.
        versions: ``"v1"`` and/or ``"v2"``.
        width_multipliers: optional width choices (e.g. ``(0.5, 1.0, 2.0)``).
        zero_init: also try ``zero_init_residual=True`` (only where there are shortcuts).
        lr: optional ``(low, high)``: search the peak learning rate on a log scale.
        weight_decay: optional ``(low, high)``: search weight decay on a log scale.
        batch_sizes: optional batch-size choices.
    """

    style: str = "cifar"
    depths: Sequence[int] | None = None
    shortcuts: Sequence[str] = SHORTCUTS
    versions: Sequence[str] = VERSIONS
    width_multipliers: Sequence[float] | None = None
    zero_init: bool = False
    lr: tuple[float, float] | None = None
    weight_decay: tuple[float, float] | None = None
    batch_sizes: Sequence[int] | None = None

    def __post_init__(self):
        self.validate()  # a bad choice fails where it is written, before any trial

    def validate(self) -> SearchSpace:
        """Normalises the choices; raises ValueError naming the first bad one. Returns self.

        Construction calls it; call it again after changing a field.
        """
        check_choice("style", self.style, STYLES, "'cifar' or 'imagenet'")
        depths = self.depths if self.depths is not None else (
            CIFAR_DEPTHS if self.style == "cifar" else valid_depths("imagenet"))

        def depth(d):
            stage_layout(d, self.style)  # raises with the allowed depths
            return d

        self.depths = tuple(sorted(_choices("depths", depths, depth)))
        self.shortcuts = _choices("shortcuts", self.shortcuts, normalize_shortcut)
        self.versions = _choices("versions", self.versions, normalize_version)
        if self.width_multipliers is not None:
            self.width_multipliers = _choices("width_multipliers", check_floats(
                "width_multipliers", self.width_multipliers, 0, exclusive_minimum=True, allow_empty=True), float)
        if self.batch_sizes is not None:
            self.batch_sizes = _choices(
                "batch_sizes", check_ints("batch_sizes", self.batch_sizes, 1, allow_empty=True), int)
        for name in ("lr", "weight_decay"):
            bounds = getattr(self, name)
            if bounds is not None:
                if (not isinstance(bounds, Sequence) or len(bounds) != 2
                        or not all(is_number(b) and b > 0 for b in bounds) or bounds[0] >= bounds[1]):
                    raise ValueError(f"{name} must be a (low, high) pair with 0 < low < high; received {name}={bounds!r}")
                setattr(self, name, (float(bounds[0]), float(bounds[1])))
        check_bool("zero_init", self.zero_init)
        return self

    def size(self) -> int | None:
        """Number of discrete combinations (None when a continuous setting is searched)."""
        if self.lr or self.weight_decay:
            return None
        n = len(self.depths) * len(self.versions)
        with_shortcut = sum(1 for s in self.shortcuts if s != "none") * (2 if self.zero_init else 1)
        n *= with_shortcut + (1 if "none" in self.shortcuts else 0)
        n *= len(self.width_multipliers or (1,)) * len(self.batch_sizes or (1,))
        return n


class ResNetHyperModel(kt.HyperModel):
    """A KerasTuner hypermodel of ResNets; every trial's model is compiled and ready to fit.

    Args:
        input_shape: ``(height, width, channels)`` of the raw images.
        classes: number of classes (labels are sparse integers).
        mean, std: per-channel statistics of the training split; the model normalises inside.
        space: a :class:`SearchSpace` (default: CIFAR depths, all shortcuts, v1 and v2).
        train_config: a :class:`keras_resnet.training.TrainConfig` with the fixed recipe.
        steps_per_epoch: training batches per epoch at the config's batch size.

    Example:
    >>> import keras_tuner
    >>> hm = ResNetHyperModel((8, 8, 1), 10, mean=[0.0], std=[1.0], steps_per_epoch=10,
    ...                       space=SearchSpace(depths=[8, 14], shortcuts=["A", "none"]))
    >>> model = hm.build(keras_tuner.HyperParameters())
    >>> model.name
    'resnet8'
    """

    def __init__(self, input_shape, classes: int, *, mean, std, space: SearchSpace | None = None,
                 train_config=None, steps_per_epoch: int = 1, name: str = "resnet_search"):
        from keras_resnet.training import TrainConfig

        input_shape = check_ints("input_shape", input_shape, 1, length=3, note="(height, width, channels)")
        classes = check_int("classes", classes, 1)
        steps_per_epoch = check_int("steps_per_epoch", steps_per_epoch, 1)
        super().__init__(name=name, tunable=True)
        self.space = (space or SearchSpace()).validate()
        self.train_config = (train_config or TrainConfig()).validate()
        self.meta = _Meta(input_shape, classes, tuple(mean), tuple(std))
        self.steps_per_epoch = steps_per_epoch

    # -- the space --------------------------------------------------------------------------
    def declare(self, hp) -> dict:
        """Declares the searched settings on ``hp`` and returns this trial's values."""
        s = self.space
        base_depth = BASELINE["depth"][s.style]
        values = {
            "depth": hp.Choice("depth", list(s.depths), default=base_depth if base_depth in s.depths else s.depths[0]),
            "shortcut": hp.Choice("shortcut", list(s.shortcuts),
                                  default=BASELINE["shortcut"] if BASELINE["shortcut"] in s.shortcuts else s.shortcuts[0]),
            "version": hp.Choice("version", list(s.versions),
                                 default=BASELINE["version"] if BASELINE["version"] in s.versions else s.versions[0]),
        }
        if s.width_multipliers:
            values["width_multiplier"] = hp.Choice(
                "width_multiplier", list(s.width_multipliers),
                default=1.0 if 1.0 in s.width_multipliers else s.width_multipliers[0])
        with_shortcut = [v for v in s.shortcuts if v != "none"]
        if s.zero_init and with_shortcut:
            # Zero-init only means something where there is a shortcut to fall back on.
            with hp.conditional_scope("shortcut", with_shortcut):
                if values["shortcut"] != "none":
                    values["zero_init_residual"] = hp.Boolean("zero_init_residual", default=False)
        if s.lr:
            values["lr"] = hp.Float("lr", *s.lr, sampling="log",
                                    default=min(max(0.1, s.lr[0]), s.lr[1]))
        if s.weight_decay:
            values["weight_decay"] = hp.Float("weight_decay", *s.weight_decay, sampling="log",
                                              default=min(max(1e-4, s.weight_decay[0]), s.weight_decay[1]))
        if s.batch_sizes:
            values["batch_size"] = hp.Choice(
                "batch_size", list(s.batch_sizes), default=128 if 128 in s.batch_sizes else s.batch_sizes[0])
        return values

    def config_for(self, values: dict):
        """The trial's :class:`TrainConfig`: the fixed recipe with the searched values."""
        updates = {k: values[k] for k in ("lr", "weight_decay", "batch_size") if k in values}
        return dataclasses.replace(self.train_config, **updates)

    # -- KerasTuner's interface --------------------------------------------------------------
    def build(self, hp):
        """Builds and compiles the trial's model with the device's dtype policy.

        KerasTuner calls ``keras.backend.clear_session()`` before each trial, which resets the
        global dtype policy; the device scope sets it again, so trials on a GPU run in mixed
        precision as ``train`` does.
        """
        from keras_resnet.training import build_model, compile_model, device_scope

        values = self.declare(hp)
        config = self.config_for(values)
        arch = {k: v for k, v in values.items() if k in ("depth", "shortcut", "version", "width_multiplier", "zero_init_residual")}
        with device_scope(config):
            model = build_model(BASE_PRESET[self.space.style], self.meta, weight_decay=config.weight_decay, **arch)
            compile_model(model, config, steps_per_epoch=self._steps(config), epochs=config.epochs or 1)
        return model

    def fit(self, hp, model, *args, epochs: int = 1, initial_epoch: int = 0, **kwargs):
        """Fits with the learning-rate schedule sized for this trial's epoch budget.

        Hyperband continues a promising model from ``initial_epoch``; the schedule then spans
        the epochs that remain.

        Returns the best epoch's metrics plus ``seconds``, ``epochs_run`` and ``params``, which
        KerasTuner records with the trial (in distributed mode too).
        """
        from keras_resnet.training import compile_model

        config = self.config_for(self.declare(hp))
        compile_model(model, config, steps_per_epoch=self._steps(config), epochs=max(1, epochs - initial_epoch))
        if config.batch_size and args:
            args = (_rebatch(args[0], config.batch_size), *args[1:])
        if config.batch_size and kwargs.get("validation_data") is not None:
            kwargs["validation_data"] = _rebatch(kwargs["validation_data"], config.batch_size)
        kwargs.setdefault("shuffle", False)  # the pipelines shuffle themselves, seeded
        started = time.perf_counter()
        history = model.fit(*args, epochs=epochs, initial_epoch=initial_epoch, **kwargs)
        seconds = time.perf_counter() - started
        metrics = history.history
        objective = "val_accuracy" if "val_accuracy" in metrics else "accuracy"
        best = max(range(len(metrics[objective])), key=metrics[objective].__getitem__)
        result = {k: float(v[best]) for k, v in metrics.items()}
        result.update(seconds=seconds, epochs_run=float(len(metrics[objective])), params=float(model.count_params()))
        return result

    def _steps(self, config) -> int:
        if config.batch_size and self.train_config.batch_size and config.batch_size != self.train_config.batch_size:
            return max(1, round(self.steps_per_epoch * self.train_config.batch_size / config.batch_size))
        return self.steps_per_epoch


@dataclasses.dataclass(frozen=True)
class _Meta:
    """What :func:`keras_resnet.training.build_model` needs of a dataset."""

    input_shape: tuple
    num_classes: int
    mean: tuple
    std: tuple


def _rebatch(ds, batch_size: int):
    # The pipelines come batched; a searched batch size re-batches them.
    return ds.unbatch().batch(batch_size).prefetch(-1) if hasattr(ds, "unbatch") else ds


def make_tuner(kind: str, hypermodel, *, directory, project_name: str = "search", max_epochs: int = SEARCH_EPOCHS,
               max_trials: int | None = None, seed: int = 0, objective: str = "val_accuracy",
               overwrite: bool = False, distribution_strategy=None, factor: int = HYPERBAND_FACTOR,
               freeze_gc: bool = False, **kwargs) -> Any:
    """Makes a KerasTuner tuner; the same ``directory`` and ``project_name`` resume a search.

    Args:
        kind: ``"hyperband"`` (default), ``"bayesian"``, ``"random"`` or ``"grid"``.
        hypermodel: a :class:`ResNetHyperModel`.
        directory: where trials, checkpoints and the oracle's state live.
        project_name: a sub-folder of ``directory``.
        max_epochs: Hyperband's largest budget; the epochs per trial for the others.
        max_trials: trials for bayesian/random/grid (default: the space's size, or 10).
        seed: the oracle's seed.
        objective: the metric to maximise (``"val_accuracy"``).
        overwrite: start afresh instead of resuming.
        distribution_strategy: a ``tf.distribute`` strategy for each trial.
        factor: Hyperband's reduction factor.
        freeze_gc: make KerasTuner's garbage collection between trials cheap by hiding the
            objects alive at the search's start and after each trial's clean-up from the
            collector (``gc.freeze``, undone by ``gc.unfreeze`` when the search ends or
            fails). This acts on the whole process, so it is off by default; the
            ``keras-resnet tune`` command turns it on.
        **kwargs: passed to the KerasTuner tuner.

    Whatever ``freeze_gc``, KerasTuner itself calls ``keras.backend.clear_session()`` and
    ``gc.collect()`` before building each trial's model: a search resets Keras's global state
    (layer-name counters, the dtype policy) in the process that runs it.

    Example:
    >>> hypermodel = ResNetHyperModel((8, 8, 1), 10, mean=[0.0], std=[1.0], space=SearchSpace(depths=[8]),
    ...                               steps_per_epoch=10)
    >>> tuner = make_tuner("grid", hypermodel, directory="search", max_epochs=1)
    >>> type(tuner).__name__, tuner.oracle.max_trials
    ('GridSearch', 8)
    """
    check_choice("tuner", kind, TUNERS)
    check_path("directory", directory, allowed="a folder path")
    check_type("project_name", project_name, str, "a folder name")
    check_int("max_epochs", max_epochs, 1)
    check_int("max_trials", max_trials, 1, optional=True, none_means="the space's size, or 10")
    check_int("seed", seed, 0)
    check_type("objective", objective, str, "the name of a metric to maximise")
    check_bool("overwrite", overwrite)
    check_int("factor", factor, 2)
    check_bool("freeze_gc", freeze_gc)

    classes = _tuner_classes()
    common = dict(
        objective=kt.Objective(objective, "max"), directory=str(directory), project_name=project_name,
        overwrite=overwrite, seed=seed, distribution_strategy=distribution_strategy, **kwargs,
    )
    if kind == "hyperband":
        tuner = classes["hyperband"](hypermodel, max_epochs=max_epochs, factor=factor, **common)
    else:
        trials = max_trials or hypermodel.space.size() or 10
        tuner = classes[kind](hypermodel, max_trials=trials, **common)
    tuner.freeze_gc = freeze_gc
    return tuner


class _TunerHooks:
    """Appends a JSON line per trial start and end to ``<project>/trial_log.jsonl``, and with
    ``freeze_gc`` keeps KerasTuner's clean-up between trials cheap.

    The log says which tuner (worker) ran which trial and for how long, so a resumed or
    distributed search can be checked: every trial ends exactly once.

    Before each trial KerasTuner clears the Keras session and runs a full garbage collection,
    which walks every object of TensorFlow and Keras: 0.9 s per trial here. Objects that are
    alive at the search's start, and those still alive after the clean-up at a trial's start,
    are moved out of the collector's sight (``gc.freeze``), so each collection walks only what
    the previous trial left; ``gc.unfreeze`` when the search ends (or fails) hands them back.
    """

    freeze_gc = False  # set by make_tuner

    def on_search_begin(self):
        import gc

        super().on_search_begin()
        if self.freeze_gc:
            gc.freeze()  # what the process holds now: modules, the data (and a little garbage, once)

    def on_trial_begin(self, trial):
        import gc

        import keras

        super().on_trial_begin(trial)
        if not self.freeze_gc:
            return
        # The previous trial's model becomes garbage only once the session is cleared: clear and
        # collect first, so that only what is really alive is frozen.
        keras.backend.clear_session()
        gc.collect()
        gc.freeze()

    def search(self, *args, **kwargs):
        import gc

        try:
            return super().search(*args, **kwargs)
        finally:  # also when a trial raises or the search is interrupted
            if self.freeze_gc:
                gc.unfreeze()

    def run_trial(self, trial, *args, **kwargs):
        import json
        import os

        path = os.path.join(self.project_dir, "trial_log.jsonl")

        def log(event, **extra):
            line = json.dumps({"trial": trial.trial_id, "tuner": self.tuner_id, "event": event,
                               "time": time.time(), **extra})
            # One short write in append mode: lines from several workers do not interleave.
            with open(path, "a") as f:
                f.write(line + "\n")

        log("start")
        started = time.perf_counter()
        result = super().run_trial(trial, *args, **kwargs)
        log("end", seconds=round(time.perf_counter() - started, 3))
        return result


def _is_worker() -> bool:
    """True in a worker process of KerasTuner's distributed mode (not in the chief, nor alone).

    KerasTuner has no public function for a process's role; its distributed-tuning guide sets
    the role with environment variables: ``KERASTUNER_ORACLE_IP`` (and ``_PORT``) in every
    process of a distributed search, and a ``KERASTUNER_TUNER_ID`` that holds ``"chief"`` in
    the chief's. KerasTuner itself tells the chief by the same test.
    """
    import os

    return "KERASTUNER_ORACLE_IP" in os.environ and "chief" not in os.environ.get("KERASTUNER_TUNER_ID", "")


@functools.cache
def _tuner_classes() -> dict:
    bases = {"hyperband": kt.Hyperband, "bayesian": kt.BayesianOptimization,
             "random": kt.RandomSearch, "grid": kt.GridSearch}
    return {kind: type(base.__name__, (_TunerHooks, base), {}) for kind, base in bases.items()}


def read_trial_log(directory) -> list[dict]:
    """The events of ``trial_log.jsonl`` in a search's tuner folder (``out/tuner``)."""
    import json
    from pathlib import Path

    path = Path(directory) / "trial_log.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


# ---- the whole job ---------------------------------------------------------------------------

@dataclasses.dataclass
class SearchResult:
    """What :func:`search` returns: one row per trial, the best trial, the retrained model."""

    rows: list[dict]
    best: dict | None
    best_model: Any
    test_accuracy: float | None
    out: Any


def trial_rows(oracle) -> list[dict]:
    """One row per trial of a KerasTuner oracle: hyperparameters, score, epochs, params, seconds."""
    rows = []
    for trial_id, trial in sorted(oracle.trials.items()):
        values = dict(trial.hyperparameters.values)
        last = functools.partial(_last_value, trial.metrics)
        epochs = values.get("tuner/epochs", last("epochs_run"))
        rows.append({
            "trial": trial_id,
            "status": str(trial.status),
            **{k: v for k, v in values.items() if not k.startswith("tuner/")},
            "score": trial.score,
            "epochs": int(epochs) if epochs is not None else None,
            "params": int(last("params")) if last("params") is not None else None,
            "seconds": round(last("seconds"), 2) if last("seconds") is not None else None,
        })
    return rows


def _last_value(metrics, name):
    return metrics.get_last_value(name) if metrics.exists(name) else None


def search(
    dataset: str = "digits",
    out="runs/search",
    *,
    tuner: str = TUNERS[0],
    space: SearchSpace | None = None,
    config=None,
    max_epochs: int = SEARCH_EPOCHS,
    max_trials: int | None = None,
    factor: int = HYPERBAND_FACTOR,
    seed: int = 0,
    retrain: bool = True,
    retrain_epochs: int | None = None,
    overwrite: bool = False,
    distribution: str | None = None,
    verbose: int = 1,
    set_global_seed: bool = False,
    freeze_gc: bool = False,
) -> SearchResult:
    """Searches, writes the trials table and plot, and retrains the best configuration.

    Writes into ``out``: ``tuner/`` (KerasTuner's state: rerunning with the same ``out``
    resumes), ``trials.csv`` and ``trials.json``, ``search.png`` (validation accuracy by depth,
    one series per shortcut type) and ``best_model.keras`` (with ``best_metrics.json``): the best
    configuration trained again from scratch for ``retrain_epochs`` (default ``max_epochs``) by
    :func:`keras_resnet.training.train` in ``out/best/<configuration>/``, keeping the epoch with
    the best validation accuracy; its test accuracy is measured there. In KerasTuner's
    distributed mode only the chief writes these; workers only run trials.

    Args:
        dataset: a dataset name or folder (see :func:`keras_resnet.data.load_dataset`).
        out: the output folder.
        tuner: ``"hyperband"``, ``"bayesian"``, ``"random"`` or ``"grid"``.
        space: a :class:`SearchSpace`.
        config: a :class:`keras_resnet.training.TrainConfig` with the fixed recipe.
        max_epochs: Hyperband's largest budget, and epochs per trial for the other tuners.
        max_trials: trials for bayesian/random/grid.
        factor: Hyperband's reduction factor.
        seed: seeds the oracle and the data pipeline (and the weights with ``set_global_seed``).
        retrain: retrain the best configuration and write ``best_model.keras``.
        retrain_epochs: epochs of that training (default ``max_epochs``).
        overwrite: start afresh instead of resuming.
        distribution: None or ``"mirrored"`` (each trial on all visible GPUs).
        verbose: Keras and KerasTuner verbosity.
        set_global_seed: call ``keras.utils.set_random_seed(seed)`` before the search and the
            retraining, so that the weights are reproducible; this re-seeds Python's, NumPy's
            and the backend's global generators in the whole process. Off by default; the
            ``keras-resnet tune`` command turns it on.
        freeze_gc: see :func:`make_tuner`. Like every KerasTuner search, this one clears the
            Keras session before each trial.

    Example:
    >>> from keras_resnet.training import TrainConfig
    >>> result = search("digits", "search", tuner="grid", max_epochs=1, retrain=False, verbose=0,
    ...                 space=SearchSpace(depths=[8], shortcuts=["A", "none"], versions=["v1"]),
    ...                 config=TrainConfig(image_size=8, batch_size=256))  # doctest: +SKIP
    >>> sorted(row["shortcut"] for row in result.rows)  # doctest: +SKIP
    ['identity', 'none']
    """
    from keras_resnet.data import check_dataset, load_dataset
    from keras_resnet.training import PAPER_BATCH_SIZE, TrainConfig

    check_choice("tuner", tuner, TUNERS)
    check_int("max_epochs", max_epochs, 1)
    check_int("factor", factor, 2)
    check_int("max_trials", max_trials, 1, optional=True, none_means="the space's size, or 10")
    check_int("seed", seed, 0)
    check_bool("retrain", retrain)
    check_int("retrain_epochs", retrain_epochs, 1, optional=True, none_means="max_epochs")
    check_bool("overwrite", overwrite)
    check_choice("distribution", distribution, (None, *SEARCH_DISTRIBUTIONS))
    check_choice("verbose", verbose, (0, 1, 2), "0, 1 or 2")
    check_path("out", out, allowed="a folder path")
    check_type("space", space, SearchSpace, "a keras_resnet.tuning.SearchSpace", optional=True)
    check_type("config", config, TrainConfig, "a keras_resnet.training.TrainConfig", optional=True)
    check_dataset(dataset)
    space = (space or SearchSpace()).validate()
    config = dataclasses.replace(config or TrainConfig(), seed=seed).validate()
    out = Path(out)

    data = load_dataset(
        dataset, image_size=config.image_size, batch_size=config.batch_size or PAPER_BATCH_SIZE,
        validation_split=config.validation_split, seed=seed, augment=config.augment, flip=config.flip,
        data_dir=config.data_dir, cache=config.cache,
    )
    if data.validation is None:
        raise ValueError("a search needs a validation split; received validation_split=0")
    hypermodel = ResNetHyperModel(data.input_shape, data.num_classes, mean=data.mean, std=data.std,
                                  space=space, train_config=config, steps_per_epoch=data.steps_per_epoch)
    oracle = _run_trials(data, hypermodel, out, tuner=tuner, max_epochs=max_epochs, max_trials=max_trials,
                         factor=factor, seed=seed, overwrite=overwrite, distribution=distribution,
                         verbose=verbose, set_global_seed=set_global_seed, freeze_gc=freeze_gc)
    if _is_worker():
        return SearchResult(rows=[], best=None, best_model=None, test_accuracy=None, out=out)

    rows = _write_trials(oracle, out)
    finished = [r for r in rows if r["score"] is not None]
    best = max(finished, key=lambda r: r["score"]) if finished else None
    best_model, test_accuracy = None, None
    if retrain and best is not None:
        config = dataclasses.replace(hypermodel.config_for(best), epochs=retrain_epochs or max_epochs)
        best_model, test_accuracy = _retrain_best(best, dataset, config, out, space.style, verbose=verbose,
                                                  overwrite=overwrite, set_global_seed=set_global_seed)
    return SearchResult(rows=rows, best=best, best_model=best_model, test_accuracy=test_accuracy, out=out)


def _run_trials(data, hypermodel, out, *, tuner, max_epochs, max_trials, factor, seed, overwrite,
                distribution, verbose, set_global_seed, freeze_gc):
    """Runs (or resumes) the KerasTuner search in ``out/tuner``; returns its oracle."""
    import keras
    import tensorflow as tf

    from keras_resnet.training import device_scope

    if set_global_seed:
        keras.utils.set_random_seed(seed)
    with device_scope(hypermodel.train_config):
        strategy = tf.distribute.MirroredStrategy() if distribution == "mirrored" else None
        kt_tuner = make_tuner(tuner, hypermodel, directory=out, project_name="tuner", max_epochs=max_epochs,
                              max_trials=max_trials, seed=seed, overwrite=overwrite,
                              distribution_strategy=strategy, factor=factor, freeze_gc=freeze_gc)
        kt_tuner.search(data.train, validation_data=data.validation, epochs=max_epochs, verbose=verbose)
    return kt_tuner.oracle


def _write_trials(oracle, out: Path) -> list[dict]:
    """``trials.csv``, ``trials.json`` and ``search.png`` from the oracle's trials; returns the rows."""
    rows = trial_rows(oracle)
    fileio.write_csv(out / "trials.csv", rows)
    fileio.write_json(out / "trials.json", rows)
    plot_search(rows, out / "search.png")
    return rows


def _retrain_best(best: dict, dataset, config, out: Path, style: str, *, verbose, overwrite, set_global_seed):
    """Trains the best trial's configuration from scratch into ``out/best/<configuration>/``.

    Copies its ``model.keras`` and ``metrics.json`` to ``out/best_model.keras`` and
    ``out/best_metrics.json``; returns the model and its test accuracy. One folder per
    configuration: a rerun whose best is unchanged reuses the finished run.
    """
    import keras

    from keras_resnet.training import train

    arch = {k: best[k] for k in ("depth", "shortcut", "version", "width_multiplier", "zero_init_residual")
            if best.get(k) is not None}
    folder = out / "best" / "-".join(f"{v}" for v in arch.values())
    if (folder / "metrics.json").exists() and not overwrite:
        model = keras.saving.load_model(folder / "model.keras")
        test_accuracy = fileio.read_json(folder / "metrics.json")["test_accuracy"]
    else:
        # By name, so the data pipeline starts fresh: the same run as `keras-resnet train`.
        result = train(BASE_PRESET[style], dataset, config, folder, verbose=verbose, overwrite=overwrite,
                       set_global_seed=set_global_seed, **arch)
        model, test_accuracy = result.model, result.metrics["test_accuracy"]
    fileio.copy(folder / "model.keras", out / "best_model.keras")
    fileio.copy(folder / "metrics.json", out / "best_metrics.json")
    return model, test_accuracy


def plot_search(rows: list[dict], path) -> None:
    """Validation accuracy by depth, one series per shortcut type (best trial per point)."""
    from matplotlib.figure import Figure

    # A bare Figure, not pyplot: no global backend switch inside a user's notebook.
    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    for shortcut in dict.fromkeys(r.get("shortcut") for r in rows):
        points: dict[int, float] = {}
        for r in rows:
            if r.get("shortcut") == shortcut and r["score"] is not None:
                points[r["depth"]] = max(points.get(r["depth"], 0.0), r["score"])
        if points:
            depths = sorted(points)
            ax.plot(depths, [points[d] for d in depths], marker="o", label=str(shortcut))
    ax.set_xlabel("depth")
    ax.set_ylabel("best validation accuracy")
    ax.set_title("Search: validation accuracy by depth and shortcut")
    ax.grid(alpha=0.3)
    ax.legend(title="shortcut")
    fig.tight_layout()
    fileio.savefig(fig, path)
