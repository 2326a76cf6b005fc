"""The README's Python examples run as written (docs are executed, so they never rot)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_has_python_examples():
    assert BLOCKS, "README.md has no ```python blocks"


# A block that trains takes more than ~10 s: the slow tier runs it.
@pytest.mark.parametrize(
    "index", [pytest.param(i, marks=pytest.mark.slow) if ".fit(" in block else i for i, block in enumerate(BLOCKS)]
)
def test_readme_python_block_runs(index, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # examples that write files write them here
    # ... and read the committed reference export where the README says it is.
    (tmp_path / "saved_models").symlink_to(README.parent / "saved_models")
    exec(compile(BLOCKS[index], f"README.md python block {index + 1}", "exec"), {"__name__": "__readme__"})
