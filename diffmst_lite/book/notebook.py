"""Small conveniences the book's notebooks share: the FAST switch, short audio
players at a fair level, and widgets that only show where a kernel can run them.

- ``FAST`` is True on a CPU-only machine (small sizes, quick execution) and False
  with a GPU (full sizes); the environment variable ``DIFFMST_FAST=0/1`` overrides.
- :func:`play` returns an audio player for a short excerpt, by default at a BS.1770
  integrated loudness of -23 LUFS (``level="loudness"``), or as it is with only a
  clip guard (``level="true"``); no player clips, none is limited.
- :func:`compare` shows an A/B(/C...) row of players, labelled, either matched in
  loudness or at their true relative levels, and says which; with ``figures``, a
  figure beside each player (a widget's preset gallery, ``ConsoleUI.gallery``).
- :func:`show_widget` displays an ipywidgets UI in Colab or Jupyter, but not while
  the book is being built (``DIFFMST_BOOK_BUILD=1``, set by ``make book``): a static
  page cannot run widget callbacks, and a displayed widget can stall the executor
  (jupyter/nbclient#312). Notebooks show a gallery of the widget's presets (figure
  and audio, computed when the notebook runs) in its place.
- :func:`diagram` shows one of the book's block diagrams (``assets/figures``) from
  a checkout of the repository, or, after a ``pip install`` from GitHub (Colab),
  from the repository and commit the package was installed from.
"""

from __future__ import annotations

import base64
import html
import importlib.metadata
import io
import json
import math
import os
from pathlib import Path
from typing import Union

import numpy as np
import torch
from IPython.display import HTML, Audio

from diffmst_lite.dsp.decibels import peak_db
from diffmst_lite.dsp.loudness import integrated_loudness


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


AudioLike = Union[torch.Tensor, np.ndarray]  # (samples,), (channels, samples) or (1, C, N)

TARGET_LUFS = -23.0  # the players' loudness (EBU R 128's programme level), LUFS
CEILING_DB = -1.0  # highest sample peak a player gets after a level change, dBFS
LEVELS = ("loudness", "true")


class Player(Audio):
    """An ``IPython.display.Audio`` that knows how its level was set: ``gain_db``
    (gain applied, dB), ``lufs`` (BS.1770 loudness as played) and ``note`` (shown
    under the player when its level is not the nominal one)."""

    gain_db: float = 0.0
    lufs: float = -math.inf
    note: str = ""

    def _repr_html_(self) -> str:
        note = f"<div><small>{html.escape(self.note)}</small></div>" if self.note else ""
        return super()._repr_html_() + note


class Comparison(HTML):
    """The row of players :func:`compare` displays, with ``mode`` (its text about
    levels), ``lufs`` ({label: loudness as played}) and ``gain_db`` ({label: dB})."""

    mode: str = ""
    lufs: dict[str, float]
    gain_db: dict[str, float]


def _excerpt(audio: AudioLike, sample_rate: int, seconds: float | None) -> np.ndarray:
    """``audio`` as float64 numpy ``(samples,)`` or ``(channels, samples)``, trimmed
    to its first ``seconds``."""
    if isinstance(audio, torch.Tensor):
        audio = audio.detach().cpu().double().numpy()
    data = np.asarray(audio, dtype=np.float64)
    if data.ndim == 3 and data.shape[0] == 1:
        data = data[0]
    if data.ndim not in (1, 2):
        raise ValueError(f"audio must be (samples,) or (channels, samples), got {data.shape}")
    return np.ascontiguousarray(data if seconds is None else data[..., : int(seconds * sample_rate)])


def _lufs(x: np.ndarray, sample_rate: int) -> float:
    """BS.1770 integrated loudness (LUFS) of ``x`` as it is heard: a browser plays a mono
    clip on both speakers, so a mono clip is measured as that centred stereo pair (3 dB
    louder than the channel alone), and mono and stereo clips match by ear."""
    if not x.size:
        return -math.inf
    heard = np.stack([x.reshape(-1)] * 2) if x.ndim == 1 or x.shape[0] == 1 else x
    return integrated_loudness(heard, sample_rate)


