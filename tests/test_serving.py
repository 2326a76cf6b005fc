"""Tests of keras_resnet.serving: TF Serving's REST API, bad requests, concurrency, the CLI."""

from __future__ import annotations

import base64
import http.client
import json
import logging
import os
import queue
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_resnet import export, serving
from keras_resnet import images as image_files
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


def save_bytes_model(model, path):
    """A SavedModel shaped as the exporter's: ``serving_default`` (float32 pixels ``images``) and
    ``serving_bytes`` (``image_bytes``, tf.string [None], decoded as evaluation does), both with
    the exporter's outputs; plus ``serving_echo``, whose ``image_bytes`` output returns its input."""
    height, width, channels = SHAPE
    fit = image_files.evaluation_fit((height, width))
    names = tf.constant(NAMES)

    def outputs(pixels):
        probabilities = tf.cast(model(pixels, training=False), tf.float32)
        class_id = tf.argmax(probabilities, axis=-1)
        top = tf.math.top_k(probabilities, k=len(NAMES))
        return {"probabilities": probabilities, "class_id": class_id, "class_name": tf.gather(names, class_id),
                "top_k_classes": tf.cast(top.indices, tf.int64), "top_k_probabilities": top.values}

    @tf.autograph.experimental.do_not_convert
    def decode_file(contents):
        return image_files.decode(contents, channels, (height, width), fit)

    def serve_pixels(images):
        return outputs(images)

    def serve_bytes(image_bytes):
        pixels = tf.map_fn(decode_file, image_bytes, fn_output_signature=tf.TensorSpec(SHAPE, tf.uint8))
        return outputs(tf.cast(pixels, tf.float32))

    def echo(image_bytes):
        return {"image_bytes": image_bytes, "length": tf.strings.length(image_bytes)}

    functions = {
        "serving_default": tf.function(serve_pixels).get_concrete_function(tf.TensorSpec([None, *SHAPE], tf.float32, name="images")),
        "serving_bytes": tf.function(serve_bytes).get_concrete_function(tf.TensorSpec([None], tf.string, name="image_bytes")),
        "serving_echo": tf.function(echo).get_concrete_function(tf.TensorSpec([None], tf.string, name="image_bytes")),
    }
    module = tf.Module()
    module.weights = list({id(v): v for fn in functions.values() for v in fn.variables}.values())
    tf.saved_model.save(module, str(path), signatures=functions)


@pytest.fixture(scope="module")
def base(models, tmp_path_factory):
    base = tmp_path_factory.mktemp("saved_models")
    for version, model in models.items():
        export.export_saved_model(model, base, "tiny", version=version, class_names=NAMES)
    save_bytes_model(models[2], base / "tiny_bytes" / "1")
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


# ---- binary data (b64), as TF Serving's REST API carries it ------------------------------------

def png(pixels) -> bytes:
    return tf.io.encode_png(tf.constant(pixels, tf.uint8)).numpy()


def b64(data: bytes) -> dict:
    return {"b64": base64.b64encode(data).decode()}


@pytest.fixture(scope="module")
def files(images):
    return [png(image) for image in images.astype("uint8")]


def test_image_files_as_b64_in_every_format_predict_like_the_pixels(server, models, images, files):
    expected = models[2].predict(images, verbose=0)
    path = "/v1/models/tiny_bytes:predict"
    bodies = [
        {"instances": [b64(f) for f in files]},
        {"instances": [{"image_bytes": b64(f)} for f in files]},
        {"inputs": {"image_bytes": [b64(f) for f in files]}},
        {"inputs": [b64(f) for f in files]},
    ]
    answers = []
    for body in bodies:
        status, answer = request(server, "POST", path, {"signature_name": "serving_bytes", **body})
        assert status == 200, answer
        answers.append(answer["predictions"] if "predictions" in answer else
                       [dict(zip(answer["outputs"], v)) for v in zip(*answer["outputs"].values())])
    for predictions in answers:
        np.testing.assert_allclose([p["probabilities"] for p in predictions], expected, atol=1e-5)
        assert [p["class_name"] for p in predictions] == [NAMES[i] for i in expected.argmax(-1)]
    pixels = request(server, "POST", path, {"instances": images.tolist()})[1]["predictions"]
    assert [p["class_id"] for p in pixels] == [p["class_id"] for p in answers[0]]


