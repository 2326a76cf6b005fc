"""Tests of keras_resnet.onnx_export: the ONNX file, its checks, export_all(onnx=True), the CLI and predict."""

from __future__ import annotations

import json
import sys

import keras
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from harness import band_images, forbid_calls
from PIL import Image

from keras_resnet import cli, export, litert, onnx_export, verification
from keras_resnet.data import preprocessing
from keras_resnet.models import ResNet
from keras_resnet.predict import load_classifier, resolve_model
from keras_resnet.predict import predict as run_predict

SHAPE = (8, 8, 1)
CLASSES = 3
NAMES = ["left", "middle", "right"]


def tiny_model(shape=SHAPE, seed=0, x=None, y=None):
    """Raw pixels in, probabilities out, as training builds them: the normalisation then a ResNet-8.

    The Normalization layer with a given mean and variance captures constant tensors, which
    tf2onnx would make graph inputs: the export must fold them. Trained a few steps when given data.
    """
    keras.utils.set_random_seed(seed)
    model = keras.Sequential(
        [keras.Input(shape), preprocessing(([60.0] * shape[-1], [50.0] * shape[-1])),
         ResNet(depth=8, input_shape=shape, classes=CLASSES)],
        name="tiny",
    )
    if x is not None:
        model.compile(keras.optimizers.Adam(0.01), "sparse_categorical_crossentropy")
        model.fit(x, y, epochs=3, batch_size=50, verbose=0)
    return model


@pytest.fixture(scope="module")
def trained():
    x_train, y_train = band_images(300, seed=1, noise=0.05)
    x_test, y_test = band_images(100, seed=2, noise=0.05)
    return tiny_model(x=x_train, y=y_train), x_test.astype("float32"), y_test


@pytest.fixture(scope="module")
def onnx_file(trained, tmp_path_factory):
    model, x_test, _ = trained
    path = tmp_path_factory.mktemp("onnx") / "tiny.onnx"
    assert onnx_export.export_onnx(model, path, class_names=NAMES, verify_data=x_test) == path
    return path


@pytest.fixture
def no_conversion(monkeypatch):
    """Fails the test if the conversion starts: validation must come first."""
    forbid_calls(monkeypatch, (onnx_export, "convert"), (export, "_save_module"))


# ---- the file ---------------------------------------------------------------------------------

def test_onnx_file_names_types_metadata_and_parity(onnx_file, trained):
    model, x_test, _ = trained
    proto = onnx.load(str(onnx_file))
    dims = [d.dim_param or d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim]
    assert [i.name for i in proto.graph.input] == ["images"] and dims == ["batch", *SHAPE]
    assert len(proto.graph.initializer) > 0  # the weights and the normalisation's constants
    assert proto.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    types = {o.name: o.type.tensor_type.elem_type for o in proto.graph.output}
    assert list(types) == ["probabilities", "class_id", "top_k_classes", "top_k_probabilities"]
    assert types["class_id"] == types["top_k_classes"] == onnx.TensorProto.INT64
    assert {o.domain: o.version for o in proto.opset_import}[""] == onnx_export.OPSET == 17
    metadata = {p.key: p.value for p in proto.metadata_props}
    assert json.loads(metadata["class_names"]) == NAMES and metadata["top_k"] == "3"
    assert not any("Identity" in o.name for o in proto.graph.output)

    session = ort.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    for batch in (1, 7):  # the batch is dynamic
        x = x_test[:batch]
        expected = model.predict(x, verbose=0)
        probabilities, class_id, top_classes, top_p = session.run(None, {"images": x})
        np.testing.assert_allclose(probabilities, expected, atol=1e-5)
        assert class_id.dtype == np.int64 and class_id.tolist() == expected.argmax(-1).tolist()
        assert top_classes.shape == (batch, CLASSES) and top_classes[:, 0].tolist() == class_id.tolist()
        np.testing.assert_allclose(top_p, np.sort(expected, -1)[:, ::-1], atol=1e-5)
    runner = onnx_export.ONNXRunner(onnx_file)
    assert runner.class_names == NAMES and onnx_export.output_failures(runner, x_test) == []
    agreement = np.mean(runner.predict(x_test).argmax(-1) == model.predict(x_test, verbose=0).argmax(-1))
    assert agreement == 1.0