def level_gains_db(clips: list[np.ndarray], sample_rate: int, level: str = "loudness",
                   target_lufs: float = TARGET_LUFS, ceiling_db: float = CEILING_DB,
                   guard_db: float | None = None) -> np.ndarray:
    """One gain (dB) per clip (``(samples,)`` or ``(channels, samples)``, full scale
    1.0) for playing the clips side by side.

    ``level="loudness"``: each clip to ``target_lufs`` (BS.1770 integrated loudness;
    silence, -inf LUFS, keeps 0 dB). ``level="true"``: 0 dB for every clip. Then, if
    the loudest peak would exceed ``guard_db`` dBFS (default: ``ceiling_db``), all
    gains drop by the same amount, so that it sits at ``ceiling_db``: the clips stay
    matched, or keep their relative levels. No limiter.
    """
    if level not in LEVELS:
        raise ValueError(f"level must be one of {LEVELS}, got {level!r}")
    gains = np.zeros(len(clips))
    if level == "loudness":
        lufs = np.array([_lufs(x, sample_rate) for x in clips])
        gains = np.where(np.isfinite(lufs), target_lufs - lufs, 0.0)
    loudest = max((peak_db(x) + g for x, g in zip(clips, gains)), default=-math.inf)
    if loudest > (ceiling_db if guard_db is None else guard_db):
        gains = gains + (ceiling_db - loudest)
    return gains


def _player(data: np.ndarray, sample_rate: int) -> Player:
    """The samples as 16-bit FLAC: lossless like IPython's WAV, about half its size in the
    page (every browser plays FLAC). The browser plays these samples as they are, not a
    renormalised copy (the clip only guards against rounding: the gains keep peaks <= 0 dBFS)."""
    import soundfile as sf

    encoded = io.BytesIO()
    sf.write(encoded, np.clip(data, -1.0, 1.0).T, sample_rate, format="FLAC", subtype="PCM_16")
    player = Player(encoded.getvalue())
    player.mimetype = "audio/flac"
    return player


def play(audio: AudioLike, sample_rate: int, seconds: float | None = 6.0, peak_db: float = CEILING_DB, *,
         level: str = "loudness", target_lufs: float = TARGET_LUFS) -> Player:
    """A player for ``audio`` (``(samples,)`` or ``(channels, samples)``, full scale
    1.0), trimmed to its first ``seconds``.

    ``level="loudness"`` (default): scaled to ``target_lufs`` (BS.1770 integrated
    loudness), or less if its peak would then exceed ``peak_db`` dBFS (then the peak
    is at ``peak_db``; no limiter). ``level="true"``: the samples as they are, unless
    they would clip (peak above 0 dBFS): then scaled down to a peak of ``peak_db``
    dBFS. Silence stays silent. When the level is not the nominal one, a note under
    the player says so (``player.note``).

    Returns a :class:`Player` (an ``IPython.display.Audio``; display it, or let the
    cell return it).
    """
    data = _excerpt(audio, sample_rate, seconds)
    guard = 0.0 if level == "true" else None
    gain_db = float(level_gains_db([data], sample_rate, level, target_lufs, peak_db, guard)[0])
    player = _player(data * 10 ** (gain_db / 20), sample_rate)
    player.gain_db, player.lufs = gain_db, _lufs(data, sample_rate) + gain_db
    if level == "true" and gain_db < 0:
        player.note = f"level-true, but lowered by {-gain_db:.1f} dB so that it does not clip"
    elif level == "loudness" and -math.inf < player.lufs < target_lufs - 0.05:
        player.note = f"at {player.lufs:.1f} LUFS, not {target_lufs:g}: its peak is at {peak_db:g} dBFS"
    return player


def _element(player: Audio) -> str:
    """The ``<audio>`` element of an ``IPython.display.Audio`` (data embedded)."""
    return (f'<audio controls="controls" style="width: 100%">'
            f'<source src="{player.src_attr()}" type="{player.mimetype}"/></audio>')


def _lufs_text(lufs: float) -> str:
    return f"{lufs:.1f} LUFS" if math.isfinite(lufs) else "silent"


