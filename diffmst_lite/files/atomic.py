"""The one atomic file writer: audio, mixing sheets, JSON, checkpoints and logs (docs/design.md §2).

A file the package writes is first written to a temporary file in the same folder
and then renamed onto its name (``os.replace`` is atomic within one file system), so
a crash or Ctrl-C never leaves half a file: a resumed run finds either the old
checkpoint or the new one. This module imports nothing but the standard library.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


@contextmanager
def atomic_path(path: str | os.PathLike, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success it replaces ``path``.

    The temporary name keeps ``path``'s suffix (soundfile picks the format from it)
    and starts with a dot. On an exception the temporary file is removed and
    ``path`` is left as it was.

    Raises:
        FileExistsError: ``path`` exists and ``overwrite`` is False (the message
            names the file and says how to overwrite).
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path}: exists; use --force (force=True) to overwrite")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix or ".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_text(path: str | os.PathLike, text: str, overwrite: bool = True) -> Path:
    """Write ``text`` to ``path`` atomically (see :func:`atomic_path`)."""
    with atomic_path(path, overwrite) as tmp:
        tmp.write_text(text)
    return Path(path)


def write_json(path: str | os.PathLike, document: Any, overwrite: bool = True) -> Path:
    """Write ``document`` as indented JSON with a final newline, atomically."""
    return write_text(path, json.dumps(document, indent=2) + "\n", overwrite)
