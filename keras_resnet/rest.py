"""TF Serving's REST request and response bodies: JSON to input arrays and outputs back to JSON.

The rules are TF Serving's (https://www.tensorflow.org/tfx/serving/api_rest):

* row format ``{"instances": [...]}``: one entry per example, each a value (one-input
  signature) or an object naming every input; the answer is ``{"predictions": [...]}``;
* columnar format ``{"inputs": ...}``: a batch for the one input, or an object of named
  batches; the answer is ``{"outputs": ...}``;
* binary data: a ``DT_STRING`` input takes ``{"b64": "..."}`` objects (standard base64) and
  plain JSON strings (their UTF-8 bytes); ``DT_STRING`` outputs whose names end in ``_bytes``
  are answered as ``{"b64": "..."}``, other string outputs as UTF-8 text.

Everything a client can get wrong raises :class:`RequestError` with a 4xx status and a message
that names the input, and for binary data the instance, and says what was expected.
:mod:`keras_resnet.serving` puts these bodies on the wire.
"""

from __future__ import annotations

import base64
import binascii
import json
import sys

import numpy as np
import tensorflow as tf

B64 = "b64"
BYTES_SUFFIX = "_bytes"  # DT_STRING outputs named *_bytes are answered as {"b64": ...}


class RequestError(Exception):
    """A request the server answers with a 4xx status and ``{"error": message}``."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = int(status)
        self.message = message


def _no_constants(name: str):
    raise RequestError(400, f"{name} is not valid JSON; send finite numbers")


def parse_json(payload: bytes):
    """Parses a request body; :class:`RequestError` 400 for invalid JSON (NaN included)."""
    try:
        return json.loads(payload, parse_constant=_no_constants)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise RequestError(400, f"malformed JSON in the request body: {e}") from None
    except RecursionError:
        raise RequestError(400, "the request body is nested too deeply") from None
    except ValueError:
        # Past the two cases above, the one ValueError json.loads raises is int() refusing a
        # literal longer than Python's limit on text-to-integer conversion (a guard against
        # its quadratic cost). No input dtype holds such a number anyway.
        limit = sys.get_int_max_str_digits()
        raise RequestError(400, f"an integer in the request body has more than {limit} digits, the most this "
                                "server converts; send numbers within the range of the input's dtype") from None


def is_b64(value) -> bool:
    """Whether a JSON value is a binary value, ``{"b64": ...}``, rather than an object of named inputs."""
    return isinstance(value, dict) and len(value) == 1 and B64 in value


def _shape_text(spec: tf.TensorSpec) -> str:
    dims = ["batch" if i == 0 and d is None else ("any" if d is None else str(d)) for i, d in enumerate(spec.shape)]
    return f"[{', '.join(dims)}] ({spec.dtype.name})"


def _check_shape(array: np.ndarray, spec: tf.TensorSpec, name: str) -> None:
    expected = spec.shape.as_list()
    if array.ndim != len(expected) or any(e is not None and e != d for e, d in zip(expected, array.shape)):
        raise RequestError(400, f"input {name!r} must have shape {_shape_text(spec)}; received shape {list(array.shape)}")


def _binary(value, name: str, path: tuple[int, ...]):
    """A string input's JSON value (nested lists of b64 objects or text) as nested lists of bytes."""
    if isinstance(value, list):
        return [_binary(v, name, (*path, i)) for i, v in enumerate(value)]
    where = f"instance {path[0]} of input {name!r}" if path else f"input {name!r}"
    if isinstance(value, str):
        return value.encode("utf-8")
    if is_b64(value):
        text = value[B64]
        if not isinstance(text, str):
            raise RequestError(400, f'{where}: "b64" must hold a base64 string; received {type(text).__name__}')
        try:
            return base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError) as e:
            raise RequestError(400, f"{where}: malformed b64 ({e}); send standard base64 "
                                    "(A-Z, a-z, 0-9, +, /, padded with =)") from None
    kind = "an object without the single key \"b64\"" if isinstance(value, dict) else type(value).__name__
    raise RequestError(400, f'{where} must hold {{"b64": "..."}} objects or strings; received {kind}')


def _string_array(value, spec: tf.TensorSpec, name: str) -> np.ndarray:
    nested = _binary(value, name, ())
    try:
        # dtype=object keeps every byte: NumPy's fixed-width bytes type drops trailing NULs.
        array = np.array(nested, dtype=object)
    except ValueError:
        raise RequestError(400, f"input {name!r} is ragged; expected shape {_shape_text(spec)}") from None
    if any(isinstance(v, list) for v in array.flat):
        raise RequestError(400, f"input {name!r} is ragged; expected shape {_shape_text(spec)}")
    _check_shape(array, spec, name)
    return array


