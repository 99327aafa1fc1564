"""Synthetic multitrack songs: composing them and rendering their stems.

Offline and in CI there is no MUSDB18, so this module makes small *musical* songs
(:mod:`diffmst_lite.data.song_trees` writes them as a MUSDB18-HQ tree with styled mixes, which
the loading code of :mod:`diffmst_lite.data.songs` reads).

Each song is composed from its seed: a tempo (80-140 BPM), a key (major or
minor), a four-chord progression (I-V-vi-IV and friends), drums (kick, snare,
hats on GM channel 10), a bass line on the chord roots, chords (piano, pad,
guitar, ...) as ``other`` and a lead line in the key played by a voice-like
instrument (choir aahs, voice oohs, flute, ...) as ``vocals``. ``extra_stems=k``
adds ``k`` more stems (keys, strings, percussion, ...) for 16-track training.

Stems are rendered with a General MIDI SoundFont through ``midirenderer`` when
one is found (``$DIFFMST_SOUNDFONT``, ``/usr/share/sounds/sf2/...``), else by a
small numpy synthesiser (additive tones, noise drums). :func:`render_song` does
both for one song and reports the renderer used in its metadata. The songs are
synthetic: label them so wherever results on them are shown.
"""

from __future__ import annotations

import importlib.util
import io
import math
import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from diffmst_lite.files.audio import fit_length, resample
from diffmst_lite.data.production import draw_stem_style, limit_track_count, produce_stem
from diffmst_lite.data.songs import STEM_NAMES

EXTRA_STEMS = ("keys", "strings", "percussion", "counter", "pad", "guitar", "brass", "organ")
SOUNDFONT_PATHS = (  # the first one installed renders (TimGM6mb first: what make book and Colab install)
    "/usr/share/sounds/sf2/TimGM6mb.sf2",
    "/usr/share/sounds/sf2/FluidR3_GM.sf2",
    "/usr/share/sounds/sf2/default-GM.sf2",
    "/usr/share/soundfonts/default.sf2",
    "/usr/share/soundfonts/FluidR3_GM.sf2",
    "/usr/share/sounds/sf2/MuseScore_General_Full.sf2",  # musescore-general-soundfont-lossless
)
SCALES = {"major": (0, 2, 4, 5, 7, 9, 11), "minor": (0, 2, 3, 5, 7, 8, 10)}
PROGRESSIONS = {  # scale degrees (0 = tonic), one chord per bar
    "major": ((0, 4, 5, 3), (0, 5, 3, 4), (5, 3, 0, 4), (0, 3, 4, 3), (0, 3, 5, 4)),
    "minor": ((0, 5, 2, 6), (0, 3, 4, 0), (0, 6, 5, 6), (0, 5, 3, 4)),
}
NOTE_NAMES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
ROMAN = ("I", "II", "III", "IV", "V", "VI", "VII")


# ------------------------------------------------------------------ composing


@dataclass
class Part:
    """One stem's notes. ``notes``: ``(pitch, start_s, end_s, velocity 1..127)``;
    ``pan`` in -1 (left) ... +1 (right); ``timbre`` picks the numpy fallback voice."""

    name: str
    program: int
    is_drum: bool
    timbre: str
    pan: float
    notes: list[tuple[int, float, float, int]] = field(default_factory=list)


