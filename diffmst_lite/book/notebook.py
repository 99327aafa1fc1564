"""Small conveniences the book's notebooks share: the FAST switch, short normalised
audio players, and widgets that only show where a kernel can run them.

- ``FAST`` is True on a CPU-only machine (small sizes, quick execution) and False
  with a GPU (full sizes); the environment variable ``DIFFMST_FAST=0/1`` overrides.
- :func:`play` returns an audio player for a short, peak-normalised excerpt.
- :func:`show_widget` displays an ipywidgets UI in Colab or Jupyter, but not while
  the book is being built (``DIFFMST_BOOK_BUILD=1``, set by ``make book``): a static
  page cannot run widget callbacks, and a displayed widget can stall the executor
  (jupyter/nbclient#312). Notebooks always show the default figure and audio too.
- :func:`diagram` shows one of the book's block diagrams (``assets/figures``) from
  a checkout of the repository, or, after a ``pip install`` from GitHub (Colab),
  from the repository and commit the package was installed from.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
from pathlib import Path

import numpy as np
import torch


def fast_mode() -> bool:
    """True unless a GPU is present or ``DIFFMST_FAST=0``."""
    setting = os.environ.get("DIFFMST_FAST")
    if setting is not None:
        return setting.strip().lower() not in ("0", "false", "no", "")
    return not torch.cuda.is_available()


FAST = fast_mode()



def building_book() -> bool:
    """True while ``make book`` executes the notebooks."""
    return os.environ.get("DIFFMST_BOOK_BUILD", "") == "1"


def play(audio: torch.Tensor | np.ndarray, sample_rate: int, seconds: float | None = 6.0, peak_db: float = -1.0):
    """A player for ``audio`` (``(samples,)`` or ``(channels, samples)``), trimmed to
    ``seconds`` and peak-normalised to ``peak_db`` dBFS (silence stays silent).

    Returns an ``IPython.display.Audio`` object (display it, or let the cell return it).
    """
    from IPython.display import Audio

    data = audio.detach().cpu().double().numpy() if isinstance(audio, torch.Tensor) else np.asarray(audio, float)
    if data.ndim == 3 and data.shape[0] == 1:
        data = data[0]
    if seconds is not None:
        data = data[..., : int(seconds * sample_rate)]
    peak = np.abs(data).max() if data.size else 0.0
    if peak > 0:
        data = data * (10 ** (peak_db / 20) / peak)
    return Audio(data, rate=sample_rate, normalize=False)


def show_widget(widget) -> None:
    """Display ``widget`` where it can run; during the book build print a short note instead."""
    from IPython.display import Markdown, display

    if building_book():
        display(Markdown("*Interactive widget: run this notebook in Colab or locally to use it. "
                         "The figure and audio above show its default settings.*"))
    else:
        display(widget)


DIAGRAMS = ("diffmst_overview", "console_signal_flow", "method1_data")
FIGURES_DIR = Path(__file__).resolve().parents[2] / "assets" / "figures"


def asset_url(path: str) -> str:
    """Raw GitHub URL of ``path`` (relative to the repository root, e.g.
    ``assets/figures/x.png``) in the repository the package was pip-installed from
    (PEP 610 ``direct_url.json``: URL and commit), else in the project URL of the
    package metadata, branch ``main``."""
    dist = importlib.metadata.distribution("diffmst-lite")
    info = json.loads(dist.read_text("direct_url.json") or "{}")
    url, revision = info.get("url", ""), info.get("vcs_info", {}).get("commit_id")
    if not (url.startswith("https://github.com/") and revision):
        urls = [u.split(",", 1)[-1].strip() for u in dist.metadata.get_all("Project-URL") or []]
        url, revision = next((u for u in urls if u.startswith("https://github.com/")), ""), "main"
    if not url:
        raise LookupError("diffmst-lite was not installed from GitHub and names no GitHub project URL")
    repo = url.removeprefix("https://github.com/").removesuffix(".git").strip("/")
    return f"https://raw.githubusercontent.com/{repo}/{revision}/{path}"


def diagram_url(name: str) -> str:
    """Raw GitHub URL of the block diagram ``assets/figures/{name}.png`` (:func:`asset_url`)."""
    return asset_url(f"assets/figures/{name}.png")


def diagram(name: str) -> None:
    """Display the block diagram ``name`` (one of :data:`DIAGRAMS`; drawn by
    ``scripts/make_figures.py``, CC BY 4.0): embedded from ``assets/figures`` when
    the repository is here (the book build, a local clone), else fetched from GitHub."""
    from IPython.display import Image, display

    if name not in DIAGRAMS:
        raise ValueError(f"unknown diagram {name!r}; choose one of {', '.join(DIAGRAMS)}")
    local = FIGURES_DIR / f"{name}.png"
    display(Image(filename=str(local)) if local.is_file() else Image(url=diagram_url(name)))
