"""Each effect against an exact reference: the EQ against scipy's ``sosfilt`` on the
same biquads, the compressor against a plain per-sample loop of the same equations,
the resampler against scipy's ``resample_poly`` and against pure tones."""

import itertools
import math

import numpy as np
import pytest
import torch
from scipy.signal import resample_poly, sosfilt, sosfreqz

from diffmst_lite.console import params
from diffmst_lite.dsp import biquads
from diffmst_lite.dsp.biquads import (
    _sampled_impulse_response,
    biquad_coefficients,
    eq_impulse_length,
    eq_impulse_response,
    parametric_eq,
)
from diffmst_lite.dsp.dynamics import LEVEL_DETECTOR_MS, compressor
from diffmst_lite.files.audio import resample


def eq_grid(sample_rate):
    """Band settings over the range edges: every band at its lowest and highest
    frequency, Q 0.1 and 5, gain -12 and +12 dB (one band active, the rest flat),
    plus all six bands active at once."""
    ranges = params.band_freq_ranges(sample_rate)
    settings = []
    for band, (low, high) in enumerate(ranges):
        for freq, q, gain_db in itertools.product((low, high), (0.1, 5.0), (-12.0, 12.0)):
            freq_row = [math.sqrt(lo * hi) for lo, hi in ranges]
            gain_row, q_row = [0.0] * 6, [0.707] * 6
            freq_row[band], q_row[band], gain_row[band] = freq, q, gain_db
            settings.append((freq_row, gain_row, q_row))
    settings.append(([lo for lo, _ in ranges], [12, -12, 12, -12, 12, -12], [5.0] * 6))
    settings.append(([hi for _, hi in ranges], [-12, 12, -12, 12, -12, 12], [0.1] * 6))
    freq, gain_db, q = (torch.tensor(column, dtype=torch.float64) for column in zip(*settings))
    return freq, gain_db, q


def sos_of(freq, gain_db, q, sample_rate):
    """Second-order sections ``(6, 6)`` of one six-band setting, normalised by a0."""
    rows = []
    for band, kind in enumerate(biquads.BAND_TYPES):
        b, a = biquad_coefficients(kind, freq[band : band + 1], gain_db[band : band + 1], q[band : band + 1], sample_rate)
        b, a = b[0].numpy(), a[0].numpy()
        rows.append(np.concatenate([b / a[0], a / a[0]]))
    return np.stack(rows)


@pytest.mark.parametrize(("path", "tolerance"), [("impulse response by FFT (gradients)", 1e-3),
                                                  ("biquads (rendering)", 1e-6)])
@pytest.mark.parametrize("sample_rate", [22050, 44100, 48000])
def test_eq_output_matches_sosfilt_on_the_same_biquads(sample_rate, path, tolerance):
    freq, gain_db, q = eq_grid(sample_rate)
    noise = torch.randn(1, 1, 2 * sample_rate, generator=torch.Generator().manual_seed(1)) * 0.1
    noise.requires_grad_(path.endswith("(gradients)"))  # parametric_eq picks its path by this
    ours = parametric_eq(noise.expand(len(freq), 1, -1), sample_rate, freq.float(), gain_db.float(), q.float()).detach()
    worst = 0.0
    for i in range(len(freq)):
        exact = sosfilt(sos_of(freq[i], gain_db[i], q[i], sample_rate), noise[0, 0].detach().double().numpy())
        error = np.linalg.norm(ours[i, 0].double().numpy() - exact) / np.linalg.norm(exact)
        worst = max(worst, error)
    assert worst < tolerance, f"worst relative error {worst:.2e}"


@pytest.mark.parametrize("impulse_response", [eq_impulse_response, _sampled_impulse_response],
                         ids=["recursion (CPU)", "sampled (other devices)"])
