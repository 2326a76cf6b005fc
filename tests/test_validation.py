"""The shared argument checks (keras_resnet.validation) and a table of bad arguments.

Every row of the table calls a public API with one bad argument and expects a ValueError that
names the argument and the value it received, raised before any expensive work: no layer, no
dataset, no tuner, no file and no server. Each API's first piece of real work is replaced by a
function that fails the test if it is reached.
"""

from __future__ import annotations

import math
import re
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from keras_resnet import data, export, litert, serving, tuning, validation
from keras_resnet.blocks import BasicBlock, BottleneckBlock
from keras_resnet.models import ResNet
from keras_resnet.training import TrainConfig
from keras_resnet.tuning import SearchSpace, make_tuner, search
from keras_resnet.validation import (
    check_bool,
    check_choice,
    check_float,
    check_floats,
    check_fraction,
    check_int,
    check_ints,
    check_keras_object,
    check_path,
    check_type,
)

# ---- the helpers ------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [True, False])
def test_check_int_rejects_bools(value):
    with pytest.raises(ValueError, match=re.escape(f"epochs must be an integer >= 1; received epochs={value}")):
        check_int("epochs", value, 1)


def test_check_int_accepts_numpy_integers_and_returns_an_int():
    value = check_int("seed", np.int64(3), 0)
    assert value == 3 and type(value) is int


