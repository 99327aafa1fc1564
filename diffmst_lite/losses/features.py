"""Audio features of a stereo mix: the ingredients of the audio-feature (AF) loss.

Diff-MST (Vanka et al., ISMIR 2024, §3.3) compares a mix and a reference by a few
features that describe mix *style* rather than content: level (RMS), dynamics
(crest factor), spatial image (stereo width and imbalance) and spectral balance
(Bark spectrum). All functions take mixes ``(batch, 2, samples)`` and are finite,
with finite gradients, on silence and on mono-in-stereo signals.
"""

from __future__ import annotations

import functools

import torch

from diffmst_lite.dsp.fftconv import real_fft
from diffmst_lite.dsp.loudness import rms_db

EPS = 1e-8
BARK_FLOOR_DBFS = -90.0  # floor of the log Bark spectrum, dB re a full-scale sine's bin (see bark_spectrum)
LOG_FLOOR = 10.0 ** (BARK_FLOOR_DBFS / 20)  # the same floor as a linear magnitude (3.2e-5)
NUM_BARK_BANDS = 24


def _check_stereo(x: torch.Tensor) -> None:
    if x.dim() != 3 or x.shape[1] != 2:
        raise ValueError(f"expected a stereo mix (batch, 2, samples), got shape {tuple(x.shape)}")


def rms(x: torch.Tensor, db: bool = True) -> torch.Tensor:
    """RMS level per channel: ``(batch, 2, samples)`` -> ``(batch, 2)``.

    ``db=True``: in dB, ``10 log10(mean(x^2) + eps)`` (the square root is taken
    inside the log, so silence gives -80 dB with a finite gradient).
    ``db=False``: linear, ``sqrt(mean(x^2) + eps)`` (full-scale units; silence 1e-4),
    as in the official Diff-MST code and the AF loss's default.

    Chapter 7: The audio-feature loss.
    """
    _check_stereo(x)
    return rms_db(x, EPS) if db else (x.square().mean(-1) + EPS).sqrt()


def crest_factor(x: torch.Tensor) -> torch.Tensor:
    """Crest factor (peak over RMS) in dB per channel: ``(batch, 2, samples)`` -> ``(batch, 2)``.

    3 dB for a sine, 0 dB for silence (both levels sit on the same floor).

    Chapter 7: The audio-feature loss.
    """
    _check_stereo(x)
    peak_db = 10.0 * torch.log10(x.square().amax(-1) + EPS)
    return peak_db - rms(x)


def stereo_width(x: torch.Tensor) -> torch.Tensor:
    """Stereo width ``E[(L - R)^2] / E[(L + R)^2]``: ``(batch, 2, samples)`` -> ``(batch,)``.

    0 for identical channels (mono), 1 for one channel alone, larger for
    out-of-phase content.

    Chapter 7: The audio-feature loss.
    """
    _check_stereo(x)
    side = (x[:, 0] - x[:, 1]).square().mean(-1)
    mid = (x[:, 0] + x[:, 1]).square().mean(-1)
    return side / (mid + EPS)


def stereo_imbalance(x: torch.Tensor) -> torch.Tensor:
    """Stereo imbalance ``(E[R^2] - E[L^2]) / (E[R^2] + E[L^2])`` in [-1, 1]: ``(batch,)``.

    -1 for a left-only signal, +1 for right-only, 0 for a balanced one.

    Chapter 7: The audio-feature loss.
    """
    _check_stereo(x)
    left, right = x[:, 0].square().mean(-1), x[:, 1].square().mean(-1)
    return (right - left) / (right + left + EPS)


def traunmuller_bark(freq_hz: torch.Tensor) -> torch.Tensor:
    """Traunmüller (1990) Bark scale: ``z = 26.81 f / (1960 + f) - 0.53``."""
    return 26.81 * freq_hz / (1960.0 + freq_hz) - 0.53


def bark_band_edges(sample_rate: float, num_bands: int = NUM_BARK_BANDS) -> torch.Tensor:
    """``num_bands + 1`` band edges in Hz, equally spaced in Bark from 20 Hz to min(20 kHz, fs/2)."""
    top = min(20000.0, sample_rate / 2)
    z = torch.linspace(float(traunmuller_bark(torch.tensor(20.0))), float(traunmuller_bark(torch.tensor(top))),
                       num_bands + 1, dtype=torch.float64)
    edges = 1960.0 * (z + 0.53) / (26.28 - z)  # inverse of traunmuller_bark
    edges[0], edges[-1] = 20.0, top  # exact ends despite rounding
    return edges


def bark_filterbank(sample_rate: float, n_fft: int, num_bands: int = NUM_BARK_BANDS) -> torch.Tensor:
    """Rectangular Bark filterbank ``(num_bands, n_fft // 2 + 1)``; each row averages its bins.

    A band narrower than the bin spacing takes the nearest bin, so no band is empty.
    """
    return _bark_filterbank(sample_rate, n_fft, num_bands).clone()


