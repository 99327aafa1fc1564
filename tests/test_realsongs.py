"""Real songs (make-real-songs): held-out sources, LMMS project surgery, MIDI dry tracks, the
determinism check, song folders + manifest read back by the loader; on small generated fixtures
(CI has neither LMMS nor the music packages)."""

import json
import zlib

import numpy as np
import pytest
import soundfile as sf

from diffmst_lite.data import lmms, realsongs as R
from diffmst_lite.data import load_songs

SR = 22050

PROJECT = """<?xml version="1.0"?>
<lmms-project version="1.0" type="song" creatorversion="1.2.0">
  <head bpm="120" mastervol="80" masterpitch="0"/>
  <song>
    <trackcontainer type="song">
      <track muted="0" name="Lead" solo="0" type="0">
        <instrumenttrack vol="50" pan="-30" fxch="2">
          <instrument name="tripleoscillator"><tripleoscillator vol0="30"/></instrument>
          <pan id="777" value="-30"/>
          <fxchain enabled="1" numofeffects="1"><effect name="reverb"/></fxchain>
        </instrumenttrack>
        <pattern pos="0" len="192" muted="0"><note pos="0" len="48" key="60" vol="100" pan="0"/></pattern>
        <pattern pos="9600" len="192" muted="0"><note pos="0" len="48" key="62" vol="100" pan="0"/></pattern>
      </track>
      <track muted="1" name="Muted idea" solo="0" type="0">
        <instrumenttrack vol="100" pan="0" fxch="0"><fxchain enabled="0" numofeffects="0"/></instrumenttrack>
      </track>
      <track muted="0" name="Vocal sample" solo="0" type="2">
        <sampletrack vol="70" pan="20"><fxchain enabled="1" numofeffects="0"/></sampletrack>
        <sampletco pos="0" len="192" muted="0" src="vox.wav"/>
      </track>
      <track muted="0" name="Beat/Bassline 0" solo="0" type="1">
        <bbtrack>
          <trackcontainer type="bbtrackcontainer">
            <track muted="0" name="Kick" solo="0" type="0">
              <instrumenttrack vol="90" pan="0" fxch="1"><fxchain enabled="1" numofeffects="0"/></instrumenttrack>
              <pattern pos="0" len="192" muted="0"/>
            </track>
            <track muted="0" name="Snare" solo="0" type="0">
              <instrumenttrack vol="80" pan="10" fxch="1"><fxchain enabled="1" numofeffects="0"/></instrumenttrack>
              <pattern pos="0" len="192" muted="0"/>
            </track>
          </trackcontainer>
        </bbtrack>
        <bbtco pos="0" len="192"/>
      </track>
      <track muted="0" name="Automation track" solo="0" type="5">
        <automationtrack/>
        <automationpattern pos="0" len="192" name="Lead pan"><time pos="0" value="-30"/><object id="777"/></automationpattern>
        <automationpattern pos="0" len="192" name="Cutoff"><time pos="0" value="1"/><object id="555"/></automationpattern>
      </track>
    </trackcontainer>
  </song>
  <fxmixer>
    <fxchannel num="0" name="Master" volume="0.5" muted="0">
      <fxchain enabled="1" numofeffects="1"><effect name="limiter"/></fxchain>
    </fxchannel>
    <fxchannel num="1" name="FX 1" volume="1" muted="0"><fxchain enabled="1" numofeffects="0"/></fxchannel>
  </fxmixer>
</lmms-project>
"""


@pytest.fixture()
def project(tmp_path):
    path = tmp_path / "Someone-Song.mmpz"
    data = PROJECT.encode()
    path.write_bytes(len(data).to_bytes(4, "big") + zlib.compress(data))  # Qt's qCompress layout
    return path


# ----------------------------------------------------------------- held out


@pytest.mark.parametrize("package", ["pingus-data", "solarwolf", "wesnoth-1.16-music", "wesnoth-music",
                                     "singularity-music", "hyperrogue-music", "extremetuxracer-data",
                                     "frozen-bubble-data", "funnyboat", "fretsonfire-songs-muldjord"])
def test_held_out_packages_are_refused(package):
    assert R.is_held_out(package)
    with pytest.raises(R.HeldOutError, match="held out"):
        R.check_allowed(package)
    with pytest.raises(R.HeldOutError):
        R.midi_candidates((package,), None)


