"""Tests of the Diff-MST network: encoders, controller, model, presets.

Each test checks a number that a wrong implementation would get wrong:
permutation equivariance and padding invariance (no positional encoding, a
working key-padding mask), output ranges, parameter budgets, gradient flow.
"""

from __future__ import annotations

import copy
import dataclasses
import json

import pytest
import torch

from diffmst_lite.console import MixingConsole
from diffmst_lite.model.controller import ControllerConfig, TransformerController
from diffmst_lite.model.encoder import EncoderConfig, SpectrogramEncoder, band_filterbank
from diffmst_lite.model import DiffMST, DiffMSTConfig

SR = 22050
N = 8192  # ~0.37 s at 22.05 kHz: 17 STFT frames, enough for every layer


def _audio(*shape: int, seed: int = 0, level: float = 0.1) -> torch.Tensor:
    """Noise ``shape`` whose signals differ in level (log-spaced 0.03 ... 1 x level)
    and colour (every other one low-passed), so tracks are distinguishable."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(*shape, generator=g)
    x = x.reshape(-1, shape[-1])
    x[1::2] = torch.cumsum(x[1::2], dim=-1) / 30.0  # brown-ish noise
    x = x - x.mean(dim=-1, keepdim=True)
    gains = torch.logspace(-1.5, 0.0, x.shape[0])[torch.randperm(x.shape[0], generator=g)]
    return (level * gains[:, None] * x / x.std(dim=-1, keepdim=True)).reshape(shape)


@pytest.fixture(scope="module")
def model() -> DiffMST:
    """A lite model whose BatchNorm running statistics have seen some audio, as
    after training (at initialisation they are 0/1 and the eval-mode network
    barely tells tracks apart), then put in eval mode."""
    torch.manual_seed(0)
    m = DiffMST.lite(SR).train()
    with torch.no_grad():
        for i in range(10):
            m.predict_params(_audio(2, 8, N, seed=100 + i), _audio(2, 2, N, seed=200 + i))
    return m.eval()


def _close(a: torch.Tensor, b: torch.Tensor, rtol: float = 1e-4) -> bool:
    """``max|a - b| <= rtol * max|b|`` (plus a tiny absolute floor)."""
    return (a - b).abs().max().item() <= rtol * b.abs().max().item() + 1e-7


# --------------------------------------------------------------------- shapes
def test_forward_shapes_and_ranges(model: DiffMST) -> None:
    tracks, ref = _audio(2, 5, N), _audio(2, 2, N, seed=1)
    with torch.no_grad():
        mix, tp, mp = model(tracks, ref)
    P, Pm = model.console.num_track_params, model.console.num_master_params
    assert mix.shape == (2, 2, N)
    assert tp.shape == (2, 5, P) and mp.shape == (2, Pm)
    assert torch.isfinite(mix).all()
    for p in (tp, mp):
        assert p.min() >= 0.0 and p.max() <= 1.0
        assert p.std() > 1e-3  # not collapsed to a constant


def test_reference_length_may_differ(model: DiffMST) -> None:
    with torch.no_grad():
        tp, mp = model.predict_params(_audio(1, 3, N), _audio(1, 2, 2 * N, seed=1))
    assert tp.shape[:2] == (1, 3) and mp.shape[0] == 1


def test_bad_shapes_raise(model: DiffMST) -> None:
    with pytest.raises(ValueError):
        model.predict_params(_audio(1, 3, N), _audio(1, 1, N))  # mono reference
    with pytest.raises(ValueError):
        model.predict_params(_audio(1, 3, N), _audio(1, 2, N), mask=torch.ones(1, 3))


# --------------------------------------------------- order and count invariance
def test_track_permutation(model: DiffMST) -> None:
    """Permuting the tracks permutes the track params; mix and master unchanged."""
    tracks, ref = _audio(2, 6, N), _audio(2, 2, N, seed=1)
    perm = torch.tensor([3, 0, 5, 1, 4, 2])
    with torch.no_grad():
        mix, tp, mp = model(tracks, ref)
        mix_p, tp_p, mp_p = model(tracks[:, perm], ref)
    assert (tp_p - tp[:, perm]).abs().max() < 1e-5
    assert (mp_p - mp).abs().max() < 1e-5
    assert _close(mix_p, mix)
    # and the network is not trivially constant across tracks
    assert (tp[:, 0] - tp[:, 1]).abs().max() > 1e-3


def test_reference_channels_are_distinguished(model: DiffMST) -> None:
    """Swapping the reference's left and right changes the prediction (pan needs it)."""
    tracks, ref = _audio(1, 4, N), _audio(1, 2, N, seed=1)
    ref[:, 1] *= 0.1  # a left-heavy reference
    with torch.no_grad():
        tp, _ = model.predict_params(tracks, ref)
        tp_swapped, _ = model.predict_params(tracks, ref.flip(1))
    assert (tp - tp_swapped).abs().max() > 1e-4