def test_the_exporters_bytes_signature_answers_b64_files(server, models, images, files):
    # export_saved_model's own serving_bytes (on the tiny models): the contract this server meets.
    served = server.repository.find("tiny")
    if "serving_bytes" not in served.signatures:
        pytest.skip("this exporter writes no serving_bytes signature")
    body = {"signature_name": "serving_bytes", "instances": [{"image_bytes": b64(f)} for f in files]}
    status, answer = request(server, "POST", "/v1/models/tiny:predict", body)
    assert status == 200, answer
    np.testing.assert_allclose([p["probabilities"] for p in answer["predictions"]],
                               models[2].predict(images, verbose=0), atol=1e-5)


def test_string_outputs_named_bytes_come_back_as_b64_and_plain_strings_are_utf8(server):
    data = [b"\x00\xff\x00", b"", b"caf\xc3\xa9\x00"]
    body = {"signature_name": "serving_echo", "instances": [b64(d) for d in data] + ["café"]}
    status, answer = request(server, "POST", "/v1/models/tiny_bytes:predict", body)
    assert status == 200
    assert [base64.b64decode(p["image_bytes"]["b64"]) for p in answer["predictions"]] == [*data, "café".encode()]
    assert [p["length"] for p in answer["predictions"]] == [3, 0, 6, 5]
    # Other string outputs are text, as before.
    status, answer = request(server, "POST", "/v1/models/tiny:predict", {"instances": GOOD})
    assert answer["predictions"][0]["class_name"] in NAMES


def test_metadata_shows_the_bytes_signature(server):
    status, body = request(server, "GET", "/v1/models/tiny_bytes/metadata")
    signature = body["metadata"]["signature_def"]["signature_def"]["serving_bytes"]
    assert signature["inputs"]["image_bytes"]["dtype"] == "DT_STRING"
    assert set(signature["outputs"]) == {"probabilities", "class_id", "class_name", "top_k_classes", "top_k_probabilities"}


BYTES = "/v1/models/tiny_bytes:predict"
BAD_BINARY = [
    ({"instances": [{"b64": "aGk="}, {"b64": "not base64!"}]}, "instance 1 of input 'image_bytes': malformed b64"),
    ({"inputs": {"image_bytes": [{"b64": "aGk="}, {"b64": "aGk"}]}}, "instance 1 of input 'image_bytes': malformed b64"),
    ({"instances": [{"b64": 5}]}, 'instance 0 of input \'image_bytes\': "b64" must hold a base64 string; received int'),
    ({"instances": [1.5]}, "instance 0 of input 'image_bytes' must hold {\"b64\": \"...\"} objects or strings; received float"),
    ({"instances": [{"b64": "aGk=", "x": 1}]}, "every instance must name the inputs ['image_bytes']"),
    ({"inputs": [[{"b64": "aGk="}]]}, "must have shape [batch] (string); received shape [1, 1]"),
    ({"inputs": [[{"b64": "aGk="}], {"b64": "aGk="}]}, "ragged"),
]


@pytest.mark.parametrize("body,message", BAD_BINARY, ids=[m[:40] for _, m in BAD_BINARY])
def test_malformed_binary_inputs_get_400_naming_the_instance(server, body, message):
    status, answer = request(server, "POST", BYTES, {"signature_name": "serving_bytes", **body})
    assert status == 400 and message in answer["error"], answer


def test_an_image_the_signature_cannot_decode_is_a_400_naming_it(server, files):
    body = {"signature_name": "serving_bytes", "instances": [b64(files[0]), b64(files[1]), b64(b"not an image")]}
    status, answer = request(server, "POST", BYTES, body)
    assert status == 400, answer
    assert answer["error"].startswith("instance 2: the signature 'serving_bytes' cannot use it: ")
    assert "image" in answer["error"].lower() and "[[" not in answer["error"]
    body["instances"] = [b64(files[0][:30])]  # a truncated PNG
    status, answer = request(server, "POST", BYTES, body)
    assert status == 400 and answer["error"].startswith("instance 0: "), answer


# ---- the wire: body sizes, Expect, timeouts, slow clients --------------------------------------

def raw(port, data: bytes) -> bytes:
    """Sends ``data`` on a fresh connection and reads until the server closes it."""
    with socket.create_connection(("127.0.0.1", port), timeout=PATIENCE) as sock:
        sock.sendall(data)
        chunks = []
        while True:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            chunks.append(chunk)
    return b"".join(chunks)


