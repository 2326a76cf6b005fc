"""Tests of keras_resnet.export: SavedModel, TFLite, verification, atomic writes and the CLI."""

from __future__ import annotations

import functools
import io
import json
import types
import zipfile

import keras
import numpy as np
import pytest
import tensorflow as tf
from harness import band_images, forbid_calls
from PIL import Image

import keras_resnet.data
from keras_resnet import cli, export, litert, pipeline, verification
from keras_resnet.models import ResNet
from keras_resnet.predict import predict

SHAPE = (8, 8, 1)
CLASSES = 3
NAMES = ["left", "middle", "right"]


def tiny_model(seed=0, train=True, x=None, y=None):
    """Raw pixels in, probabilities out: Rescaling then a ResNet-8."""
    keras.utils.set_random_seed(seed)
    model = keras.Sequential(
        [keras.Input(SHAPE), keras.layers.Rescaling(1 / 255), ResNet(depth=8, input_shape=SHAPE, classes=CLASSES)],
        name="tiny",
    )
    if train:
        model.compile(keras.optimizers.Adam(0.01), "sparse_categorical_crossentropy")
        model.fit(x, y, epochs=3, batch_size=50, verbose=0)
    return model


@pytest.fixture(scope="module")
def trained():
    x_train, y_train = band_images(500, seed=1, noise=0.05)
    x_test, y_test = band_images(200, seed=2, noise=0.05)
    return tiny_model(x=x_train, y=y_train), x_train, y_train, x_test, y_test


@pytest.fixture(scope="module")
def exported(trained, tmp_path_factory):
    model, x_train, _, x_test, y_test = trained
    base = tmp_path_factory.mktemp("base")
    records = export.export_all(
        model, "tiny", base, tflite=["float32", "float16", "dynamic", "int8"], representative_data=x_train,
        x_test=x_test, y_test=y_test, class_names=NAMES, latency_runs=5,
    )
    return base, records


@pytest.fixture
def no_expensive_work(monkeypatch):
    """Fails the test if saving or converting starts: validation must come first."""
    forbid_calls(monkeypatch, (export, "_save_module"), (export, "convert_saved_model"))


# ---- export_all ----------------------------------------------------------------------------

def test_export_all_layout_report_and_checks(exported, trained):
    base, records = exported
    model, _, _, x_test, y_test = trained
    model_dir = base / "tiny"
    assert sorted(p.name for p in model_dir.iterdir()) == ["1", "export_report.json", "tflite"]
    assert sorted(p.name for p in (model_dir / "tflite").iterdir()) == [
        f"tiny_1_{q}.tflite" for q in sorted(["dynamic", "float16", "float32", "int8"])
    ]
    assert json.loads((model_dir / "export_report.json").read_text()) == records
    assert [r["format"] for r in records] == ["saved_model", "float32", "float16", "dynamic", "int8"]
    keras_accuracy = float(np.mean(model.predict(x_test, verbose=0).argmax(-1) == y_test))
    assert 0.8 < keras_accuracy < 1.0  # the label noise keeps it below 100%
    for r in records:
        for key in ("format", "path", "size_bytes", "max_abs_diff", "top1_agreement", "accuracy", "latency_ms", "passed"):
            assert key in r
        assert r["passed"] and r["kept"] and not r["failures"], r
        assert r["reference_accuracy"] == pytest.approx(keras_accuracy)
        assert r["size_bytes"] == verification.directory_size(r["path"]) > 0
        assert r["latency_ms"] > 0
    by_format = {r["format"]: r for r in records}
    assert by_format["saved_model"]["max_abs_diff"] <= 1e-4
    # The image-bytes signature on the 200 test images as PNG files: the very same numbers.
    saved = by_format["saved_model"]
    assert saved["bytes_images"] == 200 and saved["bytes_top1_agreement"] == 1.0
    assert saved["bytes_max_abs_diff"] <= verification.DEFAULT_THRESHOLDS["saved_model"]["bytes_max_abs_diff"] == 1e-6
    assert not any(key.startswith("bytes_") for key in by_format["float32"])
    assert by_format["float32"]["max_abs_diff"] <= 1e-4
    # Quantization moves the probabilities, but not by much on a confident model.
    assert 0 < by_format["int8"]["max_abs_diff"] < 0.2
    size = {q: by_format[q]["size_bytes"] for q in ("float32", "float16", "dynamic", "int8")}
    assert size["float16"] < 0.6 * size["float32"] and size["int8"] < 0.4 * size["float32"]