@pytest.mark.parametrize("num_tracks", [4, 8, 16])
def test_any_track_count(model: DiffMST, num_tracks: int) -> None:
    with torch.no_grad():
        mix, tp, mp = model(_audio(1, num_tracks, N), _audio(1, 2, N, seed=1))
    assert tp.shape[1] == num_tracks and mix.shape == (1, 2, N)
    assert torch.isfinite(mix).all() and torch.isfinite(tp).all()


@pytest.mark.parametrize("train_mode", [False, True])
def test_padded_tracks_change_nothing(model: DiffMST, train_mode: bool) -> None:
    """4 real tracks + 4 padded (loud noise, mask False) == the 4 tracks alone.

    Also in training mode: padded tracks never reach the encoder, so they cannot
    leak in through BatchNorm batch statistics either.
    """
    real, ref = _audio(2, 4, N), _audio(2, 2, N, seed=1)
    junk = _audio(2, 4, N, seed=2, level=1.0)
    order = torch.tensor([0, 4, 1, 5, 6, 2, 7, 3])  # interleave real and padding
    padded = torch.cat([real, junk], dim=1)[:, order]
    mask = torch.cat([torch.ones(2, 4), torch.zeros(2, 4)], dim=1).bool()[:, order]
    model.train(train_mode)
    try:
        with torch.no_grad():
            mix, tp, mp = model(real, ref)
            mix_p, tp_p, mp_p = model(padded, ref, mask=mask)
    finally:
        model.eval()
    real_slots = order < 4
    assert (tp_p[:, real_slots] - tp[:, order[real_slots]]).abs().max() < 1e-5
    assert (tp_p[:, ~real_slots] == 0).all()
    assert (mp_p - mp).abs().max() < 1e-5
    assert _close(mix_p, mix)


def test_all_tracks_padded_is_finite(model: DiffMST) -> None:
    mask = torch.zeros(1, 3, dtype=torch.bool)
    with torch.no_grad():
        mix, tp, mp = model(_audio(1, 3, N), _audio(1, 2, N, seed=1), mask=mask)
    assert torch.isfinite(mix).all() and torch.isfinite(mp).all() and (tp == 0).all()


# ------------------------------------------------------------------ gradients
def test_gradients_reach_every_weight() -> None:
    torch.manual_seed(0)
    model = DiffMST.lite(SR).train()
    tracks, ref, target = _audio(2, 4, N), _audio(2, 2, N, seed=1), _audio(2, 2, N, seed=2)
    mix, _, _ = model(tracks, ref)
    (mix - target).square().mean().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
    for enc in (model.track_encoder, model.reference_encoder):
        first_conv = enc.blocks[0].layers[0].weight
        assert first_conv.grad.abs().sum() > 0