def predict_head(length, *extra: str) -> bytes:
    lines = ["POST /v1/models/tiny:predict HTTP/1.1", "Host: x", f"Content-Length: {length}", *extra]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def test_an_over_limit_body_is_drained_and_refused_and_the_connection_kept(server):
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    status, answer = request(server, "POST", "/v1/models/tiny:predict", b" " * (3 * MAX_BODY), connection=connection)
    assert status == 413 and "exceeds the limit" in answer["error"]
    assert connection.sock is not None  # kept open: the body was read and dropped
    assert request(server, "POST", "/v1/models/tiny:predict", {"instances": GOOD}, connection=connection)[0] == 200


def test_a_far_over_limit_body_is_refused_and_the_connection_closed(server, caplog):
    caplog.set_level(logging.DEBUG)
    answer = raw(server.port, predict_head(100 * MAX_BODY))  # announced, never sent
    assert answer.startswith(b"HTTP/1.1 413 ") and b"Connection: close" in answer
    assert b"exceeds the limit" in answer and b"100 Continue" not in answer
    assert answer.count(b"HTTP/1.1") == 1  # nothing of Tornado's own after the answer
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING or r.exc_info]


def test_expect_100_continue_within_the_limit_gets_100_then_the_answer(server):
    body = json.dumps({"instances": GOOD}).encode()
    with socket.create_connection(("127.0.0.1", server.port), timeout=PATIENCE) as sock:
        sock.sendall(predict_head(len(body), "Expect: 100-continue"))
        interim = sock.recv(100)
        assert interim.startswith(b"HTTP/1.1 100 ")
        sock.sendall(body)
        answer = b""
        while b"predictions" not in answer or not answer.endswith(b"}"):
            chunk = sock.recv(65536)
            assert chunk, answer
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 200 ")


def test_invalid_content_length_and_unknown_methods_get_json(server):
    answer = raw(server.port, predict_head("12abc"))
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 ") and json.loads(body) == {"error": "invalid Content-Length '12abc'"}
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    connection.request("FOO", "/v1/models/tiny")
    response = connection.getresponse()
    assert response.status == 405 and response.getheader("Content-Type") == "application/json"
    assert json.loads(response.read()) == {"error": "FOO is not supported; use GET or POST"}


def test_chunked_bodies_are_read_and_limited(server, caplog):
    caplog.set_level(logging.DEBUG)
    body = json.dumps({"instances": GOOD}).encode()
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    connection.request("POST", "/v1/models/tiny:predict", body=iter([body[:10], body[10:]]))  # chunked
    response = connection.getresponse()
    assert response.status == 200 and json.loads(response.read())["predictions"]
    connection.request("POST", "/v1/models/tiny:predict", body=iter([b" " * MAX_BODY, b" "]))
    response = connection.getresponse()
    assert response.status == 413 and "exceeds the limit" in json.loads(response.read())["error"]
    connection.close()
    assert request(server, "GET", "/v1/models/tiny")[0] == 200
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING or r.exc_info]


def test_silent_and_slow_clients_are_timed_out_and_hold_no_worker(server):
    own = serving.ModelServer(server.repository, port=0, workers=1, idle_connection_timeout=0.5,
                              body_timeout=0.5).start()
    try:
        # Clients that stall in their headers or their body, more of them than workers ...
        stalled = []
        for data in (b"", b"POST /v1/models/tiny:predict HTTP/1.1\r\nHo", predict_head(100) + b"{"):
            sock = socket.create_connection(("127.0.0.1", own.port), timeout=PATIENCE)
            sock.sendall(data)
            stalled.append(sock)
        # ... hold no worker: another client is answered meanwhile ...
        connection = http.client.HTTPConnection("127.0.0.1", own.port, timeout=PATIENCE)
        assert request(own, "POST", "/v1/models/tiny:predict", {"instances": GOOD}, connection=connection)[0] == 200
        # ... and each is closed when its timeout passes; so is an idle keep-alive connection.
        for sock in [*stalled, connection.sock]:
            assert sock.recv(1) == b""
            sock.close()
    finally:
        own.stop()


def test_a_port_in_use_is_a_clear_error(server):
    with pytest.raises(OSError, match=rf"cannot listen on 127\.0\.0\.1:{server.port}: .*another port"):
        serving.ModelServer(server.repository, port=server.port)


# ---- batching ---------------------------------------------------------------------------------

