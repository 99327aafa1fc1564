"""The console's effects behave as their physics says (numbers, not smoke)."""

import math

import pytest
import torch

from diffmst_lite.console import params
from diffmst_lite.console import MixingConsole
from diffmst_lite.dsp.biquads import parametric_eq
from diffmst_lite.dsp.decibels import gain, peak_db
from diffmst_lite.dsp.dynamics import compressor
from diffmst_lite.dsp.panning import pan, pan_gains

from helpers import neutral, rms_db, set_physical, sine

SR = 22050


def test_peak_db_of_tensors_and_arrays():
    half = torch.tensor([[0.0, -0.5, 0.25]])
    assert peak_db(half) == pytest.approx(-6.0206, abs=1e-4)
    assert peak_db(half.numpy()) == peak_db(half)
    assert peak_db(torch.zeros(2, 8)) == peak_db(torch.zeros(0)) == -math.inf  # silence, empty


def test_plus_6_db_doubles_amplitude():
    x = torch.randn(2, 1, 1000)
    assert torch.allclose(gain(x, torch.tensor([20 * math.log10(2.0)] * 2)), 2 * x, rtol=1e-5)
    # through the whole console: +6.02 dB on a track doubles its contribution to the mix
    console = MixingConsole(SR)
    tracks = torch.randn(1, 1, SR) * 0.1
    track_params, master_params = neutral(SR)
    loud = set_physical(track_params, console.track_specs, "gain_db", 20 * math.log10(2.0))
    with torch.no_grad():
        ratio = console(tracks, loud, master_params).abs().max() / console(tracks, track_params, master_params).abs().max()
    assert ratio == pytest.approx(2.0, rel=1e-3)


def test_pan_hard_left_silences_right_and_vice_versa():
    x = torch.randn(2, 4000)
    out = pan(x, torch.tensor([-1.0, 1.0]))
    assert out[0, 1].abs().max() == 0.0 and out[1, 0].abs().max() == 0.0
    assert torch.allclose(out[0, 0], x[0]) and torch.allclose(out[1, 1], x[1])


def test_pan_law_is_minus_4_5_db_at_centre():
    left, right = pan_gains(torch.tensor(0.0))
    assert 20 * math.log10(float(left)) == pytest.approx(-4.5, abs=0.05)
    assert float(left) == pytest.approx(float(right))
    # between the linear (-6 dB) and the constant-power (-3 dB) law everywhere inside
    positions = torch.linspace(-0.9, 0.9, 19)
    left, right = pan_gains(positions)
    p = (positions + 1) / 2
    assert torch.all(left <= torch.cos(p * math.pi / 2) + 1e-6) and torch.all(left >= 1 - p - 1e-6)


def _eq(x, sample_rate, bands):
    """Apply the six-band EQ with ``bands`` {index: (freq, gain, q)} and every other band flat."""
    freq = torch.tensor([[100.0, 500.0, 3000.0, 9000.0, 13000.0, 8000.0]]) * min(1.0, sample_rate / 44100)
    gain_db, q = torch.zeros(1, 6), torch.full((1, 6), 0.707)
    for index, (f, g, qq) in bands.items():
        freq[0, index], gain_db[0, index], q[0, index] = f, g, qq
    return parametric_eq(x.reshape(1, 1, -1), sample_rate, freq, gain_db, q)[0, 0]


