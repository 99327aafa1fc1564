"""Widgets without a browser: set a control's value, check the audio and the plot data."""
from __future__ import annotations

import json

import matplotlib
import numpy as np
import pytest
import torch

matplotlib.use("Agg")

from diffmst_lite.console import params  # noqa: E402
from diffmst_lite.book import plotting  # noqa: E402
from diffmst_lite.dsp.dynamics import compressor  # noqa: E402
from diffmst_lite.console.sheet import params_to_sheet  # noqa: E402
from diffmst_lite.book.widgets import CompressorWidget, ConsoleWidget, EQWidget, MixerWidget  # noqa: E402

SR = 22050
NAMES = ["kick", "bass", "keys", "lead"]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tracks() -> np.ndarray:
    return (0.1 * np.random.default_rng(0).standard_normal((len(NAMES), SR // 2))).astype(np.float32)


def test_mixer_fader_plus_6_db_doubles_the_track(tracks):
    mixer = MixerWidget(tracks, NAMES, SR)
    mixer.controls["bass.pan"].value = -0.5
    before = mixer.render()
    others = MixerWidget(tracks * np.array([[1], [0], [1], [1]], np.float32), NAMES, SR)
    others.controls["bass.pan"].value = -0.5
    rest = others.render()
    mixer.controls["bass.gain_db"].value = 6.0
    after = mixer.render()
    np.testing.assert_allclose(after - rest, 10 ** (6 / 20) * (before - rest), atol=1e-5)
    assert mixer.plot_data["gains_db"][1] == 6.0
    assert mixer.plot_data["pans"][1] == -0.5


def test_mixer_pan_moves_the_track(tracks):
    mixer = MixerWidget(tracks[:1], NAMES[:1], SR)
    mixer.controls["kick.pan"].value = 1.0
    left, right = mixer.render()
    assert np.abs(left).max() < 1e-6 < np.abs(right).max()


def test_eq_gain_changes_the_response_at_the_centre_by_that_gain(tracks):
    eq = EQWidget(tracks[0], SR, settings={"eq.band0.gain_db": 3.0, "eq.band2.gain_db": -4.0})
    centre = 3000.0  # inside band 1 (2-8 kHz at every rate)
    eq.controls["eq.band1.freq_hz"].value = centre
    data = plotting.eq_curves_data(*eq._bands(), SR, freqs=np.array([centre]))
    audio = eq.render()
    eq.controls["eq.band1.gain_db"].value = 7.5
    changed = plotting.eq_curves_data(*eq._bands(), SR, freqs=np.array([centre]))
    assert changed["total_db"][0] - data["total_db"][0] == pytest.approx(7.5, abs=1e-6)
    grid = eq.plot_data
    nearest = np.argmin(np.abs(grid["freq_hz"] - centre))
    assert grid["bands_db"][2, nearest] == pytest.approx(7.5, abs=0.05)
    assert np.abs(eq.render() - audio).max() > 1e-3


def test_eq_band_ranges_follow_the_parameter_table():
    eq = EQWidget(np.zeros(SR // 4, np.float32), SR)
    for (low, high), band in zip(params.band_freq_ranges(SR), params.BAND_NAMES):
        control = eq.controls[f"eq.{band}.freq_hz"]
        assert 10 ** control.min == pytest.approx(low) and 10 ** control.max == pytest.approx(high)
        assert high <= 0.45 * SR


def test_compressor_threshold_changes_gain_reduction(tracks):
    comp = CompressorWidget(tracks[:2], SR, settings={"compressor.threshold_db": -10.0})
    reduction = comp.plot_data["gain_reduction_db"].min()
    audio = comp.render()
    comp.controls["compressor.threshold_db"].value = -40.0
    assert comp.plot_data["gain_reduction_db"].min() < reduction - 10
    assert np.abs(comp.render()).max() < np.abs(audio).max()
    knee = comp.plot_data
    assert knee["output_db"][-1] < knee["input_db"][-1]


def test_compressor_gain_data_matches_the_console(tracks):
    settings = (-30.0, 4.0, 5.0, 50.0, 6.0, 2.0)
    data = plotting.compressor_gain_data(tracks[:2], SR, *settings)
    out = compressor(torch.from_numpy(tracks[:2])[None], SR, *(torch.tensor([v]) for v in settings))[0]
    np.testing.assert_allclose(tracks[:2] * data["gain"], out.numpy(), atol=1e-5)


def test_console_sheet_round_trip_and_fader(tracks):
    generator = torch.Generator().manual_seed(1)
    sheet = params_to_sheet(params.random_track_params(1, len(NAMES), SR, generator)[0],
                            params.random_master_params(1, SR, generator)[0], SR, NAMES)
    console = ConsoleWidget.from_sheet(tracks, sheet)
    exported = console.to_sheet()
    flat = lambda s: np.array([v for v in _numbers(s)])  # noqa: E731
    np.testing.assert_allclose(flat(exported), flat(sheet), rtol=1e-4, atol=2e-4)
    assert console.controls["keys.gain_db"].value == pytest.approx(sheet["tracks"][2]["gain_db"])
    before = console.render()
    console.controls["keys.gain_db"].value = sheet["tracks"][2]["gain_db"] + 6.0
    after = console.render()
    assert np.abs(after - before).max() > 1e-3
    assert console.to_sheet()["tracks"][2]["gain_db"] == pytest.approx(sheet["tracks"][2]["gain_db"] + 6.0)


def test_console_selector_edits_the_selected_strip(tracks):
    console = ConsoleWidget(tracks, NAMES, SR)
    console.controls["select"].value = "master"
    console.controls["compressor.ratio"].value = 3.0
    console.controls["select"].value = "lead"
    console.controls["eq.high_shelf.gain_db"].value = -6.0
    sheet = console.to_sheet()
    assert sheet["master"]["compressor"]["ratio"] == pytest.approx(3.0)
    assert sheet["tracks"][3]["eq"][5]["gain_db"] == pytest.approx(-6.0)
    assert sheet["tracks"][0]["eq"][5]["gain_db"] == 0.0
    console.controls["select"].value = "master"  # the sliders show the master again
    assert console.controls["compressor.ratio"].value == pytest.approx(3.0)
    assert console.controls["eq.high_shelf.gain_db"].value == pytest.approx(0.0)
    json.dumps(sheet)


def test_figures_have_labelled_axes(tracks):
    sheet = ConsoleWidget(tracks, NAMES, SR).to_sheet()
    figures = [plotting.pan_law_figure(), plotting.spectrogram_figure(tracks[0], SR),
               plotting.waveform_figure({"kick": tracks[0]}, SR), EQWidget(tracks[0], SR).figure(),
               CompressorWidget(tracks[0], SR).figure(), MixerWidget(tracks, NAMES, SR).figure()]
    for fig in figures:
        plots = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]
        assert all(ax.get_title() or fig.get_suptitle() for ax in plots)
        assert any(ax.get_xlabel() for ax in plots) and any(ax.get_ylabel() for ax in plots)
        assert all(ax.get_xlabel() or ax.get_shared_x_axes().get_siblings(ax)[1:] for ax in plots)
    plotting.settings_table_figure(sheet)
    matplotlib.pyplot.close("all")


def _numbers(obj):
    if isinstance(obj, dict):
        for value in obj.values():
            yield from _numbers(value)
    elif isinstance(obj, list):
        for value in obj:
            yield from _numbers(value)
    elif isinstance(obj, (int, float)) and not isinstance(obj, bool):
        yield float(obj)


# ------------------------------------------------------------ book diagrams
class _FakeDistribution:
    def __init__(self, direct_url, project_urls):
        self.direct_url = direct_url
        self.metadata = type("Metadata", (), {"get_all": lambda _, key: project_urls})()

    def read_text(self, name):
        return self.direct_url if name == "direct_url.json" else None


def test_diagrams_exist_and_urls_follow_the_install(monkeypatch):
    import importlib.metadata
    import json

    from diffmst_lite.book import notebook

    for name in notebook.DIAGRAMS:  # every diagram a notebook may ask for is in the repository
        assert (notebook.FIGURES_DIR / f"{name}.png").stat().st_size > 10_000
    with pytest.raises(ValueError, match="unknown diagram 'mixer'"):
        notebook.diagram("mixer")
    # pip install "diffmst-lite @ git+https://github.com/me/fork@dev" (Colab): that commit of that fork
    direct = json.dumps({"url": "https://github.com/me/fork.git",
                         "vcs_info": {"vcs": "git", "requested_revision": "dev", "commit_id": "abc123"}})
    fake = _FakeDistribution(direct, ["Repository, https://github.com/diffmst-lite/diffmst-lite"])
    monkeypatch.setattr(importlib.metadata, "distribution", lambda name: fake)
    assert notebook.diagram_url("method1_data") == \
        "https://raw.githubusercontent.com/me/fork/abc123/assets/figures/method1_data.png"
    # an install from a wheel or a folder: the project URL of the metadata, branch main
    fake.direct_url = json.dumps({"url": "file:///tmp/x", "dir_info": {}})
    assert notebook.diagram_url("method1_data") == \
        "https://raw.githubusercontent.com/diffmst-lite/diffmst-lite/main/assets/figures/method1_data.png"


def test_level_widgets_play_level_true_and_the_eq_plays_before_and_after(tracks):
    """Makeup gain is heard (level-true player: +6 dB makeup plays 6 dB louder than
    before, the input stays put); the EQ widget's players are labelled and
    loudness-matched."""
    comp = CompressorWidget(0.1 * tracks[:2], SR, settings={"compressor.makeup_db": 0.0})
    quiet = comp.player().lufs
    comp.controls["compressor.makeup_db"].value = 6.0
    loud = comp.player().lufs
    assert loud["after (compressed)"] - quiet["after (compressed)"] == pytest.approx(6.0, abs=0.05)
    assert loud["before (uncompressed)"] == pytest.approx(quiet["before (uncompressed)"], abs=1e-6)
    eq = EQWidget(tracks[0], SR)
    row = eq.player()
    assert "before (no EQ)" in row.data and "after (EQ)" in row.data and "loudness-matched" in row.mode


# ------------------------------------------------------------ layout and galleries


def _boxes(widget):
    """``widget`` and every box inside it, depth first."""
    yield widget
    for child in getattr(widget, "children", ()):
        yield from _boxes(child)


def _px(size: str) -> int:
    assert size.endswith("px"), size
    return int(size[:-2])


def _widgets(tracks):
    return [MixerWidget(tracks, NAMES, SR), EQWidget(tracks[0], SR), CompressorWidget(tracks[:2], SR),
            ConsoleWidget(tracks, NAMES, SR)]


def test_sliders_are_wide_readable_and_rows_wrap(tracks):
    """Every slider keeps a track of >= 150 px (width - description - the ~72 px readout
    of ipywidgets 8) and does not shrink; its description fits its width (measured in
    DejaVu Sans at 13 px, wider than the usual UI fonts) and its tooltip is the full
    parameter name; rows wrap instead of squeezing or scrolling."""
    import os

    import ipywidgets as W
    from PIL import ImageFont

    font = ImageFont.truetype(os.path.join(matplotlib.get_data_path(), "fonts/ttf/DejaVuSans.ttf"), 13)

    widgets = _widgets(tracks)
    for widget in widgets:
        sliders = [c for c in widget.controls.values() if isinstance(c, (W.FloatSlider, W.FloatLogSlider))]
        assert len(sliders) >= 6
        for control in sliders:
            width, label = _px(control.layout.width), _px(control.style.description_width)
            assert width - label - 72 >= 150 and control.layout.flex == "0 0 auto", control.description
            assert font.getlength(control.description) <= label, control.description
            assert control.tooltip.split(".")[-1] in {n.split(".")[-1] for n in widget.controls}, control.tooltip
        for control in widget.controls.values():
            if control.description and not isinstance(control, (W.FloatSlider, W.FloatLogSlider)):
                assert font.getlength(control.description) <= _px(control.style.description_width)
        rows = [box for box in _boxes(widget.ui) if isinstance(box, W.HBox)]
        assert rows and all(box.layout.flex_flow == "row wrap" for box in rows)
    mixer, eq, comp, _ = widgets
    assert mixer.controls["bass.pan"].description == "pan (L..R)"
    assert mixer.controls["bass.gain_db"].description == "gain (dB)"
    assert comp.controls["compressor.ratio"].description == "ratio (n:1)"
    assert eq.controls["eq.low_shelf.freq_hz"].description == "freq (Hz)"
    assert eq.controls["eq.low_shelf.freq_hz"].tooltip == "eq.low_shelf.freq_hz"


def test_every_player_is_labelled(tracks):
    """Each widget's players (what plays under its figure) carry a label per clip, and
    the row says how the levels were set."""
    expected = {MixerWidget: ["mix (current settings)"], EQWidget: ["before (no EQ)", "after (EQ)"],
                CompressorWidget: ["before (uncompressed)", "after (compressed)"],
                ConsoleWidget: ["mix (current settings)"]}
    for widget in _widgets(tracks):
        row = widget.player()
        assert list(row.lufs) == expected[type(widget)]
        assert row.data.count("<audio") == len(row.lufs)
        assert all(f"<b>{label}</b>" in row.data for label in row.lufs)
        assert ("true relative levels" if widget.level == "true" else "loudness-matched") in row.mode


def _played_lufs(row) -> list[float]:
    """Loudness (LUFS) of the audio clips embedded in an HTML row, decoded, as heard."""
    import base64
    import io
    import re

    import soundfile as sf

    from diffmst_lite.dsp.loudness import integrated_loudness

    out = []
    for b64 in re.findall(r"data:audio/\w+;base64,([A-Za-z0-9+/=]+)", row.data):
        audio, rate = sf.read(io.BytesIO(base64.b64decode(b64)), dtype="float64")
        audio = audio.T if audio.ndim == 2 else np.stack([audio, audio])
        out.append(integrated_loudness(audio, rate))
    return out


def test_eq_gallery_is_loudness_matched_and_restores_the_settings(tracks):
    eq = EQWidget(tracks[0], SR, settings={"eq.band1.gain_db": 4.0})
    flat = {f"eq.{band}.gain_db": 0.0 for band in params.BAND_NAMES}
    presets = {"flat": flat, "bass boost": {**flat, "eq.low_shelf.freq_hz": 100.0, "eq.low_shelf.gain_db": 6.0},
               "as set": {}}
    before = eq.render()
    gallery = eq.gallery(presets, caption="EQ presets")
    assert list(gallery.lufs) == list(presets)
    assert gallery.data.count("data:image/png;base64,") == len(presets) == gallery.data.count("<audio")
    assert "EQ presets" in gallery.data and "loudness-matched at -23 LUFS" in gallery.mode
    played = _played_lufs(gallery)
    assert len(played) == 3 and all(abs(v + 23.0) < 0.5 for v in played), played
    np.testing.assert_array_equal(eq.render(), before)  # the widget's own settings are back
    assert eq.controls["eq.band1.gain_db"].value == 4.0 and eq.values["eq.low_shelf.gain_db"] == 0.0


def test_level_galleries_keep_true_relative_levels(tracks):
    """Mixer: a +6 dB fader preset plays louder by what the render measures; the
    console: a preset can pick a strip ("select") and set its controls, in order."""
    from diffmst_lite.book.notebook import _lufs

    mixer = MixerWidget(tracks, NAMES, SR)
    presets = {"all at 0 dB": {}, "kick +6 dB": {"kick.gain_db": 6.0}, "all at -12 dB":
               {f"{n}.gain_db": -12.0 for n in NAMES}}
    gallery = mixer.gallery(presets)
    assert "true relative levels" in gallery.mode
    rendered = {}
    for name, preset in presets.items():
        mixer.apply(preset)
        rendered[name] = _lufs(mixer.render(), SR)
        mixer.apply({f"{n}.gain_db": 0.0 for n in NAMES})
    played = dict(zip(presets, _played_lufs(gallery)))
    assert played["all at 0 dB"] - played["all at -12 dB"] == pytest.approx(12.0, abs=0.1)
    for name in presets:
        assert played[name] - played["all at 0 dB"] == pytest.approx(rendered[name] - rendered["all at 0 dB"],
                                                                      abs=0.1)
    assert mixer.gains_db.tolist() == [0.0] * len(NAMES)

    console = ConsoleWidget(tracks, NAMES, SR)
    console.apply({"select": "master", "compressor.ratio": 3.0})
    assert console.to_sheet()["master"]["compressor"]["ratio"] == pytest.approx(3.0)
    console.controls["select"].value = "kick"
    sheet = console.to_sheet()
    gallery = console.gallery({"as set": {}, "master ratio 1:1": {"select": "master", "compressor.ratio": 1.0},
                               "lead muted": {"lead.gain_db": -48.0}})
    assert len(gallery.lufs) == 3 and gallery.lufs["lead muted"] < gallery.lufs["as set"]
    assert console.to_sheet() == sheet and console.controls["select"].value == "kick"
    with pytest.raises(KeyError, match="no control 'snare.gain_db'"):
        console.apply({"snare.gain_db": 0.0})


def test_mixer_figure_marks_full_scale_and_says_why_a_mix_exceeds_it(tracks):
    loud = MixerWidget(10 * tracks, NAMES, SR)
    texts = [t.get_text() for t in loud.figure().axes[0].texts]
    assert any("the tracks add up beyond ±1 FS" in t for t in texts), texts
    quiet = MixerWidget(0.1 * tracks, NAMES, SR).figure()
    assert not quiet.axes[0].texts
    assert "±1 FS" in [line.get_label() for line in quiet.axes[0].lines]
    matplotlib.pyplot.close("all")


def test_mixer_figure_labels_tracks_at_one_spot_together_one_name_per_line():
    names = ["drums_L", "drums_R", "bass_L", "bass_R", "other_L", "other_R", "vocals_L", "vocals_R"]
    pans = [-0.7, 0.7, 0.0, 0.0, -0.7, 0.7, -0.7, 0.7]
    gains_db = [3.0, 3.0, 6.0, 6.0, 0.0, 0.0, 3.0, 3.0]
    fig = plotting.mixer_figure(np.zeros((2, 100)), SR, names, gains_db, pans)
    labels = sorted(t.get_text() for t in fig.axes[1].texts)
    # a stereo pair at one spot is one name; tracks left and right of the centre do not share a line
    assert labels == ["bass_L/R", "drums_L\nvocals_L", "drums_R\nvocals_R", "other_L", "other_R"], labels
    matplotlib.pyplot.close("all")
