"""The ``keras-resnet`` command: argument parsing and calls into the library, nothing more.

Each subcommand is a ``_cmd_<name>(args)`` function added to ``build_parser``. Heavy
imports (TensorFlow, Keras, KerasTuner, matplotlib) happen inside the subcommands, so that
``keras-resnet --help`` answers at once, and TensorFlow's start-up log lines are hidden unless
``--verbose`` is given.
"""

from __future__ import annotations

import argparse
import os
import sys

from keras_resnet import __version__
from keras_resnet.console import (  # noqa: F401 - import_keras and print_table are used by callers of cli
    import_keras,
    print_table,
    replayed_warnings,
    silenced_stderr,
)

PROG = "keras-resnet"


class UsageError(Exception):
    """A bad command-line value found after parsing; reported like argparse's errors (exit 2)."""


# ---- shared argument groups ---------------------------------------------------------------

def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """Overrides of a preset's architecture, shared by every command that builds a model."""
    group = parser.add_argument_group("architecture overrides (default: the preset's)")
    group.add_argument("--shortcut", help="identity (A), projection (B), full_projection (C) or none")
    group.add_argument("--version", dest="resnet_version", metavar="{v1,v2}", help="v1 (post-activation) or v2 (pre-activation)")
    group.add_argument("--block", choices=("basic", "bottleneck"), help="residual block type")
    group.add_argument("--depth", type=int, help="network depth (6n+2 / 9n+2 for CIFAR style)")
    group.add_argument("--classes", type=int, help="number of classes of the classifier")
    group.add_argument("--input-shape", type=int, nargs=3, metavar=("H", "W", "C"), help="input height, width, channels")
    group.add_argument("--width-multiplier", type=float, help="scale every width")
    group.add_argument("--zero-init-residual", action="store_true", default=None, help="start every block as the identity")


def model_overrides(args: argparse.Namespace) -> dict:
    """The architecture overrides given on the command line, as ``ResNet`` keyword arguments."""
    names = {
        "shortcut": "shortcut", "resnet_version": "version", "block": "block", "depth": "depth",
        "classes": "classes", "input_shape": "input_shape", "width_multiplier": "width_multiplier",
        "zero_init_residual": "zero_init_residual",
    }
    out = {}
    for attr, key in names.items():
        value = getattr(args, attr, None)
        if value is not None:
            out[key] = tuple(value) if key == "input_shape" else value
    return out


