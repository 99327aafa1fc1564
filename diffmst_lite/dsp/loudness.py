"""Loudness: BS.1770 for files (gated), a differentiable K-weighted approximation for training, RMS in dB (docs/design.md §5)."""

from __future__ import annotations

import functools
import math

import numpy as np
import torch

from diffmst_lite.dsp.biquads import k_weighting, k_weighting_power
from diffmst_lite.dsp.fftconv import real_fft
from diffmst_lite.files.audio import validate_audio

SILENCE_LUFS = -70.0  # BS.1770's absolute gate: anything quieter counts as silence


# ---------------------------------------------------------------- loudness


BS1770_BLOCK_SECONDS, BS1770_STEP = 0.4, 0.25  # gating blocks of 400 ms, 75 % overlap
BS1770_CHANNEL_GAINS = (1.0, 1.0, 1.0, 1.41, 1.41)  # L, R, C, Ls, Rs


def integrated_loudness(audio: torch.Tensor | np.ndarray, sample_rate: int) -> float:
    """ITU-R BS.1770-4 integrated loudness (LUFS, gated) of ``(channels, samples)``.

    K-weighting (:func:`~diffmst_lite.dsp.biquads.k_weighting`), mean squares of 400 ms
    blocks with 75 % overlap, an absolute gate at -70 LUFS and a relative gate 10 LU
    below the loudness of the blocks that pass it; the blocks as pyloudnorm cuts them,
    and the same value to within 0.001 LU (tests/test_losses.py), without importing
    scipy.signal (a second per command). Signals shorter than one block are padded
    with silence; a silent signal returns -inf.

    Chapter 1: Multitrack audio and mix style.
    """
    data = torch.as_tensor(np.asarray(audio.detach().cpu() if isinstance(audio, torch.Tensor) else audio,
                                      dtype=np.float64))
    data = data.reshape(-1, data.shape[-1])
    block = int(BS1770_BLOCK_SECONDS * sample_rate) + 1
    if data.shape[-1] < block:
        data = torch.nn.functional.pad(data, (0, block - data.shape[-1]))
    energy = torch.nn.functional.pad(k_weighting(data, sample_rate).square().cumsum(-1), (1, 0)).numpy()
    seconds = data.shape[-1] / sample_rate
    j = np.arange(int(np.round((seconds - BS1770_BLOCK_SECONDS) / (BS1770_BLOCK_SECONDS * BS1770_STEP))) + 1)
    lower = (BS1770_BLOCK_SECONDS * (j * BS1770_STEP) * sample_rate).astype(np.int64)
    upper = np.minimum((BS1770_BLOCK_SECONDS * (j * BS1770_STEP + 1) * sample_rate).astype(np.int64), data.shape[-1])
    mean_square = (energy[:, upper] - energy[:, lower]) / (BS1770_BLOCK_SECONDS * sample_rate)  # (channels, blocks)
    weighted = np.asarray(BS1770_CHANNEL_GAINS[: len(mean_square)]) @ mean_square
    with np.errstate(divide="ignore"):
        block_lufs = -0.691 + 10.0 * np.log10(weighted)
        loud = block_lufs >= SILENCE_LUFS
        if not loud.any():
            return float("-inf")
        relative_gate = -0.691 + 10.0 * np.log10(weighted[loud].mean()) - 10.0
        passed = (block_lufs > relative_gate) & (block_lufs > SILENCE_LUFS)
        return float(-0.691 + 10.0 * np.log10(weighted[passed].mean() if passed.any() else 0.0))


def normalize_file_loudness(audio: torch.Tensor, sample_rate: int, target_lufs: float = -16.0) -> torch.Tensor:
    """Scale ``audio (channels, samples)`` to ``target_lufs`` (BS.1770, gated); silence stays silent."""
    measured = integrated_loudness(audio, sample_rate)
    if not math.isfinite(measured):
        return audio
    return audio * 10 ** ((target_lufs - measured) / 20)


def loudness(x: torch.Tensor, sample_rate: float) -> torch.Tensor:
    """Differentiable loudness (LUFS) of ``x (batch, channels, samples)`` -> ``(batch,)``.

    BS.1770 without gating: ``-0.691 + 10 log10(sum over channels of the mean square
    of the K-weighted signal)``, the mean square taken from the spectrum (Parseval).
    Equals pyloudnorm's value on steady material; clamped below at -70 LUFS so that
    silence has a finite level and gradient.
    """
    x = validate_audio(x, "loudness input", dims=3)
    n = x.shape[-1]
    spectrum = real_fft(x, n)
    mean_square = (spectrum.real.square() + spectrum.imag.square()) * _bin_weights(sample_rate, n, x.dtype, x.device)
    power = mean_square.sum(-1).sum(-1) / (n * n)  # Parseval
    return (-0.691 + 10 * torch.log10(power + 1e-12)).clamp_min(SILENCE_LUFS)


@functools.lru_cache(maxsize=4)
def _bin_weights(sample_rate: float, num_samples: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """What each bin of an ``rfft`` of ``num_samples`` adds to the K-weighted mean square:
    ``|K(f)|^2``, twice for every bin but DC (and Nyquist for even lengths: ``rfft``
    keeps one side). Cached, not to be modified: the float64 sines and cosines of the
    K-weighting's response on every bin took longer than the rest of :func:`loudness`,
    which a training step calls four times on the same length."""
    weight = k_weighting_power(sample_rate, num_samples // 2 + 1, device).to(dtype)
    sides = torch.full_like(weight, 2.0)
    sides[0] = 1.0
    if num_samples % 2 == 0:
        sides[-1] = 1.0
    return weight * sides


def loudness_normalize(x: torch.Tensor, sample_rate: float, target_lufs: float = -16.0) -> torch.Tensor:
    """Scale each item of ``x (batch, channels, samples)`` to ``target_lufs`` (differentiable).

    Diff-MST normalises prediction and reference to the same loudness before the
    loss, so the loss does not have to learn a level mismatch (docs/design.md §5).

    Chapter 7: The audio-feature loss.
    """
    gain_db = target_lufs - loudness(x, sample_rate)
    return x * torch.pow(10.0, gain_db / 20.0)[:, None, None]


def rms_db(x: torch.Tensor | np.ndarray, floor: float = 1e-20) -> torch.Tensor | np.ndarray:
    """RMS level in dBFS of each row of ``x (..., samples)``: ``10 log10(mean(x^2) + floor)``
    (the square root inside the log; ``floor`` 1e-20 is -200 dB). A numpy array is measured
    in float64 and gives a numpy array; a tensor keeps its gradient."""
    if isinstance(x, np.ndarray):
        return rms_db(torch.from_numpy(x).double(), floor).numpy()
    return 10.0 * torch.log10(x.square().mean(-1) + floor)
