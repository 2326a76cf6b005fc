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
