"""Evaluation in the layout of the Diff-MST paper's table (Vanka et al., ISMIR 2024, Table 2).

For each held-out song the input tracks come from one section and the reference
is the song's own mixture from a different section (``cross_song=True``: another
song's mixture). Four systems mix the tracks:

- ``equal-loudness``: every track at the same loudness, centred, no processing;
- ``random``: random console settings (the Method 1 distribution);
- ``optimised``: test-time optimisation of the settings against the reference (with
  several step counts, e.g. ``(50, 100)``, the largest is ``optimised`` and the others
  ``optimised (50 steps)``, all from one run; 0: no optimisation);
- ``model``: the trained network's prediction.

Columns are the mean squared errors of each audio feature against the reference
(``rms`` linear RMS, ``cf`` crest factor in dB, ``sw`` stereo width, ``si`` stereo
imbalance, ``bs`` Bark spectrum) and ``af``, the weighted AF loss of
:class:`~diffmst_lite.losses.AudioFeatureLoss` with its defaults; lower is better.
Both mixes are loudness-normalised to -16 LUFS first.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
from tqdm.auto import tqdm

from diffmst_lite.console import params
from diffmst_lite.dsp.loudness import loudness
from diffmst_lite.files.atomic import atomic_path
from diffmst_lite.console.mixer import MixingConsole
from diffmst_lite.data.songs import warn_if_shorter
from diffmst_lite.losses.style import AudioFeatureLoss
from diffmst_lite.mixing.optimize import optimize_params

METHODS = ("equal-loudness", "random", "optimised", "model")
COLUMNS = ("rms", "cf", "sw", "si", "bs", "af")
_TERM_COLUMNS = {"rms": "rms", "crest_factor": "cf", "stereo_width": "sw", "stereo_imbalance": "si",
                 "bark_spectrum": "bs"}


@dataclass
class EvalConfig:
    """Options of :func:`evaluate` (and ``diffmst-lite evaluate``)."""

    seconds: float = 5.0  # length of the tracks' section and of the reference section
    cross_song: bool = False
    optimize_steps: int | Sequence[int] = 100  # one count, or several (one run, best within each)
    refine_steps: int = 0  # > 0: also the model's prediction refined by this many steps (row "model + K steps")
    max_songs: int | None = None
    seed: int = 0


def equal_loudness_params(tracks: torch.Tensor, sample_rate: int, target_lufs: float = -30.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Settings that bring every track of ``tracks (1, T, N)`` to ``target_lufs`` (centred, no processing).

    Chapter 15: Evaluation.
    """
    specs = params.track_param_specs(sample_rate)
    track = params.neutral_params(specs).repeat(1, tracks.shape[1], 1)
    levels = loudness(tracks[0, :, None, :], sample_rate)  # (T,) each track as a mono signal
    gain_db = (target_lufs - levels).clamp(specs[params.GAIN].low, specs[params.GAIN].high)
    track[0, :, params.GAIN] = specs[params.GAIN].to_unit(gain_db)
    return track, params.neutral_params(params.master_param_specs(sample_rate))[None]


def sections(num_samples: int, length: int) -> tuple[int, int]:
    """Start samples of the tracks' section (at 1/4 of the song) and the reference section (at 3/4).

    Chapter 15: Evaluation.
    """
    room = max(0, num_samples - length)
    return round(0.25 * room), round(0.75 * room)


def score(mix: torch.Tensor, reference: torch.Tensor, loss: AudioFeatureLoss) -> dict[str, float]:
    """Per-feature MSEs and the AF total of ``mix`` vs ``reference`` (both ``(1, 2, N)``).

    Chapter 15: Evaluation.
    """
    total, terms = loss.total_and_terms(mix, reference)
    return {**{_TERM_COLUMNS[k]: float(v) for k, v in terms.items()}, "af": float(total)}


