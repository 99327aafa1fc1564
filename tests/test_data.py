"""MUSDB-style loading, Method 1 / Method 2 datasets and collation, on synthetic songs."""

import shutil

import numpy as np
import pytest
import soundfile as sf
import torch

from diffmst_lite.data import Song, load_songs, reference_songs
from diffmst_lite.data.songs import open_musdb
from diffmst_lite.data.datasets import Method1Dataset, Method2Dataset, collate_tracks
from diffmst_lite.data import make_songs

SR = 22050
SECONDS = 1.0


@pytest.fixture(scope="session")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("songs")
    make_songs(root, 3, 2.0, seed=21, sample_rate=SR, progress=False)  # 3 train + default max(2, 3 // 4) test
    return root


@pytest.fixture(scope="session")
def songs(root):
    return load_songs(root, "train", sample_rate=SR)


@pytest.fixture(scope="session")
def extra_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("extra")
    make_songs(root, 1, 1.5, seed=5, test_songs=0, sample_rate=SR, extra_stems=4, progress=False)
    return root


# ----------------------------------------------------------------- musdb and songs


def test_open_musdb_subsets_and_splits(root, monkeypatch):
    assert [t.name for t in open_musdb(root, "train")] == [f"synth_train_{i:04d}" for i in range(3)]
    assert len(open_musdb(root, "test")) == 2
    # our own validation split (musdb's built-in list names real MUSDB songs only)
    assert [t.name for t in open_musdb(root, "train", split="valid")] == ["synth_train_0002"]
    assert len(open_musdb(root, "train", split="train")) == 2
    monkeypatch.setenv("MUSDB_PATH", str(root))
    assert len(open_musdb()) == 3
    with pytest.raises(ValueError, match="subset='train'"):
        open_musdb(root, "test", split="valid")


def test_open_musdb_relative_path_keeps_its_validation_split(root, monkeypatch):
    # musdb joins a relative setup-file path to the root again (root/root/diffmst_setup.yaml)
    monkeypatch.chdir(root.parent)
    assert [t.name for t in open_musdb(root.name, "train", split="valid")] == ["synth_train_0002"]


