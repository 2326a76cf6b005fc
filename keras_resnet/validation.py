"""Argument checks shared by every public function and constructor of the package.

Each helper raises ``ValueError`` whose message names the argument, says what is allowed and
shows what was given, in one style across the package::

    batch_size must be an integer >= 1; received batch_size=0

and returns the value, normalised where that helps (a numpy integer becomes an ``int``, a
sequence becomes a tuple). ``bool`` is rejected where a number is expected: ``True`` is an
``int`` to Python but never a meaningful width or epoch count.

This module imports neither TensorFlow nor Keras when it loads, so the command line can check
its arguments before TensorFlow starts; :func:`check_keras_object` imports Keras when called.
"""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Callable, Iterable, Sequence
from typing import Any

__all__ = [
    "KERAS_KINDS",
    "check_bool",
    "check_choice",
    "check_float",
    "check_floats",
    "check_fraction",
    "check_int",
    "check_ints",
    "check_keras_object",
    "check_path",
    "check_type",
    "is_int",
    "is_number",
]


# ---- predicates -------------------------------------------------------------------------------

def is_int(value) -> bool:
    """True for Python and numpy integers, False for ``bool`` (and everything else)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_number(value) -> bool:
    """True for real numbers (ints and floats, numpy ones included), False for ``bool``."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


# ---- how the allowed values are described -------------------------------------------------------

def _bounds(minimum, maximum, exclusive_minimum: bool = False, exclusive_maximum: bool = False) -> str:
    """``">= 1"``, ``"> 0"``, ``"<= 9"``, ``"in [0, 1)"`` or ``""`` (no bounds)."""
    if minimum is not None and maximum is not None:
        return f"in {'(' if exclusive_minimum else '['}{minimum}, {maximum}{')' if exclusive_maximum else ']'}"
    if minimum is not None:
        return f"{'>' if exclusive_minimum else '>='} {minimum}"
    if maximum is not None:
        return f"{'<' if exclusive_maximum else '<='} {maximum}"
    return ""


def _within(value, minimum, maximum, exclusive_minimum: bool = False, exclusive_maximum: bool = False) -> bool:
    if minimum is not None and (value <= minimum if exclusive_minimum else value < minimum):
        return False
    return maximum is None or (value < maximum if exclusive_maximum else value <= maximum)


def _join(*words: str) -> str:
    return " ".join(w for w in words if w)


def _or_none(allowed: str, optional: bool, none_means: str | None) -> str:
    if not optional:
        return allowed
    return f"{allowed} or None" + (f" ({none_means})" if none_means else "")


def _fail(name: str, allowed: str, value) -> ValueError:
    return ValueError(f"{name} must be {allowed}; received {name}={value!r}")


# ---- scalars ----------------------------------------------------------------------------------

def check_int(
    name: str,
    value,
    minimum: int | None = None,
    maximum: int | None = None,
    *,
    optional: bool = False,
    none_means: str | None = None,
    note: str = "",
) -> int | None:
    """Returns ``value`` as an ``int`` if it is an integer within ``[minimum, maximum]``.

    Args:
        name: the argument's name, as the caller wrote it.
        value: what was passed. ``bool`` is refused; numpy integers are accepted.
        minimum, maximum: inclusive bounds; None for no bound.
        optional: accept None (and return it).
        none_means: what None stands for; when given, the message adds ``or None (none_means)``.
        note: extra words after the allowed range (``"when include_top=True"``).

    Example:
    >>> check_int("epochs", 3, 1)
    3
    >>> check_int("epochs", 0, 1)
    Traceback (most recent call last):
    ...
    ValueError: epochs must be an integer >= 1; received epochs=0
    """
    if optional and value is None:
        return None
    if not (is_int(value) and _within(value, minimum, maximum)):
        allowed = _or_none(_join("an integer", _bounds(minimum, maximum)), none_means is not None, none_means)
        raise _fail(name, _join(allowed, note), value)
    return int(value)


