"""Terminal output for the command line: quiet TensorFlow imports, tables, replayed warnings.

Kept apart from :mod:`keras_resnet.cli` (argument parsing and calls into the library) and free
of heavy imports at module level.
"""

from __future__ import annotations

import contextlib
import os
import sys


@contextlib.contextmanager
def silenced_stderr(enabled: bool):
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


def import_keras(verbose: bool = False, backend: str | None = None):
    """Imports TensorFlow and Keras quietly (unless ``verbose``) and returns ``keras``.

    ``backend`` (``"tensorflow"`` or ``"jax"``; None: ``KERAS_BACKEND``, default TensorFlow) is
    chosen before Keras is imported (:func:`keras_resnet.backends.select_backend`). On JAX,
    TensorFlow (which still runs the ``tf.data`` pipelines) is kept off the GPUs, and the
    persistent compilation cache is turned on.
    """
    from keras_resnet.backends import enable_compilation_cache, select_backend

    if not verbose:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    backend = select_backend(backend)
    with silenced_stderr(not verbose):
        import keras
        import tensorflow as tf

        if backend == "jax":
            # The data pipelines only; the GPUs' memory belongs to JAX.
            tf.config.set_visible_devices([], "GPU")
            enable_compilation_cache()
        tf.constant(0)  # device discovery prints its lines on the first op
    if not verbose:
        tf.get_logger().setLevel("ERROR")
        try:
            import absl.logging

            absl.logging.set_verbosity(absl.logging.ERROR)
        except ImportError:  # pragma: no cover - absl ships with TensorFlow
            pass
    return keras


def print_table(rows: list[dict], columns: list[str] | None = None) -> None:
    """Prints rows of dicts as an aligned plain-text table."""
    if not rows:
        return
    columns = columns or list(rows[0])

    def fmt(v):
        if isinstance(v, float):
            return f"{v:,.1f}" if abs(v) >= 100 else f"{v:.4g}"
        if isinstance(v, int) and not isinstance(v, bool):
            return f"{v:,}"
        return str(v)

    cells = [[fmt(r.get(c, "")) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths)))
    print("  ".join("-" * w for w in widths))
    for row in cells:
        print("  ".join(v.rjust(w) if _numeric(v) else v.ljust(w) for v, w in zip(row, widths)))


def _numeric(text: str) -> bool:
    try:
        float(text.replace(",", ""))
    except ValueError:
        return False
    return True


@contextlib.contextmanager
def replayed_warnings(verbose: bool):
    """Hides the TFLite converter's C++ log lines; replays keras_resnet's own warnings."""
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        try:
            with silenced_stderr(not verbose):
                yield
        finally:
            for w in caught:
                if "keras_resnet" in w.filename:
                    print(f"warning: {w.message}", file=sys.stderr)
