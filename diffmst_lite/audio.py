"""Audio in and out, input validation and loudness.

- Files: :func:`load_audio` / :func:`save_audio` (soundfile; float WAV out, never
  overwriting without ``force``), with errors that name the file and the problem.
- Loudness of files: ITU-R BS.1770-4 integrated loudness via pyloudnorm.
- Loudness inside training: :func:`loudness` is a differentiable K-weighted
  mean-square (no gating), computed in the frequency domain by Parseval's theorem:
  one FFT per channel, finite gradients on silence.
"""

from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path

import numpy as np
import torch

from .console import biquad_response

SILENCE_LUFS = -70.0  # BS.1770's absolute gate: anything quieter counts as silence


class AudioError(ValueError):
    """Bad audio input: the message names the file or argument and the problem."""


def validate_audio(x: torch.Tensor, name: str = "audio", dims: int | None = None) -> torch.Tensor:
    """Check ``x`` is a non-empty, finite float tensor (with ``dims`` axes); return it.

    Raises:
        AudioError: naming ``name`` and what is wrong.
    """
    if not isinstance(x, torch.Tensor):
        raise AudioError(f"{name}: expected a torch.Tensor, got {type(x).__name__}")
    if dims is not None and x.dim() != dims:
        raise AudioError(f"{name}: expected {dims} axes, got shape {tuple(x.shape)}")
    if x.numel() == 0 or x.shape[-1] == 0:
        raise AudioError(f"{name}: is empty (shape {tuple(x.shape)})")
    if not torch.is_floating_point(x):
        raise AudioError(f"{name}: expected floating-point samples, got {x.dtype}")
    if not torch.isfinite(x).all():
        raise AudioError(f"{name}: contains NaN or infinite samples")
    return x


def load_audio(path: str | os.PathLike, sample_rate: int | None = None) -> tuple[torch.Tensor, int]:
    """Read an audio file as ``(channels, samples)`` float32.

    Args:
        path: any format libsndfile reads (WAV, FLAC, OGG, ...).
        sample_rate: if given, resample to this rate (polyphase, scipy).

    Returns:
        ``(audio, sample_rate)``.

    Raises:
        AudioError: missing or unreadable file, empty or non-finite audio.
    """
    import soundfile as sf

    path = Path(path)
    if not path.is_file():
        raise AudioError(f"{path}: no such file")
    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as error:  # libsndfile's messages are long; keep the gist
        raise AudioError(f"{path}: cannot read audio ({str(error).splitlines()[0]})") from None
    audio = validate_audio(torch.from_numpy(np.ascontiguousarray(data.T)), name=str(path))
    if sample_rate is not None and sample_rate != rate:
        audio, rate = resample(audio, rate, sample_rate), sample_rate
    return audio, rate


def resample(x: torch.Tensor, from_rate: int, to_rate: int) -> torch.Tensor:
    """Resample ``x (..., samples)`` from ``from_rate`` to ``to_rate`` Hz (not differentiable)."""
    from scipy.signal import resample_poly

    g = math.gcd(int(from_rate), int(to_rate))
    y = resample_poly(x.detach().cpu().numpy(), int(to_rate) // g, int(from_rate) // g, axis=-1)
    return torch.from_numpy(np.ascontiguousarray(y, dtype=np.float32))


def fit_length(x: np.ndarray, n: int) -> np.ndarray:
    """Crop or zero-pad ``x (..., samples)`` to ``n`` samples."""
    return x[..., :n] if x.shape[-1] >= n else np.pad(x, [(0, 0)] * (x.ndim - 1) + [(0, n - x.shape[-1])])


def save_audio(path: str | os.PathLike, audio: torch.Tensor, sample_rate: int, force: bool = False) -> Path:
    """Write ``audio (channels, samples)`` as a 32-bit float WAV (nothing clips on disk).

    The file is written to a temporary name and renamed, so a failed write never
    leaves half a file; an existing file is kept unless ``force``.

    Raises:
        FileExistsError: ``path`` exists and ``force`` is False.
        AudioError: the audio is empty or not finite.
    """
    import soundfile as sf

    path = Path(path)
    if path.exists() and not force:
        raise FileExistsError(f"{path}: exists; use --force (force=True) to overwrite")
    audio = validate_audio(torch.as_tensor(audio), name="audio to save")
    if audio.dim() == 1:
        audio = audio.unsqueeze(0)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".wav", dir=path.parent)
    os.close(fd)
    try:
        sf.write(tmp, audio.detach().cpu().numpy().T, int(sample_rate), subtype="FLOAT")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


