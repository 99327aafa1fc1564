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
    """Makeup gain is heard (level-true player: +6 dB makeup plays 6 dB louder); the EQ
    widget's players are labelled and loudness-matched."""
    comp = CompressorWidget(0.1 * tracks[:2], SR, settings={"compressor.makeup_db": 0.0})
    quiet = comp.player().lufs
    comp.controls["compressor.makeup_db"].value = 6.0
    assert comp.player().lufs - quiet == pytest.approx(6.0, abs=0.05)
    eq = EQWidget(tracks[0], SR)
    row = eq.player()
    assert "before (no EQ)" in row.data and "after (EQ)" in row.data and "loudness-matched" in row.mode
