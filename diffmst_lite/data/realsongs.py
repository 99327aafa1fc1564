"""Real multitrack songs from Debian packages, in MUSDB18-HQ layout (``diffmst-lite make-real-songs``).

Songs people made, rendered here so that nothing but the command is redistributed:

- ``lmms``: the demo projects of the ``lmms`` package, every track dry and the
  producer's own mix as ``mixture.wav`` (:mod:`diffmst_lite.data.lmms`);
- ``midi``: human-composed MIDI files of game music packages, one track per
  instrument with a General MIDI SoundFont, the composer's balance as
  ``mixture.wav`` (:mod:`diffmst_lite.data.midisongs`).

The tree is what :func:`diffmst_lite.data.load_songs` reads (mono or stereo track
files, any names; the loader makes every channel one track)::

    root/train/lmms-oglsdl-pptrip/{mixture.wav, 00-default-preset.wav, ...} + song.json
    root/diffmst_setup.yaml     # validation split (musdb split="valid")
    root/manifest.json, root/manifest.csv   # per song: package, version, licence, renderer, split

Build (as root, once: the packages are large and not in ``make install``; CI never needs them)::

    apt-get install lmms faketime fluid-soundfont-gm musescore-general-soundfont-lossless \
        openttd-openmsx simutrans-data planetblupi-music-midi warzone2100-music asc-music
    diffmst-lite make-real-songs data/real --sources lmms --sample-rate 22050 --seconds 40
    diffmst-lite make-real-songs data/real --sources midi --sample-rate 22050 --seconds 60
    diffmst-lite make-real-songs data/refs --sources "" --references-out data/refs

Every song is rendered twice; a song whose two renders (the mix or any track)
differ by more than 0.5 dB in any third-octave band of the long-term spectrum is
dropped as not reproducible. Tracks that stay silent are skipped. Sources held out
for the project's outside evaluation (:data:`HELD_OUT_PACKAGES`,
:data:`HELD_OUT_LMMS`) are refused by :func:`check_allowed` whatever is asked.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from fnmatch import fnmatch
from pathlib import Path
from typing import Callable

import numpy as np
import soundfile as sf
import torch

from diffmst_lite.files.audio import fit_length, resample, window

log = logging.getLogger(__name__)

# Held out for the outside evaluation of issue 13: never render, train, tune or build development sets on these.
HELD_OUT_PACKAGES = frozenset({
    "pingus-data", "solarwolf", "wesnoth-music", "wesnoth-1.16-music", "singularity-music", "hyperrogue-music",
    "extremetuxracer-data", "frozen-bubble-data", "funnyboat",
})
HELD_OUT_PACKAGE_PREFIXES = ("fretsonfire",)  # the Frets on Fire song packages (fretsonfire-songs-*)
HELD_OUT_LMMS = frozenset({"CapDan-ReggaeTry", "CapDan-ReggaetonTry", "Skiessi-C64", "Thomasso-AxeFromThe80s"})

SOURCES = ("lmms", "midi")
APT_PACKAGES = {  # what each source needs (installed with apt-get by the user; CI needs none of them)
    "lmms": ("lmms", "faketime"),
    "midi": ("fluid-soundfont-gm", "openttd-openmsx", "simutrans-data", "planetblupi-music-midi"),
}
MIDI_PACKAGES = ("openttd-openmsx", "simutrans-data", "planetblupi-music-midi")
REFERENCE_PACKAGES = ("warzone2100-music", "asc-music")  # released game soundtracks: mastered mixes (Method 2)
REFERENCE_SUFFIXES = (".mp3", ".ogg", ".opus", ".flac", ".m4a")
DETERMINISM_DB = 0.5  # max third-octave difference between two renders
SILENCE_DB = -60.0  # a track whose RMS (over the song) is below this (dBFS) is skipped
MONO_DB = -60.0  # a stereo track whose side is this far below its mid is stored mono
VALIDATION_EVERY = 5  # every 5th song of each source (sorted by name) is in the validation split


LICENCE_NAMES = r"\b(MIT|Expat|L?GPL-?[0-9.]*\+?|Artistic-?[0-9.]*|CC0|CC[- ]BY(?:-SA)?[- ]?[0-9.]*|Public Domain)\b"


class HeldOutError(ValueError):
    """A source that is held out for the outside evaluation was asked for."""


def is_held_out(package: str | None, path: str | os.PathLike | None = None) -> bool:
    """True for a held-out package, or an LMMS demo project held out by name."""
    if package and (package in HELD_OUT_PACKAGES or package.startswith(HELD_OUT_PACKAGE_PREFIXES)):
        return True
    return path is not None and Path(path).name.split(".")[0] in HELD_OUT_LMMS


def check_allowed(package: str | None, path: str | os.PathLike | None = None) -> None:
    """Raise :class:`HeldOutError` for a held-out source."""
    if is_held_out(package, path):
        raise HeldOutError(f"{path or package} ({package}) is held out for the outside evaluation; not used")


# ------------------------------------------------------------------ Debian package facts


def _run(command: list[str]) -> str:
    done = subprocess.run(command, capture_output=True, text=True)
    return done.stdout if done.returncode == 0 else ""


def package_of(path: str | os.PathLike) -> str | None:
    """The Debian package that installed ``path`` (``dpkg -S``), or None."""
    out = _run(["dpkg", "-S", str(Path(path).resolve())]) or _run(["dpkg", "-S", str(path)])
    return out.split(":", 1)[0].split(",")[0].strip() or None if out else None


def package_version(package: str) -> str | None:
    """The installed version of ``package``, or None."""
    return _run(["dpkg-query", "-W", "-f=${Version}", package]).strip() or None


def _copyright_paragraphs(text: str) -> list[dict[str, str]]:
    """Fields of each paragraph of a Debian copyright file (continuation lines joined)."""
    paragraphs = []
    for block in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        key = None
        for line in block.splitlines():
            if line[:1] in (" ", "\t") and key:
                fields[key] += "\n" + line.strip()
            elif ":" in line:
                key, value = line.split(":", 1)
                fields[key := key.strip()] = value.strip()
        paragraphs.append(fields)
    return paragraphs


def _matches(pattern: str, path: str) -> bool:
    """Does a ``Files:`` pattern (a path in the source tree) match an installed ``path``?
    The source tree's leading folders are unknown, so a pattern matches when its last
    two or more components match the installed path's last ones (``*`` matches all)."""
    parts = pattern.strip("/").split("/")
    if pattern == "*":
        return True
    return any(fnmatch(path, "*/" + "/".join(parts[k:])) for k in range(max(1, len(parts) - 1)))


