"""The diffmst-lite command and the mixing sheet on good and bad input: every
error is one clear line, exit code 2, and nothing is written or overwritten."""

import argparse
import contextlib
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import torch

from diffmst_lite.files.audio import AudioError, load_audio, save_audio, validate_audio
from diffmst_lite.cli import main
from diffmst_lite.console import SheetError, neutral_sheet, read_sheet, sheet_to_params
from diffmst_lite.console.sheet import params_to_sheet

SR = 22050


@pytest.fixture()
def stems(tmp_path):
    t = np.arange(SR) / SR
    sf.write(tmp_path / "bass.wav", (0.3 * np.sin(2 * np.pi * 80 * t)).astype(np.float32), SR)
    sf.write(tmp_path / "keys.wav", np.stack([0.2 * np.sin(2 * np.pi * 440 * t)] * 2, 1).astype(np.float32), SR)
    return tmp_path


def run(args, capsys):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def test_sheet_then_render_gives_the_neutral_balance(stems, capsys):
    code, out, _ = run(["sheet", stems / "bass.wav", stems / "keys.wav"], capsys)
    sheet = json.loads(out)
    assert code == 0 and [t["name"] for t in sheet["tracks"]] == ["bass", "keys_L", "keys_R"]
    (stems / "s.json").write_text(out)
    code, _, err = run(["render", stems / "bass.wav", stems / "keys.wav", "--sheet", stems / "s.json",
                        "--out", stems / "mix.wav"], capsys)
    assert code == 0, err
    mix, rate = sf.read(stems / "mix.wav", dtype="float32")
    assert rate == SR and mix.shape == (SR, 2) and sf.info(stems / "mix.wav").subtype == "FLOAT"
    bass, _ = sf.read(stems / "bass.wav", dtype="float32")
    keys, _ = sf.read(stems / "keys.wav", dtype="float32")
    centre = 10 ** (-4.5154 / 20)
    assert np.allclose(mix[:, 0], (bass + keys[:, 0] + keys[:, 1]) * centre, atol=1e-4)


def test_tracks_are_decoded_whole_into_their_rows_across_many_blocks(tmp_path):
    from diffmst_lite.cli import load_tracks
    from diffmst_lite.files.audio import READ_BLOCK_FRAMES

    n = 2 * READ_BLOCK_FRAMES + 12345  # two whole blocks and a part
    rng = np.random.default_rng(0)
    stereo, mono = rng.uniform(-0.5, 0.5, (n, 2)).astype(np.float32), rng.uniform(-0.5, 0.5, n).astype(np.float32)
    sf.write(tmp_path / "pad.flac", stereo, SR, subtype="PCM_24")
    sf.write(tmp_path / "kick.wav", mono, SR, subtype="FLOAT")
    tracks, names, rate = load_tracks([str(tmp_path / "kick.wav"), str(tmp_path / "pad.flac")])
    assert names == ["kick", "pad_L", "pad_R"] and rate == SR and tracks.shape == (3, n)
    expected = np.stack([mono, *sf.read(tmp_path / "pad.flac", dtype="float32")[0].T])
    assert np.array_equal(tracks.numpy(), expected)
    audio, _ = load_audio(tmp_path / "pad.flac")
    assert np.array_equal(audio.numpy(), expected[1:])


def test_render_refuses_to_overwrite_without_force(stems, capsys):
    run(["sheet", stems / "bass.wav", "--out", stems / "s.json"], capsys)
    (stems / "mix.wav").write_bytes(b"precious")
    args = ["render", stems / "bass.wav", "--sheet", stems / "s.json", "--out", stems / "mix.wav"]
    code, _, err = run(args, capsys)
    assert code == 2 and "exists" in err and "--force" in err
    assert (stems / "mix.wav").read_bytes() == b"precious"
    assert run(args + ["--force"], capsys)[0] == 0 and sf.info(stems / "mix.wav").frames == SR


