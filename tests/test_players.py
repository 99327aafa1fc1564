"""Fair listening (issue 14): the book's players play at matched loudness or at true
relative levels, never peak-normalised one by one.

Every number is measured on what the browser gets: the WAV bytes inside the player
(``play``) or inside the HTML row (``compare``), decoded again, 16-bit as they are.
"""
from __future__ import annotations

import base64
import io
import re

import numpy as np
import pytest
import soundfile as sf

from diffmst_lite.book.notebook import compare, play
from diffmst_lite.dsp.loudness import integrated_loudness

SR = 22050
QUANTUM_DB = 0.01  # 16-bit rounding of a peak near -1 dBFS moves it by < 0.001 dB

pytestmark = pytest.mark.usefixtures("one_thread")


def decode(wav: bytes) -> np.ndarray:
    """WAV bytes -> float ``(channels, samples)`` (mono: ``(samples,)``)."""
    audio, rate = sf.read(io.BytesIO(wav), dtype="float64")
    assert rate == SR
    return audio.T


def played(row) -> list[np.ndarray]:
    """The clips embedded in a :func:`compare` row, in order."""
    return [decode(base64.b64decode(b64)) for b64 in re.findall(r"base64,([A-Za-z0-9+/=]+)", row.data)]


def lufs(x: np.ndarray) -> float:
    """Loudness as heard: a mono clip plays on both speakers (a centred stereo pair)."""
    return integrated_loudness(np.stack([x, x]) if x.ndim == 1 else x, SR)


def peak_db(x: np.ndarray) -> float:
    return float(20 * np.log10(np.abs(x).max()))


@pytest.fixture(scope="module")
def music() -> np.ndarray:
    """3 s of stereo noise with a slow tremolo, around -34 LUFS: ``(2, N)``."""
    rng = np.random.default_rng(0)
    t = np.arange(3 * SR) / SR
    return 0.01 * (1 + 0.5 * np.sin(2 * np.pi * 2 * t)) * rng.standard_normal((2, t.size))


@pytest.fixture(scope="module")
def clicks() -> np.ndarray:
    """Very peaky mono audio: full-scale clicks over quiet noise (peak - loudness
    far above 22 dB, so -23 LUFS would clip)."""
    x = 1e-3 * np.random.default_rng(1).standard_normal(3 * SR)
    x[:: SR // 4] = 1.0
    return x


def test_play_brings_a_clip_to_minus_23_lufs(music):
    assert abs(lufs(music) + 23) > 3  # the test means something
    for clip in (music, music[0], 40 * music):  # stereo, mono (heard on both speakers), loud
        player = play(clip, SR)
        assert lufs(decode(player.data)) == pytest.approx(-23.0, abs=0.1)
        assert player.lufs == pytest.approx(-23.0, abs=0.01) and not player.note


def test_play_lowers_a_peaky_clip_to_a_peak_of_minus_1_dbfs(clicks):
    player = play(clicks, SR)
    audio = decode(player.data)
    assert peak_db(audio) <= -1.0 + QUANTUM_DB
    assert peak_db(audio) == pytest.approx(-1.0, abs=0.01)  # lowered, not limited
    assert lufs(audio) < -23.0 - 3 and "LUFS" in player.note


def test_play_keeps_silence_silent():
    for silence in (np.zeros((2, SR)), np.zeros(SR)):
        player = play(silence, SR)
        assert not np.any(decode(player.data)) and player.gain_db == 0.0


def test_play_true_level_plays_the_samples_and_only_guards_against_clipping(music):
    quiet = play(music, SR, level="true")
    np.testing.assert_allclose(decode(quiet.data), music, atol=2 / 32768)
    assert quiet.gain_db == 0.0 and not quiet.note
    hot = play(music * 10 ** (12 / 20) / np.abs(music).max(), SR, level="true")  # +12 dBFS
    assert peak_db(decode(hot.data)) == pytest.approx(-1.0, abs=0.01)
    assert hot.gain_db == pytest.approx(-13.0, abs=1e-6) and "clip" in hot.note


def test_play_refuses_an_unknown_level(music):
    with pytest.raises(ValueError, match="level"):
        play(music, SR, level="peak")


def test_compare_loudness_matches_clips_12_db_apart(music):
    row = compare({"loud": music, "quiet": music[::-1] * 10 ** (-12 / 20)}, SR)
    loud, quiet = (lufs(x) for x in played(row))
    assert loud == pytest.approx(-23.0, abs=0.1) and abs(loud - quiet) < 0.1
    assert row.gain_db["quiet"] - row.gain_db["loud"] == pytest.approx(12.0, abs=0.05)


def test_compare_lowers_the_whole_group_when_one_clip_would_clip(music, clicks):
    row = compare({"music": music, "clicks": clicks}, SR)
    a, b = played(row)
    assert abs(lufs(a) - lufs(b)) < 0.1  # still matched ...
    assert lufs(a) < -23.0 - 3  # ... lowered together ...
    assert max(peak_db(a), peak_db(b)) <= -1.0 + QUANTUM_DB  # ... so that nothing clips
    assert "lowered together" in row.mode


def test_compare_true_keeps_a_clip_6_db_quieter_6_db_quieter(music):
    row = compare({"A": music, "B": music * 10 ** (-6 / 20)}, SR, level="true")
    a, b = played(row)
    assert lufs(a) - lufs(b) == pytest.approx(6.0, abs=0.1)
    np.testing.assert_allclose(a, music, atol=2 / 32768)  # quiet enough: untouched
    hot = compare({"A": 40 * music, "B": 40 * music * 10 ** (-6 / 20)}, SR, level="true")
    a, b = played(hot)
    assert lufs(a) - lufs(b) == pytest.approx(6.0, abs=0.1)
    assert peak_db(a) == pytest.approx(-1.0, abs=0.01)  # one common gain, no clipping


def test_compare_row_names_its_clips_and_its_mode(music):
    clips = {"before <EQ>": music, "after": music[::-1]}
    matched = compare(clips, SR, caption="An EQ & its effect")
    assert "loudness-matched at -23 LUFS" in matched.data
    assert "before &lt;EQ&gt;" in matched.data and "after" in matched.data
    assert "An EQ &amp; its effect" in matched.data
    assert matched.data.count("-23.0 LUFS") == 2 and matched.data.count("<audio") == 2
    true = compare(clips, SR, level="true")
    assert "true relative levels" in true.data and "loudness-matched" not in true.data
    silent = compare({"music": music, "nothing": np.zeros(SR)}, SR)
    assert "silent" in silent.data and not np.any(played(silent)[1])


def test_a_mono_clip_matches_its_centred_stereo_copy(music):
    """The browser plays a mono file on both speakers: it must come out as loud as the
    same signal stored as a centred stereo pair (not 3 dB louder)."""
    row = compare({"mono": music[0], "stereo": np.stack([music[0], music[0]])}, SR)
    mono, stereo = played(row)
    assert mono.ndim == 1 and stereo.ndim == 2
    np.testing.assert_allclose(mono, stereo[0], atol=2 / 32768)