def debian_licence(package: str, path: str | os.PathLike | None = None,
                   doc_root: str | os.PathLike = "/usr/share/doc") -> str:
    """The licence of ``path`` (or of the package) from ``/usr/share/doc/<package>/copyright``.

    Machine-readable (DEP-5) files: the ``License:`` of the last ``Files:`` paragraph
    matching the path. Others: every ``License:`` line, or ``"see <file>"``.
    """
    copyright = Path(doc_root) / package / "copyright"
    if not copyright.is_file():
        return "unknown (no copyright file)"
    paragraphs = _copyright_paragraphs(copyright.read_text(errors="replace"))
    found = None
    for p in paragraphs:
        if "Files" in p and "License" in p:
            if any(_matches(pattern, str(path or "")) for pattern in p["Files"].split()):
                found = p["License"].splitlines()[0]
    if found:
        return found
    licences = sorted({p["License"].splitlines()[0] for p in paragraphs if p.get("License")})
    if licences:
        return " / ".join(licences)
    named = re.findall(LICENCE_NAMES, copyright.read_text(errors="replace"))
    return f"{', '.join(dict.fromkeys(named))} (named in {copyright})" if named else f"see {copyright}"


# ------------------------------------------------------------------ audio checks


def third_octave_db(x: np.ndarray, sample_rate: int, low_hz: float = 25.0) -> np.ndarray:
    """Long-term spectrum in third-octave bands: ``x (C, N)`` -> band energies in dB ``(bands,)``
    (channels summed; bands from ``low_hz`` up to below Nyquist; -200 dB floor)."""
    x = np.asarray(x, np.float64).reshape(-1, np.shape(x)[-1])
    power = (np.abs(np.fft.rfft(x, axis=-1)) ** 2).sum(0)
    freqs = np.fft.rfftfreq(x.shape[-1], 1 / sample_rate)
    centres = low_hz * 2 ** (np.arange(60) / 3)
    centres = centres[centres * 2 ** (1 / 6) < sample_rate / 2]
    edges = np.searchsorted(freqs, np.concatenate([centres * 2 ** (-1 / 6), centres[-1:] * 2 ** (1 / 6)]))
    energy = np.add.reduceat(power, edges[:-1])[: len(centres)] if len(freqs) else np.zeros(len(centres))
    energy[edges[1:] == edges[:-1]] = 0.0  # empty bands
    return 10 * np.log10(np.maximum(energy, 1e-20))


