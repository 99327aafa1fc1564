"""DaspConsole (chapter 5): the paper's console from dasp-pytorch's effects, next to ours.

Where the two consoles share an effect (gain, the RBJ EQ, the -4.5 dB pan law) they
must render the same mix; where they differ (the compressor, the pan law's gradient
at the edges) the tests pin down the difference the chapter shows.
"""

import math

import pytest
import torch

pytest.importorskip("dasp_pytorch")

from diffmst_lite.console import MixingConsole, params  # noqa: E402
from diffmst_lite.console.dasp_console import DaspConsole  # noqa: E402
from diffmst_lite.dsp.panning import pan_gains  # noqa: E402

from helpers import neutral, set_physical  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")

SR = 22050


def _tracks(batch: int = 2, num_tracks: int = 3, num_samples: int = 4096, seed: int = 0) -> torch.Tensor:
    return 0.1 * torch.randn(batch, num_tracks, num_samples, generator=torch.Generator().manual_seed(seed))


def test_shape_and_neutral_settings_give_the_centred_sum():
    tracks = _tracks()
    track_params, master_params = neutral(SR, tracks=3, batch=2)
    with torch.no_grad():
        mix = DaspConsole(SR)(tracks, track_params, master_params)
    assert mix.shape == (2, 2, 4096) and torch.isfinite(mix).all()
    centre = float(pan_gains(torch.tensor(0.0))[0])  # -4.5 dB on each side
    assert 20 * math.log10(centre) == pytest.approx(-4.5, abs=0.05)
    expected = centre * tracks.sum(1, keepdim=True).expand(-1, 2, -1)
    assert torch.allclose(mix, expected, atol=1e-5), float((mix - expected).abs().max())


def test_gain_eq_and_pan_render_as_in_our_console():
    """With the compressors off (ratio 1), the shared effects give the same mix."""
    tracks = _tracks(batch=1, num_tracks=4, num_samples=SR // 2)
    generator = torch.Generator().manual_seed(1)
    track_params = params.random_track_params(1, 4, SR, generator)
    master_params = params.random_master_params(1, SR, generator)
    track_params = set_physical(track_params, params.track_param_specs(SR), "compressor.ratio", 1.0)
    master_params = set_physical(master_params, params.master_param_specs(SR), "compressor.ratio", 1.0)
    with torch.no_grad():
        ours = MixingConsole(SR)(tracks, track_params, master_params)
        dasp = DaspConsole(SR)(tracks, track_params, master_params)
    error_db = 20 * torch.log10((dasp - ours).square().mean().sqrt() / ours.square().mean().sqrt())
    assert error_db < -50, float(error_db)


def test_the_compressors_differ():
    """Same sheet, compressors on: dasp's per-sample detector (|x| in dB) and ours (10 ms
    RMS) reduce different amounts of gain; dasp's release time changes nothing."""
    tracks = _tracks(batch=1, num_tracks=2, num_samples=SR // 2)
    track_params, master_params = neutral(SR, tracks=2, batch=1)
    specs = params.track_param_specs(SR)
    for name, value in (("compressor.threshold_db", -30.0), ("compressor.ratio", 4.0)):
        track_params = set_physical(track_params, specs, name, value)
    fast = set_physical(track_params, specs, "compressor.release_ms", 10.0)
    slow = set_physical(track_params, specs, "compressor.release_ms", 1000.0)
    with torch.no_grad():
        ours = MixingConsole(SR)(tracks, fast, master_params)
        dasp = DaspConsole(SR)(tracks, fast, master_params)
        assert torch.equal(dasp, DaspConsole(SR)(tracks, slow, master_params))
        assert not torch.allclose(ours, MixingConsole(SR)(tracks, slow, master_params))
    level_difference_db = 10 * torch.log10(dasp.square().mean() / ours.square().mean())
    assert abs(level_difference_db) > 1.0, float(level_difference_db)


def test_gradients_at_the_range_edges():
    """Ours: finite at pan 0 and 1 (u), release has a gradient. dasp: NaN at the pan
    edges (its square-root pan law), exactly 0 for the release."""
    tracks = _tracks(batch=2, num_tracks=2, num_samples=4096)
    track_params, master_params = neutral(SR, tracks=2, batch=2)
    specs = params.track_param_specs(SR)
    for name, value in (("compressor.threshold_db", -30.0), ("compressor.ratio", 4.0)):
        track_params = set_physical(track_params, specs, name, value)
    track_params[0, :, params.PAN], track_params[1, :, params.PAN] = 0.0, 1.0  # hard left, hard right
    release = 19 + params.COMPRESSOR_FIELDS.index("release_ms")
    grads = {}
    for name, console in (("ours", MixingConsole(SR)), ("dasp", DaspConsole(SR))):
        u = track_params.clone().requires_grad_()
        console(tracks, u, master_params).square().mean().backward()
        grads[name] = u.grad
    assert torch.isfinite(grads["ours"]).all() and (grads["ours"][..., release].abs() > 0).all()
    assert torch.isnan(grads["dasp"][..., params.PAN]).all()
    assert (grads["dasp"][..., release] == 0).all()
    others = [i for i in range(params.NUM_TRACK_PARAMS) if i != params.PAN]
    assert torch.isfinite(grads["dasp"][..., others]).all()


def test_checks_its_input_shapes():
    console = DaspConsole(SR)
    assert (console.num_track_params, console.num_master_params) == (26, 26)
    tracks = _tracks(batch=1, num_tracks=2, num_samples=1024)
    track_params, master_params = neutral(SR, tracks=2, batch=1)
    with pytest.raises(ValueError):
        console(tracks, track_params[..., :25], master_params)
