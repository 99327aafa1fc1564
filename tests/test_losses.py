"""AF features and the two style losses, with numbers (docs/design.md §5)."""

import math

import pytest
import scipy.signal
import torch

from diffmst_lite.losses import features as F
from diffmst_lite.dsp.loudness import integrated_loudness, loudness, loudness_normalize
from diffmst_lite.losses import AFWeights, AudioFeatureLoss, MRSTFTLoss

from helpers import sine

SR = 22050


def stereo(left, right):
    return torch.stack([left, right])[None]


def test_stereo_width_and_imbalance_of_simple_images():
    x = torch.randn(SR)
    assert F.stereo_width(stereo(x, x)).item() == pytest.approx(0.0, abs=1e-7)
    assert F.stereo_width(stereo(x, torch.zeros(SR))).item() == pytest.approx(1.0, abs=1e-6)
    assert F.stereo_imbalance(stereo(x, torch.zeros(SR))).item() == pytest.approx(-1.0, abs=1e-6)
    assert F.stereo_imbalance(stereo(torch.zeros(SR), x)).item() == pytest.approx(1.0, abs=1e-6)
    assert F.stereo_imbalance(stereo(x, x)).item() == pytest.approx(0.0, abs=1e-7)


def test_rms_and_crest_factor_of_a_sine_in_db():
    s = sine(1000.0, 1.0, SR, amplitude=0.5)
    x = stereo(s, s)
    assert F.rms(x)[0, 0].item() == pytest.approx(20 * math.log10(0.5 / math.sqrt(2)), abs=0.01)
    assert F.rms(x, db=False)[0, 0].item() == pytest.approx(0.5 / math.sqrt(2), abs=1e-4)
    assert F.crest_factor(x)[0, 0].item() == pytest.approx(3.01, abs=0.02)


def test_af_loss_compares_linear_rms_by_default_and_db_on_request():
    x = torch.randn(1, 2, SR) * 0.1
    y = x * torch.tensor([1.0, 0.5])[None, :, None]  # right channel 6 dB down
    xn, yn = (loudness_normalize(m, SR, -16.0) for m in (x, y))
    linear = (F.rms(xn, db=False) - F.rms(yn, db=False)).square().mean()
    in_db = (F.rms(xn) - F.rms(yn)).square().mean()
    assert AudioFeatureLoss(SR).terms(x, y)["rms"].item() == pytest.approx(linear.item(), rel=1e-4)
    assert AudioFeatureLoss(SR, rms_db=True).terms(x, y)["rms"].item() == pytest.approx(in_db.item(), rel=1e-4)
    # +2 / -4 dB around the mean level: ~10 dB² in dB, but < 0.001 linear (RMS ~0.08 at -16 LUFS)
    assert 1e-4 < linear.item() < 1e-3 and 8 < in_db.item() < 12


@pytest.mark.parametrize("sample_rate", [16000, 22050, 44100, 48000])
def test_bark_bands_lie_below_nyquist_and_none_is_empty(sample_rate):
    edges = F.bark_band_edges(sample_rate)
    assert len(edges) == F.NUM_BARK_BANDS + 1 and edges[0] == pytest.approx(20.0)
    assert edges[-1] <= min(20000.0, sample_rate / 2) + 1e-9
    assert torch.all(edges[1:] > edges[:-1])
    bank = F.bark_filterbank(sample_rate, 2048)
    assert torch.allclose(bank.sum(1), torch.ones(F.NUM_BARK_BANDS))


def test_bark_spectrum_sees_a_tone_in_its_band_and_side_of_mono_is_floor():
    s = sine(1000.0, 1.0, SR)
    spectrum = F.bark_spectrum(stereo(s, s), SR)
    edges = F.bark_band_edges(SR)
    band = int(torch.nonzero((edges[:-1] <= 1000) & (edges[1:] > 1000))[0, 0])
    assert spectrum.shape == (1, 2, 24) and spectrum[0, 0].argmax() == band
    assert spectrum[0, 1].max().item() == pytest.approx(math.log(F.LOG_FLOOR), abs=1e-3)


def _music_like(seconds: float = 3.0, level_dbfs: float = -20.0) -> torch.Tensor:
    """A mono test signal with a falling spectrum: low-passed noise plus three tones, at ``level_dbfs`` RMS."""
    generator = torch.Generator().manual_seed(0)
    noise = scipy.signal.lfilter([0.05], [1.0, -0.95], torch.randn(int(seconds * SR), generator=generator).numpy())
    x = torch.from_numpy(noise).float() + sum(sine(f, seconds, SR, 0.2 / k) for k, f in enumerate((110.0, 440.0, 1760.0), 1))
    return x * 10 ** (level_dbfs / 20) / x.square().mean().sqrt()