@pytest.mark.parametrize("sample_rate", [22050, 44100, 48000, 96000])
def test_eq_magnitude_response_within_0_1_db_of_the_exact_one(sample_rate, impulse_response):
    freq, gain_db, q = eq_grid(sample_rate)
    length = eq_impulse_length(sample_rate)
    impulse = impulse_response(freq, gain_db, q, sample_rate, length)
    # the response of the impulse we really apply, on a grid 4x finer than the one it was sampled on
    fine = 4 * length
    ours_db = 20 * np.log10(np.abs(np.fft.rfft(impulse.numpy(), n=fine, axis=-1)))
    omega = np.linspace(0, np.pi, fine // 2 + 1)
    for i in range(len(freq)):
        _, exact = sosfreqz(sos_of(freq[i], gain_db[i], q[i], sample_rate), worN=omega)
        assert np.abs(ours_db[i] - 20 * np.log10(np.abs(exact))).max() < 0.1


def reference_compressor(x, sample_rate, threshold, ratio, attack, release, knee, makeup):
    """The compressor's equations as a per-sample loop (float64)."""
    def coefficient(ms):
        return 1 - math.exp(-1000 / (ms * sample_rate))

    detector_c, attack_c, release_c = coefficient(LEVEL_DETECTOR_MS), coefficient(attack), coefficient(release)
    power = (x**2).mean(0)
    level, g, out = 0.0, 1.0, np.empty(x.shape[1])
    for n in range(x.shape[1]):
        level += detector_c * (power[n] + 1e-10 - level)
        over = 10 * math.log10(level) - threshold
        if 2 * over <= -knee:
            change_db = 0.0
        elif 2 * over >= knee:
            change_db = (1 / ratio - 1) * over
        else:
            change_db = (1 / ratio - 1) * (over + knee / 2) ** 2 / (2 * knee)
        target = 10 ** (change_db / 20)
        g += (attack_c if target < g else release_c) * (target - g)
        out[n] = g
    return x * out * 10 ** (makeup / 20)


@pytest.mark.parametrize("attack, release, knee, ratio", [(1.0, 10.0, 1.0, 10.0), (10.0, 100.0, 12.0, 4.0),
                                                          (250.0, 1000.0, 6.0, 2.0)])
def test_compressor_matches_a_per_sample_reference(attack, release, knee, ratio):
    sample_rate = 22050
    rng = np.random.default_rng(0)
    envelope = np.repeat(rng.uniform(0.01, 1.0, 10), sample_rate // 10)
    x = rng.standard_normal((2, sample_rate)) * 0.3 * envelope
    exact = reference_compressor(x, sample_rate, -30.0, ratio, attack, release, knee, 3.0)

    def t(v):
        return torch.tensor([float(v)])

    ours = compressor(torch.tensor(x, dtype=torch.float32)[None], sample_rate, t(-30.0), t(ratio), t(attack),
                      t(release), t(knee), t(3.0))[0].double().numpy()
    assert np.linalg.norm(ours - exact) / np.linalg.norm(exact) < 1e-3


@pytest.mark.parametrize("from_rate,to_rate", [(44100, 22050), (48000, 44100), (22050, 44100), (48000, 22050)])
def test_resampler_keeps_tones_and_removes_what_the_new_rate_cannot_hold(from_rate, to_rate):
    t = np.arange(2 * from_rate) / from_rate
    for freq in (100.0, 1000.0, 0.4 * min(from_rate, to_rate)):  # in the pass band: kept within -50 dB (scipy's filter: the same)
        y = resample(torch.from_numpy(np.sin(2 * np.pi * freq * t)), from_rate, to_rate).numpy()
        assert y.shape == (math.ceil(len(t) * to_rate / from_rate),)
        expected = np.sin(2 * np.pi * freq * np.arange(len(y)) / to_rate)
        assert np.abs(y - expected)[500:-500].max() < 3e-3, freq
    if from_rate >= 2 * to_rate:  # well above the new Nyquist frequency: attenuated by more than 40 dB
        alias = resample(torch.from_numpy(np.sin(2 * np.pi * 0.375 * from_rate * t)), from_rate, to_rate).numpy()
        assert np.sqrt(np.mean(alias[500:-500] ** 2)) < 0.01 * np.sqrt(0.5)
    noise = np.random.default_rng(0).standard_normal((2, from_rate)).astype(np.float32)
    g = math.gcd(from_rate, to_rate)
    ours = resample(torch.from_numpy(noise), from_rate, to_rate).numpy()
    scipys = resample_poly(noise, to_rate // g, from_rate // g, axis=-1)
    assert ours.shape == scipys.shape and np.abs(ours - scipys).max() < 0.01  # the same filter design
