"""Tests of keras_resnet.predict and `keras-resnet predict`: every model kind, images, labels, errors."""

from __future__ import annotations

import importlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from harness import band_images
from PIL import Image

import keras_resnet
from keras_resnet import cli, export, litert
from keras_resnet.images import read_image_file
from keras_resnet.models import ResNet
from keras_resnet.predict import load_classifier, predict, resolve_model

SHAPE = (8, 8, 1)
CLASSES = 3
NAMES = ["left", "middle", "right"]
FLOAT_TOLERANCE = 1e-4  # Keras, SavedModel and float32 TFLite run the same float32 graph
INT8_TOLERANCE = 0.15  # full-integer quantization moves probabilities; the top class stays
# `from keras_resnet import predict` gives the function (the package re-exports it): the module is here.
predict_module = importlib.import_module("keras_resnet.predict")


@pytest.fixture(scope="module")
def trained():
    x, y = band_images(300, seed=1)
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input(SHAPE), keras.layers.Rescaling(1 / 255), ResNet(depth=8, input_shape=SHAPE, classes=CLASSES)],
        name="tiny",
    )
    model.compile(keras.optimizers.Adam(0.01), "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=3, batch_size=50, verbose=0)
    return model, x


@pytest.fixture(scope="module")
def files(trained, tmp_path_factory):
    """Every model kind on disk: a run folder's .keras, BASE/NAME with versions, float and int8 TFLite."""
    model, x_train = trained
    root = tmp_path_factory.mktemp("models")
    run = root / "run"
    run.mkdir()
    model.save(run / "model.keras")
    (run / "metrics.json").write_text(json.dumps({"test_accuracy": 0.9, "class_names": NAMES}))
    base = root / "base"
    x_test, y_test = band_images(100, seed=2)
    records = export.export_all(model, "tiny", base, tflite=["float32", "int8"], representative_data=x_train,
                                x_test=x_test, y_test=y_test, class_names=NAMES, int8_io="int8", latency_runs=1,
                                calibration_samples=100)
    assert all(r["kept"] for r in records), records
    # Later versions (10 > 9 > 2: numeric order) with their own class names; staging and failed
    # folders are not versions.
    for version in ("2", "10", ".staging-11-x", "12.failed"):
        shutil.copytree(base / "tiny" / "1", base / "tiny" / version)
        (base / "tiny" / version / "assets" / "class_names.txt").write_text(
            "\n".join(f"{n}-{version}" for n in NAMES) + "\n")
    tflite = base / "tiny" / "tflite"
    # A fixed batch of one and uint8 input and output: the file runs one image per call.
    fixed = root / "fixed"
    serve = tf.function(lambda images: {"probabilities": model(images, training=False)}).get_concrete_function(
        tf.TensorSpec([1, *SHAPE], tf.float32, name="images"))
    module = tf.Module()
    module.weights = list(serve.variables)  # the tf.Variables themselves, so the converter folds them
    tf.saved_model.save(module, str(fixed), signatures=serve)
    (root / "fixed.tflite").write_bytes(litert.convert_saved_model(fixed, "int8", x_train[:100].astype("float32"), "uint8"))
    return {"keras": run / "model.keras", "saved_model": base / "tiny" / "1", "base_name": base / "tiny",
            "tflite_float32": tflite / "tiny_1_float32.tflite", "tflite_int8": tflite / "tiny_1_int8.tflite",
            "tflite_uint8_batch_1": root / "fixed.tflite"}


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """Readable images of each class in several formats, sizes and colour modes; and unreadable ones."""
    folder = tmp_path_factory.mktemp("images")
    x, y = band_images(6, seed=3)
    paths = []
    for i, (pixels, label) in enumerate(zip(x, y)):
        image = Image.fromarray(pixels[..., 0], "L")
        if i % 3 == 1:
            image = image.convert("RGB").resize((16, 16), Image.NEAREST)  # RGB, twice the size
        path = folder / f"{i}_{NAMES[label]}.{'jpg' if i % 3 == 2 else 'png'}"
        image.save(path, quality=95) if path.suffix == ".jpg" else image.save(path)
        paths.append(path)
    (folder / "notes.png").write_text("not an image")
    (folder / "cut.jpg").write_bytes(paths[2].read_bytes()[:300])
    bad = {"corrupt": folder / "notes.png", "truncated": folder / "cut.jpg", "missing": folder / "gone.png"}
    return paths, bad


def keras_probabilities(model, paths):
    """The reference: the Keras model on the pixels that the shared decoder gives."""
    pixels = np.stack([read_image_file(p, SHAPE[2], SHAPE[:2], "stretch") for p in paths]).astype("float32")
    return np.asarray(model(pixels, training=False))


def test_in_memory_model_arrays_batching_and_top_k(trained, images):
    model = trained[0]
    paths, _ = images
    expected = keras_probabilities(model, paths)
    pixels = [read_image_file(p, 1, (8, 8), "stretch") for p in paths]
    big = np.kron(pixels[0][..., 0], np.ones((2, 2), "uint8"))  # 16x16 grey: fitted like a file
    one_by_one = predict(model, [pixels[0], str(paths[1]), *paths[2:], big], top_k=99, batch_size=1)
    batched = predict(model, np.stack(pixels), top_k=2, labels=["a", "b", "c"], batch_size=4)
    assert [r.path for r in one_by_one] == [None, *map(str, paths[1:]), None]
    for r, s, p in zip(one_by_one, batched, expected):
        assert len(r.top_k) == CLASSES and len(s.top_k) == 2  # top_k is capped at the class count
        assert r.class_ids[:2] == s.class_ids and s.label == "abc"[p.argmax()]
        np.testing.assert_allclose([q for _, q in s.top_k], [q for _, q in r.top_k[:2]], atol=1e-5)
    assert one_by_one[-1].class_ids[0] == one_by_one[0].class_ids[0]
    # A Classifier loads once and serves many calls.
    classifier = load_classifier(model, labels=NAMES)
    assert predict(classifier, paths[:1])[0].label == NAMES[expected[0].argmax()]


@pytest.mark.parametrize(
    "kind", ["keras", "saved_model", "base_name", "tflite_float32", "tflite_int8", "tflite_uint8_batch_1"])
def test_every_model_kind_agrees_with_keras_on_decoded_pixels(kind, files, images, trained):
    paths, _ = images
    expected = keras_probabilities(trained[0], paths)
    assert expected.max(axis=1).min() > 0.6  # confident, so that int8 keeps every top class
    # Batches of 4 and 2: a TFLite input with a free batch dimension is resized to each.
    results = predict(files[kind], [str(p) for p in paths], top_k=CLASSES, batch_size=4)
    names = {"base_name": [f"{n}-10" for n in NAMES],  # BASE/NAME: the latest version's names
             "tflite_uint8_batch_1": ["0", "1", "2"]}.get(kind, NAMES)  # nothing names its classes
    tolerance = INT8_TOLERANCE if "int8" in kind or "uint8" in kind else FLOAT_TOLERANCE
    for r, p, path in zip(results, expected, paths):
        assert r.error is None and r.path == str(path)
        assert r.class_ids[0] == p.argmax() and r.label == names[p.argmax()]
        assert [name for name, _ in r.top_k] == [names[i] for i in r.class_ids]
        np.testing.assert_allclose([prob for _, prob in r.top_k], p[r.class_ids], atol=tolerance)
        assert path.stem.endswith(NAMES[p.argmax()])  # the trained model is right, too


def test_resolve_model_kinds_versions_and_names(files):
    base_name = resolve_model(files["base_name"])
    assert (base_name.kind, base_name.path.name, base_name.version) == ("saved_model", "10", 10)
    assert base_name.class_names_file == files["base_name"] / "10" / "assets" / "class_names.txt"
    assert resolve_model(files["keras"]).class_names_file.name == "metrics.json"
    int8 = resolve_model(files["tflite_int8"])
    assert (int8.kind, int8.version) == ("tflite", 1)
    assert int8.class_names_file == files["base_name"] / "1" / "assets" / "class_names.txt"
    assert predict_module.model_versions(files["base_name"]) == [1, 2, 10]
    fixed = litert.TFLiteRunner(files["tflite_uint8_batch_1"]).input
    assert fixed["shape_signature"][0] == 1 and fixed["dtype"] == np.uint8


def test_unreadable_images_are_named_and_the_others_classified(trained, images):
    paths, bad = images
    results = predict(trained[0], [paths[0], bad["corrupt"], bad["missing"], bad["truncated"], paths[1]],
                      batch_size=2)
    assert [r.error is None for r in results] == [True, False, False, False, True]
    for r, path in zip(results[1:4], (bad["corrupt"], bad["missing"], bad["truncated"])):
        assert str(path) in r.error and r.top_k == [] and r.label is None
        assert "function_node" not in r.error and "[Op:" not in r.error  # TensorFlow's wrapping is cut
        assert r.to_dict() == {"path": str(path), "predictions": [], "error": r.error}


def test_labels_from_files_and_their_checks(files, tmp_path, images):
    paths, _ = images
    labels = tmp_path / "labels.txt"
    labels.write_text("cat\ndog\nbird\n")
    assert predict(files["saved_model"], paths[:1], labels=labels)[0].top_k[0][0] in ("cat", "dog", "bird")
    labels.write_text("cat\ndog\n")
    with pytest.raises(ValueError, match="labels has 2 class names, but the model has 3 classes"):
        predict(files["saved_model"], paths[:1], labels=labels)
    plain = tmp_path / "plain.keras"
    shutil.copy(files["keras"], plain)  # no metrics.json beside it: the class indices
    assert {r.label for r in predict(plain, paths)} <= {"0", "1", "2"}
    (tmp_path / "metrics.json").write_text("{not json")  # a damaged one: a warning, then the indices
    with pytest.warns(UserWarning, match="is not a JSON object; using the class indices"):
        assert {r.label for r in predict(plain, paths)} <= {"0", "1", "2"}


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"top_k": 0}, "top_k must be an integer >= 1; received top_k=0"),
        ({"batch_size": 0}, "batch_size must be an integer >= 1"),
        ({"fit": "squash"}, "fit must be one of"),
        ({"labels": ["a", "b"]}, "labels has 2 class names"),
        ({"images": []}, "images holds no images"),
        ({"images": [np.zeros((8, 8, 3))]}, "image 0 must be a numeric array (height, width, 1)"),
    ],
)
def test_bad_python_arguments(trained, images, kwargs, message):
    kwargs = {"images": images[0][:1], **kwargs}
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        predict(trained[0], **kwargs)


