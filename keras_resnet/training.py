"""The ResNet paper's training recipe, and a fit helper that a long run can trust.

Recipe (He et al., arXiv:1512.03385, section 4.2): SGD with momentum 0.9, batch 128, learning
rate 0.1 (scaled linearly with the batch size), divided by 10 at 50% and 75% of training, weight
decay 1e-4, an optional warm-up at a tenth of the rate (the paper's ResNet-110 trick); a cosine
schedule is an option.

Weight decay is *coupled*, as in the paper's SGD: the model adds ``weight_decay / 2 * ||w||^2``
over its convolution and dense kernels to the loss (an L2 kernel regularizer, see
:class:`keras_resnet.models.ResNet`), so the gradient gains ``weight_decay * w`` and momentum
acts on it. The optimizer's own (decoupled) ``weight_decay`` stays off, and BatchNorm
parameters and biases are not decayed.

:func:`train` writes into ``out``: ``history.csv`` (one row per epoch) and ``state.json`` after
every epoch, ``backup/resume.npz`` while the run is unfinished, and ``model.keras`` (best by
validation accuracy), ``curves.png`` and ``metrics.json`` when it ends; the same call after a
crash continues from the last finished epoch. That bookkeeping lives in :mod:`keras_resnet.runs`;
this module is the recipe and the fit.

This module imports TensorFlow only when training starts, so that :class:`TrainConfig`
validates arguments at once.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import math
import os
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from keras_resnet import distributed, finetune, runs
from keras_resnet.data import AUGMENTATIONS, DIGITS, check_dataset
from keras_resnet.folders import BAD_FILE_POLICIES
from keras_resnet.presets import PRESET_NAMES
from keras_resnet.validation import (
    check_bool,
    check_choice,
    check_float,
    check_int,
    check_path,
    check_type,
    is_number,
)

SCHEDULES = ("step", "cosine")
STRATEGIES = ("default", "mirrored", "multi_worker")
PAPER_BATCH_SIZE = 128
PAPER_LR = 0.1
# 182 epochs are the paper's 64k iterations on 45k CIFAR images: the default everywhere a
# dataset has no entry of its own. 30 epochs reach >= 98% on digits in about a minute on 2 CPU
# cores. Callers with other needs pass their own table to default_epochs (the experiments do).
PAPER_EPOCHS = 182
DEFAULT_EPOCHS = {DIGITS: 30}
MAX_WARMUP_STEPS = 400  # the paper's ResNet-110 warm-up
WARMUP_FRACTION = 0.05  # short runs warm up for 5% of training instead


def default_epochs(dataset: str, table: Mapping[str, int] = DEFAULT_EPOCHS) -> int:
    """Epochs of a run on ``dataset`` when none are given: ``table``'s entry, else 182.

    Example:
    >>> default_epochs("digits"), default_epochs("cifar10")
    (30, 182)
    """
    return int(table.get(dataset, PAPER_EPOCHS))


def default_warmup_steps(total_steps: int, fraction: float = WARMUP_FRACTION, cap: int = MAX_WARMUP_STEPS) -> int:
    """Warm-up steps of a run of ``total_steps`` when none are given: ``fraction`` of the
    run, at most ``cap`` (the paper's 400 iterations at lr / 10 for ResNet-110).

    Example:
    >>> default_warmup_steps(330), default_warmup_steps(64_000)
    (16, 400)
    """
    return min(cap, round(fraction * total_steps))


@dataclasses.dataclass
class TrainConfig:
    """Settings of a training run; None means "the default for this dataset or device".

    Args:
        epochs: epochs to train; default 30 for digits, 182 (the paper's 64k iterations on
            CIFAR) otherwise.
        batch_size: global batch size; default 128 (or the batch size of a given Dataset).
        lr: peak learning rate; default 0.1 * batch_size / 128.
        momentum: SGD momentum, default 0.9.
        nesterov: Nesterov momentum, default False (the paper's plain momentum).
        weight_decay: coupled L2 weight decay, default 1e-4 (built into the model).
        schedule: ``"step"`` (divide by 10 at each milestone) or ``"cosine"``.
        milestones: fractions of training at which the step schedule divides the rate.
        warmup_steps: steps at ``warmup_lr`` before the peak rate (linear ramp for cosine);
            default min(400, 5% of training); 0 turns warm-up off.
        warmup_lr: default lr / 10 (0.01 for 0.1, as in the paper).
        label_smoothing: default 0 (the paper has none).
        weights: fine-tune from pretrained weights (:mod:`keras_resnet.finetune`): ``"imagenet"``
            (keras.applications' weights, for resnet50/101/152), a ``.weights.h5`` file, or a
            ``.keras`` model of this package; the model gets a new head for the dataset's classes.
        freeze_epochs: fine-tuning's phase 1, epochs that train the new head with the backbone
            frozen; default half of ``epochs``. The other epochs are phase 2.
        unfreeze: what phase 2 trains: ``"all"`` (default) or the last N stages (an int).
        finetune_lr_factor: phase 2's learning rate as a fraction of ``lr``; default 0.1.
        freeze_batchnorm: keep the backbone's BatchNorm layers frozen in phase 2 (inference
            mode: the pretrained moving statistics normalise, gamma and beta do not train);
            default False: those of the unfrozen stages train with them.
        image_size, validation_split, augment, flip, data_dir, cache: passed to
            :func:`keras_resnet.data.load_dataset` when the dataset is given by name.
        augmentation: the training augmentation, ``"cifar"``, ``"imagenet"`` or ``"none"``;
            default ``"imagenet"`` for ImageNet-style presets and inputs of 64 px and up,
            ``"cifar"`` otherwise (see :mod:`keras_resnet.data`).
        bad_files: an image folder's unreadable files: ``"error"`` (default) stops at the
            first with an error naming it; ``"skip"`` drops them and lists them in the run's
            ``skipped_files.txt``.
        seed: seeds shuffling and augmentation; the weights too with
            ``train(..., set_global_seed=True)``.
        mixed_precision: default: on for GPUs with compute capability >= 7.0, off on CPU.
        jit_compile: XLA; default: on for one GPU, off on CPU and under tf.distribute.
        steps_per_execution: default: up to 32 for models under 5M parameters on GPUs, else 1.
        strategy: ``"default"``, ``"mirrored"`` or ``"multi_worker"``; default: mirrored
            for several GPUs, multi-worker when ``TF_CONFIG`` names a cluster (of one worker:
            Keras 3.15's fit fails with more, keras-team/keras#20585, so that is refused).
        tensorboard: write TensorBoard logs to ``out/logs``.
        num_processes, process_id, coordinator: multi-process data-parallel training on the
            JAX backend (:mod:`keras_resnet.distributed`): this process's rank in
            ``[0, num_processes)`` and process 0's ``HOST:PORT``; default: Keras's
            ``KERAS_DISTRIBUTION_*`` variables, else one process. ``batch_size`` stays the
            global batch. Only process 0 writes ``out``.

    Example:
    >>> TrainConfig(epochs=5, batch_size=64).validate().resolved_lr(64)
    0.05
    """

    epochs: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 1e-4
    schedule: str = "step"
    milestones: tuple[float, ...] = (0.5, 0.75)
    warmup_steps: int | None = None
    warmup_lr: float | None = None
    label_smoothing: float = 0.0
    weights: str | None = None
    freeze_epochs: int | None = None
    unfreeze: str | int = finetune.DEFAULT_UNFREEZE
    finetune_lr_factor: float = finetune.DEFAULT_FINETUNE_LR_FACTOR
    freeze_batchnorm: bool | None = None
    image_size: int | None = None
    validation_split: float | None = None
    augment: bool = True
    augmentation: str | None = None
    flip: bool | None = None
    data_dir: str | None = None
    cache: bool | str = True
    bad_files: str = "error"
    seed: int = 0
    mixed_precision: bool | None = None
    jit_compile: bool | None = None
    steps_per_execution: int | None = None
    strategy: str | None = None
    tensorboard: bool = False
    num_processes: int | None = None
    process_id: int | None = None
    coordinator: str | None = None

    def __post_init__(self):
        # A bad setting fails where it is written, not epochs later where it is used.
        self.validate()

    def validate(self) -> TrainConfig:
        """Raises ValueError naming the first bad value; returns self (construction calls it)."""
        for name in ("epochs", "batch_size", "image_size", "steps_per_execution"):
            check_int(name, getattr(self, name), 1, optional=True)
        check_int("warmup_steps", self.warmup_steps, 0, optional=True)
        check_int("seed", self.seed, 0)
        for name in ("lr", "warmup_lr"):
            check_float(name, getattr(self, name), 0, exclusive_minimum=True, optional=True)
        check_float("momentum", self.momentum, 0, 1, exclusive_maximum=True)
        check_float("label_smoothing", self.label_smoothing, 0, 1, exclusive_maximum=True)
        check_float("validation_split", self.validation_split, 0, 1, exclusive_maximum=True, optional=True)
        check_float("weight_decay", self.weight_decay, 0)
        check_choice("schedule", self.schedule, SCHEDULES)
        m = tuple(self.milestones) if isinstance(self.milestones, (tuple, list)) else ()
        if not m or any(not is_number(f) or not 0 < f < 1 for f in m) or list(m) != sorted(set(m)):
            raise ValueError(f"milestones must be increasing fractions of training in (0, 1); received milestones={self.milestones!r}")
        check_choice("strategy", self.strategy, (*STRATEGIES, None), f"one of {', '.join(STRATEGIES)} or None (auto)")
        for name in ("nesterov", "augment", "tensorboard"):
            check_bool(name, getattr(self, name))
        for name in ("flip", "mixed_precision", "jit_compile"):
            check_bool(name, getattr(self, name), optional=True, none_means="auto")
        check_type("cache", self.cache, (bool, str), "True, False or a folder path for cache files")
        check_choice("augmentation", self.augmentation, (*AUGMENTATIONS, None),
                     f"one of {', '.join(AUGMENTATIONS)} or None (by model and image size)")
        check_choice("bad_files", self.bad_files, BAD_FILE_POLICIES)
        check_path("data_dir", self.data_dir, optional=True, allowed="a folder path")
        if self.data_dir is not None and not Path(self.data_dir).is_dir():
            raise ValueError(f"data_dir {str(self.data_dir)!r} does not exist or is not a folder")
        finetune.check_config(self)
        check_int("num_processes", self.num_processes, 1, optional=True)
        check_int("process_id", self.process_id, 0, optional=True)
        if self.num_processes is not None and self.process_id is not None and self.process_id >= self.num_processes:
            raise ValueError(f"process_id must be in [0, num_processes) = [0, {self.num_processes}); "
                             f"received process_id={self.process_id}")
        if self.coordinator is not None:
            distributed.check_coordinator(self.coordinator)
        return self

    def resolved_lr(self, batch_size: int) -> float:
        """The peak rate: ``lr``, or 0.1 scaled linearly from the paper's batch of 128."""
        return float(self.lr) if self.lr is not None else PAPER_LR * batch_size / PAPER_BATCH_SIZE

    def resolved_warmup(self, total_steps: int) -> int:
        """Warm-up steps: ``warmup_steps``, or :func:`default_warmup_steps` of ``total_steps``."""
        if self.warmup_steps is not None:
            return self.warmup_steps
        return default_warmup_steps(total_steps)


@dataclasses.dataclass
class TrainResult:
    """What :func:`train` returns: the best model, one history row per epoch, the metrics."""

    model: Any
    history: list[dict]
    metrics: dict
    out: Path | None


def learning_rate_schedule(
    lr: float,
    total_steps: int,
    schedule: str = "step",
    milestones: tuple[float, ...] = (0.5, 0.75),
    warmup_steps: int = 0,
    warmup_lr: float | None = None,
):
    """The paper's step schedule (or a cosine one) as a built-in Keras schedule.

    Built-in schedules are serializable (a ``.keras`` file loads without custom objects) and
    read the optimizer's iteration count, so a resumed run continues on the same curve.

    Args:
        lr: peak learning rate.
        total_steps: optimizer steps of the whole run.
        schedule: ``"step"``: ``warmup_lr`` for ``warmup_steps``, then ``lr``, divided by 10
            at each milestone; ``"cosine"``: linear warm-up from ``warmup_lr`` to ``lr``, then
            cosine decay to 0 at ``total_steps``.
        milestones: fractions of ``total_steps``.
        warmup_steps: steps of warm-up (0: none).
        warmup_lr: rate during warm-up; default ``lr / 10``.

    Returns:
        A ``keras.optimizers.schedules.LearningRateSchedule``.

    Example:
    >>> s = learning_rate_schedule(0.1, 1000, warmup_steps=10)
    >>> [round(float(s(step)), 4) for step in (0, 100, 600, 900)]
    [0.01, 0.1, 0.01, 0.001]
    """
    import keras

    warmup_lr = lr / 10 if warmup_lr is None else warmup_lr
    if schedule == "cosine":
        if warmup_steps:
            return keras.optimizers.schedules.CosineDecay(
                warmup_lr, max(1, total_steps - warmup_steps), warmup_target=lr, warmup_steps=warmup_steps
            )
        return keras.optimizers.schedules.CosineDecay(lr, max(1, total_steps))
    bounds = [round(f * total_steps) for f in milestones]
    if warmup_steps and warmup_steps >= bounds[0]:
        raise ValueError(
            f"warmup_steps must end before the first learning-rate drop (step {bounds[0]} of "
            f"{total_steps}); received warmup_steps={warmup_steps}"
        )
    if len(set(bounds)) != len(bounds) or bounds[0] < 1:
        raise ValueError(f"milestones {tuple(milestones)} fall on the same step of a {total_steps}-step run; train longer")
    values = [lr / 10**i for i in range(len(bounds) + 1)]
    if warmup_steps:
        bounds, values = [warmup_steps, *bounds], [warmup_lr, *values]
    # PiecewiseConstantDecay uses values[i] while step <= bounds[i]; shift by one so that
    # exactly `warmup_steps` updates use the warm-up rate.
    return keras.optimizers.schedules.PiecewiseConstantDecay([b - 1 for b in bounds], values)


def device_settings(config: TrainConfig | None = None, params: int | None = None, steps_per_epoch: int | None = None) -> dict:
    """Device-aware defaults: strategy, mixed precision, XLA, steps per execution.

    GPUs get mixed precision (compute capability >= 7.0, tensor cores) and XLA (one GPU; Keras
    turns XLA off under tf.distribute); the CPU gets neither (XLA made a ResNet step about 4x
    slower on a 2-core CPU). Several GPUs get ``MirroredStrategy``; a ``TF_CONFIG`` that names
    a cluster gets ``MultiWorkerMirroredStrategy``. Each value set in ``config`` wins.

    On the JAX backend the devices are JAX's, every step is compiled (XLA is how JAX runs, and
    ``jit_compile=False`` would run it op by op), and the strategy is ``"default"``: the
    ``tf.distribute`` strategies are TensorFlow's, so asking for one there is an error.

    Args:
        config: a :class:`TrainConfig` whose non-None device fields override the defaults.
        params: the model's parameter count (for ``steps_per_execution``).
        steps_per_epoch: training batches per epoch (caps ``steps_per_execution``).

    Returns:
        A dict: ``backend``, ``device``, ``gpus``, ``gpu_names``, ``strategy``,
        ``mixed_precision``, ``jit_compile``, ``steps_per_execution``, ``is_chief``, ``processes``.

    Example:
    >>> device_settings()["device"] in ("CPU", "GPU")
    True
    """
    import keras

    config = config or TrainConfig()
    backend = keras.backend.backend()
    tf_config = json.loads(os.environ.get("TF_CONFIG") or "{}")
    cluster = tf_config.get("cluster") or {}
    task = tf_config.get("task") or {}
    if backend == "jax":
        import jax

        gpus = [d for d in jax.devices() if d.platform == "gpu"]
        capabilities = [getattr(g, "compute_capability", None) for g in gpus]
        capabilities = [tuple(int(p) for p in str(c).split(".")[:2]) if c else None for c in capabilities]
        names = sorted({g.device_kind for g in gpus})
        if config.strategy not in (None, "default"):
            raise ValueError(
                f"strategy={config.strategy!r} is a tf.distribute strategy, which runs on the TensorFlow "
                "backend only; on the JAX backend use strategy='default' (or None)"
            )
        strategy = "default"
    else:
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        capabilities = [tf.config.experimental.get_device_details(g).get("compute_capability") for g in gpus]
        names = sorted({tf.config.experimental.get_device_details(g).get("device_name", "GPU") for g in gpus})
        strategy = config.strategy or ("multi_worker" if cluster else "mirrored" if len(gpus) > 1 else "default")
    tensor_cores = bool(gpus) and all(c is not None and tuple(c) >= (7, 0) for c in capabilities)
    mixed = tensor_cores if config.mixed_precision is None else config.mixed_precision
    auto_jit = backend == "jax" or (bool(gpus) and strategy == "default")
    jit = auto_jit if config.jit_compile is None else config.jit_compile
    spe = config.steps_per_execution
    if spe is None:
        small = params is not None and params < 5_000_000
        spe = min(32, steps_per_epoch or 32) if gpus and small else 1
    chief_type = "chief" if "chief" in cluster else "worker"
    is_chief = not cluster or (task.get("type", chief_type) == chief_type and int(task.get("index", 0)) == 0)
    processes = 1
    if backend == "jax":  # keras.distribution's processes (distributed.initialize)
        processes, is_chief = jax.process_count(), jax.process_index() == 0
    return {
        "backend": backend, "device": "GPU" if gpus else "CPU", "gpus": len(gpus), "gpu_names": names,
        "strategy": strategy, "mixed_precision": bool(mixed), "jit_compile": bool(jit),
        "steps_per_execution": int(spe), "is_chief": bool(is_chief), "processes": int(processes),
    }


def check_cluster(config: TrainConfig | None = None) -> int:
    """Counts the workers that ``TF_CONFIG`` names (0 without a cluster), without TensorFlow.

    Raises ValueError for an automatic strategy on a cluster of several workers: Keras 3.15's
    ``Model.fit`` fails under ``MultiWorkerMirroredStrategy`` with more than one worker
    (keras-team/keras#20585); the error points at the path that works, ``keras.distribution``
    on the JAX backend. ``strategy="multi_worker"`` skips the check.

    Example:
    >>> check_cluster(TrainConfig())  # no TF_CONFIG
    0
    """
    try:
        cluster = json.loads(os.environ.get("TF_CONFIG") or "{}").get("cluster") or {}
    except ValueError:
        raise ValueError(f"TF_CONFIG is not valid JSON: {os.environ['TF_CONFIG']!r}") from None
    workers = sum(len(cluster.get(kind, ())) for kind in ("chief", "worker"))
    if (config is None or config.strategy is None) and workers > 1:
        raise ValueError(
            f"TF_CONFIG names a cluster of {workers} workers, but Keras 3's Model.fit fails under "
            "MultiWorkerMirroredStrategy with more than one worker (keras-team/keras#20585, open as "
            "of Keras 3.15). Training on several machines works through Keras's own distribution API "
            "on the JAX backend instead: unset TF_CONFIG and run `keras-resnet train --backend jax "
            "--num-processes N --process-id I --coordinator HOST:PORT` on each machine (or set "
            "KERAS_DISTRIBUTION_NUM_PROCESSES, KERAS_DISTRIBUTION_PROCESS_ID and "
            "KERAS_DISTRIBUTION_JOB_ADDRESSES; see docs/backends.md). Or train on one machine "
            "(MirroredStrategy uses all its GPUs), or pass strategy='multi_worker' (--strategy "
            "multi_worker) with a Keras that has the fix"
        )
    return workers


@functools.cache
def distribution_strategy(kind: str = "default"):
    """The ``tf.distribute`` strategy of that kind, created once per process.

    ``MultiWorkerMirroredStrategy`` must exist before TensorFlow runs its first operation, so a
    program that trains under ``TF_CONFIG`` calls this first (the ``train`` command does).

    Args:
        kind: ``"default"``, ``"mirrored"`` or ``"multi_worker"``.

    Returns:
        A ``tf.distribute.Strategy``.

    Example:
    >>> distribution_strategy("default").num_replicas_in_sync
    1
    """
    import keras
    import tensorflow as tf

    if kind not in STRATEGIES:
        raise ValueError(f"strategy must be one of {', '.join(STRATEGIES)}; received strategy={kind!r}")
    if kind != "default" and keras.backend.backend() != "tensorflow":
        raise ValueError(f"strategy={kind!r} is a tf.distribute strategy, which runs on the TensorFlow backend "
                         f"only; the Keras backend of this process is {keras.backend.backend()!r}")
    if kind == "multi_worker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    return tf.distribute.MirroredStrategy() if kind == "mirrored" else tf.distribute.get_strategy()


@contextlib.contextmanager
def device_scope(config: TrainConfig | None = None):
    """Applies the device settings that are global state (the mixed-precision policy) while
    the block runs, and restores the previous policy afterwards.

    Args:
        config: a :class:`TrainConfig` (its ``mixed_precision`` wins over the default).

    Yields:
        The :func:`device_settings` dict.

    Example:
    >>> with device_scope(TrainConfig()) as settings:
    ...     settings["mixed_precision"] in (True, False)
    True
    """
    import keras

    previous = keras.config.dtype_policy()
    settings = device_settings(config)
    try:
        if settings["mixed_precision"]:
            keras.mixed_precision.set_global_policy("mixed_float16")
        yield settings
    finally:
        keras.config.set_dtype_policy(previous)


def compile_model(model, config: TrainConfig, *, steps_per_epoch: int, epochs: int | None = None,
                  batch_size: int | None = None) -> dict:
    """Compiles ``model`` with the recipe: SGD with momentum on :func:`learning_rate_schedule`,
    cross-entropy, accuracy, and the device's XLA and ``steps_per_execution`` settings.

    The optimizer has no decoupled weight decay: the model carries the coupled L2 penalty (see
    :func:`build_model`). Call it inside the distribution strategy's scope. With
    ``label_smoothing > 0`` the loss is ``CategoricalCrossentropy`` and labels must be one-hot
    (:func:`train` converts them); otherwise sparse integer labels.

    Args:
        model: a ``keras.Model``.
        config: a :class:`TrainConfig`.
        steps_per_epoch: training batches per epoch.
        epochs: epochs the schedule spans; default ``config.epochs`` or 182.
        batch_size: the global batch size that scales the rate; default ``config.batch_size``
            or 128.

    Returns:
        The resolved recipe: ``lr``, ``warmup_steps``, ``total_steps``, ``epochs`` and
        ``device`` (the :func:`device_settings`).

    Example:
    >>> from keras_resnet.models import ResNet
    >>> model = ResNet(depth=8, input_shape=(8, 8, 1), classes=10)
    >>> recipe = compile_model(model, TrainConfig(epochs=30), steps_per_epoch=11)
    >>> recipe["lr"], recipe["total_steps"], type(model.optimizer).__name__
    (0.1, 330, 'SGD')
    """
    import keras

    epochs = epochs or config.epochs or PAPER_EPOCHS
    batch_size = batch_size or config.batch_size or PAPER_BATCH_SIZE
    total_steps = epochs * steps_per_epoch
    lr = config.resolved_lr(batch_size)
    warmup = config.resolved_warmup(total_steps)
    schedule = learning_rate_schedule(lr, total_steps, config.schedule, config.milestones, warmup, config.warmup_lr)
    settings = device_settings(config, model.count_params(), steps_per_epoch)
    loss = (keras.losses.CategoricalCrossentropy(label_smoothing=config.label_smoothing) if config.label_smoothing
            else keras.losses.SparseCategoricalCrossentropy())
    model.compile(
        optimizer=keras.optimizers.SGD(schedule, momentum=config.momentum, nesterov=config.nesterov),
        loss=loss, metrics=["accuracy"], jit_compile=settings["jit_compile"],
        steps_per_execution=settings["steps_per_execution"],
    )
    # Built here, not inside the first traced step, where creating variables makes TensorFlow
    # trace the step twice: 0.9 s less per compiled model on the CPU (measured, ResNet-20).
    model.optimizer.build(model.trainable_variables)
    return {"lr": lr, "warmup_steps": warmup, "total_steps": total_steps, "epochs": epochs, "device": settings}


def build_model(preset: str, dataset, *, weight_decay: float = 1e-4, **overrides):
    """A preset ResNet behind a normalisation layer: raw pixels in, probabilities out.

    The first layer is :func:`keras_resnet.data.preprocessing` (the training split's mean and
    standard deviation), so the saved model needs no outside preprocessing; input shape and
    classes come from the dataset.

    Args:
        preset: a preset name (see ``keras_resnet.presets.PRESET_NAMES``).
        dataset: a :class:`keras_resnet.data.Dataset` (or an object with ``input_shape``,
            ``num_classes``, ``mean`` and ``std``).
        weight_decay: coupled L2 weight decay of the ResNet's kernels.
        **overrides: ``ResNet`` arguments (``shortcut``, ``version``, ``depth``, ...).

    Returns:
        A functional ``keras.Model`` named after the preset.

    Example:
    >>> from keras_resnet.data import load_dataset
    >>> model = build_model("resnet20", load_dataset("digits"))
    >>> model.input_shape, model.output_shape
    ((None, 16, 16, 1), (None, 10))
    """
    import keras

    from keras_resnet.data import preprocessing
    from keras_resnet.models import ResNet

    expected = {"input_shape": tuple(dataset.input_shape), "classes": int(dataset.num_classes)}
    for key, value in expected.items():
        given = overrides.pop(key, None)
        if given is not None and (tuple(given) if key == "input_shape" else given) != value:
            raise ValueError(f"{key}={given!r} does not match the dataset, which needs {key}={value!r}")
    resnet = ResNet.from_preset(preset, **expected, weight_decay=weight_decay, **overrides)
    inputs = keras.Input(shape=expected["input_shape"], name="pixels")
    outputs = resnet(preprocessing(dataset)(inputs))
    return keras.Model(inputs, outputs, name=resnet.name)


def train(
    model: Any = "resnet20",
    dataset: Any = DIGITS,
    config: TrainConfig | None = None,
    out: str | os.PathLike | None = None,
    *,
    verbose: int = 1,
    overwrite: bool = False,
    set_global_seed: bool = False,
    callbacks: list | tuple = (),
    **model_overrides,
) -> TrainResult:
    """Trains with the paper's recipe, resumably, and writes the run's files into ``out``.

    Arguments are validated before TensorFlow starts. Called again with the same arguments
    after a crash (or SIGKILL), it continues from the last finished epoch; ``history.csv``
    keeps one row per epoch. A finished ``out`` is not retrained unless ``overwrite``.

    Args:
        model: a preset name (built by :func:`build_model` inside the distribution strategy)
            or a ``keras.Model`` that takes raw pixels (compiled here; it keeps its own weight
            decay, e.g. from :func:`build_model`). With ``config.weights`` the preset is built
            by :func:`keras_resnet.finetune.build_model` and trained in two phases (a ``.keras``
            file brings its own architecture).
        dataset: a dataset name for :func:`keras_resnet.data.load_dataset`, or a ``Dataset``.
        config: a :class:`TrainConfig`; default ``TrainConfig()``.
        out: the run's folder; None trains in a temporary folder and keeps nothing.
        verbose: 0 silent, 1 progress bars, 2 one line per epoch.
        overwrite: delete a previous run's files in ``out`` (finished or not) and start over.
        set_global_seed: call ``keras.utils.set_random_seed(config.seed)`` before building the
            model, so that its initial weights (and dropout) are reproducible; this re-seeds
            Python's, NumPy's and the backend's global generators in the whole process. Off
            by default (``config.seed`` still seeds the data pipeline); the
            ``keras-resnet train`` command turns it on.
        callbacks: more ``keras.callbacks.Callback`` objects for ``model.fit``. They run after
            the run's own, so at the end of an epoch its resume file, ``history.csv`` and
            ``state.json`` are already written.
        **model_overrides: ``ResNet`` arguments for a preset (``shortcut="projection"``, ...).

    Returns:
        A :class:`TrainResult` with the best model (by validation accuracy; the last one
        without a validation split), the history rows and the metrics of ``metrics.json``.

    Raises:
        ValueError: a bad argument, or an ``out`` that holds another run.
        keras_resnet.runs.TrainingDiverged: the loss became NaN or infinite.

    Example:
    >>> config = TrainConfig(epochs=1, image_size=8, batch_size=256)
    >>> result = train("resnet20", "digits", config, out="r8", verbose=0, depth=8)
    >>> result.metrics["model"], result.metrics["epochs"], sorted(p.name for p in result.out.iterdir())
    ('resnet8', 1, ['curves.png', 'history.csv', 'metrics.json', 'model.keras', 'state.json'])
    """
    from keras_resnet.data import Dataset

    check_type("config", config, TrainConfig, "a keras_resnet.training.TrainConfig", optional=True)
    config = (config or TrainConfig()).validate()
    check_choice("verbose", verbose, (0, 1, 2), "0, 1 or 2")
    check_bool("overwrite", overwrite)
    if isinstance(model, str):
        if model not in PRESET_NAMES:
            raise ValueError(f"unknown model {model!r}; choose from: {', '.join(PRESET_NAMES)}")
        if "weight_decay" in model_overrides:
            raise ValueError("pass weight_decay in TrainConfig, not as a model override")
    elif model_overrides:
        raise ValueError(f"model overrides {sorted(model_overrides)} need a preset name, not a built model")
    if isinstance(dataset, Dataset):
        if config.batch_size not in (None, dataset.batch_size):
            raise ValueError(f"batch_size={config.batch_size} differs from the dataset's batch size {dataset.batch_size}")
        dataset_name = dataset.name
    else:
        dataset_name = dataset
        check_dataset(dataset, config.data_dir)
    check_bool("set_global_seed", set_global_seed)
    if not isinstance(callbacks, (list, tuple)) or any(
        not callable(getattr(c, "on_epoch_end", None)) for c in callbacks
    ):
        raise ValueError(f"callbacks must be a list of keras.callbacks.Callback objects; received callbacks={callbacks!r}")
    check_cluster(config)
    finetune.check_train_arguments(model, model_overrides, config)
    signature = runs.signature(model, model_overrides, dataset_name, config)
    if config.weights is not None:  # the file's content, not only its path
        signature["weights"] = finetune.fingerprint(config.weights)
        # Resolved, so that None (the default) and True resume each other's run.
        signature["config"]["freeze_batchnorm"] = finetune.resolved_freeze_batchnorm(config)

    cluster = distributed.resolve(config)
    if cluster is not None:
        from keras_resnet.backends import current_backend

        batch = dataset.batch_size if isinstance(dataset, Dataset) else config.batch_size or PAPER_BATCH_SIZE
        if batch % cluster.num_processes:
            raise ValueError(f"the global batch size ({batch}) must divide evenly between the "
                             f"{cluster.num_processes} processes; received batch_size={batch}")
        distributed.check_backend(cluster, current_backend())

    temporaries = []
    if out is None:
        temporaries.append(tempfile.TemporaryDirectory(prefix="keras-resnet-"))
        out_dir = Path(temporaries[-1].name)
    else:
        out_dir = Path(out)
        if out_dir.exists() and not out_dir.is_dir():
            raise ValueError(f"out {str(out)!r} exists and is not a folder")
    try:
        write_dir = None
        if cluster is None:
            state = runs.prepare(out_dir, signature, overwrite)
        else:
            state, write_dir = _prepare_processes(cluster, out_dir, signature, overwrite, temporaries)
        return _train(model, dataset, config, out_dir, state, verbose, model_overrides, keep=out is not None,
                      set_global_seed=set_global_seed, extra_callbacks=list(callbacks), write_dir=write_dir,
                      cluster=cluster)
    finally:
        for temporary in temporaries:
            temporary.cleanup()


def _prepare_processes(cluster, out_dir: Path, signature: dict, overwrite: bool, temporaries: list):
    """A multi-process run's folders: process 0 prepares ``out_dir``; the others check it, then
    train in a scratch folder that starts from a copy of ``out_dir``'s resume file."""
    import shutil

    distributed.initialize(cluster)
    state = runs.prepare(out_dir, signature, overwrite, create=False)  # the same error in every process
    distributed.barrier("keras_resnet.checked")
    if cluster.is_chief:
        state = runs.prepare(out_dir, signature, overwrite)
    distributed.barrier("keras_resnet.prepared")
    if cluster.is_chief:
        return state, None
    temporaries.append(tempfile.TemporaryDirectory(prefix=f"keras-resnet-process{cluster.process_id}-"))
    scratch = Path(temporaries[-1].name)
    resume = runs.Checkpoint(out_dir).path
    if resume.exists():
        copy = runs.Checkpoint(scratch).path
        copy.parent.mkdir(parents=True)
        shutil.copyfile(resume, copy)
    return state, scratch


# ---- the run ----------------------------------------------------------------------------------

def _train(model, dataset, config, out, state, verbose, overrides, keep, set_global_seed, extra_callbacks=(),
           write_dir=None, cluster=None):
    """The run itself: data, model and recipe inside the device's strategy, fit, test, files."""
    import keras

    from keras_resnet.data import load_dataset

    with device_scope(config) as settings:
        strategy = distribution_strategy(settings["strategy"])
        if not isinstance(model, str) and settings["strategy"] != "default":
            raise ValueError(
                f"a built model cannot be moved into the {settings['strategy']} strategy; pass a preset "
                "name (the model is then built inside the strategy's scope) or strategy='default'"
            )
        if isinstance(dataset, str):
            dataset = load_dataset(
                dataset, image_size=config.image_size, batch_size=config.batch_size or PAPER_BATCH_SIZE,
                validation_split=config.validation_split, seed=config.seed, augment=config.augment,
                augmentation=config.augmentation or _preset_augmentation(model, overrides),
                flip=config.flip, data_dir=config.data_dir, cache=config.cache, bad_files=config.bad_files,
                skipped_files=out / SKIPPED_FILES if config.bad_files == "skip" else None,
                stats=finetune.weights_stats(config.weights),
            )
        if set_global_seed:
            keras.utils.set_random_seed(config.seed)
        built_here, source = isinstance(model, str), None
        with strategy.scope():
            if built_here and config.weights is not None:
                model, source = finetune.build_model(model, dataset, config)
            elif built_here:
                model = build_model(model, dataset, weight_decay=config.weight_decay, **overrides)
        epochs = config.epochs or default_epochs(dataset.name)
        phases = finetune.plan_phases(config, epochs)  # one, unless fine-tuning
        one_hot = config.label_smoothing > 0
        train_ds, val_ds, test_ds = (_labels(d, dataset.num_classes, one_hot) for d in (dataset.train, dataset.validation, dataset.test))
        if cluster is not None:
            train_ds, val_ds, test_ds = (distributed.shard(d, cluster) for d in (train_ds, val_ds, test_ds))
        # Workers other than the chief write into a scratch folder (tf.distribute's rule).
        if write_dir is None:
            write_dir = out if settings["is_chief"] else Path(tempfile.mkdtemp(prefix="keras-resnet-worker-"))
        checkpoint = runs.Checkpoint(write_dir)
        done = checkpoint.stored_epoch()
        if cluster is not None:
            distributed.agree(done, "the last finished epoch")
        first = next((i for i, p in enumerate(phases) if done < p.end), len(phases) - 1)
        monitor = "val_accuracy" if val_ds is not None else None
        callbacks = runs.callbacks(write_dir, state, monitor, checkpoint, tensorboard=config.tensorboard)
        for phase in phases[first:]:
            # A phase has its own trainable set, so its own compiled step, optimizer and schedule.
            with strategy.scope():
                finetune.apply_phase(model, phase)
                recipe = compile_model(model, phase.config(config, dataset.batch_size), epochs=phase.epochs,
                                       steps_per_epoch=dataset.steps_per_epoch, batch_size=dataset.batch_size)
                if phase is phases[first]:
                    # At a phase boundary the next phase starts with a fresh optimizer, as without the crash.
                    initial_epoch = checkpoint.restore(model, state, restore_optimizer=done > phase.start)
                    if initial_epoch and verbose:
                        print(f"Resuming the run in {out}: {initial_epoch} epochs done, continuing from the last backup")
            if verbose and phase.trainable is not None:  # Keras counts to the phase's end: say where it lies
                print(f"Phase {phase.number} of fine-tuning: {finetune.describe(phase)}, "
                      f"epochs {phase.start + 1}-{phase.end} of {epochs}")
            with _naming_unreadable_files():
                model.fit(train_ds, validation_data=val_ds, epochs=phase.end, initial_epoch=max(initial_epoch, phase.start),
                          callbacks=[*callbacks, *extra_callbacks], verbose=verbose, shuffle=False)
        settings = recipe["device"]
        if source is not None:
            source["phases"] = finetune.describe_phases(model, phases, config, dataset.batch_size, dataset.steps_per_epoch)
            recipe = {**recipe, "lr": config.resolved_lr(dataset.batch_size), "epochs": epochs,
                      "total_steps": epochs * dataset.steps_per_epoch, "warmup_steps": source["phases"][0]["warmup_steps"]}

        # The trained model with the best epoch's weights: its test function is already traced
        # (validation), where a reloaded model.keras would trace again (0.34 s against 1.49 s).
        started = time.perf_counter()
        model.set_weights(checkpoint.best_weights(model))
        with _naming_unreadable_files():
            test_loss, test_accuracy = model.evaluate(test_ds, verbose=0)
        skipped = _list_skipped(dataset, write_dir if keep and settings["is_chief"] else None, verbose)
        if keep and (settings["is_chief"] or cluster is not None):
            # Saving creates a variable (a collective under keras.distribution): every process
            # saves, the others into their scratch folder.
            runs.save_model(model, write_dir / "model.keras")
        metrics = _run_metrics(model, dataset, config, recipe, state, built_here,
                               test={"loss": test_loss, "accuracy": test_accuracy,
                                     "seconds": time.perf_counter() - started})
        if source is not None:
            metrics["finetune"] = json.loads(json.dumps(source, default=str))
            if "mean" in source:  # the weights' own normalisation, not a given Dataset's statistics
                metrics["config"].update(mean=source["mean"], std=source["std"])
        if skipped is not None:
            metrics["skipped_files"] = len(skipped)
        runs.finish(write_dir, state, metrics, keep=keep and settings["is_chief"])
        return TrainResult(model=model, history=state["history"], metrics=metrics, out=out if keep else None)


def _run_metrics(model, dataset, config, recipe: dict, state: dict, built_here: bool, test: dict) -> dict:
    """What ``metrics.json`` holds: the test figures, the run's size and time, the resolved recipe."""
    from keras_resnet import backends

    rows = state["history"]
    best = state["best"] or {}
    metrics = {
        "model": model.name, "dataset": dataset.name,
        "test_accuracy": float(test["accuracy"]), "test_loss": float(test["loss"]),
        "epochs": len(rows), "best_epoch": best.get("epoch", len(rows)), "best_val_accuracy": best.get("value"),
        "params": int(model.count_params()),
        "trainable_params": int(sum(math.prod(w.shape) for w in model.trainable_weights)),
        "seconds": round(sum(r["seconds"] for r in rows), 2),
        "evaluation_seconds": round(test["seconds"], 2),
        "counts": {"train": dataset.train_count, "validation": dataset.validation_count, "test": dataset.test_count},
        "class_names": list(dataset.class_names),
        "config": {**dataclasses.asdict(config), "batch_size": dataset.batch_size,
                   **{k: v for k, v in recipe.items() if k != "device"},
                   "weight_decay": config.weight_decay if built_here else "the given model's own",
                   "weight_decay_implementation": "L2 kernel regularizer weight_decay/2 in the loss (coupled, as the paper's SGD)",
                   "augmentation": dataset.augmentation, "mean": dataset.mean, "std": dataset.std},
        "device": recipe["device"], "sessions": state["sessions"],
        "versions": backends.versions(),
    }
    return json.loads(json.dumps(metrics, default=str))  # as metrics.json holds it


SKIPPED_FILES = "skipped_files.txt"


def _preset_augmentation(model, overrides) -> str | None:
    """"imagenet" for ImageNet-style presets (whatever the image size); None: by image size."""
    if not isinstance(model, str):
        return None
    from keras_resnet.presets import check_architecture

    return "imagenet" if check_architecture(model, **overrides).get("style") == "imagenet" else None


@contextlib.contextmanager
def _naming_unreadable_files():
    """Turns a folder pipeline's unreadable-file error into a ValueError that names the file."""
    import tensorflow as tf

    from keras_resnet.folders import reraise_unreadable

    try:
        yield
    except tf.errors.InvalidArgumentError as e:
        reraise_unreadable(e)
        raise


def _list_skipped(dataset, out, verbose) -> list[str] | None:
    """With ``bad_files="skip"``: the files skipped (each once), rewritten into ``out``'s list."""
    if getattr(dataset, "skipped_files", None) is None:
        return None
    skipped = dataset.skipped()
    if out is not None:
        from keras_resnet import fileio

        fileio.write_text(Path(out) / SKIPPED_FILES, "".join(f"{p}\n" for p in skipped))
    if skipped and verbose:
        print(f"Skipped {len(skipped)} unreadable image file(s)" + (f", listed in {Path(out) / SKIPPED_FILES}" if out else ""))
    return skipped


def _labels(ds, num_classes, one_hot):
    if ds is None or not one_hot:
        return ds
    import tensorflow as tf

    return ds.map(lambda x, y: (x, tf.one_hot(y, num_classes)))


