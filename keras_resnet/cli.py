"""The ``keras-resnet`` command: argument parsing and calls into the library, nothing more.

Each subcommand has a parser function ``_add_<name>_parser(sub)`` and a ``_cmd_<name>(args)``
that calls the library and prints. Choices and defaults are read from the library (TrainConfig's
fields, :mod:`keras_resnet.defaults`, :mod:`keras_resnet.presets`, the experiments' signatures),
never repeated here. Heavy imports (TensorFlow, Keras, KerasTuner, matplotlib) happen inside the
subcommands, so that ``keras-resnet --help`` answers at once, and TensorFlow's start-up log lines
are hidden unless ``--verbose`` is given.

Each flag has one meaning: ``--version`` is the program's version, ``--block-version`` and
``--block-versions`` a ResNet's block version (v1, v2), ``--export-version`` the exported
model's integer version, ``--version-policy`` which versions the server loads.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import sys

from keras_resnet import __version__, defaults
from keras_resnet.backends import BACKENDS, CACHE_ENV, DEFAULT_BACKEND
from keras_resnet.console import import_keras, print_table, replayed_warnings, silenced_stderr
from keras_resnet.data import AUGMENTATIONS, DEFAULT_VALIDATION_SPLIT, DIGITS, DIGITS_IMAGE_SIZE
from keras_resnet.presets import BLOCK_TYPES, SHORTCUT_ALIASES, SHORTCUTS, STYLES, VERSIONS
from keras_resnet.training import (
    DEFAULT_EPOCHS,
    MAX_WARMUP_STEPS,
    PAPER_BATCH_SIZE,
    PAPER_EPOCHS,
    PAPER_LR,
    SCHEDULES,
    STRATEGIES,
    WARMUP_FRACTION,
    TrainConfig,
)

PROG = "keras-resnet"


class UsageError(Exception):
    """A bad command-line value found after parsing; reported like argparse's errors (exit 2)."""


# ---- help texts from the library's values ------------------------------------------------

def _percent(fraction: float, escape: bool = True) -> str:
    """``0.05`` as ``5%``; escaped as ``5%%`` for an argument's help, which argparse %-formats."""
    return f"{100 * fraction:g}{'%%' if escape else '%'}"


def _listed(values) -> str:
    return " ".join(map(str, values))


def _shortcut_help(exclude=()) -> str:
    """``identity (A), projection (B), full_projection (C), none``: the names and their aliases."""
    aliases = {name: alias for alias, name in SHORTCUT_ALIASES.items()}
    return ", ".join(f"{name} ({aliases[name]})" if name in aliases else name
                     for name in SHORTCUTS if name not in exclude)


CACHE_FOLDER_HELP = "$XDG_CACHE_HOME/keras-resnet/jax, by default ~/.cache/keras-resnet/jax"
LR_HELP = f"peak learning rate (default {PAPER_LR:g} * batch size / {PAPER_BATCH_SIZE})"


def _epochs_help(table: dict) -> str:
    """``default: 30 for digits, 182 otherwise`` from an epochs table (training's or the experiments')."""
    return f"default: {', '.join(f'{n} for {d}' for d, n in table.items())}, {PAPER_EPOCHS} otherwise"


def _default(function, name: str):
    """The default of ``function``'s parameter ``name``: the library's value, read, not repeated."""
    value = inspect.signature(function).parameters[name].default
    return list(value) if isinstance(value, tuple) else value


def _add_parser(sub, name: str, **kwargs) -> argparse.ArgumentParser:
    # No abbreviations: a retired flag (--version, --versions) must not match a new one's prefix.
    return sub.add_parser(name, allow_abbrev=False, **kwargs)


# ---- shared argument groups ---------------------------------------------------------------

def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """Overrides of a preset's architecture, shared by every command that builds a model."""
    group = parser.add_argument_group("architecture overrides (default: the preset's)")
    group.add_argument("--shortcut", help=_shortcut_help())
    group.add_argument("--block-version", choices=VERSIONS,
                       help="block version: v1 (post-activation) or v2 (pre-activation)")
    group.add_argument("--block", choices=BLOCK_TYPES, help="residual block type")
    group.add_argument("--depth", type=int, help="network depth (6n+2 / 9n+2 for CIFAR style)")
    group.add_argument("--classes", type=int, help="number of classes of the classifier")
    group.add_argument("--input-shape", type=int, nargs=3, metavar=("H", "W", "C"), help="input height, width, channels")
    group.add_argument("--width-multiplier", type=float, help="scale every width")
    group.add_argument("--zero-init-residual", action="store_true", default=None, help="start every block as the identity")


def add_backend_arguments(parser: argparse.ArgumentParser) -> None:
    """``--backend`` and ``--no-compile-cache``, for the commands that train."""
    group = parser.add_argument_group("backend")
    group.add_argument("--backend", choices=BACKENDS,
                       help=f"the Keras backend (default: KERAS_BACKEND, else {DEFAULT_BACKEND}); the data stays "
                       "tf.data, and exports run on tensorflow (a .keras file trained on jax loads there)")
    group.add_argument("--no-compile-cache", action="store_true",
                       help=f"jax: no persistent compilation cache (default: on, in {CACHE_FOLDER_HELP}; "
                       f"{CACHE_ENV}=FOLDER|off sets it too)")


def select_backend(args: argparse.Namespace) -> str:
    """Sets the process's Keras backend from ``--backend`` (and the cache from ``--no-compile-cache``)
    before Keras is imported; returns its name."""
    from keras_resnet import backends

    if getattr(args, "no_compile_cache", False):
        os.environ[CACHE_ENV] = "off"
    return backends.select_backend(getattr(args, "backend", None))


def model_overrides(args: argparse.Namespace) -> dict:
    """The architecture overrides given on the command line, as ``ResNet`` keyword arguments."""
    names = {
        "shortcut": "shortcut", "block_version": "version", "block": "block", "depth": "depth",
        "classes": "classes", "input_shape": "input_shape", "width_multiplier": "width_multiplier",
        "zero_init_residual": "zero_init_residual",
    }
    out = {}
    for attr, key in names.items():
        value = getattr(args, attr, None)
        if value is not None:
            out[key] = tuple(value) if key == "input_shape" else value
    return out