def test_held_out_lmms_demos_are_never_candidates(tmp_path, project, monkeypatch):
    for name in ("CapDan-ReggaeTry", "CapDan-ReggaetonTry", "Skiessi-C64", "Thomasso-AxeFromThe80s"):
        (tmp_path / f"{name}.mmpz").write_bytes(project.read_bytes())
        assert R.is_held_out("lmms-common", f"/usr/share/lmms/projects/demos/{name}.mmpz")
    assert not R.is_held_out("lmms-common", project)
    monkeypatch.setattr(R, "package_of", lambda path: "lmms-common")
    assert [c.name for c in R.lmms_candidates(tmp_path, 44100, None)] == ["lmms-someone-song"]


# ----------------------------------------------------------------- LMMS projects


def test_renderable_tracks_skip_muted_tracks_and_include_beat_instruments(project):
    refs = lmms.renderable_tracks(lmms.read_project(project))
    assert [(r.name, r.kind) for r in refs] == [
        ("Lead", "instrument"), ("Vocal sample", "sample"), ("Kick", "beat-instrument"), ("Snare", "beat-instrument")]
    assert [r.index for r in refs] == [0, 2, 3, 4]  # index 1 is the muted track


def test_solo_project_plays_one_track_dry(project):
    root = lmms.read_project(project)
    solo = lmms.solo_project(root, 0)  # Lead
    sound = {t.get("name"): t for t, _ in lmms._sound_tracks(solo)}
    assert {n: t.get("muted") for n, t in sound.items()} == {
        "Lead": "0", "Muted idea": "1", "Vocal sample": "1", "Kick": "1", "Snare": "1"}
    lead = sound["Lead"].find("instrumenttrack")
    assert (lead.get("vol"), lead.get("pan"), lead.get("fxch")) == ("100", "0", "0")
    assert lead.find("fxchain").get("enabled") == "0"
    assert lead.find("instrument/tripleoscillator").get("vol0") == "30"  # the instrument is kept
    assert lead.find("pan") is None  # the automated pan model is gone ...
    objects = [o.get("id") for o in solo.iter("object")]
    assert objects == ["555"]  # ... and its automation link, the filter automation stays
    master = [c for c in solo.iter("fxchannel") if c.get("num") == "0"][0]
    assert master.get("volume") == "1" and master.find("fxchain/effect") is None
    assert solo.find("head").get("mastervol") == "100"
    # the project itself is unchanged (the producer's mix renders from it)
    assert root.find("head").get("mastervol") == "80"
    assert root.find(".//instrumenttrack").get("vol") == "50"
    # a beat/bassline instrument: its siblings muted, the beat track itself keeps playing
    kick = lmms.solo_project(root, 3)
    sound = {t.get("name"): t.get("muted") for t, _ in lmms._sound_tracks(kick)}
    assert sound == {"Lead": "1", "Muted idea": "1", "Vocal sample": "1", "Kick": "0", "Snare": "1"}
    assert [t.get("muted") for t in kick.iter("track") if t.get("type") == "1"] == ["0"]
    sample = lmms.solo_project(root, 2).find(".//sampletrack")
    assert (sample.get("vol"), sample.get("pan")) == ("100", "0")


def test_crop_project_drops_clips_after_the_end(project):
    root = lmms.read_project(project)
    assert lmms.seconds_to_ticks(root, 10.0) == 960  # 120 BPM, 48 ticks a beat
    cropped = lmms.crop_project(root, 10.0)
    assert [p.get("pos") for p in cropped.find("song/trackcontainer/track").findall("pattern")] == ["0"]


def test_lmms_command_is_niced_and_renders_float(tmp_path):
    command = lmms.lmms_command(tmp_path / "a.mmp", tmp_path / "a.wav", 44100)
    assert command[:3] == ["nice", "-n", "10"]
    assert command[command.index("lmms"):][:3] == ["lmms", "--allowroot", "render"]
    assert "-a" in command and command[command.index("-s") + 1] == "44100"


# ----------------------------------------------------------------- checks and licences


