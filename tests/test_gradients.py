"""Finite gradients everywhere a trainer can go: every range edge of every
parameter (pan hard left and right included), silence and mono-in-stereo."""

import math

import pytest
import torch

from diffmst_lite.console import MixingConsole
from diffmst_lite.losses import AudioFeatureLoss, MRSTFTLoss

SR = 22050
N = SR // 4


def edge_batches(console):
    """Settings where, in item k, one parameter sits at 0 or 1 (all others random)."""
    generator = torch.Generator().manual_seed(0)
    num_track, num_master = console.num_track_params, console.num_master_params
    items = 2 * (num_track + num_master)
    track = torch.rand(items, 2, num_track, generator=generator)
    master = torch.rand(items, num_master, generator=generator)
    k = 0
    for edge in (0.0, 1.0):
        for i in range(num_track):
            track[k, :, i] = edge
            k += 1
        for i in range(num_master):
            master[k, i] = edge
            k += 1
    return track, master


@pytest.mark.parametrize("signal", ["noise", "silence", "mono"])
def test_console_and_both_losses_have_finite_gradients_at_every_range_edge(signal):
    console = MixingConsole(SR)
    track, master = edge_batches(console)
    items = track.shape[0]
    generator = torch.Generator().manual_seed(1)
    if signal == "noise":
        tracks = torch.randn(items, 2, N, generator=generator) * 0.1
    elif signal == "silence":
        tracks = torch.zeros(items, 2, N)
    else:  # one source on both tracks: a mono-in-stereo mix when panned alike
        tracks = (torch.randn(items, 1, N, generator=generator) * 0.1).expand(-1, 2, -1).contiguous()
    track.requires_grad_(True)
    master.requires_grad_(True)
    mix = console(tracks, track, master)
    reference = torch.randn(items, 2, N, generator=generator) * 0.1
    loss = AudioFeatureLoss(SR)(mix, reference) + MRSTFTLoss(SR, target_lufs=-16.0)(mix, reference)
    loss.backward()
    assert torch.isfinite(mix).all() and torch.isfinite(loss)
    assert torch.isfinite(track.grad).all(), "non-finite gradient for a track parameter"
    assert torch.isfinite(master.grad).all(), "non-finite gradient for a master parameter"
    if signal == "noise":  # and the gradient is not just zero everywhere
        assert track.grad.abs().sum() > 0 and master.grad.abs().sum() > 0


def test_gradient_reaches_pan_at_hard_left_and_right():
    console = MixingConsole(SR)
    tracks = torch.randn(2, 1, N) * 0.1
    track = torch.rand(2, 1, console.num_track_params)
    track[0, 0, -1], track[1, 0, -1] = 0.0, 1.0
    track.requires_grad_(True)
    mix = console(tracks, track, torch.rand(2, console.num_master_params))
    # loss that wants the image moved towards the centre
    (mix[:, 0].square().mean() - mix[:, 1].square().mean()).abs().sum().backward()
    pan_grad = track.grad[:, 0, -1]
    assert torch.isfinite(pan_grad).all() and (pan_grad.abs() > 0).all()


def test_hand_written_gain_computer_backward_matches_autograd():
    """The compressor's static curve saves only its level in forward (console._TargetGain):
    its gradient equals autograd's through the plain expression, below, in and above the knee."""
    from diffmst_lite.dsp.decibels import db_to_amplitude
    from diffmst_lite.dsp.dynamics import _TargetGain, gain_computer

    generator = torch.Generator().manual_seed(0)
    level = (torch.rand(4, 500, generator=generator, dtype=torch.float64) * 80 - 70).requires_grad_()
    threshold = torch.tensor([-60.0, -30.0, -20.0, 0.0], dtype=torch.float64, requires_grad=True)
    ratio = torch.tensor([1.0, 2.0, 4.0, 10.0], dtype=torch.float64, requires_grad=True)
    knee = torch.tensor([1.0, 6.0, 12.0, 3.0], dtype=torch.float64, requires_grad=True)
    inputs = (level, threshold, ratio, knee)
    cotangent = torch.randn(4, 500, generator=generator, dtype=torch.float64)
    ours = torch.autograd.grad(_TargetGain.apply(*inputs), inputs, cotangent)
    plain = torch.autograd.grad(db_to_amplitude(gain_computer(*inputs)), inputs, cotangent)
    for got, expected in zip(ours, plain):
        assert torch.allclose(got, expected, rtol=1e-9, atol=1e-12)