def check_preset(name: str, overrides: dict | None = None) -> str:
    """Validates a preset name and the architecture overrides without importing TensorFlow."""
    from keras_resnet.presets import PRESET_NAMES, check_architecture

    if name not in PRESET_NAMES:
        import difflib

        close = difflib.get_close_matches(name, PRESET_NAMES, n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise UsageError(f"unknown model {name!r}{hint}; choose from: {', '.join(PRESET_NAMES)}")
    check_architecture(name, **(overrides or {}))
    return name


# ---- commands -------------------------------------------------------------------------------

def _cmd_summary(args) -> int:
    check_preset(args.model, model_overrides(args))
    import_keras(args.verbose)
    from keras_resnet.models import ResNet

    model = ResNet.from_preset(args.model, **model_overrides(args))
    model.summary(expand_nested=args.expand)
    trainable = sum(int(w.numpy().size) for w in model.trainable_weights)
    print(f"\n{model.name}: {model.count_params():,} parameters ({trainable:,} trainable), "
          f"{model.count_macs() / 1e6:,.1f}M multiply-adds per image at {model.input_shape[1:]}")
    return 0


def _cmd_presets(args) -> int:
    from keras_resnet.presets import PRESET_NAMES

    if not args.count:
        for name in PRESET_NAMES:
            print(name)
        return 0
    import_keras(args.verbose)
    from keras_resnet.models import preset_table

    print_table(preset_table(clear_session=True))
    return 0


def _cmd_diagnose(args) -> int:
    source = args.model
    is_file = source.endswith(".keras") or os.sep in source
    if is_file and not os.path.isfile(source):
        raise UsageError(f"model file {source!r} does not exist")
    overrides = model_overrides(args)
    if not is_file:
        check_preset(source, overrides)
    if is_file and overrides:
        raise UsageError(f"architecture overrides ({', '.join(sorted(overrides))}) apply to presets, not to the model file {source!r}")
    import_keras(args.verbose)
    from keras_resnet.diagnostics import run_diagnosis

    report = run_diagnosis(source, dataset=args.dataset, batch=args.batch, seed=args.seed, set_global_seed=True,
                           bn_stats=args.bn_stats, plain=not args.no_plain, out=args.out, **overrides)
    results, meta = report["results"], report["meta"]
    if is_file and len(results) > 1:
        print(f"note: {list(results)[1]} is freshly initialised; {list(results)[0]} has the file's weights")
    columns = ["block", "reference", "residual_ratio", "cosine", "grad_norm", "weight_grad_norm", "response_std"]
    for name, rows in results.items():
        print(f"\n{name}")
        print_table(rows, columns)
    print(f"\nGradient highway: loss-gradient norm at the first and last block "
          f"(BatchNorm on {meta['bn_statistics']} statistics, {meta['data']} batch of {meta['batch']})")
    print_table(report["summary"])
    print(f"\nwrote {report['json']} and {report['png']}")
    return 0


def _unfreeze(value: str) -> str | int:
    """``--unfreeze``: ``all`` or a number of stages (checked by TrainConfig)."""
    return int(value) if value.strip().lstrip("-").isdigit() else value


def _cmd_train(args) -> int:
    backend = select_backend(args)
    check_preset(args.model or "resnet20", model_overrides(args))
    from keras_resnet.data import check_dataset
    from keras_resnet.training import TrainConfig, check_cluster

    # Everything is validated before TensorFlow starts (seconds), so bad arguments fail at once.
    config = TrainConfig(
        epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, momentum=args.momentum,
        nesterov=args.nesterov, weight_decay=args.weight_decay, schedule=args.schedule,
        warmup_steps=args.warmup_steps, label_smoothing=args.label_smoothing,
        image_size=args.image_size, validation_split=args.validation_split,
        augment=not args.no_augment, augmentation=args.augmentation, flip=args.flip, data_dir=args.data_dir,
        bad_files="skip" if args.skip_bad_files else "error", seed=args.seed,
        mixed_precision=args.mixed_precision, jit_compile=args.jit_compile,
        steps_per_execution=args.steps_per_execution, strategy=args.strategy,
        tensorboard=args.tensorboard, weights=args.weights, freeze_epochs=args.freeze_epochs,
        unfreeze=_unfreeze(args.unfreeze), finetune_lr_factor=args.finetune_lr_factor,
        freeze_batchnorm=args.freeze_batchnorm, num_processes=args.num_processes, process_id=args.process_id,
        coordinator=args.coordinator,
    ).validate()
    check_dataset(args.dataset, args.data_dir)
    from keras_resnet import distributed

    cluster = distributed.resolve(config)
    distributed.check_backend(cluster, backend)
    overrides = model_overrides(args)
    if args.weights is not None and args.weights.endswith(".keras") and args.model is not None:
        raise UsageError(f"--model {args.model} does not apply with --weights {args.weights}: the architecture "
                         "comes from the .keras file")
    from keras_resnet.finetune import check_train_arguments

    model = args.model or "resnet20"
    check_train_arguments(model, overrides, config)
    if backend == "jax" and args.strategy not in (None, "default"):
        raise UsageError(f"--strategy {args.strategy} is a tf.distribute strategy: it needs --backend tensorflow")
    if check_cluster(config) and args.strategy in (None, "multi_worker") and backend == "tensorflow":
        from keras_resnet.training import distribution_strategy

        # Collective ops must be configured before TensorFlow's first operation (import_keras runs one).
        with silenced_stderr(not args.verbose):
            distribution_strategy("multi_worker")
    import_keras(args.verbose, backend)
    from keras_resnet.runs import TrainingDiverged
    from keras_resnet.training import train

    try:
        result = train(model, args.dataset, config, out=args.out, verbose=args.progress,
                       overwrite=args.overwrite, set_global_seed=True, **overrides)
    except TrainingDiverged as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 1
    m = result.metrics
    print()
    print_table([{
        "model": m["model"], "dataset": m["dataset"], "epochs": m["epochs"], "best epoch": m["best_epoch"],
        "test accuracy": round(m["test_accuracy"], 4), "test loss": round(m["test_loss"], 4),
        "params": m["params"], "seconds": round(m["seconds"], 1),
    }])
    if m["device"].get("is_chief", True):
        print(f"\nwritten to {args.out}: model.keras, history.csv, curves.png, metrics.json")
    else:
        print(f"\nprocess {cluster.process_id} of {cluster.num_processes}: process 0 writes {args.out}")
    return 0


def _cmd_export(args) -> int:
    if not os.path.isfile(args.model):
        raise UsageError(f"model file {args.model!r} does not exist")
    tflite = args.tflite or ()
    if "int8" in tflite and not args.dataset:
        raise UsageError("--tflite int8 needs --dataset: full-integer quantization calibrates on training images")
    if args.onnx:
        from keras_resnet.onnx_export import INSTALL_HINT, missing_packages

        if missing_packages():
            raise UsageError(f"--onnx needs {', '.join(missing_packages())}: {INSTALL_HINT}")
    if args.metadata and not tflite:
        raise UsageError("--metadata writes TFLite Metadata into the TFLite files; add --tflite QUANT")
    if args.metadata and "int8" in tflite and args.int8_io == "int8":
        raise UsageError("--metadata is for MediaPipe's ImageClassifier, which refuses int8 input; "
                         "use --int8-io uint8 or float32")
    import_keras(args.verbose)
    from keras_resnet.litert import ExportError
    from keras_resnet.pipeline import export_trained

    if not args.dataset:
        print("note: no --dataset; verifying parity on random images (no accuracy figures)")
    try:
        with replayed_warnings(args.verbose):
            records = export_trained(
                args.model, args.name, base=args.base, version=args.export_version, tflite=tflite,
                dataset=args.dataset, data_dir=args.data_dir, int8_io=args.int8_io,
                keep_failed=args.keep_failed, calibration_samples=args.calibration_samples, onnx=args.onnx,
                metadata=args.metadata,
            )
    except ExportError as e:
        print(f"{PROG}: export failed, nothing was written: {e}", file=sys.stderr)
        return 1
    _print_export_report(records, os.path.join(args.base, args.name, "export_report.json"))
    return 0 if all(r["passed"] for r in records) else 1


def _print_export_report(records: list[dict], report_path: str) -> None:
    rows = [{**r, "path": r["path"] or "(not kept)", "latency_ms": round(r["latency_ms"], 3)} for r in records]
    print_table(rows, ["format", "path", "size_bytes", "max_abs_diff", "top1_agreement", "accuracy", "latency_ms", "passed"])
    for r in records:
        if r["failures"]:
            print(f"{r['format']} failed: {'; '.join(r['failures'])}")
    print(f"\nreport: {report_path}")


def _cmd_demo(args) -> int:
    import_keras(args.verbose)
    from keras_resnet.pipeline import DemoSettings, demo

    settings = DemoSettings.quick() if args.quick else DemoSettings()
    with replayed_warnings(args.verbose):
        result = demo(out=args.out, base=args.base, name=args.name, settings=settings, seed=args.seed,
                      verbose=args.progress, set_global_seed=True, freeze_gc=True)
    search = result["search"]
    print("\nSearch (grid over depth x shortcut type; validation accuracy):")
    print_table(sorted(search.rows, key=lambda r: -(r["score"] or 0)),
                ["trial", "depth", "shortcut", "version", "score", "epochs", "params", "seconds"])
    print(f"\nBest: depth {search.best['depth']}, shortcut {search.best['shortcut']}, "
          f"retrained for {settings.train_epochs} epochs: test accuracy {search.test_accuracy:.4f}")
    print("\nExported and verified against the Keras model on the 360 test digits:")
    _print_export_report(result["report"], os.path.join(args.base, args.name, "export_report.json"))
    took = ", ".join(f"{k} {v:.0f} s" for k, v in result["seconds"].items())
    print(f"\nsearch, trials and training: {args.out}/   exports: {args.base}/{args.name}/   ({took})")
    print(f"serve them: keras-resnet serve {args.base}")
    return 0 if all(r["passed"] for r in result["report"]) else 1


def _cmd_serve(args) -> int:
    if not os.path.isdir(args.base):
        raise UsageError(f"model base folder {args.base!r} does not exist")
    # The numbers are checked before TensorFlow starts and the models load.
    for flag, value, low in (("--port", args.port, 0), ("--max-body-mb", args.max_body_mb, 1), ("--workers", args.workers, 1),
                             ("--max-batch-size", args.max_batch_size, 1),
                             ("--batch-timeout-micros", args.batch_timeout_micros, 0)):
        if value < low or (flag == "--port" and value > 65535):
            allowed = "in [0, 65535]" if flag == "--port" else f">= {low}"
            raise UsageError(f"{flag} must be an integer {allowed}; received {value}")
    for flag, value in (("--idle-timeout", args.idle_timeout), ("--body-timeout", args.body_timeout)):
        if not value > 0 or value == float("inf"):
            raise UsageError(f"{flag} must be a number of seconds > 0; received {value}")
    # Until the server is up, Ctrl+C exits with status 130 (see main) and SIGTERM ends the process.
    print(f"loading the models under {args.base} ...", flush=True)
    import_keras(args.verbose)
    from keras_resnet import serving

    try:
        server = serving.serve(
            args.base, port=args.port, host=args.host, max_body_bytes=args.max_body_mb * 2**20,
            version_policy=args.version_policy, block=False, workers=args.workers,
            idle_connection_timeout=args.idle_timeout, body_timeout=args.body_timeout,
            batching=args.enable_batching, max_batch_size=args.max_batch_size,
            batch_timeout_micros=args.batch_timeout_micros,
        )
    except OSError as e:  # the port is taken, or the host is not this machine's
        raise UsageError(str(e)) from None
    # From here on, SIGINT and SIGTERM stop the server cleanly: status 0.
    with server.stop_on_signals():
        for name in sorted(server.repository.models):
            versions = ", ".join(map(str, server.repository.versions(name)))
            print(f"{name} (versions {versions}): {server.url}/v1/models/{name}:predict")
        batching = (f"batching up to {args.max_batch_size} examples, waiting {args.batch_timeout_micros} us; "
                    if args.enable_batching else "")
        print(f"serving {args.base} at {server.url} with {args.workers} worker threads; {batching}"
              "Ctrl+C or SIGTERM stops", flush=True)
        server.wait()
    print("stopped", flush=True)
    return 0


def _cmd_predict(args) -> int:
    from keras_resnet.predict import read_class_names, resolve_model

    # The model's kind, the labels file and the numbers are checked before TensorFlow starts.
    for flag, value in (("--top-k", args.top_k), ("--batch-size", args.batch_size)):
        if value < 1:
            raise UsageError(f"{flag} must be >= 1; received {value}")
    source = resolve_model(args.model)
    labels = read_class_names(args.labels) if args.labels else None
    import_keras(args.verbose)
    from keras_resnet.predict import predict

    with replayed_warnings(args.verbose):  # hides the TFLite runtime's delegate lines
        results = predict(source, args.images, top_k=args.top_k, labels=labels, fit=args.fit,
                          batch_size=args.batch_size)
    failed = [r for r in results if r.error]
    if args.json:
        print(json.dumps([r.to_dict() for r in results], indent=2))
    else:
        rows = []
        for r in results:
            if r.error:
                rows.append({"image": r.path, "rank": "", "class": "(unreadable)", "probability": ""})
            for rank, (name, p) in enumerate(r.top_k, 1):
                rows.append({"image": r.path if rank == 1 else "", "rank": rank, "class": name,
                             "probability": f"{p:.4f}"})
        print_table(rows)
    for r in failed:
        print(f"{PROG}: {r.error}", file=sys.stderr)
    return 1 if failed else 0


def _cmd_tune(args) -> int:
    backend = select_backend(args)
    if backend != "tensorflow" and args.export:
        raise UsageError(f"--export runs on TensorFlow; tune with --backend {backend}, then export "
                         f"{os.path.join(args.out, 'best_model.keras')} with keras-resnet export")
    if backend != "tensorflow" and args.distribution:
        raise UsageError(f"--distribution {args.distribution} is a tf.distribute strategy: it needs --backend tensorflow")
    config = TrainConfig(batch_size=args.batch_size, image_size=args.image_size, seed=args.seed,
                         data_dir=args.data_dir).validate()
    from keras_resnet.data import check_dataset

    check_dataset(args.dataset, args.data_dir)
    # SearchSpace lives with KerasTuner, which imports TensorFlow: start it quietly first.
    import_keras(args.verbose, backend)
    from keras_resnet.tuning import SearchSpace, search

    space = SearchSpace(
        style=args.style, depths=args.depths, shortcuts=args.shortcuts, versions=args.block_versions,
        width_multipliers=args.widths, zero_init=args.zero_init,
        lr=tuple(args.lr_range) if args.lr_range else None,
        weight_decay=tuple(args.wd_range) if args.wd_range else None, batch_sizes=args.batch_sizes,
    ).validate()
    options = dict(
        tuner=args.tuner, space=space, config=config, max_epochs=args.max_epochs, max_trials=args.max_trials,
        factor=args.factor, seed=args.seed, retrain=not args.no_retrain, overwrite=args.overwrite,
        distribution=args.distribution, verbose=args.progress, set_global_seed=True, freeze_gc=True,
    )
    report = None
    if args.export:
        from keras_resnet.pipeline import tune_and_export

        with replayed_warnings(args.verbose):
            outcome = tune_and_export(args.dataset, args.out, args.export_name, base=args.export_base, **options)
        result, report = outcome["search"], outcome["report"]
    else:
        result = search(args.dataset, args.out, **options)
    if not result.rows:
        print("worker finished: the chief writes the results")
        return 0
    top = sorted((r for r in result.rows if r["score"] is not None), key=lambda r: -r["score"])[: args.top]
    print()
    print_table(top)
    if result.test_accuracy is not None:
        print(f"\nbest configuration retrained for {args.max_epochs} epochs: test accuracy "
              f"{result.test_accuracy:.4f} -> {os.path.join(args.out, 'best_model.keras')}")
    print(f"trials: {os.path.join(args.out, 'trials.csv')}, plot: {os.path.join(args.out, 'search.png')}")
    if report is not None:
        print("\nExported and verified against the Keras model:")
        _print_export_report(report, os.path.join(args.export_base, args.export_name, "export_report.json"))
        return 0 if all(r["passed"] for r in report) else 1
    return 0


def _experiment_config(args):
    from keras_resnet.training import TrainConfig

    return TrainConfig(
        batch_size=args.batch_size, lr=args.lr, warmup_steps=args.warmup_steps, image_size=args.image_size,
        data_dir=args.data_dir,
    ).validate()


def _run_experiment(args, function, kwargs: dict, files: str) -> int:
    """Validates (no TensorFlow), lists the runs on --dry-run, else runs and prints the tables."""
    from keras_resnet import experiments

    backend = select_backend(args)
    planned = function(**kwargs, dry_run=True)
    if args.dry_run:
        print_table(planned)
        return 0
    import_keras(args.verbose, backend)
    from keras_resnet.runs import TrainingDiverged

    try:
        records = function(**kwargs)
    except TrainingDiverged as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 1
    print()
    print_table([{**{k: r[k] for k in ("run", "model", "params", "seconds")},
                  "train err %": round(100 * r["train_error"], 2), "test err %": round(100 * r["test_error"], 2)}
                 for r in records])
    summary = experiments.summarize(records)
    if any(row["seeds"] > 1 for row in summary):
        print()
        print_table([{k: row[k] for k in ("shortcut", "version", "depth", "seeds")} | {
            f"{key} % {stat}": round(100 * row[f"{key}_{stat}"], 2)
            for key in ("train_error", "test_error") for stat in ("mean", "min", "max")} for row in summary])
    print(f"\nwritten to {args.out}: {files}")
    return 0


def _cmd_degradation(args) -> int:
    from keras_resnet import experiments

    return _run_experiment(args, experiments.degradation, dict(
        dataset=args.dataset, depths=args.depths, seeds=args.seeds, epochs=args.epochs, out=args.out,
        shortcut=args.shortcut, version=args.block_version, config=_experiment_config(args),
        augment=args.augment, width_multiplier=args.width_multiplier, block=args.block, responses=not args.no_responses,
        verbose=args.progress, set_global_seed=True, clear_session=True,
    ), "results.json, results.csv, degradation.png" + ("" if args.no_responses else ", responses.json, responses.png"))


def _cmd_shortcuts(args) -> int:
    from keras_resnet import experiments

    return _run_experiment(args, experiments.compare_shortcuts, dict(
        dataset=args.dataset, depth=args.depth, shortcuts=args.shortcuts, versions=args.block_versions,
        seeds=args.seeds, epochs=args.epochs, out=args.out, config=_experiment_config(args),
        augment=args.augment, width_multiplier=args.width_multiplier, block=args.block, verbose=args.progress,
        set_global_seed=True, clear_session=True,
    ), "results.json, results.csv, shortcuts.png")


def _cmd_very_deep(args) -> int:
    from keras_resnet import experiments

    return _run_experiment(args, experiments.very_deep, dict(
        dataset=args.dataset, depth=args.depth, plain_depth=args.plain_depth or None, shortcut=args.shortcut,
        seeds=args.seeds, epochs=args.epochs, out=args.out, config=_experiment_config(args), augment=args.augment,
        width_multiplier=args.width_multiplier, block=args.block, verbose=args.progress, set_global_seed=True,
        clear_session=True,
    ), "results.json, results.csv, very_deep.png")


def _add_experiment_arguments(p: argparse.ArgumentParser, function) -> None:
    """The arguments both experiments share; defaults from ``function`` and the experiments' tables."""
    from keras_resnet.experiments import (
        DEFAULT_AUGMENT,
        DEFAULT_IMAGE_SIZE,
        EXPERIMENT_EPOCHS,
        EXPERIMENT_WARMUP_FRACTION,
    )

    seeds = _default(function, "seeds")
    width = _default(function, "width_multiplier")
    no_augment = ", ".join(d for d, on in DEFAULT_AUGMENT.items() if not on)
    p.add_argument("--dataset", default=_default(function, "dataset"),
                   help="digits (offline, default) or a TFDS name such as cifar10")
    p.add_argument("--out", required=True, help="the experiment's folder (rerun to resume)")
    p.add_argument("--seeds", type=int, nargs="+", default=seeds, help=f"one run per net and seed (default {_listed(seeds)})")
    p.add_argument("--epochs", type=int, help=f"{_epochs_help(EXPERIMENT_EPOCHS)} (for cifar10 the paper's 64k iterations)")
    p.add_argument("--width-multiplier", type=float, default=width, help=f"scale every width (default {width:g})")
    p.add_argument("--block", choices=BLOCK_TYPES, help="block type (default: basic for 6n+2 depths, bottleneck for 9n+2 ones)")
    p.add_argument("--image-size", type=int, help="resize images (default: "
                   f"{', '.join(f'{n} for {d}' for d, n in DEFAULT_IMAGE_SIZE.items())}, native otherwise)")
    p.add_argument("--batch-size", type=int, help=f"default {PAPER_BATCH_SIZE}")
    p.add_argument("--lr", type=float, help=LR_HELP)
    p.add_argument("--warmup-steps", type=int, help=f"steps at lr / 10 first (default {_percent(EXPERIMENT_WARMUP_FRACTION)} "
                   f"of training, at most {MAX_WARMUP_STEPS})")
    p.add_argument("--augment", action=argparse.BooleanOptionalAction, default=None,
                   help=f"pad-and-crop (and flips where they keep the class); default: off for {no_augment}, on otherwise")
    p.add_argument("--data-dir", help="TFDS data directory")
    p.add_argument("--progress", type=int, choices=(0, 1, 2), default=2,
                   help="Keras output: 0 none, 1 progress bars, 2 one line per epoch (default)")
    p.add_argument("--dry-run", action="store_true", help="validate and list the runs, train nothing")
    add_backend_arguments(p)


def _add_summary_parser(sub) -> None:
    p = _add_parser(sub, "summary", help="print a model's layers, parameters and multiply-adds")
    p.add_argument("model", help="a preset name, e.g. resnet20, plain56, resnet50")
    p.add_argument("--expand", action="store_true", help="expand the blocks' inner layers")
    add_model_arguments(p)
    p.set_defaults(func=_cmd_summary)


def _add_presets_parser(sub) -> None:
    p = _add_parser(sub, "presets", help="list the named variants")
    p.add_argument("--count", action="store_true", help="build each one and show parameters and multiply-adds")
    p.set_defaults(func=_cmd_presets)


def _add_diagnose_parser(sub) -> None:
    p = _add_parser(
        sub, "diagnose",
        help="measure identity closeness, gradient norms and response std per residual block",
        description="Per residual block: ||F(x)||/||x|| and cosine(output, input), the loss-gradient "
        "norm at the block's input, and the std of F(x) (the ResNet paper's Figure 7); a preset is "
        "compared with its plain twin (shortcut='none', same initial weights).",
    )
    datasets, statistics = defaults.DIAGNOSIS_DATASETS, defaults.BN_STATISTICS
    p.add_argument("model", help="a preset name (e.g. resnet110) or the path of a .keras file")
    p.add_argument("--batch", type=int, default=32, help="images in the measured batch (default 32)")
    p.add_argument("--seed", type=int, default=0, help="seeds the initial weights and the data (default 0)")
    p.add_argument("--dataset", choices=datasets, default=datasets[0], help=f"the measured images (default {datasets[0]})")
    p.add_argument("--bn-stats", choices=statistics, default=statistics[0],
                   help="BatchNorm on batch or moving statistics; auto (default): batch for a fresh preset, moving for a file")
    p.add_argument("--no-plain", action="store_true", help="skip the plain twin")
    p.add_argument("--out", default=os.path.join("runs", "diagnose"), help="folder for diagnostics.json and .png (default runs/diagnose)")
    add_model_arguments(p)
    p.set_defaults(func=_cmd_diagnose)


def _add_train_parser(sub) -> None:
    c = TrainConfig
    drops = " and ".join(_percent(m, escape=False) for m in c.milestones)
    p = _add_parser(
        sub, "train", help="train with the ResNet paper's recipe; resumes after a crash",
        description=f"Train a preset with the ResNet paper's recipe (SGD, momentum {c.momentum:g}, lr "
        f"{PAPER_LR:g} per {PAPER_BATCH_SIZE} images, weight decay {c.weight_decay:g}, rate / 10 at {drops}). "
        "Writes model.keras (best by validation accuracy), history.csv, curves.png and metrics.json into "
        "--out; the same command after a crash continues from the last finished epoch.",
    )
    p.add_argument("--model", help="a preset name (default: resnet20)")
    p.add_argument("--dataset", default=DIGITS,
                   help="digits (offline, default), a TFDS name (cifar10, mnist, ... or tfds:NAME), or an image folder")
    p.add_argument("--out", required=True, help="the run's folder")
    g = p.add_argument_group(
        "fine-tuning", "start from pretrained weights with a new head for the dataset's classes: phase 1 trains the "
        "head (backbone frozen), phase 2 the unfrozen stages at a lower rate; the weights' preprocessing goes "
        "into the model")
    g.add_argument("--weights", metavar="PATH|imagenet",
                   help="imagenet (keras.applications' weights for resnet50/101/152; offline, place the file in "
                   "~/.keras/models), a .weights.h5 file, or a .keras model of this package (e.g. a run's model.keras)")
    g.add_argument("--freeze-epochs", type=int, metavar="N", help="phase 1's epochs (default: half of --epochs)")
    g.add_argument("--unfreeze", default=c.unfreeze, metavar="all|K",
                   help=f"what phase 2 trains: all, or the last K stages (default {c.unfreeze})")
    g.add_argument("--finetune-lr-factor", type=float, default=c.finetune_lr_factor, metavar="F",
                   help=f"phase 2's learning rate is F times --lr (default {c.finetune_lr_factor:g})")
    g.add_argument("--freeze-batchnorm", action="store_const", const=True, default=None,
                   help="keep every BatchNorm layer frozen in phase 2 (inference mode, the pretrained statistics); "
                   "by default those of the unfrozen stages train with them")
    p.add_argument("--epochs", type=int, help=f"{_epochs_help(DEFAULT_EPOCHS)} (the paper's)")
    p.add_argument("--batch-size", type=int, help=f"global batch size (default {PAPER_BATCH_SIZE})")
    p.add_argument("--lr", type=float, help=LR_HELP)
    p.add_argument("--momentum", type=float, default=c.momentum, help=f"SGD momentum (default {c.momentum:g})")
    p.add_argument("--nesterov", action="store_true", default=c.nesterov, help="Nesterov momentum")
    p.add_argument("--weight-decay", type=float, default=c.weight_decay,
                   help=f"coupled L2 weight decay (default {c.weight_decay:g})")
    p.add_argument("--schedule", choices=SCHEDULES, default=c.schedule, help=f"learning-rate schedule (default {c.schedule})")
    p.add_argument("--warmup-steps", type=int,
                   help=f"steps at lr / 10 first (default min({MAX_WARMUP_STEPS}, {_percent(WARMUP_FRACTION)} of training))")
    p.add_argument("--label-smoothing", type=float, default=c.label_smoothing, help=f"default {c.label_smoothing:g}")
    p.add_argument("--image-size", type=int, help=f"resize images (default: {DIGITS_IMAGE_SIZE} for digits, native otherwise)")
    p.add_argument("--validation-split", type=float,
                   help=f"fraction of training images for validation (default {DEFAULT_VALIDATION_SPLIT:g})")
    p.add_argument("--no-augment", action="store_true", help="no augmentation (the same as --augmentation none)")
    p.add_argument("--augmentation", choices=AUGMENTATIONS,
                   help="cifar: pad, random crop, flip; imagenet: random-resized-crop (8-100%% of the area, aspect "
                   "3/4-4/3) and flip, evaluated on the centre 87.5%%; default: imagenet for ImageNet-style models "
                   "and images of 64 px and up, cifar otherwise")
    p.add_argument("--flip", action=argparse.BooleanOptionalAction, default=c.flip,
                   help="random horizontal flips (default: per dataset; never for digits)")
    p.add_argument("--data-dir", help="TFDS data directory")
    p.add_argument("--skip-bad-files", action="store_true",
                   help="an image folder's unreadable files are dropped and listed in OUT/skipped_files.txt "
                   "(default: the first one stops training with an error naming it)")
    p.add_argument("--seed", type=int, default=c.seed, help=f"seeds weights, shuffling and augmentation (default {c.seed})")
    p.add_argument("--mixed-precision", action=argparse.BooleanOptionalAction, default=c.mixed_precision,
                   help="default: on for GPUs with compute capability >= 7, off on CPU")
    p.add_argument("--jit-compile", action=argparse.BooleanOptionalAction, default=c.jit_compile,
                   help="XLA (default: on for one GPU, off on CPU; always on with --backend jax)")
    p.add_argument("--steps-per-execution", type=int, help="default: up to 32 for small models on GPUs, else 1")
    p.add_argument("--strategy", choices=STRATEGIES, default=c.strategy,
                   help="tensorflow only; default: multi_worker with TF_CONFIG, mirrored with several GPUs")
    p.add_argument("--tensorboard", action="store_true", default=c.tensorboard, help="write TensorBoard logs to OUT/logs")
    g = p.add_argument_group("several processes (jax: keras.distribution, data parallel; see docs/backends.md)")
    g.add_argument("--num-processes", type=int, metavar="N",
                   help="processes of the run, each started with the same command and its own --process-id "
                   "(default: KERAS_DISTRIBUTION_NUM_PROCESSES, else 1); --batch-size stays the global batch")
    g.add_argument("--process-id", type=int, metavar="I",
                   help="this process's rank in [0, N); process 0 writes --out (default: KERAS_DISTRIBUTION_PROCESS_ID)")
    g.add_argument("--coordinator", metavar="HOST:PORT",
                   help="process 0's address, where it listens (default: KERAS_DISTRIBUTION_JOB_ADDRESSES)")
    p.add_argument("--overwrite", action="store_true", help="delete a previous run in --out and start over")
    p.add_argument("--progress", type=int, choices=(0, 1, 2), default=1,
                   help="Keras output: 0 none, 1 progress bars (default), 2 one line per epoch")
    add_model_arguments(p)
    add_backend_arguments(p)
    p.set_defaults(func=_cmd_train)


def _add_export_parser(sub) -> None:
    p = _add_parser(
        sub, "export", help="write a SavedModel (TF Serving layout) and TFLite files, verified",
        description="Export a trained .keras model to BASE/NAME/VERSION/ (SavedModel with class names and "
        "warm-up requests), BASE/NAME/tflite/NAME_VERSION_QUANT.tflite and with --onnx "
        "BASE/NAME/onnx/NAME_VERSION.onnx, verify every artifact against "
        "the Keras model, keep what passes and write BASE/NAME/export_report.json. Exit status 1 when "
        "an artifact fails its check.",
    )
    io_types, samples = defaults.INT8_IO_TYPES, defaults.DEFAULT_CALIBRATION_SAMPLES
    p.add_argument("model", help="the .keras file (raw pixels in, probabilities out)")
    p.add_argument("--name", required=True, help="the served model's name (the folder under --base)")
    p.add_argument("--base", default=defaults.MODEL_BASE, help=f"model base folder (default {defaults.MODEL_BASE})")
    p.add_argument("--export-version", type=int, metavar="N", help="the integer version to write (default: the next free one)")
    p.add_argument("--tflite", nargs="+", choices=defaults.QUANTIZATIONS, metavar="QUANT",
                   help=f"TFLite variants: any of {_listed(defaults.QUANTIZATIONS)} (default: none)")
    p.add_argument("--int8-io", choices=io_types, default=io_types[0], metavar="TYPE",
                   help=f"input/output type of the int8 file: {', '.join(io_types)} (default {io_types[0]})")
    p.add_argument("--dataset", help="dataset for int8 calibration (train split) and verification (test split), e.g. digits")
    p.add_argument("--data-dir", help="TFDS data directory")
    p.add_argument("--calibration-samples", type=int, default=samples, metavar="N",
                   help=f"training images that calibrate int8 (default {samples})")
    p.add_argument("--keep-failed", action="store_true", help="keep failed artifacts under a .failed name")
    p.add_argument("--onnx", action="store_true",
                   help="also write BASE/NAME/onnx/NAME_VERSION.onnx, verified with ONNX Runtime "
                   "(needs the onnx extra: pip install \"keras-residual[onnx]\")")
    p.add_argument("--metadata", action="store_true",
                   help="write TFLite Metadata (RGB input, normalisation, labels.txt) into the TFLite files, so "
                   "MediaPipe's ImageClassifier runs them; grey models then take RGB images")
    p.set_defaults(func=_cmd_export)


def _add_serve_parser(sub) -> None:
    p = _add_parser(
        sub, "serve", help="serve exported models over TF Serving's REST API",
        description="Serve the SavedModels under BASE (BASE/NAME/VERSION/) at /v1/models/NAME[:predict], "
        "speaking TF Serving's REST API.",
    )
    port, body_mb, policies = defaults.DEFAULT_PORT, defaults.DEFAULT_MAX_BODY_BYTES // 2**20, defaults.VERSION_POLICIES
    p.add_argument("base", nargs="?", default=defaults.MODEL_BASE, help=f"model base folder (default {defaults.MODEL_BASE})")
    p.add_argument("--port", type=int, default=port, help=f"TCP port (default {port}, TF Serving's REST port; 0 picks one)")
    p.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1; 0.0.0.0 for all)")
    p.add_argument("--max-body-mb", type=int, default=body_mb, help=f"larger request bodies get 413 (default {body_mb})")
    p.add_argument("--version-policy", choices=policies, default=policies[0],
                   help=f"which versions of each model to load: all of them or the latest (default {policies[0]})")
    d = defaults
    p.add_argument("--workers", type=int, default=d.DEFAULT_WORKERS, metavar="N",
                   help=f"threads that run model calls (default {d.DEFAULT_WORKERS})")
    p.add_argument("--idle-timeout", type=float, default=d.DEFAULT_IDLE_CONNECTION_TIMEOUT, metavar="S",
                   help="seconds a client has to send a request's headers, also the idle keep-alive time "
                   f"(default {d.DEFAULT_IDLE_CONNECTION_TIMEOUT:g})")
    p.add_argument("--body-timeout", type=float, default=d.DEFAULT_BODY_TIMEOUT, metavar="S",
                   help=f"seconds a client has to send a request's body (default {d.DEFAULT_BODY_TIMEOUT:g})")
    p.add_argument("--enable-batching", action="store_true",
                   help="join concurrent :predict requests to one signature into one call (TF Serving's flag)")
    p.add_argument("--max-batch-size", type=int, default=d.DEFAULT_MAX_BATCH_SIZE, metavar="N",
                   help=f"with --enable-batching: most examples per call (default {d.DEFAULT_MAX_BATCH_SIZE})")
    p.add_argument("--batch-timeout-micros", type=int, default=d.DEFAULT_BATCH_TIMEOUT_MICROS, metavar="US",
                   help="with --enable-batching: how long a batch waits for more requests while a worker is free "
                   f"(default {d.DEFAULT_BATCH_TIMEOUT_MICROS})")
    p.set_defaults(func=_cmd_serve)


