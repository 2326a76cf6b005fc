"""A local HTTP endpoint that speaks TF Serving's REST API for the SavedModels under a folder.

Clients written for TF Serving work against it unchanged::

    GET  /v1/models/NAME                      version status
    GET  /v1/models/NAME[/versions/N]/metadata signature definitions
    POST /v1/models/NAME:predict              {"instances": [...]} -> {"predictions": [...]}
    POST /v1/models/NAME/versions/N:predict   {"inputs": ...}      -> {"outputs": ...}

Each version (``BASE/NAME/<integer>/``) is loaded once at start with ``tf.saved_model.load``
and requests call its concrete signature functions, which are safe to call from the server's
threads. Bad requests get a 4xx answer ``{"error": "..."}``; nothing a client sends stops the
server. Serving in the foreground (``serve(block=True)``, ``keras-resnet serve``), SIGINT (Ctrl+C)
and SIGTERM (what Docker, systemd and Kubernetes send) stop it cleanly. It is meant for
development and tests; production traffic belongs on TF Serving.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import re
import signal
import sys
import threading
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

import numpy as np
import tensorflow as tf

from keras_resnet import __version__
from keras_resnet.defaults import DEFAULT_MAX_BODY_BYTES, DEFAULT_PORT, VERSION_POLICIES  # noqa: F401 - importable from here
from keras_resnet.validation import check_bool, check_choice, check_int, check_path, check_type

logger = logging.getLogger(__name__)

DEFAULT_SIGNATURE = "serving_default"
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)

_ROUTE = re.compile(
    r"^/v1/models/(?P<name>[^/:]+)(?:/versions/(?P<version>[^/:]+))?(?P<verb>:[A-Za-z]+|/metadata)?/?$"
)


class RequestError(Exception):
    """A request the server answers with a 4xx status and ``{"error": message}``."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = int(status)
        self.message = message


@dataclass
class ServedVersion:
    """One loaded version of a model: its signatures and their input specs."""

    name: str
    version: int
    path: Path
    loaded: object = field(repr=False)
    signatures: dict = field(repr=False)
    inputs: dict = field(repr=False)

    @classmethod
    def load(cls, name: str, version: int, path: Path) -> ServedVersion:
        loaded = tf.saved_model.load(str(path))
        signatures = dict(loaded.signatures)
        if DEFAULT_SIGNATURE not in signatures:
            raise ValueError(f"{path} has no {DEFAULT_SIGNATURE!r} signature; it has {sorted(signatures)}")
        inputs = {key: dict(fn.structured_input_signature[1]) for key, fn in signatures.items()}
        return cls(name, version, path, loaded, signatures, inputs)

    @functools.cached_property
    def metadata(self) -> dict:
        """The signature definitions, as TF Serving's ``/metadata`` answers them."""
        from google.protobuf import json_format

        # The SavedModel's protocol buffer: TensorFlow's published file format, the same
        # generated module that tensorflow-serving-api's own messages import (no tf.* alias).
        from tensorflow.core.protobuf import saved_model_pb2

        proto = saved_model_pb2.SavedModel.FromString((self.path / "saved_model.pb").read_bytes())
        defs = proto.meta_graphs[0].signature_def
        return {
            "model_spec": {"name": self.name, "signature_name": "", "version": str(self.version)},
            "metadata": {"signature_def": {"signature_def": {
                key: json_format.MessageToDict(defs[key], preserving_proto_field_name=True)
                for key in sorted(self.signatures)
            }}},
        }