def test_clear_errors_for_missing_path(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        open_musdb(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match=str(tmp_path)):
        open_musdb(tmp_path)  # exists, but holds no songs
    monkeypatch.delenv("MUSDB_PATH", raising=False)
    with pytest.raises(ValueError, match="MUSDB_PATH"):
        open_musdb()
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load_songs(tmp_path / "nowhere")


def test_song_tracks_mixture_and_segments(root, songs):
    song = songs[0]
    assert song.track_names == ["drums_L", "drums_R", "bass_L", "bass_R", "other_L", "other_R", "vocals_L", "vocals_R"]
    assert song.num_samples == round(2.0 * SR) and song.cache  # small data set: cached in memory
    tracks, mix = song.audio()
    assert tracks.shape == (8, song.num_samples) and mix.shape == (2, song.num_samples)
    drums, _ = sf.read(str(root / "train" / song.name / "drums.wav"), dtype="float32")
    np.testing.assert_allclose(tracks[:2], drums.T, atol=1e-6)
    part, mix_part = song.audio(100, 500)
    np.testing.assert_allclose(part, tracks[:, 100:600], atol=1e-6)
    np.testing.assert_allclose(mix_part, mix[:, 100:600], atol=1e-6)
    tail, _ = song.audio(song.num_samples - 10, 50)  # past the end: zero-padded
    assert tail.shape == (8, 50) and not tail[:, 10:].any()
    up = Song.from_folder(root / "train" / song.name, sample_rate=44100)  # resampled on read
    assert up.num_samples == 2 * song.num_samples
    hi, _ = up.audio(0, 2000)
    np.testing.assert_allclose(hi[:, ::2][:, 100:900], tracks[:, 100:900], atol=0.02)


def test_stem_mp4_tree(root, songs, tmp_path):
    """MUSDB18 layout (``train/<song>.stem.mp4``, AAC): detected and read like the wav tree."""
    stempeg = pytest.importorskip("stempeg")
    for sub in ("train", "test"):
        (tmp_path / sub).mkdir()
        s = np.stack([sf.read(str(root / "train" / songs[0].name / f"{k}.wav"), dtype="float32")[0]
                      for k in ("mixture", "drums", "bass", "other", "vocals")])
        try:
            stempeg.write_stems(str(tmp_path / sub / f"{songs[0].name}.stem.mp4"), s, sample_rate=SR,
                                writer=stempeg.StreamsWriter(codec="aac", bitrate=256000))
        except Exception as error:  # no AAC encoder in this ffmpeg
            pytest.skip(f"cannot write .stem.mp4: {error}")
    (song,) = load_songs(tmp_path, "test", sample_rate=SR, cache=False)
    assert song.track_names == songs[0].track_names and abs(song.num_samples - songs[0].num_samples) < 0.05 * SR
    tracks, mix = song.audio(SR // 2, SR)
    ref_tracks, ref_mix = songs[0].audio(SR // 2, SR)
    assert tracks.shape == (8, SR) and mix.shape == (2, SR)
    for a, b in ((tracks[0], ref_tracks[0]), (tracks[5], ref_tracks[5]), (mix[1], ref_mix[1])):
        assert np.corrcoef(a, b)[0, 1] > 0.95  # same audio, through a lossy codec


def test_extra_stems_give_more_than_8_tracks(extra_root):
    (song,) = load_songs(extra_root, sample_rate=SR)
    assert song.num_tracks == 16
    assert song.track_names[8:] == ["counter_L", "counter_R", "keys_L", "keys_R", "percussion_L", "percussion_R",
                                    "strings_L", "strings_R"]
    ex = Method1Dataset([song], seconds=SECONDS, max_tracks=16, examples=1)[0]
    assert ex["tracks"].shape[0] > 8 and ex["track_params"].shape[0] == ex["tracks"].shape[0]


# ----------------------------------------------------------------- Method 1


def test_method1_halves_of_one_mix(songs):
    from diffmst_lite.console import MixingConsole

    ds = Method1Dataset(songs, seconds=SECONDS, examples=3, seed=4)
    n = round(SECONDS * SR / 2)
    for i in (1,):
        ex = ds[i]
        num = ex["tracks"].shape[0]
        assert 1 <= num <= 8 and ex["tracks"].shape == (num, n)
        assert ex["reference"].shape == ex["target"].shape == (2, n)
        assert ex["track_params"].shape == (num, 26) and ex["master_params"].shape == (26,)
        assert ex["tracks"].dtype == ex["reference"].dtype == torch.float32
        # re-render the whole segment with the returned settings: A = reference, B = target
        song = next(s for s in songs if s.name == ex["song"])
        tracks, _ = song.audio(ex["start"], 2 * n)
        x = torch.from_numpy(tracks[ex["track_ids"].numpy()])
        assert torch.equal(x[:, n:], ex["tracks"])
        with torch.no_grad():
            mix = MixingConsole(SR)(x[None], ex["track_params"][None], ex["master_params"][None])[0]
        torch.testing.assert_close(mix[:, :n], ex["reference"], atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(mix[:, n:], ex["target"], atol=1e-5, rtol=1e-4)
        assert not torch.allclose(ex["reference"], ex["target"])


def test_method1_deterministic_and_track_limits(songs):
    a, b = Method1Dataset(songs, SECONDS, examples=4, seed=1), Method1Dataset(songs, SECONDS, examples=4, seed=1)
    assert len(a) == 4
    assert torch.equal(a[2]["target"], b[2]["target"]) and a[2]["song"] == b[2]["song"]
    assert not torch.equal(a[2]["target"], Method1Dataset(songs, SECONDS, examples=4, seed=2)[2]["target"])
    b.set_epoch(1)
    assert not torch.equal(a[2]["target"], b[2]["target"])
    small = Method1Dataset(songs, SECONDS, max_tracks=3, random_tracks=True, min_tracks=2, examples=3, seed=0)
    counts = [small[i]["tracks"].shape[0] for i in range(3)]
    assert all(2 <= c <= 3 for c in counts)


def test_method1_own_mix_uses_the_songs_mixture(songs, extra_root):
    ds = Method1Dataset(songs, SECONDS, max_tracks=8, examples=4, seed=3, own_mix=1.0)
    n = round(SECONDS * SR / 2)
    for i in range(4):
        ex = ds[i]
        assert ex["own_mix"] and ex["tracks"].shape[0] == 8  # every non-silent track: the mix holds them all
        song = next(s for s in songs if s.name == ex["song"])
        tracks, mix = song.audio(ex["start"], 2 * n)
        assert torch.equal(ex["tracks"], torch.from_numpy(tracks[ex["track_ids"].numpy(), n:]))
        assert torch.equal(ex["reference"], torch.from_numpy(mix[:, :n]))
        assert torch.equal(ex["target"], torch.from_numpy(mix[:, n:]))
        assert ex["track_params"].isnan().all() and ex["master_params"].isnan().all()  # no true settings
    # a song with more tracks than max_tracks cannot be remixed from a subset: a random mix instead
    (big,) = load_songs(extra_root, sample_rate=SR)
    ex = Method1Dataset([big], SECONDS, max_tracks=8, examples=1, own_mix=1.0)[0]
    assert not ex["own_mix"] and ex["track_params"].isfinite().all()
    # own_mix=0 draws exactly the examples of a run without the option
    a, b = Method1Dataset(songs, SECONDS, examples=3, seed=1), Method1Dataset(songs, SECONDS, examples=3, seed=1,
                                                                             own_mix=0.0)
    assert torch.equal(a[1]["target"], b[1]["target"]) and not b[1]["own_mix"]
    half = Method1Dataset(songs, SECONDS, examples=40, seed=0, own_mix=0.5)
    assert 8 <= sum(half[i]["own_mix"] for i in range(40)) <= 32
    with pytest.raises(ValueError, match="own_mix"):
        Method1Dataset(songs, SECONDS, own_mix=1.5)


@pytest.fixture
def silent_root(root, tmp_path):
    """A copy of a song with silent vocals, and a song with only silent stems."""
    src = root / "train" / "synth_train_0000"
    for name, silent in (("quiet_vocals", ["vocals"]), ("all_silent", ["drums", "bass", "other", "vocals", "mixture"])):
        dst = tmp_path / name
        shutil.copytree(src, dst)
        for stem in silent:
            x, sr = sf.read(str(dst / f"{stem}.wav"))
            sf.write(str(dst / f"{stem}.wav"), np.zeros_like(x), sr)
    return tmp_path


def test_silent_tracks_dropped_never_nan(silent_root):
    quiet = Song.from_folder(silent_root / "quiet_vocals", SR)
    ds = Method1Dataset([quiet], SECONDS, examples=2, seed=0)
    for i in range(2):
        ex = ds[i]
        assert ex["tracks"].shape[0] == 6 and not any(n.startswith("vocals") for n in ex["track_names"])
    dead = Song.from_folder(silent_root / "all_silent", SR)
    for ex in (Method1Dataset([dead], SECONDS, examples=1)[0], Method2Dataset([dead, quiet], SECONDS, examples=2)[1]):
        assert ex["tracks"].shape[0] >= 1
        assert all(torch.isfinite(v).all() for v in ex.values() if isinstance(v, torch.Tensor))


# ----------------------------------------------------------------- Method 2


def test_method2_reference_from_another_song(songs):
    ds = Method2Dataset(songs, SECONDS, min_tracks=4, max_tracks=6, examples=6, seed=3)
    n = round(SECONDS * SR)
    for i in range(6):
        ex = ds[i]
        assert ex["reference_song"] != ex["song"]
        assert 4 <= ex["tracks"].shape[0] <= 6 and ex["tracks"].shape[1] == n and ex["reference"].shape == (2, n)
        ref_song = next(s for s in songs if s.name == ex["reference_song"])
        _, mix = ref_song.audio(ex["reference_start"], n)
        assert torch.equal(ex["reference"], torch.from_numpy(mix))  # the real (styled) mix of song B
    with pytest.raises(ValueError, match="two songs"):
        Method2Dataset(songs[:1], SECONDS)


def test_method2_reference_folder(songs, tmp_path):
    rng = np.random.default_rng(0)
    sf.write(str(tmp_path / "stereo_ref.wav"), 0.1 * rng.standard_normal((3 * SR, 2)), SR)
    sf.write(str(tmp_path / "mono_ref.flac"), 0.1 * rng.standard_normal(3 * SR), SR)
    assert [r.name for r in reference_songs(tmp_path, SR)] == ["mono_ref", "stereo_ref"]
    ds = Method2Dataset(songs, SECONDS, references=tmp_path, examples=8, seed=0)
    refs = {ds[i]["reference_song"] for i in range(8)}
    assert refs == {"mono_ref", "stereo_ref"}
    mono = next(ds[i] for i in range(8) if ds[i]["reference_song"] == "mono_ref")
    assert torch.equal(mono["reference"][0], mono["reference"][1])  # mono reference -> both channels
    with pytest.raises(FileNotFoundError, match="missing_refs"):
        Method2Dataset(songs, SECONDS, references=tmp_path / "missing_refs")


def test_references_shorter_than_a_section_are_named(songs, tmp_path, caplog):
    """Their sections are zero-padded: the padding is silence the loss sees, so say so."""
    sf.write(str(tmp_path / "long.wav"), np.full((2 * SR, 2), 0.1), SR)
    Method2Dataset(songs, SECONDS, references=tmp_path, examples=2)
    assert "shorter" not in caplog.text
    sf.write(str(tmp_path / "jingle.wav"), np.full((SR // 4, 2), 0.1), SR)
    Method2Dataset(songs, SECONDS, references=tmp_path, examples=2)
    assert "1 of 2 references shorter than 1.0 s (zero-padded), e.g. jingle (0.25 s)" in caplog.text


# ----------------------------------------------------------------- collate


def test_collate_pads_and_masks(songs):
    ds = Method2Dataset(songs, SECONDS, min_tracks=4, max_tracks=8, examples=8, seed=5)
    items = [ds[i] for i in range(8)]
    counts = [it["tracks"].shape[0] for it in items]
    assert len(set(counts)) > 1  # different track counts to pad
    batch = collate_tracks(items)
    size = max(counts)
    n = round(SECONDS * SR)
    assert batch["tracks"].shape == (8, size, n) and batch["reference"].shape == (8, 2, n)
    assert batch["mask"].dtype == torch.bool
    assert batch["mask"].sum(1).tolist() == counts
    for i, c in enumerate(counts):
        assert batch["mask"][i, :c].all() and not batch["mask"][i, c:].any()
        assert torch.equal(batch["tracks"][i, :c], items[i]["tracks"]) and not batch["tracks"][i, c:].any()
    assert batch["song"] == [it["song"] for it in items]


def test_collate_method1_and_dataloader(songs):
    ds = Method1Dataset(songs, SECONDS, max_tracks=8, random_tracks=True, examples=3, seed=7)
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=3, collate_fn=collate_tracks, num_workers=0)))
    b, t = batch["mask"].shape
    assert batch["mask"].sum(1).tolist() != [t] * b  # random track counts: some padding
    assert batch["target"].shape == batch["reference"].shape == (3, 2, round(SECONDS * SR / 2))
    assert batch["track_params"].shape == (3, t, 26) and batch["master_params"].shape == (3, 26)
    assert (batch["track_params"][~batch["mask"]] == 0).all() and (batch["track_ids"][~batch["mask"]] == -1).all()
