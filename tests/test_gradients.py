"""Finite gradients everywhere a trainer can go: every range edge of every
parameter (pan hard left and right included), silence and mono-in-stereo."""

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
