"""Settings shared by the tests (tests/) and the docstring examples of the package (doctests).

``pytest --backend jax`` (or ``KERAS_BACKEND=jax pytest``) runs the tests marked
``backend_neutral`` on the JAX backend and deselects the others; the default is TensorFlow and
every test. A process has one Keras backend, so the backend is set before any test imports Keras.
"""

import os

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")


def pytest_addoption(parser):
    parser.addoption("--backend", choices=("tensorflow", "jax"), default=None,
                     help="the Keras backend of the run (default: KERAS_BACKEND, else tensorflow); on jax only "
                     "the tests marked backend_neutral run")


def pytest_configure(config):
    backend = config.getoption("--backend")
    if backend:
        os.environ["KERAS_BACKEND"] = backend


def pytest_collection_modifyitems(config, items):
    if os.environ["KERAS_BACKEND"] == "tensorflow":
        return
    kept, dropped = [], []
    for item in items:
        (kept if item.get_closest_marker("backend_neutral") else dropped).append(item)
    config.hook.pytest_deselected(items=dropped)
    items[:] = kept


@pytest.fixture(autouse=True)
def _doctests_run_in_an_empty_folder(request, monkeypatch):
    """Docstring examples write files (runs, plots, tuner folders) into their own empty folder."""
    if isinstance(request.node, pytest.DoctestItem):
        monkeypatch.chdir(request.getfixturevalue("tmp_path"))