def concurrently(calls):
    results = [None] * len(calls)

    def run(i):
        results[i] = calls[i]()

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=PATIENCE)  # a bound for a hang
    assert not any(thread.is_alive() for thread in threads), "clients hung"
    return results


def test_batching_joins_concurrent_requests_into_one_call(server, models, images, files):
    expected = models[2].predict(images[:4], verbose=0)
    # A batch that only closes when full (the timeout is a bound for a hang): four requests, one call.
    own = serving.ModelServer(server.repository, port=0, batching=True, max_batch_size=4,
                              batch_timeout_micros=PATIENCE * 10**6).start()
    try:
        answers = concurrently([
            (lambda i=i: request(own, "POST", "/v1/models/tiny:predict", {"instances": images[i:i + 1].tolist()}))
            for i in range(4)
        ])
        assert own.batcher.batches == 1 and own.batcher.requests == 4
        for i, (status, body) in enumerate(answers):
            assert status == 200
            np.testing.assert_allclose(body["predictions"][0]["probabilities"], expected[i], atol=1e-5)
        # One undecodable image fails the joined call; the others are answered all the same.
        bodies = [[files[0]], [b"not an image"], [files[2], files[3]]]
        answers = concurrently([
            (lambda b=b: request(own, "POST", BYTES, {"signature_name": "serving_bytes", "instances": [b64(f) for f in b]}))
            for b in bodies
        ])
        assert own.batcher.batches == 2
        assert [status for status, _ in answers] == [200, 400, 200]
        assert answers[1][1]["error"].startswith("instance 0: the signature 'serving_bytes' cannot use it")
        np.testing.assert_allclose([p["probabilities"] for p in answers[2][1]["predictions"]], expected[2:], atol=1e-5)
    finally:
        own.stop()


def test_batching_with_the_default_timeout_answers_at_once_and_alike(server, models, images):
    own = serving.ModelServer(server.repository, port=0, batching=True).start()
    try:
        expected = models[2].predict(images, verbose=0).argmax(-1)
        answers = concurrently([
            (lambda i=i: request(own, "POST", "/v1/models/tiny:predict", {"instances": images[i:i + 1].tolist()}))
            for i in range(len(images))
        ] + [lambda: request(own, "POST", "/v1/models/tiny:predict", {"instances": [[[[1e39]] * 8] * 8]})])
        assert [body["predictions"][0]["class_id"] for _, body in answers[:-1]] == expected.tolist()
        assert answers[-1][0] == 400
    finally:
        own.stop()


@pytest.mark.parametrize("batching", [False, True], ids=["plain", "batching"])
def test_stopping_a_server_with_a_call_under_way_is_quiet(server, batching, monkeypatch, caplog):
    caplog.set_level(logging.DEBUG)
    own = serving.ModelServer(server.repository, port=0, batching=batching).start()
    started, release = threading.Event(), threading.Event()
    run = serving.ServedVersion.run

    def held(self, *args):
        started.set()
        release.wait(PATIENCE)
        return run(self, *args)

    monkeypatch.setattr(serving.ServedVersion, "run", held)
    outcome = []

    def client():
        try:
            outcome.append(request(own, "POST", "/v1/models/tiny:predict", {"instances": GOOD})[0])
        except (ConnectionError, http.client.HTTPException) as e:
            outcome.append(type(e).__name__)

    thread = threading.Thread(target=client, daemon=True)
    thread.start()
    assert started.wait(PATIENCE)
    stopper = threading.Thread(target=own.stop, daemon=True)
    stopper.start()
    while own.socket.fileno() != -1 and stopper.is_alive():  # the event loop is closing
        stopper.join(0.01)
    release.set()
    stopper.join(PATIENCE)
    thread.join(PATIENCE)
    assert not stopper.is_alive() and not thread.is_alive()
    assert outcome and outcome[0] != 200  # dropped, as documented
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING or r.exc_info], caplog.text


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