@pytest.mark.parametrize("problem, expected", [
    ("missing", "no such file"),
    ("unreadable", "cannot read audio"),
    ("nan", "NaN"),
    ("empty", "empty"),
    ("length", "different lengths"),
    ("rate", "different sample rates"),
    ("count", "has 1 track(s) but 2 were given"),
    ("json", "invalid JSON at line 1"),
    ("range", "tracks[0].eq[2].freq_hz: 20000 is outside"),
    ("missing_field", "tracks[0].compressor: missing field 'ratio'"),
    ("unknown_field", "tracks[0]: unknown field 'reverb'"),
    ("type", "tracks[0].gain_db: expected a number"),
    ("band_type", "tracks[0].eq[0].type: expected 'low_shelf'"),
])
def test_bad_input_is_one_clear_line_and_writes_nothing(stems, capsys, problem, expected):
    run(["sheet", stems / "bass.wav", "--out", stems / "s.json"], capsys)
    tracks = [stems / "bass.wav"]
    sheet = json.loads((stems / "s.json").read_text())
    if problem == "missing":
        tracks = [stems / "nope.wav"]
    elif problem == "unreadable":
        (stems / "text.wav").write_text("not audio")
        tracks = [stems / "text.wav"]
    elif problem == "nan":
        sf.write(stems / "nan.wav", np.full(SR, np.nan, np.float32), SR, subtype="FLOAT")
        tracks = [stems / "nan.wav"]
    elif problem == "empty":
        sf.write(stems / "empty.wav", np.zeros(0, np.float32), SR)
        tracks = [stems / "empty.wav"]
    elif problem == "length":
        sf.write(stems / "short.wav", np.zeros(SR // 2, np.float32), SR)
        tracks = [stems / "bass.wav", stems / "short.wav"]
    elif problem == "rate":
        sf.write(stems / "other.wav", np.zeros(SR, np.float32), 44100)
        tracks = [stems / "bass.wav", stems / "other.wav"]
    elif problem == "count":
        sf.write(stems / "two.wav", np.zeros(SR, np.float32), SR)
        tracks = [stems / "bass.wav", stems / "two.wav"]
    elif problem == "json":
        (stems / "s.json").write_text("{ oops")
    elif problem == "range":
        sheet["tracks"][0]["eq"][2]["freq_hz"] = 20000
    elif problem == "missing_field":
        del sheet["tracks"][0]["compressor"]["ratio"]
    elif problem == "unknown_field":
        sheet["tracks"][0]["reverb"] = 0.5
    elif problem == "type":
        sheet["tracks"][0]["gain_db"] = "loud"
    elif problem == "band_type":
        sheet["tracks"][0]["eq"][0]["type"] = "notch"
    if problem not in ("json",):
        (stems / "s.json").write_text(json.dumps(sheet))
    code, out, err = run(["render", *tracks, "--sheet", stems / "s.json", "--out", stems / "mix.wav"], capsys)
    assert code == 2 and expected in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (stems / "mix.wav").exists()


@pytest.mark.parametrize("command, problem, expected", [
    ("render", "suffix", "cannot write 32-bit float audio as .mp3; name the file .wav"),
    ("render", "directory", "is a directory"),
    ("mix", "checkpoint", "notes.pt: not a diffmst-lite checkpoint"),
    ("mix", "silent reference", "quiet.wav: is silent"),
    ("mix", "short reference", "blip.wav: is 0.300 s long; mix needs at least 0.4 s"),
    ("mix", "same outputs", "--out and --sheet-out are both"),
])
def test_bad_outputs_and_options_are_refused_before_any_work(stems, capsys, command, problem, expected):
    """Checked before the command reads or computes anything (a long --optimize is not
    lost at the end), one line, nothing written."""
    run(["sheet", stems / "bass.wav", "--out", stems / "s.json"], capsys)
    (stems / "notes.pt").write_text("not a checkpoint")
    sf.write(stems / "quiet.wav", np.zeros((SR, 2), np.float32), SR)
    sf.write(stems / "blip.wav", np.full((int(0.3 * SR), 2), 0.1, np.float32), SR)
    out = {"suffix": stems / "mix.mp3", "directory": stems}.get(problem, stems / "mix.wav")
    reference = {"silent reference": "quiet.wav", "short reference": "blip.wav"}.get(problem, "keys.wav")
    args = ([command, stems / "bass.wav", "--sheet", stems / "s.json"] if command == "render"
            else [command, stems / "bass.wav", "--reference", stems / reference])
    args += ["--out", out, "--force"] if problem == "directory" else ["--out", out]
    args += {"checkpoint": ["--checkpoint", stems / "notes.pt"], "same outputs": ["--sheet-out", out]}.get(problem, [])
    before = sorted(p.name for p in stems.iterdir())
    code, _, err = run(args, capsys)
    assert code == 2 and expected in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert sorted(p.name for p in stems.iterdir()) == before


def test_written_files_get_the_usual_permissions(stems, capsys):
    """Not mkstemp's 0600: a new file gets what the umask gives, a replaced one keeps its mode."""
    old = os.umask(0o022)
    try:
        run(["sheet", stems / "bass.wav", "--out", stems / "s.json"], capsys)
        assert (stems / "s.json").stat().st_mode & 0o777 == 0o644
        (stems / "s.json").chmod(0o664)
        run(["sheet", stems / "bass.wav", "--out", stems / "s.json", "--force"], capsys)
        assert (stems / "s.json").stat().st_mode & 0o777 == 0o664
    finally:
        os.umask(old)


def test_excerpt_and_steps_must_be_usable(stems, capsys):
    for option, expected in ((["--excerpt", "0"], "expected seconds >= 1"),
                             (["--excerpt", "-5"], "expected seconds >= 1"),
                             (["--optimize", "--steps", "-5"], "expected a step count >= 1")):
        with pytest.raises(SystemExit) as exit_:
            main(["mix", str(stems / "bass.wav"), "--reference", str(stems / "keys.wav"),
                  "--out", str(stems / "m.wav"), *option])
        assert exit_.value.code == 2 and expected in capsys.readouterr().err, option
    assert not (stems / "m.wav").exists()


def test_features_prints_the_af_features_as_json(stems, capsys):
    code, out, _ = run(["features", stems / "keys.wav"], capsys)
    features = json.loads(out)
    assert code == 0 and features["stereo_width"] == pytest.approx(0.0, abs=1e-6)
    assert features["rms_db"][0] == pytest.approx(20 * math.log10(0.2 / math.sqrt(2)), abs=0.05)
    assert len(features["bark_spectrum"]["mid"]) == 24
    sf.write(stems / "silence.wav", np.zeros((SR, 2), np.float32), SR)
    code, out, _ = run(["features", stems / "silence.wav"], capsys)
    assert code == 0 and json.loads(out, parse_constant=pytest.fail)["loudness_lufs"] is None  # not -Infinity
    bs1770 = -0.691 + 10 * math.log10(2 * 0.2**2 / 2)  # two channels of a 0.2 sine; K-weighting ~0 dB at 440 Hz
    assert features["loudness_lufs"] == pytest.approx(bs1770, abs=0.3)
    sf.write(stems / "blip.wav", np.full((int(0.3 * SR), 2), 0.1, np.float32), SR)
    code, out, _ = run(["features", stems / "blip.wav"], capsys)
    assert code == 0 and json.loads(out)["loudness_lufs"] is None  # BS.1770 needs a 0.4 s block


def test_module_entry_point_runs():
    result = subprocess.run([sys.executable, "-m", "diffmst_lite", "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "render" in result.stdout


def test_command_process_writes_its_files_and_output_before_it_exits(stems):
    """The command skips the interpreter's shutdown: what it printed and wrote is complete."""
    command = [sys.executable, "-m", "diffmst_lite"]
    buffered = {name: value for name, value in os.environ.items() if name != "PYTHONUNBUFFERED"}
    sheet = subprocess.run([*command, "sheet", stems / "bass.wav"], capture_output=True, text=True, env=buffered)
    # all of stdout, through a pipe (3 kB: less than one buffer, so it must be flushed)
    assert sheet.returncode == 0 and len(json.loads(sheet.stdout)["tracks"]) == 1
    (stems / "s.json").write_text(sheet.stdout)
    render = [*command, "render", stems / "bass.wav", "--sheet", stems / "s.json", "--out", stems / "mix.wav"]
    result = subprocess.run(render, capture_output=True, text=True)
    assert result.returncode == 0 and "wrote" in result.stderr
    assert sf.read(stems / "mix.wav")[0].shape == (SR, 2)
    again = subprocess.run(render, capture_output=True, text=True)  # the file exists: refused
    assert again.returncode == 2 and "exists" in again.stderr


@pytest.mark.parametrize("environment,re_executes", [({}, True), ({"DIFFMST_MALLOC_TUNING": "0"}, False),
                                                      ({"MALLOC_MMAP_THRESHOLD_": "1", "MALLOC_TRIM_THRESHOLD_": "1",
                                                        "MALLOC_ARENA_MAX": "2"}, False)])
def test_command_restarts_once_with_the_allocator_settings(monkeypatch, environment, re_executes):
    import diffmst_lite.__main__ as entry

    for name in ("DIFFMST_MALLOC_TUNING", *entry.ALLOCATOR_SETTINGS):
        monkeypatch.delenv(name, raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(sys, "argv", ["diffmst-lite", "sheet", "a.wav"])
    monkeypatch.setattr(sys, "platform", "linux")
    calls = []
    monkeypatch.setattr(entry.os, "execv", lambda *args: calls.append(args) or sys.exit(0))
    monkeypatch.setattr("diffmst_lite.cli.main", lambda: 3)
    exits = []
    monkeypatch.setattr(entry.os, "_exit", lambda code: exits.append(code))
    with pytest.raises(SystemExit) if re_executes else contextlib.nullcontext():
        entry.main()
    if re_executes:
        assert calls == [(sys.executable, [sys.executable, "-m", "diffmst_lite", "sheet", "a.wav"])] and exits == []
        assert all(os.environ[name] == value for name, value in entry.ALLOCATOR_SETTINGS.items())
    else:  # the command's exit code, without the interpreter's shutdown
        assert calls == [] and os.environ.get("MALLOC_MMAP_THRESHOLD_") in (None, "1") and exits == [3]


def test_sheet_round_trip_and_neutral_values():
    track, master = torch.rand(3, 26), torch.rand(26)
    back = sheet_to_params(json.loads(json.dumps(params_to_sheet(track, master, 44100, ["a", "b", "c"]))))
    assert torch.allclose(back["track_params"], track, atol=1e-3)
    assert torch.allclose(back["master_params"], master, atol=1e-3)
    strip = neutral_sheet(["x"], 44100)["tracks"][0]
    assert strip["gain_db"] == 0 and strip["pan"] == 0 and strip["compressor"]["ratio"] == 1
    assert all(band["gain_db"] == 0 for band in strip["eq"])


def test_sheet_rejects_wrong_sample_rate_and_missing_file(tmp_path):
    sheet = neutral_sheet(["x"], 44100)
    with pytest.raises(SheetError, match="sheet is for 44100 Hz but the audio is 22050 Hz"):
        sheet_to_params(sheet, sample_rate=22050)
    with pytest.raises(SheetError, match="no such sheet file"):
        read_sheet(tmp_path / "absent.json")


def test_audio_io_validates_and_never_overwrites(tmp_path):
    for bad in (float("nan"), float("inf"), -float("inf")):
        with pytest.raises(AudioError, match="NaN or infinite"):
            validate_audio(torch.tensor([[0.0, 0.5], [bad, 0.1]]))
    assert validate_audio(torch.tensor([[0.0, 3e38]])) is not None  # large but finite
    path = save_audio(tmp_path / "a.wav", torch.zeros(2, 100), SR)
    with pytest.raises(FileExistsError):
        save_audio(path, torch.ones(2, 100), SR)
    audio, rate = load_audio(path)
    assert rate == SR and audio.shape == (2, 100) and audio.abs().max() == 0
    resampled, rate = load_audio(path, sample_rate=44100)
    assert rate == 44100 and resampled.shape == (2, 200)


def test_evaluate_reads_several_step_counts_and_rejects_others(capsys):
    from diffmst_lite.cli import step_counts

    assert step_counts("100") == (100,) and step_counts("50,100") == (50, 100) and step_counts("0") == (0,)
    for bad in ("fifty", "50,-1"):
        with pytest.raises(argparse.ArgumentTypeError, match="step counts >= 0"):
            step_counts(bad)
    with pytest.raises(SystemExit) as exit_:
        main(["evaluate", "--out", "x.csv", "--steps", "a"])
    assert exit_.value.code == 2 and "step counts >= 0" in capsys.readouterr().err
