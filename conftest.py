"""Settings shared by the tests (tests/) and the docstring examples of the package (doctests)."""

import os

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")


@pytest.fixture(autouse=True)
def _doctests_run_in_an_empty_folder(request, monkeypatch):
    """Docstring examples write files (runs, plots, tuner folders) into their own empty folder."""
    if isinstance(request.node, pytest.DoctestItem):
        monkeypatch.chdir(request.getfixturevalue("tmp_path"))