def check_preset(name: str) -> str:
    """Validates a preset name without importing TensorFlow."""
    from keras_resnet.presets import PRESET_NAMES

    if name not in PRESET_NAMES:
        import difflib

        close = difflib.get_close_matches(name, PRESET_NAMES, n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise UsageError(f"unknown model {name!r}{hint}; choose from: {', '.join(PRESET_NAMES)}")
    return name


# ---- commands -------------------------------------------------------------------------------

def _cmd_summary(args) -> int:
    check_preset(args.model)
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

    print_table(preset_table())
    return 0


def _cmd_diagnose(args) -> int:
    source = args.model
    is_file = source.endswith(".keras") or os.sep in source
    if is_file and not os.path.isfile(source):
        raise UsageError(f"model file {source!r} does not exist")
    if not is_file:
        check_preset(source)
    overrides = model_overrides(args)
    if is_file and overrides:
        raise UsageError(f"architecture overrides ({', '.join(sorted(overrides))}) apply to presets, not to the model file {source!r}")
    import_keras(args.verbose)
    from keras_resnet.diagnostics import run_diagnosis

    report = run_diagnosis(source, dataset=args.dataset, batch=args.batch, seed=args.seed, bn_stats=args.bn_stats,
                           plain=not args.no_plain, out=args.out, **overrides)
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


def _cmd_train(args) -> int:
    check_preset(args.model)
    from keras_resnet.data import check_dataset
    from keras_resnet.training import TrainConfig, check_cluster

    # Everything is validated before TensorFlow starts (seconds), so bad arguments fail at once.
    config = TrainConfig(
        epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, momentum=args.momentum,
        nesterov=args.nesterov, weight_decay=args.weight_decay, schedule=args.schedule,
        warmup_steps=args.warmup_steps, label_smoothing=args.label_smoothing,
        image_size=args.image_size, validation_split=args.validation_split,
        augment=not args.no_augment, flip=args.flip, data_dir=args.data_dir, seed=args.seed,
        mixed_precision=args.mixed_precision, jit_compile=args.jit_compile,
        steps_per_execution=args.steps_per_execution, strategy=args.strategy,
        tensorboard=args.tensorboard,
    ).validate()
    check_dataset(args.dataset, args.data_dir)
    overrides = model_overrides(args)
    if check_cluster(config) and args.strategy in (None, "multi_worker"):
        from keras_resnet.training import distribution_strategy

        # Collective ops must be configured before TensorFlow's first operation (import_keras runs one).
        with silenced_stderr(not args.verbose):
            distribution_strategy("multi_worker")
    import_keras(args.verbose)
    from keras_resnet.training import TrainingDiverged, train

    try:
        result = train(args.model, args.dataset, config, out=args.out, verbose=args.progress,
                       overwrite=args.overwrite, **overrides)
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
    print(f"\nwritten to {args.out}: model.keras, history.csv, curves.png, metrics.json")
    return 0


def _cmd_export(args) -> int:
    if not os.path.isfile(args.model):
        raise UsageError(f"model file {args.model!r} does not exist")
    tflite = args.tflite or ()
    if "int8" in tflite and not args.dataset:
        raise UsageError("--tflite int8 needs --dataset: full-integer quantization calibrates on training images")
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
                keep_failed=args.keep_failed, calibration_samples=args.calibration_samples,
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
                      verbose=args.progress)
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
    # Until the server is up, Ctrl+C exits with status 130 (see main) and SIGTERM ends the process.
    print(f"loading the models under {args.base} ...", flush=True)
    import_keras(args.verbose)
    from keras_resnet import serving

    server = serving.serve(args.base, port=args.port, host=args.host, max_body_bytes=args.max_body_mb * 2**20,
                           version_policy=args.versions, block=False)
    # From here on, SIGINT and SIGTERM stop the server cleanly: status 0.
    with server.stop_on_signals():
        for name in sorted(server.repository.models):
            versions = ", ".join(map(str, server.repository.versions(name)))
            print(f"{name} (versions {versions}): {server.url}/v1/models/{name}:predict")
        print(f"serving {args.base} at {server.url}; Ctrl+C or SIGTERM stops", flush=True)
        server.wait()
    print("stopped", flush=True)
    return 0


def _cmd_tune(args) -> int:
    # The search space is checked against the model's rules, which live with Keras.
    import_keras(args.verbose)
    from keras_resnet.data import check_dataset
    from keras_resnet.training import TrainConfig
    from keras_resnet.tuning import SearchSpace

    # Validated before TensorFlow starts, so a bad search space fails at once.
    space = SearchSpace(
        style=args.style, depths=args.depths, shortcuts=args.shortcuts or SearchSpace.shortcuts,
        versions=args.versions or SearchSpace.versions, width_multipliers=args.widths,
        zero_init=args.zero_init, lr=tuple(args.lr_range) if args.lr_range else None,
        weight_decay=tuple(args.wd_range) if args.wd_range else None, batch_sizes=args.batch_sizes,
    ).validate()
    config = TrainConfig(batch_size=args.batch_size, image_size=args.image_size, seed=args.seed,
                         data_dir=args.data_dir).validate()
    check_dataset(args.dataset, args.data_dir)
    from keras_resnet.tuning import search

    result = search(
        args.dataset, args.out, tuner=args.tuner, space=space, config=config, max_epochs=args.max_epochs,
        max_trials=args.max_trials, factor=args.factor, seed=args.seed, retrain=not args.no_retrain,
        overwrite=args.overwrite, distribution=args.distribution, verbose=args.progress,
    )
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
    if args.export and result.best_model is not None:
        from keras_resnet.pipeline import export_trained

        with replayed_warnings(args.verbose):
            records = export_trained(os.path.join(args.out, "best_model.keras"), args.export_name,
                                     base=args.export_base, dataset=args.dataset, data_dir=args.data_dir)
        _print_export_report(records, os.path.join(args.export_base, args.export_name, "export_report.json"))
        return 0 if all(r["passed"] for r in records) else 1
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

    planned = function(**kwargs, dry_run=True)
    if args.dry_run:
        print_table(planned)
        return 0
    import_keras(args.verbose)
    from keras_resnet.training import TrainingDiverged

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
        shortcut=args.shortcut, version=args.resnet_version, config=_experiment_config(args),
        augment=args.augment, width_multiplier=args.width_multiplier, responses=not args.no_responses,
        verbose=args.progress,
    ), "results.json, results.csv, degradation.png" + ("" if args.no_responses else ", responses.json, responses.png"))


