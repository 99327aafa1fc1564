"""The package's layout: subpackages in a dependency order, no cycles, light imports.

A module imports only from its own subpackage or from subpackages below it in
``LAYERS`` (docs/design.md §2). Function-level (lazy) imports count too: they are
still dependencies, only later ones.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "diffmst_lite"
# lowest first; the top-level modules __init__, cli and __main__ sit around them
LAYERS = ("files", "dsp", "console", "losses", "model", "data", "training", "mixing", "book", "cli", "__main__")
NOTEBOOK_ONLY = ("IPython", "ipywidgets", "matplotlib")


def module_name(path: Path, root: Path = PACKAGE) -> str:
    """``diffmst_lite/console/mixer.py`` -> ``diffmst_lite.console.mixer`` (``__init__`` -> the package)."""
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def package_imports(path: Path, root: Path = PACKAGE) -> list[tuple[int, str]]:
    """Every module of the package that ``path`` imports, anywhere in the file: ``[(line, module)]``."""
    here = module_name(path, root)
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    modules = {module_name(p, root) for p in root.rglob("*.py")}
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}".rstrip(".")
            # `from pkg import module` imports the module; `from module import name` the module
            names = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
        else:
            continue
        out += [(node.lineno, n) for n in names if n.split(".")[0] == root.name and n in modules]
    return out


def layer(module: str) -> int:
    parts = module.split(".")
    if len(parts) == 1:  # diffmst_lite itself: its __init__ may import nothing of the package
        return -1
    return LAYERS.index(parts[1])


def layering_problems(root: Path = PACKAGE) -> list[str]:
    """Upward imports and import cycles in the package at ``root``, one line each."""
    problems, graph = [], {}
    for path in sorted(root.rglob("*.py")):
        me = module_name(path, root)
        if len(me.split(".")) > 1 and me.split(".")[1] not in LAYERS:
            problems.append(f"{path.relative_to(root.parent)}: {me} is in no layer (add it to LAYERS)")
            continue
        graph[me] = set()
        for line, other in package_imports(path, root):
            if other == me:
                continue
            if layer(other) > layer(me) or layer(me) == -1:
                problems.append(f"{path.relative_to(root.parent)}:{line}: {me} imports {other} from a layer above")
            graph[me].add(other)
    # cycles (within a layer: across layers the order above already forbids them)
    state: dict[str, int] = {}

    def visit(m: str, stack: list[str]) -> None:
        state[m] = 1
        for n in sorted(graph.get(m, ())):
            if n.rpartition(".")[0] == m or m.rpartition(".")[0] == n and n == module_package(m):
                continue  # a package and its own modules (__init__ exports them)
            if state.get(n) == 1:
                problems.append("import cycle: " + " -> ".join(stack[stack.index(n):] + [n]))
            elif n not in state:
                visit(n, stack + [n])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    return problems


def module_package(m: str) -> str:
    return m.rpartition(".")[0]


def test_every_module_is_in_a_layer_and_imports_only_downwards():
    assert layering_problems() == []


def test_the_checker_finds_upward_and_circular_imports(tmp_path):
    pkg = tmp_path / "diffmst_lite"
    for sub in ("dsp", "console"):
        (pkg / sub).mkdir(parents=True)
        (pkg / sub / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "dsp" / "a.py").write_text("def f():\n    from diffmst_lite.console import b\n")  # lazy, upward
    (pkg / "console" / "b.py").write_text("from . import c\n")
    (pkg / "console" / "c.py").write_text("from diffmst_lite.console.b import x\n")
    problems = layering_problems(pkg)
    assert any("dsp/a.py:2" in p and "from a layer above" in p for p in problems), problems
    assert any(p.startswith("import cycle") and "console.b" in p and "console.c" in p for p in problems), problems
    assert len(problems) == 2, problems


@pytest.mark.parametrize("module", ["diffmst_lite.data", "diffmst_lite.console", "diffmst_lite.files.audio"])
def test_data_and_console_do_not_import_notebook_libraries(module):
    code = (f"import sys, {module}; "
            f"print(sorted({{m.split('.')[0] for m in sys.modules}} & {set(NOTEBOOK_ONLY)!r}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]", f"importing {module} imported {out.strip()}"


@pytest.mark.parametrize("module", ["diffmst_lite.files.audio", "diffmst_lite.console", "diffmst_lite.cli"])
def test_importing_has_no_side_effects(module):
    """Loading a WAV does not start the console's numba kernel, and no import sets thread
    settings (they are applied at the first compressor call, docs/design.md §4.3)."""
    code = (f"import os, sys, {module}; print(sorted({{m.split('.')[0] for m in sys.modules}} "
            f"& {{'torchcomp', 'numba'}}), os.environ.get('NUMBA_NUM_THREADS'))")
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_NUM_THREADS"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env).stdout
    assert out.strip() == "[] None", f"importing {module}: {out.strip()}"


def test_public_api_imports():
    from diffmst_lite.console import (MixingConsole, SheetError, neutral_sheet, random_master_params,  # noqa: F401
                                      random_track_params, read_sheet, sheet_to_params)
    from diffmst_lite.data import Song, load_songs, make_songs, reference_songs  # noqa: F401
    from diffmst_lite.losses import AudioFeatureLoss, MRSTFTLoss  # noqa: F401
    from diffmst_lite.mixing import (DEFAULT_CHECKPOINT, equal_loudness_params, load_model,  # noqa: F401
                                     optimize_params, score, sections)
    from diffmst_lite.model import DiffMST

    assert DEFAULT_CHECKPOINT.is_file()
    assert callable(DiffMST.predict_params) and callable(Song.from_folder) and callable(Song.from_file)
