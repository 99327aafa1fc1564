"""The two training datasets of Diff-MST and their collation.

Vanka et al., "Diff-MST: Differentiable Mixing Style Transfer", ISMIR 2024, train
on two kinds of examples, both drawn from :class:`~diffmst_lite.data.Song` s:

- :class:`Method1Dataset`: self-supervised random mixes (reference = first half of a
  random mix, target = its second half, input = the tracks of the second half).
- :class:`Method2Dataset`: tracks of song A, the real mix of another song B as reference.
- :func:`collate_tracks` pads different track counts and builds the ``mask``.

Every example is drawn from its own generator seeded by ``(seed, epoch, index)``,
so a dataset is deterministic whatever the order or number of workers. The public
names are also importable from :mod:`diffmst_lite.data.songs`, where they lived first.
"""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np
import torch

from diffmst_lite.data.songs import Song, reference_songs, warn_if_shorter
from diffmst_lite.dsp.loudness import rms_db


class _SegmentDataset(torch.utils.data.Dataset):
    """Shared sampling: per-example generators, random segments, silent-track dropping."""

    def __init__(self, songs: Sequence[Song], seconds: float, examples: int, seed: int, silence_db: float):
        if not songs:
            raise ValueError("no songs given")
        self.songs, self.seconds, self.examples, self.seed = list(songs), float(seconds), int(examples), int(seed)
        self.sample_rate, self.silence_db, self.epoch = songs[0].sample_rate, float(silence_db), 0
        if any(s.sample_rate != self.sample_rate for s in songs):
            raise ValueError("all songs must have one sample_rate")
        warn_if_shorter(self.songs, self.seconds)

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
                min_tracks: int) -> tuple[Song, np.ndarray, np.ndarray, int, np.ndarray | None]:
        """A segment of a random song whose non-silent tracks number at least
        ``min_tracks`` (10 tries; else the best try, and never zero tracks).
        Returns song, tracks ``(T, num)``, indices of the active tracks, start, and
        the song's own mix of the segment ``(2, num)`` (None if it has none)."""
        best = None
        for _ in range(10):
            song = songs[self._randint(0, len(songs) - 1, g)]
            tracks, mix, start = self._segment(song, num, g)
            level = rms_db(tracks)
            active = np.flatnonzero(level > self.silence_db)
            if best is None or len(active) > len(best[2]):
                best = (song, tracks, active if len(active) else np.array([int(level.argmax())]), start, mix)
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

    ``own_mix`` (beyond the paper): the probability that an example uses the song's
    own mix (``mixture.wav``: the producer's or composer's balance) instead of a random
    console mix, when the song has one and all its non-silent tracks of the segment fit
    in ``max_tracks`` (the own mix holds every track, so none may be left out). Such an
    example teaches what human mixes sound like; it has no true settings
    (``track_params`` and ``master_params`` are NaN, ``own_mix`` is True).

    Item (``n = round(seconds * sample_rate / 2)`` samples):
        ``tracks (T, n)`` tracks of half B; ``reference (2, n)`` mix of half A;
        ``target (2, n)`` mix of half B; ``track_params (T, P)``, ``master_params (Pm,)``
        in [0, 1]; ``own_mix`` bool; ``track_names`` list, ``song`` name, ``start``
        (sample of the segment start in the song), ``track_ids (T,)`` indices into
        ``song.track_names``.

    Chapter 11: Method 1: self-supervised random mixes.
    """

    def __init__(self, songs: Sequence[Song], seconds: float = 10.0, max_tracks: int = 8, examples: int = 1000,
                 seed: int = 0, silence_db: float = -60.0, random_tracks: bool = False, min_tracks: int = 1,
                 config=None, own_mix: float = 0.0):
        super().__init__(songs, seconds, examples, seed, silence_db)
        from diffmst_lite.console.mixer import MixingConsole

        if not 0.0 <= own_mix <= 1.0:
            raise ValueError(f"own_mix is a probability in [0, 1], got {own_mix}")
        self.max_tracks, self.min_tracks, self.random_tracks = max_tracks, min_tracks, random_tracks
        self.config, self.own_mix = config, float(own_mix)
        self.console = MixingConsole(self.sample_rate)
        self.half = round(self.seconds * self.sample_rate / 2)

    def __getitem__(self, index: int) -> dict:
        from diffmst_lite.console.params import random_master_params, random_track_params

        g = self._generator(index)
        song, tracks, active, start, own = self._tracks(self.songs, 2 * self.half, g, self.min_tracks)
        # drawn only when asked for, so that runs without own mixes keep their examples
        use_own = (self.own_mix > 0 and own is not None and len(active) <= self.max_tracks
                   and float(torch.rand((), generator=g)) < self.own_mix)
        if use_own:
            ids = active
        else:
            low = self.min_tracks if self.random_tracks else self.max_tracks
            ids = self._choose(active, low, self.max_tracks, g)
        x = torch.from_numpy(tracks[ids]).unsqueeze(0)
        track_params = random_track_params(1, len(ids), self.sample_rate, generator=g, config=self.config)
        master_params = random_master_params(1, self.sample_rate, generator=g, config=self.config)
        if use_own:
            mix = torch.from_numpy(own)
            track_params, master_params = track_params.fill_(float("nan")), master_params.fill_(float("nan"))
        else:
            with torch.no_grad():
                mix = self.console(x, track_params, master_params)[0]
        n = self.half
        return {"tracks": x[0, :, n:].clone(), "reference": mix[:, :n].clone(), "target": mix[:, n:].clone(),
                "track_params": track_params[0], "master_params": master_params[0], "own_mix": use_own,
                "track_names": [song.track_names[i] for i in ids], "song": song.name, "start": start,
                "track_ids": torch.from_numpy(ids)}


class Method2Dataset(_SegmentDataset):
    """Method 2: tracks of song A, the real mix of a different song B as reference.

    Each example: a ``seconds`` segment of a random number in [``min_tracks``,
    ``max_tracks``] of song A's non-silent tracks, and a ``seconds`` segment (not
    silent, if possible) of the mix of song B != A: from ``references`` (a folder of
    mix files, a list of paths or of :class:`~diffmst_lite.data.Song`) or, by
    default, the mixtures of ``songs`` themselves (which then needs at least two songs).

    Item (``n = round(seconds * sample_rate)``): ``tracks (T, n)``, ``reference (2, n)``,
    ``track_names``, ``song``, ``reference_song``, ``start`` and ``reference_start``
    (segment starts, samples), ``track_ids``.

    Chapter 12: Method 2: real references.
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
        warn_if_shorter(self.references, self.seconds, "references")
        self.min_tracks, self.max_tracks = min_tracks, max_tracks
        self.num = round(self.seconds * self.sample_rate)

    def __getitem__(self, index: int) -> dict:
        g = self._generator(index)
        song, tracks, active, start, _ = self._tracks(self.songs, self.num, g, self.min_tracks)
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

    Chapter 11: Method 1: self-supervised random mixes.
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