def test_saved_model_signatures_outputs_and_class_names(exported, trained):
    base, _ = exported
    model, _, _, x_test, _ = trained
    version_dir = base / "tiny" / "1"
    assert (version_dir / "assets" / "class_names.txt").read_text().split() == NAMES
    loaded = tf.saved_model.load(str(version_dir))
    assert list(loaded.signatures) == ["serving_default", "serving_uint8", "serving_bytes"]
    for batch in (1, 7):
        x = x_test[:batch]
        expected = model.predict(x, verbose=0)
        out = loaded.signatures["serving_default"](images=tf.constant(x, tf.float32))
        np.testing.assert_allclose(out["probabilities"].numpy(), expected, atol=1e-5)
        assert out["class_id"].numpy().tolist() == expected.argmax(-1).tolist()
        assert [n.decode() for n in out["class_name"].numpy()] == [NAMES[i] for i in expected.argmax(-1)]
        top = out["top_k_probabilities"].numpy()
        assert top.shape == (batch, CLASSES) and np.all(np.diff(top, axis=-1) <= 0)
        np.testing.assert_allclose(np.sort(expected, -1)[:, ::-1], top, atol=1e-5)
        out8 = loaded.signatures["serving_uint8"](images=tf.constant(x, tf.uint8))
        np.testing.assert_allclose(out8["probabilities"].numpy(), expected, atol=1e-5)


def test_warmup_requests_parse_back(exported, trained):
    base, _ = exported
    x_test = trained[3]
    requests = export.read_warmup_requests(base / "tiny" / "1")
    assert [r.model_spec.name for r in requests] == ["tiny"] * 3
    assert [r.model_spec.signature_name for r in requests] == ["serving_default", "serving_default", "serving_bytes"]
    arrays = [tf.make_ndarray(r.inputs["images"]) for r in requests[:2]]
    assert [a.shape for a in arrays] == [(1, *SHAPE), (4, *SHAPE)]
    np.testing.assert_array_equal(arrays[1], x_test[:4])
    # The image-bytes request: the first test image as one PNG file.
    files = tf.make_ndarray(requests[2].inputs["image_bytes"])
    assert files.shape == (1,) and files[0].startswith(b"\x89PNG")
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(files[0])))[..., None], x_test[0])


# ---- the image-bytes signature ---------------------------------------------------------------

def encode(pixels, fmt, **kwargs):
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, fmt, **kwargs)
    return buffer.getvalue()


def odd_files(rng):
    """{name: bytes}: JPEGs, and files of other sizes and modes than the model's 8x8 grey."""
    def rgb(h, w):
        return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)

    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: turned a quarter on reading
    return {
        "same_size.jpg": encode(rng.integers(0, 256, (8, 8), dtype=np.uint8), "JPEG"),
        "photo.jpg": encode(rgb(30, 40), "JPEG", quality=90),
        "large.jpg": encode(rgb(96, 80), "JPEG"),  # decoded at reduced scale by libjpeg
        "sideways.jpg": encode(rgb(12, 20), "JPEG", exif=exif),
        "rgb.png": encode(rgb(13, 20), "PNG"),
        "rgba.png": encode(rng.integers(0, 256, (9, 5, 4), dtype=np.uint8), "PNG"),
        "rgb.bmp": encode(rgb(16, 16), "BMP"),
        "palette.gif": encode(rgb(10, 6), "GIF"),
    }


