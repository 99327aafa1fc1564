"""The book's stored full-size results (``assets/results``, written by ``scripts/results.py``).

A notebook's live run is small on a CPU (``FAST``); the full-size evaluation of the
shipped checkpoint takes about half an hour on 2 cores, so ``make results`` runs it once and the
chapters show its tables beside the live run, with the provenance stored next to
them (command, commit, checkpoint SHA-256, date, machine, wall time); so are its
listening examples (short Ogg Vorbis clips of real development songs, :func:`stored_clips`).
In a checkout the files are read from ``assets/results``; after a ``pip install`` from
GitHub (Colab) they are fetched from the repository and commit the package came from.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np

RESULTS_DIR = Path(__file__).resolve().parents[2] / "assets" / "results"
SETTING_TITLES = {
    "synthetic-same": "synthetic test songs, same-song reference",
    "synthetic-cross": "synthetic test songs, another song's mix as reference",
    "synthetic-fresh-same": "fresh synthetic test songs (a second, larger test set from another seed), same-song reference",
    "synthetic-fresh-cross": "fresh synthetic test songs (a second, larger test set from another seed), another song's mix as reference",
    "real-same": "real development songs, the song's own mix (producer's or composer's) as reference",
    "real-cross": "real development songs, another development song's mix as reference",
    "real-mastered": "real development songs, a released mastered mix as reference",
}


@dataclass
class StoredResult:
    """One setting of the stored evaluation: ``table {system: {column: value}}``, ``pairs``
    (one ``{"song", "reference", system: AF}`` per pair) and its ``provenance`` dict."""

    setting: str
    table: dict[str, dict[str, float]]
    pairs: list[dict]
    provenance: dict


def _read_bytes(name: str) -> bytes:
    local = RESULTS_DIR / name
    if local.is_file():
        return local.read_bytes()
    from diffmst_lite.book.notebook import asset_url

    with urllib.request.urlopen(asset_url(f"assets/results/{name}"), timeout=30) as response:
        return response.read()


def _read_text(name: str) -> str:
    return _read_bytes(name).decode()


def _rows(text: str) -> list[dict]:
    return list(csv.DictReader(io.StringIO(text)))


def stored_results() -> dict[str, StoredResult]:
    """Every stored setting, in the order of :data:`SETTING_TITLES`."""
    provenance = json.loads(_read_text("provenance.json"))["settings"]
    out = {}
    for setting in [s for s in SETTING_TITLES if s in provenance]:
        table = {row.pop("method"): {k: float(v) for k, v in row.items()}
                 for row in _rows(_read_text(f"eval_{setting}.csv"))}
        pairs = [{k: v if k in ("song", "reference") else float(v) for k, v in row.items()}
                 for row in _rows(_read_text(f"pairs_{setting}.csv"))]
        out[setting] = StoredResult(setting, table, pairs, provenance[setting])
    return out


def stored_table(name: str) -> list[dict]:
    """A stored CSV other than the evaluation's (``data_sources.csv``, ``training_log.csv``)
    as a list of rows (strings)."""
    return _rows(_read_text(name))


@dataclass
class StoredClip:
    """One stored listening example: ``audio (channels, samples)`` float32 at ``sample_rate`` Hz
    and its entry of ``clips.json`` (``info``: file, example, system, song, title, author,
    package, version, licence, renderer, excerpt, seconds, lufs as rendered, stored_gain_db, and
    af, the AF total against the example's reference clip, None for the reference)."""

    audio: np.ndarray
    sample_rate: int
    info: dict


def stored_clips() -> tuple[dict[str, dict[str, StoredClip]], dict]:
    """The stored listening examples ``({example: {system: clip}}, provenance)``, in the order
    ``scripts/results.py`` wrote them (each example's reference first)."""
    import soundfile as sf

    stored = json.loads(_read_text("clips.json"))
    examples: dict[str, dict[str, StoredClip]] = {}
    for info in stored["clips"]:
        audio, rate = sf.read(io.BytesIO(_read_bytes(info["file"])), dtype="float32", always_2d=True)
        examples.setdefault(info["example"], {})[info["system"]] = StoredClip(audio.T, rate, info)
    return examples, stored["provenance"]


def clips_attribution(clips: dict[str, StoredClip]) -> str:
    """Markdown: each piece of music heard in ``clips`` (one example) with its title,
    author, Debian package and licence, how it was rendered and which excerpt is played."""
    lines, seen = [], set()
    for clip in clips.values():
        i = clip.info
        if i["song"] not in seen:
            seen.add(i["song"])
            how = i["renderer"] if i["renderer"].startswith("released") else f"rendered by {i['renderer']}"
            lines.append(f"- *{i['title']}* by {i['author']}, Debian package {i['package']} {i['version']}, "
                         f"licence {i['licence']}; {how}. Played: the {i['excerpt']}.")
    return "\n".join(lines)


def show_stored_clips(examples: list[str] | None = None) -> None:
    """Display the stored listening examples (all, or those named in ``examples``): per
    example, each system's AF total and loudness as rendered, the music's attribution
    (:func:`clips_attribution`) and a loudness-matched row of players; then the provenance."""
    from IPython.display import Markdown, display

    from diffmst_lite.book.notebook import compare

    stored, provenance = stored_clips()
    for example, clips in stored.items():
        if examples is not None and example not in examples:
            continue
        numbers = "; ".join(f"{system}: AF {clip.info['af']:.3g}, {clip.info['lufs']:.1f} LUFS as rendered"
                            for system, clip in clips.items() if clip.info["af"] is not None)
        display(Markdown(f"**{example}** ({numbers})\n\n" + clips_attribution(clips)))
        display(compare({system: clip.audio for system, clip in clips.items()},
                        next(iter(clips.values())).sample_rate, level="loudness", seconds=None,
                        caption=f"{example}, loudness-matched", columns=4))
    display(Markdown("*Produced by* " + provenance_line(provenance)))


def checkpoint_sha256(path: str | Path | None = None) -> str:
    """SHA-256 of a checkpoint file (default: the shipped one)."""
    from diffmst_lite.mixing.inference import DEFAULT_CHECKPOINT

    return hashlib.sha256(Path(path or DEFAULT_CHECKPOINT).read_bytes()).hexdigest()


def short_command(command: str) -> str:
    """``command`` with the paths of its ``--training-logs`` left out (``p1=…,p2=…``): a
    page cannot wrap them, and the whole command is in ``provenance.json``."""
    words = command.split()
    for i, word in enumerate(words[:-1]):
        if word == "--training-logs":
            words[i + 1] = ",".join(item.split("=")[0] + "=…" for item in words[i + 1].split(","))
    return " ".join(words)


def provenance_line(result: StoredResult | dict) -> str:
    """One sentence: what was run, when, on what, with which checkpoint, how long
    (``result``: a stored setting, or a provenance dict such as :func:`stored_clips`' one)."""
    p = result if isinstance(result, dict) else result.provenance
    return (f"`{short_command(p['command'])}` at commit {p['commit']}, {p['date'][:10]}, checkpoint {p['checkpoint']} "
            f"(SHA-256 {p['checkpoint_sha256'][:12]}…), {p['machine']}; {p['wall_seconds'] / 60:.0f} min")


def results_markdown(result: StoredResult) -> str:
    """A markdown table of one stored setting: AF total per system and the model's wins per pair."""
    from diffmst_lite.mixing.evaluate import win_rates

    wins = win_rates(result.pairs)
    n = len(result.pairs)
    songs = result.provenance.get("songs", n)  # evaluate() leaves out songs without tracks
    source = f"from {songs} songs, {songs - n} without tracks left out" if songs > n else "one per song"
    lines = [f"**{SETTING_TITLES[result.setting]}** ({n} (tracks, reference) pairs, {source}; "
             f"{result.provenance['seconds']:g} s sections)", "",
             "| system | AF total (lower is better) | pairs on which the model is better |", "|---|---|---|"]
    most_steps = max(result.provenance["optimize_steps"])
    for system, row in result.table.items():
        won = f"{wins[system][0]}/{n}" if system in wins else "—"
        name = f"optimised ({most_steps} steps)" if system == "optimised" else system
        lines.append(f"| {name} | {row['af']:.4g} | {won} |")
    return "\n".join(lines)
