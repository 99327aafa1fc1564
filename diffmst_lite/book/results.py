"""The book's stored full-size results (``assets/results``, written by ``scripts/results.py``).

A notebook's live run is small on a CPU (``FAST``); the full-size evaluation of the
shipped checkpoint takes about half an hour on 2 cores, so ``make results`` runs it once and the
chapters show its tables beside the live run, with the provenance stored next to
them (command, commit, checkpoint SHA-256, date, machine, wall time). In a checkout
the files are read from ``assets/results``; after a ``pip install`` from GitHub
(Colab) they are fetched from the repository and commit the package came from.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import urllib.request
from dataclasses import dataclass
from pathlib import Path

RESULTS_DIR = Path(__file__).resolve().parents[2] / "assets" / "results"
SETTING_TITLES = {
    "synthetic-same": "synthetic test songs, same-song reference",
    "synthetic-cross": "synthetic test songs, another song's mix as reference",
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


def _read_text(name: str) -> str:
    local = RESULTS_DIR / name
    if local.is_file():
        return local.read_text()
    from diffmst_lite.book.notebook import asset_url

    with urllib.request.urlopen(asset_url(f"assets/results/{name}"), timeout=30) as response:
        return response.read().decode()


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


def checkpoint_sha256(path: str | Path | None = None) -> str:
    """SHA-256 of a checkpoint file (default: the shipped one)."""
    from diffmst_lite.mixing.inference import DEFAULT_CHECKPOINT

    return hashlib.sha256(Path(path or DEFAULT_CHECKPOINT).read_bytes()).hexdigest()


def provenance_line(result: StoredResult) -> str:
    """One sentence: what was run, when, on what, with which checkpoint, how long."""
    p = result.provenance
    return (f"`{p['command']}` at commit {p['commit']}, {p['date'][:10]}, checkpoint {p['checkpoint']} "
            f"(SHA-256 {p['checkpoint_sha256'][:12]}…), {p['machine']}; {p['wall_seconds'] / 60:.0f} min")


def results_markdown(result: StoredResult) -> str:
    """A markdown table of one stored setting: AF total per system and the model's wins per pair."""
    from diffmst_lite.mixing.evaluate import win_rates

    wins = win_rates(result.pairs)
    n = len(result.pairs)
    lines = [f"**{SETTING_TITLES[result.setting]}** ({n} songs, each one (tracks, reference) pair; "
             f"{result.provenance['seconds']:g} s sections)", "",
             "| system | AF total (lower is better) | pairs on which the model is better |", "|---|---|---|"]
    most_steps = max(result.provenance["optimize_steps"])
    for system, row in result.table.items():
        won = f"{wins[system][0]}/{n}" if system in wins else "—"
        name = f"optimised ({most_steps} steps)" if system == "optimised" else system
        lines.append(f"| {name} | {row['af']:.4g} | {won} |")
    return "\n".join(lines)