def predicted_probabilities(model, paths):
    """predict()'s probabilities, one row per file, from its top-k lists in class order."""
    out = []
    for p in predict(model, paths, top_k=CLASSES):
        assert p.error is None, p.error
        row = np.zeros(CLASSES)
        row[p.class_ids] = [probability for _, probability in p.top_k]
        out.append(row)
    return np.array(out)


def test_bytes_signature_equals_predict_on_jpegs_and_other_sizes(exported, tmp_path):
    base, _ = exported
    version_dir = base / "tiny" / "1"
    files = odd_files(np.random.default_rng(3))
    paths = []
    for name, contents in files.items():
        paths.append(tmp_path / name)
        paths[-1].write_bytes(contents)
    signature = tf.saved_model.load(str(version_dir)).signatures["serving_bytes"]
    assert list(signature.structured_input_signature[1]) == ["image_bytes"]
    spec = signature.structured_input_signature[1]["image_bytes"]
    assert spec.dtype == tf.string and spec.shape.as_list() == [None]
    out = signature(image_bytes=tf.constant(list(files.values())))
    assert sorted(out) == sorted(["probabilities", "class_id", "class_name", "top_k_classes", "top_k_probabilities"])
    expected = predicted_probabilities(version_dir, paths)
    np.testing.assert_allclose(out["probabilities"].numpy(), expected, atol=1e-5)
    assert out["class_id"].numpy().tolist() == expected.argmax(-1).tolist()
    assert [n.decode() for n in out["class_name"].numpy()] == [NAMES[i] for i in expected.argmax(-1)]
    # One file at a time gives the same numbers as the batch.
    single = signature(image_bytes=tf.constant([files["sideways.jpg"]]))["probabilities"].numpy()
    np.testing.assert_allclose(single[0], out["probabilities"].numpy()[3], atol=1e-6)


def test_bytes_signature_fails_on_a_file_that_does_not_decode(exported):
    base, _ = exported
    signature = tf.saved_model.load(str(base / "tiny" / "1")).signatures["serving_bytes"]
    good = encode(np.zeros((8, 8), np.uint8), "PNG")
    for bad, message in ((b"not an image", "Unknown image file format"), (b"", "empty"),
                         (good[:30], "PNG")):
        with pytest.raises(tf.errors.InvalidArgumentError, match=message):
            signature(image_bytes=tf.constant([good, bad]))


@pytest.mark.slow
def test_bytes_signature_of_a_centre_cropped_model_equals_predict(tmp_path):
    # From 64 px on, evaluation (and so predict and the signature) takes the central crop.
    keras.utils.set_random_seed(1)
    shape = (64, 64, 3)
    model = keras.Sequential([keras.Input(shape), keras.layers.Rescaling(1 / 255),
                              ResNet(depth=8, input_shape=shape, classes=CLASSES)], name="crop")
    rng = np.random.default_rng(4)
    pixels = rng.integers(0, 256, (3, *shape), dtype=np.uint8)
    version_dir = export.export_saved_model(model, tmp_path, verify_data=pixels)
    parity = verification.image_bytes_parity(version_dir, pixels)
    assert parity == {"bytes_max_abs_diff": 0.0, "bytes_top1_agreement": 1.0, "bytes_images": 3}
    files = {"same_size.png": encode(pixels[0], "PNG"), "wide.jpg": encode(pixels[1][:40], "JPEG"),
             "large.jpg": encode(rng.integers(0, 256, (300, 200, 3), dtype=np.uint8), "JPEG")}
    paths = []
    for name, contents in files.items():
        paths.append(tmp_path / name)
        paths[-1].write_bytes(contents)
    signature = tf.saved_model.load(str(version_dir)).signatures["serving_bytes"]
    got = signature(image_bytes=tf.constant(list(files.values())))["probabilities"].numpy()
    np.testing.assert_allclose(got, predicted_probabilities(version_dir, paths), atol=1e-5)
    # The crop is real: the same-size file is not classified as its uncropped pixels.
    uncropped = model.predict(pixels[:1].astype("float32"), verbose=0)
    assert np.abs(got[0] - uncropped[0]).max() > 1e-4


