"""Tests of keras_resnet.experiments and the `degradation`, `shortcuts` and `very-deep` commands."""

from __future__ import annotations

import csv
import inspect
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
from matplotlib.image import imread

from keras_resnet import cli, experiments
from keras_resnet.training import TrainConfig

# ResNet-8 twins on 8x8 digits, 2 epochs of 6 batches: the real code paths in seconds. The tests
# that train them are backend_neutral: the experiments run on JAX as well (pytest --backend jax).
TINY = dict(depths=(8,), seeds=(0,), epochs=2, config=TrainConfig(batch_size=256), verbose=0)
RECORD_KEYS = {"run", "model", "depth", "block", "shortcut", "version", "seed", "epochs", "params", "train_error",
               "test_error", "seconds", "epoch_train_error", "epoch_loss"}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("degradation")
    return out, experiments.degradation(out=out, **TINY)


def mtimes(out):
    return {p.relative_to(out): p.stat().st_mtime_ns for p in sorted((out / "runs").rglob("*")) if p.is_file()}


def png_shape(path):
    return imread(path).shape


# ---- degradation ----------------------------------------------------------------------------

@pytest.mark.backend_neutral
def test_records_pair_each_depth_as_plain_and_resnet(tiny):
    _, records = tiny
    assert [(r["run"], r["model"], r["shortcut"]) for r in records] == [
        ("none-8-s0", "plain8", "none"), ("identity-8-s0", "resnet8", "identity")]
    for r in records:
        assert set(r) == RECORD_KEYS
        assert (r["depth"], r["block"], r["seed"], r["epochs"], r["version"]) == (8, "basic", 0, 2, "v1")
        assert len(r["epoch_train_error"]) == len(r["epoch_loss"]) == 2
        assert 0 <= r["train_error"] <= 1 and 0 <= r["test_error"] <= 1
    # Option A shortcuts have no weights: the twins have exactly the same parameters.
    assert records[0]["params"] == records[1]["params"] > 0