def _add_predict_parser(sub) -> None:
    from keras_resnet.defaults import DEFAULT_BATCH_SIZE, DEFAULT_TOP_K
    from keras_resnet.images import EVALUATION_CROP_MIN_SIZE, FITS

    p = _add_parser(
        sub, "predict", help="classify image files with a .keras, SavedModel, TFLite or ONNX model",
        description="Print each image's most probable classes. MODEL is a .keras file, a SavedModel folder, "
        "a BASE/NAME folder of versions (the latest is used), a .tflite or a .onnx file. Images are read as "
        "training's evaluation pipeline reads them. Unreadable images are named on stderr (and in the "
        "JSON), the others are still classified, and the exit status is 1.",
    )
    p.add_argument("model", metavar="MODEL", help="a .keras file, a SavedModel folder, a BASE/NAME folder, a .tflite or a .onnx file")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files (JPEG, PNG, BMP, GIF)")
    p.add_argument("--top-k", type=int, default=DEFAULT_TOP_K, metavar="K",
                   help=f"classes per image, at most the number of classes (default {DEFAULT_TOP_K})")
    p.add_argument("--labels", metavar="FILE",
                   help="class names, one per line (default: those saved with the model, else the class indices)")
    p.add_argument("--fit", choices=FITS,
                   help=f"how images are fitted to the model's size (default: center_crop from {EVALUATION_CROP_MIN_SIZE} px, "
                   "stretch below, as in evaluation)")
    p.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE, metavar="N",
                   help=f"images per model call (default {DEFAULT_BATCH_SIZE})")
    p.add_argument("--json", action="store_true", help="print JSON (one object per image) instead of a table")
    p.set_defaults(func=_cmd_predict)


