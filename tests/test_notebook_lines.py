"""Code cells fit the page (issue 14): no code line is longer than 88 characters.

The book shows code cells in a fixed-width column and Colab in a narrow one; a longer
line scrolls sideways or wraps mid-token. This holds for every notebook in
``notebooks/`` and for the Colab install cell that ``scripts/sync_notebooks.py``
generates (checked on the generator too, so a new repository URL can't break it
before the notebooks are synced).
"""

from __future__ import annotations

import importlib.util
import re

import nbformat
import pytest

from conftest import NOTEBOOKS, ROOT

MAX_LINE = 88
NOTEBOOK_PATHS = sorted(NOTEBOOKS.glob("*.ipynb"))


def long_lines(source: str) -> list[tuple[int, int, str]]:
    """``(line number, length, line)`` of each line of ``source`` over the limit."""
    return [
        (number, len(line), line)
        for number, line in enumerate(source.split("\n"), start=1)
        if len(line) > MAX_LINE
    ]


def notebook_params():
    if not NOTEBOOK_PATHS:
        return [pytest.param(None, marks=pytest.mark.skip(reason="no notebooks yet"))]
    return [pytest.param(p, id=p.name) for p in NOTEBOOK_PATHS]


def test_long_lines_finds_only_lines_over_the_limit():
    fits, too_long = "x" * MAX_LINE, "y" * (MAX_LINE + 1)
    assert long_lines(f"{fits}\n{too_long}\n") == [(2, MAX_LINE + 1, too_long)]


@pytest.mark.parametrize("path", notebook_params())
def test_code_cell_lines_fit_the_page(path):
    nb = nbformat.read(path, as_version=4)
    problems = [
        f"{path.name}, cell {index}, line {number} ({length} characters): {line}"
        for index, cell in enumerate(nb.cells)
        if cell.cell_type == "code"
        for number, length, line in long_lines(cell.source)
    ]
    assert not problems, (
        f"{len(problems)} code line(s) longer than {MAX_LINE} characters "
        "(cell = index in the notebook's cells, line counted from 1):\n"
        + "\n".join(problems)
    )


def test_generated_install_cell_fits_the_page():
    spec = importlib.util.spec_from_file_location(
        "sync_notebooks", ROOT / "scripts" / "sync_notebooks.py"
    )
    sync = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(sync)
    source = sync.install_cell_source(*sync.repository())
    problems = [
        f"line {number} ({length} characters): {line}"
        for number, length, line in long_lines(source)
    ]
    assert not problems, (
        "scripts/sync_notebooks.py's install cell:\n" + "\n".join(problems)
    )


MYST_ONLY = re.compile(r"\{[a-z][a-z:-]*\}`|^\s*(```|:::)\{[a-z-]+\}|^\([\w-]+\)=\s*$", re.M)


def myst_only_syntax(source: str) -> list[str]:
    """Roles (``{cite:p}`key```), directives (```` ```{note} ````) and targets
    (``(label)=``) in ``source``: Sphinx renders them, Jupyter and Colab show them raw."""
    return [match.group(0).strip() for match in MYST_ONLY.finditer(source)]


def test_myst_only_syntax_finds_roles_directives_and_targets():
    text = "See {cite:p}`vanka2024diffmst` and {term}`RMS`.\n```{note}\nx\n```\n(sec-a)=\n"
    assert myst_only_syntax(text) == ["{cite:p}`", "{term}`", "```{note}", "(sec-a)="]
    assert myst_only_syntax("([Vanka et al., 2024](https://arxiv.org)) and *RMS*, `f(x)`") == []


@pytest.mark.parametrize("path", notebook_params())
def test_markdown_reads_the_same_in_jupyter_and_the_book(path):
    """Issue 14, item 7: notebooks open in Jupyter and Colab too, where MyST roles
    show raw; citations are links, glossary terms plain emphasis."""
    nb = nbformat.read(path, as_version=4)
    problems = [
        f"{path.name}, cell {index}: {found}"
        for index, cell in enumerate(nb.cells)
        if cell.cell_type == "markdown"
        for found in myst_only_syntax(cell.source)
    ]
    assert not problems, "MyST-only syntax in notebook markdown:\n" + "\n".join(problems)
