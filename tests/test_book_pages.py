"""The built book, as a reader's browser shows it.

Opens the pages of ``_build/html`` (built by ``make book``) in headless Chromium over a
local HTTP server and checks what a reader would see: the intro page with its title and
citations, and for every notebook listed in ``_toc.yml`` at least one figure and one
audio player produced by the notebook's own outputs. A notebook that has no figure or no
audio by design says so in its notebook metadata::

    "metadata": {"diffmst": {"needs_figure": false, "needs_audio": false}, ...}

Screenshots of two pages are saved to ``_build/screenshots/`` (CI artefacts).
"""
from __future__ import annotations

import functools
import http.server
import json
import re
import subprocess
import tempfile
import threading
from pathlib import Path
from urllib.parse import unquote, urljoin, urlparse

import pytest
import yaml
from bs4 import BeautifulSoup

from conftest import BUILD_HTML, NOTEBOOKS, ROOT, toc_files, toc_notebooks
from test_widgets_frontend import load_script

CHROMIUM = "/usr/bin/chromium"
SCREENSHOTS = ROOT / "_build" / "screenshots"
TITLE = "Diff-MST lite"
CHROME_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
    "--mute-audio",
]


# ----------------------------------------------------------------------------- helpers
def chromium(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run headless Chromium once with a fresh profile; return the finished process."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} not found: run `make book` (it installs Debian's chromium).")
    with tempfile.TemporaryDirectory(prefix="chromium-") as profile:
        return subprocess.run(
            [CHROMIUM, *CHROME_FLAGS, f"--user-data-dir={profile}", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )


def rendered_dom(url: str) -> BeautifulSoup:
    proc = chromium("--dump-dom", url)
    assert proc.returncode == 0 and "<html" in proc.stdout, (
        f"Chromium could not render {url} (exit {proc.returncode}):\n{proc.stderr[-2000:]}"
    )
    return BeautifulSoup(proc.stdout, "html.parser")


def screenshot(url: str, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    out = SCREENSHOTS / f"{name}.png"
    out.unlink(missing_ok=True)
    proc = chromium("--window-size=1280,2000", f"--screenshot={out}", url)
    assert proc.returncode == 0 and out.is_file() and out.stat().st_size > 10_000, (
        f"no screenshot of {url} (exit {proc.returncode}):\n{proc.stderr[-2000:]}"
    )
    return out


def notebook_needs(name: str) -> dict[str, bool]:
    """What a notebook's page must show: ``{"figure": bool, "audio": bool}``."""
    meta = json.loads((ROOT / f"{name}.ipynb").read_text(encoding="utf-8"))["metadata"]
    flags = meta.get("diffmst", {})
    return {"figure": flags.get("needs_figure", True), "audio": flags.get("needs_audio", True)}


def local_file(page_url: str, src: str) -> Path:
    """The file under _build/html that ``src`` (relative to ``page_url``) points to."""
    path = urlparse(urljoin(page_url, src)).path
    return BUILD_HTML / unquote(path).lstrip("/")


# ----------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="session")
def built() -> Path:
    """The built book; fails (never skips) when it is missing."""
    index = BUILD_HTML / "index.html"
    if not index.is_file():
        pytest.fail(f"{index} does not exist: build the book first with `make book` (or run `make test`).")
    return BUILD_HTML


@pytest.fixture(scope="session")
def server(built: Path):
    """Base URL of a local HTTP server (127.0.0.1, free port) serving _build/html."""

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    handler = functools.partial(Quiet, directory=str(built))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    finally:
        httpd.shutdown()
        httpd.server_close()


# ----------------------------------------------------------------------------- tests
def test_every_notebook_is_in_the_toc():
    """A notebook missing from _toc.yml would silently not be built (only_build_toc_files)."""
    listed = set(toc_files())
    missing = [p.name for p in sorted(NOTEBOOKS.glob("*.ipynb")) if f"notebooks/{p.stem}" not in listed]
    assert not missing, f"notebooks not listed in _toc.yml (add them under their part): {missing}"


def test_sidebar_numbers_the_chapters_as_their_files_and_headings():
    """The text says "chapter 10"; the sidebar must show that number on that chapter,
    with the chapter's own # heading."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text(encoding="utf-8"))
    chapters = [c for part in toc["parts"] for c in part["chapters"] if re.search(r"/\d\d_", c["file"])]
    assert [int(re.search(r"/(\d\d)_", c["file"]).group(1)) for c in chapters] == list(range(1, 17))
    for number, chapter in enumerate(chapters, start=1):
        path = ROOT / chapter["file"]
        if path.with_suffix(".ipynb").is_file():
            cells = json.loads(path.with_suffix(".ipynb").read_text(encoding="utf-8"))["cells"]
            text = "".join("".join(c["source"]) + "\n" for c in cells if c["cell_type"] == "markdown")
        else:
            text = path.with_suffix(".md").read_text(encoding="utf-8")
        heading = re.search(r"^# (.+)$", text, re.M).group(1)
        assert chapter.get("title") == f"{number}. {heading}", chapter


def test_every_toc_page_was_built(built: Path):
    missing = [f for f in toc_files() if not (built / f"{f}.html").is_file()]
    assert not missing, f"pages in _toc.yml without HTML in {built}: {missing} (run `make book`)"


def test_intro_page_renders(server: str):
    url = urljoin(server, "book/intro.html")
    dom = rendered_dom(url)
    assert TITLE in dom.title.get_text(), f"page title is {dom.title.get_text()!r}"
    article = dom.select_one("article") or dom
    heading = article.find("h1")
    assert heading is not None and "Diff-MST" in heading.get_text()
    text = article.get_text(" ", strip=True)
    assert "Vanka" in text, "the citation of the Diff-MST paper did not render"
    assert "{cite" not in text, "an unresolved MyST citation role is shown as text"
    nav = dom.select_one("nav.bd-docs-nav, #bd-docs-nav") or dom
    for part in ("Part I", "Part VI"):
        assert part in nav.get_text(), f"{part} missing from the navigation"
    screenshot(url, "intro")


def test_index_redirects_to_intro(built: Path):
    assert "book/intro.html" in (built / "index.html").read_text(encoding="utf-8")


def test_bibliography_lists_the_paper(server: str):
    dom = rendered_dom(urljoin(server, "book/bibliography.html"))
    text = dom.get_text(" ", strip=True)
    assert "Differentiable Mixing Style Transfer" in text and "2407.08889" in text


def test_second_screenshot(server: str):
    """A screenshot of the first chapter (or, with no chapters yet, the bibliography)."""
    pages = toc_notebooks() or ["book/bibliography"]
    screenshot(urljoin(server, f"{pages[0]}.html"), Path(pages[0]).name)


@pytest.mark.parametrize("name", toc_notebooks() or [pytest.param(None, marks=pytest.mark.skip(reason="no notebooks in _toc.yml yet"))])
def test_notebook_page_shows_figure_and_audio(server: str, name: str):
    needs = notebook_needs(name)
    url = urljoin(server, f"{name}.html")
    dom = rendered_dom(url)
    article = dom.select_one("article") or dom
    assert article.find("h1") is not None, f"{name}: the page has no title (a notebook starts with a # heading)"

    outputs = article.select(".cell_output")
    assert outputs or not (needs["figure"] or needs["audio"]), f"{name}: the page shows no cell outputs"

    errors = article.select(".cell_output .output.traceback, .cell_output .output.error")
    assert not errors, f"{name}: the page shows an error output"

    if needs["figure"]:
        images = []
        for out in outputs:
            for img in out.find_all("img"):
                src = img.get("src", "")
                if src.startswith(("data:image/png", "data:image/svg")):
                    images.append(src)
                elif urlparse(src).path.lower().endswith((".png", ".svg")):
                    file = local_file(url, src)
                    assert file.is_file() and file.stat().st_size > 0, f"{name}: image {src} is missing"
                    images.append(src)
        assert images, (
            f"{name}: no figure (png/svg image) in the notebook's outputs; if the chapter has "
            'none by design, set "diffmst": {"needs_figure": false} in its notebook metadata'
        )

    if needs["audio"]:
        players = [a for out in outputs for a in out.find_all("audio")]
        assert players, (
            f"{name}: no <audio> player in the notebook's outputs; if the chapter has none "
            'by design, set "diffmst": {"needs_audio": false} in its notebook metadata'
        )
        for audio in players:
            srcs = [audio.get("src")] + [s.get("src") for s in audio.find_all("source")]
            assert any(srcs), f"{name}: an <audio> element has no source"



# ------------------------------------------------------------------- code fits the page
CODE_BLOCKS = "article div.cell_input pre"  # code cells (outputs may be wider: printed tables)
WINDOW_WIDTHS = (1200, 1300, 1400, 1920)  # with the left sidebar shown, the narrowest column


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """Headless Chromium driven by Selenium (Debian's chromium-driver), to measure layout:
    the browser of scripts/check_widgets_frontend.py."""
    script = load_script()
    missing = script.missing_tools()
    if missing:
        pytest.fail(f"missing {', '.join(missing)}: run `make book` (it installs them).")
    driver = script.start_browser(tmp_path_factory.mktemp("browser"))
    try:
        yield driver
    finally:
        driver.quit()


def overflowing_code(driver, url: str, width: int) -> list[str]:
    """Code blocks on ``url`` wider than their box at a window ``width`` px wide:
    the first characters of each, with how many pixels scroll sideways."""
    driver.set_window_size(width, 1000)
    driver.get(url)
    found = driver.execute_script(
        "return [...document.querySelectorAll(arguments[0])]"
        ".filter(p => p.scrollWidth > p.clientWidth + 1)"
        ".map(p => [p.scrollWidth - p.clientWidth, p.textContent.trim().slice(0, 60)]);",
        CODE_BLOCKS,
    )
    return [f"{pixels} px: {text!r}" for pixels, text in found]


@pytest.mark.parametrize("name", toc_notebooks() or [pytest.param(None, marks=pytest.mark.skip(reason="no notebooks"))])
def test_code_cells_fit_the_page_without_sideways_scrolling(server: str, browser, name: str):
    """Issue 14: code lines are at most 88 characters (tests/test_notebook_lines.py) and
    the page's code column shows 88 characters at every common window width."""
    url = urljoin(server, f"{name}.html")
    problems = {width: overflowing_code(browser, url, width) for width in WINDOW_WIDTHS}
    problems = {width: blocks for width, blocks in problems.items() if blocks}
    assert not problems, f"{name}: code scrolls sideways at window widths (px) {problems}"


# ------------------------------------------------------------------- fair listening
LEVEL_MODES = ("players: loudness-matched", "players: true relative levels")


@pytest.mark.parametrize("name", toc_notebooks() or [pytest.param(None, marks=pytest.mark.skip(reason="no notebooks"))])
def test_every_comparison_says_how_its_levels_were_set(built: Path, name: str):
    """Issue 14, item 2: where a cell plays two or more clips (an A/B), they are one
    ``compare`` row: every player labelled, and the row says whether the players are
    loudness-matched or at their true relative levels."""
    dom = BeautifulSoup((built / f"{name}.html").read_text(encoding="utf-8"), "html.parser")
    problems = []
    for index, output in enumerate(dom.select("article .cell_output")):
        players = output.find_all("audio")
        if len(players) < 2:
            continue
        unlabelled = [a for a in players if a.find_parent("table") is None
                      or not any(mode in a.find_parent("table").get_text(" ") for mode in LEVEL_MODES)]
        if unlabelled:
            problems.append(f"output {index}: {len(unlabelled)} of {len(players)} players outside a compare() row")
        for audio in players:
            cell = audio.find_parent("td")
            if cell is None or cell.find("b") is None or not cell.find("b").get_text(strip=True):
                problems.append(f"output {index}: a player without a label")
    assert not problems, f"{name}: " + "; ".join(problems)