def _add_tune_parser(sub) -> None:
    from keras_resnet.pipeline import SEARCH_EXPORT_NAME

    p = _add_parser(
        sub, "tune", help="KerasTuner search over depth, shortcut type and more; resumable",
        description="Search ResNet depth x shortcut type x block version (and optionally width, zero-init, "
        "learning rate, weight decay, batch size) with KerasTuner. Writes OUT/trials.csv, trials.json, "
        "search.png and best_model.keras (the best configuration retrained with the full budget). "
        "Rerunning with the same --out resumes. For several machines set KERASTUNER_TUNER_ID, "
        "KERASTUNER_ORACLE_IP and KERASTUNER_ORACLE_PORT (see the README).",
    )
    tuners, epochs, factor = defaults.TUNERS, defaults.SEARCH_EPOCHS, defaults.HYPERBAND_FACTOR
    c = TrainConfig
    p.add_argument("--dataset", default=DIGITS, help="digits (default), a TFDS name, or an image folder")
    p.add_argument("--out", required=True, help="the search's folder")
    p.add_argument("--tuner", choices=tuners, default=tuners[0], help=f"default {tuners[0]}")
    p.add_argument("--max-epochs", type=int, default=epochs,
                   help=f"Hyperband's largest budget; epochs per trial otherwise (default {epochs})")
    p.add_argument("--max-trials", type=int, help="trials for bayesian/random/grid (default: the space's size)")
    p.add_argument("--factor", type=int, default=factor, help=f"Hyperband's reduction factor (default {factor})")
    p.add_argument("--style", choices=STYLES, default=STYLES[0], help=f"default {STYLES[0]}")
    p.add_argument("--depths", type=int, nargs="+",
                   help=f"depth choices (default {_listed(defaults.CIFAR_DEPTHS)} for cifar, every depth for imagenet)")
    p.add_argument("--shortcuts", nargs="+", default=list(SHORTCUTS), help=f"shortcut choices (default: {_listed(SHORTCUTS)})")
    p.add_argument("--block-versions", nargs="+", choices=VERSIONS, default=list(VERSIONS),
                   help=f"block versions to search (default {_listed(VERSIONS)})")
    p.add_argument("--widths", type=float, nargs="+", help="width-multiplier choices (default: not searched)")
    p.add_argument("--zero-init", action="store_true", help="also search zero_init_residual")
    p.add_argument("--lr-range", type=float, nargs=2, metavar=("LOW", "HIGH"), help="search the learning rate (log scale)")
    p.add_argument("--wd-range", type=float, nargs=2, metavar=("LOW", "HIGH"), help="search weight decay (log scale)")
    p.add_argument("--batch-sizes", type=int, nargs="+", help="batch-size choices (default: not searched)")
    p.add_argument("--batch-size", type=int, help=f"the fixed batch size (default {PAPER_BATCH_SIZE})")
    p.add_argument("--image-size", type=int, help=f"resize images (default: {DIGITS_IMAGE_SIZE} for digits)")
    p.add_argument("--data-dir", help="TFDS data directory")
    p.add_argument("--seed", type=int, default=c.seed, help=f"default {c.seed}")
    p.add_argument("--distribution", choices=defaults.SEARCH_DISTRIBUTIONS, help="spread each trial over the visible GPUs")
    p.add_argument("--no-retrain", action="store_true", help="skip retraining the best configuration")
    p.add_argument("--overwrite", action="store_true", help="start afresh instead of resuming")
    p.add_argument("--top", type=int, default=10, help="trials to print (default 10)")
    p.add_argument("--export", action="store_true",
                   help=f"export the best model (SavedModel + {len(defaults.QUANTIZATIONS)} TFLite files), verified")
    p.add_argument("--export-name", default=SEARCH_EXPORT_NAME,
                   help=f"name under --export-base (default {SEARCH_EXPORT_NAME})")
    p.add_argument("--export-base", default=defaults.MODEL_BASE, help=f"default {defaults.MODEL_BASE}")
    p.add_argument("--progress", type=int, choices=(0, 1, 2), default=1, help="Keras verbosity (default 1)")
    add_backend_arguments(p)
    p.set_defaults(func=_cmd_tune)