@pytest.mark.backend_neutral
def test_results_files_hold_the_records(tiny):
    out, records = tiny
    results = json.loads((out / "results.json").read_text())
    assert results["records"] == records
    assert results["settings"]["config"]["image_size"] == 8
    assert results["settings"]["config"]["augment"] is False  # digits' default
    assert [(s["shortcut"], s["depth"], s["seeds"]) for s in results["summary"]] == [("none", 8, 1), ("identity", 8, 1)]
    with open(out / "results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [row["run"] for row in rows] == ["none-8-s0", "identity-8-s0"]
    assert float(rows[1]["train_error"]) == pytest.approx(records[1]["train_error"])
    for name in ("degradation.png", "responses.png"):
        height, width, _ = png_shape(out / name)
        assert width > height > 100


@pytest.mark.backend_neutral
def test_train_error_is_the_final_model_in_inference_mode_on_the_whole_training_split(tiny):
    import keras

    from keras_resnet.data import load_dataset

    out, records = tiny
    data = load_dataset("digits", image_size=8, validation_split=0.0, augment=False, batch_size=2000)
    x, y = (t.numpy() for t in next(iter(data.train)))
    assert len(x) == 1437
    for record in records:
        run = out / "runs" / record["run"]
        metrics = json.loads((run / "metrics.json").read_text())
        assert metrics["best_epoch"] == metrics["epochs"] == 2  # the last epoch's weights
        model = keras.saving.load_model(run / "model.keras")
        error = float(np.mean(np.argmax(model.predict(x, verbose=0), axis=1) != y))
        assert record["train_error"] == pytest.approx(error, abs=1e-6)


@pytest.mark.backend_neutral
def test_responses_measure_every_block_of_every_run(tiny):
    out, records = tiny
    responses = json.loads((out / "responses.json").read_text())
    assert responses["mode"] == "inference" and responses["images"] == 360
    assert [r["run"] for r in responses["runs"]] == [r["run"] for r in records]
    for row in responses["runs"]:
        assert [b["depth_index"] for b in row["blocks"]] == [1, 2, 3]
        assert all(b["response_std"] > 0 and b["residual_ratio"] > 0 for b in row["blocks"])


@pytest.mark.backend_neutral
def test_a_second_call_reads_finished_runs_back(tiny, capsys):
    out, records = tiny
    before = mtimes(out)
    again = experiments.degradation(out=out, **{**TINY, "verbose": 1})
    assert again == records
    assert mtimes(out) == before
    assert capsys.readouterr().out.count("finished earlier, read back") == 2


@pytest.mark.backend_neutral
def test_a_run_trained_but_not_evaluated_is_evaluated_not_retrained(tiny, tmp_path):
    out, records = tiny
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    record_file = copy / "runs" / "identity-8-s0" / experiments.RECORD_FILE
    saved = json.loads(record_file.read_text())
    record_file.write_text(json.dumps({"settings": saved["settings"]}))  # as a crash before evaluation leaves it
    metrics = copy / "runs" / "identity-8-s0" / "metrics.json"
    stamp = metrics.stat().st_mtime_ns
    again = experiments.degradation(out=copy, **{**TINY, "responses": False})
    assert metrics.stat().st_mtime_ns == stamp
    assert again[1]["train_error"] == pytest.approx(records[1]["train_error"])
    assert again[1]["epoch_train_error"] == pytest.approx(records[1]["epoch_train_error"])


def test_other_settings_in_the_same_folder_are_refused(tiny):
    out, _ = tiny
    with pytest.raises(ValueError, match="holds a run with other settings"):
        experiments.degradation(out=out, **{**TINY, "epochs": 3})


# ---- arguments --------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "changes, message",
    [
        (dict(depths=(21,)), r"depth must be 6n\+2 .* received depth=21"),
        (dict(depths=()), r"depths must not be empty"),
        (dict(depths=(20, 20)), r"depths must not repeat a value"),
        (dict(depths=20), r"depths must be a non-empty sequence; received depths=20"),
        (dict(seeds=(-1,)), r"seed must be an integer >= 0; received seed=-1"),
        (dict(epochs=0), r"epochs must be an integer >= 1; received epochs=0"),
        (dict(shortcut="D"), r"received shortcut='D'"),
        (dict(shortcut="none"), r"cannot be 'none'"),
        (dict(version="v3"), r"received version='v3'"),
        (dict(dataset="digitz"), r"unknown dataset 'digitz'"),
        (dict(width_multiplier=0), r"width_multiplier must be a number > 0"),
        (dict(config=TrainConfig(validation_split=0.1)), r"validation_split=0.1"),
        (dict(config={"epochs": 2}), r"config must be a keras_resnet.training.TrainConfig"),
        (dict(augment="yes"), r"received augment='yes'"),
        (dict(verbose=3), r"verbose must be 0, 1 or 2"),
        (dict(responses=None), r"responses must be True or False"),
    ],
)
def test_bad_arguments_raise_before_anything_is_written(tmp_path, changes, message):
    out = tmp_path / "never"
    with pytest.raises(ValueError, match=message):
        experiments.degradation(out=out, **changes)
    assert not out.exists()


def test_compare_shortcuts_validates_its_lists(tmp_path):
    with pytest.raises(ValueError, match=r"received shortcut='E'"):
        experiments.compare_shortcuts(shortcuts=("A", "E"), out=tmp_path)
    with pytest.raises(ValueError, match=r"versions must not be empty"):
        experiments.compare_shortcuts(versions=(), out=tmp_path)
    with pytest.raises(ValueError, match=r"received depth=33"):
        experiments.compare_shortcuts(depth=33, out=tmp_path)


def test_dry_run_plans_the_runs_without_training(tmp_path):
    planned = experiments.degradation(depths=(20, 56), seeds=(0, 1), out=tmp_path / "d", dry_run=True)
    assert [p["run"] for p in planned[:4]] == ["none-20-s0", "identity-20-s0", "none-56-s0", "identity-56-s0"]
    assert len(planned) == 8 and {p["epochs"] for p in planned} == {20}
    planned = experiments.compare_shortcuts(depth=110, shortcuts=("A", "none"), versions=("v1", "v2"),
                                            out=tmp_path / "s", dry_run=True)
    # The plain net has no version of its own: it is trained once.
    assert [p["run"] for p in planned] == ["identity-110-s0", "identity-v2-110-s0", "none-110-s0"]
    assert not (tmp_path / "d").exists() and not (tmp_path / "s").exists()


