"""The Keras backend: TensorFlow (the default, and the one that exports) or JAX.

Keras reads ``KERAS_BACKEND`` once, when it is first imported, so the backend is a property of
the process: :func:`select_backend` sets it before that import and refuses to change it after.
The data pipelines are ``tf.data`` on both backends (Keras's JAX trainer iterates them as NumPy);
SavedModel, TFLite and serving need TensorFlow, and a ``.keras`` file trained on JAX loads there.

On JAX every new kernel shape is compiled by XLA the first time it is used, model initialisers
included: building ResNet-56 takes seconds before it has trained a step. JAX's persistent
compilation cache stores those programs on disk, so the next process loads them instead
(ResNet-56: 9.5 s, then 1.0 s, on 2 CPU cores). :func:`enable_compilation_cache` turns it on in
:func:`compilation_cache_dir`, a user cache folder, unless ``KERAS_RESNET_JAX_CACHE`` says
``off`` or the user gave JAX a folder of their own (``JAX_COMPILATION_CACHE_DIR``).

This module imports neither Keras nor JAX at module level.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Mapping
from pathlib import Path

BACKENDS = ("tensorflow", "jax")
DEFAULT_BACKEND = "tensorflow"
CACHE_ENV = "KERAS_RESNET_JAX_CACHE"
OFF_VALUES = ("0", "off", "false", "no")


def requested_backend() -> str:
    """The backend ``KERAS_BACKEND`` asks for (``"tensorflow"`` when unset), validated.

    Example:
    >>> requested_backend() in BACKENDS
    True
    """
    name = os.environ.get("KERAS_BACKEND") or DEFAULT_BACKEND
    if name not in BACKENDS:
        raise ValueError(f"KERAS_BACKEND must be one of {', '.join(BACKENDS)} for keras-resnet; received KERAS_BACKEND={name!r}")
    return name


def current_backend() -> str:
    """The backend of the Keras imported in this process, else the one ``KERAS_BACKEND`` asks for.

    Example:
    >>> current_backend() in BACKENDS
    True
    """
    if "keras" in sys.modules:
        return sys.modules["keras"].backend.backend()
    return requested_backend()


def select_backend(name: str | None = None) -> str:
    """Makes ``name`` the Keras backend of this process, before Keras is imported.

    Args:
        name: ``"tensorflow"`` or ``"jax"``; None keeps ``KERAS_BACKEND`` (default TensorFlow),
            or the backend of a Keras already imported.

    Returns:
        The backend's name.

    Raises:
        ValueError: an unknown name; JAX asked for without ``jax`` installed; or Keras already
            imported in this process with another backend (it cannot switch).

    Example:
    >>> select_backend(None) in BACKENDS
    True
    """
    if name is not None and name not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}; received backend={name!r}")
    if name == "jax" and importlib.util.find_spec("jax") is None:
        raise ValueError("backend='jax' needs JAX, which is not installed: pip install 'keras-residual[jax]'")
    if "keras" in sys.modules:
        current = sys.modules["keras"].backend.backend()
        if name is None:  # whatever Keras runs on, e.g. from ~/.keras/keras.json
            return current
        if current != name:
            raise ValueError(
                f"Keras is already imported in this process with the {current!r} backend, and a process "
                f"has one backend; to use backend={name!r}, set KERAS_BACKEND={name} (or pass --backend "
                f"{name}) before Keras is imported, e.g. in a new process"
            )
    if name is None:
        name = requested_backend()
        if name == "jax" and importlib.util.find_spec("jax") is None:
            raise ValueError("KERAS_BACKEND=jax needs JAX, which is not installed: pip install 'keras-residual[jax]'")
    os.environ["KERAS_BACKEND"] = name
    return name


def compilation_cache_dir(environ: Mapping[str, str] | None = None) -> Path | None:
    """The folder of the persistent JAX compilation cache, or None when it is off.

    ``KERAS_RESNET_JAX_CACHE`` is a folder, or ``off`` (also ``0``, ``false``, ``no``) to
    turn the cache off; unset means ``$XDG_CACHE_HOME/keras-resnet/jax`` (by default
    ``~/.cache/keras-resnet/jax``).

    Args:
        environ: the environment variables to read; default ``os.environ``.

    Example:
    >>> str(compilation_cache_dir({"XDG_CACHE_HOME": "/cache"}))
    '/cache/keras-resnet/jax'
    >>> compilation_cache_dir({"KERAS_RESNET_JAX_CACHE": "off"}) is None
    True
    """
    environ = os.environ if environ is None else environ
    value = environ.get(CACHE_ENV)
    if value is not None and value.strip().lower() in OFF_VALUES:
        return None
    if value:
        return Path(value).expanduser()
    base = environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "keras-resnet" / "jax"


def enable_compilation_cache(path: str | os.PathLike | None = None) -> Path | None:
    """Turns on JAX's persistent compilation cache for every program, however small or quick.

    JAX caches only programs that took a second or more to compile by default; a ResNet's many
    small initialiser programs each take less, and together most of the build. Both thresholds
    are set to 0 here. A folder the user gave JAX (``JAX_COMPILATION_CACHE_DIR`` or
    ``jax.config``) is kept. Call it on the JAX backend; importing the package's models on
    JAX calls it (and so does the ``keras-resnet`` command).

    Args:
        path: the cache folder; default :func:`compilation_cache_dir` (None when turned off).

    Returns:
        The folder in use, or None when the cache stays off.

    Example:
    >>> import jax  # doctest: +SKIP
    >>> enable_compilation_cache("/tmp/jax-cache")  # doctest: +SKIP
    PosixPath('/tmp/jax-cache')
    """
    import jax

    own = jax.config.jax_compilation_cache_dir
    if path is None and own:
        return Path(own)
    folder = Path(path).expanduser() if path is not None else compilation_cache_dir()
    if folder is None:
        return None
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ValueError(f"cannot create the JAX compilation cache folder {str(folder)!r} ({e}); set "
                         f"{CACHE_ENV} to another folder, or to 'off'") from None
    jax.config.update("jax_compilation_cache_dir", str(folder))
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
    return folder


def versions() -> dict:
    """The backend and the versions of what runs it, for a run's ``metrics.json``."""
    import keras
    import tensorflow as tf

    out = {"backend": keras.backend.backend(), "tensorflow": tf.__version__, "keras": keras.__version__}
    if out["backend"] == "jax":
        import jax

        out["jax"] = jax.__version__
    return out