@functools.lru_cache(maxsize=16)
def _bark_filterbank(sample_rate: float, n_fft: int, num_bands: int) -> torch.Tensor:
    """:func:`bark_filterbank`, built once per shape (a loop over bands, about 1 ms) and
    shared by every loss and descriptor call: callers must not modify it."""
    edges = bark_band_edges(sample_rate, num_bands)
    freqs = torch.fft.rfftfreq(n_fft, 1.0 / sample_rate).double()
    bank = torch.zeros(num_bands, freqs.numel(), dtype=torch.float64)
    for band in range(num_bands):
        inside = (freqs >= edges[band]) & (freqs < edges[band + 1])
        if not inside.any():
            centre = (edges[band] + edges[band + 1]) / 2
            inside = (freqs - centre).abs() == (freqs - centre).abs().min()
        bank[band, inside] = 1.0 / inside.sum()
    return bank.float()


def bark_spectrum(x: torch.Tensor, sample_rate: float, n_fft: int = 2048, hop: int = 512) -> torch.Tensor:
    """Log Bark spectrum of mid and side: ``(batch, 2, samples)`` -> ``(batch, 2, 24)``.

    Time-averaged STFT magnitude (Hann window) of mid ``(L + R) / 2`` and side
    ``(L - R) / 2``, averaged into 24 Traunmüller Bark bands between 20 Hz and
    min(20 kHz, fs/2) (none above Nyquist), then ``log(. + LOG_FLOOR)`` (natural log).

    The magnitude is scaled so that a sine of amplitude ``A`` peaks at ``A`` in its
    bin (the STFT divided by half the window's sum), and the floor ``LOG_FLOOR`` is
    ``BARK_FLOOR_DBFS`` = -90 dBFS on that scale, near the noise floor of 16-bit
    audio: content far below hearing reads as the floor and costs nothing. A band
    averages its bins, and noise spreads over all of them: white noise reads about
    26 dB below its RMS level (n_fft = 2048), so the floor equals white noise at
    about -64 dBFS RMS. Inside the AF loss both mixes are first brought to -16 LUFS,
    so the floor sits about 74 dB below the programme's loudness.

    Chapter 7: The audio-feature loss.
    """
    _check_stereo(x)
    mid_side = torch.stack([x[:, 0] + x[:, 1], x[:, 0] - x[:, 1]], 1) / 2
    batch, channels, num_samples = mid_side.shape
    bands = log_bark_bands(mid_side.reshape(-1, num_samples), sample_rate, n_fft, min(hop, n_fft // 4))
    return bands.reshape(batch, channels, -1)


def hann_stft(signals: torch.Tensor, window: torch.Tensor, hop: int) -> torch.Tensor:
    """One-sided STFT of ``signals (M, samples)`` -> ``(M, frames, n_fft // 2 + 1)`` complex,
    ``n_fft = len(window)``, frames centred on multiples of ``hop`` (zero padding).

    The values of ``torch.stft(..., center=True, pad_mode="constant")`` (transposed), as
    windowed frames and :func:`~diffmst_lite.dsp.fftconv.real_fft`, so that the gradient
    costs one inverse real FFT: ``torch.stft``'s backward takes a complex FFT of the
    zero-padded gradient, which made the Bark spectrum of a training batch (4 x 2 s at
    22.05 kHz) take 2.2x as long, forward and backward (benchmarks/README.md).
    """
    pad = len(window) // 2
    frames = torch.nn.functional.pad(signals, (pad, pad)).unfold(-1, len(window), hop)
    return real_fft(frames * window)


def log_bark_bands(signals: torch.Tensor, sample_rate: float, n_fft: int = 2048, hop: int = 512) -> torch.Tensor:
    """Log Bark spectrum of mono signals: ``(M, samples)`` -> ``(M, 24)``, natural log.

    The computation of :func:`bark_spectrum` (which applies it to mid and side):
    time-averaged Hann STFT magnitude, scaled so a sine of amplitude ``A`` peaks at
    ``A``, averaged into the Bark bands, ``log(. + LOG_FLOOR)``.
    """
    window = torch.hann_window(n_fft, device=signals.device, dtype=signals.dtype)
    spec = hann_stft(signals, window, hop)  # (M, frames, bins)
    magnitude = torch.sqrt(spec.real.square() + spec.imag.square() + EPS * EPS).mean(-2) / (window.sum() / 2)
    bank = _bark_filterbank(sample_rate, n_fft, NUM_BARK_BANDS).to(signals.device, signals.dtype)
    return torch.log(magnitude @ bank.T + LOG_FLOOR)


def all_features(x: torch.Tensor, sample_rate: float, rms_db: bool = True) -> dict[str, torch.Tensor]:
    """Every AF feature of ``x (batch, 2, samples)``, keyed ``rms`` (in dB, or linear
    with ``rms_db=False``), ``crest_factor``, ``stereo_width``, ``stereo_imbalance``,
    ``bark_spectrum``.

    Chapter 7: The audio-feature loss.
    """
    return {
        "rms": rms(x, db=rms_db),
        "crest_factor": crest_factor(x),
        "stereo_width": stereo_width(x),
        "stereo_imbalance": stereo_imbalance(x),
        "bark_spectrum": bark_spectrum(x, sample_rate),
    }
