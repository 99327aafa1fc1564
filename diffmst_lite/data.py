"""Multitrack data: MUSDB18 loading and the two training datasets of Diff-MST.

- :func:`open_musdb` opens MUSDB18 (``.stem.mp4``), MUSDB18-HQ (wav folders) or a
  synthetic tree from :func:`diffmst_lite.synth.make_songs` with the ``musdb`` package.
- :class:`Song` reads a song as mono ``tracks (T, N)`` (every channel of every stem
  is one track: 4 stereo stems -> 8 tracks, plus any extra stems) and its
  ``mixture (2, N)``, whole or a segment, optionally cached in memory.
- :class:`Method1Dataset`: self-supervised random mixes (reference = first half of a
  random mix, target = its second half, input = the tracks of the second half).
- :class:`Method2Dataset`: tracks of song A, the real mix of another song B as reference.
- :func:`collate_tracks` pads different track counts and builds the ``mask``.

Every example is drawn from its own generator seeded by ``(seed, epoch, index)``,
so a dataset is deterministic whatever the order or number of workers.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
from pathlib import Path
from typing import Sequence

import numpy as np
import soundfile as sf
import torch

from .audio import resample

log = logging.getLogger(__name__)

STEM_NAMES = ("drums", "bass", "other", "vocals")  # MUSDB stem ids 1..4
SETUP_FILE = "diffmst_setup.yaml"  # musdb setup of a synthetic tree (its own validation split)
AUDIO_SUFFIXES = (".wav", ".flac", ".aif", ".aiff", ".ogg")


# --------------------------------------------------------------------- musdb


def write_musdb_setup(root: str | os.PathLike, validation_tracks: Sequence[str]) -> Path:
    """Write ``root/diffmst_setup.yaml``: musdb's standard setup with our own
    ``validation_tracks`` (musdb's ``split='valid'`` otherwise uses a hard-coded list
    of real MUSDB song names, which selects nothing in a synthetic tree)."""
    import yaml

    setup = {
        "sample_rate": 44100.0,
        "sources": {name: f"{name}.wav" for name in ("vocals", "drums", "bass", "other")},
        "mixture": "mixture.wav",
        "stem_ids": {"mixture": 0, **{name: i + 1 for i, name in enumerate(STEM_NAMES)}},
        "targets": {"vocals": {"vocals": 1}, "drums": {"drums": 1}, "bass": {"bass": 1}, "other": {"other": 1},
                    "accompaniment": {"bass": 1, "drums": 1, "other": 1}},
        "validation_tracks": list(validation_tracks),
    }
    path = Path(root) / SETUP_FILE
    path.write_text(yaml.safe_dump(setup, sort_keys=False))
    return path


def _resolve_root(root: str | os.PathLike | None) -> Path:
    if root is None:
        root = os.environ.get("MUSDB_PATH")
        if not root:
            raise ValueError("no MUSDB path: pass root=... or set the MUSDB_PATH environment variable")
    return Path(root).expanduser()


def detect_is_wav(root: str | os.PathLike) -> bool:
    """True for a wav tree (``root/<subset>/<song>/mixture.wav``: MUSDB18-HQ or
    synthetic), False for ``root/<subset>/<song>.stem.mp4`` (MUSDB18); else an error."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"MUSDB path {root} does not exist (set MUSDB_PATH or pass root=...)")
    if any(root.glob("*/*/mixture.wav")):
        return True
    if any(root.glob("*/*.stem.mp4")):
        return False
    raise FileNotFoundError(
        f"no songs under {root}: expected train/<song>/mixture.wav (MUSDB18-HQ, synthetic) "
        "or train/<song>.stem.mp4 (MUSDB18)")


