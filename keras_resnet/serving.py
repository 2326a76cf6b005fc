"""A local HTTP endpoint that speaks TF Serving's REST API for the SavedModels under a folder.

Clients written for TF Serving work against it unchanged::

    GET  /v1/models/NAME                      version status
    GET  /v1/models/NAME[/versions/N]/metadata signature definitions
    POST /v1/models/NAME:predict              {"instances": [...]} -> {"predictions": [...]}
    POST /v1/models/NAME/versions/N:predict   {"inputs": ...}      -> {"outputs": ...}

Binary inputs (an image file for the exporter's ``serving_bytes`` signature) travel as
``{"b64": "..."}``, as in TF Serving (:mod:`keras_resnet.rest` has the body rules). Each version
(``BASE/NAME/<integer>/``) is loaded once at start with ``tf.saved_model.load``; requests call
its concrete signature functions in a bounded pool of worker threads. With ``batching=True``
(TF Serving's ``--enable_batching``) concurrent requests to one signature are joined into one
call. Bad requests get a 4xx answer ``{"error": "..."}``; nothing a client sends stops the
server. Serving in the foreground (``serve(block=True)``, ``keras-resnet serve``), SIGINT (Ctrl+C)
and SIGTERM (what Docker, systemd and Kubernetes send) stop it cleanly; requests still in flight
are dropped. It is meant for development and tests; production traffic belongs on TF Serving.

The HTTP layer is Tornado, chosen after trying the alternatives against what a server facing
arbitrary clients needs. waitress answers ``Expect: 100-continue`` with 100 even when the
announced body is over its limit, then waits for that body; uvicorn sets no timeout on a fresh
connection that never completes its headers; hypercorn sends 100 before the application can
refuse. Tornado has a header timeout for every request, the first included, that is also the
idle keep-alive timeout (``idle_connection_timeout``), a body timeout, header and body size
limits, and streaming handlers whose ``prepare()`` can answer 413 before a body is sent (no
``100 Continue`` goes out once the answer is finished). One event-loop thread holds every
connection, so slow clients tie up no worker thread; it is mature and maintained. What Tornado
cannot parse as HTTP (a malformed request line or header, headers over 64 KiB) it answers with a
bare 400 or by closing the connection, before any handler runs; every other answer is JSON.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import json
import logging
import os
import re
import signal
import threading
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path
from urllib.parse import unquote

import numpy as np
import tensorflow as tf
import tornado.httpserver
import tornado.ioloop
import tornado.netutil
import tornado.web

from keras_resnet import __version__
from keras_resnet.batching import Batcher, batch_size
from keras_resnet.defaults import (  # noqa: F401 - importable from here
    DEFAULT_BATCH_TIMEOUT_MICROS,
    DEFAULT_BODY_TIMEOUT,
    DEFAULT_IDLE_CONNECTION_TIMEOUT,
    DEFAULT_MAX_BATCH_SIZE,
    DEFAULT_MAX_BODY_BYTES,
    DEFAULT_MAX_HEADER_BYTES,
    DEFAULT_PORT,
    DEFAULT_WORKERS,
    VERSION_POLICIES,
)
from keras_resnet.rest import (  # noqa: F401 - importable from here
    RequestError,
    columnar_inputs,
    format_outputs,
    op_error_text,
    parse_json,
    row_inputs,
    to_array,
)
from keras_resnet.validation import check_bool, check_choice, check_float, check_int, check_path, check_type

logger = logging.getLogger(__name__)

DEFAULT_SIGNATURE = "serving_default"
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
SERVER_NAME = f"keras-resnet-serve/{__version__}"
DRAIN_FACTOR = 4  # an over-limit body up to this many times the limit is read and dropped, not cut off

_ROUTE = re.compile(
    r"^/v1/models/(?P<name>[^/:]+)(?:/versions/(?P<version>[^/:]+))?(?P<verb>:[A-Za-z]+|/metadata)?/?$"
)


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

    def run(self, signature: str, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Runs a signature on arrays; TensorFlow's errors pass through."""
        outputs = self.signatures[signature](**{k: tf.constant(v) for k, v in arrays.items()})
        return {k: v.numpy() for k, v in outputs.items()}

    def call(self, signature: str, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Runs a signature; an input it refuses (an image that does not decode) is a 400 naming
        the instance, found by running the instances one by one once the batch has failed."""
        try:
            return self.run(signature, arrays)
        except tf.errors.InvalidArgumentError as e:
            error = e
        size = batch_size(arrays)
        if size == 1:
            raise RequestError(400, f"instance 0: the signature {signature!r} cannot use it: {op_error_text(error)}")
        for i in range(size or 0):
            try:
                self.run(signature, {k: v[i:i + 1] for k, v in arrays.items()})
            except tf.errors.InvalidArgumentError as e:
                raise RequestError(400, f"instance {i}: the signature {signature!r} cannot use it: "
                                        f"{op_error_text(e)}") from None
        raise RequestError(400, f"the signature {signature!r} refused the input: {op_error_text(error)}")


@dataclass
class Prediction:
    """A parsed ``:predict`` request: the version, the signature and the input arrays."""

    served: ServedVersion
    signature: str
    arrays: dict[str, np.ndarray]
    row: bool

    def answer(self, outputs: dict[str, np.ndarray]) -> bytes:
        return json.dumps(format_outputs(outputs, self.row)).encode()


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

    def parse(self, name: str, version: str | None, payload: bytes) -> Prediction:
        """Reads a ``:predict`` request body into arrays; raises :class:`RequestError` for bad requests."""
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
        return Prediction(served, signature, arrays, row)

    def predict(self, name: str, version: str | None, payload: bytes) -> dict:
        """Answers a ``:predict`` request body; raises :class:`RequestError` for bad requests."""
        request = self.parse(name, version, payload)
        return format_outputs(request.served.call(request.signature, request.arrays), request.row)


# ---- HTTP -----------------------------------------------------------------------------------

@tornado.web.stream_request_body
class _Handler(tornado.web.RequestHandler):
    """Every path and method: TF Serving's routes, JSON answers, the body-size rules."""

    SUPPORTED_METHODS = ("GET", "HEAD", "POST", "DELETE", "PATCH", "PUT", "OPTIONS")

    def initialize(self, server: ModelServer) -> None:
        self.server = server
        self.chunks: list[bytes] = []
        self.received = 0
        self.too_large: str | None = None
        self.refused = False

    def set_default_headers(self) -> None:
        self.set_header("Server", SERVER_NAME)
        self.set_header("Content-Type", "application/json")

    def compute_etag(self) -> None:
        return None  # answers are computed per request; no If-None-Match revalidation

    def prepare(self) -> None:
        # Runs once the headers are in, before any of the body is read: the place to refuse a
        # body by its announced size (with Expect: 100-continue, before the client sends it).
        limit = self.server.max_body_bytes
        headers, connection = self.request.headers, self.request.connection
        value = headers.get("Content-Length")
        if value is None:
            if "chunked" in headers.get("Transfer-Encoding", "").lower():
                # Counted in data_received, which answers 413; Tornado's own limit, far above,
                # would answer a bare 400.
                connection.set_max_body_size(DRAIN_FACTOR * limit)
            return
        if not (value.isascii() and value.isdigit()):
            # Tornado would refuse this header with a bare 400 when it reads the body; the
            # client gets a JSON answer instead, and no body is read (the connection closes).
            del headers["Content-Length"]
            self._refuse(400, f"invalid Content-Length {value!r}")
            return
        length = int(value)
        if length <= limit:
            return
        message = f"request body of {length} bytes exceeds the limit of {limit} bytes"
        connection.set_max_body_size(length)
        if length > DRAIN_FACTOR * limit or headers.get("Expect", "").lower() == "100-continue":
            self._refuse(413, message)
        else:
            # Read and dropped: closing with unread data would make the kernel reset the
            # connection, and the client might never see the answer.
            self.too_large = message

    def data_received(self, chunk: bytes) -> None:
        if self.too_large is not None:
            return
        self.received += len(chunk)
        if self.received > self.server.max_body_bytes:  # a chunked body past the limit
            self.chunks.clear()
            self._refuse(413, f"request body exceeds the limit of {self.server.max_body_bytes} bytes")
            return
        self.chunks.append(chunk)

    def _refuse(self, status: int, message: str) -> None:
        """Answers before the body is read; Tornado then closes the connection."""
        self.refused = True
        self.set_header("Connection", "close")
        self._send(status, {"error": message})

    async def get(self, *args) -> None:
        if self.refused:  # answered while the body came in (a chunked body past the limit)
            return
        try:
            if self.too_large is not None:
                raise RequestError(413, self.too_large)
            status, payload = 200, await self._route()
        except RequestError as e:
            status, payload = e.status, {"error": e.message}
        except Exception as e:  # a bug must not take the server down; the client gets a 500
            logger.exception("error while answering %s %s", self.request.method, self.request.uri)
            status, payload = 500, {"error": f"internal error: {type(e).__name__}: {e}"}
        self._send(status, payload)

    post = put = delete = patch = head = options = get

    async def _route(self) -> dict | bytes:
        path = self.request.path
        match = _ROUTE.match(path)
        if not match:
            raise RequestError(404, f"unknown path {path!r}; expected /v1/models/NAME[/versions/N][:predict]")
        name, version, verb = unquote(match["name"]), match["version"], match["verb"]
        repository = self.server.repository
        if verb == ":predict":
            self._expect("POST")
            headers = self.request.headers
            if "Content-Length" not in headers and "chunked" not in headers.get("Transfer-Encoding", "").lower():
                raise RequestError(411, "a Content-Length header is required")
            return await self.server.predict(name, version, b"".join(self.chunks))
        if verb is not None and verb != "/metadata":
            raise RequestError(400, f"{verb[1:]!r} is not supported; these models answer :predict")
        self._expect("GET")
        return repository.find(name, version).metadata if verb else repository.status(name, version)

    def _expect(self, method: str) -> None:
        if self.request.method != method:
            raise RequestError(405, f"{self.request.method} is not allowed on {self.request.path}; use {method}")

    def _send(self, status: int, payload: dict | bytes) -> None:
        self.set_status(status)
        self.finish(payload if isinstance(payload, bytes) else json.dumps(payload).encode())

    def write_error(self, status_code: int, **kwargs) -> None:
        # Tornado's own answers (a method it does not route, an uncaught error) are HTML by default.
        if status_code == 405:
            message = f"{self.request.method} is not supported; use GET or POST"
        else:
            try:
                message = HTTPStatus(status_code).phrase
            except ValueError:
                message = f"status {status_code}"
        self.finish(json.dumps({"error": message}).encode())


def _log_request(handler: tornado.web.RequestHandler) -> None:
    logger.debug("%s %s %s -> %d (%.1f ms)", handler.request.remote_ip, handler.request.method, handler.request.uri,
                 handler.get_status(), 1e3 * handler.request.request_time())


class ModelServer:
    """An HTTP server over a :class:`ModelRepository`: Tornado's event loop in a background
    thread for the connections, a pool of worker threads for the model calls.

    The listening socket is bound here (``port=0`` is resolved at once, see :attr:`port`; a port
    in use raises ``OSError``); :meth:`start` begins answering.

    Args:
        repository: the loaded models.
        host: interface to bind (default loopback only). port: 0 picks a free port.
        max_body_bytes: larger request bodies get 413.
        workers: threads that run model calls (and parse and write the JSON).
        idle_connection_timeout: seconds a client has to send a request's headers, the first
            request included; also how long an idle keep-alive connection stays open.
        body_timeout: seconds a client has to send a request's body.
        batching: join concurrent requests to one signature into one call (see :class:`Batcher`).
        max_batch_size, batch_timeout_micros: the batching parameters, as TF Serving's.

    Example:
    >>> with ModelServer(ModelRepository("saved_models"), port=0).start() as server:  # doctest: +SKIP
    ...     print(server.url)
    """

    def __init__(self, repository: ModelRepository, host: str = "127.0.0.1", port: int = DEFAULT_PORT,
                 max_body_bytes: int = DEFAULT_MAX_BODY_BYTES, workers: int = DEFAULT_WORKERS,
                 idle_connection_timeout: float = DEFAULT_IDLE_CONNECTION_TIMEOUT,
                 body_timeout: float = DEFAULT_BODY_TIMEOUT, batching: bool = False,
                 max_batch_size: int = DEFAULT_MAX_BATCH_SIZE,
                 batch_timeout_micros: int = DEFAULT_BATCH_TIMEOUT_MICROS):
        check_type("repository", repository, ModelRepository, "a ModelRepository")
        _check_server_arguments(host, port, max_body_bytes, workers, idle_connection_timeout, body_timeout, batching,
                                max_batch_size, batch_timeout_micros)
        self.repository = repository
        self.host = host
        self.max_body_bytes = max_body_bytes
        self.idle_connection_timeout = float(idle_connection_timeout)
        self.body_timeout = float(body_timeout)
        try:
            self.sockets = tornado.netutil.bind_sockets(port, address=host, backlog=128)
        except OSError as e:
            hint = "; stop the server that holds it, or pick another port (0 picks a free one)" if port else ""
            raise OSError(e.errno, f"cannot listen on {host}:{port}: {e.strerror}{hint}") from None
        self.executor = concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="keras-resnet-serve")
        self.batcher = Batcher(self.executor, max_batch_size, batch_timeout_micros, workers) if batching else None
        self._thread: threading.Thread | None = None
        self._loop: tornado.ioloop.IOLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._stop_requested = False

    @property
    def socket(self):
        """The (first) listening socket."""
        return self.sockets[0]

    @property
    def port(self) -> int:
        return self.sockets[0].getsockname()[1]

    @property
    def url(self) -> str:
        host = self.sockets[0].getsockname()[0]
        if host in ("0.0.0.0", "::"):
            host = "127.0.0.1" if host == "0.0.0.0" else "::1"
        return f"http://{f'[{host}]' if ':' in host else host}:{self.port}"

    async def predict(self, name: str, version: str | None, payload: bytes) -> bytes:
        """A ``:predict`` answer body, computed in the worker threads (joined with others when batching)."""
        loop = asyncio.get_running_loop()
        if self.batcher is None:
            return await loop.run_in_executor(self.executor, self._predict, name, version, payload)
        request = await loop.run_in_executor(self.executor, self.repository.parse, name, version, payload)
        return await self.batcher.submit(request)

    def _predict(self, name: str, version: str | None, payload: bytes) -> bytes:
        return json.dumps(self.repository.predict(name, version, payload)).encode()

    def start(self) -> ModelServer:
        """Serves in a background thread and returns once the event loop answers."""
        if self._thread is not None:
            return self
        ready = threading.Event()
        self._thread = threading.Thread(target=asyncio.run, args=(self._serve(ready),), name="keras-resnet-serve",
                                        daemon=True)
        self._thread.start()
        while not ready.wait(0.05):
            if not self._thread.is_alive():
                raise RuntimeError("the server's event loop ended while starting")
        return self

    async def _serve(self, ready: threading.Event) -> None:
        self._loop = tornado.ioloop.IOLoop.current()
        self._stopping = asyncio.Event()
        application = tornado.web.Application([(r".*", _Handler, {"server": self})], log_function=_log_request)
        http = tornado.httpserver.HTTPServer(
            application, idle_connection_timeout=self.idle_connection_timeout, body_timeout=self.body_timeout,
            max_body_size=self.max_body_bytes, max_header_size=DEFAULT_MAX_HEADER_BYTES,
        )
        http.add_sockets(self.sockets)
        ready.set()
        try:
            await self._stopping.wait()
        finally:
            http.stop()  # closes the listening sockets
            if self.batcher is not None:
                self.batcher.cancel()
            await http.close_all_connections()

    def stop(self) -> None:
        """Stops serving, closes the sockets and waits for the model calls under way."""
        if self._thread is not None:
            if self._loop is not None and self._stopping is not None:
                self._loop.add_callback(self._stopping.set)
            self._thread.join()
            self._thread = None
        for sock in self.sockets:
            sock.close()
        self.executor.shutdown(wait=True, cancel_futures=True)

    def request_stop(self) -> None:
        """Asks :meth:`wait` to stop the server and return; safe from a signal handler or any thread.

        A signal handler runs in the main thread between two of its bytecodes, possibly while it
        holds a lock that stopping needs; so this only sets a flag, which :meth:`wait` polls.
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


def _check_server_arguments(host, port, max_body_bytes, workers, idle_connection_timeout, body_timeout, batching,
                            max_batch_size, batch_timeout_micros) -> None:
    check_type("host", host, str, "a host name or IP address")
    check_int("port", port, 0, 65535)
    check_int("max_body_bytes", max_body_bytes, 1)
    check_int("workers", workers, 1, 1024)
    check_float("idle_connection_timeout", idle_connection_timeout, 0, exclusive_minimum=True)
    check_float("body_timeout", body_timeout, 0, exclusive_minimum=True)
    check_bool("batching", batching)
    check_int("max_batch_size", max_batch_size, 1)
    check_int("batch_timeout_micros", batch_timeout_micros, 0)


def serve(
    base: str | os.PathLike = "saved_models",
    port: int = DEFAULT_PORT,
    host: str = "127.0.0.1",
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    version_policy: str = "all",
    block: bool = True,
    workers: int = DEFAULT_WORKERS,
    idle_connection_timeout: float = DEFAULT_IDLE_CONNECTION_TIMEOUT,
    body_timeout: float = DEFAULT_BODY_TIMEOUT,
    batching: bool = False,
    max_batch_size: int = DEFAULT_MAX_BATCH_SIZE,
    batch_timeout_micros: int = DEFAULT_BATCH_TIMEOUT_MICROS,
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
        workers: threads that run model calls (default 4).
        idle_connection_timeout: seconds to send a request's headers; the idle keep-alive time.
        body_timeout: seconds to send a request's body.
        batching: join concurrent ``:predict`` requests to one signature into one call, as TF
            Serving's ``--enable_batching``.
        max_batch_size: the most examples in a joined call (default 32).
        batch_timeout_micros: how long the first request of a batch waits for others while a
            worker is free (default 0: batches form only while the workers are busy).

    Returns:
        The :class:`ModelServer` (already stopped when ``block`` is True).

    Example:
    >>> server = serve("saved_models", port=0, block=False)  # doctest: +SKIP
    >>> server.url  # doctest: +SKIP
    'http://127.0.0.1:40135'
    >>> server.stop()  # doctest: +SKIP
    """
    _check_server_arguments(host, port, max_body_bytes, workers, idle_connection_timeout, body_timeout, batching,
                            max_batch_size, batch_timeout_micros)
    check_choice("version_policy", version_policy, VERSION_POLICIES, "'all' or 'latest'")
    check_bool("block", block)
    server = ModelServer(ModelRepository(base, version_policy), host, port, max_body_bytes, workers,
                         idle_connection_timeout, body_timeout, batching, max_batch_size, batch_timeout_micros)
    if not block:
        return server.start()
    # The handlers go in before the serving thread starts, so no signal finds it unguarded.
    with server.stop_on_signals():
        server.start()
        server.wait()
    return server