def band_difference_db(a: np.ndarray, b: np.ndarray, sample_rate: int, floor_db: float = -60.0) -> float:
    """Largest third-octave level difference (dB) between two renders of the same audio.
    Bands more than ``-floor_db`` below the loudest band of both are ignored (numerical dust)."""
    la, lb = third_octave_db(a, sample_rate), third_octave_db(b, sample_rate)
    loud = np.maximum(la, lb) > max(la.max(), lb.max()) + floor_db
    return float(np.abs(la - lb)[loud].max()) if loud.any() else 0.0


def rms_db(x: np.ndarray) -> float:
    """RMS in dBFS of ``x`` (all channels)."""
    return float(10 * np.log10(max(float(np.mean(np.square(x, dtype=np.float64))), 1e-20)))


def as_track(x: np.ndarray) -> np.ndarray:
    """``(2, N)`` -> ``(1, N)`` when the side is :data:`MONO_DB` below the mid, else unchanged."""
    mid, side = (x[0] + x[1]) / 2, (x[0] - x[1]) / 2
    return mid[None] if rms_db(side) < rms_db(mid) + MONO_DB else x


# ------------------------------------------------------------------ songs


@dataclass
class Candidate:
    """One song to build: ``render(sample_rate)`` -> ``(mixture (2, N), {track: (2, N)})``."""

    name: str
    source: str  # "lmms" or "midi"
    path: Path
    package: str | None
    renderer: str
    render: Callable[[int], tuple[np.ndarray, dict[str, np.ndarray]]]
    info: dict = field(default_factory=dict)


def missing_tools(sources: tuple[str, ...]) -> list[str]:
    """Apt packages that the chosen sources need and that are not installed."""
    return [p for s in sources for p in APT_PACKAGES[s] if package_version(p) is None]


def lmms_candidates(projects: Path, sample_rate: int, seconds: float | None, offset: float = 0.0) -> list[Candidate]:
    """The LMMS demo projects that are not held out."""
    from diffmst_lite.data import lmms

    version = lmms.lmms_version() if shutil.which("lmms") else "lmms ?"
    out = []
    for path in sorted(projects.rglob("*.mmp*")):
        if path.suffix not in (".mmp", ".mmpz") or "templates" in path.parts or "tutorials" in path.parts:
            continue
        if is_held_out("lmms", path):
            log.info("held out, skipped: %s", path)
            continue

        def render(rate: int, path: Path = path) -> tuple[np.ndarray, dict[str, np.ndarray]]:
            return render_lmms_song(path, rate, seconds, offset)

        tracks = len(lmms.renderable_tracks(lmms.read_project(path)))
        out.append(Candidate(f"lmms-{lmms.slug(path.name.split('.')[0])}", "lmms", path, package_of(path) or "lmms",
                             f"{version} (render, -s {sample_rate}, float; faketime)", render, {"lmms_tracks": tracks}))
    return sorted(out, key=lambda c: c.info["lmms_tracks"])  # quickest first: an interrupted run has more songs


