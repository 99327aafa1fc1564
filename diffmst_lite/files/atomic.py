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


def check_output(path: str | os.PathLike, overwrite: bool) -> Path:
    """``path`` as a :class:`Path`, after checking that a file may be written there: a
    directory is a ``ValueError``, an existing file a ``FileExistsError`` unless
    ``overwrite`` (each message names the path). Commands call it before they compute."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{path}: is a directory; give a file name")
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path}: exists; use --force (force=True) to overwrite")
    return path


def _new_file_mode(path: Path) -> int:
    """The permissions the written file gets: those of the file it replaces, else what
    ``open()`` would give under the process's umask (``mkstemp`` makes files 0600)."""
    if path.exists():
        return path.stat().st_mode & 0o7777
    return 0o666 & ~_umask()


def _umask() -> int:
    """The process's umask: from ``/proc/self/status`` on Linux (no side effect), else by
    setting it and back (a file another thread creates in between would get no mask)."""
    try:
        line = next(line for line in Path("/proc/self/status").read_text().splitlines() if line.startswith("Umask:"))
        return int(line.split()[1], 8)
    except (OSError, StopIteration, ValueError, IndexError):
        umask = os.umask(0o077)  # the strictest value while it is read
        os.umask(umask)
        return umask


@contextmanager
def atomic_path(path: str | os.PathLike, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success it replaces ``path``.

    The temporary name keeps ``path``'s suffix (soundfile picks the format from it)
    and starts with a dot. On an exception the temporary file is removed and
    ``path`` is left as it was.

    The file gets the permissions of the file it replaces, or those a new file gets.

    Raises:
        FileExistsError: ``path`` exists and ``overwrite`` is False (the message
            names the file and says how to overwrite).
        ValueError: ``path`` is a directory.
    """
    path = check_output(path, overwrite)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix or ".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, _new_file_mode(path))
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
