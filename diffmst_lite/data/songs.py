"""Multitrack data: MUSDB18 loading, songs as mono tracks, reference mixes.

- :func:`open_musdb` opens MUSDB18 (``.stem.mp4``), MUSDB18-HQ (wav folders) or a
  synthetic tree from :func:`diffmst_lite.data.make_songs` with the ``musdb`` package.
- :class:`Song` reads a song as mono ``tracks (T, N)`` (every channel of every stem
  is one track: 4 stereo stems -> 8 tracks, plus any extra stems) and its
  ``mixture (2, N)``, whole or a segment, optionally cached in memory.
- :func:`load_songs` gives the songs of a MUSDB-style tree, :func:`reference_songs`
  mix-only songs from a folder of audio files.

The training datasets of Diff-MST built on these songs (:class:`Method1Dataset`,
:class:`Method2Dataset`, :func:`collate_tracks`) live in :mod:`diffmst_lite.data.datasets`
and are re-exported here.
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

from diffmst_lite.files.audio import AUDIO_SUFFIXES, FFMPEG_SUFFIXES, fit_length, readable_path, resample

log = logging.getLogger(__name__)

STEM_NAMES = ("drums", "bass", "other", "vocals")  # MUSDB stem ids 1..4
SETUP_FILE = "diffmst_setup.yaml"  # musdb setup of a synthetic tree (its own validation split)


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
            raise ValueError("no MUSDB path: give --data DIR (root=... in Python) or set the MUSDB_PATH "
                             "environment variable")
    return Path(root).expanduser()


def detect_is_wav(root: str | os.PathLike) -> bool:
    """True for a wav tree (``root/<subset>/<song>/mixture.wav``: MUSDB18-HQ or
    synthetic), False for ``root/<subset>/<song>.stem.mp4`` (MUSDB18); else an error."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"MUSDB path {root} does not exist (give --data DIR, root=... in Python, "
                                "or set MUSDB_PATH)")
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

    Chapter 13: Full training on MUSDB18.
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
    setup = (root / SETUP_FILE).resolve()  # absolute: musdb joins a relative setup path to root again
    db = musdb.DB(root=str(root), setup_file=str(setup) if setup.is_file() else None, subsets=subset,
                  split=split, is_wav=is_wav, sample_rate=sample_rate)
    if len(db) == 0:
        which = f"{subset} set" + (f", {split} split" if split else "")
        layout = "folders of .wav stems (MUSDB18-HQ layout)" if is_wav else ".stem.mp4 files (MUSDB18)"
        raise FileNotFoundError(f"{root}: no songs in its {which} (looked for {layout})")
    return db


# --------------------------------------------------------------------- songs


class Song:
    """One song: stems and/or a mixture, read as float32 at ``sample_rate``.

    Build it from a folder of wav files (:meth:`from_folder`), a ``musdb`` track
    (:meth:`from_musdb`) or a single mix file (:meth:`from_file`, mixture only).

    Attributes:
        name, sample_rate (Hz), num_samples (at ``sample_rate``),
        stems (stem names, e.g. drums, bass, other, vocals, extra stems),
        track_names (one per mono track, e.g. ``drums_L``, ``drums_R``, the names the CLI and the mixing sheet use).

    Chapter 1: Multitrack audio and mix style.
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
        self.track_names = [f"{s}_{'LR'[c]}" if channels[s] == 2 else f"{s}_{c}" if channels[s] > 1 else s
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
            data = {k: fit_length(v[:, start:start + num], num) for k, v in self._cached.items()}
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
            return {k: fit_length(v, num) for k, v in self._read(start, num).items()}
        s0 = start * self.native_rate // self.sample_rate
        n0 = math.ceil(num * self.native_rate / self.sample_rate) + 1
        return {k: fit_length(resample(torch.from_numpy(v), self.native_rate, self.sample_rate).numpy(), num)
                for k, v in self._read(s0, n0).items()}

    def __repr__(self) -> str:
        return f"Song({self.name!r}, {self.num_tracks} tracks, {self.seconds:.1f} s at {self.sample_rate} Hz)"


def load_songs(root: str | os.PathLike | None = None, subset: str = "train", split: str | None = None,
               sample_rate: int = 44100, cache: bool | None = None, max_songs: int | None = None,
               is_wav: bool | None = None, download: bool = False, cache_limit_gb: float = 2.0) -> list[Song]:
    """The songs of a MUSDB-style tree (arguments as :func:`open_musdb`) as :class:`Song` s.

    ``cache=None`` keeps audio in memory after first use when the whole subset
    (tracks + mixture, float32 at ``sample_rate``) needs at most ``cache_limit_gb``.

    Chapter 1: Multitrack audio and mix style.
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


def warn_if_shorter(songs: Sequence[Song], seconds: float, what: str = "songs") -> None:
    """Log one warning if some of ``songs`` are shorter than the ``seconds`` sections cut
    from them (those sections are zero-padded: the padding is silence the features see)."""
    short = [s for s in songs if s.num_samples < seconds * s.sample_rate]
    if short:
        first = short[0]
        log.warning("%d of %d %s shorter than %.1f s (zero-padded), e.g. %s (%.2f s)", len(short), len(songs), what,
                    seconds, getattr(first, "name", "the first"), first.num_samples / first.sample_rate)


def reference_songs(source: str | os.PathLike | Sequence, sample_rate: int = 44100, cache: bool = False) -> list[Song]:
    """Mix-only songs from a folder of audio files (searched recursively; wav, flac, aiff, ogg,
    mp3, and m4a through ffmpeg) or a list of paths. Songs keep their file's name.

    Chapter 12: Method 2: real references.
    """
    suffixes = AUDIO_SUFFIXES + FFMPEG_SUFFIXES
    if isinstance(source, (str, os.PathLike)):
        folder = Path(source)
        if not folder.is_dir():
            raise FileNotFoundError(f"reference folder {folder} does not exist")
        source = sorted(p for p in folder.rglob("*") if p.suffix.lower() in suffixes)
        if not source:
            raise FileNotFoundError(f"no audio files ({', '.join(suffixes)}) in {folder}")
    songs = []
    for path in map(Path, source):
        song = Song.from_file(readable_path(path), sample_rate, cache)
        song.name = path.stem
        songs.append(song)
    return songs
