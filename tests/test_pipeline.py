"""The end-to-end job at small settings: search, train, export, verify (what `make demo` runs)."""

from __future__ import annotations

import json

import pytest

from keras_resnet import cli


@pytest.mark.slow
def test_demo_end_to_end(tmp_path, capsys):
    out, base = tmp_path / "demo", tmp_path / "saved_models"
    code = cli.main(["demo", "--quick", "--out", str(out), "--base", str(base), "--progress", "0"])
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert (out / "trials.json").exists() and (out / "best_model.keras").exists()
    report = json.loads((base / "digits_resnet" / "export_report.json").read_text())
    assert [r["format"] for r in report] == ["saved_model", "float32", "float16", "dynamic", "int8"]
    assert all(r["passed"] for r in report)
    assert (base / "digits_resnet" / "1" / "saved_model.pb").exists()
    for line in ("Search (grid over depth x shortcut type", "Exported and verified", "serve them"):
        assert line in printed
    # A second run resumes the search and the training and exports the next version.
    assert cli.main(["demo", "--quick", "--out", str(out), "--base", str(base), "--progress", "0"]) == 0
    assert (base / "digits_resnet" / "2" / "saved_model.pb").exists()


def test_export_without_a_dataset_cannot_make_int8(tmp_path):
    import pytest

    from keras_resnet.pipeline import export_trained

    with pytest.raises(ValueError, match="int8 export needs a dataset"):
        export_trained(tmp_path / "missing.keras", "x", dataset=None, tflite=("int8",))


def test_tune_and_export_checks_the_export_before_searching(tmp_path):
    import pytest

    from keras_resnet.pipeline import tune_and_export

    out = tmp_path / "search"
    with pytest.raises(ValueError, match=r"received name='bad name'"):
        tune_and_export("digits", out, "bad name", max_epochs=1)
    with pytest.raises(ValueError, match=r"quantization must be one of float32, float16, dynamic, int8; received quantization='int4'"):
        tune_and_export("digits", out, "ok", tflite=("float32", "int4"), max_epochs=1)
    assert not out.exists()  # nothing was searched


@pytest.mark.slow
def test_tune_command_exports_the_best_model(tmp_path, capsys):
    out, base = tmp_path / "search", tmp_path / "saved_models"
    # Six epochs, so that the net is trained enough for int8 to agree with it (a barely trained
    # one has so many near-ties that the export check fails by the seed's luck).
    code = cli.main(["tune", "--out", str(out), "--depths", "8", "--image-size", "8", "--max-epochs", "6",
                     "--tuner", "grid", "--shortcuts", "A", "--block-versions", "v1", "--progress", "0",
                     "--export", "--export-name", "best", "--export-base", str(base)])
    printed = capsys.readouterr().out
    assert code == 0, printed
    report = json.loads((base / "best" / "export_report.json").read_text())
    assert [r["format"] for r in report] == ["saved_model", "float32", "float16", "dynamic", "int8"]
    assert "Exported and verified" in printed and "best configuration retrained" in printed