def test_predict_and_load_classifier_on_an_onnx_file(onnx_file, trained, tmp_path):
    model, x_test, _ = trained
    source = resolve_model(onnx_file)
    assert source.kind == "onnx" and source.class_names_file is None and source.version is None
    classifier = load_classifier(onnx_file)
    assert classifier.class_names == tuple(NAMES) and classifier.input_shape == SHAPE
    np.testing.assert_allclose(classifier(x_test[:5]), model.predict(x_test[:5], verbose=0), atol=1e-5)
    predictions = run_predict(onnx_file, x_test[:4], top_k=2)
    expected = model.predict(x_test[:4], verbose=0).argmax(-1)
    assert [p.label for p in predictions] == [NAMES[i] for i in expected]
    assert load_classifier(onnx_file, labels=["a", "b", "c"]).class_names == ("a", "b", "c")

    broken = tmp_path / "broken.onnx"
    broken.write_text("not a model")
    with pytest.raises(ValueError, match=r"could not load the ONNX model '.*broken.onnx'"):
        load_classifier(broken)


@pytest.mark.slow
def test_rgb_model_and_metadata_of_the_wrong_length(tmp_path):
    x, y = band_images(200, seed=4)
    x = np.repeat(x, 3, axis=-1)
    model = tiny_model((8, 8, 3), x=x, y=y)
    path = onnx_export.export_onnx(model, tmp_path / "rgb.onnx", top_k=2, verify_data=x[:50])
    runner = onnx_export.ONNXRunner(path)
    assert runner.input_shape == ["batch", 8, 8, 3] and runner.class_names == ["0", "1", "2"]
    assert runner.outputs(x[:3].astype("float32"))["top_k_classes"].shape == (3, 2)
    np.testing.assert_allclose(runner(x[:9]), model.predict(x[:9], verbose=0), atol=1e-5)
    # A file whose metadata names the wrong number of classes: predict falls back to indices.
    proto = onnx.load(str(path))
    onnx.helper.set_model_props(proto, {"class_names": json.dumps(["a", "b"])})
    onnx.save(proto, str(tmp_path / "two.onnx"))
    with pytest.warns(UserWarning, match="names 2 classes in its metadata, but has 3"):
        assert load_classifier(tmp_path / "two.onnx").class_names == ("0", "1", "2")


# ---- export_all and verification ----------------------------------------------------------------

@pytest.mark.slow
def test_export_all_with_onnx_report_layout_and_failures(trained, tmp_path):
    model, x_test, y_test = trained
    records = export.export_all(model, "tiny", tmp_path, onnx=True, x_test=x_test, y_test=y_test,
                                class_names=NAMES, latency_runs=3, num_threads=1)
    model_dir = tmp_path / "tiny"
    assert sorted(p.name for p in model_dir.iterdir()) == ["1", "export_report.json", "onnx"]
    assert [p.name for p in (model_dir / "onnx").iterdir()] == ["tiny_1.onnx"]
    assert [r["format"] for r in records] == ["saved_model", "onnx"]
    record = records[1]
    bytes_keys = {"bytes_max_abs_diff", "bytes_top1_agreement", "bytes_images"}  # the SavedModel's own check
    assert set(records[0]) - bytes_keys == set(record)  # the same keys as the other formats
    assert record["passed"] and record["kept"] and not record["failures"]
    assert record["path"] == str(model_dir / "onnx" / "tiny_1.onnx")
    assert record["max_abs_diff"] <= 1e-5 and record["top1_agreement"] == 1.0
    assert record["accuracy"] == pytest.approx(record["reference_accuracy"]) and record["accuracy"] > 0.8
    assert record["size_bytes"] == (model_dir / "onnx" / "tiny_1.onnx").stat().st_size > 0
    assert record["latency_ms"] > 0
    assert json.loads((model_dir / "export_report.json").read_text()) == records
    assert load_classifier(model_dir / "onnx" / "tiny_1.onnx").class_names == tuple(NAMES)
    assert resolve_model(model_dir / "onnx" / "tiny_1.onnx").version == 1

    # An ONNX file that fails its limits is dropped, or kept under a .failed name; its version is taken.
    strict = {"onnx": {"max_abs_diff": -1.0}}
    records = export.export_all(model, "tiny", tmp_path, onnx=True, x_test=x_test[:20], thresholds=strict,
                                latency_runs=2)
    assert not records[1]["passed"] and not records[1]["kept"] and "max abs diff" in records[1]["failures"][0]
    assert [p.name for p in (model_dir / "onnx").iterdir()] == ["tiny_1.onnx"]
    records = export.export_all(model, "tiny", tmp_path, onnx=True, x_test=x_test[:20], thresholds=strict,
                                latency_runs=2, keep_failed=True)
    assert records[1]["path"] == str(model_dir / "onnx" / "tiny_3.failed.onnx")
    assert sorted(p.name for p in model_dir.iterdir() if p.name.isdigit()) == ["1", "2", "3"]
    (model_dir / "3").rename(model_dir / "spare")  # only the ONNX file now holds version 3
    assert export.next_version(model_dir) == 4