def test_a_bytes_signature_that_disagrees_is_caught(trained, tmp_path, monkeypatch):
    model, _, _, x_test, _ = trained
    # A decoder that fits 8x8 files differently from evaluation (a centre crop, resized back).
    monkeypatch.setattr(export, "evaluation_fit", lambda size: "center_crop")
    with pytest.raises(export.ExportError, match="serving_bytes signature disagrees with serving_default"):
        export.export_saved_model(model, tmp_path, "m", verify_data=x_test[:8])
    assert list((tmp_path / "m").iterdir()) == []


@pytest.mark.slow
def test_export_all_fails_a_disagreeing_bytes_signature(trained, tmp_path, monkeypatch):
    model, _, _, x_test, y_test = trained
    monkeypatch.setattr(export, "evaluation_fit", lambda size: "center_crop")
    record, = export.export_all(model, "m", tmp_path, x_test=x_test[:20], y_test=y_test[:20], keep_failed=True,
                                latency_runs=1)
    assert not record["passed"] and record["path"] == str(tmp_path / "m" / "1.failed")
    assert record["max_abs_diff"] <= 1e-4  # the pixel signatures are fine
    assert record["bytes_max_abs_diff"] > 1e-4 and record["bytes_images"] == 20
    assert [f for f in record["failures"] if f.startswith("serving_bytes differs from serving_default by")]


def test_bytes_thresholds_apply_to_the_saved_model_only():
    merged = verification.check_thresholds({"saved_model": {"bytes_max_abs_diff": 1e-5}})
    assert merged["saved_model"] == {"max_abs_diff": 1e-4, "min_agreement": 1.0, "bytes_max_abs_diff": 1e-5,
                                     "bytes_min_agreement": 1.0}
    with pytest.raises(ValueError, match=r"thresholds\['float32'\]\['bytes_max_abs_diff'\] applies to the SavedModel"):
        verification.check_thresholds({"float32": {"bytes_max_abs_diff": 1e-5}})


def test_models_without_one_or_three_channels_get_no_bytes_signature(tmp_path):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 2))
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3)(inputs))
    model = keras.Model(inputs, keras.layers.Dense(CLASSES, activation="softmax")(x), name="two")
    version_dir = export.export_saved_model(model, tmp_path)
    assert list(tf.saved_model.load(str(version_dir)).signatures) == ["serving_default", "serving_uint8"]
    assert [r.model_spec.signature_name for r in export.read_warmup_requests(version_dir)] == ["serving_default"] * 2
    assert verification.image_bytes_parity(version_dir, np.zeros((1, 8, 8, 2))) is None


def test_tflite_files_need_only_builtin_ops(exported):
    base, _ = exported
    for path in sorted((base / "tiny" / "tflite").glob("*.tflite")):
        ops = litert.check_builtin_ops(path)
        assert "CONV_2D" in ops and not any(op.startswith("Flex") for op in ops), (path.name, ops)
    assert "QUANTIZE" in litert.tflite_ops(base / "tiny" / "tflite" / "tiny_1_int8.tflite")


@pytest.mark.slow
def test_tflite_from_an_exported_version_folder_converts_serving_default_only(exported, tmp_path):
    # The folder's serving_bytes signature decodes images with ops TFLite has no builtins for.
    base, _ = exported
    path = export.export_tflite(base / "tiny" / "1", tmp_path / "served.tflite")
    assert list(litert.TFLiteRunner(path).interpreter.get_signature_list()) == ["serving_default"]
    assert "CONV_2D" in litert.check_builtin_ops(path)


