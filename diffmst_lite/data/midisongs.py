"""Human-composed MIDI files rendered as multitracks with a General MIDI SoundFont.

Each MIDI instrument (a program on a channel, as ``pretty_midi`` splits them) is one
track. A track is rendered *dry*: alone, with its channel volume (CC 7), pan
(CC 10) and reverb/chorus sends (CC 91/93) removed, so a console has something to
mix; expression (CC 11), pitch bends and velocities, the performance, stay. The
whole file rendered as the composer wrote it (their volumes, pans and sends) is
``mixture.wav``: a real balance, though no engineer's processing.

Rendering reuses :func:`diffmst_lite.data.synth.render_midi` (midirenderer + a SoundFont).
"""

from __future__ import annotations

import copy
import os
from pathlib import Path

import numpy as np

from diffmst_lite.data.lmms import slug
from diffmst_lite.data.synth import render_midi
from diffmst_lite.files.audio import window

DRY_CONTROLS = (7, 10, 91, 93)  # channel volume, pan, reverb send, chorus send
SOUNDFONTS = (  # the better General MIDI SoundFonts in Debian; midirenderer reads .sf2 only (not .sf3)
    "/usr/share/sounds/sf2/FluidR3_GM.sf2",  # fluid-soundfont-gm
    "/usr/share/sounds/sf2/MuseScore_General_Full.sf2",  # musescore-general-soundfont-lossless
)


def soundfonts() -> list[Path]:
    """The installed SoundFonts of :data:`SOUNDFONTS` (symlinks resolved)."""
    return list(dict.fromkeys(Path(p).resolve() for p in SOUNDFONTS if Path(p).is_file()))


def load_midi(path: str | os.PathLike):
    """``pretty_midi.PrettyMIDI`` of a file; ``ValueError`` naming the file if it does not parse."""
    import pretty_midi

    try:
        return pretty_midi.PrettyMIDI(str(path))
    except Exception as error:  # mido/pretty_midi raise many kinds on broken files
        raise ValueError(f"{path}: not a readable MIDI file ({error})") from None


def track_name(inst, index: int) -> str:
    """``NN-name``: the instrument's own name, or its General MIDI program name, as a
    file-name-safe slug (MIDI track names may hold NUL bytes, which cut a file name)."""
    import pretty_midi

    name = inst.name.strip("\x00 ") or ("drums" if inst.is_drum else pretty_midi.program_to_instrument_name(inst.program))
    return f"{index:02d}-{slug(name)}"


def dry(pm, index: int):
    """A copy of ``pm`` with instrument ``index`` alone, without DRY_CONTROLS."""
    import pretty_midi

    solo = copy.deepcopy(pm)
    inst = solo.instruments[index]
    kept = [c for c in inst.control_changes if c.number not in DRY_CONTROLS]
    # sends at 0 from the start: the synth's default sends would otherwise add reverb and chorus
    inst.control_changes = [pretty_midi.ControlChange(number, 0, 0.0) for number in (91, 93)] + kept
    solo.instruments = [inst]
    return solo


def crop_midi(pm, seconds: float) -> None:
    """Drop the notes, controls and bends of ``pm`` that start at or after ``seconds`` (in place;
    notes that sound across the end are kept whole: the audio is cut after rendering). Each
    instrument gets an unused controller (CC 110) at ``seconds`` (or the song's end, if sooner)
    so that it renders that long."""
    import pretty_midi

    end = min(seconds, pm.get_end_time())
    for inst in pm.instruments:
        inst.notes = [n for n in inst.notes if n.start < seconds]
        inst.control_changes = [c for c in inst.control_changes if c.time < seconds]
        inst.control_changes.append(pretty_midi.ControlChange(110, 0, end))
        inst.pitch_bends = [b for b in inst.pitch_bends if b.time < seconds]


def render_midi_song(path: str | os.PathLike, sample_rate: int, soundfont: Path, seconds: float | None = None,
                     offset: float = 0.0) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Render a MIDI file's mix and its instruments one by one, from ``offset`` seconds on.

    Returns:
        ``mixture (2, N)`` and ``{track name: (2, N)}`` float32 at ``sample_rate``;
        ``N`` is the rest of the mix after ``offset`` (at most ``seconds``; never padded).
    """
    pm = load_midi(path)
    if seconds is not None:
        crop_midi(pm, offset + seconds)
    pm.instruments = [inst for inst in pm.instruments if inst.notes]
    if not pm.instruments:
        raise ValueError(f"{path}: has no notes")
    cut = window(offset, seconds, sample_rate)
    mixture = render_midi(pm, sample_rate, soundfont)
    tracks = {track_name(inst, i): render_midi(dry(pm, i), sample_rate, soundfont, mixture.shape[1])[:, cut]
              for i, inst in enumerate(pm.instruments)}
    mixture = mixture[:, cut]
    if mixture.shape[1] == 0:
        raise ValueError(f"{path}: ends before {offset} s")
    return mixture, tracks