def test_verify_names_wrong_outputs_and_missing_class_names(onnx_file, trained, tmp_path):
    model, x_test, y_test = trained
    proto = onnx.load(str(onnx_file))
    # What Keras's model.export(format="onnx") gives: an output named Identity:0; and no class names.
    for node in proto.graph.node:
        for names in (node.input, node.output):
            names[:] = ["Identity:0" if n == "probabilities" else n for n in names]
    proto.graph.output[0].name = "Identity:0"
    del proto.metadata_props[:]
    onnx.save(proto, str(tmp_path / "renamed.onnx"))
    record, = verification.verify(model, {"onnx": tmp_path / "renamed.onnx"}, x_test[:20], y_test[:20],
                                   latency_runs=1, num_threads=1)
    assert not record["passed"] and record["top1_agreement"] == 1.0  # the numbers are fine; the names are not
    assert any("outputs are ['Identity:0', 'class_id'" in f for f in record["failures"]), record["failures"]

    proto = onnx.load(str(onnx_file))
    del proto.metadata_props[:]
    onnx.save(proto, str(tmp_path / "nameless.onnx"))
    record, = verification.verify(model, {"onnx": tmp_path / "nameless.onnx"}, x_test[:20], latency_runs=1)
    assert record["failures"] == ["metadata 'class_names' must be a JSON list of 3 class names; found None"]


# ---- atomicity ----------------------------------------------------------------------------------

def test_a_failed_check_writes_nothing_and_keeps_the_old_file(trained, tmp_path, monkeypatch):
    model, x_test, _ = trained
    path = tmp_path / "m.onnx"
    path.write_bytes(b"the previous file")
    other = tiny_model(seed=7)  # untrained: its probabilities differ from the model's
    real = onnx_export.convert
    monkeypatch.setattr(onnx_export, "convert", lambda m, *args, **kwargs: real(other, *args, **kwargs))
    with pytest.raises(litert.ExportError, match="differ from the Keras model's by up to"):
        onnx_export.export_onnx(model, path, verify_data=x_test[:16])
    assert path.read_bytes() == b"the previous file"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]


def test_a_conversion_failure_in_export_all_leaves_nothing(trained, tmp_path, monkeypatch):
    model = trained[0]

    def fail(*args, **kwargs):
        raise litert.ExportError("injected conversion failure")

    monkeypatch.setattr(onnx_export, "convert", fail)
    with pytest.raises(litert.ExportError, match="injected"):
        export.export_all(model, "m", tmp_path, onnx=True, latency_runs=1)
    assert list((tmp_path / "m").iterdir()) == []


# ---- bad input ----------------------------------------------------------------------------------

def variable_size_model():
    inputs = keras.Input((None, None, 1))
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3)(inputs))
    return keras.Model(inputs, keras.layers.Dense(CLASSES, activation="softmax")(x))


