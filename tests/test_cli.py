"""Tests of the `keras-resnet` command line (core commands)."""

from __future__ import annotations

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
    args = parser.parse_args(["summary", "resnet20", "--shortcut", "A", "--version", "v2", "--input-shape", "8", "8", "1"])
    assert cli.model_overrides(args) == {"shortcut": "A", "version": "v2", "input_shape": (8, 8, 1)}