def open_musdb(root: str | os.PathLike | None = None, subset: str = "train", split: str | None = None,
               is_wav: bool | None = None, download: bool = False, sample_rate: float | None = None):
    """Open a MUSDB18-style tree with ``musdb.DB``.

    Args:
        root: the folder holding ``train/`` and ``test/``; default ``$MUSDB_PATH``.
        subset: ``"train"`` or ``"test"``.
        split: with ``subset="train"``: ``"train"``, ``"valid"`` or None (all). A
            synthetic tree's ``diffmst_setup.yaml`` supplies its own validation songs.
        is_wav: None detects it (wav tree if ``*/*/mixture.wav`` exists). Note musdb
            silently finds nothing with ``is_wav=False`` on a wav tree.
        download: fetch musdb's 7-second preview clips (``.stem.mp4``) to ``root``
            (default ``~/MUSDB18/MUSDB18-7``); segments are then at most ~6 s.
        sample_rate: passed to musdb, which then resamples when *it* reads audio (but
            ``track.rate`` still says 44100). :class:`Song` resamples on its own.

    Returns:
        a ``musdb.DB``; ``len(db)`` songs, ``db.tracks[i].name``.

    musdb needs ``ffmpeg`` and ``ffprobe`` on the PATH even for wav trees.
    """
    if shutil.which("ffmpeg") is None or shutil.which("ffprobe") is None:
        raise RuntimeError("musdb needs ffmpeg and ffprobe on the PATH (apt-get install ffmpeg)")
    import musdb

    if split is not None and subset != "train":
        raise ValueError(f"split={split!r} needs subset='train', got subset={subset!r}")
    if download:
        root = Path(root).expanduser() if root is not None else None
        return musdb.DB(root=None if root is None else str(root), download=True, subsets=subset,
                        split=split, sample_rate=sample_rate)
    root = _resolve_root(root)
    is_wav = detect_is_wav(root) if is_wav is None else is_wav
    setup = root / SETUP_FILE
    db = musdb.DB(root=str(root), setup_file=str(setup) if setup.is_file() else None, subsets=subset,
                  split=split, is_wav=is_wav, sample_rate=sample_rate)
    if len(db) == 0:
        raise FileNotFoundError(f"no songs in {root} for subset={subset!r}, split={split!r}, is_wav={is_wav}")
    return db


# --------------------------------------------------------------------- songs


def _fit(x: np.ndarray, n: int) -> np.ndarray:
    """Crop or zero-pad ``x (C, samples)`` to ``n`` samples."""
    return x[:, :n] if x.shape[1] >= n else np.pad(x, ((0, 0), (0, n - x.shape[1])))


