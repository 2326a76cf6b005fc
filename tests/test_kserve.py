"""The export folder as TF Serving (and KServe's TF Serving runtime) reads it, and docs/kserve.md's examples."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import keras
import pytest
import tensorflow as tf

from keras_resnet import export
from keras_resnet.models import ResNet
from keras_resnet.predict import model_versions

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "kserve.md"


def test_tf_serving_versions_parses_names_as_tf_serving_does(tmp_path):
    # safe_strto64: the whole name, spaces allowed around it, a '-' but no '+', 64 bits at most.
    for name in ("1", "007", "7", "12", " 5 ", "-2", "3.failed", ".staging-4-0a1b", "tflite", "+6", "1e3", "0x10",
                 "9" * 20, "v8", "٣"):
        (tmp_path / name).mkdir()
    (tmp_path / "9").write_text("a file is listed like a folder")
    (tmp_path / "export_report.json").write_text("[]")
    versions = export.tf_serving_versions(tmp_path)
    # "007" and "7" are both version 7; the later name in sorted order wins, as in TF Serving.
    assert {v: p.name for v, p in versions.items()} == {-2: "-2", 1: "1", 5: " 5 ", 7: "7", 9: "9", 12: "12"}
    assert list(versions) == sorted(versions)


def test_tf_serving_versions_needs_a_folder(tmp_path):
    (tmp_path / "file").write_text("")
    for path in (tmp_path / "missing", tmp_path / "file"):
        with pytest.raises(ValueError, match=f"received '{path}', which is not a folder"):
            export.tf_serving_versions(path)


def doc_requests() -> list[dict]:
    return [json.loads(block) for block in re.findall(r"```json\n(.*?)```", DOC.read_text(), re.S)]


def tensors_from_instances(body: dict) -> dict[str, tf.Tensor]:
    """TF Serving's row format for one input: instances named or bare, {"b64": ...} as bytes."""
    def value(v):
        return base64.b64decode(v["b64"]) if isinstance(v, dict) and set(v) == {"b64"} else v

    instances = body["instances"]
    if isinstance(instances[0], dict) and set(instances[0]) != {"b64"}:
        names = set(instances[0])
        return {name: tf.constant([value(i[name]) for i in instances]) for name in names}
    return {export.BYTES_INPUT: tf.constant([value(i) for i in instances])}


def test_the_doc_names_the_exported_signature_and_kserve_fields():
    text = DOC.read_text()
    requests = doc_requests()
    assert requests and all(r["signature_name"] == export.BYTES_SIGNATURE for r in requests)
    for r in requests:
        files = tensors_from_instances(r)[export.BYTES_INPUT].numpy()
        assert all(f.startswith(b"\x89PNG") for f in files)
    service = re.search(r"```yaml\n(.*?)```", text, re.S).group(1)
    for line in ("apiVersion: serving.kserve.io/v1beta1", "kind: InferenceService", "predictor:", "model:",
                 "modelFormat:", "name: tensorflow", "runtimeVersion:", "storageUri: gs://BUCKET/saved_models/digits_resnet"):
        assert re.search(rf"^\s*{re.escape(line)}", service, re.M), line
    assert '"signature_name": "serving_bytes"' in text and "/v1/models/digits-resnet:predict" in text
    assert "(docs/kserve.md)" in (ROOT / "README.md").read_text()


@pytest.mark.slow
def test_an_export_folder_holds_only_complete_versions_and_what_tf_serving_skips(tmp_path):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Rescaling(1 / 255),
                              ResNet(depth=8, input_shape=(8, 8, 1), classes=3)], name="tiny")
    assert all(r["passed"] for r in export.export_all(model, "m", tmp_path, tflite=["float32"], latency_runs=1))
    # A second export whose checks fail everything, kept under .failed names.
    impossible = {"saved_model": {"min_agreement": 1.01}, "float32": {"max_abs_diff": -1.0}}
    records = export.export_all(model, "m", tmp_path, tflite=["float32"], thresholds=impossible, keep_failed=True,
                                latency_runs=1)
    assert [(r["passed"], r["kept"]) for r in records] == [(False, True), (False, True)]

    model_dir = tmp_path / "m"
    versions = export.tf_serving_versions(model_dir)
    assert {v: p.name for v, p in versions.items()} == {1: "1"}
    skipped = {p.name for p in model_dir.iterdir()} - {p.name for p in versions.values()}
    assert skipped == {"2.failed", "tflite", "export_report.json"}  # no staging folder is left either
    assert sorted(p.name for p in (model_dir / "tflite").iterdir()) == ["m_1_float32.tflite", "m_2_float32.failed.tflite"]
    assert model_versions(model_dir) == list(versions)  # the local server and predict() agree

    for path in versions.values():  # each a complete SavedModel that answers its warm-up requests
        assert (path / "saved_model.pb").is_file() and (path / "variables" / "variables.index").is_file()
        assert (path / "assets" / "class_names.txt").is_file()
        loaded = tf.saved_model.load(str(path))
        assert set(export.SIGNATURES) <= set(loaded.signatures)
        for request in export.read_warmup_requests(path):
            out = loaded.signatures[request.model_spec.signature_name](
                **{k: tf.constant(tf.make_ndarray(v)) for k, v in request.inputs.items()})
            assert out["probabilities"].shape[-1] == 3
        # docs/kserve.md's requests, as TF Serving hands them to the signature.
        for body in doc_requests():
            out = loaded.signatures[body["signature_name"]](**tensors_from_instances(body))
            assert out["class_id"].shape == (len(body["instances"]),)
