"""What a recording and an arrangement do to stems, for varied synthetic songs.

A General MIDI render of a score is a tidy multitrack: every stem at a similar
level, the SoundFont's own spectrum, stereo only where the SoundFont pans, no room.
Real multitracks spread much wider (chapter 1): a dark bass DI beside a bright
overhead pair, mono close mics beside stereo keyboards, a reverb send printed on a
vocal. ``make_songs(..., varied=True)`` (``diffmst-lite make-songs --varied``)
gives each stem a :class:`StemStyle` drawn by :func:`draw_stem_style` and applies it
with :func:`produce_stem`, so a model trained on synthetic songs meets some of that
spread (the real-music issue, item 2). Functional, numpy, ``(C, N)`` float arrays.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch

from diffmst_lite.dsp.fftconv import fft_convolve

MAX_TRACKS = 16  # a varied song has at most this many mono tracks (channels of all stems)
STEREO_PARTS = ("drums", "other", "keys", "strings", "pad", "organ", "percussion")  # often recorded stereo


@dataclass
class StemStyle:
    """How one stem was recorded (all drawn per stem, see :func:`draw_stem_style`)."""

    level_db: float  # RMS of the stem, dBFS
    tilt_db: float  # spectral tilt: +tilt_db at 16 kHz, -tilt_db at 62.5 Hz, 0 dB at 1 kHz (log-linear)
    stereo: bool  # written as a stereo file (else mono: the mid channel)
    width: float  # side / mid scale of a stereo stem (0: mono, 1: as rendered, 1.5: wider)
    reverb_wet_db: float | None  # level of a printed reverb relative to the dry stem, or None
    reverb_seconds: float  # RT60 of that reverb

    def as_dict(self) -> dict:
        return {k: round(v, 3) if isinstance(v, float) else v for k, v in asdict(self).items()}


def draw_stem_style(name: str, rng: np.random.Generator) -> StemStyle:
    """A random :class:`StemStyle` for the stem ``name``: level -32...-12 dBFS, tilt
    -6...+6 dB, stereo with probability 0.7 for typically stereo parts (0.25 else),
    width 0.3...1.5, a printed reverb on 40 % of stems (-20...-6 dB, RT60 0.4...2.5 s)."""
    stereo = bool(rng.random() < (0.7 if name in STEREO_PARTS else 0.25))
    reverb = rng.random() < 0.4
    return StemStyle(level_db=float(rng.uniform(-32, -12)), tilt_db=float(rng.uniform(-6, 6)), stereo=stereo,
                     width=float(rng.uniform(0.3, 1.5)),
                     reverb_wet_db=float(rng.uniform(-20, -6)) if reverb else None,
                     reverb_seconds=float(rng.uniform(0.4, 2.5)))


def tilt(x: np.ndarray, sample_rate: int, tilt_db: float) -> np.ndarray:
    """Zero-phase spectral tilt of ``x (C, N)``: gain ``tilt_db * clip(log2(f / 1 kHz) / 4, -1, 1)`` dB."""
    freqs = np.fft.rfftfreq(x.shape[-1], 1 / sample_rate)
    octaves = np.clip(np.log2(np.maximum(freqs, 1.0) / 1000.0) / 4, -1, 1)
    return np.fft.irfft(np.fft.rfft(x, axis=-1) * 10 ** (tilt_db * octaves / 20), n=x.shape[-1], axis=-1)


def reverb_impulse(sample_rate: int, seconds: float, rng: np.random.Generator) -> np.ndarray:
    """A stereo room: ``(2, L)`` decorrelated noise decaying by 60 dB in ``seconds`` after a
    10-30 ms pre-delay; unit energy per channel."""
    predelay = int(rng.uniform(0.01, 0.03) * sample_rate)
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    tail = rng.standard_normal((2, len(t))) * np.exp(-6.9 * t / seconds)  # 60 dB = exp(-6.9) in amplitude
    ir = np.concatenate([np.zeros((2, predelay)), tail], axis=-1)
    return ir / np.sqrt((ir ** 2).sum(-1, keepdims=True))


def produce_stem(x: np.ndarray, sample_rate: int, style: StemStyle, rng: np.random.Generator) -> np.ndarray:
    """Apply ``style`` to a rendered stem ``x (2, N)`` -> ``(2, N)`` or ``(1, N)`` (mono) float32:
    width, tilt, printed reverb (stereo stems only keep the reverb's stereo), then RMS at
    ``style.level_db`` and peak at most 0.99."""
    x = np.asarray(x, np.float64)
    mid, side = (x[0] + x[1]) / 2, (x[0] - x[1]) / 2
    x = np.stack([mid + style.width * side, mid - style.width * side]) if style.stereo else mid[None]
    x = tilt(x, sample_rate, style.tilt_db)
    if style.reverb_wet_db is not None:
        ir = reverb_impulse(sample_rate, style.reverb_seconds, rng)
        dry = torch.from_numpy(np.repeat(x.mean(0, keepdims=True), 2, 0))
        wet = fft_convolve(dry[:, None], torch.from_numpy(ir))[:, 0].numpy()  # each channel its own impulse
        wet *= 10 ** (style.reverb_wet_db / 20) * np.sqrt((x ** 2).mean() / max((wet ** 2).mean(), 1e-20))
        x = x + (wet if style.stereo else wet.mean(0, keepdims=True))
    rms = float(np.sqrt((x ** 2).mean()))
    if rms > 0:
        x = x * 10 ** (style.level_db / 20) / rms
    return (x * min(1.0, 0.99 / max(float(np.abs(x).max()), 1e-9))).astype(np.float32)


def limit_track_count(styles: dict[str, StemStyle], max_tracks: int = MAX_TRACKS) -> None:
    """Make stereo stems mono (last first) until all stems have at most ``max_tracks`` channels."""
    for name in reversed(list(styles)):
        if sum(1 + s.stereo for s in styles.values()) <= max_tracks:
            return
        styles[name].stereo = False
