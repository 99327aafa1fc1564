"""Synthetic song generator: determinism, MUSDB layout, levels, styled mixture."""

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from diffmst_lite.data import synth
from diffmst_lite.data.songs import STEM_NAMES
from diffmst_lite.data import make_songs
from diffmst_lite.data.synth import SCALES, compose, find_soundfont, render_song

SR = 22050


@pytest.fixture(scope="session")
def tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    info = make_songs(root, 3, 3.0, seed=11, test_songs=1, sample_rate=SR, progress=False)
    return root, info


def read(path):
    x, sr = sf.read(str(path), dtype="float32", always_2d=True)
    return x.T, sr


def test_layout_and_musdb_lists_songs(tree):
    musdb = pytest.importorskip("musdb")
    root, info = tree
    assert len(info["train"]) == 3 and len(info["test"]) == 1
    db = musdb.DB(root=str(root), is_wav=True, subsets="train")
    assert [t.name for t in db] == ["synth_train_0000", "synth_train_0001", "synth_train_0002"]
    assert len(musdb.DB(root=str(root), is_wav=True, subsets="test")) == 1
    for song in info["train"] + info["test"]:
        names = sorted(p.name for p in (root / song.split("/")[-2] / song.split("/")[-1]).iterdir())
        assert names == ["bass.wav", "drums.wav", "mixture.wav", "other.wav", "synth.json", "vocals.wav"]


def test_stems_audible_stereo_and_not_clipping(tree):
    root, info = tree
    for song in info["train"]:
        lengths = set()
        for name in ("mixture", *STEM_NAMES):
            x, sr = read(f"{song}/{name}.wav")
            assert sr == SR and x.shape[0] == 2
            lengths.add(x.shape[1])
            rms_db = 10 * np.log10(np.mean(x.astype(np.float64) ** 2) + 1e-20)
            assert -45 < rms_db < -6, (song, name, rms_db)
            assert np.abs(x).max() <= 0.99 + 1e-4, (song, name)
        assert lengths == {3 * SR}


def test_stems_are_level_and_stereo_varied(tree):
    root, info = tree
    levels, balances = [], []
    for song in info["train"]:
        for name in STEM_NAMES:
            x, _ = read(f"{song}/{name}.wav")
            power = np.mean(x.astype(np.float64) ** 2, axis=1)
            levels.append(10 * np.log10(power.sum()))
            balances.append((power[1] - power[0]) / power.sum())
    assert np.ptp(levels) > 3.0  # not all at one level
    assert np.ptp(balances) > 0.2  # not all centred identically


def test_mixture_is_styled_mix_not_sum(tree):
    pyloudnorm = pytest.importorskip("pyloudnorm")
    root, info = tree
    for song in info["train"]:
        mix, _ = read(f"{song}/mixture.wav")
        stems = np.sum([read(f"{song}/{s}.wav")[0] for s in STEM_NAMES], axis=0)
        assert mix.shape == stems.shape
        assert np.linalg.norm(mix - stems) / np.linalg.norm(stems) > 0.2
        loudness = pyloudnorm.Meter(SR).integrated_loudness(mix.T.astype(np.float64))
        peak = np.abs(mix).max()
        assert loudness < -13.8 and (loudness > -16.2 or peak > 0.985), (loudness, peak)


def test_mixture_rerenders_from_metadata(tree):
    from diffmst_lite.console import MixingConsole

    root, info = tree
    song = info["test"][0]
    meta = json.loads(open(f"{song}/synth.json").read())
    assert meta["synthetic"] and meta["sample_rate"] == SR and 80 <= meta["tempo_bpm"] <= 140
    assert meta["renderer"] == info["renderer"]
    stems = np.concatenate([read(f"{song}/{s}.wav")[0] for s in STEM_NAMES])  # (8, N): L/R per stem
    m = meta["mixture"]
    with torch.no_grad():
        mix = MixingConsole(SR)(torch.from_numpy(stems)[None], torch.tensor([m["track_params"]]),
                                torch.tensor([m["master_params"]]))[0].numpy()
    mix *= 10 ** (m["loudness_gain_db"] / 20)
    stored, _ = read(f"{song}/mixture.wav")
    # stems were rounded to 16 bit after mixing: allow a small error
    assert np.max(np.abs(mix - stored)) < 2e-3
    sheet = m["sheet"]
    assert [t["name"] for t in sheet["tracks"]][:3] == ["drums_L", "drums_R", "bass_L"]
    assert len(sheet["tracks"]) == 8 and -1 <= sheet["tracks"][0]["pan"] <= 1 and "compressor" in sheet["master"]


