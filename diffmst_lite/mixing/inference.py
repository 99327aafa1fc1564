"""Mix a set of stems in the style of a reference: predict (or optimise) a mixing
sheet from excerpts, then render the full-length audio with it.

Diff-MST (Vanka et al., ISMIR 2024) predicts one set of console settings for a
song, so the settings can be estimated on representative excerpts (the loudest
part of the tracks and of the reference) and applied to audio of any length.
"""

from __future__ import annotations

import math
import threading
from functools import partial
from pathlib import Path

import torch

from diffmst_lite.console import params
from diffmst_lite.dsp.decibels import peak_db
from diffmst_lite.dsp.limiter import limit_true_peak
from diffmst_lite.dsp.loudness import integrated_loudness
from diffmst_lite.files.audio import resample
from diffmst_lite.console.mixer import MixingConsole
from diffmst_lite.console.sheet import LIMITER_SPECS, neutral_sheet, params_to_sheet, sheet_to_params

DEFAULT_CHECKPOINT = Path(__file__).parents[1] / "checkpoints" / "lite.pt"


def loudest_excerpt(x: torch.Tensor, sample_rate: int, seconds: float) -> torch.Tensor:
    """The ``seconds``-long window of ``x (C, N)`` with the highest energy (all of ``x``
    if shorter); windows start every 0.1 s. Returns a view of ``x``."""
    length = int(seconds * sample_rate)
    if x.shape[-1] <= length:
        return x
    hop = max(1, sample_rate // 10)
    blocks, rest = divmod(length, hop)  # a window: whole blocks, then the first ``rest`` samples of one more
    whole = _block_energies(x, hop, hop).cumsum(0)
    whole = torch.cat([whole.new_zeros(1), whole])
    starts = torch.arange(0, (x.shape[-1] - length) // hop + 1)
    windows = whole[starts + blocks] - whole[starts]
    if rest:
        windows += _block_energies(x, hop, rest)[starts + blocks]
    start = int(starts[windows.argmax()]) * hop
    return x[:, start : start + length]


def _block_energies(x: torch.Tensor, hop: int, width: int) -> torch.Tensor:
    """Energy of the first ``width`` samples of each ``hop``-long block of ``x (C, N)``,
    summed over channels -> ``(N // hop + 1,)`` float64 (the last entry: the shorter
    block at the end). A norm per block reads the song once, with no song-long
    temporary: 20x faster than a cumulative sum over every sample."""
    full = x.shape[-1] // hop
    energies = torch.zeros(full + 1, dtype=torch.float64)
    for channel in x:
        blocks = channel[: full * hop].view(full, hop)[:, :width]
        energies[:full] += torch.linalg.vector_norm(blocks, dim=1).double().square()
        energies[full] += channel[full * hop : full * hop + width].double().square().sum()
    return energies


def load_model(checkpoint: str | Path | None = None):
    """Load a :class:`~diffmst_lite.model.DiffMST` checkpoint (default: the shipped lite model).

    Chapter 14: Mix your own stems.
    """
    from diffmst_lite.model.diffmst import DiffMST

    path = Path(checkpoint) if checkpoint else DEFAULT_CHECKPOINT
    return DiffMST.load_checkpoint(path).eval()  # a missing or foreign file: a clear error


def _to_rate(x: torch.Tensor, from_rate: int, to_rate: int) -> torch.Tensor:
    return x if from_rate == to_rate else resample(x, from_rate, to_rate)


@torch.no_grad()
def predict_sheet(model, tracks: torch.Tensor, reference: torch.Tensor, sample_rate: int,
                  names: list[str] | None = None, excerpt_seconds: float = 10.0) -> tuple[dict, int]:
    """Predict a mixing sheet for ``tracks (T, N)`` and ``reference (2, M)`` at ``sample_rate``.

    The network sees the loudest ``excerpt_seconds`` of the tracks and of the
    reference, resampled to the model's rate; the sheet is written for
    ``sample_rate``.

    Returns:
        ``(sheet, values moved into range)``: the count is non-zero when a setting
        predicted at the model's rate lies outside the range at ``sample_rate``.

    Chapter 14: Mix your own stems.
    """
    model_rate = model.config.sample_rate
    excerpt = loudest_excerpt(tracks, sample_rate, excerpt_seconds)
    ref_excerpt = loudest_excerpt(reference, sample_rate, excerpt_seconds)
    track_params, master_params = model.predict_params(
        _to_rate(excerpt, sample_rate, model_rate)[None], _to_rate(ref_excerpt, sample_rate, model_rate)[None]
    )
    track_params, moved_t = params.rescale_params(track_params[0], params.track_param_specs(model_rate), params.track_param_specs(sample_rate))
    master_params, moved_m = params.rescale_params(master_params[0], params.master_param_specs(model_rate), params.master_param_specs(sample_rate))
    return params_to_sheet(track_params, master_params, sample_rate, names), moved_t + moved_m


def optimize_sheet(tracks: torch.Tensor, reference: torch.Tensor, sample_rate: int, names: list[str] | None = None,
                   excerpt_seconds: float = 10.0, steps: int = 150, progress: bool = True,
                   start: dict | None = None) -> dict:
    """Test-time optimisation of a sheet on the loudest excerpts of ``tracks (T, N)`` and
    ``reference (2, M)`` (see :mod:`diffmst_lite.mixing.optimize`), from the neutral
    settings, or from the sheet ``start`` (e.g. the network's prediction: ``mix --refine``,
    beyond the paper). The best settings seen are kept, the start among them (each value
    clamped to [0.001, 0.999] of its range), so a refined sheet scores no worse than its
    start on the excerpts.

    Chapter 14: Mix your own stems.
    """
    from diffmst_lite.mixing.optimize import optimize_params

    excerpt = loudest_excerpt(tracks, sample_rate, excerpt_seconds)
    ref_excerpt = loudest_excerpt(reference, sample_rate, excerpt_seconds)
    init = None
    if start is not None:
        settings = sheet_to_params(start, num_tracks=tracks.shape[0], sample_rate=sample_rate)
        init = settings["track_params"][None], settings["master_params"][None]
    result = optimize_params(excerpt[None], ref_excerpt[None], sample_rate, steps=steps, init=init,
                             progress=progress)
    return params_to_sheet(result.track_params[0], result.master_params[0], sample_rate, names)


@torch.no_grad()
def render_sheet(tracks: torch.Tensor, sheet: dict, sample_rate: int) -> torch.Tensor:
    """Render ``tracks (T, N)`` of any length with a mixing sheet -> ``(2, N)``
    (the console, then the sheet's true-peak limiter if it has one).

    Chapter 14: Mix your own stems.
    """
    settings = sheet_to_params(sheet, num_tracks=tracks.shape[0], sample_rate=sample_rate)
    console = MixingConsole(sample_rate)
    mix = console(tracks[None], settings["track_params"][None], settings["master_params"][None])[0]
    return mix if settings["limiter"] is None else _limit(mix, settings["limiter"], sample_rate)


def start_warm_up() -> threading.Thread:
    """Render 0.1 s of silence in a background (daemon) thread, and return the thread.

    The first compressor or limiter call of a process imports numba and loads the
    compiled loops from its disk cache (:mod:`diffmst_lite.dsp.ballistics`), about
    0.8 s on a 2-core machine. ``mix`` and ``render`` start this before they read
    their audio files, so that time overlaps with file reading and prediction
    instead of adding to it. A call that needs a loop still being loaded waits for it.
    """
    sheet = with_limiter(neutral_sheet(["silence"], 44100))
    thread = threading.Thread(target=render_sheet, args=(torch.zeros(1, 4410), sheet, 44100),
                              name="diffmst-warm-up", daemon=True)
    thread.start()
    return thread


def _limit(mix: torch.Tensor, limiter: dict, sample_rate: int) -> torch.Tensor:
    """The sheet's last stage: ``limiter["gain_db"]``, then the true-peak limiter."""
    return limit_true_peak(mix * 10.0 ** (limiter["gain_db"] / 20.0), sample_rate, limiter["ceiling_dbtp"],
                           release_ms=limiter["release_ms"])


@torch.no_grad()
def match_reference_loudness(sheet: dict, tracks: torch.Tensor, reference: torch.Tensor, sample_rate: int,
                             excerpt_seconds: float = 10.0, max_peak_db: float = -1.0) -> tuple[dict, dict]:
    """Turn the mix up or down so it is as loud as the reference.

    The style losses compare loudness-normalised audio (-16 LUFS), so neither the
    model nor the optimiser learns an absolute level: a predicted mix can come out
    20 dB quieter than its reference. This measures both loudest excerpts (ITU-R
    BS.1770) and changes one gain by the difference, inside its range:

    - without a limiter in the sheet, ``master.gain_out_db``, no further than keeps
      the excerpt's peak at ``max_peak_db`` dBFS;
    - with one (the sheet's ``limiter``, see :func:`with_limiter`), the limiter's
      ``gain_db``, and beyond its range (60 dB) ``master.gain_out_db`` too, which comes
      just before the limiter: the limiter holds the true peak at its ceiling, and the gain is
      raised until the limited excerpt is within 0.5 LU of the reference (the console
      renders the excerpt once; the limiter runs at most 6 times, each step scaled by
      how much loudness the previous one gained per dB).

    ``tracks (T, N)``, ``reference (2, M)``.

    Returns:
        ``(new sheet, info)`` with ``info = {"change_db", "reference_lufs", "mix_lufs",
        "limited_by"}`` (``limited_by``: None, ``"peak"`` or ``"range"``; ``mix_lufs``:
        the excerpt before the change).
    """
    excerpt = loudest_excerpt(tracks, sample_rate, excerpt_seconds)
    ref_lufs = integrated_loudness(loudest_excerpt(reference, sample_rate, excerpt_seconds), sample_rate)
    limited = "limiter" in sheet
    out_low, out_high = next((s.low, s.high) for s in params.master_param_specs(sample_rate)
                             if s.name == "gain_out_db")
    output_gain = float(sheet["master"]["gain_out_db"])
    if limited:
        # the gain into the limiter: the limiter's own, and beyond its range the console's
        # output gain, which comes just before it (a very quiet prediction needs both)
        low, limiter_high = next((s.low, s.high) for s in LIMITER_SPECS if s.name == "gain_db")
        high = limiter_high + max(0.0, out_high - output_gain)
        start = float(sheet["limiter"]["gain_db"])

        def with_gain(db: float) -> dict:
            extra = max(0.0, db - limiter_high)
            base = _with_output_gain(sheet, output_gain + extra) if extra else sheet
            return {**base, "limiter": {**sheet["limiter"], "gain_db": db - extra}}
    else:
        low, high, start = out_low, out_high, output_gain
        with_gain = partial(_with_output_gain, sheet)
    console_mix = render_sheet(excerpt, {k: v for k, v in sheet.items() if k != "limiter"}, sample_rate)
    current, info = start, {"change_db": 0.0, "reference_lufs": ref_lufs, "mix_lufs": None, "limited_by": None}
    previous = None  # (gain, loudness) of the previous try
    for _ in range(6 if limited else 1):  # the console renders once; the limiter's gain moves
        mix = _limit(console_mix, {**sheet["limiter"], "gain_db": current}, sample_rate) if limited else console_mix
        mix_lufs = integrated_loudness(mix, sample_rate)
        info["mix_lufs"] = mix_lufs if info["mix_lufs"] is None else info["mix_lufs"]
        change = ref_lufs - mix_lufs
        if not math.isfinite(change) or (limited and abs(change) < 0.5):
            break  # silence on either side, or close enough
        if previous is not None and current != previous[0]:
            # a limiter that works hard turns 1 dB more gain into less than 1 LU more loudness:
            # a secant step, with the slope seen so far (at least 0.1 LU per dB)
            slope = (mix_lufs - previous[1]) / (current - previous[0])
            change /= min(max(slope, 0.1), 1.0)
        previous = (current, mix_lufs)
        info["limited_by"] = None  # what held back this step (the last step's is reported)
        if not limited and peak_db(mix) + change > max_peak_db:
            change, info["limited_by"] = max_peak_db - peak_db(mix), "peak"
        target = min(max(current + change, low), high)
        info["limited_by"] = "range" if target != current + change else info["limited_by"]
        current = target
    info["change_db"] = current - start
    return with_gain(current), info


def with_limiter(sheet: dict, gain_db: float = 0.0, ceiling_dbtp: float = -1.0, release_ms: float = 100.0) -> dict:
    """A copy of ``sheet`` that ends with a gain and a true-peak limiter (:mod:`diffmst_lite.dsp.limiter`).

    Chapter 14: Mix your own stems.
    """
    return {**sheet, "limiter": {"gain_db": gain_db, "ceiling_dbtp": ceiling_dbtp, "release_ms": release_ms}}


def _with_output_gain(sheet: dict, gain_out_db: float) -> dict:
    """A copy of ``sheet`` with another master output gain (the input is left as it is)."""
    return {**sheet, "master": {**sheet["master"], "gain_out_db": gain_out_db}}


def lower_to_peak(sheet: dict, mix: torch.Tensor, max_peak_db: float = -1.0) -> tuple[dict, torch.Tensor, float]:
    """Turn a rendered ``mix (2, N)`` and its sheet's output gain down together until
    the mix peaks at ``max_peak_db`` dBFS (unchanged if it already does).

    The output gain is the console's last stage, so scaling the rendered mix is
    exactly what rendering with the lowered gain would give. Returns ``(sheet, mix,
    change in dB)`` (change <= 0).
    """
    change = min(0.0, max_peak_db - peak_db(mix))
    if change == 0.0:
        return sheet, mix, 0.0
    return _with_output_gain(sheet, float(sheet["master"]["gain_out_db"]) + change), mix * 10.0 ** (change / 20.0), change