def test_residual_responses_needs_results(tmp_path):
    with pytest.raises(ValueError, match="holds no results.json"):
        experiments.residual_responses(tmp_path)


# ---- summaries and figures --------------------------------------------------------------------

def fake_records(seeds=(0, 1, 2)):
    rng = np.random.default_rng(0)
    records = []
    for seed in seeds:
        for shortcut in ("none", "identity"):
            for depth in (20, 56):
                curve = list(np.linspace(0.9, 0.05 + 0.2 * (shortcut == "none") * (depth == 56), 5) + rng.uniform(0, 0.02, 5))
                records.append({"run": f"{shortcut}-{depth}-s{seed}", "depth": depth, "shortcut": shortcut, "version": "v1",
                                "seed": seed, "train_error": curve[-1] - 0.01, "test_error": curve[-1] + 0.02,
                                "epoch_train_error": curve, "epoch_loss": [2.3 * e for e in curve]})
    return records


def test_summarize_takes_mean_min_and_max_over_seeds():
    records = [{"shortcut": "none", "version": "v1", "depth": 56, "seed": s, "train_error": e, "test_error": 1 - e}
               for s, e in ((0, 0.1), (1, 0.4), (2, 0.25))]
    (row,) = experiments.summarize(records)
    assert row["seeds"] == 3
    assert (row["train_error_mean"], row["train_error_min"], row["train_error_max"]) == pytest.approx((0.25, 0.1, 0.4))
    assert row["test_error_max"] == pytest.approx(0.9)


def test_plot_functions_write_pngs(tmp_path):
    records = fake_records()
    experiments.plot_degradation(records, tmp_path / "d.png")
    experiments.plot_shortcuts(records, tmp_path / "s.png")
    blocks = [{"depth_index": i, "response_std": 1.0 / i, "residual_ratio": 0.5 / i} for i in range(1, 4)]
    rows = [{"depth": d, "shortcut": s, "version": "v1", "blocks": blocks} for d in (8, 14) for s in ("none", "identity")]
    experiments.plot_responses(rows, tmp_path / "r.png")
    experiments.plot_training_curves(records, tmp_path / "c.png")
    for name in ("d.png", "s.png", "r.png", "c.png"):
        height, width, channels = png_shape(tmp_path / name)
        assert width > height > 200 and channels in (3, 4)
    # Two panels for degradation: plain and ResNet.
    assert png_shape(tmp_path / "d.png")[1] > 1.8 * png_shape(tmp_path / "d.png")[0]
    with pytest.raises(ValueError, match="records must be a non-empty list"):
        experiments.plot_degradation([], tmp_path / "none.png")
    with pytest.raises(ValueError, match="epoch_train_error"):
        experiments.plot_degradation([{"depth": 20}], tmp_path / "none.png")
    with pytest.raises(ValueError, match="epoch_loss"):
        experiments.plot_training_curves([{k: v for k, v in records[0].items() if k != "epoch_loss"}], tmp_path / "none.png")


# ---- very deep nets: bottleneck blocks, v2 against v1, a plain net -------------------------------

# ResNet-11 (one bottleneck block per stage) v2 and v1 at a quarter width, and plain-8: 1 epoch each.
TINY_DEEP = dict(depth=11, plain_depth=8, seeds=(0,), epochs=1, width_multiplier=0.25,
                 config=TrainConfig(batch_size=256), verbose=0)


@pytest.fixture(scope="module")
def tiny_deep(tmp_path_factory):
    out = tmp_path_factory.mktemp("very_deep")
    return out, experiments.very_deep(out=out, **TINY_DEEP)


