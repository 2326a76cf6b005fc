"""Tests of keras_resnet.tflite_metadata: the metadata, the grey model's RGB input, and MediaPipe's ImageClassifier."""

from __future__ import annotations

import io
import json
import zipfile

import keras
import numpy as np
import pytest
import tensorflow as tf
from harness import band_images, forbid_calls

from keras_resnet import cli, export, tflite_metadata
from keras_resnet.images import read_image_file
from keras_resnet.litert import TFLiteRunner
from keras_resnet.models import ResNet
from keras_resnet.predict import load_classifier, predict

NAMES = ["left", "middle", "right"]


def classifier(shape, seed=0):
    """Raw pixels in, probabilities out: Rescaling then a ResNet-8."""
    keras.utils.set_random_seed(seed)
    return keras.Sequential(
        [keras.Input(shape), keras.layers.Rescaling(1 / 255), ResNet(depth=8, input_shape=shape, classes=len(NAMES))],
        name="tiny",
    )


def colour_bands(n, seed):
    """``band_images`` in colour: each image's dark noise and bright band in its own random tint."""
    x, y = band_images(n, seed)
    tint = np.random.default_rng(seed).uniform(0.5, 1.0, (n, 1, 1, 3))
    return np.round(x * tint).astype("uint8"), y


def trained(shape, x, y):
    model = classifier(shape)
    model.compile(keras.optimizers.Adam(0.01), "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=3, batch_size=50, verbose=0)
    return model


# ---- the metadata itself (fast) -------------------------------------------------------------------

@pytest.fixture(scope="module")
def small_file(tmp_path_factory):
    """A grey model's float32 file with metadata (untrained: only the file's form matters here)."""
    path = tmp_path_factory.mktemp("meta") / "tiny.tflite"
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Rescaling(1 / 255), keras.layers.Flatten(),
                              keras.layers.Dense(3, activation="softmax")], name="tiny")
    export.export_tflite(model, path, metadata=True, class_names=NAMES)
    return model, path


def test_metadata_parses_back(small_file):
    _, path = small_file
    meta = tflite_metadata.read_metadata(path)
    assert meta["name"] == "tiny" and meta["min_parser_version"] == "1.0.0"
    assert meta["labels"] == NAMES and meta["model_channels"] == 1
    [image] = meta["inputs"]
    assert image["color_space"] == "RGB"
    assert image["process_units"] == [{"normalization": {"mean": [0.0], "std": [1.0]}}]
    assert image["stats"] == {"min": [0.0], "max": [255.0]}
    [output] = meta["outputs"]
    assert output["associated_files"] == [{"name": "labels.txt", "type": 2}]  # TENSOR_AXIS_LABELS
    # The labels are a zip appended to the flatbuffer, stored uncompressed.
    with zipfile.ZipFile(path) as archive:
        [info] = archive.infolist()
        assert info.filename == "labels.txt" and info.compress_type == zipfile.ZIP_STORED
        assert archive.read("labels.txt").decode() == "left\nmiddle\nright\n"
    assert TFLiteRunner(path).input["shape"].tolist() == [1, 8, 8, 3]


def test_metadata_reads_with_the_published_generated_schema(small_file):
    """The schema module generated from metadata_schema.fbs (shipped in the mediapipe wheel) reads our buffer."""
    generated = pytest.importorskip("mediapipe.tasks.metadata.metadata_schema_py_generated",
                                    reason="mediapipe is not installed (pip install -e .[dev])")
    from ai_edge_litert import schema_py_generated as schema

    _, path = small_file
    content = path.read_bytes()
    model = schema.Model.GetRootAsModel(content, 0)
    entries = {model.Metadata(i).Name(): model.Metadata(i).Buffer() for i in range(model.MetadataLength())}
    buffer = model.Buffers(entries[b"TFLITE_METADATA"]).DataAsNumpy().tobytes()
    assert generated.ModelMetadata.ModelMetadataBufferHasIdentifier(buffer, 0)
    meta = generated.ModelMetadataT.InitFromPackedBuf(buffer, 0)
    assert meta.name == b"tiny" and meta.minParserVersion == b"1.0.0"
    [subgraph] = meta.subgraphMetadata
    [image], [output] = subgraph.inputTensorMetadata, subgraph.outputTensorMetadata
    assert image.content.contentPropertiesType == generated.ContentProperties.ImageProperties
    assert image.content.contentProperties.colorSpace == generated.ColorSpaceType.RGB
    [unit] = image.processUnits
    assert unit.optionsType == generated.ProcessUnitOptions.NormalizationOptions
    assert unit.options.mean.tolist() == [0.0] and unit.options.std.tolist() == [1.0]
    [labels] = output.associatedFiles
    assert labels.name == b"labels.txt" and labels.type == generated.AssociatedFileType.TENSOR_AXIS_LABELS