# ---------------------------------------------------------------- loudness


def integrated_loudness(audio: torch.Tensor | np.ndarray, sample_rate: int) -> float:
    """ITU-R BS.1770-4 integrated loudness (LUFS, gated) of ``(channels, samples)`` via pyloudnorm.

    Signals shorter than one 400 ms gating block are padded with silence; a
    silent signal returns -inf.
    """
    import pyloudnorm

    data = np.asarray(audio.detach().cpu() if isinstance(audio, torch.Tensor) else audio, dtype=np.float64)
    data = np.atleast_2d(data).T
    block = int(0.4 * sample_rate) + 1
    if data.shape[0] < block:
        data = np.pad(data, ((0, block - data.shape[0]), (0, 0)))
    return float(pyloudnorm.Meter(sample_rate).integrated_loudness(data))


def normalize_file_loudness(audio: torch.Tensor, sample_rate: int, target_lufs: float = -16.0) -> torch.Tensor:
    """Scale ``audio (channels, samples)`` to ``target_lufs`` (BS.1770, gated); silence stays silent."""
    measured = integrated_loudness(audio, sample_rate)
    if not math.isfinite(measured):
        return audio
    return audio * 10 ** ((target_lufs - measured) / 20)


def k_weighting_power(sample_rate: float, num_bins: int, device=None) -> torch.Tensor:
    """|K(f)|^2 of the BS.1770 K-weighting filter on ``num_bins`` frequencies 0..fs/2 (float64).

    The pre-filter (high shelf, +4 dB above ~1.5 kHz) and RLB high-pass (38 Hz),
    with the parameters pyloudnorm uses.
    """
    omega = torch.linspace(0, math.pi, num_bins, dtype=torch.float64, device=device)
    one = torch.ones(1, dtype=torch.float64, device=device)
    shelf = biquad_response("high_shelf", 1500.0 * one, 4.0 * one, one / math.sqrt(2), sample_rate, omega)
    high_pass = biquad_response("high_pass", 38.0 * one, 0.0 * one, 0.5 * one, sample_rate, omega)
    return (shelf * high_pass).abs().square()[0]


def loudness(x: torch.Tensor, sample_rate: float) -> torch.Tensor:
    """Differentiable loudness (LUFS) of ``x (batch, channels, samples)`` -> ``(batch,)``.

    BS.1770 without gating: ``-0.691 + 10 log10(sum over channels of the mean square
    of the K-weighted signal)``, the mean square taken from the spectrum (Parseval).
    Equals pyloudnorm's value on steady material; clamped below at -70 LUFS so that
    silence has a finite level and gradient.
    """
    x = validate_audio(x, "loudness input", dims=3)
    n = x.shape[-1]
    spectrum = torch.fft.rfft(x, n=n)
    weight = k_weighting_power(sample_rate, spectrum.shape[-1], x.device).to(x.dtype)
    # rfft keeps one side: every bin but DC (and Nyquist for even n) counts twice.
    sides = torch.full_like(weight, 2.0)
    sides[0] = 1.0
    if n % 2 == 0:
        sides[-1] = 1.0
    mean_square = (spectrum.real.square() + spectrum.imag.square()) * weight * sides
    power = mean_square.sum(-1).sum(-1) / (n * n)
    return (-0.691 + 10 * torch.log10(power + 1e-12)).clamp_min(SILENCE_LUFS)


def loudness_normalize(x: torch.Tensor, sample_rate: float, target_lufs: float = -16.0) -> torch.Tensor:
    """Scale each item of ``x (batch, channels, samples)`` to ``target_lufs`` (differentiable).

    Diff-MST normalises prediction and reference to the same loudness before the
    loss, so the loss does not have to learn a level mismatch (DESIGN.md §5).
    """
    gain_db = target_lufs - loudness(x, sample_rate)
    return x * torch.pow(10.0, gain_db / 20.0)[:, None, None]