def test_band_difference_measures_third_octave_levels():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, SR * 2)).astype(np.float32) * 0.1
    assert R.band_difference_db(x, x.copy(), SR) == 0.0
    assert R.band_difference_db(x, x * 10 ** (1 / 20), SR) == pytest.approx(1.0, abs=1e-6)
    t = np.arange(SR * 2) / SR
    tone = np.stack([np.sin(2 * np.pi * 1000 * t)] * 2)
    assert R.band_difference_db(x, x + 0.3 * tone, SR) > 3.0  # one band louder
    assert R.band_difference_db(x, x + 0.3 * tone, SR) < R.band_difference_db(x, x + 3 * tone, SR)


def test_as_track_folds_dual_mono_only():
    rng = np.random.default_rng(1)
    mono = np.repeat(rng.standard_normal((1, 1000)), 2, axis=0)
    assert R.as_track(mono).shape == (1, 1000)
    np.testing.assert_allclose(R.as_track(mono)[0], mono[0])
    stereo = rng.standard_normal((2, 1000))
    assert R.as_track(stereo).shape == (2, 1000)


def test_debian_licence_takes_the_last_matching_files_paragraph(tmp_path):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "copyright").write_text(
        "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\n"
        "Files: *\nCopyright: someone\nLicense: GPL-2+\n\n"
        "Files: data/projects/demos/Oglsdl-*\n data/projects/shorties/Greshz-*\nCopyright: x\nLicense: Artistic-2\n\n"
        "Files: data/projects/*/Skiessi/*\nCopyright: y\nLicense: CC-BY-SA-4\n")
    licence = lambda p: R.debian_licence("pkg", p, doc_root=tmp_path)  # noqa: E731
    assert licence("/usr/share/lmms/projects/demos/Oglsdl-PpTrip.mmpz") == "Artistic-2"
    assert licence("/usr/share/lmms/projects/shorties/Greshz-CoolSnip.mmpz") == "Artistic-2"
    assert licence("/usr/share/lmms/projects/demos/Skiessi/Skiessi-Onion.mmpz") == "CC-BY-SA-4"
    assert licence("/usr/share/lmms/projects/demos/Other-Song.mmpz") == "GPL-2+"
    assert R.debian_licence("nopkg", None, doc_root=tmp_path).startswith("unknown")
    (tmp_path / "font").mkdir()  # not machine-readable: the licences its text names
    (tmp_path / "font" / "copyright").write_text("Licence:\n\n Fluid (MIT, parts Public Domain or CC0)\n")
    assert R.debian_licence("font", None, doc_root=tmp_path).startswith("MIT, Public Domain, CC0 (named in ")


# ----------------------------------------------------------------- MIDI