@pytest.mark.parametrize(
    "value,minimum,maximum,message",
    [
        (0, 1, None, "n must be an integer >= 1; received n=0"),
        (10, None, 9, "n must be an integer <= 9; received n=10"),
        (70000, 0, 65535, "n must be an integer in [0, 65535]; received n=70000"),
        (2.0, None, None, "n must be an integer; received n=2.0"),
        ("3", 1, None, "n must be an integer >= 1; received n='3'"),
    ],
)
def test_check_int_bounds(value, minimum, maximum, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        check_int("n", value, minimum, maximum)


def test_check_int_optional_and_its_message():
    assert check_int("image_size", None, 1, optional=True) is None
    with pytest.raises(ValueError, match=re.escape("image_size must be an integer >= 1 or None (auto); "
                                                   "received image_size=0")):
        check_int("image_size", 0, 1, optional=True, none_means="auto")
    with pytest.raises(ValueError, match=re.escape("received image_size=None")):
        check_int("image_size", None, 1)
    with pytest.raises(ValueError, match=re.escape("classes must be an integer >= 1 when include_top=True")):
        check_int("classes", 0, 1, note="when include_top=True")


def test_check_float_bounds_open_and_closed():
    assert check_float("lr", 1, 0, exclusive_minimum=True) == 1.0
    assert isinstance(check_float("lr", 1, 0, exclusive_minimum=True), float)
    assert check_float("momentum", 0, 0, 1, exclusive_maximum=True) == 0.0
    assert check_float("x", 1.0, 0, 1) == 1.0  # closed bound: 1 is in [0, 1]
    with pytest.raises(ValueError, match=re.escape("lr must be a number > 0; received lr=0")):
        check_float("lr", 0, 0, exclusive_minimum=True)
    with pytest.raises(ValueError, match=re.escape("momentum must be a number in [0, 1); received momentum=1.0")):
        check_float("momentum", 1.0, 0, 1, exclusive_maximum=True)
    with pytest.raises(ValueError, match=re.escape("x must be a number in (0, 1]; received x=0")):
        check_float("x", 0, 0, 1, exclusive_minimum=True)
    with pytest.raises(ValueError, match=re.escape("x must be a number < 5; received x=5")):
        check_float("x", 5, None, 5, exclusive_maximum=True)
    assert check_float("warmup_lr", None, 0, optional=True) is None


@pytest.mark.parametrize("value", [True, math.nan, math.inf, -math.inf, "0.1", None])
def test_check_float_rejects_bools_strings_and_non_finite(value):
    with pytest.raises(ValueError, match=re.escape(f"received lr={value!r}")):
        check_float("lr", value)


def test_check_fraction():
    assert check_fraction("rate", 0) == 0.0
    assert check_fraction("rate", None, optional=True) is None
    for bad in (1, 1.0, -0.01, True, math.nan):
        with pytest.raises(ValueError, match=re.escape(f"rate must be a fraction in [0, 1); received rate={bad!r}")):
            check_fraction("rate", bad)


def test_check_bool():
    assert check_bool("flag", True) is True
    assert check_bool("flag", None, optional=True) is None
    for bad in (1, 0, "yes", np.bool_(True), None):
        with pytest.raises(ValueError, match=re.escape(f"flag must be True or False; received flag={bad!r}")):
            check_bool("flag", bad)
    with pytest.raises(ValueError, match=re.escape("flip must be True, False or None (auto); received flip=1")):
        check_bool("flip", 1, optional=True, none_means="auto")


def test_check_choice():
    assert check_choice("schedule", "step", ("step", "cosine")) == "step"
    with pytest.raises(ValueError, match=re.escape("schedule must be one of step, cosine; received schedule='linear'")):
        check_choice("schedule", "linear", ("step", "cosine"))
    with pytest.raises(ValueError, match=re.escape("pooling must be one of None, 'avg', 'max'; received pooling='sum'")):
        check_choice("pooling", "sum", (None, "avg", "max"))
    with pytest.raises(ValueError, match=re.escape("verbose must be 0, 1 or 2; received verbose=True")):
        check_choice("verbose", True, (0, 1, 2), "0, 1 or 2")  # True == 1, but it is not a level
    with pytest.raises(ValueError, match=re.escape("received style=['cifar']")):
        check_choice("style", ["cifar"], ("cifar", "imagenet"))


def test_check_ints_and_floats():
    assert check_ints("stages", [np.int32(2), 3], 1) == (2, 3)
    assert check_floats("widths", (1, 0.5)) == (1.0, 0.5)
    with pytest.raises(ValueError, match=re.escape("stages must be a sequence of integers >= 1; received stages='22'")):
        check_ints("stages", "22", 1)
    with pytest.raises(ValueError, match=re.escape("stages must hold integers >= 1; received stages=[]")):
        check_ints("stages", [], 1)
    assert check_ints("stages", [], 1, allow_empty=True) == ()
    with pytest.raises(ValueError, match=re.escape("filters must hold 3 integers >= 1 (one per stage); "
                                                   "received filters=(16, 32)")):
        check_ints("filters", (16, 32), 1, length=3, note="(one per stage)")
    with pytest.raises(ValueError, match=re.escape("stages must hold integers >= 1; received True in stages=[2, True]")):
        check_ints("stages", [2, True], 1)
    with pytest.raises(ValueError, match=re.escape("widths must hold numbers > 0; received 0 in widths=[1, 0]")):
        check_floats("widths", [1, 0], 0, exclusive_minimum=True)


def test_check_type_and_path():
    assert check_type("name", None, str, "a string", optional=True) is None
    with pytest.raises(ValueError, match=re.escape("name must be a string or None; received name=3")):
        check_type("name", 3, str, "a string", optional=True)
    with pytest.raises(ValueError, match=re.escape("n must be a number; received n=True")):
        check_type("n", True, int, "a number")
    assert check_path("out", Path("runs")) == Path("runs")
    with pytest.raises(ValueError, match=re.escape("out must be a folder path; received out=''")):
        check_path("out", "", allowed="a folder path")


def test_check_keras_object():
    assert isinstance(check_keras_object("k", "he_normal", "initializer"), keras.initializers.Initializer)
    assert check_keras_object("a", "relu", "activation") is keras.activations.relu
    assert check_keras_object("r", None, "regularizer", optional=True) is None
    for value, kind in (("he_nromal", "initializer"), ("softmaxx", "activation"), ("l3", "regularizer"),
                        ({"class_name": "Nope", "config": {}}, "activation"), (None, "initializer"), (5, "initializer")):
        with pytest.raises(ValueError, match=re.escape(f"must be a Keras {kind}")) as info:
            check_keras_object("arg", value, kind)
        assert str(info.value).endswith(f"received arg={value!r}")
    with pytest.raises(ValueError, match=re.escape("received kind='constraint'")):
        check_keras_object("arg", "x", "constraint")


def test_validation_imports_neither_keras_nor_tensorflow():
    # Loaded as a plain file: the package's __init__ imports Keras on purpose.
    code = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('v', {validation.__file__!r})\n"
        "module = importlib.util.module_from_spec(spec); spec.loader.exec_module(module)\n"
        "module.check_int('n', 3, 1); module.check_choice('s', 'a', ('a',))\n"
        "print(sorted(m for m in ('keras', 'tensorflow') if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_no_private_duplicates_are_left():
    package = Path(validation.__file__).parent
    pattern = re.compile(r"def _(check_positive_int|check_int|int|positive_int|positive|check_range|is_number)\(")
    offenders = [p.name for p in package.glob("*.py") if pattern.search(p.read_text())]
    assert offenders == []


# ---- the table of bad arguments ------------------------------------------------------------------
# (api, call(tmp_path, model), the part of the message that names the value)

def _resnet(**kwargs):
    return lambda tmp, model: ResNet(**kwargs)


def _block(cls, *args, **kwargs):
    return lambda tmp, model: cls(*args, **kwargs)


def _config(**kwargs):
    return lambda tmp, model: TrainConfig(**kwargs).validate()


def _dataset(name="digits", **kwargs):
    return lambda tmp, model: data.load_dataset(name, **kwargs)


def _space(**kwargs):
    return lambda tmp, model: SearchSpace(**kwargs).validate()


def _tuner(kind="hyperband", **kwargs):
    return lambda tmp, model: make_tuner(kind, None, **{"directory": tmp, **kwargs})


def _hypermodel(input_shape=(8, 8, 1), classes=3, **kwargs):
    return lambda tmp, model: tuning.ResNetHyperModel(input_shape, classes, mean=[0.0], std=[1.0], **kwargs)


def _search(**kwargs):
    return lambda tmp, model: search("digits", **{"out": tmp, **kwargs})


def _serve(**kwargs):
    return lambda tmp, model: serving.serve(**{"base": tmp, "port": 0, "block": False, **kwargs})


BAD_ARGUMENTS = [
    # ResNet
    ("resnet", _resnet(stem_filters=-5), "received stem_filters=-5"),
    ("resnet", _resnet(stem_filters=True), "stem_filters must be an integer >= 1 or None"),
    ("resnet", _resnet(bn_momentum=5.0), "bn_momentum must be a number in [0, 1); received bn_momentum=5.0"),
    ("resnet", _resnet(bn_momentum=1.0), "received bn_momentum=1.0"),
    ("resnet", _resnet(bn_epsilon=-1.0), "bn_epsilon must be a number > 0; received bn_epsilon=-1.0"),
    ("resnet", _resnet(bn_epsilon=0), "received bn_epsilon=0"),
    ("resnet", _resnet(kernel_initializer="he_nromal"), "received kernel_initializer='he_nromal'"),
    ("resnet", _resnet(classifier_activation="softmaxx"), "received classifier_activation='softmaxx'"),
    ("resnet", _resnet(width_multiplier=-1), "width_multiplier must be a number > 0; received width_multiplier=-1"),
    ("resnet", _resnet(width_multiplier=True), "received width_multiplier=True"),
    ("resnet", _resnet(drop_path_rate=-0.1), "drop_path_rate must be a fraction in [0, 1); received drop_path_rate=-0.1"),
    ("resnet", _resnet(drop_path_rate="0.1"), "received drop_path_rate='0.1'"),
    ("resnet", _resnet(classes=2.0), "received classes=2.0"),
    ("resnet", _resnet(classes=True), "received classes=True"),
    ("resnet", _resnet(input_shape=32), "received input_shape=32"),
    ("resnet", _resnet(input_shape=(32, 32, 0)), "received input_shape=(32, 32, 0)"),
    ("resnet", _resnet(include_top=False, pooling="sum"), "received pooling='sum'"),
    ("resnet", _resnet(include_top="yes"), "include_top must be True or False; received include_top='yes'"),
    ("resnet", _resnet(weight_decay=-1e-4), "weight_decay must be a number >= 0; received weight_decay=-0.0001"),
    ("resnet", _resnet(zero_init_residual=1), "received zero_init_residual=1"),
    ("resnet", _resnet(use_bias="no"), "received use_bias='no'"),
    ("resnet", _resnet(stride_in_1x1=None), "received stride_in_1x1=None"),
    ("resnet", _resnet(depth=20.0), "depth must be an integer; received depth=20.0"),
    ("resnet", _resnet(stage_filters=(16, 32, -64)), "received -64 in stage_filters=(16, 32, -64)"),
    ("resnet", _resnet(name=5), "name must be a string or None; received name=5"),
    ("resnet", _resnet(style="mobile"), "received style='mobile'"),
    # the blocks
    ("block", _block(BasicBlock, 2.5), "filters must be an integer >= 1; received filters=2.5"),
    ("block", _block(BasicBlock, 4, strides=True), "received strides=True"),
    ("block", _block(BasicBlock, 4, bn_momentum=-0.1), "received bn_momentum=-0.1"),
    ("block", _block(BasicBlock, 4, bn_epsilon=0.0), "received bn_epsilon=0.0"),
    ("block", _block(BasicBlock, 4, kernel_initializer="nope"), "received kernel_initializer='nope'"),
    ("block", _block(BasicBlock, 4, kernel_regularizer="l3"), "received kernel_regularizer='l3'"),
    ("block", _block(BasicBlock, 4, preact="yes"), "received preact='yes'"),
    ("block", _block(BasicBlock, 4, zero_init=None), "received zero_init=None"),
    ("block", _block(BasicBlock, 4, drop_path_rate=math.nan), "received drop_path_rate=nan"),
    ("block", _block(BottleneckBlock, 4, stride_in_1x1="yes"), "received stride_in_1x1='yes'"),
    ("block", _block(BottleneckBlock, 4, use_bias=0), "received use_bias=0"),
    # TrainConfig
    ("config", _config(epochs=True), "epochs must be an integer >= 1; received epochs=True"),
    ("config", _config(batch_size=-1), "received batch_size=-1"),
    ("config", _config(lr=math.inf), "lr must be a number > 0; received lr=inf"),
    ("config", _config(warmup_lr=0), "received warmup_lr=0"),
    ("config", _config(momentum=-0.1), "received momentum=-0.1"),
    ("config", _config(nesterov="no"), "nesterov must be True or False; received nesterov='no'"),
    ("config", _config(label_smoothing=1.5), "received label_smoothing=1.5"),
    ("config", _config(image_size=0), "received image_size=0"),
    ("config", _config(validation_split=1.0), "received validation_split=1.0"),
    ("config", _config(seed=-1), "seed must be an integer >= 0; received seed=-1"),
    ("config", _config(cache=5), "received cache=5"),
    ("config", _config(steps_per_execution=0), "received steps_per_execution=0"),
    ("config", _config(tensorboard=None), "received tensorboard=None"),
    ("config", _config(jit_compile="auto"), "received jit_compile='auto'"),
    ("config", _config(milestones=0.5), "received milestones=0.5"),
    ("config", _config(data_dir=3), "received data_dir=3"),
    # load_dataset
    ("data", _dataset(batch_size=0), "batch_size must be an integer >= 1; received batch_size=0"),
    ("data", _dataset(seed=1.5), "received seed=1.5"),
    ("data", _dataset(image_size=True), "received image_size=True"),
    ("data", _dataset(pad=-1), "received pad=-1"),
    ("data", _dataset(validation_split=-0.1), "received validation_split=-0.1"),
    ("data", _dataset(augment="yes"), "augment must be True or False; received augment='yes'"),
    ("data", _dataset(flip=1), "received flip=1"),
    ("data", _dataset(cache=3.0), "received cache=3.0"),
    ("data", _dataset(shuffle_buffer=0), "received shuffle_buffer=0"),
    ("data", _dataset(5), "received dataset=5"),
    ("data", _dataset(data_dir=5), "received data_dir=5"),
    ("data", _dataset(augmentation="autumn"), "augmentation must be one of cifar, imagenet, none, or None (by image size); received augmentation='autumn'"),
    ("data", _dataset(bad_files="ignore"), "bad_files must be one of error, skip; received bad_files='ignore'"),
    ("data", _dataset(stats=([1.0], [0.0])), "stats needs per-channel means and positive stds"),
    # SearchSpace, make_tuner, search
    ("space", _space(style="mobile"), "received style='mobile'"),
    ("space", _space(width_multipliers=[1.0, 0]), "received 0 in width_multipliers=[1.0, 0]"),
    ("space", _space(batch_sizes=[True]), "received True in batch_sizes=[True]"),
    ("space", _space(zero_init="yes"), "received zero_init='yes'"),
    ("space", _space(weight_decay=(1e-5, True)), "received weight_decay=(1e-05, True)"),
    ("space", _space(depths="20"), "received depths='20'"),
    ("tuner", _tuner("annealing"), "received tuner='annealing'"),
    ("tuner", _tuner(max_epochs=0), "max_epochs must be an integer >= 1; received max_epochs=0"),
    ("tuner", _tuner(factor=1), "factor must be an integer >= 2; received factor=1"),
    ("tuner", _tuner(max_trials=0), "received max_trials=0"),
    ("tuner", _tuner(seed=-1), "received seed=-1"),
    ("tuner", _tuner(overwrite="yes"), "received overwrite='yes'"),
    ("tuner", _tuner(directory=None), "received directory=None"),
    ("tuner", _tuner(objective=5), "received objective=5"),
    ("hypermodel", _hypermodel((8, 8)), "input_shape must hold 3 integers >= 1 (height, width, channels); "
                                       "received input_shape=(8, 8)"),
    ("hypermodel", _hypermodel(classes=0), "received classes=0"),
    ("hypermodel", _hypermodel(steps_per_epoch=1.5), "received steps_per_epoch=1.5"),
    ("search", _search(max_trials=0), "received max_trials=0"),
    ("search", _search(retrain="no"), "received retrain='no'"),
    ("search", _search(retrain_epochs=0), "received retrain_epochs=0"),
    ("search", _search(distribution="tpu"), "received distribution='tpu'"),
    ("search", _search(verbose=3), "verbose must be 0, 1 or 2; received verbose=3"),
    ("search", _search(space={"depths": [20]}), "received space={'depths': [20]}"),
    ("search", _search(config={}), "received config={}"),
    ("search", _search(seed=-1), "received seed=-1"),
    ("search", _search(out=None), "received out=None"),
    # the exporter
    ("export", lambda t, m: export.export_tflite(None, t / "a.tflite", "int4"), "received quantization='int4'"),
    ("export", lambda t, m: export.export_tflite(None, t / "a.tflite", int8_io="int16"), "received int8_io='int16'"),
    ("export", lambda t, m: export.export_tflite(None, t / "a.tflite", calibration_samples=0),
     "received calibration_samples=0"),
    ("export", lambda t, m: export.export_saved_model(m, t, "m", top_k=0), "received top_k=0"),
    ("export", lambda t, m: export.export_saved_model(m, t, "m", version=True), "received version=True"),
    ("export", lambda t, m: export.export_saved_model(m, t, "m", warmup="yes"), "received warmup='yes'"),
    ("export", lambda t, m: export.export_all(m, "m", t, latency_runs=0), "received latency_runs=0"),
    ("export", lambda t, m: export.export_all(m, "m", t, num_threads=0), "received num_threads=0"),
    ("export", lambda t, m: export.export_all(m, "m", t, keep_failed=1), "received keep_failed=1"),
    ("export", lambda t, m: export.export_all(m, "m", t, tflite="int8"), "received tflite='int8'"),
    ("export", lambda t, m: export.export_all(m, "m", t, calibration_samples=-1), "received calibration_samples=-1"),
    ("export", lambda t, m: export.export_all(m, "m", t, version=0), "received version=0"),
    ("export", lambda t, m: export.export_all(m, "m", t, thresholds={"int8": {"min_agreement": "high"}}),
     "received thresholds['int8']['min_agreement']='high'"),
    ("export", lambda t, m: litert.TFLiteRunner(t / "a.tflite", num_threads=0), "received num_threads=0"),
    # the server
    ("serve", _serve(port=-1), "port must be an integer in [0, 65535]; received port=-1"),
    ("serve", _serve(port=True), "received port=True"),
    ("serve", _serve(host=5), "received host=5"),
    ("serve", _serve(max_body_bytes=1.5), "received max_body_bytes=1.5"),
    ("serve", _serve(version_policy="newest"), "received version_policy='newest'"),
    ("serve", _serve(block="no"), "received block='no'"),
    ("serve", _serve(workers=0), "workers must be an integer in [1, 1024]; received workers=0"),
    ("serve", _serve(idle_connection_timeout=0), "received idle_connection_timeout=0"),
    ("serve", _serve(body_timeout=float("inf")), "received body_timeout=inf"),
    ("serve", _serve(batching="yes"), "received batching='yes'"),
    ("serve", _serve(max_batch_size=0), "received max_batch_size=0"),
    ("serve", _serve(batch_timeout_micros=-1), "received batch_timeout_micros=-1"),
    ("serve", lambda t, m: serving.ModelRepository(None), "received base=None"),
    ("serve", lambda t, m: serving.ModelRepository(t, version_policy="oldest"), "received version_policy='oldest'"),
]


def _forbidden(*args, **kwargs):
    raise AssertionError("expensive work started before the arguments were checked")


# What each API would do first once its arguments passed; reaching it fails the test.
FIRST_WORK = {
    "resnet": [(keras, "Input")],
    "block": [(keras.layers.Layer, "__init__")],
    "config": [],
    "data": [(data, "_digits"), (data, "_tfds"), (data, "_load_folder")],
    "space": [],
    "tuner": [(tuning, "_tuner_classes")],
    "hypermodel": [(SearchSpace, "validate")],
    "search": [(data, "check_dataset"), (data, "load_dataset")],
    "export": [(export, "_check_probabilities"), (export, "_stage_saved_model"), (litert, "Interpreter")],
    "serve": [(serving.ServedVersion, "load"), (serving.ModelServer, "__init__")],
}


@pytest.fixture(scope="module")
def classifier():
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.GlobalAveragePooling2D()(inputs)
    return keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(x), name="tiny")


