"""Tests of keras_resnet.serving: TF Serving's REST API, bad requests, concurrency, the CLI."""

from __future__ import annotations

import http.client
import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_resnet import export, serving
from keras_resnet.models import ResNet

SHAPE = (8, 8, 1)
NAMES = ["left", "middle", "right"]
MAX_BODY = 64 * 1024
ENTRY = Path(sys.executable).with_name("keras-resnet")
PATIENCE = 300  # seconds: a bound for hangs only; a loaded 2-core machine needs far less


def tiny_model(seed):
    """Raw pixels in, probabilities out; trained a few steps so that two seeds disagree."""
    keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, 300)
    x = rng.integers(0, 90, (300, *SHAPE)).astype("float32")
    for i, c in enumerate(y):
        x[i, :, 1 + 2 * c:3 + 2 * c, 0] += 150
    model = keras.Sequential(
        [keras.Input(SHAPE), keras.layers.Rescaling(1 / 255), ResNet(depth=8, input_shape=SHAPE, classes=3)]
    )
    model.compile(keras.optimizers.Adam(0.01), "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=1, batch_size=50, verbose=0)
    return model


@pytest.fixture(scope="module")
def models():
    return {1: tiny_model(1), 2: tiny_model(2)}


@pytest.fixture(scope="module")
def base(models, tmp_path_factory):
    base = tmp_path_factory.mktemp("saved_models")
    for version, model in models.items():
        export.export_saved_model(model, base, "tiny", version=version, class_names=NAMES)
    # Neither a staging folder nor a failed export is a version.
    shutil.copytree(base / "tiny" / "1", base / "tiny" / "3.failed")
    shutil.copytree(base / "tiny" / "1", base / "tiny" / ".staging-4-abc")
    return base


@pytest.fixture(scope="module")
def server(base):
    server = serving.serve(base, port=0, max_body_bytes=MAX_BODY, block=False)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(0).integers(0, 256, (5, *SHAPE)).astype("float32")


def request(server, method, path, body=None, headers=None, connection=None):
    """Sends one request; returns (status, parsed JSON). Reuses ``connection`` when given."""
    conn = connection or http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    conn.request(method, path, body=data, headers=headers or {})
    response = conn.getresponse()
    payload = json.loads(response.read())
    if connection is None:
        conn.close()
    return response.status, payload


# ---- the API ---------------------------------------------------------------------------------

def test_status_and_metadata(server):
    status, body = request(server, "GET", "/v1/models/tiny")
    assert status == 200
    assert [(v["version"], v["state"]) for v in body["model_version_status"]] == [("2", "AVAILABLE"), ("1", "AVAILABLE")]
    status, body = request(server, "GET", "/v1/models/tiny/versions/1")
    assert status == 200 and [v["version"] for v in body["model_version_status"]] == ["1"]
    status, body = request(server, "GET", "/v1/models/tiny/metadata")
    assert status == 200 and body["model_spec"] == {"name": "tiny", "signature_name": "", "version": "2"}
    signature = body["metadata"]["signature_def"]["signature_def"]["serving_default"]
    assert [int(d["size"]) for d in signature["inputs"]["images"]["tensor_shape"]["dim"]] == [-1, 8, 8, 1]
    assert set(signature["outputs"]) == {"probabilities", "class_id", "class_name", "top_k_classes", "top_k_probabilities"}


def test_row_format_predicts_like_the_keras_model(server, models, images):
    expected = models[2].predict(images, verbose=0)
    status, body = request(server, "POST", "/v1/models/tiny:predict", {"instances": images.tolist()})
    assert status == 200
    predictions = body["predictions"]
    np.testing.assert_allclose([p["probabilities"] for p in predictions], expected, atol=1e-5)
    assert [p["class_id"] for p in predictions] == expected.argmax(-1).tolist()
    assert [p["class_name"] for p in predictions] == [NAMES[i] for i in expected.argmax(-1)]
    # Named instances are the same request.
    named = {"instances": [{"images": image} for image in images.tolist()]}
    assert request(server, "POST", "/v1/models/tiny:predict", named) == (status, body)


def test_versions_and_columnar_format(server, models, images):
    expected = {v: m.predict(images[:2], verbose=0) for v, m in models.items()}
    assert np.abs(expected[1] - expected[2]).max() > 1e-3  # the versions are distinguishable
    for version in (1, 2):
        for inputs in (images[:2].tolist(), {"images": images[:2].tolist()}):
            status, body = request(server, "POST", f"/v1/models/tiny/versions/{version}:predict", {"inputs": inputs})
            assert status == 200
            np.testing.assert_allclose(body["outputs"]["probabilities"], expected[version], atol=1e-5)
            assert body["outputs"]["class_id"] == expected[version].argmax(-1).tolist()


def test_uint8_signature(server, models, images):
    body = {"signature_name": "serving_uint8", "instances": images.astype(int).tolist()}
    status, answer = request(server, "POST", "/v1/models/tiny:predict", body)
    assert status == 200
    np.testing.assert_allclose([p["probabilities"] for p in answer["predictions"]],
                               models[2].predict(images, verbose=0), atol=1e-5)


# ---- bad requests ----------------------------------------------------------------------------

GOOD = np.zeros((1, *SHAPE)).tolist()


def with_first_pixel(literal: bytes) -> bytes:
    """A well-shaped row-format body whose first pixel is the JSON number ``literal``, sent as is."""
    return json.dumps({"instances": GOOD}).encode().replace(b"0.0", literal, 1)


BAD_REQUESTS = [
    ("POST", "/v1/models/tiny:predict", b"{not json", 400, "malformed JSON"),
    ("POST", "/v1/models/tiny:predict", b'{"instances": [NaN]}', 400, "NaN is not valid JSON"),
    ("POST", "/v1/models/tiny:predict", b"\xff\xfe", 400, "malformed JSON"),
    ("POST", "/v1/models/tiny:predict", [1, 2], 400, "must be a JSON object"),
    ("POST", "/v1/models/tiny:predict", {"x": 1}, 400, 'exactly one of "instances"'),
    ("POST", "/v1/models/tiny:predict", {"instances": GOOD, "inputs": GOOD}, 400, 'exactly one of "instances"'),
    ("POST", "/v1/models/tiny:predict", {"instances": []}, 400, "non-empty list"),
    ("POST", "/v1/models/tiny:predict", {"instances": np.zeros((1, 8, 8)).tolist()}, 400,
     "must have shape [batch, 8, 8, 1] (float32); received shape [1, 8, 8]"),
    ("POST", "/v1/models/tiny:predict", {"inputs": np.zeros((2, 8, 8, 3)).tolist()}, 400, "received shape [2, 8, 8, 3]"),
    ("POST", "/v1/models/tiny:predict", {"instances": [GOOD[0], GOOD[0][:4]]}, 400, "ragged"),
    ("POST", "/v1/models/tiny:predict", {"instances": [[[["a"]] * 8] * 8]}, 400, "must hold numbers of type float32; received strings"),
    ("POST", "/v1/models/tiny:predict", {"instances": [[[[True]] * 8] * 8]}, 400, "received booleans"),
    ("POST", "/v1/models/tiny:predict", {"instances": [[[[1e39]] * 8] * 8]}, 400, "outside the range of float32"),
    ("POST", "/v1/models/tiny:predict", {"instances": [{"pixels": GOOD[0]}]}, 400, "must name the inputs ['images']"),
    ("POST", "/v1/models/tiny:predict", {"signature_name": "serving_uint8", "instances": [[[[300]] * 8] * 8]}, 400,
     "uint8 values in [0, 255]"),
    ("POST", "/v1/models/tiny:predict", {"signature_name": "serving_uint8", "instances": [[[[1.5]] * 8] * 8]}, 400,
     "must hold integers"),
    ("POST", "/v1/models/tiny:predict", {"signature_name": "nope", "instances": GOOD}, 400, "unknown signature_name 'nope'"),
    ("POST", "/v1/models/tiny:predict", {"signature_name": ["a"], "instances": GOOD}, 400, "unknown signature_name ['a']"),
    ("POST", "/v1/models/nope:predict", {"instances": GOOD}, 404, "unknown model 'nope'"),
    ("POST", "/v1/models/tiny/versions/3:predict", {"instances": GOOD}, 404, "has no version '3'; available: 1, 2"),
    ("GET", "/v1/models/tiny/versions/x", None, 404, "has no version 'x'"),
    ("POST", "/v1/models/tiny:classify", {"examples": []}, 400, "'classify' is not supported"),
    ("GET", "/v1/models/tiny:predict", None, 405, "use POST"),
    ("POST", "/v1/models/tiny", {"instances": GOOD}, 405, "use GET"),
    ("DELETE", "/v1/models/tiny", None, 405, "use GET"),
    ("GET", "/v2/models", None, 404, "unknown path"),
    ("POST", "/v1/models/tiny:predict", b" " * (MAX_BODY + 1), 413, f"exceeds the limit of {MAX_BODY} bytes"),
    # Numbers and nesting that the JSON parser or NumPy refuse: still the client's mistake.
    ("POST", "/v1/models/tiny:predict", with_first_pixel(b"9" * 5000), 400,
     f"an integer in the request body has more than {sys.get_int_max_str_digits()} digits"),
    ("POST", "/v1/models/tiny:predict", with_first_pixel(b"-" + b"9" * 5000), 400, "has more than"),
    ("POST", "/v1/models/tiny:predict", with_first_pixel(b"9" * 400), 400, "outside the range of float32"),
    ("POST", "/v1/models/tiny:predict", {"signature_name": "serving_uint8", "instances": [[[[2**70]] * 8] * 8]}, 400,
     "uint8 values in [0, 255]"),
    ("POST", "/v1/models/tiny:predict", with_first_pixel(b"1e999999999"), 400, "outside the range of float32"),
    ("POST", "/v1/models/tiny:predict", with_first_pixel(b"-1E+999999999"), 400, "outside the range of float32"),
    ("POST", "/v1/models/tiny:predict", b"[" * 20_000 + b"]" * 20_000, 400, "nested too deeply"),
    ("POST", "/v1/models/tiny:predict", json.dumps({"instances": [json.loads("[" * 100 + "]" * 100)]}).encode(), 400,
     "ragged or nested too deeply"),
]


@pytest.mark.parametrize("method,path,body,status,message", BAD_REQUESTS, ids=[b[-1][:30] for b in BAD_REQUESTS])
def test_bad_request_gets_4xx_and_the_connection_still_works(server, method, path, body, status, message):
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    got_status, answer = request(server, method, path, body, connection=connection)
    assert got_status == status and set(answer) == {"error"}
    assert message in answer["error"]
    # The same keep-alive connection (or a new one, where the server closed it) still works.
    if connection.sock is None:
        connection = None
    assert request(server, "POST", "/v1/models/tiny:predict", {"instances": GOOD}, connection=connection)[0] == 200


def random_json(rng, depth=0):
    """A random JSON value mixing numbers, strings, nulls, nested lists and objects."""
    if depth > 5 or rng.random() < 0.3:
        return [0, 1.5, -3, 10**400, 1e308, "x", None, True, [], {}, 255, 256][rng.integers(12)]
    if rng.random() < 0.6:
        return [random_json(rng, depth + 1) for _ in range(int(rng.choice([1, 2, 8])))]
    keys = ["images", "instances", "inputs", "signature_name", "x"]
    return {keys[rng.integers(5)]: random_json(rng, depth + 1) for _ in range(rng.integers(1, 4))}


def test_random_bodies_get_4xx_never_an_exception(server):
    rng = np.random.default_rng(0)
    bodies = [random_json(rng) for _ in range(300)] + [{"instances": random_json(rng)} for _ in range(300)]
    bodies += [{"inputs": random_json(rng)} for _ in range(200)]
    statuses = []
    for body in bodies:
        try:
            server.repository.predict("tiny", None, json.dumps(body).encode())
            statuses.append(200)
        except serving.RequestError as e:
            statuses.append(e.status)
    assert set(statuses) <= {200, 400} and statuses.count(400) > 700


def test_missing_content_length_gets_411(server):
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    connection.putrequest("POST", "/v1/models/tiny:predict")
    connection.endheaders()
    response = connection.getresponse()
    assert response.status == 411 and "Content-Length" in json.loads(response.read())["error"]


def test_expect_100_continue_refuses_an_oversized_body_before_it_is_sent(server):
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    connection.putrequest("POST", "/v1/models/tiny:predict")
    connection.putheader("Content-Length", str(10 * MAX_BODY))
    connection.putheader("Expect", "100-continue")
    connection.endheaders()
    response = connection.getresponse()
    assert response.status == 413 and "exceeds the limit" in json.loads(response.read())["error"]


@pytest.mark.slow
def test_concurrent_clients(server, models, images):
    """8 threads x 200 requests on keep-alive connections, every 10th one bad: no 5xx, right answers."""
    expected = models[2].predict(images, verbose=0).argmax(-1)
    bad = json.dumps({"instances": np.zeros((1, 8, 8)).tolist()}).encode()
    statuses, wrong = [], []

    def client(seed):
        rng = np.random.default_rng(seed)
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        for i in range(200):
            if i % 10 == 9:
                status, _ = request(server, "POST", "/v1/models/tiny:predict", bad, connection=connection)
                statuses.append(status)
                continue
            index = rng.integers(0, len(images), rng.integers(1, 4))
            status, body = request(server, "POST", "/v1/models/tiny:predict",
                                   {"instances": images[index].tolist()}, connection=connection)
            statuses.append(status)
            if status == 200 and [p["class_id"] for p in body["predictions"]] != expected[index].tolist():
                wrong.append(i)
        connection.close()

    threads = [threading.Thread(target=client, args=(seed,), daemon=True) for seed in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=PATIENCE)  # a bound for a hang, not a speed requirement
    assert not any(thread.is_alive() for thread in threads), "clients hung"
    assert len(statuses) == 1600 and not wrong
    assert statuses.count(200) == 1440 and statuses.count(400) == 160


# ---- loading and the command ----------------------------------------------------------------

def test_latest_policy_and_ignored_folders(base):
    repository = serving.ModelRepository(base)
    assert repository.versions("tiny") == [1, 2]  # not 3.failed, not .staging-4-abc
    latest = serving.ModelRepository(base, version_policy="latest")
    assert latest.versions("tiny") == [2]
    with pytest.raises(serving.RequestError, match="has no version '1'"):
        latest.find("tiny", "1")


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"base": "{missing}"}, "does not exist"),
        ({"base": "{empty}"}, "no models under"),
        ({"port": 70000}, "received port=70000"),
        ({"max_body_bytes": 0}, "received max_body_bytes=0"),
        ({"version_policy": "newest"}, "received version_policy='newest'"),
    ],
)
def test_serve_rejects_bad_arguments(base, tmp_path, kwargs, message):
    (tmp_path / "empty" / "m" / "x").mkdir(parents=True)
    paths = {"{missing}": tmp_path / "missing", "{empty}": tmp_path / "empty"}
    kwargs = {"base": base, "port": 0, **{k: paths.get(v, v) for k, v in kwargs.items()}}
    with pytest.raises(ValueError, match=re.escape(message)):
        serving.serve(block=False, **kwargs)