@pytest.mark.parametrize("io", ["int8", "uint8"])
def test_int8_with_integer_input_and_output(trained, tmp_path, io):
    model, x_train, _, x_test, _ = trained
    path = export.export_tflite(model, tmp_path / "m.tflite", "int8", representative_data=(x_train, None), int8_io=io)
    runner = litert.TFLiteRunner(path)
    assert runner.input["dtype"] == np.dtype(io) and runner.output["dtype"] == np.dtype(io)
    if io == "uint8":
        # Calibrated on 0..255 pixels, the uint8 input takes raw pixels as they are.
        scale, zero_point = runner.input["quantization"]
        assert scale == pytest.approx(1.0, abs=0.01) and zero_point == 0
    agreement = np.mean(runner.predict(x_test).argmax(-1) == model.predict(x_test, verbose=0).argmax(-1))
    assert agreement >= 0.98


@pytest.mark.slow
def test_failed_check_is_dropped_or_kept_marked(trained, tmp_path):
    model, _, _, x_test, y_test = trained
    # A limit no quantized model can meet makes the dynamic-range file fail.
    strict = {"dynamic": {"max_abs_diff": 0.0}}
    records = export.export_all(model, "m", tmp_path, tflite=["float32", "dynamic"], x_test=x_test[:50],
                                y_test=y_test[:50], thresholds=strict, latency_runs=2)
    dynamic = records[-1]
    assert dynamic["format"] == "dynamic" and not dynamic["passed"] and not dynamic["kept"]
    assert dynamic["path"] is None and "max abs diff" in dynamic["failures"][0]
    assert sorted(p.name for p in (tmp_path / "m" / "tflite").iterdir()) == ["m_1_float32.tflite"]
    assert json.loads((tmp_path / "m" / "export_report.json").read_text())[-1]["passed"] is False

    records = export.export_all(model, "m", tmp_path, tflite=["dynamic"], x_test=x_test[:50], y_test=y_test[:50],
                                thresholds={**strict, "saved_model": {"min_agreement": 1.01}}, keep_failed=True,
                                latency_runs=2)
    assert [(r["format"], r["passed"], r["kept"]) for r in records] == [("saved_model", False, True), ("dynamic", False, True)]
    assert (tmp_path / "m" / "2.failed" / "saved_model.pb").is_file()
    assert (tmp_path / "m" / "tflite" / "m_2_dynamic.failed.tflite").is_file()
    assert records[0]["path"] == str(tmp_path / "m" / "2.failed")
    assert export.next_version(tmp_path / "m") == 3  # a kept failure still takes its number


@pytest.mark.slow
def test_verify_catches_a_different_model(trained, tmp_path):
    model, _, _, x_test, y_test = trained
    other = tiny_model(seed=5, train=False)
    path = export.export_tflite(other, tmp_path / "other.tflite")
    record, = verification.verify(model, {"float32": path}, x_test, y_test, latency_runs=2)
    assert not record["passed"]
    assert record["max_abs_diff"] > 0.1 and record["top1_agreement"] < 0.9
    assert any("agreement" in f for f in record["failures"])
    assert record["accuracy"] == pytest.approx(np.mean(other.predict(x_test, verbose=0).argmax(-1) == y_test))


# ---- versions and atomic writes --------------------------------------------------------------

def test_versions_count_up_and_taken_versions_are_refused(trained, tmp_path, monkeypatch):
    model = trained[0]
    assert export.export_saved_model(model, tmp_path, "m", warmup=False).name == "1"
    assert export.export_saved_model(model, tmp_path, "m", version=5, warmup=False).name == "5"
    assert export.next_version(tmp_path / "m") == 6
    monkeypatch.setattr(export, "_save_module", lambda *a, **k: pytest.fail("saved despite a taken version"))
    with pytest.raises(ValueError, match=r"version 5 already exists .* \(6\)"):
        export.export_saved_model(model, tmp_path, "m", version=5)
    with pytest.raises(ValueError, match="version 1 already exists"):
        export.export_all(model, "m", tmp_path, version=1)
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["1", "5"]