def to_array(value, spec: tf.TensorSpec, name: str) -> np.ndarray:
    """Converts a JSON value to an array of ``spec``'s dtype and shape, or raises 400.

    String inputs (``DT_STRING``) take ``{"b64": ...}`` objects and plain strings (UTF-8) and
    give an object array of ``bytes``.

    Example:
    >>> to_array([{"b64": "aGk="}, "yo"], tf.TensorSpec([None], tf.string), "x").tolist()
    [b'hi', b'yo']
    """
    if spec.dtype == tf.string:
        return _string_array(value, spec, name)
    try:
        array = np.asarray(value)
    except (ValueError, TypeError):
        raise RequestError(400, f"input {name!r} is ragged or nested too deeply; expected shape "
                                f"{_shape_text(spec)}") from None
    if array.dtype.kind == "O" and all(type(v) in (int, float) for v in array.flat):
        # Integers beyond 64 bits leave NumPy with Python objects; as floats they are numbers
        # like any other, in the input's range or not.
        try:
            array = array.astype(np.float64)
        except OverflowError:
            raise RequestError(400, f"input {name!r} has values outside the range of {spec.dtype.name}") from None
    if array.dtype.kind not in "iuf":
        kind = {"b": "booleans", "U": "strings", "O": "mixed or nested values"}.get(array.dtype.kind, array.dtype.name)
        raise RequestError(400, f"input {name!r} must hold numbers of type {spec.dtype.name}; received {kind}")
    _check_shape(array, spec, name)
    dtype = spec.dtype.as_numpy_dtype
    if spec.dtype.is_floating:
        with np.errstate(over="ignore"):
            array = array.astype(dtype)
        if not np.all(np.isfinite(array)):
            raise RequestError(400, f"input {name!r} has values outside the range of {spec.dtype.name}")
        return array
    if spec.dtype.is_integer:
        info = np.iinfo(dtype)
        if array.dtype.kind == "f" and not np.all(array == np.round(array)):
            raise RequestError(400, f"input {name!r} must hold integers ({spec.dtype.name}); received fractions")
        if array.size and (array.min() < info.min or array.max() > info.max):
            raise RequestError(400, f"input {name!r} must hold {spec.dtype.name} values in [{info.min}, {info.max}]")
        return array.astype(dtype)
    raise RequestError(400, f"input {name!r} has type {spec.dtype.name}, which this server does not accept as JSON")


def row_inputs(instances, specs: dict) -> dict[str, np.ndarray]:
    """Row format: a list of instances, each a value (one input) or an object of named inputs."""
    if not isinstance(instances, list) or not instances:
        raise RequestError(400, '"instances" must be a non-empty list, one entry per example')
    named = [isinstance(i, dict) and not is_b64(i) for i in instances]
    if all(named):
        for instance in instances:
            if set(instance) != set(specs):
                raise RequestError(400, f"every instance must name the inputs {sorted(specs)}; received {sorted(instance)}")
        return {k: to_array([i[k] for i in instances], spec, k) for k, spec in specs.items()}
    if any(named) or len(specs) != 1:
        raise RequestError(400, f"instances must all be objects naming the inputs {sorted(specs)}, or, for a "
                                "one-input signature, all plain values")
    (key, spec), = specs.items()
    return {key: to_array(instances, spec, key)}


def columnar_inputs(inputs, specs: dict) -> dict[str, np.ndarray]:
    """Columnar format: a batch for the one input, or an object of named batches."""
    if isinstance(inputs, dict) and not is_b64(inputs):
        if set(inputs) != set(specs):
            raise RequestError(400, f'"inputs" must name the inputs {sorted(specs)}; received {sorted(inputs)}')
        return {k: to_array(inputs[k], spec, k) for k, spec in specs.items()}
    if len(specs) != 1:
        raise RequestError(400, f'"inputs" must be an object naming the inputs {sorted(specs)}')
    (key, spec), = specs.items()
    return {key: to_array(inputs, spec, key)}


def _jsonable(value, binary: bool):
    if isinstance(value, list):
        return [_jsonable(v, binary) for v in value]
    if isinstance(value, bytes):
        return {B64: base64.b64encode(value).decode("ascii")} if binary else value.decode("utf-8", "replace")
    return value


def format_outputs(outputs: dict[str, np.ndarray], row: bool) -> dict:
    """TF Serving's answer: ``{"predictions": [...]}`` for rows, ``{"outputs": ...}`` for columns.

    Example:
    >>> format_outputs({"class_id": np.array([3]), "thumb_bytes": np.array([b"\\x00"], object)}, row=True)
    {'predictions': [{'class_id': 3, 'thumb_bytes': {'b64': 'AA=='}}]}
    """
    values = {k: _jsonable(np.asarray(v).tolist(), k.endswith(BYTES_SUFFIX)) for k, v in sorted(outputs.items())}
    if not row:
        return {"outputs": next(iter(values.values())) if len(values) == 1 else values}
    if len(values) == 1:
        return {"predictions": next(iter(values.values()))}
    batch = len(next(iter(values.values())))
    return {"predictions": [{k: v[i] for k, v in values.items()} for i in range(batch)]}


def op_error_text(error: Exception) -> str:
    """What a TensorFlow op error says, without the graph's decoration.

    A function's error reads "Graph execution error: Detected at node ... defined at (most recent
    call last): File ... <the op's message> [[{{node ...}}]] [Op:...]"; the op's message is kept.

    Example:
    >>> op_error_text(ValueError("Graph execution error:\\n\\nDetected at node d defined at:\\n  File \\"x.py\\", "
    ...                          "line 1, in f\\n\\nUnknown image file format.\\n\\t [[{{node d}}]] [Op:f]"))
    'Unknown image file format.'
    """
    import re

    text = str(getattr(error, "message", "") or error)
    text = re.sub(r"\[\[.*?\]\]|\[Op:[^\]]*\](?: name:.*)?|\{\{function_node [^}]*\}\}", "", text)
    noise = ("Graph execution error", "Detected at node", "File ")
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith(noise)]
    return lines[-1] if lines else type(error).__name__