def test_bark_floor_ignores_inaudible_side_noise_but_not_an_audible_imbalance():
    # Issue 10: with the old floor (-153 dB) side noise at -80 dBFS scored 23 % of a 6 dB imbalance.
    mono = _music_like()
    reference, loss = stereo(mono, mono), AudioFeatureLoss(SR)
    generator = torch.Generator().manual_seed(1)
    noise = torch.randn(mono.shape, generator=generator)

    def side_noise(level_dbfs: float) -> float:
        e = noise * 10 ** (level_dbfs / 20)
        return loss(stereo(mono + e, mono - e), reference).item()

    imbalance = loss(stereo(mono, 0.5 * mono), reference).item()
    assert imbalance > 0.5
    assert side_noise(-80.0) < 0.05 * imbalance
    assert side_noise(-40.0) > 0.2 * imbalance  # side content 20 dB under the mix is still seen
    assert F.bark_spectrum(stereo(mono, mono), SR)[0, 1].max().item() == pytest.approx(math.log(F.LOG_FLOOR), abs=1e-3)


def test_bark_spectrum_reads_a_sine_in_dbfs_and_the_floor_at_minus_90_dbfs():
    n_fft = 2048
    s = sine(1000.0, 1.0, SR, amplitude=0.5)
    bins = F.bark_spectrum(stereo(s, s), SR, n_fft=n_fft)  # mid = the sine; its band averages several bins
    edges = F.bark_band_edges(SR)
    band = int(torch.nonzero((edges[:-1] <= 1000) & (edges[1:] > 1000))[0, 0])
    bins_in_band = int((F.bark_filterbank(SR, n_fft)[band] > 0).sum())
    # a Hann window spreads a sine's amplitude over ~2 bins (sum of magnitudes 0.5 * (1 + 2 * 0.5))
    expected = math.log(0.5 * 2.0 / bins_in_band + F.LOG_FLOOR)
    assert bins[0, 0, band].item() == pytest.approx(expected, abs=0.15)
    assert 20 * math.log10(F.LOG_FLOOR) == pytest.approx(F.BARK_FLOOR_DBFS) == -90.0