def test_failure_mid_export_leaves_no_version_folder(trained, tmp_path, monkeypatch):
    model = trained[0]
    real = export._write_warmup_requests

    def crash(path, *args):
        real(path, *args)  # the SavedModel and the warm-up file are written: a late crash
        raise OSError("disk full")

    monkeypatch.setattr(export, "_write_warmup_requests", crash)
    with pytest.raises(OSError, match="disk full"):
        export.export_saved_model(model, tmp_path, "m")
    assert list((tmp_path / "m").iterdir()) == []


def test_failed_conversion_mid_export_all_leaves_nothing(trained, tmp_path, monkeypatch):
    model, x_train = trained[0], trained[1]
    real = export.convert_saved_model

    def convert(source, quantization, *args):
        if quantization == "int8":
            raise litert.ExportError("injected converter failure")
        return real(source, quantization, *args)

    monkeypatch.setattr(export, "convert_saved_model", convert)
    with pytest.raises(litert.ExportError, match="injected"):
        export.export_all(model, "m", tmp_path, tflite=["float32", "int8"], representative_data=x_train)
    assert list((tmp_path / "m").iterdir()) == []


def test_failed_saved_model_check_is_not_kept(trained, tmp_path):
    model, _, _, x_test, _ = trained
    # A SavedModel whose numbers drift from the Keras model must not be renamed into place.
    with pytest.raises(export.ExportError, match="differ from the Keras model"):
        export.export_saved_model(model, tmp_path, "m", verify_data=x_test[:8],
                                  thresholds={"saved_model": {"max_abs_diff": -1.0}})
    assert list((tmp_path / "m").iterdir()) == []


def test_default_thresholds_are_read_only():
    with pytest.raises(TypeError):
        verification.DEFAULT_THRESHOLDS["float32"] = {"max_abs_diff": 1.0}
    with pytest.raises(TypeError):
        verification.DEFAULT_THRESHOLDS["float32"]["max_abs_diff"] = 1.0
    merged = verification.check_thresholds({"float32": {"max_abs_diff": 0.5}})
    assert merged["float32"]["max_abs_diff"] == 0.5 and verification.DEFAULT_THRESHOLDS["float32"]["max_abs_diff"] == 1e-4


# ---- bad input ------------------------------------------------------------------------------

def test_load_model_rejects_what_is_not_a_keras_model(tmp_path, trained):
    text = tmp_path / "model.keras"
    text.write_text("not a model")
    with pytest.raises(ValueError, match="is not a Keras model file"):
        export.load_model(text)
    with pytest.raises(ValueError, match="does not exist"):
        export.load_model(tmp_path / "missing.keras")
    broken = tmp_path / "broken.keras"
    with zipfile.ZipFile(broken, "w") as z:
        z.writestr("config.json", "{}")
    with pytest.raises(ValueError, match="could not load"):
        export.load_model(broken)
    good = tmp_path / "good.keras"
    trained[0].save(good)
    np.testing.assert_allclose(export.load_model(good).predict(trained[3][:4], verbose=0),
                               trained[0].predict(trained[3][:4], verbose=0), atol=1e-6)


def variable_size_model():
    inputs = keras.Input((None, None, 1))
    x = keras.layers.Conv2D(4, 3)(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(CLASSES, activation="softmax")(x))


