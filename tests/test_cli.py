"""Tests of the `keras-resnet` command line (core commands)."""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
from pathlib import Path

import pytest

from keras_resnet import cli

ENTRY = Path(sys.executable).with_name("keras-resnet")


def run(*args, timeout=180):
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    return subprocess.run([str(ENTRY), *args], capture_output=True, text=True, timeout=timeout, env=env)


def test_help_does_not_import_tensorflow():
    # --help must answer at once: nothing heavy is imported to parse arguments.
    code = (
        "import sys; sys.argv = ['keras-resnet', '--help']\n"
        "from keras_resnet import cli\n"
        "try:\n    cli.main()\nexcept SystemExit:\n    pass\n"
        "heavy = [m for m in ('tensorflow', 'keras', 'keras_tuner', 'matplotlib', 'tensorflow_datasets') if m in sys.modules]\n"
        "print('HEAVY', heavy)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "HEAVY []" in result.stdout, result.stdout + result.stderr
    assert "summary" in result.stdout


@pytest.mark.slow
def test_import_keras_resnet_is_light_whatever_the_script_name():
    # One behaviour in every process: the package imports Keras only when a name that needs it is used.
    code = (
        "import sys; sys.argv = ['some-script']\n"
        "import keras_resnet\n"
        "print('KERAS', 'keras' in sys.modules, 'tensorflow' in sys.modules)\n"
        "keras_resnet.BasicBlock\n"
        "import keras\n"
        "print('REGISTERED', keras.saving.get_registered_object('keras_resnet>BasicBlock') is not None)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "KERAS False False" in result.stdout, result.stdout + result.stderr
    assert "REGISTERED True" in result.stdout, result.stdout + result.stderr


def test_python_dash_m_works_like_the_command():
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    helped = subprocess.run([sys.executable, "-m", "keras_resnet", "--help"], capture_output=True, text=True,
                            timeout=60, env=env)
    assert helped.returncode == 0, helped.stderr
    assert helped.stdout.startswith("usage: keras-resnet") and "presets" in helped.stdout
    listed = subprocess.run([sys.executable, "-m", "keras_resnet", "presets"], capture_output=True, text=True,
                            timeout=60, env=env)
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.split() == run("presets").stdout.split()
    assert "resnet20" in listed.stdout.split()


def test_entry_point_help():
    result = run("--help")
    assert result.returncode == 0
    assert "summary" in result.stdout and "presets" in result.stdout


@pytest.mark.slow
def test_summary_prints_parameters_and_macs_without_tensorflow_noise():
    result = run("summary", "resnet20", "--shortcut", "B", "--input-shape", "32", "32", "3")
    assert result.returncode == 0, result.stderr
    assert "resnet20: 274,042 parameters (272,474 trainable), 40.8M multiply-adds" in result.stdout
    assert "convolutional block" in result.stdout
    assert "oneDNN" not in result.stderr and "cuda" not in result.stderr.lower()


@pytest.mark.parametrize(
    "args,message",
    [
        (["summary", "resnet21"], "unknown model 'resnet21' (did you mean"),
        (["summary", "resnet20", "--depth", "21"], "received depth=21"),
        (["summary", "resnet20", "--shortcut", "Z"], "received shortcut='Z'"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(args, message):
    result = run(*args)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("keras-resnet: error:")


def test_presets_lists_every_name(capsys):
    assert cli.main(["presets"]) == 0
    names = capsys.readouterr().out.split()
    assert "resnet20" in names and "plain56" in names and "resnet152v2" in names


def test_model_overrides_are_resnet_arguments():
    parser = cli.build_parser()
    args = parser.parse_args(["summary", "resnet20", "--shortcut", "A", "--block-version", "v2", "--input-shape", "8", "8", "1"])
    assert cli.model_overrides(args) == {"shortcut": "A", "version": "v2", "input_shape": (8, 8, 1)}


# ---- one flag, one meaning; choices and defaults from the library ---------------------------

def help_of(command: str, capsys) -> str:
    """The help of a subcommand, with its line breaks undone."""
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args([command, "--help"])
    return " ".join(capsys.readouterr().out.split())


def choices(values) -> str:
    return "{" + ",".join(map(str, values)) + "}"


@pytest.mark.parametrize(
    "args",
    [
        ["summary", "resnet20", "--version", "v2"],
        ["diagnose", "resnet20", "--version", "v2"],
        ["train", "--out", "x", "--version", "v2"],
        ["degradation", "--out", "x", "--version", "v2"],
        ["shortcuts", "--out", "x", "--versions", "v1", "v2"],
        ["tune", "--out", "x", "--versions", "v1"],
        ["tune", "--out", "x", "--block-version", "v1"],  # no abbreviation of --block-versions either
        ["export", "m.keras", "--name", "m", "--version", "2"],
        ["serve", "--versions", "latest"],
        ["serve", "--version", "latest"],  # not an abbreviation of --version-policy
    ],
)
def test_retired_version_flags_are_usage_errors(args, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.build_parser().parse_args(args)
    assert exit_info.value.code == 2
    assert "unrecognized arguments" in capsys.readouterr().err


def test_renamed_version_flags_parse():
    parse = cli.build_parser().parse_args
    assert cli.model_overrides(parse(["train", "--out", "x", "--block-version", "v2"])) == {"version": "v2"}
    assert parse(["degradation", "--out", "x", "--block-version", "v2"]).block_version == "v2"
    assert parse(["shortcuts", "--out", "x", "--block-versions", "v1", "v2"]).block_versions == ["v1", "v2"]
    assert parse(["tune", "--out", "x", "--block-versions", "v2"]).block_versions == ["v2"]
    assert parse(["export", "m.keras", "--name", "m", "--export-version", "2"]).export_version == 2
    assert parse(["serve", "--version-policy", "latest"]).version_policy == "latest"
    for args in (["summary", "resnet20", "--block-version", "v3"], ["serve", "--version-policy", "newest"]):
        with pytest.raises(SystemExit):
            parse(args)


def test_program_version_flag_still_prints_the_version(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.build_parser().parse_args(["--version"])
    assert exit_info.value.code == 0
    from keras_resnet import __version__

    assert capsys.readouterr().out.strip() == f"keras-resnet {__version__}"


def test_choices_and_defaults_come_from_the_library(capsys):
    from keras_resnet import defaults, experiments, presets, training
    from keras_resnet.training import TrainConfig

    parse = cli.build_parser().parse_args
    train = parse(["train", "--out", "x"])
    for field in ("momentum", "nesterov", "weight_decay", "schedule", "label_smoothing", "seed", "strategy",
                  "flip", "mixed_precision", "jit_compile", "tensorboard"):
        assert getattr(train, field) == getattr(TrainConfig, field), field
    tune = parse(["tune", "--out", "x"])
    assert (tune.tuner, tune.max_epochs, tune.factor, tune.style) == (
        defaults.TUNERS[0], defaults.SEARCH_EPOCHS, defaults.HYPERBAND_FACTOR, presets.STYLES[0])
    assert (tune.shortcuts, tune.block_versions) == (list(presets.SHORTCUTS), list(presets.VERSIONS))
    serve = parse(["serve"])
    assert (serve.port, serve.version_policy, serve.base) == (
        defaults.DEFAULT_PORT, defaults.VERSION_POLICIES[0], defaults.MODEL_BASE)
    assert parse(["export", "m.keras", "--name", "m"]).calibration_samples == defaults.DEFAULT_CALIBRATION_SAMPLES
    degradation = parse(["degradation", "--out", "x"])
    signature = inspect.signature(experiments.degradation).parameters
    assert degradation.depths == list(signature["depths"].default)
    assert (degradation.shortcut, degradation.block_version) == (signature["shortcut"].default, signature["version"].default)
    assert parse(["shortcuts", "--out", "x"]).shortcuts == list(presets.SHORTCUTS)
    for command, values in (("train", training.SCHEDULES), ("train", training.STRATEGIES), ("train", presets.VERSIONS),
                            ("train", presets.BLOCK_TYPES), ("tune", defaults.TUNERS), ("tune", presets.STYLES),
                            ("serve", defaults.VERSION_POLICIES), ("diagnose", defaults.BN_STATISTICS)):
        assert choices(values) in help_of(command, capsys), (command, values)


def test_help_texts_show_the_library_defaults(capsys):
    from keras_resnet import defaults, experiments, training

    train = help_of("train", capsys)
    assert f"default: {training.DEFAULT_EPOCHS['digits']} for digits, {training.PAPER_EPOCHS} otherwise" in train
    assert f"default min({training.MAX_WARMUP_STEPS}, {100 * training.WARMUP_FRACTION:g}% of training)" in train
    assert f"momentum {training.TrainConfig.momentum:g}" in train and "50% and 75%" in train
    experiment = help_of("degradation", capsys)
    assert (f"default: {experiments.EXPERIMENT_EPOCHS['digits']} for digits, "
            f"{experiments.EXPERIMENT_EPOCHS['cifar10']} for cifar10, {training.PAPER_EPOCHS} otherwise") in experiment
    assert f"default {100 * experiments.EXPERIMENT_WARMUP_FRACTION:g}% of training" in experiment
    assert f"default {defaults.DEFAULT_PORT}" in help_of("serve", capsys)
    assert f"(default {defaults.DEFAULT_CALIBRATION_SAMPLES})" in help_of("export", capsys)
    assert " ".join(defaults.QUANTIZATIONS) in help_of("export", capsys)


def test_library_modules_share_the_tf_free_constants():
    from keras_resnet import defaults, export, litert, pipeline, serving, tuning

    assert serving.DEFAULT_PORT is defaults.DEFAULT_PORT and serving.VERSION_POLICIES is defaults.VERSION_POLICIES
    assert litert.QUANTIZATIONS is export.QUANTIZATIONS is defaults.QUANTIZATIONS
    assert tuning.TUNERS is defaults.TUNERS
    assert not hasattr(pipeline, "TFLITE_FLAVOURS")