def check_float(
    name: str,
    value,
    minimum: float | None = None,
    maximum: float | None = None,
    *,
    exclusive_minimum: bool = False,
    exclusive_maximum: bool = False,
    optional: bool = False,
    none_means: str | None = None,
    note: str = "",
) -> float | None:
    """Returns ``value`` as a ``float`` if it is a finite number within the bounds.

    Ints are accepted (``lr=1`` is fine), ``bool``, NaN and infinities are not.

    Args:
        name: the argument's name.
        value: what was passed.
        minimum, maximum: bounds; None for no bound.
        exclusive_minimum, exclusive_maximum: make a bound open (``> 0`` rather than ``>= 0``).
        optional, none_means, note: as for :func:`check_int`.

    Example:
    >>> check_float("bn_momentum", 0.99, 0, 1, exclusive_maximum=True)
    0.99
    >>> check_float("bn_epsilon", 0.0, 0, exclusive_minimum=True)
    Traceback (most recent call last):
    ...
    ValueError: bn_epsilon must be a number > 0; received bn_epsilon=0.0
    """
    if optional and value is None:
        return None
    if not (
        is_number(value)
        and math.isfinite(value)
        and _within(value, minimum, maximum, exclusive_minimum, exclusive_maximum)
    ):
        allowed = _join("a number", _bounds(minimum, maximum, exclusive_minimum, exclusive_maximum))
        raise _fail(name, _join(_or_none(allowed, none_means is not None, none_means), note), value)
    return float(value)


def check_fraction(name: str, value, *, optional: bool = False, none_means: str | None = None) -> float | None:
    """Returns ``value`` as a ``float`` if it is a fraction in ``[0, 1)`` (a rate, a split).

    Example:
    >>> check_fraction("drop_path_rate", 1.0)
    Traceback (most recent call last):
    ...
    ValueError: drop_path_rate must be a fraction in [0, 1); received drop_path_rate=1.0
    """
    if optional and value is None:
        return None
    if not (is_number(value) and 0 <= value < 1):
        raise _fail(name, _or_none("a fraction in [0, 1)", none_means is not None, none_means), value)
    return float(value)


def check_bool(name: str, value, *, optional: bool = False, none_means: str | None = None) -> bool | None:
    """Returns ``value`` if it is ``True`` or ``False`` (or None when ``optional``).

    ``1``, ``"yes"`` and numpy booleans are refused: a flag is a Python ``bool``.

    Example:
    >>> check_bool("flip", None, optional=True, none_means="auto") is None
    True
    >>> check_bool("flip", "yes", optional=True, none_means="auto")
    Traceback (most recent call last):
    ...
    ValueError: flip must be True, False or None (auto); received flip='yes'
    """
    if optional and value is None:
        return None
    if not isinstance(value, bool):
        allowed = "True, False or None" + (f" ({none_means})" if none_means else "") if optional else "True or False"
        raise _fail(name, allowed, value)
    return value


def _describe_choices(choices: Sequence) -> str:
    if all(isinstance(c, str) for c in choices):
        return ", ".join(choices)
    return ", ".join(repr(c) for c in choices)


def check_choice(name: str, value, choices: Iterable, allowed: str | None = None):
    """Returns ``value`` if it is one of ``choices``.

    Args:
        name: the argument's name.
        value: what was passed.
        choices: the allowed values (a bool never matches 0 or 1 here).
        allowed: how the message describes the choices; default ``"one of a, b, c"``.

    Example:
    >>> check_choice("schedule", "step", ("step", "cosine"))
    'step'
    >>> check_choice("schedule", "linear", ("step", "cosine"))
    Traceback (most recent call last):
    ...
    ValueError: schedule must be one of step, cosine; received schedule='linear'
    """
    choices = tuple(choices)
    try:
        found = any(value == c and isinstance(value, bool) == isinstance(c, bool) for c in choices)
    except Exception:  # an array or another value that does not compare to a plain bool
        found = False
    if not found:
        raise _fail(name, allowed or f"one of {_describe_choices(choices)}", value)
    return value


def check_type(name: str, value, types: type | tuple[type, ...], allowed: str, *, optional: bool = False):
    """Returns ``value`` if it is an instance of ``types`` (or None when ``optional``).

    Example:
    >>> check_type("host", 80, str, "a host name or address")
    Traceback (most recent call last):
    ...
    ValueError: host must be a host name or address; received host=80
    """
    if optional and value is None:
        return None
    if not isinstance(value, types) or (isinstance(value, bool) and bool not in _as_tuple(types)):
        raise _fail(name, _or_none(allowed, optional, None), value)
    return value


def _as_tuple(types) -> tuple:
    return types if isinstance(types, tuple) else (types,)


def check_path(name: str, value, *, optional: bool = False, allowed: str = "a path (str or os.PathLike)"):
    """Returns ``value`` if it is a non-empty ``str`` or an ``os.PathLike`` (existence is not checked).

    Example:
    >>> check_path("out", "", allowed="a folder path")
    Traceback (most recent call last):
    ...
    ValueError: out must be a folder path; received out=''
    """
    if optional and value is None:
        return None
    if not isinstance(value, (str, os.PathLike)) or not str(value):
        raise _fail(name, _or_none(allowed, optional, None), value)
    return value


# ---- sequences --------------------------------------------------------------------------------