class ModelRepository:
    """The models under ``base``: every ``NAME/<integer>/saved_model.pb``, loaded once.

    Args:
        base: the model base folder (``saved_models`` by default in the exporter).
        version_policy: ``"all"`` loads every version; ``"latest"`` only the highest, as TF
            Serving does by default.

    Example:
    >>> repository = ModelRepository("saved_models")  # doctest: +SKIP
    >>> repository.versions("digits")  # doctest: +SKIP
    [1, 2]
    """

    def __init__(self, base: str | os.PathLike, version_policy: str = "all"):
        check_choice("version_policy", version_policy, VERSION_POLICIES, "'all' or 'latest'")
        check_path("base", base, allowed="a folder path")
        self.base = Path(base)
        if not self.base.is_dir():
            raise ValueError(f"model base folder {str(self.base)!r} does not exist")
        self.models: dict[str, dict[int, ServedVersion]] = {}
        for model_dir in sorted(self.base.iterdir()):
            if not model_dir.is_dir() or model_dir.name.startswith("."):
                continue
            # Only integer folders are versions, as for TF Serving; staging and .failed ones are not.
            versions = sorted(
                int(child.name) for child in model_dir.iterdir()
                if child.name.isascii() and child.name.isdigit() and (child / "saved_model.pb").is_file()
            )
            if version_policy == "latest":
                versions = versions[-1:]
            if versions:
                self.models[model_dir.name] = {
                    v: ServedVersion.load(model_dir.name, v, model_dir / str(v)) for v in versions
                }
        if not self.models:
            raise ValueError(f"no models under {str(self.base)!r}; expected {self.base}/NAME/VERSION/saved_model.pb")

    def versions(self, name: str) -> list[int]:
        return sorted(self.models.get(name, {}))

    def find(self, name: str, version: str | int | None = None) -> ServedVersion:
        """The requested version, or the latest; :class:`RequestError` 404 when unknown."""
        if name not in self.models:
            raise RequestError(404, f"unknown model {name!r}; serving {', '.join(sorted(self.models))}")
        versions = self.models[name]
        if version is None:
            return versions[max(versions)]
        number = int(version) if str(version).isascii() and str(version).isdigit() else None
        if number not in versions:
            raise RequestError(404, f"model {name!r} has no version {version!r}; available: "
                                    f"{', '.join(map(str, sorted(versions)))}")
        return versions[number]

    def status(self, name: str, version: str | None = None) -> dict:
        """TF Serving's model status answer for one version or all of them."""
        self.find(name, version)  # 404 for an unknown model or version
        served = [self.find(name, version)] if version is not None else [
            self.models[name][v] for v in sorted(self.models[name], reverse=True)
        ]
        return {"model_version_status": [
            {"version": str(s.version), "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}
            for s in served
        ]}

    def predict(self, name: str, version: str | None, payload: bytes) -> dict:
        """Answers a ``:predict`` request body; raises :class:`RequestError` for bad requests."""
        served = self.find(name, version)
        body = parse_json(payload)
        if not isinstance(body, dict):
            raise RequestError(400, f"the request body must be a JSON object; received {type(body).__name__}")
        signature = body.get("signature_name", DEFAULT_SIGNATURE)
        if not isinstance(signature, str) or signature not in served.signatures:
            raise RequestError(400, f"unknown signature_name {signature!r}; available: {', '.join(sorted(served.signatures))}")
        if ("instances" in body) == ("inputs" in body):
            raise RequestError(400, 'the request body must hold exactly one of "instances" (row format) '
                                    'or "inputs" (columnar format)')
        specs = served.inputs[signature]
        row = "instances" in body
        arrays = row_inputs(body["instances"], specs) if row else columnar_inputs(body["inputs"], specs)
        outputs = served.signatures[signature](**{k: tf.constant(v) for k, v in arrays.items()})
        return format_outputs({k: v.numpy() for k, v in outputs.items()}, row)


# ---- request and response bodies ----------------------------------------------------------

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


def _shape_text(spec: tf.TensorSpec) -> str:
    dims = ["batch" if i == 0 and d is None else ("any" if d is None else str(d)) for i, d in enumerate(spec.shape)]
    return f"[{', '.join(dims)}] ({spec.dtype.name})"


def to_array(value, spec: tf.TensorSpec, name: str) -> np.ndarray:
    """Converts a JSON value to an array of ``spec``'s dtype and shape, or raises 400."""
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
    expected = spec.shape.as_list()
    if array.ndim != len(expected) or any(e is not None and e != d for e, d in zip(expected, array.shape)):
        raise RequestError(400, f"input {name!r} must have shape {_shape_text(spec)}; received shape {list(array.shape)}")
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
    named = [isinstance(i, dict) for i in instances]
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
    if isinstance(inputs, dict):
        if set(inputs) != set(specs):
            raise RequestError(400, f'"inputs" must name the inputs {sorted(specs)}; received {sorted(inputs)}')
        return {k: to_array(inputs[k], spec, k) for k, spec in specs.items()}
    if len(specs) != 1:
        raise RequestError(400, f'"inputs" must be an object naming the inputs {sorted(specs)}')
    (key, spec), = specs.items()
    return {key: to_array(inputs, spec, key)}


def _jsonable(value):
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def format_outputs(outputs: dict[str, np.ndarray], row: bool) -> dict:
    """TF Serving's answer: ``{"predictions": [...]}`` for rows, ``{"outputs": ...}`` for columns."""
    values = {k: _jsonable(np.asarray(v).tolist()) for k, v in sorted(outputs.items())}
    if not row:
        return {"outputs": next(iter(values.values())) if len(values) == 1 else values}
    if len(values) == 1:
        return {"predictions": next(iter(values.values()))}
    batch = len(next(iter(values.values())))
    return {"predictions": [{k: v[i] for k, v in values.items()} for i in range(batch)]}


# ---- HTTP -----------------------------------------------------------------------------------

class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as TF Serving clients expect
    server_version = f"keras-resnet-serve/{__version__}"
    timeout = 60  # seconds a silent client may hold a connection

    server: ModelServer

    def do_GET(self):
        self._handle()

    def do_POST(self):
        self._handle()

    def do_PUT(self):
        self._handle()

    do_DELETE = do_PATCH = do_PUT

    def _handle(self) -> None:
        self._body_done = False
        try:
            status, payload = 200, self._route()
        except RequestError as e:
            status, payload = e.status, {"error": e.message}
        except Exception as e:  # a bug must not take the server down; the client gets a 500
            logger.exception("error while answering %s %s", self.command, self.path)
            status, payload = 500, {"error": f"internal error: {type(e).__name__}: {e}"}
        if not self._body_done:
            try:
                self._discard_body()
            except RequestError:
                self.close_connection = True
        self._send_json(status, payload)

    def _route(self) -> dict:
        match = _ROUTE.match(urlsplit(self.path).path)
        if not match:
            raise RequestError(404, f"unknown path {self.path!r}; expected /v1/models/NAME[/versions/N][:predict]")
        name, version, verb = unquote(match["name"]), match["version"], match["verb"]
        repository = self.server.repository
        if verb == ":predict":
            self._expect("POST")
            return repository.predict(name, version, self._read_body())
        if verb is not None and verb != "/metadata":
            raise RequestError(400, f"{verb[1:]!r} is not supported; these models answer :predict")
        self._expect("GET")
        return repository.find(name, version).metadata if verb else repository.status(name, version)

    def _expect(self, method: str) -> None:
        if self.command != method:
            raise RequestError(405, f"{self.command} is not allowed on {self.path}; use {method}")

    def _content_length(self) -> int | None:
        value = self.headers.get("Content-Length")
        if value is None:
            return None
        if not value.strip().isdigit():
            self.close_connection = True
            raise RequestError(400, f"invalid Content-Length {value!r}")
        return int(value)

    def _read_body(self) -> bytes:
        self._body_done = True
        length = self._content_length()
        if length is None:
            self.close_connection = True
            raise RequestError(411, "a Content-Length header is required")
        limit = self.server.max_body_bytes
        if length > limit:
            self._discard_body(length)
            raise RequestError(413, f"request body of {length} bytes exceeds the limit of {limit} bytes")
        body = self.rfile.read(length)
        if len(body) < length:
            self.close_connection = True
            raise RequestError(400, f"the request body ended after {len(body)} of {length} bytes")
        return body

    def _discard_body(self, length: int | None = None) -> None:
        # Reading what the client sent keeps the connection in step; closing on unread data
        # would make the kernel reset it and the client might never see the answer.
        self._body_done = True
        length = self._content_length() if length is None else length
        if not length:
            return
        if length > 4 * self.server.max_body_bytes:
            self.close_connection = True
            return
        while length > 0:
            chunk = self.rfile.read(min(length, 1 << 16))
            if not chunk:
                self.close_connection = True
                return
            length -= len(chunk)

    def handle_expect_100(self) -> bool:
        length = self.headers.get("Content-Length", "")
        if length.isdigit() and int(length) > self.server.max_body_bytes:
            self.close_connection = True
            self._send_json(413, {"error": f"request body of {length} bytes exceeds the limit of "
                                           f"{self.server.max_body_bytes} bytes"})
            return False
        return super().handle_expect_100()

    def send_error(self, code, message=None, explain=None):
        # http.server's own errors (bad request line, unsupported method) are HTML; make them JSON.
        self.close_connection = True
        self._send_json(code, {"error": message or explain or HTTPStatus(code).phrase})

    def _send_json(self, status: int, payload: dict) -> None:
        body = json.dumps(payload).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client left; nothing to answer

    def log_message(self, format, *args):  # noqa: A002 - the base class's signature
        logger.debug("%s - %s", self.address_string(), format % args)


class ModelServer(ThreadingHTTPServer):
    """A threaded HTTP server over a :class:`ModelRepository`.

    Args:
        repository: the loaded models.
        host: interface to bind. port: 0 picks a free port (see :attr:`port`).
        max_body_bytes: larger request bodies get 413.

    Example:
    >>> with ModelServer(ModelRepository("saved_models"), port=0).start() as server:  # doctest: +SKIP
    ...     print(server.url)
    """

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, repository: ModelRepository, host: str = "127.0.0.1", port: int = DEFAULT_PORT,
                 max_body_bytes: int = DEFAULT_MAX_BODY_BYTES):
        super().__init__((host, port), _Handler)
        self.repository = repository
        self.max_body_bytes = max_body_bytes
        self._thread: threading.Thread | None = None
        self._stop_requested = False

    @property
    def port(self) -> int:
        return self.server_address[1]

    @property
    def url(self) -> str:
        host = self.server_address[0]
        return f"http://{'127.0.0.1' if host in ('', '0.0.0.0') else host}:{self.port}"

    def start(self) -> ModelServer:
        """Serves in a background thread and returns at once."""
        self._thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.1},
                                        name="keras-resnet-serve", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stops serving and closes the socket."""
        if self._thread is not None:
            self.shutdown()
            self._thread.join()
            self._thread = None
        self.server_close()

    def handle_error(self, request, client_address) -> None:
        # A client that goes away mid-conversation (closing with an answer unread resets the
        # connection) is routine, not a server fault worth a traceback on stderr.
        if isinstance(sys.exc_info()[1], ConnectionError):
            logger.debug("%s closed the connection: %s", client_address, sys.exc_info()[1])
            return
        super().handle_error(request, client_address)

    def request_stop(self) -> None:
        """Asks :meth:`wait` to stop the server and return; safe from a signal handler or any thread.

        A signal handler runs in the main thread between two of its bytecodes, possibly while it
        holds a lock that ``shutdown()`` needs; so this only sets a flag, which :meth:`wait` polls.
        """
        self._stop_requested = True

    @contextlib.contextmanager
    def stop_on_signals(self, signals=STOP_SIGNALS):
        """While inside, ``signals`` (SIGINT and SIGTERM) call :meth:`request_stop` instead of
        raising ``KeyboardInterrupt`` or ending the process; the previous handlers come back on exit.

        Python installs signal handlers only in the main thread; elsewhere this changes nothing.

        Example:
        >>> with server.stop_on_signals():  # doctest: +SKIP
        ...     print("serving; Ctrl+C stops", flush=True)
        ...     server.wait()
        """
        if threading.current_thread() is not threading.main_thread():
            yield self
            return

        def handler(signum, frame):
            self.request_stop()

        previous = {}
        try:
            for signum in signals:
                previous[signum] = signal.signal(signum, handler)
            yield self
        finally:
            for signum, old in previous.items():
                # None: the old handler was not installed from Python; the default is the nearest.
                signal.signal(signum, signal.SIG_DFL if old is None else old)

    def wait(self) -> None:
        """Blocks until SIGINT (Ctrl+C), SIGTERM, :meth:`request_stop` or :meth:`stop` from another
        thread, then stops. In the main thread the two signals are handled while it waits (see
        :meth:`stop_on_signals`); enter that yourself first to cover what you do before waiting."""
        with self.stop_on_signals():
            try:
                thread = self._thread
                while not self._stop_requested and thread is not None and thread.is_alive():
                    thread.join(0.2)
            finally:
                self.stop()

    def __enter__(self) -> ModelServer:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def serve(
    base: str | os.PathLike = "saved_models",
    port: int = DEFAULT_PORT,
    host: str = "127.0.0.1",
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    version_policy: str = "all",
    block: bool = True,
) -> ModelServer:
    """Serves the models under ``base`` over TF Serving's REST API.

    Args:
        base: the model base folder, laid out as ``base/NAME/VERSION/``.
        port: TCP port; 0 picks a free one (read it from the returned server's ``port``).
        host: interface to bind; ``"0.0.0.0"`` to accept other machines.
        max_body_bytes: request bodies above this size get 413.
        version_policy: ``"all"`` versions, or only the ``"latest"`` of each model.
        block: serve until SIGINT (Ctrl+C) or SIGTERM, which stop the server cleanly; with False,
            serve in a background thread and return (stop it with ``stop()``).

    Returns:
        The :class:`ModelServer` (already stopped when ``block`` is True).

    Example:
    >>> server = serve("saved_models", port=0, block=False)  # doctest: +SKIP
    >>> server.url  # doctest: +SKIP
    'http://127.0.0.1:40135'
    >>> server.stop()  # doctest: +SKIP
    """
    port = check_int("port", port, 0, 65535)
    check_type("host", host, str, "a host name or IP address")
    max_body_bytes = check_int("max_body_bytes", max_body_bytes, 1)
    check_choice("version_policy", version_policy, VERSION_POLICIES, "'all' or 'latest'")
    check_bool("block", block)
    server = ModelServer(ModelRepository(base, version_policy), host, port, max_body_bytes)
    if not block:
        return server.start()
    # The handlers go in before the serving thread starts, so no signal finds it unguarded.
    with server.stop_on_signals():
        server.start()
        server.wait()
    return server