@dataclass
class Score:
    """A composed song: tempo in BPM, key, mode, chord progression and parts. With a
    ``humanize`` generator, every note's start moves by N(0, 12 ms) and its velocity by
    N(0, 10) more, as a player's would."""

    seconds: float
    tempo: float
    key: int
    mode: str
    progression: tuple[int, ...]
    parts: list[Part]
    humanize: np.random.Generator | None = None

    @property
    def beat(self) -> float:
        return 60.0 / self.tempo

    def chord(self, bar: int, size: int = 3) -> list[int]:
        """Semitones above the key's tonic of the chord on ``bar`` (stacked thirds)."""
        scale, degree = SCALES[self.mode], self.progression[bar % len(self.progression)]
        return [scale[(degree + 2 * k) % 7] + 12 * ((degree + 2 * k) // 7) for k in range(size)]

    def add(self, part: Part, pitch: int, beat: float, beats: float, velocity: float) -> None:
        """Add a note at ``beat`` lasting ``beats``, cropped to the song's length."""
        start, end = beat * self.beat, min((beat + beats) * self.beat, self.seconds)
        if self.humanize is not None:
            shift = self.humanize.normal(0, 0.012)
            start, end = max(0.0, start + shift), min(end + shift, self.seconds)
            velocity += self.humanize.normal(0, 10)
        if start < self.seconds - 0.02:
            part.notes.append((int(pitch), start, end, int(np.clip(velocity, 1, 127))))


def _place(semitones: int, key: int, low: int) -> int:
    """The MIDI pitch of ``key + semitones`` in the octave ``[low, low + 12)``."""
    return low + (key + semitones - low) % 12


def _drums(score: Score, part: Part, rng: np.random.Generator, bars: int, perc: bool = False) -> None:
    """A 16-step groove: kick, snare, hats (or, with ``perc``, hand percussion)."""
    if perc:
        voices = [(int(rng.choice([70, 69, 54])), np.arange(0, 16, int(rng.choice([1, 2]))), 70)]
        conga = rng.choice(16, size=4, replace=False)
        voices.append((int(rng.choice([62, 63, 64])), np.sort(conga), 85))
    else:
        kick = [(0, 8), (0, 6, 8), (0, 8, 10), (0, 3, 8, 11), (0, 7, 10)][rng.integers(5)]
        hats = np.arange(0, 16, int(rng.choice([1, 2, 2, 4])))
        voices = [(36, np.array(kick), 110), (int(rng.choice([38, 40])), np.array([4, 12]), 105), (42, hats, 75)]
        if rng.random() < 0.5:
            voices.append((46, np.array([14]), 70))
        score.add(part, 49, 0, 2, 100)  # crash on the downbeat
    for bar in range(bars):
        for pitch, steps, vel in voices:
            for s in steps:
                accent = 10 if s % 4 == 0 else 0
                score.add(part, pitch, bar * 4 + s / 4, 0.25, vel + accent + rng.normal(0, 6))


def _bass(score: Score, part: Part, rng: np.random.Generator, bars: int) -> None:
    """Root-following bass line; patterns of (beat, length, interval above the root)."""
    patterns = (
        [(0, 1, 0), (1, 1, 0), (2, 1, 0), (3, 1, 0)],
        [(b / 2, 0.5, 0) for b in range(8)],
        [(0, 1.5, 0), (1.5, 0.5, 0), (2, 1, 7), (3, 1, 12)],
        [(0, 2, 0), (2, 1.5, 7), (3.5, 0.5, 0)],
        [(0, 0.75, 0), (0.75, 0.75, 0), (1.5, 1, 12), (2.5, 0.5, 7), (3, 1, 0)],
    )
    pattern = patterns[rng.integers(len(patterns))]
    for bar in range(bars):
        root = _place(score.chord(bar)[0], score.key, 28)
        for beat, length, interval in pattern:
            score.add(part, root + interval, bar * 4 + beat, length * 0.9, 100 + rng.normal(0, 6))


def _chords(score: Score, part: Part, rng: np.random.Generator, bars: int, low: int, style: str) -> None:
    """Chord part: ``style`` in ``{"sustain", "rhythm", "arpeggio", "stabs"}``."""
    rhythms = {
        "sustain": ([(0, 4)], [(0, 2), (2, 2)]),
        "rhythm": ([(0, 1.5), (1.5, 1), (2.5, 1.5)], [(b, 1) for b in range(4)], [(b + 0.5, 0.5) for b in range(4)]),
        "stabs": ([(0, 0.5), (1.5, 0.5), (3, 0.5)], [(1, 0.5), (3, 0.5)]),
    }
    size = 4 if rng.random() < 0.3 else 3
    rhythm = None if style == "arpeggio" else rhythms[style][rng.integers(len(rhythms[style]))]
    for bar in range(bars):
        pitches = sorted(_place(s, score.key, low) for s in score.chord(bar, size))
        if rhythm is None:  # arpeggio: up and down in 8ths
            seq = pitches + [p + 12 for p in pitches[:1]] + pitches[::-1][1:-1]
            for i in range(8):
                score.add(part, seq[i % len(seq)], bar * 4 + i / 2, 0.5, 85 + rng.normal(0, 6))
            continue
        for beat, length in rhythm:
            vel = 80 + rng.normal(0, 6)
            for p in pitches:
                score.add(part, p, bar * 4 + beat, length * 0.95, vel)


def _melody(score: Score, part: Part, rng: np.random.Generator, bars: int, low: int, high: int, busy: float) -> None:
    """A lead line in the key: a random walk on the scale that lands on chord tones on
    beats 1 and 3; ``busy`` in [0, 1] favours short notes."""
    scale = SCALES[score.mode]
    pitches = [p for p in range(low, high + 1) if (p - score.key) % 12 in scale]
    rhythms = ((1, 1, 1, 1), (0.5, 0.5, 1, 2), (1.5, 0.5, 1, 1), (2, 1, 1), (0.5,) * 4 + (2,), (1, 0.5, 0.5, 1, 1))
    slow = ((2, 2), (4,), (3, 1), (1, 1, 2))
    i = len(pitches) // 2
    for bar in range(bars):
        tones = {(score.key + s) % 12 for s in score.chord(bar)}
        pattern = rhythms[rng.integers(len(rhythms))] if rng.random() < busy else slow[rng.integers(len(slow))]
        beat = 0.0
        for length in pattern:
            if (bar or beat) and rng.random() < 0.12:  # a rest (never the very first note)
                beat += length
                continue
            if beat % 2 == 0:  # strong beat: nearest chord tone
                near = [j for j, p in enumerate(pitches) if p % 12 in tones]
                i = min(near, key=lambda j: abs(j - i) + rng.random())
            else:
                i = int(np.clip(i + rng.choice([-2, -1, 0, 1, 2], p=[0.15, 0.3, 0.1, 0.3, 0.15]), 0, len(pitches) - 1))
            score.add(part, pitches[i], bar * 4 + beat, length * 0.92, 90 + rng.normal(0, 8))
            beat += length


def compose(seed: int, seconds: float, extra_stems: int = 0, humanize: bool = False) -> Score:
    """Compose a song from ``seed`` (deterministic). Parts: ``STEM_NAMES`` then the first
    ``extra_stems`` of ``EXTRA_STEMS``; ``humanize``: loose timing and velocities
    (see :class:`Score`). Returns a :class:`Score`."""
    if not 0 <= extra_stems <= len(EXTRA_STEMS):
        raise ValueError(f"extra_stems must be in 0..{len(EXTRA_STEMS)}, got {extra_stems}")
    rng = np.random.default_rng(seed)
    mode = "major" if rng.random() < 0.6 else "minor"
    progressions = PROGRESSIONS[mode]
    score = Score(seconds, float(rng.integers(80, 141)), int(rng.integers(12)), mode,
                  progressions[rng.integers(len(progressions))], [],
                  np.random.default_rng([seed, 3]) if humanize else None)
    bars = math.ceil(seconds / (4 * score.beat))

    def part(name: str, programs: tuple[int, ...], timbre: str, pan: float, drum: bool = False) -> Part:
        p = Part(name, int(rng.choice(programs)), drum, timbre, float(np.clip(pan, -1, 1)))
        score.parts.append(p)
        return p

    _drums(score, part("drums", (0,), "drums", rng.uniform(-0.15, 0.15), True), rng, bars)
    _bass(score, part("bass", (32, 33, 34, 38, 39), "bass", rng.uniform(-0.15, 0.15)), rng, bars)
    chord_style = ("sustain", "rhythm", "rhythm", "stabs", "arpeggio")[rng.integers(5)]
    other = part("other", (0, 4, 5, 16, 24, 25, 48, 89), "keys", rng.choice([-1, 1]) * rng.uniform(0.2, 0.6))
    _chords(score, other, rng, bars, 55, chord_style)
    vocals = part("vocals", (52, 53, 54, 85, 73), "lead", rng.uniform(-0.25, 0.25))
    _melody(score, vocals, rng, bars, 60, 79, busy=0.6)
    for name in EXTRA_STEMS[:extra_stems]:
        pan = rng.uniform(-0.8, 0.8)
        if name == "keys":
            _chords(score, part(name, (0, 8, 11, 46), "keys", pan), rng, bars, 64, "arpeggio")
        elif name in ("strings", "pad", "organ"):
            programs = {"strings": (48, 49, 50), "pad": (88, 89, 91, 94), "organ": (16, 17, 19)}[name]
            _chords(score, part(name, programs, "pad", pan), rng, bars, 48 if name == "pad" else 60, "sustain")
        elif name == "percussion":
            _drums(score, part(name, (0,), "drums", pan, True), rng, bars, perc=True)
        elif name == "counter":
            _melody(score, part(name, (68, 71, 56, 65), "lead", pan), rng, bars, 50, 67, busy=0.2)
        elif name == "guitar":
            _chords(score, part(name, (24, 25, 27, 29), "keys", pan), rng, bars, 52, "rhythm")
        else:  # brass
            _chords(score, part(name, (61, 62, 57), "pad", pan), rng, bars, 58, "stabs")
    return score


def describe(score: Score) -> dict:
    """JSON-friendly summary of a score (tempo, key, progression, instruments)."""
    scale_name = f"{NOTE_NAMES[score.key]} {score.mode}"
    numerals = [ROMAN[d] if score.mode == "major" and d in (0, 3, 4) or score.mode == "minor" and d in (2, 5, 6)
                else ROMAN[d].lower() for d in score.progression]
    return {"tempo_bpm": score.tempo, "key": scale_name, "progression": numerals,
            "parts": {p.name: {"program": p.program, "drums": p.is_drum, "pan": round(p.pan, 3),
                               "notes": len(p.notes)} for p in score.parts}}


# ------------------------------------------------------------------ rendering


def find_soundfont(path: str | os.PathLike | None = None) -> Path | None:
    """A General MIDI SoundFont: ``path``, ``$DIFFMST_SOUNDFONT`` or a standard place; None if none."""
    if path is not None:
        if not Path(path).is_file():
            raise FileNotFoundError(f"SoundFont not found: {path}")
        return Path(path).resolve()
    for c in (os.environ.get("DIFFMST_SOUNDFONT"), *SOUNDFONT_PATHS):
        if c and Path(c).is_file():
            return Path(c).resolve()
    return None


def installed_soundfonts() -> list[Path]:
    """Every General MIDI SoundFont of :data:`SOUNDFONT_PATHS` that is installed (links resolved,
    each once), for varied songs that pick one per song."""
    return list(dict.fromkeys(Path(c).resolve() for c in SOUNDFONT_PATHS if Path(c).is_file()))


@lru_cache(maxsize=2)
def _soundfont_bytes(path: Path) -> bytes:
    return path.read_bytes()


def render_soundfont(part: Part, score: Score, sample_rate: int, soundfont: Path) -> np.ndarray:
    """Render ``part`` with a SoundFont via midirenderer -> ``(2, N)`` float32, N = seconds * sample_rate."""
    import pretty_midi

    pm = pretty_midi.PrettyMIDI(initial_tempo=score.tempo)
    inst = pretty_midi.Instrument(program=part.program, is_drum=part.is_drum, name=part.name)
    inst.control_changes.append(pretty_midi.ControlChange(10, int(round(64 + 63 * part.pan)), 0.0))
    inst.control_changes.append(pretty_midi.ControlChange(110, 0, score.seconds))  # keeps release tails
    inst.notes = [pretty_midi.Note(v, p, s, e) for p, s, e, v in part.notes]
    pm.instruments.append(inst)
    return render_midi(pm, sample_rate, soundfont, round(score.seconds * sample_rate))


def render_midi(pm, sample_rate: int, soundfont: Path, num_samples: int | None = None) -> np.ndarray:
    """Render a ``pretty_midi.PrettyMIDI`` with a SoundFont via midirenderer -> ``(2, N)`` float32
    at ``sample_rate`` (``N = num_samples``, cropped or zero-padded, or the render's own length)."""
    import midirenderer

    midi = io.BytesIO()
    pm.write(midi)
    wav = midirenderer.render_wave_from(_soundfont_bytes(Path(soundfont)), midi.getvalue())
    x, sr = sf.read(io.BytesIO(wav), dtype="float32", always_2d=True)
    if sr != sample_rate:
        x = resample(torch.from_numpy(x.T), sr, sample_rate).numpy().T
    x = x.T if num_samples is None else fit_length(x.T, num_samples)
    return np.ascontiguousarray(x, dtype=np.float32)


_DRUM_PAN = {42: 0.3, 44: 0.3, 46: 0.3, 49: -0.4, 51: 0.4, 57: 0.4, 62: -0.3, 63: 0.2, 64: 0.4}


def _hit(pitch: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    """One drum/percussion hit (mono) of GM key ``pitch``, noise- or sine-based."""
    def noise(sec: float, tau: float, bright: bool = True) -> np.ndarray:
        t = np.arange(int(sec * sr)) / sr
        w = rng.standard_normal(len(t) + 1)
        return (np.diff(w) if bright else w[1:]) * np.exp(-t / tau) * 0.5
    t = np.arange(int(0.4 * sr)) / sr
    if pitch in (35, 36):  # kick: falling sine
        f = 50 + 110 * np.exp(-t / 0.03)
        return np.sin(2 * np.pi * np.cumsum(f) / sr) * np.exp(-t / 0.15)
    if pitch in (38, 39, 40):  # snare / clap: noise + body
        body = t[: int(0.3 * sr)]
        return noise(0.3, 0.07, False) * 0.8 + 0.5 * np.sin(2 * np.pi * 185 * body) * np.exp(-body / 0.04)
    if pitch in (42, 44, 54, 69, 70):  # closed hats, shakers
        return noise(0.1, 0.02) * 0.6
    if pitch == 46:
        return noise(0.4, 0.12) * 0.5
    if pitch in (49, 51, 57):  # cymbals
        return noise(1.2, 0.5) * 0.35
    f = {62: 330, 63: 250, 64: 200}.get(pitch, 400)  # congas and the rest: damped sine
    return np.sin(2 * np.pi * f * t) * np.exp(-t / 0.08)


def _tone(pitch: int, seconds: float, sr: int, timbre: str) -> np.ndarray:
    """One pitched note (mono) with a simple additive timbre and envelope."""
    release = 0.25 if timbre == "pad" else 0.06
    t = np.arange(int((seconds + release) * sr)) / sr
    f = 440.0 * 2 ** ((pitch - 69) / 12)
    phase = 2 * np.pi * f * t
    if timbre == "lead":  # vibrato
        phase = phase + 0.004 * f / 5.5 * (1 - np.cos(2 * np.pi * 5.5 * t))
    slope, kmax, attack, tau = {"bass": (1.5, 6, 0.005, 0.8), "keys": (2.0, 8, 0.003, 0.5),
                                "pad": (1.0, 10, 0.08, 10.0), "lead": (1.3, 10, 0.03, 4.0)}[timbre]
    x = np.zeros_like(t)
    for k in range(1, min(kmax, int(0.45 * sr / f)) + 1):
        decay = np.exp(-t * (k - 1) / (2 * tau)) if timbre == "keys" else 1.0
        x += np.sin(k * phase) * decay / k ** slope
    env = np.minimum(t / attack, 1.0) * np.exp(-t / tau)
    env *= np.where(t > seconds, np.exp(-(t - seconds) / (release / 5)), 1.0)
    return x * env


def render_numpy(part: Part, score: Score, sample_rate: int, seed: int = 0) -> np.ndarray:
    """Fallback renderer without a SoundFont -> ``(2, N)`` float32 (constant-power pan)."""
    n = round(score.seconds * sample_rate)
    out = np.zeros((2, n + sample_rate * 2))
    rng = np.random.default_rng(seed)
    for pitch, start, end, vel in part.notes:
        x = _hit(pitch, sample_rate, rng) if part.is_drum else _tone(pitch, end - start, sample_rate, part.timbre)
        pan = np.clip(part.pan + (_DRUM_PAN.get(pitch, 0.0) if part.is_drum else 0.0), -1, 1)
        angle = (pan + 1) * np.pi / 4
        i = int(start * sample_rate)
        out[:, i:i + len(x)] += np.array([[np.cos(angle)], [np.sin(angle)]]) * x[: out.shape[1] - i] * (vel / 127) * 0.2
    return out[:, :n].astype(np.float32)


# ------------------------------------------------------------------ one song


def render_song(seed: int, seconds: float, sample_rate: int = 44100, extra_stems: int = 0,
                renderer: str = "auto", soundfont: str | os.PathLike | None = None,
                varied: bool = False) -> tuple[dict[str, np.ndarray], dict]:
    """Compose and render one song (no mixture).

    Args:
        renderer: ``"auto"`` (SoundFont if found, else numpy), ``"soundfont"`` or ``"numpy"``.
        varied: more like a real multitrack: 0-8 extra stems (``extra_stems`` is ignored),
            humanised timing and velocities, a SoundFont drawn per song among those installed
            (unless ``soundfont`` is given), and every stem produced with its own
            :class:`~diffmst_lite.data.production.StemStyle` (level, tilt, mono or stereo and
            width, printed reverb): 4-16 tracks (channels) per song.

    Returns:
        ``stems``: name -> ``(2, N)`` float32 (``varied``: ``(1, N)`` or ``(2, N)``), N =
        round(seconds * sample_rate), each at a random level (-26...-16 dBFS RMS; ``varied``:
        -32...-12), peak <= 0.99; and a metadata dict.
    """
    if seconds < 1.0:
        raise ValueError(f"songs must be at least 1 s long, got {seconds}")
    if renderer not in ("auto", "soundfont", "numpy"):
        raise ValueError(f"renderer must be 'auto', 'soundfont' or 'numpy', got {renderer!r}")
    usable = renderer != "numpy" and importlib.util.find_spec("midirenderer") is not None
    sf_path = find_soundfont(soundfont) if usable else None
    if renderer == "soundfont" and sf_path is None:
        raise FileNotFoundError("no SoundFont or no midirenderer: set DIFFMST_SOUNDFONT, install fluid-soundfont-gm")
    styles = None
    if varied:
        rng = np.random.default_rng([seed, 2])
        score = compose(seed, seconds, int(rng.integers(0, len(EXTRA_STEMS) + 1)), humanize=True)
        fonts = installed_soundfonts() if sf_path and soundfont is None else []
        if fonts:  # one per song, unless a SoundFont was asked for
            sf_path = fonts[int(rng.integers(len(fonts)))]
        styles = {part.name: draw_stem_style(part.name, rng) for part in score.parts}
        limit_track_count(styles)
    else:
        score = compose(seed, seconds, extra_stems)
        rng = np.random.default_rng([seed, 1])
    stems = {}
    for i, part in enumerate(score.parts):
        if sf_path:
            x = render_soundfont(part, score, sample_rate, sf_path)
        else:
            x = render_numpy(part, score, sample_rate, seed + i)
        if styles:
            stems[part.name] = produce_stem(x, sample_rate, styles[part.name], rng)
        else:
            rms = float(np.sqrt(np.mean(x.astype(np.float64) ** 2)))
            if rms > 0:
                x = x * (10 ** (rng.uniform(-26, -16) / 20) / rms)
            x = x * min(1.0, 0.99 / max(float(np.abs(x).max()), 1e-9))
            stems[part.name] = x.astype(np.float32)
    meta = {"seed": int(seed), "seconds": seconds, "sample_rate": sample_rate, "synthetic": True,
            **({"varied": True} if styles else {}),
            "renderer": f"soundfont:{sf_path}" if sf_path else "numpy", **describe(score),
            **({"stem_styles": {name: style.as_dict() for name, style in styles.items()}} if styles else {})}
    return stems, meta
