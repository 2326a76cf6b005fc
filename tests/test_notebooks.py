"""The notebooks (the user's guide) run without errors, and are committed clean.

Each notebook is executed with nbclient in a fresh kernel, in a temporary working folder, with
``KERAS_RESNET_SMALL=1`` (tiny settings) in the kernel's environment; any cell error fails the
test. The committed files must carry no outputs and no execution counts, and must match
``notebooks/build_notebooks.py``, their source.
"""

from __future__ import annotations

import importlib.util
import sys
import time
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS_DIR = Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOKS = sorted(NOTEBOOKS_DIR.glob("*.ipynb"))
EXPECTED = ["00_quickstart", "01_residual_blocks", "02_degradation", "03_search", "04_export_and_deploy",
            "05_your_own_images"]
# Notebooks whose small run shows at least one figure (a PNG written by the library).
WITH_FIGURES = {"00_quickstart", "01_residual_blocks", "02_degradation", "03_search", "05_your_own_images"}
SWITCH = 'SMALL = os.environ.get("KERAS_RESNET_SMALL") == "1"'


def _builder():
    spec = importlib.util.spec_from_file_location("build_notebooks", NOTEBOOKS_DIR / "build_notebooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _execute(nb, tmp_path, monkeypatch):
    """Runs ``nb`` in place in a python3 kernel started from this environment; returns seconds."""
    monkeypatch.setenv("KERAS_RESNET_SMALL", "1")
    monkeypatch.setenv("TMPDIR", str(tmp_path))  # the notebooks' temporary folders land here
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "2")
    started = time.perf_counter()
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    return time.perf_counter() - started


def test_every_notebook_is_there():
    assert [p.stem for p in NOTEBOOKS] == EXPECTED


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_committed_clean(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    assert code and SWITCH in code[0].source, f"{path.name}: the first code cell must read the small-settings switch"
    dirty = [cell.id for cell in code if cell.outputs or cell.execution_count is not None]
    assert not dirty, (f"{path.name} is committed with outputs or execution counts in cells {dirty}; "
                       "clear them (python notebooks/build_notebooks.py rewrites the notebooks clean)")


def test_notebooks_match_their_source():
    builder = _builder()
    stale = [name for name in builder.NOTEBOOKS
             if (NOTEBOOKS_DIR / f"{name}.ipynb").read_text(encoding="utf-8") != builder.render(name)]
    assert not stale, f"{stale} differ from notebooks/build_notebooks.py; edit it and run it to rewrite them"


def test_kernel_runs_this_python(tmp_path, monkeypatch):
    """The python3 kernel is this interpreter (jupyter_client swaps "python" for sys.executable)."""
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("import sys; print(sys.executable)")])
    _execute(nb, tmp_path, monkeypatch)
    assert nb.cells[0].outputs[0]["text"].strip() == sys.executable


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs(path, tmp_path, monkeypatch):
    nb = nbformat.read(path, as_version=4)
    seconds = _execute(nb, tmp_path, monkeypatch)  # raises CellExecutionError on a failing cell
    print(f"{path.stem}: {seconds:.0f} s")
    outputs = [out for cell in nb.cells if cell.cell_type == "code" for out in cell.outputs]
    assert not [out for out in outputs if out.output_type == "error"]
    assert "small settings" in "".join(out.get("text", "") for out in outputs)
    if path.stem in WITH_FIGURES:
        assert any("image/png" in out.get("data", {}) for out in outputs), f"{path.stem} showed no figure"
    # Small runs write into temporary folders only, never into the working folder's saved_models/.
    assert not (tmp_path / "saved_models").exists() and not (tmp_path / "runs").exists()
    nbformat.validate(nb)  # the executed notebook is still a valid notebook
