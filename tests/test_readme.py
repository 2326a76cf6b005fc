"""The README's Python examples run as written and print what they say they print.

A ``print(...)`` line in a README example ends with ``# -> expected output``; the test runs the
block, captures what it prints and finds those lines in it, in order, with doctest's rules (``...``
matches anything, whitespace differences are ignored; progress bars may come in between). A block that prints without
saying what fails here, so the README never shows output that the code does not produce.
"""

from __future__ import annotations

import contextlib
import doctest
import io
import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
EXPECTED = re.compile(r"#\s*->\s?(.*)$")


def expected_lines(code: str) -> list[str]:
    """The ``# -> ...`` comments of the block's ``print`` lines, in order."""
    lines = [line for line in code.splitlines() if re.match(r"\s*print\(", line)]
    missing = [line.strip() for line in lines if not EXPECTED.search(line)]
    assert not missing, f"README prints without saying what: {missing}"
    return [EXPECTED.search(line).group(1).rstrip() for line in lines]


def test_readme_has_python_examples():
    assert BLOCKS, "README.md has no ```python blocks"
    assert any(expected_lines(block) for block in BLOCKS)


def test_expected_output_comments_are_read():
    code = 'x = 1\nprint(x)  # -> 1\nprint("a  b")  # -> a b\n'
    assert expected_lines(code) == ["1", "a b"]
    with pytest.raises(AssertionError, match="prints without saying what"):
        expected_lines("print(2)\n")


# Blocks that train take tens of seconds: they run in `make test`, not in `make test-fast`.
INDICES = [pytest.param(i, marks=pytest.mark.slow) if re.search(r"\.fit\(|\btrain\(", block) else i
           for i, block in enumerate(BLOCKS)]


@pytest.mark.parametrize("index", INDICES)
def test_readme_python_block_runs_and_prints_what_it_says(index, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # examples that write files write them here
    # ... and read the committed reference export where the README says it is.
    (tmp_path / "saved_models").symlink_to(README.parent / "saved_models")
    code = BLOCKS[index]
    expected = expected_lines(code)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(code, f"README.md python block {index + 1}", "exec"), {"__name__": "__readme__"})
    # Progress bars may come in between: the promised lines must appear in order.
    checker = doctest.OutputChecker()
    flags = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
    got = iter(printed.getvalue().splitlines())
    for want in expected:
        assert any(checker.check_output(want + "\n", line + "\n", flags) for line in got), (
            f"the README says a line {want!r} is printed; it printed:\n{printed.getvalue()[-2000:]}")