def _add_degradation_parser(sub) -> None:
    from keras_resnet.experiments import degradation

    depths, shortcut, version = (_default(degradation, k) for k in ("depths", "shortcut", "version"))
    p = _add_parser(
        sub, "degradation", help="plain nets against ResNets of growing depth (the ResNet paper's Figure 6)",
        description="Train each depth as a plain net and as a ResNet with the same recipe, data and seed; "
        "write OUT/results.json, results.csv, degradation.png (training error per epoch) and the "
        "trained nets' residual responses (responses.json, responses.png; Figure 7). Finished runs "
        "in OUT/runs/ are reused: rerun the same command to resume.",
    )
    p.add_argument("--depths", type=int, nargs="+", default=depths, help=f"6n+2 depths (default {_listed(depths)})")
    p.add_argument("--shortcut", default=shortcut, help=f"the ResNets' shortcut: {_shortcut_help(exclude=('none',))} (default {shortcut})")
    p.add_argument("--block-version", choices=VERSIONS, default=version, help=f"the ResNets' block version (default {version})")
    p.add_argument("--no-responses", action="store_true", help="skip measuring the residual responses")
    _add_experiment_arguments(p, degradation)
    p.set_defaults(func=_cmd_degradation)


def _add_shortcuts_parser(sub) -> None:
    from keras_resnet.experiments import compare_shortcuts

    depth, shortcuts, versions = (_default(compare_shortcuts, k) for k in ("depth", "shortcuts", "versions"))
    p = _add_parser(
        sub, "shortcuts", help="shortcut types (and block versions) at one depth (the ResNet paper's Table 3)",
        description="Train one depth with each shortcut type (identity/A, projection/B, full_projection/C, "
        "none) and each of --block-versions, with the same recipe, data and seed; write OUT/results.json, "
        "results.csv and shortcuts.png (final training and test error). Rerun to resume.",
    )
    p.add_argument("--depth", type=int, default=depth, help=f"a 6n+2 depth (default {depth})")
    p.add_argument("--shortcuts", nargs="+", default=shortcuts, help=f"default: {_listed(shortcuts)}")
    p.add_argument("--block-versions", nargs="+", choices=VERSIONS, default=versions,
                   help=f"block versions of the nets with shortcuts (default {_listed(versions)})")
    _add_experiment_arguments(p, compare_shortcuts)
    p.set_defaults(func=_cmd_shortcuts)