def test_gradients_finite_on_silence() -> None:
    torch.manual_seed(0)
    model = DiffMST.lite(SR).train()
    silence = torch.zeros(2, 4, N)
    mix, tp, mp = model(silence, torch.zeros(2, 2, N))
    # the mix of silence is silence whatever the params; add the params so the
    # encoders get a non-zero gradient to check
    loss = (mix - _audio(2, 2, N)).square().mean() + tp.mean() + mp.mean()
    loss.backward()
    assert torch.isfinite(mix).all() and (mix == 0).all()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    assert model.track_encoder.proj.weight.grad.abs().sum() > 0
    assert model.reference_encoder.proj.weight.grad.abs().sum() > 0


# ------------------------------------------------------------------- encoder
def test_encoder_spectrogram_and_level() -> None:
    enc = SpectrogramEncoder(EncoderConfig.lite()).eval()
    x = _audio(3, N)
    S = enc.spectrogram(x)
    assert S.shape == (3, 1, 1025, N // 512 + 1)
    t = torch.arange(N) / SR  # full-scale 1 kHz sine: |X| ~ n_fft / 4 at its bin
    peak = enc.spectrogram(torch.sin(2 * torch.pi * 1000 * t)[None])[0, 0, :, 8].max()
    assert abs(peak.item() - 512 ** 0.3) < 0.05 * 512 ** 0.3
    with torch.no_grad():  # the embedding knows how loud the input is (-20 dB)
        bias = enc.proj.bias
        e, e_quiet = enc(x) - bias, enc(0.1 * x) - bias
    assert (e - e_quiet).norm() > 0.1 * e.norm()
    assert enc(torch.zeros(1, 100)).shape == (1, 128)  # shorter than one window


def test_band_filterbank_averages_and_follows_a_sine() -> None:
    fb = band_filterbank(1025, 64)
    assert fb.shape == (64, 1025) and torch.allclose(fb.sum(-1), torch.ones(64))
    centres = (fb * torch.arange(1025)).sum(-1)
    assert (centres.diff() > 0).all()  # every band its own, in order
    assert centres[32] / centres[16] > 3 and centres[63] / centres[47] < 3  # roughly logarithmic
    enc = SpectrogramEncoder(EncoderConfig.lite())
    t = torch.arange(8192) / SR
    for freq in (100.0, 1000.0, 5000.0):  # a sine lights up the band whose centre is nearest
        rows = enc.bands(enc.spectrogram(torch.sin(2 * torch.pi * freq * t)[None]))[0, 0].mean(-1)
        nearest = (centres * SR / 2048 - freq).abs().argmin()
        assert abs(int(rows.argmax()) - int(nearest)) <= 1, freq


def test_reference_encoder_starts_as_the_track_encoder() -> None:
    model = DiffMST.lite(SR)
    a, b = model.track_encoder.state_dict(), model.reference_encoder.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert model.track_encoder.proj.weight.data_ptr() != model.reference_encoder.proj.weight.data_ptr()


# ---------------------------------------------------------------- controller
def test_attention_maps_match_forward() -> None:
    torch.manual_seed(0)
    ctrl = TransformerController(ControllerConfig(num_track_params=5, num_master_params=3)).eval()
    B, T, D = 2, 5, ctrl.config.d_model
    emb, ref = torch.randn(B, T, D), torch.randn(B, 2, D)
    mask = torch.tensor([[1, 1, 0, 1, 0], [1, 1, 1, 1, 1]], dtype=torch.bool)
    attn, states = ctrl.attention_maps(emb, ref, mask, return_states=True)
    assert attn.shape == (B, ctrl.config.num_layers, ctrl.config.num_heads, T + 3, T + 3)
    assert torch.allclose(attn.sum(-1), torch.ones(()), atol=1e-5)
    assert (attn[0, ..., 2] == 0).all() and (attn[0, ..., 4] == 0).all()
    tokens, pad = ctrl.tokens(emb, ref, mask)
    with torch.no_grad():
        ref_states = ctrl.transformer(tokens, src_key_padding_mask=pad)
    keep = ~pad
    assert (states[keep] - ref_states[keep]).abs().max() < 1e-4


def test_controller_listens_to_the_reference_at_any_embedding_scale() -> None:
    """Normalised inputs: trained encoders' large embeddings must not drown out the reference."""
    torch.manual_seed(0)
    ctrl = TransformerController(ControllerConfig(num_track_params=5, num_master_params=3)).eval()
    emb, ref = torch.randn(1, 4, 128), torch.randn(1, 2, 128)
    with torch.no_grad():
        params, _ = ctrl(emb, ref)
        swapped, _ = ctrl(emb, ref.flip(1))  # left and right reference channels exchanged
        large, _ = ctrl(20 * emb, 20 * ref)
    assert (params - swapped).abs().max() > 1e-3
    assert torch.allclose(params, large, atol=1e-5)


# ------------------------------------------------------------------- presets
def test_lite_preset_budget() -> None:
    model = DiffMST.lite(SR)
    n = model.num_parameters()
    assert 1_000_000 < n <= 5_000_000
    n_enc = sum(p.numel() for p in model.track_encoder.parameters())
    assert 0.5e6 < n_enc < 1.5e6


def test_grown_controller_predicts_the_same_and_its_new_weights_learn(model: DiffMST) -> None:
    base = copy.deepcopy(model)
    torch.manual_seed(3)
    with torch.no_grad():  # trained-looking descriptor projections, so every path counts
        for projection in base.controller.descriptor_projections.values():
            projection.weight.normal_(std=0.05)
    grown = base.grown(extra_layers=2, mlp_hidden=512)
    c = base.config.controller
    assert grown.config.controller.num_layers == c.num_layers + 2 and grown.config.controller.mlp_hidden == 512
    per_layer = sum(p.numel() for p in base.controller.transformer.layers[0].parameters())
    wider = (512 - c.d_model) * (2 * (c.d_model + 1) + c.num_track_params + c.num_master_params)  # two MLPs
    assert grown.num_parameters() - base.num_parameters() == 2 * per_layer + wider
    tracks, reference = _audio(2, 5, N, seed=7), _audio(2, 2, N, seed=8)
    mask = torch.tensor([[True] * 5, [True, True, True, False, False]])
    before, after = base.predict_params(tracks, reference, mask), grown.predict_params(tracks, reference, mask)
    for old, new in zip(before, after):
        torch.testing.assert_close(new, old, rtol=0, atol=1e-6)
    # the zeroed output weights are where learning starts: they get gradients
    track_params, master_params = grown.predict_params(tracks, reference, mask)
    (track_params.square().sum() + master_params.square().sum()).backward()
    new_layer = grown.controller.transformer.layers[c.num_layers]
    assert new_layer.self_attn.out_proj.weight.grad.abs().sum() > 0 and new_layer.linear2.weight.grad.abs().sum() > 0
    assert grown.controller.track_head[2].weight.grad[:, c.d_model:].abs().sum() > 0
    with pytest.raises(ValueError, match="only grow"):
        grown.grown(mlp_hidden=128)


def test_paper_preset_sizes() -> None:
    torch.manual_seed(0)
    model = DiffMST.paper(44100).eval()
    cfg = model.config
    assert cfg.encoder.embed_dim == 512 and cfg.controller.d_model == 512
    assert len(model.controller.transformer.layers) == 12
    layer = model.controller.transformer.layers[0]
    assert layer.self_attn.num_heads == 8 and layer.linear1.out_features == 2048
    assert cfg.encoder.channels[-1] == 2048
    n_enc = sum(p.numel() for p in model.track_encoder.parameters())
    n_ctrl = sum(p.numel() for p in model.controller.parameters())
    assert 70e6 < n_enc < 85e6  # CNN14-shaped: ~76.5 M
    assert 36e6 < n_ctrl < 42e6  # 12 x ~3.15 M + heads
    assert 180e6 < model.num_parameters() < 200e6
    with torch.no_grad():  # short input keeps this fast
        tp, mp = model.predict_params(_audio(1, 2, 4096), _audio(1, 2, 4096, seed=1))
    assert tp.shape == (1, 2, model.console.num_track_params)
    assert 0 <= tp.min() and tp.max() <= 1 and 0 <= mp.min() and mp.max() <= 1


# ---------------------------------------------------------------- checkpoints
def test_checkpoint_roundtrip(model: DiffMST, tmp_path) -> None:
    path = str(tmp_path / "model.pt")
    model.save_checkpoint(path, extra={"step": 7})
    ckpt = torch.load(path, weights_only=True)
    assert ckpt["step"] == 7 and set(ckpt) >= {"config", "model"}
    # the config survives JSON too (tuples become lists)
    cfg = DiffMSTConfig.from_dict(json.loads(json.dumps(ckpt["config"])))
    assert cfg == model.config
    loaded = DiffMST.load_checkpoint(path).eval()
    tracks, ref = _audio(1, 3, N), _audio(1, 2, N, seed=1)
    with torch.no_grad():
        a, b = model.predict_params(tracks, ref), loaded.predict_params(tracks, ref)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_config_round_trips_and_a_missing_field_is_an_error() -> None:
    d = dataclasses.asdict(DiffMSTConfig(SR))
    assert dataclasses.asdict(DiffMSTConfig.from_dict(d)) == d
    del d["controller"]["input_norm"]
    with pytest.raises(ValueError, match=r"controller misses \['input_norm'\]"):
        DiffMSTConfig.from_dict(d)
    full = dataclasses.asdict(DiffMSTConfig(SR))
    with pytest.raises(ValueError, match=r"top level misses \['sample_rate'\]"):
        DiffMSTConfig.from_dict({k: v for k, v in full.items() if k != "sample_rate"})
    with pytest.raises(ValueError, match=r"top level misses \[\] / has unknown \['hop_seconds'\]"):
        DiffMSTConfig.from_dict({**full, "hop_seconds": 0.01})


@pytest.mark.parametrize("config", [EncoderConfig.lite(), EncoderConfig(freq_reduce="flatten", freq_pool=1),
                                    EncoderConfig(freq_reduce="flatten", freq_pool=4),
                                    EncoderConfig(n_fft=512, channels=(8, 16), strides=((4, 2), (3, 1)),
                                                  pools=((1, 1), (2, 2)), freq_reduce="flatten")])
def test_flattened_frequency_rows_match_the_cnn(config: EncoderConfig) -> None:
    enc = SpectrogramEncoder(config)
    rows = enc.blocks(enc.bands(enc.spectrogram(_audio(1, 4096)))).shape[2]
    assert enc.output_rows() == rows and enc.proj.in_features == config.channels[-1] * rows
    assert enc(_audio(2, 4096)).shape == (2, config.embed_dim)


def test_config_mismatch_raises() -> None:
    cfg = DiffMSTConfig(SR)
    cfg.controller = dataclasses.replace(cfg.controller, num_track_params=3)
    with pytest.raises(ValueError):
        DiffMST(cfg)
    with pytest.raises(ValueError):
        DiffMST(DiffMSTConfig(SR, EncoderConfig.lite(64), ControllerConfig.lite()))


def test_a_file_that_is_not_a_checkpoint_is_named_in_a_clear_error(tmp_path) -> None:
    from diffmst_lite.model.diffmst import read_checkpoint

    text, foreign = tmp_path / "notes.pt", tmp_path / "other.pt"
    text.write_text("not a checkpoint")
    torch.save({"weights": torch.zeros(3)}, foreign)
    for path, kind, message in ((text, ValueError, "notes.pt: not a diffmst-lite checkpoint"),
                                (foreign, ValueError, "other.pt: not a diffmst-lite checkpoint"),
                                (tmp_path, ValueError, "is a directory"),
                                (tmp_path / "missing.pt", FileNotFoundError, "missing.pt: no such checkpoint")):
        with pytest.raises(kind, match=message):
            DiffMST.load_checkpoint(path)