@pytest.mark.parametrize(
    "call,message",
    [
        (lambda m, d, t: export.export_saved_model(variable_size_model(), t), "fixed input size"),
        (lambda m, d, t: export.export_tflite(variable_size_model(), t / "a.tflite"), "fixed input size"),
        (lambda m, d, t: export.export_all(variable_size_model(), "m", t), "fixed input size"),
        (lambda m, d, t: export.export_tflite(m, t / "a.tflite", "int4"), "quantization must be one of float32, float16, dynamic, int8; received quantization='int4'"),
        (lambda m, d, t: export.export_all(m, "m", t, tflite=["float32", "int4"]), "received quantization='int4'"),
        (lambda m, d, t: export.export_tflite(m, t / "a.tflite", "int8"), "int8 quantization needs representative_data"),
        (lambda m, d, t: export.export_all(m, "m", t, tflite=["int8"]), "int8 quantization needs representative_data"),
        (lambda m, d, t: export.export_tflite(m, t / "a.tflite", "int8", d, int8_io="int16"), "received int8_io='int16'"),
        (lambda m, d, t: export.export_all(m, "m", t, tflite=["float32"], int8_io="uint8"), "int8_io='uint8' applies to an int8"),
        (lambda m, d, t: export.export_tflite(m, t / "a.tflite", "int8", d[:, :4]), r"shape \(8, 8, 1\); received .* \(500, 4, 8, 1\)"),
        (lambda m, d, t: export.export_tflite(m, t / "a.bin"), "must end in .tflite"),
        (lambda m, d, t: export.export_saved_model(m, t, "../escape"), "received name='../escape'"),
        (lambda m, d, t: export.export_saved_model(m, t, "m", class_names=["a"]), "class_names must be 3"),
        (lambda m, d, t: export.export_saved_model(m, t, "m", version=0), "received version=0"),
        (lambda m, d, t: export.export_all(m, "m", t, thresholds={"int8": {"max_diff": 1}}), r"received thresholds\['int8'\] key='max_diff'"),
        (lambda m, d, t: export.export_all(m, "m", t, x_test=d[:10], y_test=[0, 1]), "one label per image of x_test"),
        (lambda m, d, t: export.export_all(m, "m", t, x_test=3), "must be an array of images"),
    ],
)
def test_bad_arguments_fail_before_any_work(trained, tmp_path, no_expensive_work, call, message):
    model, x_train = trained[0], trained[1]
    with pytest.raises(ValueError, match=message):
        call(model, x_train, tmp_path)
    assert not (tmp_path / "m").exists() or not any((tmp_path / "m").iterdir())


def test_logits_model_is_refused(tmp_path, no_expensive_work):
    keras.utils.set_random_seed(0)
    logits = ResNet(depth=8, input_shape=SHAPE, classes=CLASSES, classifier_activation=None)
    with pytest.raises(ValueError, match="class probabilities"):
        export.export_saved_model(logits, tmp_path, "m")


def test_flex_ops_are_named(tmp_path):
    class NeedsFlex(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32, name="images")])
        def serve(self, images):
            return {"probabilities": tf.math.erf(images)}  # Erf has no TFLite builtin

    module = NeedsFlex()
    tf.saved_model.save(module, str(tmp_path / "sm"), signatures={"serving_default": module.serve})
    with pytest.raises(litert.ExportError, match="outside the TFLite builtins: Erf"):
        export.export_tflite(tmp_path / "sm", tmp_path / "flex.tflite")
    assert not (tmp_path / "flex.tflite").exists()
    # What Keras's litert export would produce: Select TF ops on. The op check names them.
    converter = tf.lite.TFLiteConverter.from_saved_model(str(tmp_path / "sm"))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS, tf.lite.OpsSet.SELECT_TF_OPS]
    with pytest.raises(litert.ExportError, match="FlexErf"):
        litert.check_builtin_ops(converter.convert())


# ---- command line ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def model_file(trained, tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "tiny.keras"
    trained[0].save(path)
    return path