def _cmd_shortcuts(args) -> int:
    from keras_resnet import experiments

    return _run_experiment(args, experiments.compare_shortcuts, dict(
        dataset=args.dataset, depth=args.depth, shortcuts=args.shortcuts, versions=args.versions,
        seeds=args.seeds, epochs=args.epochs, out=args.out, config=_experiment_config(args),
        augment=args.augment, width_multiplier=args.width_multiplier, verbose=args.progress,
    ), "results.json, results.csv, shortcuts.png")


def _add_experiment_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", default="digits", help="digits (offline, default) or a TFDS name such as cifar10")
    p.add_argument("--out", required=True, help="the experiment's folder (rerun to resume)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0], help="one run per net and seed (default 0)")
    p.add_argument("--epochs", type=int, help="default: 20 for digits, 164 for cifar10 (the paper's 64k iterations), else 182")
    p.add_argument("--width-multiplier", type=float, default=1.0, help="scale every width (default 1)")
    p.add_argument("--image-size", type=int, help="resize images (default: 8 for digits, native otherwise)")
    p.add_argument("--batch-size", type=int, help="default 128")
    p.add_argument("--lr", type=float, help="peak learning rate (default 0.1 * batch size / 128)")
    p.add_argument("--warmup-steps", type=int, help="steps at lr / 10 first (default 10%% of training, at most 400)")
    p.add_argument("--augment", action=argparse.BooleanOptionalAction, default=None,
                   help="pad-and-crop (and flips where they keep the class); default: off for digits, on otherwise")
    p.add_argument("--data-dir", help="TFDS data directory")
    p.add_argument("--progress", type=int, choices=(0, 1, 2), default=2,
                   help="Keras output: 0 none, 1 progress bars, 2 one line per epoch (default)")
    p.add_argument("--dry-run", action="store_true", help="validate and list the runs, train nothing")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Residual networks for Keras 3: build, train, study, search, export and serve.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--verbose", action="store_true", help="show TensorFlow's log lines")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("summary", help="print a model's layers, parameters and multiply-adds")
    p.add_argument("model", help="a preset name, e.g. resnet20, plain56, resnet50")
    p.add_argument("--expand", action="store_true", help="expand the blocks' inner layers")
    add_model_arguments(p)
    p.set_defaults(func=_cmd_summary)

    p = sub.add_parser("presets", help="list the named variants")
    p.add_argument("--count", action="store_true", help="build each one and show parameters and multiply-adds")
    p.set_defaults(func=_cmd_presets)

    p = sub.add_parser(
        "diagnose",
        help="measure identity closeness, gradient norms and response std per residual block",
        description="Per residual block: ||F(x)||/||x|| and cosine(output, input), the loss-gradient "
        "norm at the block's input, and the std of F(x) (the ResNet paper's Figure 7); a preset is "
        "compared with its plain twin (shortcut='none', same initial weights).",
    )
    p.add_argument("model", help="a preset name (e.g. resnet110) or the path of a .keras file")
    p.add_argument("--batch", type=int, default=32, help="images in the measured batch (default 32)")
    p.add_argument("--seed", type=int, default=0, help="seeds the initial weights and the data (default 0)")
    p.add_argument("--dataset", choices=("random", "digits"), default="random", help="random images (default) or the digits")
    p.add_argument("--bn-stats", choices=("auto", "batch", "moving"), default="auto",
                   help="BatchNorm on batch or moving statistics; auto: batch for a fresh preset, moving for a file")
    p.add_argument("--no-plain", action="store_true", help="skip the plain twin")
    p.add_argument("--out", default=os.path.join("runs", "diagnose"), help="folder for diagnostics.json and .png (default runs/diagnose)")
    add_model_arguments(p)
    p.set_defaults(func=_cmd_diagnose)

    p = sub.add_parser(
        "train", help="train with the ResNet paper's recipe; resumes after a crash",
        description="Train a preset with the ResNet paper's recipe (SGD, momentum 0.9, lr 0.1 per 128 "
        "images, weight decay 1e-4, rate / 10 at 50%% and 75%%). Writes model.keras (best by "
        "validation accuracy), history.csv, curves.png and metrics.json into --out; the same "
        "command after a crash continues from the last finished epoch.",
    )
    p.add_argument("--model", default="resnet20", help="a preset name (default: resnet20)")
    p.add_argument("--dataset", default="digits",
                   help="digits (offline, default), a TFDS name (cifar10, mnist, ... or tfds:NAME), or an image folder")
    p.add_argument("--out", required=True, help="the run's folder")
    p.add_argument("--epochs", type=int, help="default: 30 for digits, 182 otherwise (the paper's)")
    p.add_argument("--batch-size", type=int, help="global batch size (default 128)")
    p.add_argument("--lr", type=float, help="peak learning rate (default 0.1 * batch size / 128)")
    p.add_argument("--momentum", type=float, default=0.9, help="SGD momentum (default 0.9)")
    p.add_argument("--nesterov", action="store_true", help="Nesterov momentum")
    p.add_argument("--weight-decay", type=float, default=1e-4, help="coupled L2 weight decay (default 1e-4)")
    p.add_argument("--schedule", choices=("step", "cosine"), default="step", help="learning-rate schedule (default step)")
    p.add_argument("--warmup-steps", type=int, help="steps at lr / 10 first (default min(400, 5%% of training))")
    p.add_argument("--label-smoothing", type=float, default=0.0, help="default 0")
    p.add_argument("--image-size", type=int, help="resize images (default: 16 for digits, native otherwise)")
    p.add_argument("--validation-split", type=float, help="fraction of training images for validation (default 0.1)")
    p.add_argument("--no-augment", action="store_true", help="no pad-and-crop or flips")
    p.add_argument("--flip", action=argparse.BooleanOptionalAction, default=None,
                   help="random horizontal flips (default: per dataset; never for digits)")
    p.add_argument("--data-dir", help="TFDS data directory")
    p.add_argument("--seed", type=int, default=0, help="seeds weights, shuffling and augmentation (default 0)")
    p.add_argument("--mixed-precision", action=argparse.BooleanOptionalAction, default=None,
                   help="default: on for GPUs with compute capability >= 7, off on CPU")
    p.add_argument("--jit-compile", action=argparse.BooleanOptionalAction, default=None,
                   help="XLA (default: on for one GPU, off on CPU)")
    p.add_argument("--steps-per-execution", type=int, help="default: up to 32 for small models on GPUs, else 1")
    p.add_argument("--strategy", choices=("default", "mirrored", "multi_worker"),
                   help="default: multi_worker with TF_CONFIG, mirrored with several GPUs")
    p.add_argument("--tensorboard", action="store_true", help="write TensorBoard logs to OUT/logs")
    p.add_argument("--overwrite", action="store_true", help="delete a previous run in --out and start over")
    p.add_argument("--progress", type=int, choices=(0, 1, 2), default=1,
                   help="Keras output: 0 none, 1 progress bars (default), 2 one line per epoch")
    add_model_arguments(p)
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser(
        "export", help="write a SavedModel (TF Serving layout) and TFLite files, verified",
        description="Export a trained .keras model to BASE/NAME/VERSION/ (SavedModel with class names and "
        "warm-up requests) and BASE/NAME/tflite/NAME_VERSION_QUANT.tflite, verify every artifact against "
        "the Keras model, keep what passes and write BASE/NAME/export_report.json. Exit status 1 when "
        "an artifact fails its check.",
    )
    p.add_argument("model", help="the .keras file (raw pixels in, probabilities out)")
    p.add_argument("--name", required=True, help="the served model's name (the folder under --base)")
    p.add_argument("--base", default="saved_models", help="model base folder (default saved_models)")
    p.add_argument("--version", dest="export_version", type=int, metavar="N", help="integer version (default: the next free one)")
    p.add_argument("--tflite", nargs="+", metavar="QUANT", help="TFLite variants: float32 float16 dynamic int8")
    p.add_argument("--int8-io", default="float32", metavar="TYPE", help="input/output type of the int8 file: float32 (default), int8 or uint8")
    p.add_argument("--dataset", help="dataset for int8 calibration (train split) and verification (test split), e.g. digits")
    p.add_argument("--data-dir", help="TFDS data directory")
    p.add_argument("--calibration-samples", type=int, default=500, metavar="N", help="training images that calibrate int8 (default 500)")
    p.add_argument("--keep-failed", action="store_true", help="keep failed artifacts under a .failed name")
    p.set_defaults(func=_cmd_export)

    p = sub.add_parser(
        "serve", help="serve exported models over TF Serving's REST API",
        description="Serve the SavedModels under BASE (BASE/NAME/VERSION/) at /v1/models/NAME[:predict], "
        "speaking TF Serving's REST API.",
    )
    p.add_argument("base", nargs="?", default="saved_models", help="model base folder (default saved_models)")
    p.add_argument("--port", type=int, default=8501, help="TCP port (default 8501, TF Serving's REST port; 0 picks one)")
    p.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1; 0.0.0.0 for all)")
    p.add_argument("--max-body-mb", type=int, default=32, help="larger request bodies get 413 (default 32)")
    p.add_argument("--versions", choices=("all", "latest"), default="all", help="serve every version (default) or the latest")
    p.set_defaults(func=_cmd_serve)

    p = sub.add_parser(
        "tune", help="KerasTuner search over depth, shortcut type and more; resumable",
        description="Search ResNet depth x shortcut type x version (and optionally width, zero-init, "
        "learning rate, weight decay, batch size) with KerasTuner. Writes OUT/trials.csv, trials.json, "
        "search.png and best_model.keras (the best configuration retrained with the full budget). "
        "Rerunning with the same --out resumes. For several machines set KERASTUNER_TUNER_ID, "
        "KERASTUNER_ORACLE_IP and KERASTUNER_ORACLE_PORT (see the README).",
    )
    p.add_argument("--dataset", default="digits", help="digits (default), a TFDS name, or an image folder")
    p.add_argument("--out", required=True, help="the search's folder")
    p.add_argument("--tuner", choices=("hyperband", "bayesian", "random", "grid"), default="hyperband")
    p.add_argument("--max-epochs", type=int, default=9, help="Hyperband's largest budget; epochs per trial otherwise (default 9)")
    p.add_argument("--max-trials", type=int, help="trials for bayesian/random/grid (default: the space's size)")
    p.add_argument("--factor", type=int, default=3, help="Hyperband's reduction factor (default 3)")
    p.add_argument("--style", choices=("cifar", "imagenet"), default="cifar")
    p.add_argument("--depths", type=int, nargs="+", help="depth choices (default 20 32 44 56 110 for cifar)")
    p.add_argument("--shortcuts", nargs="+", help="shortcut choices (default: identity projection full_projection none)")
    p.add_argument("--versions", nargs="+", help="v1 and/or v2 (default both)")
    p.add_argument("--widths", type=float, nargs="+", help="width-multiplier choices (default: not searched)")
    p.add_argument("--zero-init", action="store_true", help="also search zero_init_residual")
    p.add_argument("--lr-range", type=float, nargs=2, metavar=("LOW", "HIGH"), help="search the learning rate (log scale)")
    p.add_argument("--wd-range", type=float, nargs=2, metavar=("LOW", "HIGH"), help="search weight decay (log scale)")
    p.add_argument("--batch-sizes", type=int, nargs="+", help="batch-size choices (default: not searched)")
    p.add_argument("--batch-size", type=int, help="the fixed batch size (default 128)")
    p.add_argument("--image-size", type=int, help="resize images (default: 16 for digits)")
    p.add_argument("--data-dir", help="TFDS data directory")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--distribution", choices=("mirrored",), help="spread each trial over the visible GPUs")
    p.add_argument("--no-retrain", action="store_true", help="skip retraining the best configuration")
    p.add_argument("--overwrite", action="store_true", help="start afresh instead of resuming")
    p.add_argument("--top", type=int, default=10, help="trials to print (default 10)")
    p.add_argument("--export", action="store_true", help="export the best model (SavedModel + 4 TFLite files)")
    p.add_argument("--export-name", default="resnet_search", help="name under --export-base (default resnet_search)")
    p.add_argument("--export-base", default="saved_models", help="default saved_models")
    p.add_argument("--progress", type=int, choices=(0, 1, 2), default=1, help="Keras verbosity (default 1)")
    p.set_defaults(func=_cmd_tune)

    p = sub.add_parser(
        "degradation", help="plain nets against ResNets of growing depth (the ResNet paper's Figure 6)",
        description="Train each depth as a plain net and as a ResNet with the same recipe, data and seed; "
        "write OUT/results.json, results.csv, degradation.png (training error per epoch) and the "
        "trained nets' residual responses (responses.json, responses.png; Figure 7). Finished runs "
        "in OUT/runs/ are reused: rerun the same command to resume.",
    )
    p.add_argument("--depths", type=int, nargs="+", default=[20, 32, 44, 56], help="6n+2 depths (default 20 32 44 56)")
    p.add_argument("--shortcut", default="identity", help="the ResNets' shortcut: identity (A, default), projection (B), full_projection (C)")
    p.add_argument("--version", dest="resnet_version", default="v1", metavar="{v1,v2}", help="the ResNets' block version (default v1)")
    p.add_argument("--no-responses", action="store_true", help="skip measuring the residual responses")
    _add_experiment_arguments(p)
    p.set_defaults(func=_cmd_degradation)

    p = sub.add_parser(
        "shortcuts", help="shortcut types (and versions) at one depth (the ResNet paper's Table 3)",
        description="Train one depth with each shortcut type (identity/A, projection/B, full_projection/C, "
        "none) and each --versions, with the same recipe, data and seed; write OUT/results.json, "
        "results.csv and shortcuts.png (final training and test error). Rerun to resume.",
    )
    p.add_argument("--depth", type=int, default=32, help="a 6n+2 depth (default 32)")
    p.add_argument("--shortcuts", nargs="+", default=["identity", "projection", "full_projection", "none"],
                   help="default: identity projection full_projection none")
    p.add_argument("--versions", nargs="+", default=["v1"], help="block versions of the nets with shortcuts (default v1)")
    _add_experiment_arguments(p)
    p.set_defaults(func=_cmd_shortcuts)

    p = sub.add_parser(
        "demo", help="the whole pipeline on the offline digits: search, train, export, verify",
        description="A grid search over depth x shortcut type on scikit-learn's digits, the best "
        "configuration retrained with the paper's recipe, exported to a SavedModel and four TFLite "
        "files, each verified against the Keras model. About 5 minutes on 2 CPU cores.",
    )
    p.add_argument("--out", default="runs/demo", help="search and training folder (default runs/demo)")
    p.add_argument("--base", default="saved_models", help="export base folder (default saved_models)")
    p.add_argument("--name", default="digits_resnet", help="exported model name (default digits_resnet)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="tiny settings (a smoke run, as the tests do)")
    p.add_argument("--progress", type=int, choices=(0, 1, 2), default=2, help="Keras verbosity (default 2)")
    p.set_defaults(func=_cmd_demo)

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