def test_the_table_covers_every_api():
    assert len(BAD_ARGUMENTS) >= 40
    assert {api for api, _, _ in BAD_ARGUMENTS} == set(FIRST_WORK)


@pytest.mark.parametrize("api,call,fragment", BAD_ARGUMENTS,
                         ids=[f"{api}-{fragment.rsplit('received ', 1)[-1][:40]}" for api, _, fragment in BAD_ARGUMENTS])
def test_bad_argument_fails_fast_and_names_the_value(api, call, fragment, classifier, tmp_path, monkeypatch):
    for owner, attribute in FIRST_WORK[api]:
        monkeypatch.setattr(owner, attribute, _forbidden)
    with pytest.raises(ValueError, match=re.escape(fragment)):
        call(tmp_path, classifier)
    assert not any(tmp_path.iterdir()), "nothing may be written"


def _one_model_folder(tmp):
    (tmp / "m" / "1").mkdir(parents=True)
    (tmp / "m" / "1" / "saved_model.pb").write_bytes(b"")
    return tmp


GOOD_CALLS = {
    "resnet": lambda t, m: ResNet(),
    "block": lambda t, m: BasicBlock(4),
    "data": lambda t, m: data.load_dataset("digits"),
    "tuner": lambda t, m: make_tuner("hyperband", None, directory=t),
    "hypermodel": _hypermodel(),
    "search": lambda t, m: search("digits", out=t),
    "export": lambda t, m: export.export_saved_model(m, t, "m"),
    "serve": lambda t, m: serving.serve(_one_model_folder(t), port=0, block=False),
}


@pytest.mark.parametrize("api", sorted(GOOD_CALLS))
def test_the_guards_catch_real_work(api, classifier, tmp_path, monkeypatch):
    # With good arguments the same calls reach the guarded work: the table's guards are live.
    for owner, attribute in FIRST_WORK[api]:
        monkeypatch.setattr(owner, attribute, _forbidden)
    with pytest.raises(AssertionError, match="expensive work started"):
        GOOD_CALLS[api](tmp_path, classifier)
