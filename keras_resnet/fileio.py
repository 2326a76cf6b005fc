"""Atomic file writes: a temporary file in the same folder, then a rename.

A crash or a kill mid-write never leaves a half-written file under the final name, so a resumed
run, a server or a reader sees either the old file or the new one.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO


def write_with(path: str | os.PathLike, write: Callable[[IO[bytes]], object]) -> Path:
    """Calls ``write(f)`` on a temporary binary file next to ``path``, then renames it over ``path``.

    Example:
    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "a.txt"
    >>> _ = write_with(p, lambda f: f.write(b"hi"))
    >>> p.read_text()
    'hi'
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp's files are private; results are meant to be read
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def write_bytes(path: str | os.PathLike, content: bytes) -> Path:
    """Writes ``content`` to ``path`` atomically."""
    return write_with(path, lambda f: f.write(content))


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Writes ``text`` (UTF-8) to ``path`` atomically."""
    return write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, data) -> Path:
    """Writes ``data`` as indented JSON, atomically."""
    return write_text(path, json.dumps(data, indent=2, default=str) + "\n")


def write_csv(path: str | os.PathLike, rows: list[dict], columns: list[str] | None = None) -> Path:
    """Writes rows of dicts as CSV (columns: the union of keys, in first-seen order), atomically."""
    columns = columns or list(dict.fromkeys(k for row in rows for k in row))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return write_text(path, buffer.getvalue())


def read_json(path: str | os.PathLike, default=None):
    """Reads JSON, or returns ``default`` when the file does not exist."""
    path = Path(path)
    if not path.exists():
        return default
    return json.loads(path.read_text())


def savefig(fig, path: str | os.PathLike, dpi: int = 120) -> Path:
    """Saves a matplotlib figure atomically, in the format of the file name's suffix."""
    fmt = Path(path).suffix.lstrip(".") or "png"
    return write_with(path, lambda f: fig.savefig(f, format=fmt, dpi=dpi))


def copy(src: str | os.PathLike, dst: str | os.PathLike) -> Path:
    """Copies a file atomically."""
    def write(f):
        with open(src, "rb") as source:
            shutil.copyfileobj(source, f)
    return write_with(dst, write)
