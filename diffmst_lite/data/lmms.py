"""LMMS projects rendered as multitracks: every track dry, and the producer's own mix.

An LMMS project (``.mmp``, or ``.mmpz`` = Qt's ``qCompress``: a 4-byte big-endian
length, then zlib) is XML. For each *rendered track* (an instrument track of the
song or of the Beat/Bassline editor, or a sample track) :func:`solo_project`
writes a copy of the project in which

- that track plays at ``vol="100" pan="0"`` on FX channel 0 with its own effect
  chain disabled (the instrument, its envelopes and its notes are kept),
- every other track is muted (instruments inside Beat/Bassline tracks included),
- automation and controller links of the tracks' volume/pan and of the master
  level are deleted, the master FX channel has no effects, and the master
  volume is 100,

so its render is the dry track that Diff-MST's console would mix (Vanka et al.,
ISMIR 2024, Sec. 3). The unchanged project renders the producer's own mix
(``mixture.wav``), a same-song reference with a real engineer's style.

Each render runs in its own ``lmms render`` process (``rendertracks`` produced
NaN in lmms 1.2.2), under ``faketime`` when it is installed (some synths seed
from the clock) and ``nice -n 10``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import xml.etree.ElementTree as ET
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

PROJECTS = Path("/usr/share/lmms/projects")
TICKS_PER_BEAT = 48  # LMMS 1.x: 192 ticks per 4/4 bar
CLIPS = ("pattern", "bbtco", "sampletco", "automationpattern")  # things placed on a song's timeline
LEVEL_MODELS = ("vol", "pan", "volume", "mastervol")  # elements an automated/controlled level becomes


class RenderError(RuntimeError):
    """An LMMS render failed; the message names the project and the track."""


@dataclass
class TrackRef:
    """One renderable track: its index in :func:`renderable_tracks`' order, name and kind."""

    index: int
    name: str
    kind: str  # "instrument", "beat-instrument" or "sample"


def read_project(path: str | os.PathLike) -> ET.Element:
    """Parse an ``.mmp`` (XML) or ``.mmpz`` (qCompress'ed XML) project."""
    data = Path(path).read_bytes()
    if str(path).endswith(".mmpz"):
        data = zlib.decompress(data[4:])
    return ET.fromstring(data)


def _song_tracks(root: ET.Element) -> list[ET.Element]:
    container = root.find("song/trackcontainer")
    if container is None:
        raise ValueError("not an LMMS song: no song/trackcontainer")
    return [t for t in container if t.tag == "track"]


def _beat_tracks(root: ET.Element) -> list[ET.Element]:
    return [t for c in root.iter("trackcontainer") if c.get("type") == "bbtrackcontainer"
            for t in c if t.tag == "track"]


def _sound_tracks(root: ET.Element) -> list[tuple[ET.Element, str]]:
    """All tracks that make sound, in project order, with their kind."""
    found = [(t, "instrument" if t.get("type") == "0" else "sample")
             for t in _song_tracks(root) if t.get("type") in ("0", "2")]
    return found + [(t, "beat-instrument") for t in _beat_tracks(root) if t.get("type") == "0"]


def renderable_tracks(root: ET.Element) -> list[TrackRef]:
    """The tracks the producer's mix plays (tracks muted in the project are left out)."""
    return [TrackRef(i, t.get("name", f"track{i}"), kind) for i, (t, kind) in enumerate(_sound_tracks(root))
            if t.get("muted", "0") != "1"]


def _drop_level_automation(root: ET.Element) -> None:
    """Delete automation and controller links on every track's vol/pan and the master level."""
    ids = set()
    for parent in root.iter():
        if parent.tag not in ("instrumenttrack", "sampletrack", "fxchannel", "head"):
            continue
        for child in list(parent):
            if child.tag in LEVEL_MODELS and (child.get("id") or len(child)):
                ids.add(child.get("id"))
                value = child.get("value")
                parent.remove(child)
                if value is not None:  # keep the level as a plain attribute (overwritten below where needed)
                    parent.set(child.tag, value)
    for pattern in list(root.iter("automationpattern")):
        for obj in list(pattern.findall("object")):
            if obj.get("id") in ids:
                pattern.remove(obj)
    for track in root.iter("track"):
        for pattern in list(track.findall("automationpattern")):
            if pattern.find("object") is None and pattern.get("name") in ("Master volume",):
                track.remove(pattern)