def reset(sock):
    """Closes a socket with a TCP reset (SO_LINGER 0), as a client that goes away abruptly."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def test_clients_that_reset_their_connection_leave_no_traceback(server, monkeypatch, caplog, capsys):
    caplog.set_level(logging.DEBUG)
    own = serving.ModelServer(server.repository, port=0, workers=1).start()
    started, release = threading.Event(), threading.Event()
    predict = server.repository.predict

    def held(*args):
        started.set()
        release.wait(PATIENCE)
        return predict(*args)

    monkeypatch.setattr(server.repository, "predict", held)
    try:
        body = json.dumps({"instances": GOOD}).encode()
        head = f"POST /v1/models/tiny:predict HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n".encode()
        # Gone while its answer is computed: the answer is written to a reset connection.
        answered_late = socket.create_connection(("127.0.0.1", own.port), timeout=PATIENCE)
        answered_late.sendall(head + body)
        assert started.wait(PATIENCE)
        reset(answered_late)
        release.set()
        # Gone in the middle of a body, and in the middle of the headers.
        for data in (head + body[:10], head[:20]):
            sock = socket.create_connection(("127.0.0.1", own.port), timeout=PATIENCE)
            sock.sendall(data)
            reset(sock)
        # With one worker, this answer comes after the held one was written (or found the reset).
        assert request(own, "POST", "/v1/models/tiny:predict", {"instances": GOOD})[0] == 200
    finally:
        release.set()
        own.stop()
    problems = [r for r in caplog.records if r.levelno >= logging.WARNING or r.exc_info]
    assert not problems, [r.getMessage() for r in problems]
    assert "Traceback" not in capsys.readouterr().err


def test_a_fault_in_the_server_is_a_500_and_logged_with_its_traceback(server, monkeypatch, caplog):
    def broken(*args):
        raise RuntimeError("a real fault")

    monkeypatch.setattr(server.repository, "predict", broken)
    status, answer = request(server, "POST", "/v1/models/tiny:predict", {"instances": GOOD})
    assert status == 500 and answer == {"error": "internal error: RuntimeError: a real fault"}
    (record,) = [r for r in caplog.records if r.exc_info]
    assert record.levelno == logging.ERROR and "RuntimeError: a real fault" in caplog.text


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


BAD_FLAGS = [
    (["--workers", "0"], "--workers must be an integer >= 1; received 0"),
    (["--max-batch-size", "-3"], "--max-batch-size must be an integer >= 1; received -3"),
    (["--batch-timeout-micros", "-1"], "--batch-timeout-micros must be an integer >= 0; received -1"),
    (["--idle-timeout", "0"], "--idle-timeout must be a number of seconds > 0; received 0.0"),
    (["--body-timeout", "nan"], "--body-timeout must be a number of seconds > 0; received nan"),
    (["--port", "70000"], "--port must be an integer in [0, 65535]; received 70000"),
    (["--max-body-mb", "0"], "--max-body-mb must be an integer >= 1; received 0"),
]


@pytest.mark.parametrize("flags,message", BAD_FLAGS, ids=[f[0] for f, _ in BAD_FLAGS])
def test_serve_command_checks_its_numbers_before_loading_anything(base, flags, message, capsys):
    from keras_resnet import cli

    with pytest.raises(SystemExit) as exit_info:
        cli.main(["serve", str(base), *flags])
    out, err = capsys.readouterr()
    assert exit_info.value.code == 2 and message in err
    assert "loading" not in out


def test_serve_command_names_a_port_in_use(server, base, capsys):
    from keras_resnet import cli

    with pytest.raises(SystemExit) as exit_info:
        cli.main(["serve", str(base), "--port", str(server.port)])
    assert exit_info.value.code == 2
    assert f"cannot listen on 127.0.0.1:{server.port}" in capsys.readouterr().err


@pytest.mark.slow
def test_serve_command_with_batching_answers_b64_images(base, files, models, images):
    command = Command("serve", str(base), "--port", "0", "--enable-batching", "--workers", "2", "--max-batch-size", "8")
    try:
        serving_line = command.wait_for_line("serving ")
        assert "with 2 worker threads; batching up to 8 examples" in serving_line
        port = int(re.search(r"at http://127\.0\.0\.1:(\d+)", serving_line).group(1))
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=PATIENCE)
        body = json.dumps({"signature_name": "serving_bytes", "instances": [b64(f) for f in files]})
        connection.request("POST", "/v1/models/tiny_bytes:predict", body=body)
        response = connection.getresponse()
        predictions = json.loads(response.read())["predictions"]
        assert [p["class_id"] for p in predictions] == models[2].predict(images, verbose=0).argmax(-1).tolist()
        connection.close()
        command.process.send_signal(signal.SIGTERM)
        status, stdout, stderr = command.finish()
    finally:
        command.kill()
    assert status == 0 and stdout.splitlines()[-1:] == ["stopped"], stdout + stderr
    assert "Traceback" not in stderr


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