def _add_very_deep_parser(sub) -> None:
    from keras_resnet.experiments import very_deep

    depth, plain, shortcut = (_default(very_deep, k) for k in ("depth", "plain_depth", "shortcut"))
    p = _add_parser(
        sub, "very-deep", help="pre-activation (v2) against v1 in a 1001-layer ResNet, and a plain net (the "
        "pre-activation paper)", description="Train --depth as a v2 and a v1 ResNet, then --plain-depth as a "
        "plain net, with the same recipe, data and seed; write OUT/results.json, results.csv and very_deep.png "
        "(training error and loss per epoch). Rerun to resume.",
    )
    p.add_argument("--depth", type=int, default=depth, help=f"the ResNets' depth (default {depth}: bottleneck blocks)")
    p.add_argument("--plain-depth", type=int, default=plain, help=f"the plain net's depth, 0 for none (default {plain})")
    p.add_argument("--shortcut", default=shortcut, help=f"the ResNets' shortcut: {_shortcut_help(exclude=('none',))} (default {shortcut})")
    _add_experiment_arguments(p, very_deep)
    p.set_defaults(func=_cmd_very_deep)


def _cmd_transfer(args) -> int:
    from keras_resnet.transfer import digits_transfer

    kwargs = dict(seeds=args.seeds, shots=args.shots, pretrain_epochs=args.pretrain_epochs, epochs=args.epochs,
                  freeze_epochs=args.freeze_epochs, unfreeze=_unfreeze(args.unfreeze), lr=args.lr,
                  finetune_lr_factor=args.finetune_lr_factor, freeze_batchnorm=args.freeze_batchnorm,
                  batch_size=args.batch_size, depth=args.depth,
                  image_size=args.image_size, out=args.out, verbose=args.progress)
    digits_transfer(**kwargs, dry_run=True)  # validates before TensorFlow starts
    import_keras(args.verbose)
    result = digits_transfer(**kwargs)
    print()
    print_table([{"seed": r["seed"], "pretrained on 0-4": round(r["pretrain_accuracy"], 4),
                  "fine-tuned": round(r["finetune_accuracy"], 4), "from scratch": round(r["scratch_accuracy"], 4),
                  "gain (points)": round(100 * (r["finetune_accuracy"] - r["scratch_accuracy"]), 1)}
                 for r in result["records"]])
    s = result["summary"]
    print(f"\ntest accuracy on the digits 5-9 ({result['records'][0]['test_images']} images), {args.shots} training "
          f"images per class, mean +- std over {s['seeds']} seeds: fine-tuned {100 * s['finetune_accuracy_mean']:.1f} "
          f"+- {100 * s['finetune_accuracy_std']:.1f}%, from scratch {100 * s['scratch_accuracy_mean']:.1f} +- "
          f"{100 * s['scratch_accuracy_std']:.1f}%, gain {100 * s['gain_mean']:.1f} +- {100 * s['gain_std']:.1f} points")
    print(f"written to {os.path.join(args.out, 'results.json')}")
    return 0


