"""Synthetic multitrack songs written to disk in the MUSDB18-HQ folder layout.

Offline and in CI there is no MUSDB18, so this module writes a tree of the small
songs that :mod:`diffmst_lite.data.synth` composes and renders, which the same loading
code (:mod:`diffmst_lite.data.songs`) reads:

    root/train/synth_train_0000/{mixture,drums,bass,other,vocals}.wav + synth.json
    root/test/synth_test_0000/...
    root/diffmst_setup.yaml          # musdb setup file with a validation split

Unlike MUSDB, where ``mixture.wav`` is (about) the plain sum of the stems, here
``mixture.wav`` is a *styled mix* (:func:`styled_mix`): the stems' mono channels
rendered through the :class:`~diffmst_lite.console.MixingConsole` with the song's
own random settings (like an engineer's choices), normalised to -16...-14 LUFS and
scaled down if its peak exceeds 0.99. So references carry a mixing style to
transfer, the task of Diff-MST (Vanka et al., ISMIR 2024). The renderer used is
logged, returned by :func:`make_songs` and written to each song's ``synth.json``.
The songs are synthetic: label them so wherever results on them are shown.

:func:`make_songs` and :func:`styled_mix` are also importable from
:mod:`diffmst_lite.data.synth`, where they lived first.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import shutil
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from diffmst_lite.dsp.loudness import integrated_loudness
from diffmst_lite.data.songs import write_musdb_setup
from diffmst_lite.data.synth import render_song

log = logging.getLogger(__name__)


# ------------------------------------------------------------------ styled mix


def styled_mix(stems: np.ndarray | list[np.ndarray], sample_rate: int, seed: int,
               names: list[str] | None = None) -> tuple[np.ndarray, dict]:
    """The song's styled mix: the stems' mono channels through the MixingConsole.

    Args:
        stems: ``(S, 2, N)`` stereo stems, or a list of ``(C, N)`` stems (mono or stereo),
            float in [-1, 1]; every channel is one track, in order (left, then right).
        seed: seeds the random console settings (``random_track_params`` /
            ``random_master_params`` with their default ranges).
        names: the ``S`` stem names (for the mixing sheet).

    Returns:
        mix ``(2, N)`` float32 at -16...-14 LUFS with peak <= 0.99, and a dict with the
        loudness gain applied, the settings in [0, 1] (``track_params (2S, P)``,
        ``master_params (Pm,)``) and as a mixing sheet in physical units (tracks named
        ``<stem>_L`` / ``<stem>_R``, or ``<stem>`` for a mono stem).
    """
    from diffmst_lite.console.mixer import MixingConsole
    from diffmst_lite.console.params import random_master_params, random_track_params
    from diffmst_lite.console.sheet import params_to_sheet

    channels = [len(x) for x in stems]
    tracks = torch.from_numpy(np.ascontiguousarray(np.concatenate(list(stems)), dtype=np.float32))[None]
    num_tracks = tracks.shape[1]
    g = torch.Generator().manual_seed(int(seed))
    track_params = random_track_params(1, num_tracks, sample_rate, generator=g)
    master_params = random_master_params(1, sample_rate, generator=g)
    with torch.no_grad():
        mix = MixingConsole(sample_rate)(tracks, track_params, master_params)[0].double().numpy()
    target = float(np.random.default_rng(seed).uniform(-16.0, -14.0))
    loudness = integrated_loudness(mix, sample_rate)
    gain_db = target - loudness if np.isfinite(loudness) else 0.0
    peak = float(np.abs(mix).max()) * 10 ** (gain_db / 20)
    if peak > 0.99:
        gain_db += 20 * np.log10(0.99 / peak)
    names = [f"{n}_{c}" if k == 2 else n for n, k in zip(names, channels) for c in "LR"[:k]] if names else None
    info = {"target_lufs": round(target, 2), "loudness_gain_db": round(float(gain_db), 3),
            "track_params": [[float(f"{v:.9g}") for v in row] for row in track_params[0].tolist()],
            "master_params": [float(f"{v:.9g}") for v in master_params[0].tolist()],
            "sheet": params_to_sheet(track_params[0], master_params[0], sample_rate, names)}
    return (mix * 10 ** (gain_db / 20)).astype(np.float32), info


# ------------------------------------------------------------------ song trees


def _json(obj: dict) -> str:
    """Indented JSON with lists of numbers on one line each."""
    text = json.dumps(obj, indent=1)
    return re.sub(r"\[\s+([-0-9.e,\s]+?)\s+\]", lambda m: "[" + re.sub(r"\s+", " ", m.group(1)) + "]", text)


def _replaceable(folder: Path, overwrite: bool) -> bool:
    """True if ``folder`` holds songs that ``overwrite`` may delete; False if it is empty
    or missing. Raises ``FileExistsError`` (naming the reason) if it may not be replaced."""
    if not (folder.exists() and any(folder.iterdir())):
        return False
    if not overwrite:
        raise FileExistsError(f"{folder} already holds songs; use --force (overwrite=True) to replace them")
    foreign = [p.name for p in folder.iterdir() if not (p / "synth.json").is_file()]
    if foreign:
        raise FileExistsError(f"{folder}: refusing to replace it, {', '.join(foreign[:3])} "
                              f"{'is not a synthetic song' if len(foreign) == 1 else 'are not synthetic songs'}")
    return True


def make_songs(root: str | os.PathLike, num_songs: int, seconds: float, seed: int, test_songs: int | None = None,
               sample_rate: int = 44100, extra_stems: int = 0, progress: bool = True, overwrite: bool = False,
               renderer: str = "auto", soundfont: str | os.PathLike | None = None, varied: bool = False) -> dict:
    """Write ``num_songs`` synthetic songs to ``root/train`` and ``test_songs`` (default
    ``max(2, num_songs // 4)``) to ``root/test`` in MUSDB18-HQ layout, plus
    ``root/diffmst_setup.yaml`` (a musdb setup whose validation split is the last
    ``max(1, num_songs // 8)`` train songs). Deterministic per ``seed``.

    Each song folder holds stereo 16-bit ``drums/bass/other/vocals.wav`` (+ extra stems),
    ``mixture.wav`` (the styled mix, see module doc) and ``synth.json``. ``varied=True``:
    songs more like real multitracks (:func:`~diffmst_lite.data.synth.render_song`): 4-12
    stems, mono or stereo, 4-16 tracks, ``extra_stems`` ignored.
    Raises ``FileExistsError`` if ``root/train`` or ``root/test`` is non-empty, unless
    ``overwrite=True`` (which only deletes folders of synthetic songs, and nothing unless
    both may go), and ``ValueError`` for no songs, a length that is not positive or a
    rate below 8 kHz.

    Returns:
        ``{"root", "renderer", "train": [song dirs], "test": [song dirs], "validation": [names]}``.

    Chapter 1: Multitrack audio and mix style.
    """
    from tqdm.auto import tqdm

    root = Path(root)
    test_songs = max(2, num_songs // 4) if test_songs is None else test_songs
    if not (num_songs >= 0 and test_songs >= 0 and num_songs + test_songs > 0):
        raise ValueError(f"need at least one song, got {num_songs} train and {test_songs} test songs")
    if not (math.isfinite(seconds) and seconds > 0):
        raise ValueError(f"seconds must be a positive number, got {seconds}")
    if sample_rate < 8000:
        raise ValueError(f"sample_rate must be at least 8000 Hz (the console's lowest), got {sample_rate}")
    # every check before anything is deleted: a refused folder leaves both as they were
    replace = [root / subset for subset in ("train", "test") if _replaceable(root / subset, overwrite)]
    for folder in replace:
        shutil.rmtree(folder)
    jobs = [("train", i) for i in range(num_songs)] + [("test", i) for i in range(test_songs)]
    out: dict = {"root": str(root), "renderer": None, "train": [], "test": []}
    for subset, i in tqdm(jobs, desc="synthetic songs", unit="song", disable=not progress):
        song_seed = int(np.random.SeedSequence([seed, int(subset == "test"), i]).generate_state(1)[0])
        stems, meta = render_song(song_seed, seconds, sample_rate, extra_stems, renderer, soundfont, varied)
        mixture, meta["mixture"] = styled_mix(list(stems.values()), sample_rate, song_seed, list(stems))
        meta.update(name=f"synth_{subset}_{i:04d}", subset=subset, set_seed=seed,
                    note="mixture.wav is a styled mix (MixingConsole, own random settings), not the sum of the stems")
        folder, tmp = root / subset / meta["name"], root / subset / f".{meta['name']}.partial"
        tmp.mkdir(parents=True, exist_ok=True)  # written whole, then renamed: no half songs
        (tmp / "synth.json").write_text(_json(meta))
        for name, x in {"mixture": mixture, **stems}.items():
            sf.write(tmp / f"{name}.wav", x.T, sample_rate, subtype="PCM_16")
        tmp.rename(folder)
        out[subset].append(str(folder))
        out["renderer"] = meta["renderer"] if out["renderer"] in (None, meta["renderer"]) else "varied per song"
    num_valid = max(1, num_songs // 8) if num_songs > 1 else 0
    out["validation"] = [Path(p).name for p in out["train"][num_songs - num_valid:]]
    write_musdb_setup(root, out["validation"])
    log.info("wrote %d + %d synthetic songs to %s (renderer: %s)", num_songs, test_songs, root, out["renderer"])
    return out
