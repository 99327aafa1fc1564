"""Small conveniences the book's notebooks share: the FAST switch, short normalised
audio players, and widgets that only show where a kernel can run them.

- ``FAST`` is True on a CPU-only machine (small sizes, quick execution) and False
  with a GPU (full sizes); the environment variable ``DIFFMST_FAST=0/1`` overrides.
- :func:`play` returns an audio player for a short, peak-normalised excerpt.
- :func:`show_widget` displays an ipywidgets UI in Colab or Jupyter, but not while
  the book is being built (``DIFFMST_BOOK_BUILD=1``, set by ``make book``): a static
  page cannot run widget callbacks, and a displayed widget can stall the executor
  (jupyter/nbclient#312). Notebooks always show the default figure and audio too.
"""

from __future__ import annotations

import os

import numpy as np
import torch


def fast_mode() -> bool:
    """True unless a GPU is present or ``DIFFMST_FAST=0``."""
    setting = os.environ.get("DIFFMST_FAST")
    if setting is not None:
        return setting.strip().lower() not in ("0", "false", "no", "")
    return not torch.cuda.is_available()


FAST = fast_mode()


def device() -> torch.device:
    """``cuda`` if available, else ``cpu``."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


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
