"""The book's claims are checked by the build (issue 11).

Wherever a chapter's text interprets a number computed on the page ("X is larger than
Y", "the loss falls"), a hidden code cell right after it asserts the claim on the values
just computed, so ``make book`` fails instead of shipping a sentence that has become
false. Such a cell starts with the line ``# claim check`` (then, after a colon, what it
checks), is tagged ``remove-cell`` (executed, not shown) and asserts something. Every
chapter has at least one, unless its notebook metadata says it interprets no outputs::

    "metadata": {"diffmst": {"interprets_outputs": false}, ...}
"""

from __future__ import annotations

import ast

import nbformat
import pytest

from conftest import NOTEBOOKS

MARKER = "# claim check"
CHAPTERS = sorted(NOTEBOOKS.glob("*.ipynb"))


def claim_checks(nb) -> list:
    return [cell for cell in nb.cells if cell.cell_type == "code" and cell.source.startswith(MARKER)]


def test_there_are_chapters():
    assert len(CHAPTERS) >= 15


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_chapter_checks_its_claims(path):
    nb = nbformat.read(path, as_version=4)
    if nb.metadata.get("diffmst", {}).get("interprets_outputs", True):
        assert claim_checks(nb), (f"{path.name}: no claim-check cell; add a hidden cell starting with "
                                  f"'{MARKER}: ...' that asserts what the text says about the outputs")


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_claim_checks_are_hidden_asserting_code_after_a_computation(path):
    nb = nbformat.read(path, as_version=4)
    code_cells = [i for i, cell in enumerate(nb.cells) if cell.cell_type == "code"]
    for cell in claim_checks(nb):
        index = nb.cells.index(cell)
        where = f"{path.name}, cell {index}"
        assert "remove-cell" in cell.metadata.get("tags", []), f"{where}: a claim check must be tagged remove-cell"
        tree = ast.parse(cell.source)
        assert any(isinstance(node, ast.Assert) for node in ast.walk(tree)), f"{where}: a claim check must assert"
        assert index > code_cells[0], f"{where}: a claim check must follow the cell that computes its values"
    for index in code_cells:
        cell = nb.cells[index]
        if "remove-cell" in cell.metadata.get("tags", []) and "assert " in cell.source:
            assert cell.source.startswith(MARKER), f"{path.name}, cell {index}: hidden asserts start with '{MARKER}'"