def _check_items(
    name: str,
    values,
    plural: str,
    accept: Callable[[Any], bool],
    convert: Callable[[Any], Any],
    length: int | None,
    allow_empty: bool,
    note: str,
) -> tuple:
    allowed = _join(str(length) if length is not None else "", plural, note)
    if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
        raise _fail(name, f"a sequence of {allowed}", values)
    items = tuple(values)
    if (length is not None and len(items) != length) or (not items and not allow_empty):
        raise ValueError(f"{name} must hold {allowed}; received {name}={values!r}")
    for item in items:
        if not accept(item):
            raise ValueError(f"{name} must hold {allowed}; received {item!r} in {name}={values!r}")
    return tuple(convert(item) for item in items)


def check_ints(
    name: str,
    values,
    minimum: int | None = None,
    maximum: int | None = None,
    *,
    length: int | None = None,
    allow_empty: bool = False,
    note: str = "",
) -> tuple[int, ...]:
    """Returns ``values`` as a tuple of ints if every item is an integer within the bounds.

    Args:
        name: the argument's name.
        values: a sequence (a string is not one here).
        minimum, maximum: inclusive bounds on every item.
        length: the exact number of items, if it is fixed.
        allow_empty: accept an empty sequence.
        note: extra words in the message (``"(one per stage)"``).

    Example:
    >>> check_ints("stage_blocks", [2, 2], 1)
    (2, 2)
    >>> check_ints("stage_blocks", (3, 0, 3), 1)
    Traceback (most recent call last):
    ...
    ValueError: stage_blocks must hold integers >= 1; received 0 in stage_blocks=(3, 0, 3)
    """
    return _check_items(
        name, values, _join("integers", _bounds(minimum, maximum)),
        lambda v: is_int(v) and _within(v, minimum, maximum), int, length, allow_empty, note,
    )


def check_floats(
    name: str,
    values,
    minimum: float | None = None,
    maximum: float | None = None,
    *,
    exclusive_minimum: bool = False,
    exclusive_maximum: bool = False,
    length: int | None = None,
    allow_empty: bool = False,
    note: str = "",
) -> tuple[float, ...]:
    """Returns ``values`` as a tuple of floats if every item is a finite number within the bounds.

    Example:
    >>> check_floats("width_multipliers", [0.5, 2])
    (0.5, 2.0)
    """
    return _check_items(
        name, values,
        _join("numbers", _bounds(minimum, maximum, exclusive_minimum, exclusive_maximum)),
        lambda v: is_number(v) and math.isfinite(v) and _within(v, minimum, maximum, exclusive_minimum,
                                                                   exclusive_maximum),
        float, length, allow_empty, note,
    )


# ---- Keras identifiers ------------------------------------------------------------------------

# kind -> (the keras module holding ``get``, how the message describes an allowed value).
KERAS_KINDS = {
    "initializer": ("initializers", "a Keras initializer: a name such as 'he_normal', a config dict "
                                    "or a keras.initializers.Initializer"),
    "activation": ("activations", "a Keras activation: a name such as 'softmax', a callable"),
    "regularizer": ("regularizers", "a Keras regularizer: a name such as 'l2', a config dict or "
                                    "a keras.regularizers.Regularizer"),
}


def check_keras_object(name: str, value, kind: str, *, optional: bool = False):
    """Resolves ``value`` with ``keras.<kind>s.get`` and returns the resolved object.

    A value Keras cannot interpret raises ValueError naming the argument instead of Keras's own
    error deep inside a layer. Keras is imported here, when the check runs.

    Args:
        name: the argument's name.
        value: a name, a config dict, an instance or (activations) a callable.
        kind: ``"initializer"``, ``"activation"`` or ``"regularizer"``.
        optional: accept None (returned as None; for activations None means linear).

    Example:
    >>> check_keras_object("kernel_initializer", "he_nromal", "initializer")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: kernel_initializer must be a Keras initializer: ...; received kernel_initializer='he_nromal'
    """
    check_choice("kind", kind, KERAS_KINDS)
    module, allowed = KERAS_KINDS[kind]
    if value is None:
        if optional:
            return None
        raise _fail(name, allowed, value)
    import random

    import keras

    get = getattr(keras, module).get
    # Resolving a random initializer without a seed draws one from Python's generator: put the
    # generator back, so that checking an argument never changes the weights a seed gives.
    state = random.getstate()
    try:
        resolved = get(value)
    except (ValueError, TypeError):
        resolved = None
    finally:
        random.setstate(state)
    if resolved is None:
        raise _fail(name, _or_none(allowed, optional, None), value) from None
    return resolved
