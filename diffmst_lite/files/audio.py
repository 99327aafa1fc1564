"""Audio files in and out: loading, saving (float WAV, atomically, never overwriting
without ``force``), input validation with errors that name the file and the problem,
resampling and cropping. Loudness lives in :mod:`diffmst_lite.dsp.loudness`.
"""

from __future__ import annotations

import hashlib
import math
import os
import shutil
import subprocess
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from diffmst_lite.files.atomic import atomic_path, check_output


AUDIO_SUFFIXES = (".wav", ".flac", ".aif", ".aiff", ".ogg", ".opus", ".mp3")  # read by libsndfile (mp3: >= 1.1)
FFMPEG_SUFFIXES = (".m4a",)  # decoded once with ffmpeg (cached as wav)


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
    # NaN and infinities reach the extremes; 40x faster than isfinite(x).all() on a song
    if not all(torch.isfinite(extreme) for extreme in torch.aminmax(x)):
        raise AudioError(f"{name}: contains NaN or infinite samples")
    return x


READ_BLOCK_FRAMES = 2**16  # frames decoded at a time into one reused buffer (512 KB of stereo float32)


class AudioInfo(NamedTuple):
    """An audio file's header: the file to decode (the file itself, or its ffmpeg-decoded
    WAV, :func:`readable_path`) and its layout."""

    readable: Path
    channels: int
    frames: int
    sample_rate: int


def audio_info(path: str | os.PathLike) -> AudioInfo:
    """The header of an audio file (an m4a is decoded to a cached WAV first).

    Raises:
        AudioError: missing or unreadable file.
    """
    path = Path(path)
    if not path.is_file():
        raise AudioError(f"{path}: {'is a directory, not an audio file' if path.is_dir() else 'no such file'}")
    try:
        readable, info = _readable_info(path)
    except AudioError:
        raise
    except Exception as error:
        raise _unreadable(path, error) from None
    return AudioInfo(readable, info.channels, info.frames, info.samplerate)


def _unreadable(path: str | os.PathLike, error: Exception) -> AudioError:
    """The error for a file libsndfile cannot read; its messages are long, so keep the gist."""
    return AudioError(f"{path}: cannot read audio ({str(error).splitlines()[0]})")


def decode_into(path: str | os.PathLike, readable: Path, out: torch.Tensor) -> int:
    """Decode ``readable`` (from :func:`audio_info`) into ``out (channels, frames)`` float32,
    block by block; returns the frames decoded (fewer than ``out`` holds if the file ends
    early). The blocks go through one small buffer, so a song is held once, planar, and
    never also as libsndfile's interleaved copy (a 3-minute stereo file at 44.1 kHz: 63 MB
    less to allocate and fault in).

    Raises:
        AudioError: naming ``path`` if decoding fails.
    """
    import soundfile as sf

    target = out.numpy()
    channels, frames = target.shape
    done = 0
    try:
        with sf.SoundFile(str(readable)) as f:
            buffer = np.empty((min(READ_BLOCK_FRAMES, max(frames, 1)), channels), np.float32)
            while done < frames:
                block = f.read(out=buffer[: frames - done])
                if len(block) == 0:
                    break
                for channel, samples in zip(target, block.T):  # row by row: faster than one transposing copy
                    channel[done : done + len(block)] = samples
                done += len(block)
    except Exception as error:
        raise _unreadable(path, error) from None
    return done


def load_audio(path: str | os.PathLike, sample_rate: int | None = None) -> tuple[torch.Tensor, int]:
    """Read an audio file as ``(channels, samples)`` float32.

    Args:
        path: any format libsndfile reads (WAV, FLAC, OGG, mp3, ...), or m4a and anything else
            ffmpeg decodes (:func:`readable_path`).
        sample_rate: if given, resample to this rate (polyphase, :func:`resample`).

    Returns:
        ``(audio, sample_rate)``.

    Raises:
        AudioError: missing or unreadable file, empty or non-finite audio.
    """
    readable, channels, frames, rate = audio_info(path)
    audio = torch.empty(channels, frames, dtype=torch.float32)
    audio = validate_audio(audio[:, : decode_into(path, readable, audio)].contiguous(), name=str(path))
    if sample_rate is not None and sample_rate != rate:
        audio, rate = resample(audio, rate, sample_rate), sample_rate
    return audio, rate