def _add_transfer_parser(sub) -> None:
    from keras_resnet.transfer import digits_transfer

    d = {k: _default(digits_transfer, k) for k in (
        "seeds", "shots", "pretrain_epochs", "epochs", "freeze_epochs", "unfreeze", "finetune_lr_factor", "lr",
        "batch_size", "depth", "image_size", "out")}
    p = _add_parser(
        sub, "transfer", help="few-shot fine-tuning against training from scratch, on the offline digits",
        description="Pretrain a ResNet on the digits 0-4, then learn the digits 5-9 from a few images per class "
        "twice with the same recipe: fine-tuned from the pretrained model.keras (train --weights: head first, "
        "then all layers at a lower rate) and from scratch. Prints the test accuracy on 5-9 per seed and the "
        "mean +- std; writes OUT/results.json and the runs under OUT/runs/ (rerun to resume).",
    )
    p.add_argument("--out", default=d["out"], help=f"the experiment's folder (default {d['out']})")
    p.add_argument("--seeds", type=int, nargs="+", default=d["seeds"], help=f"default {_listed(d['seeds'])}")
    p.add_argument("--shots", type=int, default=d["shots"], help=f"training images per class of 5-9 (default {d['shots']})")
    p.add_argument("--pretrain-epochs", type=int, default=d["pretrain_epochs"],
                   help=f"epochs on the digits 0-4 (default {d['pretrain_epochs']})")
    p.add_argument("--epochs", type=int, default=d["epochs"], help=f"epochs of both runs on 5-9 (default {d['epochs']})")
    p.add_argument("--freeze-epochs", type=int, default=d["freeze_epochs"],
                   help=f"fine-tuning's epochs with the backbone frozen (default {d['freeze_epochs']})")
    p.add_argument("--unfreeze", default=d["unfreeze"], metavar="all|K", help=f"default {d['unfreeze']}")
    p.add_argument("--finetune-lr-factor", type=float, default=d["finetune_lr_factor"], metavar="F",
                   help=f"default {d['finetune_lr_factor']:g}")
    p.add_argument("--freeze-batchnorm", action="store_true",
                   help="fine-tuning's phase 2 keeps the BatchNorm layers frozen (by default they train)")
    p.add_argument("--lr", type=float, default=d["lr"], help=f"learning rate on 5-9 (default {d['lr']:g})")
    p.add_argument("--batch-size", type=int, default=d["batch_size"], help=f"default {d['batch_size']}")
    p.add_argument("--depth", type=int, default=d["depth"], help=f"6n+2 (default {d['depth']})")
    p.add_argument("--image-size", type=int, default=d["image_size"], help=f"default {d['image_size']}")
    p.add_argument("--progress", type=int, choices=(0, 1, 2), default=0, help="Keras verbosity (default 0)")
    p.set_defaults(func=_cmd_transfer)


