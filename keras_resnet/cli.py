"""The ``keras-resnet`` command: argument parsing and calls into the library, nothing more.

Each subcommand is a ``_cmd_<name>(args)`` function added to ``build_parser``. Heavy
imports (TensorFlow, Keras, KerasTuner, matplotlib) happen inside the subcommands, so that
``keras-resnet --help`` answers at once, and TensorFlow's start-up log lines are hidden unless
``--verbose`` is given.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys

from keras_resnet import __version__

PROG = "keras-resnet"


class UsageError(Exception):
    """A bad command-line value found after parsing; reported like argparse's errors (exit 2)."""


@contextlib.contextmanager
def _silenced_stderr(enabled: bool):
    """Sends file descriptor 2 to /dev/null: TensorFlow's C++ start-up lines bypass Python."""
    if not enabled:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def import_keras(verbose: bool = False):
    """Imports TensorFlow and Keras quietly (unless ``verbose``) and returns ``keras``."""
    if not verbose:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    with _silenced_stderr(not verbose):
        import keras
        import tensorflow as tf

        tf.constant(0)  # device discovery prints its lines on the first op
    if not verbose:
        tf.get_logger().setLevel("ERROR")
        try:
            import absl.logging

            absl.logging.set_verbosity(absl.logging.ERROR)
        except ImportError:  # pragma: no cover - absl ships with TensorFlow
            pass
    return keras


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


def print_table(rows: list[dict], columns: list[str] | None = None) -> None:
    """Prints rows of dicts as an aligned plain-text table."""
    if not rows:
        return
    columns = columns or list(rows[0])

    def fmt(v):
        if isinstance(v, float):
            return f"{v:.4g}"
        if isinstance(v, int) and not isinstance(v, bool):
            return f"{v:,}"
        return str(v)

    cells = [[fmt(r.get(c, "")) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths)))
    print("  ".join("-" * w for w in widths))
    for row in cells:
        print("  ".join(v.rjust(w) if v[:1].isdigit() else v.ljust(w) for v, w in zip(row, widths)))


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

    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (UsageError, ValueError) as e:
        # Library functions validate before any expensive work and raise ValueError with a
        # message that names the bad value; that is a usage error for the command line.
        parser.exit(2, f"{PROG}: error: {e}\n")
    except KeyboardInterrupt:
        parser.exit(130, f"{PROG}: interrupted\n")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