def readable_path(path: str | os.PathLike) -> Path:
    """``path`` if libsndfile reads it, else its ffmpeg-decoded WAV (:func:`decoded_wav`):
    m4a, and mp3 where libsndfile is older than 1.1."""
    return _readable_info(Path(path))[0]


def _readable_info(path: Path):
    """:func:`readable_path` and libsndfile's header of it, read once."""
    import soundfile as sf

    if path.suffix.lower() not in FFMPEG_SUFFIXES:
        try:
            return path, sf.info(str(path))
        except RuntimeError:  # soundfile.LibsndfileError
            if shutil.which("ffmpeg") is None:
                raise
    decoded = decoded_wav(path)
    return decoded, sf.info(str(decoded))


def decoded_wav(path: str | os.PathLike, cache_dir: str | os.PathLike | None = None) -> Path:
    """``path`` decoded by ffmpeg to a float WAV (native rate and channels), cached by
    path, size and time in ``cache_dir`` (default ``$XDG_CACHE_HOME/diffmst-lite/decoded``).

    Raises:
        AudioError: ffmpeg is missing or cannot decode the file.
    """
    given, path = path, Path(path).resolve()
    if shutil.which("ffmpeg") is None:
        raise AudioError(f"{given}: reading {path.suffix} needs ffmpeg (apt-get install ffmpeg)")
    cache_dir = Path(cache_dir or Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")).expanduser() / "diffmst-lite"
                     / "decoded")
    stat = path.stat()
    key = hashlib.sha1(f"{path}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:16]
    out = cache_dir / f"{path.stem}-{key}.wav"
    if not out.is_file():
        cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(".partial.wav")
        done = subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-y", "-i", str(path), "-vn", "-c:a", "pcm_f32le",
                               str(tmp)], capture_output=True, text=True)
        if done.returncode != 0:
            tmp.unlink(missing_ok=True)
            reason = (done.stderr.strip().splitlines() or ["?"])[-1]
            raise AudioError(f"{given}: cannot read audio (ffmpeg cannot decode it: {reason})")
        tmp.rename(out)
    return out


RESAMPLE_ZEROS = 10  # zero crossings of the sinc on each side, at the lower rate (as scipy's resample_poly)
RESAMPLE_KAISER_BETA = 5.0  # the window's shape parameter (as scipy's resample_poly)


def polyphase_kernel(up: int, down: int, zeros: int = RESAMPLE_ZEROS) -> tuple[torch.Tensor, int]:
    """The interpolation filter of :func:`resample` for the reduced ratio ``up / down``, per output phase.

    Returns:
        ``(kernel, reach)``: ``kernel (up, down + 2 * reach)`` float64 with
        ``kernel[p, i] = s(p * down / up - (i - reach))``, where ``s`` is a sinc low-pass at
        the lower of the two Nyquist frequencies with a Kaiser window of ``zeros`` zero
        crossings each side: output phase ``p`` of input frame ``q`` is
        ``sum_i x[q * down + i - reach] * kernel[p, i]``.
    """
    cutoff = min(1.0, up / down)  # of the input's Nyquist frequency
    half_width = zeros / cutoff  # input samples
    reach = math.ceil(half_width)
    tau = (torch.arange(up, dtype=torch.float64)[:, None] * down / up
           - (torch.arange(down + 2 * reach, dtype=torch.float64) - reach))
    window = torch.special.i0(RESAMPLE_KAISER_BETA * (1 - (tau / half_width).clamp(-1, 1).square()).sqrt())
    kernel = cutoff * torch.sinc(cutoff * tau) * window / torch.special.i0(torch.tensor(RESAMPLE_KAISER_BETA))
    return torch.where(tau.abs() <= half_width, kernel, 0.0), reach