def evaluate(model, songs: list, config: EvalConfig | None = None, progress: bool = True,
             references: list | None = None, pairs: list | None = None) -> dict[str, dict[str, float]]:
    """Evaluate the four systems on ``songs`` (:class:`~diffmst_lite.data.Song`) -> ``{method: {column: mean}}``.

    ``model`` may be None (then the ``model`` row is left out). ``references``: mix-only
    songs (e.g. real mastered mixes, :func:`~diffmst_lite.data.reference_songs`); song ``i``
    is then mixed towards ``references[i % len(references)]`` (cross-song by construction).
    ``pairs``: if a list, one dict per (tracks, reference) pair is appended to it,
    ``{"song", "reference", <method>: AF total, ...}``, for :func:`win_rates`.

    Chapter 15: Evaluation.
    """
    config = config or EvalConfig()
    songs = [s for s in songs if s.num_tracks > 0][: config.max_songs]
    if not songs or (config.cross_song and len(songs) < 2 and not references):
        raise ValueError("evaluation needs songs with tracks (and at least two of them for cross-song references)")
    sample_rate = songs[0].sample_rate
    console, loss = MixingConsole(sample_rate), AudioFeatureLoss(sample_rate)
    generator = torch.Generator().manual_seed(config.seed)
    length = int(config.seconds * sample_rate)
    warn_if_shorter(songs, config.seconds)
    warn_if_shorter(references or [], config.seconds, "references")
    totals: dict[str, dict[str, float]] = {}
    for i, song in enumerate(tqdm(songs, desc="evaluating", disable=not progress)):
        track_start, ref_start = sections(song.num_samples, length)
        tracks = torch.from_numpy(song.audio(track_start, length)[0])[None]
        ref_song = (references[i % len(references)] if references
                    else songs[(i + 1) % len(songs)] if config.cross_song else song)
        reference = torch.from_numpy(ref_song.audio(sections(ref_song.num_samples, length)[1], length)[1])[None]
        settings = {
            "equal-loudness": equal_loudness_params(tracks, sample_rate),
            "random": (params.random_track_params(1, tracks.shape[1], sample_rate, generator),
                       params.random_master_params(1, sample_rate, generator)),
        }
        settings.update(_optimised(tracks, reference, sample_rate, config.optimize_steps))
        if model is not None:
            with torch.no_grad():
                settings["model"] = model.predict_params(tracks, reference)
            if config.refine_steps:  # mix --refine, beyond the paper
                refined = optimize_params(tracks, reference, sample_rate, steps=config.refine_steps,
                                          init=settings["model"], progress=False)
                settings[refined_name(config.refine_steps)] = refined.track_params, refined.master_params
        pair = {"song": getattr(song, "name", str(i)), "reference": getattr(ref_song, "name", "")}
        for method, (track_params, master_params) in settings.items():
            with torch.no_grad():
                row = score(console(tracks, track_params, master_params), reference, loss)
            for column, value in row.items():
                totals.setdefault(method, dict.fromkeys(COLUMNS, 0.0))[column] += value / len(songs)
            pair[method] = row["af"]
        if pairs is not None:
            pairs.append(pair)
    return totals


def optimised_name(steps: int, most_steps: int) -> str:
    """The row of ``steps`` of test-time optimisation: ``optimised`` for the largest count."""
    return "optimised" if steps == most_steps else f"optimised ({_steps(steps)})"


def refined_name(steps: int) -> str:
    """The row of the model's prediction refined by ``steps`` of test-time optimisation."""
    return f"model + {_steps(steps)}"


def _steps(count: int) -> str:
    """``1 step``, ``30 steps``."""
    return f"{count} step{'s' * (count != 1)}"


def _optimised(tracks: torch.Tensor, reference: torch.Tensor, sample_rate: int,
               steps: int | Sequence[int]) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """The settings of test-time optimisation after each count of ``steps`` (one run)."""
    counts = sorted({int(k) for k in ([steps] if isinstance(steps, int) else steps) if int(k) > 0})
    if not counts:
        return {}
    result = optimize_params(tracks, reference, sample_rate, steps=counts[-1], progress=False,
                             keep_best_within=tuple(counts[:-1]))
    found = {**result.best_within, counts[-1]: (result.track_params, result.master_params)}
    return {optimised_name(k, counts[-1]): found[k] for k in counts}


def _pair_methods(pairs: list[dict]) -> list[str]:
    """The systems scored in ``pairs`` (all pairs have the same), in the order they were scored."""
    return [m for m in pairs[0] if m not in ("song", "reference")] if pairs else []


def win_rates(pairs: list[dict], method: str = "model") -> dict[str, tuple[int, int]]:
    """On how many pairs ``method`` has a lower AF total than each other system: ``{other: (wins, pairs)}``.

    Chapter 15: Evaluation.
    """
    others = [m for m in _pair_methods(pairs) if m != method]
    return {other: (sum(p[method] < p[other] for p in pairs), len(pairs)) for other in others}


def format_win_rates(pairs: list[dict], method: str = "model") -> str:
    """One line: ``model beats equal-loudness on 8/8 pairs, random on 7/8, optimised on 0/8``."""
    rates = win_rates(pairs, method)
    return f"{method} beats " + ", ".join(f"{other} on {wins}/{n}{' pairs' if k == 0 else ''}"
                                          for k, (other, (wins, n)) in enumerate(rates.items()))


def format_table(results: dict[str, dict[str, float]]) -> str:
    """A markdown table, one row per system."""
    lines = ["| method | " + " | ".join(COLUMNS) + " |", "|---" * (len(COLUMNS) + 1) + "|"]
    for method, row in results.items():
        lines.append(f"| {method} | " + " | ".join(f"{row[c]:.4f}" for c in COLUMNS) + " |")
    return "\n".join(lines)


def _write_rows(path: str | Path, header: list[str], rows: list[list]) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)


def write_csv(results: dict[str, dict[str, float]], path: str | Path) -> None:
    """The table of :func:`evaluate`, one row per system (written atomically)."""
    _write_rows(path, ["method", *COLUMNS], [[m, *(f"{row[c]:.6f}" for c in COLUMNS)] for m, row in results.items()])


def write_pairs_csv(pairs: list[dict], path: str | Path) -> None:
    """The per-pair AF totals of :func:`evaluate` (``pairs=``), one row per pair (written atomically)."""
    methods = _pair_methods(pairs)
    _write_rows(path, ["song", "reference", *methods],
                [[p["song"], p["reference"], *(f"{p[m]:.6f}" for m in methods)] for p in pairs])
