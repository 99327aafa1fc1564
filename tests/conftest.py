"""Shared pytest fixtures and helpers for the whole suite.

Book helpers (used by tests/test_book_pages.py and tests/test_repo_url.py):
``ROOT`` is the repository root, ``BUILD_HTML`` the built book (``make book``),
``toc_files()`` the pages listed in ``_toc.yml`` and ``toc_notebooks()`` those of
them that are notebooks in ``notebooks/``.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
BUILD_HTML = ROOT / "_build" / "html"
NOTEBOOKS = ROOT / "notebooks"


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread for a test module (``pytestmark = pytest.mark.usefixtures("one_thread")``):
    its tensors are small and the 2 cores are shared, where 2 threads thrash."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def toc_files() -> list[str]:
    """Every ``file:`` entry of ``_toc.yml`` (root first), in reading order, no extension."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text(encoding="utf-8"))
    files = [toc["root"]]

    def walk(node):
        if isinstance(node, dict):
            if "file" in node:
                files.append(str(node["file"]))
            for key in ("parts", "chapters", "sections"):
                for child in node.get(key) or []:
                    walk(child)

    walk(toc)
    return [str(Path(f).with_suffix("")) if f.endswith((".md", ".ipynb")) else f for f in files]


def toc_notebooks() -> list[str]:
    """The ``_toc.yml`` entries that are notebooks, e.g. ``notebooks/01_mixing``."""
    return [f for f in toc_files() if (ROOT / f"{f}.ipynb").is_file()]


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return ROOT