class Song:
    """One song: stems and/or a mixture, read as float32 at ``sample_rate``.

    Build it from a folder of wav files (:meth:`from_folder`), a ``musdb`` track
    (:meth:`from_musdb`) or a single mix file (:meth:`from_file`, mixture only).

    Attributes:
        name, sample_rate (Hz), num_samples (at ``sample_rate``),
        stems (stem names, e.g. drums, bass, other, vocals, extra stems),
        track_names (one per mono track, e.g. ``drums.L``, ``drums.R``).
    """

    def __init__(self, name: str, files: dict[str, Path], sample_rate: int, cache: bool = False, track=None):
        self.name, self.files, self.sample_rate, self.cache, self._track = name, files, int(sample_rate), cache, track
        self._cached: dict[str, np.ndarray] | None = None
        if track is not None:  # .stem.mp4 via musdb: mixture + the 4 stems
            self.native_rate, frames, channels = int(track.rate), int(track.samples), {s: 2 for s in STEM_NAMES}
        else:
            infos = {k: sf.info(str(p)) for k, p in files.items()}
            self.native_rate = int(next(iter(infos.values())).samplerate)
            frames = min(i.frames for i in infos.values())
            channels = {k: i.channels for k, i in infos.items() if k != "mixture"}
        self.num_samples = frames * self.sample_rate // self.native_rate
        self.stems = list(channels)
        self.track_names = [f"{s}.{'LR'[c]}" if channels[s] == 2 else f"{s}.{c}" if channels[s] > 1 else s
                            for s in self.stems for c in range(channels[s])]

    @classmethod
    def from_folder(cls, folder: str | os.PathLike, sample_rate: int = 44100, cache: bool = False) -> "Song":
        """A song folder with ``mixture.wav`` (optional) and stems: MUSDB's four first,
        in MUSDB order, then every other audio file alphabetically (extra stems)."""
        folder = Path(folder)
        found = {p.stem: p for p in sorted(folder.iterdir()) if p.suffix.lower() in AUDIO_SUFFIXES}
        order = ["mixture", *[s for s in STEM_NAMES if s in found], *[s for s in found if s not in STEM_NAMES]]
        files = {k: found[k] for k in order if k in found}
        if not files:
            raise FileNotFoundError(f"no audio files in {folder}")
        return cls(folder.name, files, sample_rate, cache)

    @classmethod
    def from_file(cls, path: str | os.PathLike, sample_rate: int = 44100, cache: bool = False) -> "Song":
        """A single (stereo or mono) mix file: ``mixture`` only, no tracks."""
        path = Path(path)
        return cls(path.stem, {"mixture": path}, sample_rate, cache)

    @classmethod
    def from_musdb(cls, track, sample_rate: int = 44100, cache: bool = False) -> "Song":
        """A ``musdb`` track (wav folder, extra stems included; or ``.stem.mp4``)."""
        if getattr(track, "is_wav", True):
            return cls.from_folder(Path(track.path).parent, sample_rate, cache)
        return cls(track.name, {}, sample_rate, cache, track=track)

    @property
    def num_tracks(self) -> int:
        return len(self.track_names)

    @property
    def seconds(self) -> float:
        return self.num_samples / self.sample_rate

    def _read(self, start: int, num: int) -> dict[str, np.ndarray]:
        """Native-rate audio ``{key: (C, num)}`` from native sample ``start``."""
        if self._track is not None:
            t = self._track
            t.chunk_start, t.chunk_duration = start / self.native_rate, num / self.native_rate
            try:
                stems = t.stems  # (5, n, 2): mixture, drums, bass, other, vocals
            finally:
                t.chunk_start, t.chunk_duration = 0, None
            return {k: stems[i].T.astype(np.float32) for i, k in enumerate(("mixture", *STEM_NAMES))}
        return {k: sf.read(str(p), start=start, frames=num, dtype="float32", always_2d=True)[0].T
                for k, p in self.files.items()}

    def audio(self, start: int = 0, num: int | None = None) -> tuple[np.ndarray, np.ndarray | None]:
        """A segment, zero-padded past the end.

        Args:
            start, num: in samples at ``self.sample_rate`` (default: the whole song).

        Returns:
            ``tracks (T, num)`` float32 (``T = num_tracks``, may be 0) and
            ``mixture (2, num)`` float32 (mono mixes duplicated) or None without one.
        """
        num = self.num_samples - start if num is None else num
        if self.cache:
            if self._cached is None:
                self._cached = self._load(0, self.num_samples)
            data = {k: _fit(v[:, start:start + num], num) for k, v in self._cached.items()}
        else:
            data = self._load(start, num)
        tracks = [data[s] for s in self.stems]
        tracks = np.concatenate(tracks) if tracks else np.zeros((0, num), np.float32)
        mix = data.get("mixture")
        if mix is not None:
            mix = np.repeat(mix, 2, axis=0) if mix.shape[0] == 1 else mix[:2]
        return tracks, mix

    def _load(self, start: int, num: int) -> dict[str, np.ndarray]:
        if self.native_rate == self.sample_rate:
            return {k: _fit(v, num) for k, v in self._read(start, num).items()}
        s0 = start * self.native_rate // self.sample_rate
        n0 = math.ceil(num * self.native_rate / self.sample_rate) + 1
        return {k: _fit(resample(torch.from_numpy(v), self.native_rate, self.sample_rate).numpy(), num)
                for k, v in self._read(s0, n0).items()}

    def __repr__(self) -> str:
        return f"Song({self.name!r}, {self.num_tracks} tracks, {self.seconds:.1f} s at {self.sample_rate} Hz)"