def test_render_is_deterministic_per_seed():
    a, meta_a = render_song(5, 2.0, SR)
    b, meta_b = render_song(5, 2.0, SR)
    c, _ = render_song(6, 2.0, SR)
    assert meta_a == meta_b
    for name in STEM_NAMES:
        assert np.array_equal(a[name], b[name])
        assert a[name].shape == c[name].shape == (2, 2 * SR)
    assert any(not np.allclose(a[n], c[n]) for n in STEM_NAMES)


def test_make_songs_deterministic_and_refuses_overwrite(tmp_path):
    out = [make_songs(tmp_path / d, 1, 1.5, seed=3, test_songs=0, sample_rate=SR, progress=False) for d in "ab"]
    files = [read(f"{o['train'][0]}/mixture.wav")[0] for o in out]
    assert np.array_equal(files[0], files[1])
    with pytest.raises(FileExistsError, match="overwrite"):
        make_songs(tmp_path / "a", 1, 1.5, seed=3, test_songs=0, sample_rate=SR, progress=False)
    again = make_songs(tmp_path / "a", 1, 1.5, seed=9, test_songs=0, sample_rate=SR, progress=False, overwrite=True)
    assert not np.allclose(read(f"{again['train'][0]}/mixture.wav")[0], files[0])  # another seed, another song
    (tmp_path / "d" / "train" / "my_song").mkdir(parents=True)
    (tmp_path / "d" / "train" / "my_song" / "x.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="my_song is not a synthetic song"):
        make_songs(tmp_path / "d", 1, 1.5, seed=3, sample_rate=SR, progress=False, overwrite=True)
    # a song of the user's in test/ keeps train/'s synthetic songs too: nothing is deleted
    # unless both folders may go, and the reason is named
    made = make_songs(tmp_path / "e", 2, 1.5, seed=3, test_songs=1, sample_rate=SR, progress=False)
    (tmp_path / "e" / "test" / "mysong").mkdir()
    (tmp_path / "e" / "test" / "mysong" / "vocals.wav").write_bytes(b"mine")
    with pytest.raises(FileExistsError, match="mysong is not a synthetic song"):
        make_songs(tmp_path / "e", 2, 1.5, seed=4, test_songs=1, sample_rate=SR, progress=False, overwrite=True)
    assert all(Path(song).is_dir() for song in made["train"] + made["test"])
    for bad, message in (({"num_songs": 0, "test_songs": 0}, "at least one song"),
                         ({"seconds": float("nan")}, "seconds"), ({"sample_rate": 1000}, "8000 Hz")):
        kwargs = {"num_songs": 1, "seconds": 1.5, "seed": 3, "test_songs": 0, "sample_rate": SR, **bad}
        with pytest.raises(ValueError, match=message):
            make_songs(tmp_path / "f", progress=False, **kwargs)
    assert not (tmp_path / "f").exists()


def test_extra_stems(tmp_path):
    info = make_songs(tmp_path, 1, 1.5, seed=2, test_songs=0, sample_rate=SR, extra_stems=3, progress=False)
    names = sorted(p.stem for p in (tmp_path / "train" / "synth_train_0000").glob("*.wav"))
    assert names == sorted(["mixture", *STEM_NAMES, *synth.EXTRA_STEMS[:3]])
    meta = json.loads(open(f"{info['train'][0]}/synth.json").read())
    assert len(meta["mixture"]["track_params"]) == 14  # 7 stereo stems -> 14 mono tracks
    with pytest.raises(ValueError):
        compose(0, 2.0, extra_stems=len(synth.EXTRA_STEMS) + 1)


def test_composition_is_musical():
    for seed in range(5):
        score = compose(seed, 8.0, extra_stems=4)
        scale = {(score.key + s) % 12 for s in SCALES[score.mode]}
        assert 80 <= score.tempo <= 140 and len(score.progression) == 4
        parts = {p.name: p for p in score.parts}
        assert [p.name for p in score.parts][:4] == list(STEM_NAMES) and parts["drums"].is_drum
        assert {36, 42} <= {n[0] for n in parts["drums"].notes}  # kick and hats
        for name in ("bass", "vocals", "other", "keys", "counter"):
            notes = parts[name].notes
            assert len(notes) >= 4 and all(n[0] % 12 in scale for n in notes), name
            assert all(0 <= s < e <= 8.0 for _, s, e, _ in notes)
        bar = 4 * score.beat
        downbeats = [(round(s / bar), p) for p, s, _, _ in parts["bass"].notes if abs(s - round(s / bar) * bar) < 1e-6]
        assert len(downbeats) == int(np.ceil(8.0 / bar))  # the bass plays the root on every downbeat
        assert all(p % 12 == (score.key + score.chord(b)[0]) % 12 for b, p in downbeats)


def test_numpy_fallback_renderer():
    stems, meta = render_song(8, 2.0, SR, extra_stems=2, renderer="numpy")
    assert meta["renderer"] == "numpy" and len(stems) == 6
    for name, x in stems.items():
        assert x.shape == (2, 2 * SR) and np.isfinite(x).all()
        assert np.abs(x).max() <= 0.99 and np.sqrt(np.mean(x ** 2)) > 1e-3, name


def test_soundfont_lookup(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="nowhere.sf2"):
        find_soundfont(tmp_path / "nowhere.sf2")
    fake = tmp_path / "my.sf2"
    fake.write_bytes(b"RIFF")
    monkeypatch.setenv("DIFFMST_SOUNDFONT", str(fake))
    assert find_soundfont() == fake.resolve()
    monkeypatch.delenv("DIFFMST_SOUNDFONT")
    monkeypatch.setattr(synth, "SOUNDFONT_PATHS", ())
    assert find_soundfont() is None
    _, meta = render_song(1, 1.0, SR)  # no SoundFont anywhere: falls back to numpy
    assert meta["renderer"] == "numpy"
    with pytest.raises(FileNotFoundError):
        render_song(1, 1.0, SR, renderer="soundfont")


def test_varied_songs_spread_like_real_multitracks(tmp_path):
    """``varied=True``: 4-16 tracks, mono and stereo stems, wide level spread, deterministic,
    each stem's recorded style in synth.json; the default songs are untouched by the option."""
    from diffmst_lite.data import Song

    info = make_songs(tmp_path / "a", 6, 2.0, seed=3, test_songs=0, sample_rate=8000, renderer="numpy",
                      progress=False, varied=True)
    again = make_songs(tmp_path / "b", 1, 2.0, seed=3, test_songs=0, sample_rate=8000, renderer="numpy",
                       progress=False, varied=True)
    channels, levels, counts = set(), [], set()
    for folder in info["train"]:
        song, meta = Song.from_folder(folder, 8000), json.loads(open(f"{folder}/synth.json").read())
        counts.add(song.num_tracks)
        assert 4 <= song.num_tracks <= 16 and meta["varied"] and set(meta["stem_styles"]) == set(song.stems)
        for stem in song.stems:
            x, _ = read(f"{folder}/{stem}.wav")
            style = meta["stem_styles"][stem]
            channels.add(len(x))
            assert len(x) == (2 if style["stereo"] else 1)
            level = 10 * np.log10(np.mean(x.astype(np.float64) ** 2))
            assert level <= style["level_db"] + 0.1  # lowered only where the peak would pass 0.99
            levels.append(level)
        tracks, mix = song.audio()
        assert np.isfinite(tracks).all() and 0.1 < np.abs(mix).max() <= 0.991  # 0.99 in 16 bit
    assert channels == {1, 2} and len(counts) > 1 and max(levels) - min(levels) > 12
    first = Song.from_folder(info["train"][0], 8000).audio()[0]
    assert np.array_equal(first, Song.from_folder(again["train"][0], 8000).audio()[0])


def test_stem_production_tilt_and_reverb():
    from diffmst_lite.data.production import StemStyle, produce_stem, tilt

    sr, t = 44100, np.arange(44100) / 44100
    tones = np.stack([np.sin(2 * np.pi * f * t) for f in (62.5, 1000.0, 16000.0)])
    gains = 20 * np.log10(np.abs(np.fft.rfft(tilt(tones, sr, 6.0))).max(-1) / np.abs(np.fft.rfft(tones)).max(-1))
    assert gains == pytest.approx([-6.0, 0.0, 6.0], abs=0.01)
    rng = np.random.default_rng(0)
    burst = np.zeros((2, sr))
    burst[:, : sr // 10] = rng.standard_normal(sr // 10)  # 100 ms of noise, centred, then silence
    dry = StemStyle(-30.0, 0.0, True, 1.0, None, 1.0)
    wet = StemStyle(-30.0, 0.0, True, 1.0, -6.0, 1.0)
    a, b = produce_stem(burst, sr, dry, rng), produce_stem(burst, sr, wet, rng)
    tail = slice(sr // 5, sr // 2)  # 100-400 ms after the burst
    assert np.abs(a[:, tail]).max() < 1e-6 < np.abs(b[:, tail]).max()
    assert not np.allclose(b[0, tail], b[1, tail])  # the room is stereo
    assert 10 * np.log10(np.mean(b.astype(np.float64) ** 2)) == pytest.approx(-30.0, abs=0.1)
    mono = produce_stem(burst, sr, StemStyle(-30.0, 0.0, False, 1.0, -6.0, 1.0), rng)
    assert mono.shape == (1, sr)