def test_very_deep_plans_v2_then_v1_at_depth_then_the_plain_net(tmp_path):
    planned = experiments.very_deep(out=tmp_path / "v", dry_run=True)
    assert [(p["run"], p["block"]) for p in planned] == [
        ("identity-v2-1001-s0", "bottleneck"), ("identity-1001-s0", "bottleneck"), ("none-110-s0", "basic")]
    assert {p["epochs"] for p in planned} == {experiments.EXPERIMENT_EPOCHS["digits"]}
    planned = experiments.very_deep(depth=164, plain_depth=None, shortcut="B", seeds=(0, 1), epochs=3,
                                    block="bottleneck", out=tmp_path / "v", dry_run=True)
    assert [p["run"] for p in planned] == ["projection-v2-bottleneck-164-s0", "projection-bottleneck-164-s0",
                                           "projection-v2-bottleneck-164-s1", "projection-bottleneck-164-s1"]
    # A block that is not the depth's default is named in the run, so the folders cannot mix.
    planned = experiments.very_deep(plain_depth=110, block="bottleneck", out=tmp_path / "v", dry_run=True)
    assert [p["run"] for p in planned][-1] == "none-bottleneck-110-s0"
    planned = experiments.compare_shortcuts(depth=20, shortcuts=("A",), block="bottleneck", out=tmp_path / "s",
                                            dry_run=True)
    assert [(p["run"], p["block"]) for p in planned] == [("identity-bottleneck-20-s0", "bottleneck")]
    assert [p["block"] for p in experiments.degradation(depths=(29, 164), out=tmp_path / "d", dry_run=True)] == [
        "bottleneck", "bottleneck", "basic", "basic"]
    assert not any((tmp_path / name).exists() for name in ("v", "s", "d"))


@pytest.mark.parametrize(
    "changes, message",
    [
        (dict(depth=1000), r"depth must be 6n\+2 \(basic blocks.* or 9n\+2 \(bottleneck.*received depth=1000"),
        (dict(depth="1001"), r"depth must be an integer; received depth='1001'"),
        (dict(plain_depth=21), r"received depth=21"),
        (dict(block="wide"), r"block must be 'basic', 'bottleneck' or None .*received block='wide'"),
        (dict(block="basic"), r"with basic blocks .*received depth=1001; depth 1001 is 9n\+2: pass block='bottleneck'"),
        (dict(shortcut="none"), r"cannot be 'none'; set plain_depth"),
        (dict(shortcut="D"), r"received shortcut='D'"),
        (dict(width_multiplier=-1), r"width_multiplier must be a number > 0"),
        (dict(seeds=(0, 0)), r"seeds must not repeat a value"),
        (dict(epochs=0), r"received epochs=0"),
    ],
)
def test_very_deep_bad_arguments_raise_before_anything_is_written(tmp_path, changes, message):
    out = tmp_path / "never"
    with pytest.raises(ValueError, match=message):
        experiments.very_deep(out=out, **changes)
    assert not out.exists()


@pytest.mark.slow  # trains three tiny nets: about 16 s of CPU
def test_very_deep_trains_writes_results_and_plot(tiny_deep):
    out, records = tiny_deep
    assert [(r["run"], r["model"], r["block"], r["version"]) for r in records] == [
        ("identity-v2-11-s0", "resnet11v2", "bottleneck", "v2"), ("identity-11-s0", "resnet11", "bottleneck", "v1"),
        ("none-8-s0", "plain8", "basic", "v1")]
    for r in records:
        assert set(r) == RECORD_KEYS and len(r["epoch_loss"]) == 1 and 0 <= r["train_error"] <= 1
    results = json.loads((out / "results.json").read_text())
    assert results["settings"]["experiment"] == "very_deep" and results["records"] == records
    assert results["settings"]["width_multiplier"] == 0.25
    settings = json.loads((out / "runs" / "identity-v2-11-s0" / experiments.RECORD_FILE).read_text())["settings"]
    assert settings["block"] == "bottleneck"
    with open(out / "results.csv", newline="") as f:
        assert [(row["run"], row["block"]) for row in csv.DictReader(f)] == [
            (r["run"], r["block"]) for r in records]
    height, width, _ = png_shape(out / "very_deep.png")
    assert width > 2 * height > 200  # two panels: error and loss


