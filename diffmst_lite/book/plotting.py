"""Matplotlib figures the book's notebooks and widgets share.

Every ``*_figure`` function returns a :class:`matplotlib.figure.Figure` with
labelled axes (units in the labels) and a title; most accept an ``ax`` to draw
into an existing axis instead. The ``*_data`` functions compute the numbers a
figure shows (EQ responses, compressor curves and gain over time), so tests and
widgets can check them without drawing.

Audio arguments are numpy arrays or torch tensors, ``(samples,)`` or
``(channels, samples)``.
"""

from __future__ import annotations

import itertools
import math
from typing import Any, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from diffmst_lite.console import params
from diffmst_lite.dsp import biquads
from diffmst_lite.dsp.biquads import biquad_response
from diffmst_lite.dsp.dynamics import compressor_gain, gain_computer
from diffmst_lite.dsp.panning import pan_gains

BAND_COLOURS = ("tab:brown", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:blue")


def _np(audio: Any) -> np.ndarray:
    if isinstance(audio, torch.Tensor):
        return audio.detach().cpu().double().numpy()
    return np.asarray(audio, dtype=float)


def _axis(ax: Axes | None, figsize=(7, 3.2)) -> tuple[Figure, Axes]:
    if ax is None:
        fig, ax = plt.subplots(figsize=figsize, layout="constrained")
    return ax.figure, ax


# ------------------------------------------------------------------ plot data


def eq_curves_data(
    freq_hz: Any, gain_db: Any, q: Any, sample_rate: float, freqs: np.ndarray | None = None, num: int = 512
) -> dict[str, np.ndarray]:
    """Magnitude response of the six-band EQ, per band and in total.

    Args:
        freq_hz, gain_db, q: six values each (bands in the order of ``params.BAND_TYPES``).
        freqs: frequencies (Hz) to evaluate at; default ``num`` log-spaced points
            from 10 Hz to 0.499 fs.

    Returns:
        ``{"freq_hz": (F,), "bands_db": (6, F), "total_db": (F,)}``; the total is the
        sum of the bands in dB (the biquads are in series).
    """
    if freqs is None:
        freqs = np.geomspace(10.0, 0.499 * sample_rate, num)
    omega = torch.as_tensor(2 * math.pi * np.asarray(freqs, float) / sample_rate, dtype=torch.float64)
    settings = [torch.as_tensor(np.asarray(v, float).reshape(6), dtype=torch.float64) for v in (freq_hz, gain_db, q)]
    bands = np.stack([
        20 * np.log10(np.abs(biquad_response(kind, settings[0][i : i + 1], settings[1][i : i + 1],
                                             settings[2][i : i + 1], sample_rate, omega)[0].numpy()) + 1e-12)
        for i, kind in enumerate(biquads.BAND_TYPES)
    ])
    return {"freq_hz": np.asarray(freqs, float), "bands_db": bands, "total_db": bands.sum(0)}


def static_curve_data(
    threshold_db: float, ratio: float, knee_db: float, makeup_db: float = 0.0, levels_db: np.ndarray | None = None
) -> dict[str, np.ndarray]:
    """The compressor's static curve: ``{"input_db": (L,), "output_db": (L,)}`` (Giannoulis et al. 2012)."""
    if levels_db is None:
        levels_db = np.linspace(-72.0, 6.0, 313)
    level = torch.as_tensor(levels_db, dtype=torch.float64)[None]
    settings = (torch.tensor([float(v)], dtype=torch.float64) for v in (threshold_db, ratio, knee_db))
    change = gain_computer(level, *settings)
    return {"input_db": np.asarray(levels_db, float), "output_db": (level + change)[0].numpy() + makeup_db}


def compressor_gain_data(
    audio: Any, sample_rate: float, threshold_db: float, ratio: float, attack_ms: float, release_ms: float,
    knee_db: float, makeup_db: float = 0.0,
) -> dict[str, np.ndarray]:
    """What :func:`diffmst_lite.dsp.dynamics.compressor` does to ``audio``, sample by sample.

    The same steps as the console (10 ms RMS detector, soft-knee gain computer,
    attack/release smoothing), but returning the intermediate signals; a test checks
    that ``audio * gain`` equals the console's output.

    Returns:
        ``{"time_s": (N,), "level_db": (N,) detected level, "gain_reduction_db": (N,) <= 0
        (smoothed, without makeup), "gain": (N,) linear gain applied, makeup included}``.
    """
    x = torch.as_tensor(_np(audio), dtype=torch.float64)
    x = x.reshape(1, -1, x.shape[-1])
    one = lambda v: torch.tensor([float(v)], dtype=torch.float64)  # noqa: E731
    level_db, smoothed = compressor_gain(x, sample_rate, one(threshold_db), one(ratio), one(attack_ms),
                                         one(release_ms), one(knee_db))
    smoothed = smoothed[0]
    return {"time_s": np.arange(x.shape[-1]) / sample_rate, "level_db": level_db[0].numpy(),
            "gain_reduction_db": 20 * np.log10(smoothed.numpy()), "gain": smoothed.numpy() * 10 ** (makeup_db / 20)}


def pan_laws(positions: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Left/right linear gains of three pan laws at ``positions`` in [-1, 1].

    ``linear`` (-6 dB at centre), ``constant power`` (-3 dB) and the -4.5 dB law the
    console uses (:func:`diffmst_lite.dsp.panning.pan_gains`).
    """
    p = (np.asarray(positions, float) + 1) / 2
    left, right = pan_gains(torch.as_tensor(positions, dtype=torch.float64))
    return {
        "linear (−6 dB)": (1 - p, p),
        "constant power (−3 dB)": (np.cos(p * np.pi / 2), np.sin(p * np.pi / 2)),
        "−4.5 dB (ours)": (left.numpy(), right.numpy()),
    }


# -------------------------------------------------------------------- figures


def waveform_figure(signals: dict[str, Any], sample_rate: float, title: str = "Waveform") -> Figure:
    """One row per named signal (``(N,)`` or ``(C, N)``; channels overlaid), amplitude vs time (s)."""
    fig, axes = plt.subplots(len(signals), 1, figsize=(7, 1.6 + 1.3 * len(signals)), sharex=True,
                             squeeze=False, layout="constrained")
    for ax, (name, audio) in zip(axes[:, 0], signals.items()):
        data = np.atleast_2d(_np(audio))
        t = np.arange(data.shape[-1]) / sample_rate
        labels = ["L", "R"] if data.shape[0] == 2 else [f"ch{i}" for i in range(data.shape[0])]
        for channel, label in zip(data, labels):
            ax.plot(t, channel, lw=0.5, alpha=0.8, label=label if data.shape[0] > 1 else None)
        ax.set_ylabel("amplitude (FS)")
        ax.set_title(name, fontsize=9, loc="left")
        if data.shape[0] > 1:
            ax.legend(loc="upper right", fontsize=7)
    axes[-1, 0].set_xlabel("time (s)")
    fig.suptitle(title)
    return fig


def spectrogram_figure(audio: Any, sample_rate: float, title: str = "Spectrogram", n_fft: int = 2048,
                       ax: Axes | None = None, top_db: float = 80.0) -> Figure:
    """Magnitude spectrogram of the channel mean, drawn by ``librosa.display.specshow``.

    STFT with a Hann window of ``n_fft`` samples and a hop of ``n_fft // 4``
    (``librosa.stft``, centred frames). Axes: time (s) and frequency (Hz) on a log
    scale (linear below 65 Hz, librosa's ``y_axis="log"``); colour: level in dB re
    full scale, where 0 dB is the peak bin of a full-scale sine (``|X| = n_fft / 4``
    for a Hann window), down to ``top_db`` below the loudest bin.

    Args:
        audio: ``(samples,)`` or ``(channels, samples)``, full scale 1.0.
        sample_rate: Hz.
    """
    import librosa  # imported here: librosa starts numba, which a plain import of this module should not
    import librosa.display

    fig, ax = _axis(ax)
    x = np.atleast_2d(_np(audio)).mean(0)
    hop = n_fft // 4
    magnitude = np.abs(librosa.stft(x, n_fft=n_fft, hop_length=hop, window="hann"))
    db = librosa.amplitude_to_db(magnitude, ref=n_fft / 4, amin=1e-5, top_db=top_db)
    image = librosa.display.specshow(db, sr=sample_rate, hop_length=hop, n_fft=n_fft, x_axis="s", y_axis="log",
                                     ax=ax, cmap="magma")
    fig.colorbar(image, ax=ax, format="%+.0f", label="level (dB re full scale)")
    ax.set(xlabel="time (s)", ylabel="frequency (Hz)", title=title)
    return fig


def pan_law_figure(ax: Axes | None = None) -> Figure:
    """Left and right gains (dB) against pan position for the three laws of :func:`pan_laws`."""
    fig, ax = _axis(ax, figsize=(7, 4))
    positions = np.linspace(-1, 1, 201)
    for (name, (left, right)), colour in zip(pan_laws(positions).items(), ("tab:gray", "tab:blue", "tab:red")):
        ax.plot(positions, 20 * np.log10(left + 1e-9), color=colour, label=f"{name}: left")
        ax.plot(positions, 20 * np.log10(right + 1e-9), color=colour, ls="--", label=f"{name}: right")
    ax.set(xlabel="pan position (−1 = hard left, +1 = hard right)", ylabel="gain (dB)", ylim=(-24, 2),
           title="Pan laws: gain of each side")
    ax.axvline(0, color="k", lw=0.5)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=3, loc="upper center", bbox_to_anchor=(0.5, -0.2))
    return fig


def eq_response_figure(data: dict[str, np.ndarray], sample_rate: float | None = None, show_ranges: bool = False,
                       title: str = "Parametric EQ: magnitude response") -> Figure:
    """Per-band (thin) and total (thick) magnitude response (dB) on a log frequency axis (Hz).

    Args:
        data: from :func:`eq_curves_data`.
        show_ranges: with ``sample_rate``, add a strip under the plot with each band's
            frequency range (:func:`diffmst_lite.console.params.band_freq_ranges`).
    """
    if show_ranges and sample_rate:
        fig, (ax, strip) = plt.subplots(2, 1, figsize=(7, 4.4), sharex=True, height_ratios=(3, 1.2),
                                        layout="constrained")
    else:
        fig, ax = plt.subplots(figsize=(7, 3.4), layout="constrained")
    f = data["freq_hz"]
    for band, curve, colour in zip(params.BAND_NAMES, data["bands_db"], BAND_COLOURS):
        ax.semilogx(f, curve, color=colour, lw=0.9, alpha=0.8, label=band)
    ax.semilogx(f, data["total_db"], color="k", lw=2, label="total")
    ax.set(ylabel="gain (dB)", ylim=(-15, 15), title=title)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, ncol=4, loc="lower left")
    if show_ranges and sample_rate:
        for i, ((low, high), colour) in enumerate(zip(params.band_freq_ranges(sample_rate), BAND_COLOURS)):
            strip.semilogx([low, high], [i, i], color=colour, lw=6, solid_capstyle="butt")
        strip.set_yticks(range(6), params.BAND_NAMES, fontsize=7)
        strip.invert_yaxis()
        strip.axvline(sample_rate / 2, color="k", ls=":", lw=1)
        strip.set(xlabel="frequency (Hz)", title=f"band frequency ranges at {sample_rate:g} Hz (dotted: fs/2)")
        strip.title.set_fontsize(8)
    else:
        ax.set_xlabel("frequency (Hz)")
    return fig


def compressor_curve_figure(threshold_db: float, ratio: float, knee_db: float, makeup_db: float = 0.0,
                            ax: Axes | None = None) -> Figure:
    """Static curve, output level (dB) vs input level (dB), threshold and knee marked."""
    fig, ax = _axis(ax, figsize=(4.5, 4))
    data = static_curve_data(threshold_db, ratio, knee_db, makeup_db)
    ax.plot(data["input_db"], data["input_db"], color="gray", ls="--", lw=0.8, label="no compression")
    ax.plot(data["input_db"], data["output_db"], color="tab:red", lw=2, label=f"ratio {ratio:.2g}:1")
    ax.axvspan(threshold_db - knee_db / 2, threshold_db + knee_db / 2, color="tab:orange", alpha=0.2,
               label=f"knee ({knee_db:.3g} dB)")
    ax.axvline(threshold_db, color="tab:orange", lw=1, label=f"threshold ({threshold_db:.3g} dB)")
    ax.set(xlabel="input level (dB)", ylabel="output level (dB)", title="Compressor static curve",
           xlim=(data["input_db"][0], data["input_db"][-1]), ylim=(data["input_db"][0], data["input_db"][-1]))
    ax.set_aspect("equal")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left")
    return fig


def gain_reduction_figure(data: dict[str, np.ndarray], threshold_db: float | None = None,
                          ax: Axes | None = None, title: str = "Gain reduction over time") -> Figure:
    """Detected level (dB) and gain reduction (dB) against time (s); ``data`` from :func:`compressor_gain_data`."""
    fig, ax = _axis(ax)
    t = data["time_s"]
    ax.plot(t, data["level_db"], color="tab:gray", lw=0.7, label="detected level")
    if threshold_db is not None:
        ax.axhline(threshold_db, color="tab:orange", lw=1, ls=":", label="threshold")
    ax.plot(t, data["gain_reduction_db"], color="tab:red", lw=1.4, label="gain reduction")
    ax.set(xlabel="time (s)", ylabel="level / gain (dB)", ylim=(-70, 3), title=title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    return fig


def mixer_figure(mix: Any, sample_rate: float, names: list[str], gains_db: Any, pans: Any,
                 title: str = "Mix") -> Figure:
    """The stereo mix over time (s) and the tracks' positions: pan (L..R) vs fader gain (dB).

    Full scale (±1) is marked; a mix of several tracks can exceed it (the tracks add
    up before any master gain), and then a note on the plot says so.
    """
    fig, (wave, stage) = plt.subplots(1, 2, figsize=(9, 3.2), width_ratios=(1.7, 1), layout="constrained")
    data = np.atleast_2d(_np(mix))
    t = np.arange(data.shape[-1]) / sample_rate
    for channel, label in zip(data, ("L", "R")):
        wave.plot(t, channel, lw=0.5, alpha=0.8, label=label)
    wave.axhline(1.0, color="k", ls=":", lw=0.8, label="±1 FS")
    wave.axhline(-1.0, color="k", ls=":", lw=0.8)
    wave.set(xlabel="time (s)", ylabel="amplitude (FS)", title=title)
    peak = float(np.abs(data).max()) if data.size else 0.0
    if peak > 1.0:
        wave.text(0.01, 0.02, f"peak {peak:.1f} FS: the tracks add up beyond ±1 FS;\n"
                  "the player lowers the mix so that it does not clip",
                  transform=wave.transAxes, fontsize=7, va="bottom",
                  bbox=dict(facecolor="white", alpha=0.8, edgecolor="none"))
    wave.legend(loc="upper right", fontsize=7)
    gains_db, pans = np.asarray(gains_db, float), np.asarray(pans, float)
    stage.scatter(pans, gains_db, color="tab:blue")
    spots: list[tuple[float, float, list[str]]] = []  # a track within 0.15 (pan) and 2 dB of a spot joins its label
    for name, x, y in zip(names, pans, gains_db):
        spot = next((s for s in spots if abs(s[0] - x) <= 0.15 and abs(s[1] - y) <= 2.0), None)
        if spot:
            spot[2].append(name)
        else:
            spots.append((float(x), float(y), [name]))
    for x, y, here in spots:
        # a stereo pair at one spot: "bass_L", "bass_R" -> "bass_L/R"; one name per line (labels
        # from the left and the right both point inwards and would run into each other)
        here = [n + "/R" if n.endswith("_L") and n[:-1] + "R" in here else n
                for n in here if not (n.endswith("_R") and n[:-1] + "L" in here)]
        right = x > 0.3  # labels point inwards, centred on their dot
        stage.annotate("\n".join(here), (x, y), fontsize=6, xytext=(-5 if right else 5, 0),
                       textcoords="offset points", ha="right" if right else "left", va="center")
    stage.set(xlim=(-1.15, 1.15), ylim=(min(-24, gains_db.min() - 3), max(12, gains_db.max() + 3)),
              xlabel="pan (−1 = L, +1 = R)", ylabel="fader (dB)", title="Tracks")
    stage.grid(alpha=0.3)
    return fig


def settings_table_figure(sheet: dict[str, Any], title: str = "Mixing sheet") -> Figure:
    """A table of a mixing sheet: one row per track (and the master), main settings in physical units."""
    header = ["track", "gain (dB)", "pan", "EQ gains (dB), LS B0 B1 B2 B3 HS", "thr (dB)", "ratio",
              "att/rel (ms)", "makeup (dB)"]

    def row(name: str, gain: str, pan: str, strip: dict) -> list[str]:
        comp = strip["compressor"]
        return [name, gain, pan, " ".join(f"{b['gain_db']:+.1f}" for b in strip["eq"]), f"{comp['threshold_db']:.1f}",
                f"{comp['ratio']:.2f}", f"{comp['attack_ms']:.0f}/{comp['release_ms']:.0f}", f"{comp['makeup_db']:.1f}"]

    rows = [row(t["name"], f"{t['gain_db']:+.1f}", f"{t['pan']:+.2f}", t) for t in sheet["tracks"]]
    master = sheet["master"]
    rows.append(row("master", f"{master['gain_in_db']:+.1f} / {master['gain_out_db']:+.1f}", "", master))
    fig, ax = plt.subplots(figsize=(10, 0.6 + 0.28 * (len(rows) + 1)), layout="constrained")
    ax.axis("off")
    table = ax.table(cellText=rows, colLabels=header, loc="center", cellLoc="center")
    table.auto_set_font_size(False)
    table.set_fontsize(8)
    table.auto_set_column_width(list(range(len(header))))
    ax.set_title(f"{title} ({sheet['sample_rate']} Hz; master gain: in / out)", fontsize=10)
    return fig


def training_curves_figure(runs: dict[str, Sequence[dict]], key: str = "loss", window: int = 10,
                           ax: Axes | None = None, ylabel: str = "loss (dimensionless)",
                           title: str = "Training curves", log_scale: bool = False) -> Figure:
    """Training curves: ``key`` per logged step, one colour per run (or training phase).

    ``runs`` maps a label to log rows (``train``'s ``history`` or the rows of a
    ``log.csv``; numbers or their strings) with ``step`` and ``key``. Single batches
    hold different songs and settings, so the values jump: each run is drawn thin
    and its running mean over ``min(window, rows // 3)`` logged rows thick. More than 4
    runs put the legend below the axes; more than 10 get a colour each from ``tab20``.
    Axes: optimiser step; ``key`` (``ylabel``), on a log scale if ``log_scale``.
    """
    many = len(runs) > 4  # e.g. the phases of a long run: a colour each, the legend below the plot
    fig, ax = _axis(ax, figsize=(8, 4.2 if many else 3.4))
    tab20 = plt.get_cmap("tab20").colors  # pairs of a dark and a light shade: the ten dark ones first
    # up to 10 runs: the axes' colour cycle (which goes on across calls that share ``ax``)
    colours = itertools.cycle(tab20[0::2] + tab20[1::2] if len(runs) > 10 else [None])
    for (label, rows), colour in zip(runs.items(), colours):
        steps = np.array([float(row["step"]) for row in rows])
        values = np.array([float(row[key]) for row in rows])
        line, = ax.plot(steps, values, color=colour, alpha=0.35, lw=0.8, marker="." if len(rows) <= 30 else None)
        width = max(1, min(window, len(values) // 3))
        smooth = np.convolve(values, np.ones(width) / width, mode="valid")
        ax.plot(steps[width - 1:], smooth, color=line.get_color(), lw=2,
                label=f"{label} (running mean of {width})")
    ax.set(xlabel="optimiser step", ylabel=ylabel, title=title)
    if log_scale:
        ax.set_yscale("log")
    ax.grid(alpha=0.3, which="both")
    if many:
        ax.legend(fontsize=7, ncol=3, loc="upper center", bbox_to_anchor=(0.5, -0.18))
    else:
        ax.legend(fontsize=8)
    return fig