def _figure_element(fig, width_in: float = 6.0, dpi: int = 100) -> str:
    """A matplotlib figure as an embedded PNG ``<img>``, redrawn ``width_in`` inches wide
    (text keeps its size in points, so it stays legible in a table cell)."""
    w, h = fig.get_size_inches()
    fig.set_size_inches(width_in, h * min(1.0, max(0.75, width_in / w)))
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" style="width: 100%; max-width: {width_in * dpi:.0f}px"/>'


def compare(clips: dict[str, AudioLike], sample_rate: int, level: str = "loudness",
            seconds: float | None = 6.0, target_lufs: float = TARGET_LUFS, caption: str | None = None,
            columns: int = 3, figures: dict | None = None) -> Comparison:
    """A labelled row of players for an A/B(/C...) comparison of ``clips`` ({label:
    ``(samples,)`` or ``(channels, samples)`` audio at ``sample_rate`` Hz, full scale
    1.0}), each trimmed to its first ``seconds``.

    ``level="loudness"``: every clip at ``target_lufs`` (BS.1770 integrated
    loudness), so that the comparison is about sound, not level; if a clip would then
    peak above -1 dBFS, the whole group is lowered by the same amount (still
    matched). ``level="true"``: the clips keep their true relative levels (one common
    gain, only so that the loudest peak is at most -1 dBFS), for comparisons where
    level is the lesson (a fader, makeup or output gain). The row says which, and
    shows each clip's label and its loudness as played (LUFS); at most ``columns``
    players per row. ``figures`` ({label: matplotlib figure}, optional) puts a
    figure beside a clip's label and player (embedded as PNG, redrawn 6 inches wide;
    not closed); use ``columns=1`` then.

    Returns a :class:`Comparison` (an ``IPython.display.HTML``; display it, or let the
    cell return it).
    """
    labels = list(clips)
    data = [_excerpt(clips[label], sample_rate, seconds) for label in labels]
    gains = level_gains_db(data, sample_rate, level, target_lufs)
    data = [x * 10 ** (g / 20) for x, g in zip(data, gains)]
    lufs = {label: _lufs(x, sample_rate) for label, x in zip(labels, data)}
    lowered = f"lowered together so that no peak exceeds {CEILING_DB:g} dBFS"
    if level == "true":
        shift = float(gains[0]) if gains.size else 0.0  # the one common gain (dB)
        mode = "true relative levels" + (f" (all {lowered}: {shift:.1f} dB)" if shift < 0 else "")
    else:
        played = max([v for v in lufs.values() if math.isfinite(v)], default=target_lufs)
        mode = (f"loudness-matched at {target_lufs:g} LUFS" if played > target_lufs - 0.05
                else f"loudness-matched at {played:.1f} LUFS (not {target_lufs:g}: all {lowered})")
    figures = figures or {}
    cells = []
    for label, x in zip(labels, data):
        cell = (f"<b>{html.escape(label)}</b>{_element(_player(x, sample_rate))}"
                f"<small>{_lufs_text(lufs[label])}</small>")
        if label in figures:  # label and player beside the figure (below it on a narrow page)
            cell = (f'<div style="display: flex; flex-wrap: wrap; align-items: center; gap: 0.5em">'
                    f'<div style="flex: 1 1 14em">{cell}</div>'
                    f'<div style="flex: 2 1 24em">{_figure_element(figures[label])}</div></div>')
        cells.append(f'<td style="text-align: left; vertical-align: top">{cell}</td>')
    rows = "".join(f"<tr>{''.join(cells[i : i + columns])}</tr>" for i in range(0, len(cells), columns))
    title = f"<b>{html.escape(caption)}</b> · " if caption else ""
    row = Comparison(f'<table style="width: 100%; table-layout: fixed">'
                     f'<caption style="caption-side: top; text-align: left">{title}players: {mode}</caption>'
                     f"{rows}</table>")
    row.mode, row.lufs, row.gain_db = mode, lufs, dict(zip(labels, gains.tolist()))
    return row


def show_widget(widget) -> None:
    """Display ``widget`` where it can run; during the book build print a short note instead."""
    from IPython.display import Markdown, display

    if building_book():
        display(Markdown("*Interactive widget: run this notebook in Colab or Jupyter to move "
                         "its controls. On this page, the figures and players above show it "
                         "at fixed settings.*"))
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