def load_songs(root: str | os.PathLike | None = None, subset: str = "train", split: str | None = None,
               sample_rate: int = 44100, cache: bool | None = None, max_songs: int | None = None,
               is_wav: bool | None = None, download: bool = False, cache_limit_gb: float = 2.0) -> list[Song]:
    """The songs of a MUSDB-style tree (arguments as :func:`open_musdb`) as :class:`Song` s.

    ``cache=None`` keeps audio in memory after first use when the whole subset
    (tracks + mixture, float32 at ``sample_rate``) needs at most ``cache_limit_gb``.
    """
    db = open_musdb(root, subset, split, is_wav, download)
    tracks = db.tracks[:max_songs]
    songs = [Song.from_musdb(t, sample_rate) for t in tracks]
    if cache is None:
        size = sum(s.num_samples * (s.num_tracks + 2) * 4 for s in songs)
        cache = size <= cache_limit_gb * 2**30
    for s in songs:
        s.cache = cache
    return songs


def reference_songs(source: str | os.PathLike | Sequence, sample_rate: int = 44100, cache: bool = False) -> list[Song]:
    """Mix-only songs from a folder of audio files (searched recursively) or a list of paths."""
    if isinstance(source, (str, os.PathLike)):
        folder = Path(source)
        if not folder.is_dir():
            raise FileNotFoundError(f"reference folder {folder} does not exist")
        source = sorted(p for p in folder.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES)
        if not source:
            raise FileNotFoundError(f"no audio files ({', '.join(AUDIO_SUFFIXES)}) in {folder}")
    return [Song.from_file(p, sample_rate, cache) for p in source]


# --------------------------------------------------------------------- datasets


def rms_db(x: np.ndarray) -> np.ndarray:
    """RMS level in dBFS of each row of ``x (..., samples)`` (floor -200 dB)."""
    return 10 * np.log10(np.mean(np.square(x, dtype=np.float64), axis=-1) + 1e-20)


class _SegmentDataset(torch.utils.data.Dataset):
    """Shared sampling: per-example generators, random segments, silent-track dropping."""

    def __init__(self, songs: Sequence[Song], seconds: float, examples: int, seed: int, silence_db: float):
        if not songs:
            raise ValueError("no songs given")
        self.songs, self.seconds, self.examples, self.seed = list(songs), float(seconds), int(examples), int(seed)
        self.sample_rate, self.silence_db, self.epoch = songs[0].sample_rate, float(silence_db), 0
        if any(s.sample_rate != self.sample_rate for s in songs):
            raise ValueError("all songs must have one sample_rate")
        short = [s.name for s in self.songs if s.seconds < self.seconds]
        if short:
            log.warning("%d songs shorter than %.1f s (zero-padded), e.g. %s", len(short), self.seconds, short[0])

    def __len__(self) -> int:
        return self.examples

    def set_epoch(self, epoch: int) -> None:
        """Draw different examples in each epoch (still deterministic)."""
        self.epoch = int(epoch)

    def _generator(self, index: int) -> torch.Generator:
        state = np.random.SeedSequence([self.seed, self.epoch, index]).generate_state(2)
        return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))

    @staticmethod
    def _randint(low: int, high: int, g: torch.Generator) -> int:
        """Uniform integer in [low, high]."""
        return int(torch.randint(low, high + 1, (1,), generator=g))

    def _segment(self, song: Song, num: int, g: torch.Generator) -> tuple[np.ndarray, np.ndarray | None, int]:
        start = self._randint(0, max(song.num_samples - num, 0), g)
        tracks, mix = song.audio(start, num)
        return tracks, mix, start

    def _tracks(self, songs: Sequence[Song], num: int, g: torch.Generator,
                min_tracks: int) -> tuple[Song, np.ndarray, np.ndarray, int]:
        """A segment of a random song whose non-silent tracks number at least
        ``min_tracks`` (10 tries; else the best try, and never zero tracks).
        Returns song, tracks ``(T, num)``, indices of the active tracks, start."""
        best = None
        for _ in range(10):
            song = songs[self._randint(0, len(songs) - 1, g)]
            tracks, _, start = self._segment(song, num, g)
            level = rms_db(tracks)
            active = np.flatnonzero(level > self.silence_db)
            if best is None or len(active) > len(best[2]):
                best = (song, tracks, active if len(active) else np.array([int(level.argmax())]), start)
            if len(active) >= min_tracks:
                break
        if best[1].shape[0] == 0:
            raise ValueError(f"song {best[0].name} has no tracks")
        return best

    def _choose(self, active: np.ndarray, low: int, high: int, g: torch.Generator) -> np.ndarray:
        """A random subset of ``active`` of size uniform in [low, high] (clipped), in order."""
        high = min(high, len(active))
        k = self._randint(min(low, high), high, g)
        pick = torch.randperm(len(active), generator=g)[:k].sort().values.numpy()
        return active[pick]