def test_integers_beyond_64_bits_are_numbers_like_any_other():
    spec = tf.TensorSpec([None, 2], "float32")
    np.testing.assert_array_equal(serving.to_array([[2**70, 1]], spec, "x"), np.float32([[2**70, 1]]))
    with pytest.raises(serving.RequestError, match="input 'x' has values outside the range of float32"):
        serving.to_array([[10**400, 1]], spec, "x")
    with pytest.raises(serving.RequestError, match=r"must hold numbers of type float32; received mixed"):
        serving.to_array([[None, 1]], spec, "x")


SIGNALS = [signal.SIGINT, signal.SIGTERM]


@pytest.mark.parametrize("signum", SIGNALS, ids=lambda s: s.name)
def test_wait_stops_on_a_signal_and_puts_the_previous_handler_back(server, signum):
    before = signal.getsignal(signum)
    own = serving.ModelServer(server.repository, port=0)
    answers = []

    def client():
        answers.append(request(own, "GET", "/v1/models/tiny")[0])
        os.kill(os.getpid(), signum)  # as Ctrl+C or `docker stop` would

    with own.stop_on_signals():
        # Checked first: without the handler this signal would interrupt or end the test run.
        assert signal.getsignal(signum) not in (before, signal.SIG_DFL, signal.default_int_handler)
        own.start()
        thread = threading.Thread(target=client, daemon=True)
        thread.start()
        own.wait()  # returns once the handler has asked the server to stop
    thread.join(timeout=PATIENCE)
    assert answers == [200]
    assert own.socket.fileno() == -1  # stopped and closed
    assert signal.getsignal(signum) is before


