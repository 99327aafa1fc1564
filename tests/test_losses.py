"""AF features and the two style losses, with numbers (DESIGN.md §5)."""

import math

import pytest
import torch

from diffmst_lite import features as F
from diffmst_lite.audio import integrated_loudness, loudness, loudness_normalize
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
    assert F.crest_factor(x)[0, 0].item() == pytest.approx(3.01, abs=0.02)


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


def test_differentiable_loudness_matches_bs1770_on_steady_material():
    generator = torch.Generator().manual_seed(0)
    for x in (torch.randn(1, 2, 3 * SR, generator=generator) * 0.05,
              stereo(sine(100.0, 3.0, SR, 0.3), sine(3000.0, 3.0, SR, 0.1))):
        assert loudness(x, SR).item() == pytest.approx(integrated_loudness(x[0], SR), abs=0.3)
    normalised = loudness_normalize(x, SR, -16.0)
    assert integrated_loudness(normalised[0], SR) == pytest.approx(-16.0, abs=0.3)


def test_features_reject_mono_shaped_input():
    with pytest.raises(ValueError, match="stereo"):
        F.rms(torch.zeros(1, 1, 100))
