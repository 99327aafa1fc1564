"""Real reference mixes for Method 2 and evaluation: mp3 / m4a / opus reading (files written by
ffmpeg here), the decode cache, Method2Dataset on such a folder, evaluate(references=...) and
`diffmst-lite evaluate --references`."""

import subprocess

import numpy as np
import pytest
import soundfile as sf

from diffmst_lite.files import audio as audio_files
from diffmst_lite.cli import main
from diffmst_lite.data import Song, load_songs, reference_songs
from diffmst_lite.data.datasets import Method2Dataset
from diffmst_lite.mixing.evaluate import EvalConfig, evaluate
from diffmst_lite.data import make_songs

SR = 22050


def encode(wav, out, *codec):
    subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-y", "-i", str(wav), *codec, str(out)], check=True)
    return out


@pytest.fixture(scope="module")
def refs(tmp_path_factory):
    """A folder of 3-second stereo tones (left 440 Hz, right 660 Hz) as mp3, m4a and opus, and a wav."""
    folder = tmp_path_factory.mktemp("refs")
    t = np.arange(3 * 44100) / 44100
    wav = folder / "tone.wav"
    sf.write(wav, np.stack([np.sin(2 * np.pi * 440 * t), np.sin(2 * np.pi * 660 * t)], 1) * 0.3, 44100)
    encode(wav, folder / "a_song.mp3", "-c:a", "libmp3lame", "-b:a", "128k")
    encode(wav, folder / "b_song.m4a", "-c:a", "aac", "-b:a", "128k")
    encode(wav, folder / "c_song.opus", "-c:a", "libopus", "-b:a", "96k")
    return folder


def peak_hz(x, rate):
    spectrum = np.abs(np.fft.rfft(x))
    return np.fft.rfftfreq(len(x), 1 / rate)[spectrum.argmax()]


def test_reference_songs_read_mp3_m4a_opus_and_wav(refs, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    songs = reference_songs(refs, SR)
    assert [s.name for s in songs] == ["a_song", "b_song", "c_song", "tone"]
    for song in songs:
        assert song.num_tracks == 0 and abs(song.seconds - 3.0) < 0.1, song  # codec padding < 0.1 s
        _, mix = song.audio(SR // 2, SR)
        assert mix.shape == (2, SR)
        assert peak_hz(mix[0], SR) == pytest.approx(440, abs=2) and peak_hz(mix[1], SR) == pytest.approx(660, abs=2)
    # the m4a went through ffmpeg into the cache, once
    cached = list((tmp_path / "diffmst-lite" / "decoded").glob("b_song-*.wav"))
    assert len(cached) == 1
    monkeypatch.setattr(audio_files.subprocess, "run", lambda *a, **k: pytest.fail("decoded again"))
    assert reference_songs([refs / "b_song.m4a"], SR)[0].files["mixture"] == cached[0]


def test_undecodable_reference_is_named(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    (tmp_path / "broken.m4a").write_bytes(b"not audio at all")
    with pytest.raises(ValueError, match=r"broken.m4a: cannot read audio \(ffmpeg cannot decode it"):
        reference_songs(tmp_path, SR)


def test_every_command_reads_an_m4a_file(refs, tmp_path, monkeypatch, capsys):
    """`mix --reference song.m4a` (a bought record is often m4a) reads it as the reference folders do."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    audio, rate = audio_files.load_audio(refs / "b_song.m4a")
    assert audio.shape[0] == 2 and abs(audio.shape[1] / rate - 3.0) < 0.1
    assert peak_hz(audio[0].numpy(), rate) == pytest.approx(440, abs=2)
    assert peak_hz(audio[1].numpy(), rate) == pytest.approx(660, abs=2)
    assert main(["features", str(refs / "b_song.m4a")]) == 0 and f'"sample_rate": {rate}' in capsys.readouterr().out
    (tmp_path / "text.m4a").write_text("not audio")
    assert main(["features", str(tmp_path / "text.m4a")]) == 2
    assert "text.m4a: cannot read audio (ffmpeg cannot decode it" in capsys.readouterr().err


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("songs")
    make_songs(root, 2, 3.0, seed=3, test_songs=2, sample_rate=SR, progress=False)
    return root


def test_method2_trains_on_a_folder_of_mp3_references(tree, refs, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    songs = load_songs(tree, "train", sample_rate=SR)
    dataset = Method2Dataset(songs, seconds=1.0, references=refs, examples=4, seed=0)
    names = {dataset[i]["reference_song"] for i in range(4)}
    assert names <= {"a_song", "b_song", "c_song", "tone"}
    item = dataset[0]
    assert item["reference"].shape == (2, SR) and float(item["reference"].abs().max()) > 0.1


def test_evaluate_against_references_uses_them(tree, refs, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    songs = load_songs(tree, "test", sample_rate=SR)
    config = EvalConfig(seconds=1.0, optimize_steps=1)
    same_song = evaluate(None, songs, config, progress=False)
    # each song's own mixture file given as "references" reproduces the same-song evaluation exactly ...
    own = [Song.from_file(s.files["mixture"], SR) for s in songs]
    assert evaluate(None, songs, config, progress=False, references=own) == same_song
    # ... and other mixes change it. Not the other synthetic song's mixture: averaged over both songs,
    # swapping two mixtures of the same synthesiser moves the equal-loudness AF by 0.1 %. Two sine
    # tones have nothing of the songs' spectrum: the Bark term of the same equal-loudness mixes changes.
    other = evaluate(None, songs, config, progress=False, references=reference_songs(refs, SR))
    assert other["equal-loudness"]["bs"] != pytest.approx(same_song["equal-loudness"]["bs"], rel=0.2)


def test_cli_evaluate_with_references_and_validation_split(tree, refs, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    out = tmp_path / "r.csv"
    code = main(["evaluate", "--data", str(tree), "--references", str(refs), "--out", str(out), "--seconds", "1",
                 "--steps", "1", "--split", "valid", "--pairs-out", str(tmp_path / "pairs.csv")])
    printed = capsys.readouterr()
    err = printed.err
    assert code == 0, err
    assert "1 valid songs against 4 reference mixes" in err
    assert "model beats equal-loudness on " in printed.out and "/1 pairs" in printed.out
    assert len((tmp_path / "pairs.csv").read_text().splitlines()) == 2  # header + the one pair
    assert [line.split(",")[0] for line in out.read_text().splitlines()] == [
        "method", "equal-loudness", "random", "optimised", "model"]