@pytest.mark.parametrize("sample_rate", [22050, 44100])
def test_peaking_band_boosts_its_centre_and_leaves_far_frequencies(sample_rate):
    def change_db(freq):
        x = sine(freq, 1.5, sample_rate)
        y = _eq(x, sample_rate, {1: (1000.0, 12.0, 1.0)})
        steady = slice(sample_rate // 2, None)  # after the filter has settled
        return rms_db(y[steady]) - rms_db(x[steady])

    assert change_db(1000.0) == pytest.approx(12.0, abs=0.5)
    assert change_db(100.0) == pytest.approx(0.0, abs=0.5)


def test_shelves_behave_as_shelves():
    def change_db(freq, bands):
        x = sine(freq, 1.5, 44100)
        y = _eq(x, 44100, bands)
        return rms_db(y[22050:]) - rms_db(x[22050:])

    low = {0: (300.0, 6.0, 0.707)}  # +6 dB below 300 Hz
    assert change_db(40.0, low) == pytest.approx(6.0, abs=0.3)
    assert change_db(5000.0, low) == pytest.approx(0.0, abs=0.3)
    high = {5: (4000.0, -6.0, 0.707)}  # -6 dB above 4 kHz
    assert change_db(15000.0, high) == pytest.approx(-6.0, abs=0.3)
    assert change_db(200.0, high) == pytest.approx(0.0, abs=0.3)


@pytest.mark.parametrize(("audio_batch", "settings_batch"), [(3, 3), (1, 3), (3, 1)])
def test_eq_renders_as_it_trains(audio_batch, settings_batch):
    """Without gradients the EQ runs its biquads on the audio; with them it convolves with
    their impulse response. Same output (up to the response's tail and float32 FFT rounding),
    the broadband level folded in, audio or settings of batch 1 applied to every row."""
    g = torch.Generator().manual_seed(3)
    x = torch.randn(audio_batch, 2, SR, generator=g) * 0.1
    freq = torch.tensor([[60.0, 300.0, 2500.0, 5000.0, 8000.0, 7000.0]]).repeat(settings_batch, 1)
    gain_db = torch.rand(settings_batch, 6, generator=g) * 24 - 12
    q = torch.rand(settings_batch, 6, generator=g) * 2 + 0.3
    level_db = torch.rand(settings_batch, generator=g) * 12 - 6
    with torch.no_grad():
        rendered = parametric_eq(x, SR, freq, gain_db, q, level_db=level_db)
    trained = parametric_eq(x, SR, freq.requires_grad_(), gain_db, q, level_db=level_db)
    assert rendered.shape == trained.shape == (max(audio_batch, settings_batch), 2, SR)
    for row in range(len(rendered)):
        error = (rendered[row] - trained[row]).norm() / trained[row].norm()
        assert error < 1e-5, (row, float(error))


def _compress(x, threshold=-30.0, ratio=4.0, attack=5.0, release=50.0, knee=1.0, makeup=0.0, sample_rate=SR):
    def t(v):
        return torch.tensor([float(v)])

    return compressor(x.reshape(1, 1, -1), sample_rate, t(threshold), t(ratio), t(attack), t(release), t(knee), t(makeup))[0, 0]


def test_compressor_static_curve_matches_threshold_and_ratio():
    # a 1 kHz tone whose RMS is 20 dB above a -30 dB threshold, ratio 4: 15 dB of gain reduction
    x = sine(1000.0, 2.0, SR, amplitude=math.sqrt(2) * 10 ** (-10 / 20))
    y = _compress(x)
    settled = slice(SR, None)
    assert rms_db(x[settled]) == pytest.approx(-10.0, abs=0.01)
    assert rms_db(y[settled]) - rms_db(x[settled]) == pytest.approx(-15.0, abs=1.0)
    # below threshold nothing happens; ratio 1 never does anything; makeup adds its gain
    quiet = x * 10 ** (-25 / 20)
    assert rms_db(_compress(quiet)[settled]) == pytest.approx(rms_db(quiet[settled]), abs=0.05)
    assert torch.allclose(_compress(x, ratio=1.0), x, atol=1e-6)
    assert torch.allclose(_compress(quiet, makeup=6.0), quiet * 10 ** (6 / 20), rtol=1e-4, atol=1e-7)


def _gain_envelope(level_db_first, level_db_second, **settings):
    """Gain (dB) the compressor applies to a DC step from one level to another."""
    first = torch.full((SR,), 10 ** (level_db_first / 20))
    second = torch.full((3 * SR,), 10 ** (level_db_second / 20))
    x = torch.cat([first, second])
    return 20 * torch.log10(_compress(x, **settings) / x)


def _time_to_reach(envelope_db, target_db, start):
    """Seconds after ``start`` until the envelope first comes within 1 dB of ``target_db``."""
    close = (envelope_db[start:] - target_db).abs() < 1.0
    return float(torch.nonzero(close)[0, 0]) / SR


def test_release_time_sets_the_recovery_after_a_loud_to_quiet_step():
    fast = _time_to_reach(_gain_envelope(-10, -50, release=10.0), 0.0, SR)
    slow = _time_to_reach(_gain_envelope(-10, -50, release=500.0), 0.0, SR)
    assert fast < 0.08 and slow > 0.5 and slow > 8 * fast


def test_attack_time_sets_how_fast_gain_reduction_arrives():
    # quiet -> loud: 20 dB over threshold at ratio 4 ends at -15 dB
    fast = _time_to_reach(_gain_envelope(-50, -10, attack=1.0), -15.0, SR)
    slow = _time_to_reach(_gain_envelope(-50, -10, attack=100.0), -15.0, SR)
    assert fast < 0.05 and slow > 0.1 and slow > 4 * fast


def test_neutral_settings_render_the_unprocessed_balance():
    console = MixingConsole(SR)
    tracks = torch.randn(2, 3, SR // 2) * 0.1
    track_params, master_params = neutral(SR, tracks=3, batch=2)
    with torch.no_grad():
        mix = console(tracks, track_params, master_params)
    centre = float(pan_gains(torch.tensor(0.0))[0])
    expected = tracks.sum(1, keepdim=True).expand(-1, 2, -1) * centre
    assert torch.allclose(mix, expected, atol=1e-5)


def test_padded_tracks_do_not_change_the_mix_and_wet_tracks_have_their_shape():
    console = MixingConsole(SR)
    torch.manual_seed(0)
    tracks = torch.randn(1, 4, 4000) * 0.1
    track_params, master_params = torch.rand(1, 4, 26), torch.rand(1, 26)
    padded = torch.cat([tracks, torch.randn(1, 2, 4000)], 1)
    padded_params = torch.cat([track_params, torch.rand(1, 2, 26)], 1)
    mask = torch.tensor([[True] * 4 + [False] * 2])
    with torch.no_grad():
        mix = console(tracks, track_params, master_params)
        mix_padded, wet = console(padded, padded_params, master_params, mask=mask, return_tracks=True)
    assert wet.shape == (1, 6, 2, 4000) and wet[0, 4:].abs().max() == 0
    # the same up to float rounding (chunks sum in another order); random settings can
    # make a mix of several full scale, so the tolerance is relative
    torch.testing.assert_close(mix_padded, mix, rtol=1e-5, atol=1e-6)


def test_console_reports_its_parameter_counts_and_rejects_wrong_shapes():
    console = MixingConsole(44100)
    assert (console.num_track_params, console.num_master_params) == (params.NUM_TRACK_PARAMS, params.NUM_MASTER_PARAMS)
    with pytest.raises(ValueError, match="track_params"):
        console(torch.zeros(1, 2, 100), torch.zeros(1, 3, 26), torch.zeros(1, 26))
    with pytest.raises(ValueError, match="tracks must be"):
        console(torch.zeros(2, 100), torch.zeros(1, 2, 26), torch.zeros(1, 26))


@pytest.mark.parametrize("sample_rate", [8000, 16000, 22050, 44100, 48000, 96000])
def test_eq_ranges_are_absolute_below_0_45_fs_and_never_degenerate(sample_rate):
    ranges = params.band_freq_ranges(sample_rate)
    for (low, high), (abs_low, abs_high) in zip(ranges, params.BAND_FREQ_RANGES_HZ):
        assert 0 < low and high <= 0.45 * sample_rate and high / low >= params.MIN_BAND_RATIO - 1e-9
        if abs_low * params.MIN_BAND_RATIO <= min(abs_high or math.inf, 0.45 * sample_rate):
            assert low == abs_low  # the same in Hz at every rate
    assert ranges[1] == (80.0, 2000.0)
    if sample_rate == 22050:  # band 3 (12 kHz and up) lies above the cap: the octave below it
        assert ranges[4] == pytest.approx((0.225 * 22050, 0.45 * 22050))


@pytest.mark.parametrize("to_rate", [44100, 48000])
def test_settings_at_22k_move_at_most_one_value_per_strip_at_higher_rates(to_rate):
    u = torch.rand(2000, params.NUM_TRACK_PARAMS, generator=torch.Generator().manual_seed(0))
    for specs in (params.track_param_specs, params.master_param_specs):
        moved = [params.rescale_params(row, specs(22050), specs(to_rate))[1] for row in u[:200]]
        assert max(moved) == 1  # band 3's frequency, whose 22.05 kHz range lies below 12 kHz
        kept, _ = params.rescale_params(u, specs(22050), specs(to_rate))
        others = [i for i in range(params.NUM_TRACK_PARAMS) if i != params.EQ_FREQ.start + 4]
        physical = params.to_physical(u.double(), specs(22050))[:, others]
        assert torch.allclose(params.to_physical(kept.double(), specs(to_rate))[:, others], physical, rtol=1e-4)


def test_console_rejects_nan_and_settings_outside_0_1_naming_the_tensor():
    console = MixingConsole(SR)
    tracks, track_params, master_params = torch.zeros(1, 2, 100), torch.rand(1, 2, 26), torch.rand(1, 26)
    bad = track_params.clone()
    bad[0, 1, 3] = 1.3
    with pytest.raises(ValueError, match=r"track_params must lie in \[0, 1\], got values in \[.*, 1\.3\]"):
        console(tracks, bad, master_params)
    bad_master = master_params.clone()
    bad_master[0, 20] = -0.5
    with pytest.raises(ValueError, match=r"master_params must lie in \[0, 1\], got values in \[-0\.5, "):
        console(tracks, track_params, bad_master)
    bad[0, 1, 3] = float("nan")
    with pytest.raises(ValueError, match="track_params contains NaN"):
        console(tracks, bad, master_params)
    edge = track_params.clone()
    edge[0, 0, 0], edge[0, 0, 1] = -1e-7, 1 + 1e-7  # rounding at the edges is fine
    assert torch.isfinite(console(tracks, edge, master_params)).all()


def test_dict_to_params_rejects_values_outside_their_range_like_the_sheet_reader():
    specs = params.track_param_specs(SR)
    values = params.neutral_physical(specs)
    assert torch.allclose(params.to_physical(params.dict_to_params(values, specs).double(), specs),
                          torch.tensor([values[s.name] for s in specs], dtype=torch.float64), rtol=1e-5, atol=1e-4)
    with pytest.raises(ValueError, match=r"^pan: -1.1 is outside -1 … 1 L..R$"):
        params.dict_to_params(values | {"pan": -1.1}, specs)
    with pytest.raises(ValueError, match=r"^eq.band3.freq_hz: 12000.0 is outside 4961.25 … 9922.5 Hz$"):
        params.dict_to_params(values | {"eq.band3.freq_hz": 12000.0}, specs)
    with pytest.raises(ValueError, match=r"^compressor.ratio: nan is outside 1 … 10 :1$"):
        params.dict_to_params(values | {"compressor.ratio": float("nan")}, specs)
    with pytest.raises(ValueError, match=r"^missing setting 'pan'"):
        params.dict_to_params({k: v for k, v in values.items() if k != "pan"}, specs)


def test_random_params_respect_the_config_and_are_reproducible():
    first = params.random_track_params(4, 8, SR, generator=torch.Generator().manual_seed(0))
    again = params.random_track_params(4, 8, SR, generator=torch.Generator().manual_seed(0))
    assert torch.equal(first, again) and first.shape == (4, 8, 26)
    physical = params.to_physical(first, params.track_param_specs(SR))
    assert physical[..., params.GAIN].min() >= -12.0 - 1e-4 and physical[..., params.GAIN].max() <= 6.0 + 1e-4
    full = params.random_track_params(64, 8, SR, config=params.RandomParamConfig.full_range())
    assert full.min() < 0.05 and full.max() > 0.95


@pytest.mark.parametrize("first", ["render", "train"])
def test_compressor_keeps_pytorch_thread_count(first):
    """numba must not leave PyTorch on one thread, whichever kernel runs first (fresh process)."""
    import subprocess
    import sys

    render = "compressor(x, 44100, -20 * p, 4 * p, 5 * p, 50 * p, 6 * p, 0 * p)\n"  # no grad
    train = "compressor(x.requires_grad_(), 44100, -20 * p, 4 * p, 5 * p, 50 * p, 6 * p, 0 * p)\n"  # with grad
    torchcomp = "compressor_core(x[:, 0].detach().requires_grad_(), 0 * p, p / 2, p / 2)\n"  # its parallel kernel
    calls = [render, train, torchcomp] if first == "render" else [train, render, torchcomp]
    code = (
        "import torch; from diffmst_lite.console.mixer import compressor\n"
        "from diffmst_lite.dsp.dynamics import compressor_core\n"
        "torch.set_num_threads(2)\n"
        "x = torch.randn(16, 1, 44100)\n"
        "(x @ x.transpose(1, 2)).sum()\n"  # PyTorch starts OpenMP first, as in real use
        "p = torch.ones(16)\n"
        + "".join(call + "print(torch.get_num_threads())\n" for call in calls)
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["2", "2", "2"]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_rendering_recursion_is_torchcomps_exactly(dtype):
    # without gradients the console runs its own cached kernel: the same numbers as torchcomp's
    from torchcomp import compressor_core as torchcomp_core

    from diffmst_lite.dsp.dynamics import compressor_core

    g = torch.Generator().manual_seed(0)
    x = torch.rand(3, 20000, generator=g, dtype=dtype) ** 4  # bursts and quiet: attack and release both run
    zi = torch.tensor([0.0, 0.5, 1.0], dtype=dtype)
    at, rt = torch.tensor([0.5, 0.01, 1.0], dtype=dtype), torch.tensor([0.001, 0.2, 0.05], dtype=dtype)
    with torch.no_grad():
        ours = compressor_core(x, zi, at, rt)
    assert ours.dtype == dtype and torch.equal(ours, torchcomp_core(x, zi, at, rt))


def test_chunked_strips_give_the_same_mix_and_gradients(monkeypatch):
    """Strips run in chunks on long inputs (below glibc's mmap threshold): same numbers as all at once."""
    from diffmst_lite.dsp import biquads
    from diffmst_lite.console import mixer as C

    console = MixingConsole(SR)
    tracks = torch.randn(2, 3, 3000, generator=torch.Generator().manual_seed(0)) * 0.1
    track_params, master_params = torch.rand(2, 3, 26, requires_grad=True), torch.rand(2, 26)
    mix, wet = console(tracks, track_params, master_params, return_tracks=True)
    grad, = torch.autograd.grad(mix.square().mean(), track_params)
    monkeypatch.setattr(C, "CHUNK_BYTES", 8 * (3000 + biquads.eq_impulse_length(SR)) * 2)  # two strips per chunk
    assert len(console._row_chunks(6, 3000)) == 3
    chunked = console(tracks, track_params, master_params)
    chunked_grad, = torch.autograd.grad(chunked.square().mean(), track_params)
    assert torch.allclose(chunked, mix, atol=1e-6) and torch.allclose(wet.sum(1), console.mix_tracks(tracks, track_params), atol=1e-6)
    assert torch.allclose(chunked_grad, grad, rtol=1e-4, atol=1e-7)
    # rendering (no gradients) runs the chunks on several threads: the same sum (in chunk order)
    # as on one; its EQ runs the biquads themselves, the same up to the impulse response's tail
    threads = torch.get_num_threads()
    try:
        rendered = {}
        for count in (1, 2):
            torch.set_num_threads(count)
            with torch.no_grad():
                rendered[count] = console(tracks, track_params, master_params)
        assert torch.equal(rendered[2], rendered[1])
        assert (rendered[2] - chunked).norm() / chunked.norm() < 1e-5  # float32 FFT rounding, and the tail
    finally:
        torch.set_num_threads(threads)


@pytest.mark.parametrize("sample_rate", [22050, 44100, 48000])
def test_true_peak_limiter_holds_the_ceiling_between_samples(sample_rate):
    from diffmst_lite.dsp.limiter import limit_true_peak, true_peak_db

    t = torch.arange(sample_rate, dtype=torch.float64) / sample_rate
    # fs/4 at 45 degrees: every sample at 0.707, the waveform between them at 1.0 (true peak 0 dBTP, -3 dBFS)
    tone = torch.sin(2 * math.pi * sample_rate / 4 * t + math.pi / 4).float().expand(2, -1)
    assert true_peak_db(tone, sample_rate) == pytest.approx(0.0, abs=0.15)
    g = torch.Generator().manual_seed(0)
    hits = torch.zeros(2, sample_rate)
    hits[:, :: sample_rate // 8] = 8.0  # clicks 18 dB over full scale, on a quiet bed
    loud = torch.nn.functional.conv1d(hits[:, None], torch.randn(1, 1, 200, generator=g) * 0.3, padding=100)[:, 0, :sample_rate]
    loud = loud + 0.05 * torch.randn(2, sample_rate, generator=g)
    for x in (tone, loud):
        y = limit_true_peak(x, sample_rate, ceiling_dbtp=-1.0)
        assert true_peak_db(y, sample_rate) <= -1.0
        assert torch.all(y.abs() <= x.abs() + 1e-6)  # it only ever turns down
        both = (x[0].abs() > 1e-2) & (x[1].abs() > 1e-2)
        assert torch.allclose(y[0][both] / x[0][both], y[1][both] / x[1][both], atol=1e-4)  # one gain, both channels
    quiet = 0.1 * tone
    assert torch.equal(limit_true_peak(quiet, sample_rate), quiet)  # below the ceiling: untouched
    # another meter agrees: scipy's 8x polyphase interpolation of a signal limited by 30 dB.
    # Below 44.1 kHz its energy sits in the top half of the band (where a 4x, 12-tap meter
    # reads low: it passed a 22.05 kHz mix at -0.55 dBTP); from 44.1 kHz in the bottom half,
    # as music's does (the 4x meter of BS.1770-4 is kept there: see true_peak_interpolation)
    import numpy as np
    from scipy.signal import resample_poly

    content = torch.from_numpy(resample_poly(torch.randn(2, sample_rate // 2, generator=g).numpy(), 2, 1, axis=1)
                               ).float()  # noise up to a quarter of the sample rate
    if sample_rate < 44100:
        content = content * torch.tensor([1.0, -1.0]).repeat(sample_rate // 2)  # spectrum flipped: fs/4 ... fs/2
    y = limit_true_peak(30.0 * content, sample_rate, ceiling_dbtp=-1.0)
    assert 20 * np.log10(np.abs(resample_poly(y.numpy(), 8, 1, axis=1)).max()) <= -1.0


def test_sheet_limiter_field_is_optional_and_validated():
    from diffmst_lite.console import SheetError, neutral_sheet, sheet_to_params

    sheet = neutral_sheet(["a"], 44100)
    assert sheet_to_params(sheet)["limiter"] is None
    limited = {**sheet, "limiter": {"gain_db": 6.0, "ceiling_dbtp": -1.0, "release_ms": 100.0}}
    assert sheet_to_params(limited)["limiter"] == {"gain_db": 6.0, "ceiling_dbtp": -1.0, "release_ms": 100.0}
    with pytest.raises(SheetError, match=r"sheet.limiter.ceiling_dbtp: 3.0 is outside -12 … 0 dBTP"):
        sheet_to_params({**sheet, "limiter": {**limited["limiter"], "ceiling_dbtp": 3.0}})
    with pytest.raises(SheetError, match="sheet.limiter: missing field 'release_ms'"):
        sheet_to_params({**sheet, "limiter": {"gain_db": 0.0, "ceiling_dbtp": -1.0}})


@pytest.mark.parametrize("length", [3000, 13_000, 50_003])  # one FFT; 3 and 9 overlap-added blocks
def test_fft_convolution_is_linear_convolution(length):
    """The EQ's FFT convolution equals direct convolution cut to the input's length, with and
    without gradients (the in-place rendering path and the differentiable one)."""
    import numpy as np

    from diffmst_lite.dsp.fftconv import fft_convolve

    g = torch.Generator().manual_seed(length)
    x, h = torch.randn(2, 3, length, generator=g, dtype=torch.float64), torch.randn(2, 2001, generator=g,
                                                                                  dtype=torch.float64)
    expected = np.stack([[np.convolve(x[b, c], h[b])[:length] for c in range(3)] for b in range(2)])
    with torch.no_grad():
        torch.testing.assert_close(fft_convolve(x, h).numpy(), expected, rtol=1e-9, atol=1e-9)
    x.requires_grad_(), h.requires_grad_()
    y = fft_convolve(x, h)
    torch.testing.assert_close(y.detach().numpy(), expected, rtol=1e-9, atol=1e-9)
    weights = torch.randn(y.shape, generator=g, dtype=torch.float64)
    (y * weights).sum().backward()
    # d/dx of sum(w * (x * h)) is the correlation of w with h, cut to the input's span
    flipped = np.stack([[np.convolve(weights[b, c].flip(0), h[b].detach())[:length] for c in range(3)]
                        for b in range(2)])
    torch.testing.assert_close(x.grad.numpy(), flipped[..., ::-1].copy(), rtol=1e-8, atol=1e-8)


def test_thread_map_keeps_the_order_and_raises_the_first_error():
    import threading

    from diffmst_lite.dsp.threads import thread_map

    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        assert list(thread_map(lambda i: i * i, range(20))) == [i * i for i in range(20)]
        workers = set(thread_map(lambda _: threading.current_thread().name, range(4)))
        assert workers and all(name.startswith("diffmst") for name in workers)
        here = threading.current_thread().name
        assert set(thread_map(lambda _: threading.current_thread().name, range(4), parallel=False)) == {here}

        def fail_on_3(i: int) -> int:
            if i == 3:
                raise ValueError("item 3")
            return i

        with pytest.raises(ValueError, match="item 3"):
            list(thread_map(fail_on_3, range(6)))
    finally:
        torch.set_num_threads(threads)


def test_kernels_on_pytorch_threads_give_the_same_mix_and_gradients_as_on_one(monkeypatch):
    """The numba kernels run their rows in parallel (dsp/compiled.py): each row is computed
    alone, so the mix and every gradient are bit-identical to one thread's."""
    from diffmst_lite.dsp import compiled

    generator = torch.Generator().manual_seed(0)
    tracks = 0.1 * torch.randn(2, 3, 6000, generator=generator)
    unit = [torch.rand(2, 3, params.NUM_TRACK_PARAMS, generator=generator),
            torch.rand(2, params.NUM_MASTER_PARAMS, generator=generator)]

    def render():
        settings = [u.clone().requires_grad_() for u in unit]
        mix = MixingConsole(SR)(tracks, *settings)
        (mix**2).mean().backward()
        return [mix.detach(), *(s.grad for s in settings)]

    several = render()
    monkeypatch.setattr(compiled, "on_worker_thread", lambda: True)  # as on a thread_map worker: one thread
    one = render()
    assert all(torch.equal(a, b) for a, b in zip(several, one))