def _add_demo_parser(sub) -> None:
    from keras_resnet.pipeline import demo

    out, base, name, seed, verbose = (_default(demo, k) for k in ("out", "base", "name", "seed", "verbose"))
    p = _add_parser(
        sub, "demo", help="the whole pipeline on the offline digits: search, train, export, verify",
        description="A grid search over depth x shortcut type on scikit-learn's digits, the best "
        f"configuration retrained with the paper's recipe, exported to a SavedModel and "
        f"{len(defaults.QUANTIZATIONS)} TFLite files, each verified against the Keras model. About 5 "
        "minutes on 2 CPU cores.",
    )
    p.add_argument("--out", default=out, help=f"search and training folder (default {out})")
    p.add_argument("--base", default=base, help=f"export base folder (default {base})")
    p.add_argument("--name", default=name, help=f"exported model name (default {name})")
    p.add_argument("--seed", type=int, default=seed, help=f"default {seed}")
    p.add_argument("--quick", action="store_true", help="tiny settings (a smoke run, as the tests do)")
    p.add_argument("--progress", type=int, choices=(0, 1, 2), default=2, help="Keras verbosity (default 2)")
    p.set_defaults(func=_cmd_demo)


def _cmd_identity_bias(args) -> int:
    from keras_resnet.identity_bias import identity_bias

    kwargs = dict(nets=args.nets, width_multiplier=args.width_multiplier, image_size=args.image_size,
                  batch=args.batch, seed=args.seed, set_global_seed=True, out=args.out)
    identity_bias(**kwargs, dry_run=True)  # validates before TensorFlow starts
    import_keras(args.verbose)
    report = identity_bias(**kwargs)
    blocks = {}
    for row in report["rows"]:
        blocks[row["net"]] = max(blocks.get(row["net"], 0), row["index"])
    print()
    print_table([{"net": f["net"], "blocks": blocks[f["net"]], "setting": f["setting"], "exponent": round(f["exponent"], 3),
                  "r2": round(f["r2"], 3), "predicted": round(f["predicted_exponent"], 3),
                  "stage 1": None if f["first_stage_exponent"] is None else round(f["first_stage_exponent"], 3)}
                 for f in report["fits"]])
    print(f"\nexponent: slope of log ||F(x)||/||x|| against log block index l over blocks {report['fits'][0]['first']}.., "
          "least squares (De & Smith: about -0.5 with BatchNorm, about 0 without); predicted: the same fit of the "
          f"variance count (option A's zero-padding included); stage 1: blocks of the first stage only. "
          f"{report['meta']['seconds']} s")
    print(f"wrote {report['json']} and {report['png']}")
    return 0


def _add_identity_bias_parser(sub) -> None:
    from keras_resnet.identity_bias import identity_bias

    d = {k: _default(identity_bias, k) for k in ("nets", "width_multiplier", "image_size", "batch", "seed", "out")}
    p = _add_parser(
        sub, "identity-bias", help="BatchNorm biases residual blocks towards the identity (De & Smith, 2020)",
        description="Build v2 CIFAR-style ResNets (option A shortcuts) at initialisation and measure ||F(x)||/||x|| "
        "per residual block on a batch of the digits, with BatchNorm (batch statistics) and without it (inference "
        "mode at initialisation, where BatchNorm does not normalise); fit the exponent of the power law in the block "
        "index (about -0.5 with BatchNorm, about 0 without). Writes OUT/identity_bias.json and identity_bias.png.",
    )
    p.add_argument("--nets", nargs="+", default=d["nets"], metavar="DEPTH[:BLOCK]",
                   help=f"6n+2 (basic) or 9n+2 (bottleneck) depths, e.g. 164:bottleneck (default {_listed(d['nets'])})")
    p.add_argument("--width-multiplier", type=float, default=d["width_multiplier"],
                   help=f"scale every width (default {d['width_multiplier']:g})")
    p.add_argument("--image-size", type=int, default=d["image_size"], help=f"digits resized to this (default {d['image_size']})")
    p.add_argument("--batch", type=int, default=d["batch"], help=f"images in the measured batch, >= 2 (default {d['batch']})")
    p.add_argument("--seed", type=int, default=d["seed"], help=f"seeds the initial weights and the batch (default {d['seed']})")
    p.add_argument("--out", default=d["out"], help=f"folder for the JSON file and the plot (default {d['out']})")
    p.set_defaults(func=_cmd_identity_bias)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Residual networks for Keras 3: build, train, study, search, export and serve.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--verbose", action="store_true", help="show TensorFlow's log lines")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add in (_add_summary_parser, _add_presets_parser, _add_diagnose_parser, _add_train_parser,
                _add_export_parser, _add_serve_parser, _add_predict_parser, _add_tune_parser, _add_degradation_parser,
                _add_shortcuts_parser, _add_very_deep_parser, _add_demo_parser, _add_transfer_parser):
        add(sub)
    _add_identity_bias_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (UsageError, ValueError) as e:
        # Library functions validate before any expensive work and raise ValueError with a
        # message that names the bad value; that is a usage error for the command line.
        # --verbose shows the traceback, for a ValueError that comes from deeper down.
        if getattr(args, "verbose", False) and not isinstance(e, UsageError):
            raise
        parser.exit(2, f"{PROG}: error: {e}\n")
    except KeyboardInterrupt:
        parser.exit(130, f"{PROG}: interrupted\n")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