@pytest.mark.parametrize(
    "call,message",
    [
        (lambda m, t: onnx_export.export_onnx(m, t / "m.onnx.tmp"), r"path must end in .onnx; received path='.*m.onnx.tmp'"),
        (lambda m, t: onnx_export.export_onnx(m, t), "path must end in .onnx"),
        (lambda m, t: onnx_export.export_onnx(m, ""), "path must be a path ending in .onnx; received path=''"),
        (lambda m, t: onnx_export.export_onnx(m, t / "folder.onnx"), "is a folder"),
        (lambda m, t: onnx_export.export_onnx(m, t / "m.onnx", opset=11), "opset must be an integer in \\[13, 18\\]; received opset=11"),
        (lambda m, t: onnx_export.export_onnx(m, t / "m.onnx", top_k=0), "received top_k=0"),
        (lambda m, t: onnx_export.export_onnx(m, t / "m.onnx", class_names=["a"]), "class_names must be 3"),
        (lambda m, t: onnx_export.export_onnx("model.h5", t / "m.onnx"), "does not exist"),
        (lambda m, t: onnx_export.export_onnx(3, t / "m.onnx"), "source must be a keras.Model or a .keras file; received int"),
        (lambda m, t: onnx_export.export_onnx(variable_size_model(), t / "m.onnx"), "fixed input size"),
        (lambda m, t: onnx_export.export_onnx(m, t / "m.onnx", verify_data=np.zeros((2, 4, 4, 1))), r"shape \(8, 8, 1\)"),
        (lambda m, t: export.export_all(m, "m", t, onnx="yes"), "received onnx='yes'"),
    ],
)
def test_bad_arguments_fail_before_any_work(trained, tmp_path, no_conversion, call, message):
    (tmp_path / "folder.onnx").mkdir()
    with pytest.raises(ValueError, match=message):
        call(trained[0], tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["folder.onnx"]


def test_logits_model_is_refused(tmp_path, no_conversion):
    keras.utils.set_random_seed(0)
    logits = ResNet(depth=8, input_shape=SHAPE, classes=CLASSES, classifier_activation=None)
    with pytest.raises(ValueError, match="class probabilities"):
        onnx_export.export_onnx(logits, tmp_path / "m.onnx")


def test_missing_packages_name_the_extra(trained, tmp_path, monkeypatch, no_conversion, capsys):
    monkeypatch.setattr(onnx_export, "missing_packages", lambda packages=(): ["tf2onnx"])
    hint = r'missing: tf2onnx\. Install them with: pip install "keras-residual\[onnx\]"'
    with pytest.raises(ImportError, match=hint):
        onnx_export.export_onnx(trained[0], tmp_path / "m.onnx")
    with pytest.raises(ImportError, match=hint):
        export.export_all(trained[0], "m", tmp_path, onnx=True)
    assert not (tmp_path / "m").exists() or not any((tmp_path / "m").iterdir())
    model_file = tmp_path / "m.keras"
    trained[0].save(model_file)
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["export", str(model_file), "--name", "m", "--base", str(tmp_path), "--onnx"])
    assert exit_info.value.code == 2
    assert '--onnx needs tf2onnx: pip install "keras-residual[onnx]"' in capsys.readouterr().err
    # Running an ONNX file without onnxruntime says the same.
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(ImportError, match=r'pip install "keras-residual\[onnx\]"'):
        onnx_export.ONNXRunner(b"")


# ---- command line -------------------------------------------------------------------------------

@pytest.mark.slow
def test_cli_export_onnx_then_predict(trained, tmp_path, capsys):
    model, x_test, _ = trained
    model_file = tmp_path / "tiny.keras"
    model.save(model_file)
    rc = cli.main(["export", str(model_file), "--name", "tiny", "--base", str(tmp_path / "base"), "--onnx"])
    out = capsys.readouterr().out
    assert rc == 0, out
    onnx_file = tmp_path / "base" / "tiny" / "onnx" / "tiny_1.onnx"
    assert str(onnx_file) in out and "onnx" in out
    report = json.loads((tmp_path / "base" / "tiny" / "export_report.json").read_text())
    assert [(r["format"], r["passed"]) for r in report] == [("saved_model", True), ("onnx", True)]

    image = tmp_path / "band.png"
    Image.fromarray(x_test[0, ..., 0].astype("uint8"), "L").save(image)
    assert cli.main(["predict", str(onnx_file), str(image), "--top-k", "1", "--json"]) == 0
    [result] = json.loads(capsys.readouterr().out)
    expected = int(model.predict(x_test[:1], verbose=0).argmax())
    assert result["predictions"][0]["class_id"] == expected and result["predictions"][0]["class_name"] == str(expected)