def test_a_client_that_resets_its_connection_leaves_no_traceback(server, capsys):
    # What socketserver does when a handler thread fails, here with the reset a client causes
    # by closing a connection whose answer it has not read.
    try:
        raise ConnectionResetError(104, "Connection reset by peer")
    except ConnectionResetError:
        server.handle_error(None, ("127.0.0.1", 40000))
    assert capsys.readouterr().err == ""
    try:
        raise RuntimeError("a real fault")
    except RuntimeError:
        server.handle_error(None, ("127.0.0.1", 40000))
    assert "RuntimeError: a real fault" in capsys.readouterr().err  # real faults still show


def test_request_stop_from_another_thread_ends_wait(server):
    own = serving.ModelServer(server.repository, port=0).start()
    threading.Thread(target=own.request_stop, daemon=True).start()
    own.wait()
    assert own.socket.fileno() == -1


class Command:
    """``keras-resnet ARGS`` in a subprocess; a thread queues its stdout lines so that a test can
    wait for a line with a deadline (a bound for hangs only)."""

    def __init__(self, *args):
        env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
        self.process = subprocess.Popen([str(ENTRY), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                        text=True, env=env)
        self.lines: list[str] = []
        self._queue: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.process.stdout:
            self._queue.put(line)
        self._queue.put(None)

    def wait_for_line(self, prefix: str) -> str:
        """Waits for the first stdout line that starts with ``prefix``; fails with the output."""
        while True:
            try:
                line = self._queue.get(timeout=PATIENCE)
            except queue.Empty:
                line = None
            if line is None:
                self.process.kill()
                self.process.wait()
                pytest.fail(f"no line starting with {prefix!r}; stdout:\n{''.join(self.lines)}\n"
                            f"stderr:\n{self.process.stderr.read()[-3000:]}")
            self.lines.append(line)
            if line.startswith(prefix):
                return line

    def finish(self) -> tuple[int, str, str]:
        """Waits for the exit; returns (status, all of stdout, stderr)."""
        status = self.process.wait(timeout=PATIENCE)
        while (line := self._queue.get(timeout=PATIENCE)) is not None:
            self.lines.append(line)
        return status, "".join(self.lines), self.process.stderr.read()

    def kill(self):
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@pytest.mark.slow
@pytest.mark.parametrize("signum", SIGNALS, ids=lambda s: s.name)
def test_serve_command_answers_and_stops_cleanly_on_a_signal(base, signum):
    command = Command("serve", str(base), "--port", "0")
    try:
        serving_line = command.wait_for_line("serving ")
        port = int(re.search(r"at http://127\.0\.0\.1:(\d+)", serving_line).group(1))
        assert any("tiny (versions 1, 2)" in line for line in command.lines)
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=PATIENCE)
        connection.request("GET", "/v1/models/tiny")
        response = connection.getresponse()
        assert response.status == 200 and json.loads(response.read())["model_version_status"]
        connection.close()
        command.process.send_signal(signum)
        status, stdout, stderr = command.finish()
    finally:
        command.kill()
    assert status == 0, stdout + stderr
    assert stdout.splitlines()[-1:] == ["stopped"]
    assert "Traceback" not in stderr and "oneDNN" not in stderr


@pytest.mark.parametrize("signum", SIGNALS, ids=lambda s: s.name)
def test_serve_command_stopped_while_starting_exits_without_a_traceback(base, signum):
    command = Command("serve", str(base), "--port", "0")
    try:
        command.wait_for_line("loading the models under ")
        command.process.send_signal(signum)  # mostly while TensorFlow imports, else while the models load
        status, stdout, stderr = command.finish()
    finally:
        command.kill()
    assert "Traceback" not in stderr, stderr
    if status == 0:  # loading won the race: the server came up and stopped as it should
        assert stdout.splitlines()[-1:] == ["stopped"]
    elif signum == signal.SIGINT:
        assert status == 130 and "keras-resnet: interrupted" in stderr, (status, stdout, stderr)
    else:
        assert status == -signal.SIGTERM, (status, stdout, stderr)  # ended by the signal, as by default