def fake_load_dataset(trained):
    """Stands in for keras_resnet.data.load_dataset (the tests must not depend on the real datasets)."""
    _, x_train, y_train, x_test, y_test = trained

    def load_dataset(name, image_size=None, batch_size=128, **kwargs):
        assert name == "blobs" and image_size == SHAPE[0]
        return types.SimpleNamespace(
            train=tf.data.Dataset.from_tensor_slices((x_train.astype("float32"), y_train)).batch(batch_size),
            test=tf.data.Dataset.from_tensor_slices((x_test.astype("float32"), y_test)).batch(batch_size),
            input_shape=SHAPE, num_classes=CLASSES, class_names=tuple(NAMES),
        )

    return load_dataset


@pytest.mark.slow
def test_cli_export_with_dataset(model_file, trained, tmp_path, monkeypatch, capsys):
    # The attribute, not the module: keras_resnet.data must stay importable for the CLI's other imports.
    monkeypatch.setattr(keras_resnet.data, "load_dataset", fake_load_dataset(trained))
    rc = cli.main(["export", str(model_file), "--name", "tiny", "--base", str(tmp_path),
                   "--tflite", "float32", "int8", "--dataset", "blobs", "--int8-io", "uint8"])
    out = capsys.readouterr().out
    assert rc == 0, out
    report = json.loads((tmp_path / "tiny" / "export_report.json").read_text())
    assert [r["format"] for r in report] == ["saved_model", "float32", "int8"]
    assert all(r["accuracy"] is not None and r["passed"] for r in report)
    assert report[0]["accuracy"] == pytest.approx(report[0]["reference_accuracy"])
    for r in report:
        assert r["path"] in out
    assert (tmp_path / "tiny" / "1" / "assets" / "class_names.txt").read_text().split() == NAMES
    assert litert.TFLiteRunner(tmp_path / "tiny" / "tflite" / "tiny_1_int8.tflite").input["dtype"] == np.uint8


@pytest.mark.slow
def test_cli_export_without_dataset_and_keep_failed(model_file, tmp_path, monkeypatch, capsys):
    assert cli.main(["export", str(model_file), "--name", "tiny", "--base", str(tmp_path)]) == 0
    assert "random images" in capsys.readouterr().out
    # The command has no thresholds option: its call into the exporter passes impossible ones.
    monkeypatch.setattr(pipeline, "export_trained", functools.partial(
        pipeline.export_trained, thresholds={"float32": {"max_abs_diff": -1.0}}))
    rc = cli.main(["export", str(model_file), "--name", "tiny", "--base", str(tmp_path), "--tflite", "float32",
                   "--keep-failed"])
    out = capsys.readouterr().out
    assert rc == 1 and "float32 failed: max abs diff" in out
    assert sorted(p.name for p in (tmp_path / "tiny").iterdir()) == ["1", "2", "export_report.json", "tflite"]
    assert [p.name for p in (tmp_path / "tiny" / "tflite").iterdir()] == ["tiny_2_float32.failed.tflite"]


@pytest.mark.parametrize(
    "args,message",
    [
        (["export", "{missing}", "--name", "m"], "does not exist"),
        (["export", "{text}", "--name", "m"], "is not a Keras model file"),
        (["export", "{model}", "--name", "m", "--tflite", "int8"], "--tflite int8 needs --dataset"),
        (["export", "{model}", "--name", "m", "--tflite", "int4"], "argument --tflite: invalid choice: 'int4'"),
        (["export", "{model}", "--name", "m", "--export-version", "1"], "version 1 already exists"),
        (["serve", "{missing}"], "does not exist"),
    ],
)
def test_cli_bad_arguments_exit_2(model_file, tmp_path, capsys, args, message):
    (tmp_path / "m" / "1").mkdir(parents=True)
    (tmp_path / "text.keras").write_text("hello")
    paths = {"{missing}": str(tmp_path / "missing.keras"), "{text}": str(tmp_path / "text.keras"),
             "{model}": str(model_file)}
    with pytest.raises(SystemExit) as exit_info:
        cli.main([paths.get(a, a) for a in args] + (["--base", str(tmp_path)] if args[0] == "export" else []))
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