def test_grey_model_file_takes_rgb_and_matches_the_keras_model(small_file):
    model, path = small_file
    x = np.random.default_rng(0).integers(0, 256, (6, 8, 8, 1)).astype("float32")
    expected = model.predict(x, verbose=0)
    # Grey replicated to RGB gives exactly the grey input: the runner does it for verification...
    np.testing.assert_allclose(TFLiteRunner(path).predict(x), expected, atol=1e-6)
    # ...and predict's loader reads images for the grey model, with the packed labels.
    loaded = load_classifier(path)
    assert loaded.input_shape == (8, 8, 1) and loaded.class_names == tuple(NAMES)
    [p] = predict(path, x[:1], top_k=1)
    assert p.top_k[0][0] == NAMES[int(expected[0].argmax())]


def test_rgb_to_grey_is_the_decoders_grey(tmp_path):
    """A colour file through RGBToGrey gives the grey levels the decoder gives a grey model (to its rounding)."""
    rgb = np.random.default_rng(1).integers(0, 256, (9, 7, 3)).astype("uint8")
    path = tmp_path / "colour.png"
    path.write_bytes(tf.io.encode_png(rgb).numpy())
    decoded = read_image_file(path, 1).astype("float32")
    converted = tflite_metadata.RGBToGrey()(read_image_file(path, 3)[None].astype("float32"))[0].numpy()
    assert converted.shape == decoded.shape == (9, 7, 1)
    assert np.max(np.abs(converted - decoded)) <= 0.5 + 1e-4
    grey = rgb[..., :1].astype("float32")
    np.testing.assert_array_equal(tflite_metadata.RGBToGrey()(np.repeat(grey, 3, -1)[None]).numpy()[0], grey)


def test_metadata_replaces_itself_and_rejects_bad_input(small_file):
    _, path = small_file
    again = tflite_metadata.add_metadata(path, ["a", "b", "c"], name="again", version=7)
    meta = tflite_metadata.read_metadata(again)
    assert (meta["name"], meta["version"], meta["labels"], meta["model_channels"]) == ("again", "7", ["a", "b", "c"], 3)
    with zipfile.ZipFile(io.BytesIO(again)) as archive:
        assert archive.namelist() == ["labels.txt"]
    with pytest.raises(ValueError, match=r"class_names must be 3 non-empty one-line strings.*\['a', 'b'\]"):
        tflite_metadata.add_metadata(path, ["a", "b"], name="x")
    with pytest.raises(ValueError, match="name must be a non-empty string; received name=''"):
        tflite_metadata.add_metadata(path, None, name="")
    with pytest.raises(ValueError, match="not a TFLite model"):
        tflite_metadata.add_metadata(b"not a model at all", None, name="x")


def test_grey_input_file_is_refused(tmp_path):
    model = keras.Sequential([keras.Input((4, 4, 1)), keras.layers.Flatten(), keras.layers.Dense(2, activation="softmax")])
    path = export.export_tflite(model, tmp_path / "grey.tflite")
    with pytest.raises(ValueError, match=r"feeds RGB images \(1, height, width, 3\); the model's input has shape \[1, 4, 4, 1\]"):
        tflite_metadata.add_metadata(path, None, name="grey")
    assert tflite_metadata.read_metadata(path) is None and tflite_metadata.read_labels(path) is None


@pytest.mark.parametrize("call,message", [
    (lambda m, d: export.export_all(m, "x", d, tflite=["int8"], representative_data=np.zeros((4, 8, 8, 1)),
                                    int8_io="int8", metadata=True),
     "MediaPipe's ImageClassifier, which takes float32 or uint8 input and refuses int8; received int8_io='int8'"),
    (lambda m, d: export.export_all(m, "x", d, tflite=["float32"], metadata="yes"), "metadata"),
    (lambda m, d: export.export_tflite(m, d / "m.tflite", "int8", np.zeros((4, 8, 8, 1)), "int8", metadata=True),
     "received int8_io='int8'"),
])
def test_bad_metadata_arguments_fail_before_any_work(small_file, tmp_path, monkeypatch, call, message):
    forbid_calls(monkeypatch, (export, "_save_module"), (export, "convert_saved_model"))
    with pytest.raises(ValueError, match=message):
        call(small_file[0], tmp_path)