@pytest.mark.slow  # trains three tiny nets: about 16 s of CPU
def test_very_deep_resumes_and_its_command_reads_the_runs_back(tiny_deep, capsys):
    out, records = tiny_deep
    before = mtimes(out)
    args = ["very-deep", "--depth", "11", "--plain-depth", "8", "--width-multiplier", "0.25", "--epochs", "1",
            "--batch-size", "256", "--out", str(out), "--progress", "0"]
    assert cli.main(args) == 0
    printed = capsys.readouterr().out
    assert "resnet11v2" in printed and "plain8" in printed and "very_deep.png" in printed
    assert f"{100 * records[2]['train_error']:.4g}" in printed
    assert mtimes(out) == before


def test_very_deep_command_plans_and_refuses_bad_values(tmp_path, capsys):
    parsed = cli.build_parser().parse_args(["very-deep", "--out", "x"])
    signature = inspect.signature(experiments.very_deep).parameters
    assert (parsed.depth, parsed.plain_depth, parsed.shortcut, parsed.block) == (
        signature["depth"].default, signature["plain_depth"].default, signature["shortcut"].default, None)
    out = tmp_path / "never"
    assert cli.main(["very-deep", "--out", str(out), "--plain-depth", "0", "--dry-run"]) == 0
    printed = capsys.readouterr().out
    assert "identity-v2-1001-s0" in printed and "identity-1001-s0" in printed and "none-" not in printed
    for args, message in ((["--depth", "1000"], "received depth=1000"), (["--block", "basic"], "pass block='bottleneck'"),
                          (["--shortcut", "none"], "cannot be 'none'")):
        with pytest.raises(SystemExit) as exit_info:
            cli.main(["very-deep", "--out", str(out), *args])
        assert exit_info.value.code == 2
        assert message in capsys.readouterr().err
    assert not out.exists()


# ---- the command line -------------------------------------------------------------------------

def test_degradation_command_reads_back_a_finished_experiment(tiny, capsys):
    out, records = tiny
    before = mtimes(out)
    args = ["degradation", "--depths", "8", "--epochs", "2", "--batch-size", "256", "--out", str(out), "--progress", "0"]
    assert cli.main(args) == 0
    printed = capsys.readouterr().out
    assert "plain8" in printed and "resnet8" in printed and "degradation.png" in printed
    assert f"{100 * records[0]['train_error']:.4g}" in printed
    assert mtimes(out) == before


@pytest.mark.slow
def test_shortcuts_command_end_to_end(tmp_path, capsys):
    out = tmp_path / "shortcuts"
    args = ["shortcuts", "--depth", "8", "--shortcuts", "B", "none", "--epochs", "1", "--batch-size", "256",
            "--out", str(out), "--progress", "0"]
    assert cli.main(args) == 0
    printed = capsys.readouterr().out
    assert "projection-8-s0" in printed and "none-8-s0" in printed
    records = json.loads((out / "results.json").read_text())["records"]
    assert [r["shortcut"] for r in records] == ["projection", "none"]
    assert records[0]["params"] > records[1]["params"]  # option B's 1x1 projections
    assert png_shape(out / "shortcuts.png")[0] > 100


def test_bad_command_line_values_fail_fast_without_tensorflow(tmp_path):
    code = (
        "import sys\n"
        "from keras_resnet import cli\n"
        f"rc = cli.main(['degradation', '--depths', '20', '21', '--out', {str(tmp_path / 'x')!r}])\n"
    )
    check = "print('TF', 'tensorflow' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", f"try:\n    exec({code!r})\nexcept SystemExit as e:\n"
                             f"    print('EXIT', e.code); {check}"], capture_output=True, text=True, timeout=60)
    assert "EXIT 2" in result.stdout and "TF False" in result.stdout, result.stdout + result.stderr
    assert "received depth=21" in result.stderr
    assert not (tmp_path / "x").exists()