class Method1Dataset(_SegmentDataset):
    """Method 1 (self-supervised): random mixes of a song's own tracks.

    Each example: a segment of ``seconds`` of one song's tracks; silent tracks (RMS
    below ``silence_db`` in the segment) are dropped; at most ``max_tracks`` are kept
    (all of them, or with ``random_tracks=True`` a random number in
    [``min_tracks``, ``max_tracks``]); the segment is mixed once by the
    ``MixingConsole`` with random settings (``RandomParamConfig`` ``config``), and
    tracks and mix are split into halves A and B of ``seconds / 2``.

    Item (``n = round(seconds * sample_rate / 2)`` samples):
        ``tracks (T, n)`` tracks of half B; ``reference (2, n)`` mix of half A;
        ``target (2, n)`` mix of half B; ``track_params (T, P)``, ``master_params (Pm,)``
        in [0, 1]; ``track_names`` list, ``song`` name, ``start`` (sample of the segment
        start in the song), ``track_ids (T,)`` indices into ``song.track_names``.
    """

    def __init__(self, songs: Sequence[Song], seconds: float = 10.0, max_tracks: int = 8, examples: int = 1000,
                 seed: int = 0, silence_db: float = -60.0, random_tracks: bool = False, min_tracks: int = 1,
                 config=None):
        super().__init__(songs, seconds, examples, seed, silence_db)
        from .console import MixingConsole

        self.max_tracks, self.min_tracks, self.random_tracks = max_tracks, min_tracks, random_tracks
        self.config = config
        self.console = MixingConsole(self.sample_rate)
        self.half = round(self.seconds * self.sample_rate / 2)

    def __getitem__(self, index: int) -> dict:
        from .params import random_master_params, random_track_params

        g = self._generator(index)
        song, tracks, active, start = self._tracks(self.songs, 2 * self.half, g, self.min_tracks)
        low = self.min_tracks if self.random_tracks else self.max_tracks
        ids = self._choose(active, low, self.max_tracks, g)
        x = torch.from_numpy(tracks[ids]).unsqueeze(0)
        track_params = random_track_params(1, len(ids), self.sample_rate, generator=g, config=self.config)
        master_params = random_master_params(1, self.sample_rate, generator=g, config=self.config)
        with torch.no_grad():
            mix = self.console(x, track_params, master_params)[0]
        n = self.half
        return {"tracks": x[0, :, n:].clone(), "reference": mix[:, :n].clone(), "target": mix[:, n:].clone(),
                "track_params": track_params[0], "master_params": master_params[0],
                "track_names": [song.track_names[i] for i in ids], "song": song.name, "start": start,
                "track_ids": torch.from_numpy(ids)}