@pytest.mark.parametrize("args,message", [
    (["--metadata"], "--metadata writes TFLite Metadata into the TFLite files; add --tflite QUANT"),
    (["--metadata", "--tflite", "int8", "--int8-io", "int8", "--dataset", "d"], "refuses int8 input"),
])
def test_cli_metadata_bad_arguments_exit_2(small_file, tmp_path, capsys, args, message):
    model_path = tmp_path / "m.keras"
    small_file[0].save(model_path)
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["export", str(model_path), "--name", "m", "--base", str(tmp_path), *args])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_cli_export_with_metadata(small_file, tmp_path, capsys):
    model_path = tmp_path / "m.keras"
    small_file[0].save(model_path)
    rc = cli.main(["export", str(model_path), "--name", "m", "--base", str(tmp_path), "--tflite", "float32", "--metadata"])
    assert rc == 0, capsys.readouterr().out
    meta = tflite_metadata.read_metadata(tmp_path / "m" / "tflite" / "m_1_float32.tflite")
    assert (meta["name"], meta["version"], meta["labels"], meta["model_channels"]) == ("m", "1", ["0", "1", "2"], 1)


# ---- MediaPipe's ImageClassifier (slow: training and conversions) ----------------------------------

def mediapipe_classify(path, images):
    """Runs MediaPipe Tasks' ImageClassifier on uint8 RGB images; returns its categories per image."""
    mp = pytest.importorskip("mediapipe", reason="mediapipe is not installed (pip install -e .[dev])")
    from mediapipe.tasks.python import BaseOptions
    from mediapipe.tasks.python.vision import ImageClassifier, ImageClassifierOptions

    options = ImageClassifierOptions(base_options=BaseOptions(model_asset_path=str(path)), max_results=len(NAMES))
    with ImageClassifier.create_from_options(options) as mp_classifier:
        return [
            mp_classifier.classify(mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(image)))
            .classifications[0].categories
            for image in images
        ]


def check_categories(categories, expected, max_abs_diff):
    """MediaPipe's categories name the classes from the labels file and agree with the Keras probabilities."""
    for cats, probs in zip(categories, expected):
        assert sorted(c.category_name for c in cats) == sorted(NAMES)
        assert all(c.category_name == NAMES[c.index] for c in cats)
        assert cats[0].index == int(probs.argmax())
        assert max(abs(c.score - probs[c.index]) for c in cats) <= max_abs_diff


@pytest.mark.slow
def test_mediapipe_image_classifier_runs_grey_model_exports(tmp_path):
    pytest.importorskip("mediapipe", reason="mediapipe is not installed (pip install -e .[dev])")
    x_train, y_train = band_images(500, seed=1)
    x_test, y_test = band_images(40, seed=2)
    model = trained((8, 8, 1), x_train, y_train)
    records = export.export_all(model, "tiny", tmp_path, tflite=["float32", "int8"], representative_data=x_train,
                                x_test=x_test, y_test=y_test, class_names=NAMES, int8_io="uint8", metadata=True,
                                latency_runs=2)
    # The report compares the RGB-input files with the grey Keras model on the same test images.
    assert [(r["format"], r["passed"], r["accuracy"]) for r in records] == [
        ("saved_model", True, 1.0), ("float32", True, 1.0), ("int8", True, 1.0)]
    assert json.loads((tmp_path / "tiny" / "export_report.json").read_text()) == records
    files = {r["format"]: r["path"] for r in records[1:]}
    assert TFLiteRunner(files["int8"]).input["quantization"] == (1.0, 0)  # uint8 input bytes are the pixels

    expected = model.predict(x_test, verbose=0)
    rgb = np.repeat(x_test, 3, axis=-1)
    check_categories(mediapipe_classify(files["float32"], rgb), expected, 1e-5)
    check_categories(mediapipe_classify(files["int8"], rgb), expected, 0.02)

    # A colour photo is seen as the decoder's grey (luma weights), not as any one channel.
    colour, _ = colour_bands(8, seed=3)
    grey = np.clip(np.round(colour.astype("float32") @ np.array(tflite_metadata.GREY_WEIGHTS, "float32")), 0, 255)
    check_categories(mediapipe_classify(files["float32"], colour), model.predict(grey[..., None], verbose=0), 0.01)


@pytest.mark.slow
def test_mediapipe_image_classifier_runs_rgb_model_export(tmp_path):
    pytest.importorskip("mediapipe", reason="mediapipe is not installed (pip install -e .[dev])")
    x_train, y_train = colour_bands(500, seed=1)
    x_test, _ = colour_bands(30, seed=2)
    model = trained((8, 8, 3), x_train, y_train)
    path = export.export_tflite(model, tmp_path / "rgb_int8.tflite", "int8", representative_data=x_train,
                                metadata=True, class_names=NAMES)
    meta = tflite_metadata.read_metadata(path)
    assert meta["model_channels"] == 3 and meta["labels"] == NAMES
    check_categories(mediapipe_classify(path, x_test), model.predict(x_test, verbose=0), 0.02)