def test_the_package_name_calls_the_function(trained):
    # Importing the module binds it to keras_resnet.predict; calling it still calls the function.
    assert keras_resnet.predict is predict_module or keras_resnet.predict is predict
    [r] = keras_resnet.predict(trained[0], np.zeros(SHAPE), top_k=1)
    assert len(r.top_k) == 1 and predict_module.predict is predict


# ---- command line ---------------------------------------------------------------------------------

def test_cli_table(files, images, capsys):
    paths, _ = images
    rc = cli.main(["predict", str(files["tflite_float32"]), *map(str, paths[:2]), "--top-k", "2"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    lines = captured.out.splitlines()
    assert lines[0].split() == ["image", "rank", "class", "probability"]
    assert len(lines) == 2 + 2 * 2  # header, rule, two rows per image
    assert lines[2].startswith(str(paths[0])) and lines[4].startswith(str(paths[1]))
    assert lines[3].split()[0] == "2" and lines[3].split()[1] in NAMES


def test_cli_json_with_unreadable_images_exits_1(files, images, capsys):
    paths, bad = images
    rc = cli.main(["predict", str(files["base_name"]), str(paths[0]), str(bad["corrupt"]), str(bad["missing"]),
                   str(paths[1]), "--json", "--top-k", "10", "--batch-size", "2"])
    captured = capsys.readouterr()
    assert rc == 1
    out = json.loads(captured.out)
    assert [o["path"] for o in out] == [str(paths[0]), str(bad["corrupt"]), str(bad["missing"]), str(paths[1])]
    for o in (out[0], out[3]):
        assert o["error"] is None and len(o["predictions"]) == CLASSES
        assert o["predictions"][0]["class_name"] == NAMES[o["predictions"][0]["class_id"]] + "-10"
        assert abs(sum(p["probability"] for p in o["predictions"]) - 1) < 1e-4
    for o in out[1:3]:
        assert o["predictions"] == [] and o["path"] in o["error"] and o["path"] in captured.err


def test_cli_table_names_unreadable_images_on_stderr(files, images, capsys, tmp_path):
    paths, bad = images
    labels = tmp_path / "labels.txt"
    labels.write_text("L\nM\nR\n")
    rc = cli.main(["predict", str(files["keras"]), str(bad["truncated"]), str(paths[0]), "--labels", str(labels),
                   "--top-k", "1", "--fit", "center_crop"])
    captured = capsys.readouterr()
    assert rc == 1
    assert f"keras-resnet: cannot read image {str(bad['truncated'])!r}" in captured.err
    rows = captured.out.splitlines()[2:]
    assert "(unreadable)" in rows[0] and rows[1].split()[2] in ("L", "M", "R")


@pytest.mark.parametrize(
    "args,message",
    [
        (["{missing}", "{image}"], "does not exist"),
        (["{text}", "{image}"], "is not a model file"),
        (["{fake_keras}", "{image}"], "is not a Keras model file"),
        (["{fake_tflite}", "{image}"], "is not a TFLite model"),
        (["{empty_dir}", "{image}"], "holds no saved_model.pb and no version folders"),
        (["{base}", "{image}"], "is a model base folder holding tiny"),
        (["{model}", "{image}", "--top-k", "0"], "--top-k must be >= 1; received 0"),
        (["{model}", "{image}", "--batch-size", "0"], "--batch-size must be >= 1"),
        (["{model}", "{image}", "--labels", "{missing}"], "cannot read class names"),
        (["{model}", "{image}", "--fit", "squash"], "argument --fit: invalid choice: 'squash'"),
        (["{model}"], "the following arguments are required: IMAGE"),
    ],
)
def test_cli_bad_arguments_exit_2_before_tensorflow(args, message, files, images, tmp_path, capsys, monkeypatch):
    def boom(*args, **kwargs):
        raise AssertionError("TensorFlow started before the arguments were checked")

    monkeypatch.setattr(cli, "import_keras", boom)
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "fake.keras").write_text("hello")
    (tmp_path / "fake.tflite").write_bytes(b"\0" * 16)
    (tmp_path / "empty").mkdir()
    paths = {"{missing}": str(tmp_path / "gone.keras"), "{text}": str(tmp_path / "notes.txt"),
             "{fake_keras}": str(tmp_path / "fake.keras"), "{fake_tflite}": str(tmp_path / "fake.tflite"),
             "{empty_dir}": str(tmp_path / "empty"), "{base}": str(files["base_name"].parent),
             "{model}": str(files["keras"]), "{image}": str(images[0][0])}
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["predict", *[paths.get(a, a) for a in args]])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


@pytest.mark.slow
def test_entry_point_exit_status_and_quiet_stderr(files, images):
    paths, bad = images
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    result = subprocess.run(
        [str(Path(sys.executable).with_name("keras-resnet")), "predict", str(files["tflite_int8"]), str(paths[0]),
         str(bad["corrupt"]), "--top-k", "1"], capture_output=True, text=True, timeout=180, env=env)
    assert result.returncode == 1, result.stderr
    label = paths[0].stem.split("_")[1]  # the file's name holds its class; the trained model gets it right
    assert result.stdout.splitlines()[2].split()[:3] == [str(paths[0]), "1", label]
    # Only the unreadable image is named on stderr: no TensorFlow or TFLite start-up lines.
    assert result.stderr.splitlines() == [f"keras-resnet: cannot read image {str(bad['corrupt'])!r}: "
                                          "Unknown image file format. One of JPEG, JPEG XL, PNG, GIF, BMP, WebP required."]