@pytest.mark.parametrize("samples", [1, 511, 512, 4000])
def test_hann_stft_equals_torch_stft_in_values_and_gradient(samples):
    x = torch.randn(3, samples, dtype=torch.float64, requires_grad=True)
    window = torch.hann_window(2048, dtype=torch.float64)
    ours = F.hann_stft(x, window, 512)
    theirs = torch.stft(x, 2048, 512, window=window, return_complex=True, center=True, pad_mode="constant")
    assert ours.shape == theirs.transpose(-1, -2).shape == (3, samples // 512 + 1, 1025)
    assert torch.allclose(ours, theirs.transpose(-1, -2), atol=1e-10)
    weights = torch.randn(ours.shape, dtype=torch.float64)
    grad_ours, = torch.autograd.grad((ours.abs() * weights).sum(), x)
    grad_theirs, = torch.autograd.grad((theirs.transpose(-1, -2).abs() * weights).sum(), x)
    assert torch.allclose(grad_ours, grad_theirs, atol=1e-9)


def test_af_loss_is_zero_for_identical_mixes_and_weights_scale_terms():
    x = torch.randn(2, 2, SR) * 0.1
    loss = AudioFeatureLoss(SR)
    assert loss(x, x).item() == pytest.approx(0.0, abs=1e-9)
    y = torch.randn(2, 2, SR) * 0.1 * torch.tensor([1.0, 0.3])[None, :, None]
    terms = loss.terms(x, y)
    assert set(terms) == {"rms", "crest_factor", "stereo_width", "stereo_imbalance", "bark_spectrum"}
    expected = sum(getattr(AFWeights(), k) * v for k, v in terms.items())
    assert loss(x, y).item() == pytest.approx(expected.item(), rel=1e-5)
    only_width = AudioFeatureLoss(SR, weights={"rms": 0, "crest_factor": 0, "stereo_imbalance": 0, "bark_spectrum": 0})
    assert only_width(x, y).item() == pytest.approx(terms["stereo_width"].item(), rel=1e-5)
    for bad, message in (({"crestfactor": 1.0}, "unknown AF terms"), ({"rms": -0.1}, ">= 0")):
        with pytest.raises(ValueError, match=message):  # a misspelt term is not silently ignored
            AudioFeatureLoss(SR, weights=bad)


def test_af_loss_ignores_level_after_loudness_normalisation_but_mrstft_does_not_without_it():
    x = torch.randn(1, 2, SR) * 0.1
    assert AudioFeatureLoss(SR)(x, 0.25 * x).item() == pytest.approx(0.0, abs=1e-6)
    assert MRSTFTLoss(SR, target_lufs=-16.0)(x, 0.25 * x).item() == pytest.approx(0.0, abs=1e-5)
    assert MRSTFTLoss()(x, 0.25 * x).item() > 0.5


def test_mrstft_is_zero_for_equal_inputs_and_grows_with_difference():
    x = torch.randn(1, 2, SR) * 0.1
    loss = MRSTFTLoss()
    small = loss(x, x + 0.01 * torch.randn_like(x)).item()
    large = loss(x, x + 0.1 * torch.randn_like(x)).item()
    assert loss(x, x).item() == pytest.approx(0.0, abs=1e-6) and 0 < small < large
    with pytest.raises(ValueError, match="equal shapes"):
        loss(x, x[..., :-1])


def test_mrstft_names_its_minimum_length():
    loss = MRSTFTLoss()
    assert loss.min_samples == 4097
    x = torch.randn(1, 2, 4097)
    assert math.isfinite(loss(x, 0.5 * x).item())
    with pytest.raises(ValueError, match="at least 4097 samples"):
        loss(x[..., :4096], x[..., :4096])
    short = MRSTFTLoss(fft_sizes=(512, 2048))
    assert short.min_samples == 1025 and math.isfinite(short(x[..., :1025], x[..., :1025]).item())


@pytest.mark.parametrize("sample_rate", [11025, 22050, 44100, 48000])
def test_integrated_loudness_is_pyloudnorms_bs1770(sample_rate):
    import numpy as np
    import pyloudnorm

    rng = np.random.default_rng(0)
    t = np.arange(2 * sample_rate) / sample_rate
    signals = {
        "stereo noise": 0.1 * rng.standard_normal((2, 2 * sample_rate)),
        "30 Hz tone, mono (the high-pass's skirt)": 0.5 * np.sin(2 * np.pi * 30 * t)[None],
        # loud, silent and 30 dB quieter parts: both gates drop blocks
        "bursts and silence": np.concatenate([0.5 * rng.standard_normal((2, sample_rate)), np.zeros((2, sample_rate)),
                                              0.01 * rng.standard_normal((2, sample_rate))], 1),
        "five channels": 0.1 * rng.standard_normal((5, sample_rate)),
        "shorter than a block": 0.1 * rng.standard_normal((2, sample_rate // 4)),
    }
    meter = pyloudnorm.Meter(sample_rate)
    for name, x in signals.items():
        padded = np.pad(x, ((0, 0), (0, max(0, int(0.4 * sample_rate) + 1 - x.shape[-1]))))
        assert integrated_loudness(x, sample_rate) == pytest.approx(meter.integrated_loudness(padded.T), abs=1e-3), name
    assert integrated_loudness(np.zeros((2, sample_rate)), sample_rate) == -math.inf


def test_differentiable_loudness_matches_bs1770_on_steady_material():
    generator = torch.Generator().manual_seed(0)
    for x in (torch.randn(1, 2, 3 * SR, generator=generator) * 0.05,
              stereo(sine(100.0, 3.0, SR, 0.3), sine(3000.0, 3.0, SR, 0.1))):
        assert loudness(x, SR).item() == pytest.approx(integrated_loudness(x[0], SR), abs=0.3)
    normalised = loudness_normalize(x, SR, -16.0)
    assert integrated_loudness(normalised[0], SR) == pytest.approx(-16.0, abs=0.3)


def test_differentiable_loudness_is_right_for_every_length_and_rate_in_turn():
    # loudness() caches its per-bin K-weighting: lengths (odd, even) and rates must not share an entry
    from diffmst_lite.dsp.biquads import k_weighting_power

    def direct(x, sample_rate):  # Parseval in float64, nothing cached
        n = x.shape[-1]
        power = torch.fft.rfft(x.double(), dim=-1).abs().square() * k_weighting_power(sample_rate, n // 2 + 1)
        power[..., 1 : (n + 1) // 2] *= 2  # one-sided: all bins but DC (and Nyquist for even n) twice
        return -0.691 + 10 * torch.log10(power.sum(-1).sum(-1) / n**2)

    generator = torch.Generator().manual_seed(3)
    cases = [(SR, 44100), (SR, 44101), (2 * SR, 44100), (SR, 1000), (SR, 44100), (2 * SR, 44101)]
    for sample_rate, n in cases + cases[::-1]:
        x = 0.1 * torch.randn(2, 2, n, generator=generator)
        assert torch.allclose(loudness(x, sample_rate).double(), direct(x, sample_rate), atol=1e-3), (sample_rate, n)


def test_features_reject_mono_shaped_input():
    with pytest.raises(ValueError, match="stereo"):
        F.rms(torch.zeros(1, 1, 100))