def side_chain_case(dtype, samples, seed=0):
    """Bursts of noise in two channels and four compressors that span the settings' ranges
    (ratio 1 and a knee below the 1e-3 dB floor included), all inputs leaves needing gradients."""
    generator = torch.Generator().manual_seed(seed)
    envelope = torch.rand(4, 1, samples // 50 + 1, generator=generator, dtype=dtype).repeat_interleave(50, -1)
    x = torch.randn(4, 2, samples, generator=generator, dtype=dtype) * envelope[..., :samples] ** 3
    settings = [torch.tensor(v, dtype=dtype) for v in ([-50.0, -30.0, -20.0, -10.0], [1.0, 2.0, 4.0, 10.0],
                                                         [1.0, 5.0, 30.0, 250.0], [10.0, 50.0, 300.0, 1000.0],
                                                         [0.0, 3.0, 6.0, 12.0])]
    return [t.requires_grad_() for t in (x, *settings)]


def side_chain_outputs(inputs, sample_rate, fused):
    """Level (dB) and smoothed gain of the compressor's side chain, fused or as torch ops."""
    from diffmst_lite.dsp.dynamics import _side_chain

    detected, gain = _side_chain(inputs[0], sample_rate, *inputs[1:], fused=fused)
    return 10 * torch.log10(detected), gain


@pytest.mark.parametrize("dtype, forward_tol, gradient_tol", [(torch.float32, 3e-7, 1e-4),
                                                              (torch.float64, 1e-14, 1e-12)])
def test_fused_compressor_side_chain_matches_the_torch_ops(dtype, forward_tol, gradient_tol):
    """The fused side chain (numba loops, dynamics._SideChain) gives the level, the gain
    and the gradients of the same chain run as torch ops and torchcomp's kernel (the
    code before it, now the CUDA path), to float32 / float64 rounding."""
    sample_rate, samples = 22050, 20000
    inputs = side_chain_case(dtype, samples)
    generator = torch.Generator().manual_seed(1)
    cotangents = [torch.randn(4, samples, generator=generator, dtype=dtype) for _ in range(2)]
    results = {}
    for fused in (True, False):
        level, gain = side_chain_outputs(inputs, sample_rate, fused)
        grads = torch.autograd.grad((level * cotangents[0]).sum() * 1e-3 + (gain * cotangents[1]).sum(), inputs)
        results[fused] = (level, gain, grads)
    (level, gain, grads), (ops_level, ops_gain, ops_grads) = results[True], results[False]
    assert (gain - ops_gain).abs().max() < forward_tol and gain.dtype == dtype
    assert ((level - ops_level).abs() / ops_level.abs()).max() < forward_tol
    assert gain.min() < 0.3 and (gain == 1).any()  # compressed hard somewhere, and not at all elsewhere
    for name, got, expected in zip(["x", "threshold", "ratio", "attack", "release", "knee"], grads, ops_grads):
        assert (got - expected).norm() / expected.norm() < gradient_tol, name


def test_fused_compressor_side_chain_passes_gradcheck():
    """Float64 gradients against finite differences, w.r.t. the input and all five settings, through
    the level and the gain; short time constants at 2 kHz, so attack and release alternate often."""
    sample_rate = 2000
    inputs = side_chain_case(torch.float64, 300)
    with torch.no_grad():
        inputs[0].mul_(3.0).add_(0.01)  # no sample near zero, where |x|^2 has no curvature to resolve
        inputs[2][0] = 1.5  # not ratio 1: there the slightest compression switches release to attack
        inputs[5][0] = 1.0  # a knee above the floor, where the curve has a gradient w.r.t. it
    _, gain = side_chain_outputs(inputs, sample_rate, fused=True)
    steps = gain.diff(dim=1)
    assert (steps < 0).sum() > 100 and (steps > 0).sum() > 100
    assert torch.autograd.gradcheck(lambda *args: side_chain_outputs(args, sample_rate, fused=True), inputs,
                                    eps=1e-6, atol=1e-6, rtol=1e-4)


@pytest.mark.parametrize("edge", [0.0, 1.0])
def test_compressor_gradients_are_finite_on_silence_and_at_range_edges(edge):
    """Every compressor setting at its lower (upper) range edge, on a silent and a loud item."""
    from diffmst_lite.console import params
    from diffmst_lite.dsp.dynamics import compressor

    specs = params.track_param_specs(SR)
    settings = params.to_physical(torch.full((2, len(specs)), edge), specs)[:, params.COMPRESSOR]
    settings.requires_grad_()
    x = torch.zeros(2, 2, N)
    x[1] = torch.randn(2, N, generator=torch.Generator().manual_seed(0))  # loud: far over every threshold
    x.requires_grad_()
    y = compressor(x, SR, *settings.unbind(-1))
    x_grad, settings_grad = torch.autograd.grad(y.square().sum() + y.sum(), (x, settings))
    assert torch.isfinite(y).all() and torch.isfinite(x_grad).all() and torch.isfinite(settings_grad).all()
    assert (y[0] == 0).all() and settings_grad[1].abs().sum() > 0


@pytest.mark.parametrize("length, n", [(100, 100), (101, 101), (37, 60), (37, 61)])
def test_real_fft_backward_equals_autograd_of_rfft(length, n):
    """dsp.fftconv.real_fft (EQ convolution, loudness) computes rfft's gradient with one
    irfft: the same values as PyTorch's complex-FFT backward, for even and odd sizes."""
    from diffmst_lite.dsp.fftconv import real_fft

    generator = torch.Generator().manual_seed(length + n)
    x = torch.randn(3, length, dtype=torch.float64, generator=generator, requires_grad=True)
    weights = torch.randn(3, n // 2 + 1, dtype=torch.complex128, generator=generator)

    def loss(spectrum):  # touches real and imaginary parts, DC and Nyquist included
        return (spectrum * weights).real.sum() + spectrum.abs().square().sum()

    expected, = torch.autograd.grad(loss(torch.fft.rfft(x, n=n)), x)
    got, = torch.autograd.grad(loss(real_fft(x, n)), x)
    assert torch.equal(real_fft(x, n), torch.fft.rfft(x, n=n))
    assert torch.allclose(got, expected, rtol=0, atol=1e-11)
    assert torch.autograd.gradcheck(lambda signal: real_fft(signal, n).abs(), x[:1].detach().requires_grad_())


def test_eq_response_hand_written_backward_matches_autograd_of_the_biquads():
    """dsp.biquads._CascadeResponse (the six-band EQ's response, backward in float32 real
    arithmetic) against autograd through the product of each band's complex response in
    float64, with a 20 Hz shelf, bands at their range edges and random settings."""
    from diffmst_lite.console import params
    from diffmst_lite.dsp.biquads import BAND_TYPES, biquad_response, eq_frequency_response

    sample_rate, num_bins = 44100, 2049
    specs = params.track_param_specs(sample_rate)
    unit = torch.rand(5, params.NUM_TRACK_PARAMS, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    unit[0], unit[1] = 0.0, 1.0  # every setting at its lower, then its upper edge
    physical = params.to_physical(unit, specs)
    settings = [physical[:, index].clone().requires_grad_() for index in (params.EQ_FREQ, params.EQ_GAIN, params.EQ_Q)]
    weights = torch.randn(5, num_bins, dtype=torch.complex128, generator=torch.Generator().manual_seed(1))

    def loss(response):  # real and imaginary parts and the magnitude
        return (response * weights).real.sum() + response.abs().log().sum()

    got = eq_frequency_response(*settings, sample_rate, num_bins)
    got_grads = torch.autograd.grad(loss(got), settings)
    omega = torch.linspace(0, math.pi, num_bins, dtype=torch.float64)
    expected = math.prod(biquad_response(kind, settings[0][:, band], settings[1][:, band], settings[2][:, band],
                                         sample_rate, omega) for band, kind in enumerate(BAND_TYPES))
    expected_grads = torch.autograd.grad(loss(expected), settings)
    assert torch.allclose(got, expected, rtol=1e-4, atol=1e-6)  # the upper bands in float32
    for name, g, e in zip(("frequency", "gain", "Q"), got_grads, expected_grads):
        assert torch.allclose(g, e, rtol=1e-4, atol=1e-4 * e.abs().max()), name


def test_eq_impulse_by_recursion_passes_gradcheck():
    """dsp.biquads._CascadeImpulse (biquads in series run on a unit impulse, with the adjoint
    recursion as backward) against finite differences, on random stable biquads."""
    from diffmst_lite.dsp.biquads import _CascadeImpulse

    generator = torch.Generator().manual_seed(0)
    b = (0.5 * torch.randn(2, 3, 3, generator=generator, dtype=torch.float64)).requires_grad_()
    radius = 0.5 + 0.45 * torch.rand(2, 3, generator=generator, dtype=torch.float64)  # poles inside the circle
    angle = math.pi * torch.rand(2, 3, generator=generator, dtype=torch.float64)
    a = torch.stack([torch.ones_like(radius), -2 * radius * torch.cos(angle), radius.square()], -1).requires_grad_()
    assert torch.autograd.gradcheck(lambda b, a: _CascadeImpulse.apply(b, a, 40), (b, a))


@pytest.mark.parametrize("sample_rate", [22050, 44100])
def test_eq_impulse_by_recursion_matches_the_sampled_response_and_its_gradient(sample_rate):
    """The EQ's impulse response on the CPU (recursion) and on other devices (inverse FFT of
    the sampled response) agree, values and gradients w.r.t. every setting, over the
    console's ranges (their edges included)."""
    from diffmst_lite.console import params
    from diffmst_lite.dsp.biquads import _sampled_impulse_response, eq_impulse_length, eq_impulse_response

    length = eq_impulse_length(sample_rate)
    unit = torch.rand(6, params.NUM_TRACK_PARAMS, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    unit[0], unit[1] = 0.0, 1.0
    physical = params.to_physical(unit, params.track_param_specs(sample_rate))
    weights = torch.randn(6, length, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    results = []
    for impulse_response in (eq_impulse_response, _sampled_impulse_response):
        settings = [physical[:, index].clone().requires_grad_() for index in (params.EQ_FREQ, params.EQ_GAIN, params.EQ_Q)]
        impulse = impulse_response(*settings, sample_rate, length)
        results.append((impulse, torch.autograd.grad((impulse * weights).sum(), settings)))
    (ours, our_grads), (sampled, sampled_grads) = results
    assert (ours - sampled).abs().max() < 1e-4 * sampled.abs().max()
    for name, g, e in zip(("frequency", "gain", "Q"), our_grads, sampled_grads):
        assert torch.allclose(g, e, rtol=1e-3, atol=1e-3 * e.abs().max()), name
