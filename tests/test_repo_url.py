"""The repository URL has one place of truth: ``repository.url`` in ``_config.yml``.

Everything that names the repository is derived from it and checked here: each
notebook's Colab install cell (written by ``scripts/sync_notebooks.py``), the install
command in README.md and the project URL in pyproject.toml. Notebooks are also
checked to be stored without outputs.
"""
from __future__ import annotations

import ast
import importlib.util
import re
import tomllib

import nbformat
import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from conftest import NOTEBOOKS, ROOT

_spec = importlib.util.spec_from_file_location("sync_notebooks", ROOT / "scripts" / "sync_notebooks.py")
sync = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(sync)

URL, BRANCH = sync.repository()
NOTEBOOK_PATHS = sorted(NOTEBOOKS.glob("*.ipynb"))
# The install cell keeps its lines short: the requirement is a string assigned to
# `requirement` (in pieces) and `%pip` gets it by IPython's {variable} expansion.
PIP_LINE = re.compile(r'^\s*%pip install -q "\{requirement\}"\s*$', re.MULTILINE)


def project_name() -> str:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["name"]


def parse_install(source: str) -> Requirement:
    """The requirement that an install cell's ``%pip install`` line asks for."""
    from IPython.core.inputtransformer2 import TransformerManager

    pip = PIP_LINE.findall(source)
    assert len(pip) == 1, f'expected one `%pip install -q "{{requirement}}"` line in:\n{source}'
    tree = ast.parse(TransformerManager().transform_cell(source))
    found = [
        ast.literal_eval(node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Assign)
        and [getattr(t, "id", None) for t in node.targets] == ["requirement"]
    ]
    assert len(found) == 1, f"expected one `requirement = ...` string in:\n{source}"
    return Requirement(found[0])  # raises InvalidRequirement if pip could not parse it


def check_requirement(req: Requirement) -> None:
    assert canonicalize_name(req.name) == canonicalize_name(project_name())
    assert req.url == f"git+{URL}@{BRANCH}", req.url
    assert req.extras == set(sync.NOTEBOOK_EXTRAS) and not req.specifier and req.marker is None
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["optional-dependencies"]
    assert set(req.extras) <= set(extras), req.extras


def notebook_params():
    if not NOTEBOOK_PATHS:
        return [pytest.param(None, marks=pytest.mark.skip(reason="no notebooks yet"))]
    return [pytest.param(p, id=p.name) for p in NOTEBOOK_PATHS]


def test_config_url_is_a_github_repository():
    assert re.fullmatch(r"https://github\.com/[\w.-]+/[\w.-]+", URL), URL
    assert BRANCH


def test_generated_install_cell_is_valid():
    """Holds even before any notebook exists: the cell the sync script writes parses."""
    source = sync.install_cell_source(URL, BRANCH)
    check_requirement(parse_install(source))
    assert Requirement(sync.requirement(URL, BRANCH)).url == f"git+{URL}@{BRANCH}"
    # The cell is valid IPython: magics and shell escapes inside the `if` transform.
    from IPython.core.inputtransformer2 import TransformerManager

    python = TransformerManager().transform_cell(source)
    compile(python, "<install cell>", "exec")
    assert "%pip" not in python and "get_ipython().run_line_magic('pip'" in python


@pytest.mark.parametrize("path", notebook_params())
def test_notebook_install_cell_matches_config(path):
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code, f"{path.name} has no code cell"
    first = code[0].source
    req = parse_install(first)
    check_requirement(req)
    assert URL in first
    assert first == sync.install_cell_source(URL, BRANCH), (
        f"{path.name}: stale Colab install cell; run `.venv/bin/python scripts/sync_notebooks.py`"
    )


@pytest.mark.parametrize("path", notebook_params())
def test_notebook_has_no_stored_outputs(path):
    nb = nbformat.read(path, as_version=4)
    dirty = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and (c.outputs or c.execution_count)]
    assert not dirty, (
        f"{path.name}: cells {dirty} have stored outputs; run `.venv/bin/python scripts/sync_notebooks.py`"
    )
    assert "widgets" not in nb.metadata, f"{path.name}: stored widget state"


def test_sync_check_passes():
    assert sync.main(["--check"]) == 0, "run `.venv/bin/python scripts/sync_notebooks.py`"


def test_readme_and_pyproject_use_the_config_url():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert f'pip install "{sync.requirement(URL, BRANCH)}"' in readme
    urls = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"].get("urls", {})
    assert all(u.rstrip("/").startswith(URL) for u in urls.values()), urls
    name = URL.rsplit("/", 1)[1]
    stray = set(re.findall(rf"https://github\.com/[\w.-]+/{re.escape(name)}\b", readme)) - {URL}
    assert not stray, f"README.md names the repository by another URL: {stray}"