def resample(x: torch.Tensor, from_rate: int, to_rate: int) -> torch.Tensor:
    """Resample ``x (..., samples)`` from ``from_rate`` to ``to_rate`` Hz (polyphase, not differentiable).

    Band-limited interpolation: output sample ``m`` sits at input time ``t = m * from / to``
    and is ``sum_k x[k] s(t - k)``, where ``s`` is a sinc low-pass at the lower of the two
    Nyquist frequencies with a Kaiser window of ``RESAMPLE_ZEROS`` zero crossings each
    side (the filter of ``scipy.signal.resample_poly``, without importing scipy.signal,
    which takes a second). With ``up / down`` the reduced ratio, output phase ``p`` of
    every ``up`` outputs uses one fixed kernel (:func:`polyphase_kernel`), so the whole
    filter is one strided ``conv1d`` with ``up`` output channels.

    Returns:
        float32 ``(..., ceil(samples * to / from))``.
    """
    g = math.gcd(int(from_rate), int(to_rate))
    up, down = int(to_rate) // g, int(from_rate) // g
    x = torch.as_tensor(x).detach().cpu().float()
    if up == down:
        return x.clone()
    kernel, reach = polyphase_kernel(up, down)
    shape, n = x.shape, x.shape[-1]
    out_len = -(-n * up // down)
    frames = -(-out_len // up)
    flat = x.reshape(-1, 1, n)
    padded = torch.nn.functional.pad(flat, (reach, max(0, (frames - 1) * down + kernel.shape[-1] - reach - n)))
    phases = torch.nn.functional.conv1d(padded, kernel.float()[:, None], stride=down)[..., :frames]
    y = phases.transpose(1, 2).reshape(len(flat), frames * up)[:, :out_len]
    return y.reshape(*shape[:-1], out_len).contiguous()


def window(offset: float, seconds: float | None, sample_rate: int) -> slice:
    """The samples from ``offset`` seconds on, ``seconds`` long (None: to the end)."""
    start = round(offset * sample_rate)
    return slice(start, None if seconds is None else start + round(seconds * sample_rate))


def fit_length(x: np.ndarray, n: int) -> np.ndarray:
    """Crop or zero-pad ``x (..., samples)`` to ``n`` samples."""
    return x[..., :n] if x.shape[-1] >= n else np.pad(x, [(0, 0)] * (x.ndim - 1) + [(0, n - x.shape[-1])])


def check_audio_output(path: str | os.PathLike, force: bool = False) -> Path:
    """``path`` as a :class:`Path` after :func:`~diffmst_lite.files.atomic.check_output`, and
    after checking that its suffix names a format that stores 32-bit float samples
    (``.wav``; also ``.w64``, ``.rf64``, ``.aiff``, ``.caf``): ``AudioError`` otherwise.
    Commands call it before they compute, so a long run is not lost at the end."""
    import soundfile as sf

    path = check_output(path, force)
    kind = path.suffix.lstrip(".").upper()
    if not (kind in sf.available_formats() and sf.check_format(kind, "FLOAT")):
        raise AudioError(f"{path}: cannot write 32-bit float audio as {path.suffix or 'a file without a suffix'}; "
                         "name the file .wav")
    return path


def save_audio(path: str | os.PathLike, audio: torch.Tensor, sample_rate: int, force: bool = False) -> Path:
    """Write ``audio (channels, samples)`` as a 32-bit float WAV (nothing clips on disk).

    The file is written to a temporary name and renamed, so a failed write never
    leaves half a file; an existing file is kept unless ``force``.

    Raises:
        FileExistsError: ``path`` exists and ``force`` is False.
        ValueError: ``path`` is a directory.
        AudioError: the audio is empty or not finite, or the suffix names no float format.
    """
    import soundfile as sf

    path = check_audio_output(path, force)
    audio = validate_audio(torch.as_tensor(audio), name="audio to save")
    if audio.dim() == 1:
        audio = audio.unsqueeze(0)
    frames = np.empty(audio.shape[::-1], np.float32)  # (samples, channels): the file's interleaved order
    for column, channel in zip(frames.T, audio.detach().cpu().numpy()):  # 5x faster than one transposing copy
        column[:] = channel
    with atomic_path(path, overwrite=force) as tmp:
        sf.write(tmp, frames, int(sample_rate), subtype="FLOAT")
    return path