def _clear_master(root: ET.Element) -> None:
    head = root.find("head")
    if head is not None:
        head.set("mastervol", "100")
    for channel in root.iter("fxchannel"):
        if channel.get("num") == "0":
            channel.set("volume", "1")
            channel.set("muted", "0")
            for chain in channel.findall("fxchain"):
                for effect in list(chain):
                    chain.remove(effect)
                chain.set("enabled", "0")
                chain.set("numofeffects", "0")


def solo_project(root: ET.Element, index: int) -> ET.Element:
    """A copy of the project in which only sound track ``index`` plays, dry (see module doc)."""
    import copy

    root = copy.deepcopy(root)
    _drop_level_automation(root)
    _clear_master(root)
    for track in _song_tracks(root) + _beat_tracks(root):
        track.set("solo", "0")
        if track.get("type") in ("0", "2"):
            track.set("muted", "1")
    target, _ = _sound_tracks(root)[index]
    target.set("muted", "0")
    settings = target.find("instrumenttrack")
    if settings is None:
        settings = target.find("sampletrack")
    settings.set("vol", "100")
    settings.set("pan", "0")
    if "fxch" in settings.attrib or settings.tag == "instrumenttrack":
        settings.set("fxch", "0")
    for chain in settings.findall("fxchain"):
        chain.set("enabled", "0")
    return root


def seconds_to_ticks(root: ET.Element, seconds: float) -> int:
    """Ticks at the project's (first) tempo."""
    bpm = float(root.find("head").get("bpm", "140"))
    return int(seconds * bpm / 60 * TICKS_PER_BEAT)


def crop_project(root: ET.Element, seconds: float) -> ET.Element:
    """Remove song-timeline clips that start after ``seconds`` (renders get shorter; crop the audio after)."""
    end = seconds_to_ticks(root, seconds)
    for track in _song_tracks(root):
        for clip in list(track):
            if clip.tag in CLIPS and int(clip.get("pos", "0")) >= end:
                track.remove(clip)
    return root


def write_project(root: ET.Element, path: str | os.PathLike) -> None:
    """Write plain ``.mmp`` XML."""
    Path(path).write_bytes(b'<?xml version="1.0"?>\n<!DOCTYPE lmms-project>\n' + ET.tostring(root))


def lmms_command(project: Path, out: Path, sample_rate: int) -> list[str]:
    """The render command line (one process per render, niced, clock fixed when faketime exists)."""
    command = ["nice", "-n", "10"]
    if shutil.which("faketime"):
        command += ["faketime", "2020-01-01 00:00:00"]
    return command + ["lmms", "--allowroot", "render", str(project), "-f", "wav", "-a", "-s", str(sample_rate),
                      "-o", str(out)]


def render(root: ET.Element, sample_rate: int = 44100, name: str = "project", timeout: float = 1800,
           attempts: int = 2) -> np.ndarray:
    """Render a project with LMMS -> ``(2, N)`` float32 at ``sample_rate`` (44100..192000).
    A failed process is tried again (``attempts`` in all): lmms 1.2.2 now and then exits 1
    on a project that renders the next time."""
    with tempfile.TemporaryDirectory(prefix="diffmst-lmms-") as tmp:
        project, out = Path(tmp) / "song.mmp", Path(tmp) / "out.wav"
        write_project(root, project)
        env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
        for _ in range(attempts):
            done = subprocess.run(lmms_command(project, out, sample_rate), cwd=tmp, env=env, capture_output=True,
                                  timeout=timeout)
            if done.returncode == 0 and out.is_file():
                break
        else:
            lines = [line for line in done.stderr.decode(errors="replace").splitlines() if "%" not in line]
            raise RenderError(f"lmms failed on {name} (exit {done.returncode}): {(lines or ['no message'])[-1]}")
        x, rate = sf.read(str(out), dtype="float32", always_2d=True)
    if rate != sample_rate:
        raise RenderError(f"lmms wrote {rate} Hz for {name}, asked for {sample_rate}")
    if not np.isfinite(x).all():
        raise RenderError(f"lmms rendered NaN or inf for {name}")
    return x.T


def slug(name: str) -> str:
    """A file-name-safe version of a track or song name."""
    return re.sub(r"[^A-Za-z0-9]+", "-", name).strip("-").lower() or "track"


def lmms_version() -> str:
    """``lmms --version``'s first line (e.g. ``LMMS 1.2.2``)."""
    done = subprocess.run(["lmms", "--allowroot", "--version"], capture_output=True, text=True,
                          env={**os.environ, "QT_QPA_PLATFORM": "offscreen"})
    return (done.stdout.strip().splitlines() or ["lmms ?"])[0]