def render_lmms_song(path: Path, sample_rate: int, seconds: float | None,
                     offset: float = 0.0) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The producer's mix and every (non-muted) track dry, all ``(2, N)`` at LMMS's ``sample_rate``,
    from ``offset`` seconds to the mix's end (or ``seconds`` of it; the project is cropped
    after that, so the render is shorter)."""
    from diffmst_lite.data import lmms

    root = lmms.read_project(path)
    if seconds is not None:
        root = lmms.crop_project(root, offset + seconds + 2.0)
    mixture = lmms.render(root, sample_rate, name=f"{path.name} (mix)")
    cut = window(offset, seconds, sample_rate)
    mixture = mixture[:, cut]
    tracks = {}
    for ref in lmms.renderable_tracks(root):
        x = lmms.render(lmms.solo_project(root, ref.index), sample_rate, name=f"{path.name} track {ref.name!r}")
        log.info("%s: rendered track %d %r (%.1f dBFS RMS)", path.name, ref.index, ref.name, rms_db(x))
        tracks[f"{ref.index:02d}-{lmms.slug(ref.name)}"] = fit_length(x[:, cut], mixture.shape[1])
    return mixture, tracks


def midi_candidates(packages: tuple[str, ...], seconds: float | None, offset: float = 0.0) -> list[Candidate]:
    """The MIDI files installed by ``packages`` (held-out packages are refused)."""
    from diffmst_lite.data.midisongs import render_midi_song, soundfonts

    for package in packages:  # a held-out package is refused before anything else is looked at
        check_allowed(package)
    fonts = soundfonts()
    if not fonts:
        raise FileNotFoundError("no General MIDI SoundFont: apt-get install fluid-soundfont-gm")
    out = []
    for package in packages:
        files = [Path(f) for f in _run(["dpkg", "-L", package]).split()]
        for path in sorted(f for f in files if f.suffix.lower() in (".mid", ".midi") and f.is_file()):
            font = fonts[int(hashlib.md5(path.name.encode()).hexdigest(), 16) % len(fonts)]

            def render(rate: int, path: Path = path, font: Path = font):
                return render_midi_song(path, rate, font, seconds, offset)

            name = f"midi-{_slug(package)}-{_slug(path.stem)}"
            out.append(Candidate(name, "midi", path, package, midi_renderer(font), render,
                                 {"soundfont": str(font), "soundfont_licence": soundfont_licence(font)}))
    return out


def midi_renderer(font: Path) -> str:
    """``midirenderer <version> (FluidSynth) + <SoundFont> (<package> <version>)``."""
    from importlib.metadata import version

    package = package_of(font)
    return (f"midirenderer {version('midirenderer')} (FluidSynth) + {font.name} "
            f"({package} {package_version(package) if package else '?'})")


def soundfont_licence(font: Path) -> str:
    """The licence of a SoundFont file, from its Debian package."""
    package = package_of(font)
    return debian_licence(package, font) if package else "unknown"


def _slug(name: str) -> str:
    from diffmst_lite.data.lmms import slug

    return slug(name)


def build_song(candidate: Candidate, folder: Path, sample_rate: int, render_rate: int, renders: int = 2) -> dict:
    """Render a candidate ``renders`` times, check the renders agree, write the song folder.

    Returns the song's manifest entry (``status`` "ok" or "dropped: <reason>").
    """
    entry = {"name": candidate.name, "source": candidate.source, "file": str(candidate.path),
             "package": candidate.package, "version": package_version(candidate.package or ""),
             "licence": debian_licence(candidate.package, candidate.path) if candidate.package else "unknown",
             "renderer": candidate.renderer, **candidate.info}
    first = candidate.render(render_rate)
    differences = {}  # part -> largest third-octave difference between renders (dB)
    for _ in range(renders - 1):
        again = candidate.render(render_rate)
        for key, a in {"mixture": first[0], **first[1]}.items():
            b = again[0] if key == "mixture" else again[1].get(key, np.zeros_like(a))
            differences[key] = max(differences.get(key, 0.0), band_difference_db(a, b, render_rate))
    worst = max(differences.values(), default=0.0)
    entry["render_difference_db"] = round(worst, 3) if renders > 1 else None
    if worst > DETERMINISM_DB:
        unstable = sorted(k for k, d in differences.items() if d > DETERMINISM_DB)
        return {**entry, "unstable": unstable,
                "status": f"dropped: two renders differ by {worst:.2f} dB in a third-octave band "
                          f"({', '.join(unstable)})"}
    mixture, tracks = first
    if render_rate != sample_rate:
        mixture, tracks = _resample(mixture, render_rate, sample_rate), {
            k: _resample(v, render_rate, sample_rate) for k, v in tracks.items()}
    kept = {k: as_track(v) for k, v in tracks.items() if rms_db(v) > SILENCE_DB}
    entry.update(seconds=round(mixture.shape[1] / sample_rate, 2), sample_rate=sample_rate,
                 tracks=sorted(kept), silent_tracks=sorted(set(tracks) - set(kept)),
                 channels=sum(v.shape[0] for v in kept.values()))
    if not kept:
        return {**entry, "status": "dropped: every track is silent"}
    entry["status"] = "ok"
    write_song_folder(folder, mixture, kept, sample_rate, entry)
    return entry


def _resample(x: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    return resample(torch.from_numpy(np.ascontiguousarray(x)), from_rate, to_rate).numpy()


def write_song_folder(folder: Path, mixture: np.ndarray, tracks: dict[str, np.ndarray], sample_rate: int,
                      entry: dict) -> None:
    """Write ``mixture.wav`` and one wav per track (16-bit; a file whose peak would clip is
    scaled to peak 0.99, the gain recorded in ``song.json``), whole then renamed."""
    tmp = folder.with_name(f".{folder.name}.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    gains = {}
    for name, x in {"mixture": mixture, **tracks}.items():
        peak = float(np.abs(x).max())
        gain = min(1.0, 0.99 / peak) if peak > 0 else 1.0
        gains[name] = round(20 * np.log10(gain), 3)
        sf.write(tmp / f"{name}.wav", (x * gain).T, sample_rate, subtype="PCM_16")
    (tmp / "song.json").write_text(json.dumps({**entry, "gain_db": gains}, indent=1))
    if (folder / "song.json").is_file():  # a song built before (another part of it): replaced
        shutil.rmtree(folder)
    tmp.rename(folder)


def read_manifest(root: Path) -> dict[str, dict]:
    """The entries of ``root/manifest.json`` by song name (empty if there is none)."""
    path = root / "manifest.json"
    return {e["name"]: e for e in json.loads(path.read_text())["songs"]} if path.is_file() else {}


def write_manifest(root: Path, entries: list[dict]) -> list[dict]:
    """``manifest.json`` (everything) and ``manifest.csv`` (one line per song); entries of
    other songs already in the manifest (e.g. another source built earlier) are kept.
    Returns all entries written."""
    names = {e["name"] for e in entries}
    entries = [e for n, e in read_manifest(root).items() if n not in names] + entries
    (root / "manifest.json").write_text(json.dumps({"songs": entries}, indent=1))
    columns = ("name", "split", "status", "source", "package", "version", "licence", "renderer", "seconds",
               "channels", "render_difference_db", "file")
    with open(root / "manifest.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(entries)
    return entries


def assign_splits(names: list[str], sources: list[str]) -> dict[str, str]:
    """Song-level split: every :data:`VALIDATION_EVERY`-th song of each source (by name, from the
    third) is ``"validation"``, the rest ``"train"``."""
    split = {}
    for source in sorted(set(sources)):
        mine = sorted(n for n, s in zip(names, sources) if s == source)
        for i, name in enumerate(mine):
            split[name] = "validation" if i % VALIDATION_EVERY == 2 else "train"
    return split


def make_real_songs(root: str | os.PathLike, sources: tuple[str, ...] = SOURCES, sample_rate: int = 44100,
                    max_songs: int | None = None, seconds: float | None = None, offset: float = 0.0, renders: int = 2,
                    lmms_projects: str | os.PathLike = "/usr/share/lmms/projects",
                    midi_packages: tuple[str, ...] = MIDI_PACKAGES, progress: bool = True,
                    retry: bool = False) -> list[dict]:
    """Build the real songs of ``sources`` under ``root/train`` (see module doc).

    Songs already built (a folder with ``song.json``) are kept, so an interrupted run
    resumes; songs the manifest lists as dropped or failed are tried again only with
    ``retry``; a song built with another ``offset``/``seconds`` is built again.
    ``max_songs`` caps the songs per source; ``offset`` and ``seconds`` choose the part of
    each song rendered (default: all of it). Returns the manifest entries (also written to ``root``).
    """
    from tqdm.auto import tqdm

    from diffmst_lite.data.songs import write_musdb_setup

    unknown = sorted(set(sources) - set(SOURCES))
    if unknown:
        raise ValueError(f"unknown sources {unknown}; choose from {', '.join(SOURCES)}")
    missing = missing_tools(tuple(sources))
    if missing:
        raise FileNotFoundError("make-real-songs needs Debian packages that are not installed: "
                                f"apt-get install {' '.join(missing)}")
    root = Path(root)
    candidates = []
    if "lmms" in sources:
        candidates += lmms_candidates(Path(lmms_projects), 44100, seconds, offset)[:max_songs]
    if "midi" in sources:
        candidates += midi_candidates(tuple(midi_packages), seconds, offset)[:max_songs]
    for c in candidates:
        check_allowed(c.package, c.path)
    split = assign_splits([c.name for c in candidates], [c.source for c in candidates])
    before = read_manifest(root)
    entries = []
    part = [offset, seconds]
    everything = list(before.values())
    for c in tqdm(candidates, desc="real songs", unit="song", disable=not progress):
        folder = root / "train" / c.name
        built = json.loads((folder / "song.json").read_text()) if (folder / "song.json").is_file() else {}
        if built.get("window") == part:
            entry = {k: v for k, v in built.items() if k != "gain_db"}
        elif before.get(c.name, {}).get("window") == part and  not retry and before[c.name]["status"] != "ok":
            entry = before[c.name]  # dropped or failed before: not rendered again without retry
        else:
            render_rate = 44100 if c.source == "lmms" else sample_rate  # LMMS renders at >= 44.1 kHz only
            c.info["window"] = part
            try:
                entry = build_song(c, folder, sample_rate, render_rate, renders)
            except (RuntimeError, ValueError, OSError, subprocess.TimeoutExpired) as error:
                entry = {"name": c.name, "source": c.source, "file": str(c.path), "package": c.package,
                         "window": part, "status": f"failed: {error}"}
            log.info("%s: %s", c.name, entry["status"])
        entries.append({**entry, "split": split[c.name]})
        root.mkdir(parents=True, exist_ok=True)
        # after every song: an interrupted run loses nothing, and the songs built so far are a usable tree
        everything = write_manifest(root, entries)
        write_musdb_setup(root, [e["name"] for e in everything if e["split"] == "validation" and e["status"] == "ok"])
    return entries


def collect_references(out: str | os.PathLike, packages: tuple[str, ...] = REFERENCE_PACKAGES) -> list[dict]:
    """Copy the music files of ``packages`` (mastered mixes) to ``out/<package>/`` and write
    ``out/references.csv`` (file, package, version, licence): a reference folder for
    ``train --method 2 --references`` and ``evaluate --references``. Held-out packages are refused."""
    out = Path(out)
    missing = [p for p in packages if package_version(p) is None]
    if missing:
        raise FileNotFoundError(f"reference packages not installed: apt-get install {' '.join(missing)}")
    rows = []
    for package in packages:
        check_allowed(package)
        files = [Path(f) for f in _run(["dpkg", "-L", package]).split()]
        for path in sorted(f for f in files if f.suffix.lower() in REFERENCE_SUFFIXES and f.is_file()):
            target = out / package / f"{_slug(path.parent.name)}-{path.name}"
            target.parent.mkdir(parents=True, exist_ok=True)
            if not target.is_file():
                shutil.copyfile(path, target)
            info = sf.info(str(target))
            rows.append({"file": str(target.relative_to(out)), "source": str(path), "package": package,
                         "version": package_version(package), "licence": debian_licence(package, path),
                         "seconds": round(info.frames / info.samplerate, 1), "sample_rate": info.samplerate})
    with open(out / "references.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, list(rows[0]) if rows else ["file"])
        writer.writeheader()
        writer.writerows(rows)
    return rows