class Method2Dataset(_SegmentDataset):
    """Method 2: tracks of song A, the real mix of a different song B as reference.

    Each example: a ``seconds`` segment of a random number in [``min_tracks``,
    ``max_tracks``] of song A's non-silent tracks, and a ``seconds`` segment (not
    silent, if possible) of the mix of song B != A: from ``references`` (a folder of
    mix files, a list of paths or of :class:`Song`) or, by default, the mixtures of
    ``songs`` themselves (which then needs at least two songs).

    Item (``n = round(seconds * sample_rate)``): ``tracks (T, n)``, ``reference (2, n)``,
    ``track_names``, ``song``, ``reference_song``, ``start`` and ``reference_start``
    (segment starts, samples), ``track_ids``.
    """

    def __init__(self, songs: Sequence[Song], seconds: float = 10.0, min_tracks: int = 4, max_tracks: int = 16,
                 references: str | os.PathLike | Sequence | None = None, examples: int = 1000, seed: int = 0,
                 silence_db: float = -60.0):
        super().__init__(songs, seconds, examples, seed, silence_db)
        if references is None:
            if len(self.songs) < 2:
                raise ValueError("Method 2 needs at least two songs (or references=...)")
            self.references = self.songs
        elif isinstance(references, (str, os.PathLike)) or not all(isinstance(r, Song) for r in references):
            self.references = reference_songs(references, self.sample_rate)
        else:
            self.references = list(references)
        self.min_tracks, self.max_tracks = min_tracks, max_tracks
        self.num = round(self.seconds * self.sample_rate)

    def __getitem__(self, index: int) -> dict:
        g = self._generator(index)
        song, tracks, active, start = self._tracks(self.songs, self.num, g, self.min_tracks)
        ids = self._choose(active, self.min_tracks, self.max_tracks, g)
        others = [r for r in self.references if r is not song and r.name != song.name]
        if not others:
            raise ValueError(f"no reference other than {song.name}")
        for _ in range(10):
            ref_song = others[self._randint(0, len(others) - 1, g)]
            _, ref, ref_start = self._segment(ref_song, self.num, g)
            if ref is None:
                raise ValueError(f"reference {ref_song.name} has no mixture")
            if rms_db(ref).max() > self.silence_db:
                break
        return {"tracks": torch.from_numpy(tracks[ids]), "reference": torch.from_numpy(ref),
                "track_names": [song.track_names[i] for i in ids], "song": song.name,
                "reference_song": ref_song.name, "start": start, "reference_start": ref_start,
                "track_ids": torch.from_numpy(ids)}


def collate_tracks(batch: Sequence[dict]) -> dict:
    """Stack examples with different track counts.

    Returns ``tracks (B, T, N)`` zero-padded to the largest ``T``, ``mask (B, T)``
    bool (True = real track), ``reference (B, 2, N)``, and when present ``target
    (B, 2, N)``, ``track_params (B, T, P)`` (padding 0), ``master_params (B, Pm)``,
    ``track_ids (B, T)`` (padding -1); other keys become lists.
    """
    counts = [b["tracks"].shape[0] for b in batch]
    size, num = max(counts), batch[0]["tracks"].shape[-1]
    out: dict = {"tracks": torch.zeros(len(batch), size, num), "mask": torch.zeros(len(batch), size, dtype=torch.bool)}
    if "track_params" in batch[0]:
        out["track_params"] = torch.zeros(len(batch), size, batch[0]["track_params"].shape[-1])
    if "track_ids" in batch[0]:
        out["track_ids"] = torch.full((len(batch), size), -1, dtype=torch.long)
    for i, (b, t) in enumerate(zip(batch, counts)):
        out["mask"][i, :t] = True
        for key in ("tracks", "track_params", "track_ids"):
            if key in b:
                out[key][i, :t] = b[key]
    for key in batch[0]:
        if key in ("reference", "target", "master_params"):
            out[key] = torch.stack([b[key] for b in batch])
        elif key not in out:
            out[key] = [b[key] for b in batch]
    return out