def test_midi_tracks_are_rendered_dry(tmp_path):
    pretty_midi = pytest.importorskip("pretty_midi")
    from diffmst_lite.data.midisongs import dry, render_midi_song
    from diffmst_lite.data.synth import find_soundfont

    pm = pretty_midi.PrettyMIDI(initial_tempo=120)
    for program, pitch, pan in ((0, 60, 0), (33, 36, 127)):
        inst = pretty_midi.Instrument(program)
        inst.notes = [pretty_midi.Note(100, pitch + k, k * 0.5, k * 0.5 + 0.4) for k in range(4)]
        inst.control_changes = [pretty_midi.ControlChange(7, 40, 0.0), pretty_midi.ControlChange(10, pan, 0.0),
                                pretty_midi.ControlChange(11, 90, 0.0), pretty_midi.ControlChange(91, 100, 0.0)]
        pm.instruments.append(inst)
    solo = dry(pm, 1)
    assert len(solo.instruments) == 1 and solo.instruments[0].program == 33
    controls = sorted((c.number, c.value) for c in solo.instruments[0].control_changes)
    assert controls == [(11, 90), (91, 0), (93, 0)]  # volume and pan gone, sends off, expression kept
    assert len(pm.instruments) == 2  # the original is untouched
    font = find_soundfont()
    if font is None:
        pytest.skip("no General MIDI SoundFont installed")
    path = tmp_path / "song.mid"
    pm.write(str(path))
    mixture, tracks = render_midi_song(path, SR, font)
    assert list(tracks) == ["00-acoustic-grand-piano", "01-electric-bass-finger"]
    assert all(x.shape == mixture.shape for x in tracks.values())
    assert all(R.rms_db(x) > -50 for x in tracks.values())
    # the mix has the composer's hard-right pan on the bass; the dry bass track is centred
    bass = tracks["01-electric-bass-finger"]
    assert abs(R.rms_db(bass[0]) - R.rms_db(bass[1])) < 1.0
    assert R.rms_db(mixture[1]) > R.rms_db(mixture[0]) + 3.0  # ... and the mix leans right
    # only the start: cut to `seconds`, never padded past the end of a shorter song
    short, tracks = render_midi_song(path, SR, font, seconds=1.0)
    assert short.shape[1] == SR and all(x.shape == short.shape for x in tracks.values())
    np.testing.assert_allclose(short[:, : SR // 2], mixture[:, : SR // 2], atol=1e-4)  # notes 0-0.4 s are the same
    assert render_midi_song(path, SR, font, seconds=60.0)[0].shape == mixture.shape
    late, tracks = render_midi_song(path, SR, font, seconds=0.5, offset=1.0)  # a part from the middle
    np.testing.assert_allclose(late, mixture[:, SR: SR + SR // 2], atol=1e-4)
    assert all(x.shape == late.shape for x in tracks.values())


# ----------------------------------------------------------------- songs, manifest, loader


def fake_candidate(name, source, seed, jitter=0.0, silent_track=False):
    """A candidate whose 'renders' are generated noise tracks (``jitter`` changes every render)."""
    calls = {"n": 0}

    def render(rate):
        calls["n"] += 1
        rng = np.random.default_rng(seed)
        n = rate * 2
        tracks = {"00-mono": np.repeat(rng.standard_normal((1, n)) * 0.05, 2, axis=0),
                  "01-wide": rng.standard_normal((2, n)) * 0.05}
        if silent_track:
            tracks["02-silent"] = np.zeros((2, n))
        gain = 1.0 + jitter * calls["n"]
        tracks = {k: (v * gain).astype(np.float32) for k, v in tracks.items()}
        return sum(tracks.values()) * 0.5, tracks

    return R.Candidate(name, source, R.Path(f"/nowhere/{name}"), "pkg", "fake", render)


def test_make_real_songs_writes_a_tree_the_loader_reads(tmp_path, monkeypatch):
    candidates = [fake_candidate(f"lmms-song{i}", "lmms", i, silent_track=i == 0) for i in range(5)]
    candidates += [fake_candidate("midi-a", "midi", 9), fake_candidate("midi-wobbly", "midi", 10, jitter=0.2)]
    monkeypatch.setattr(R, "missing_tools", lambda sources: [])
    monkeypatch.setattr(R, "lmms_candidates", lambda *a: [c for c in candidates if c.source == "lmms"])
    monkeypatch.setattr(R, "midi_candidates", lambda *a: [c for c in candidates if c.source == "midi"])
    entries = R.make_real_songs(tmp_path, ("lmms", "midi"), sample_rate=SR, progress=False)
    status = {e["name"]: e["status"] for e in entries}
    assert status["midi-wobbly"].startswith("dropped: two renders differ by 1.")  # 20 % louder: 1.4 dB
    wobbly = [e for e in entries if e["name"] == "midi-wobbly"][0]
    assert wobbly["unstable"] == ["00-mono", "01-wide", "mixture"] and wobbly["render_difference_db"] == 1.339
    assert [n for n, s in status.items() if s == "ok"] == [f"lmms-song{i}" for i in range(5)] + ["midi-a"]
    song0 = json.loads((tmp_path / "train" / "lmms-song0" / "song.json").read_text())
    assert song0["tracks"] == ["00-mono", "01-wide"] and song0["silent_tracks"] == ["02-silent"]
    assert song0["channels"] == 3 and song0["render_difference_db"] == 0.0
    assert sf.info(str(tmp_path / "train" / "lmms-song0" / "00-mono.wav")).channels == 1
    # manifest: every candidate, its split; csv has the same songs
    manifest = json.loads((tmp_path / "manifest.json").read_text())["songs"]
    assert [e["name"] for e in manifest] == [c.name for c in candidates]
    assert {e["name"] for e in manifest if e["split"] == "validation"} == {"lmms-song2"}
    assert (tmp_path / "manifest.csv").read_text().count("\n") == len(candidates) + 1
    # the loader: mono + stereo track files become 3 mono tracks; validation from diffmst_setup.yaml
    songs = load_songs(tmp_path, "train", sample_rate=SR)
    assert sorted(s.name for s in songs) == sorted(n for n, s in status.items() if s == "ok")
    assert all(s.num_tracks == 3 and s.seconds == 2.0 for s in songs)
    tracks, mix = songs[0].audio(0, 1000)
    assert tracks.shape == (3, 1000) and mix.shape == (2, 1000)
    assert [s.name for s in load_songs(tmp_path, "train", split="valid", sample_rate=SR)] == ["lmms-song2"]
    # a second run keeps what is built (resumable) and renders nothing again
    monkeypatch.setattr(R, "build_song", lambda *a, **k: pytest.fail("rebuilt a finished song"))
    again = R.make_real_songs(tmp_path, ("lmms",), sample_rate=SR, progress=False)
    assert [e["status"] for e in again] == ["ok"] * 5
    assert len(json.loads((tmp_path / "manifest.json").read_text())["songs"]) == 7  # the midi songs stay listed
    again = R.make_real_songs(tmp_path, ("lmms", "midi"), sample_rate=SR, progress=False)  # dropped: not retried
    assert [e["status"][:7] for e in again] == ["ok"] * 6 + ["dropped"]
    # another part of the songs: built again, replacing the folders
    monkeypatch.undo()
    monkeypatch.setattr(R, "missing_tools", lambda sources: [])
    monkeypatch.setattr(R, "lmms_candidates", lambda *a: [c for c in candidates if c.name == "lmms-song1"])
    again = R.make_real_songs(tmp_path, ("lmms",), sample_rate=SR, seconds=1.0, offset=0.5, progress=False)
    assert again[0]["window"] == [0.5, 1.0] and again[0]["status"] == "ok"
    assert json.loads((tmp_path / "train" / "lmms-song1" / "song.json").read_text())["window"] == [0.5, 1.0]


def test_make_real_songs_names_missing_apt_packages(tmp_path, monkeypatch):
    monkeypatch.setattr(R, "package_version", lambda package: None)
    with pytest.raises(FileNotFoundError, match="apt-get install lmms faketime"):
        R.make_real_songs(tmp_path, ("lmms",), progress=False)
    with pytest.raises(ValueError, match="unknown sources"):
        R.make_real_songs(tmp_path, ("tracker",), progress=False)


def test_render_lmms_song_cuts_the_same_part_of_every_render(project, monkeypatch):
    """Renders start at the song's start; a solo track may end sooner (LMMS stops at its last clip)."""
    rate = 100

    def fake_render(root, sample_rate, name="", **kwargs):
        n = 120 if "track" in name else 300
        return np.stack([np.arange(n), -np.arange(n)]).astype(np.float32)

    monkeypatch.setattr(lmms, "render", fake_render)
    mixture, tracks = R.render_lmms_song(project, rate, seconds=1.0, offset=0.5)
    assert mixture.shape == (2, 100) and mixture[0, 0] == 50 and mixture[1, -1] == -149
    assert list(tracks) == ["00-lead", "02-vocal-sample", "03-kick", "04-snare"]
    for x in tracks.values():
        assert x.shape == (2, 100) and x[0, 0] == 50 and x[0, 69] == 119 and not x[:, 70:].any()
    whole, _ = R.render_lmms_song(project, rate, seconds=None)
    assert whole.shape == (2, 300)


def test_midi_track_names_are_file_name_safe():
    """A MIDI track name with a NUL byte once cut a track's file name before ``.wav``
    (the song then had no readable tracks)."""
    import pretty_midi

    from diffmst_lite.data.midisongs import track_name

    odd = pretty_midi.Instrument(program=0, name="Voice 1 (Melody) Up\x00\x00")
    assert track_name(odd, 5) == "05-voice-1-melody-up"
    assert track_name(pretty_midi.Instrument(program=33, name=""), 0) == "00-electric-bass-finger"
    assert track_name(pretty_midi.Instrument(program=0, is_drum=True), 9) == "09-drums"
