"""Style descriptors (diffmst_lite.model.descriptors) and warm starts from checkpoints
that predate them: the numbers must mean what the docstrings say, and a model with
untrained projections must behave exactly like one without them."""

from __future__ import annotations

import math

import pytest
import torch

from diffmst_lite.losses.features import stereo_imbalance, stereo_width
from diffmst_lite.model import DiffMST
from diffmst_lite.model.descriptors import (MIX_DESCRIPTOR_SIZE, TRACK_DESCRIPTOR_SIZE, mix_descriptor,
                                            style_descriptors, track_descriptors)
from diffmst_lite.training.loop import warm_start

SR = 22050
N = 2 * SR


def _noise(*shape: int, seed: int = 0) -> torch.Tensor:
    return 0.1 * torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def test_mix_descriptor_reads_width_imbalance_and_crest() -> None:
    left = _noise(1, 1, N)
    panned = torch.cat([left, 0.5 * left], dim=1)  # louder on the left
    d = mix_descriptor(panned, SR)
    assert d.shape == (1, MIX_DESCRIPTOR_SIZE)
    assert d[0, -1].item() == pytest.approx(stereo_imbalance(panned).item(), abs=1e-6)
    assert d[0, -1].item() == pytest.approx((0.25 - 1) / (0.25 + 1), abs=1e-3)
    assert d[0, -2].item() == pytest.approx(stereo_width(panned).item(), rel=1e-4)  # (0.5/1.5)^2 = 1/9
    assert d[0, -3].item() == pytest.approx(math.log10(1 / 9) / 3, abs=1e-3)
    # the level does not matter: every mix is measured at -16 LUFS
    assert torch.allclose(mix_descriptor(0.1 * panned, SR), d, atol=1e-4)


def test_track_descriptors_keep_relative_levels_and_ignore_padding() -> None:
    tracks = _noise(1, 3, N)
    tracks[0, 1] *= 2.0  # +6.02 dB
    per_track, track_sum = track_descriptors(tracks, None, SR)
    assert per_track.shape == (1, 3, TRACK_DESCRIPTOR_SIZE) and track_sum.shape == (1, MIX_DESCRIPTOR_SIZE)
    level_db = 20 * (per_track[0, :, -1] - 1)
    assert (level_db[1] - level_db[0]).item() == pytest.approx(6.02, abs=0.1)
    # the Bark spectra are the same shape, 6 dB apart (natural log / 2 per band)
    shift = (per_track[0, 1, :-1] - per_track[0, 0, :-1]).mean().item()
    assert shift == pytest.approx(math.log(2.0) / 2.0, abs=0.05)
    # a padded track: zeros, and the others' numbers as if it were absent
    padded = torch.cat([tracks, 5 * _noise(1, 1, N, seed=9)], dim=1)
    mask = torch.tensor([[True, True, True, False]])
    per_padded, sum_padded = track_descriptors(padded, mask, SR)
    assert torch.equal(per_padded[0, 3], torch.zeros(TRACK_DESCRIPTOR_SIZE))
    assert torch.allclose(per_padded[:, :3], per_track, atol=1e-5)
    assert torch.allclose(sum_padded, track_sum, atol=1e-5)


def test_master_descriptor_is_zero_difference_for_the_plain_sum() -> None:
    tracks = _noise(2, 4, N)
    centred_sum = tracks.sum(1, keepdim=True).expand(2, 2, N)
    d = style_descriptors(tracks, 0.3 * centred_sum, None, SR)
    assert d["master"].shape == (2, 2 * MIX_DESCRIPTOR_SIZE)
    assert d["master"][:, MIX_DESCRIPTOR_SIZE:].abs().max().item() < 1e-4
    brighter = centred_sum + 0.5 * torch.diff(centred_sum, dim=-1, prepend=centred_sum[..., :1])
    bark_diff = style_descriptors(tracks, brighter, None, SR)["master"][:, MIX_DESCRIPTOR_SIZE:][:, :24]
    # about +4 dB treble against bass (a natural-log unit is 8.7 dB; scaled by 1/2)
    assert (bark_diff[:, -6:].mean() - bark_diff[:, :6].mean()).item() * 2 * 8.69 > 3.0


def test_descriptors_are_finite_on_silence() -> None:
    d = style_descriptors(torch.zeros(1, 3, N), torch.zeros(1, 2, N), None, SR)
    assert all(torch.isfinite(v).all() for v in d.values())


def test_untrained_projections_change_nothing() -> None:
    model = DiffMST.lite(SR).eval()
    tracks, reference = _noise(1, 3, N), _noise(1, 2, N, seed=1)
    with torch.no_grad():
        with_descriptors = model.predict_params(tracks, reference)
        without = model.controller(model.embed_tracks(tracks), model.embed_reference(reference))
        model.controller.descriptor_projections["master"].weight[0, 0] = 1.0
        changed = model.predict_params(tracks, reference)
    assert all(torch.equal(a, b) for a, b in zip(with_descriptors, without))
    assert not torch.equal(changed[1], without[1])  # the projections are used


def test_warm_start_from_a_checkpoint_without_descriptors(tmp_path) -> None:
    model = DiffMST.lite(SR)
    state = {k: v for k, v in model.state_dict().items() if "descriptor_projections" not in k}
    old = tmp_path / "old.pt"
    torch.save({"config": model.config_dict(), "model": state}, old)
    started = warm_start(old)
    assert all(torch.equal(started.state_dict()[k], v) for k, v in state.items())
    assert started.controller.descriptor_projections["tracks"].weight.abs().sum() == 0
    del state["controller.master_token"]
    torch.save({"config": model.config_dict(), "model": state}, old)
    with pytest.raises(ValueError, match="missing .*controller.master_token"):
        warm_start(old)


def test_descriptor_projections_get_their_own_learning_rate() -> None:
    from diffmst_lite.training.loop import TrainConfig, build_optimizer

    model = DiffMST.lite(SR)
    groups = build_optimizer(model, TrainConfig(lr=1e-4, descriptor_lr=1e-3)).param_groups
    assert [g["lr"] for g in groups] == [1e-4, 1e-3]
    projections = set(map(id, model.controller.descriptor_projections.parameters()))
    assert set(map(id, groups[1]["params"])) == projections
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))
    assert [g["lr"] for g in build_optimizer(model, TrainConfig(lr=1e-4)).param_groups] == [1e-4, 1e-4]


def test_loading_a_checkpoint_without_descriptors_names_the_way_out(tmp_path) -> None:
    model = DiffMST.lite(SR)
    old = tmp_path / "old.pt"
    torch.save({"config": model.config_dict(),
                "model": {k: v for k, v in model.state_dict().items() if "descriptor_projections" not in k}}, old)
    with pytest.raises(ValueError, match=r"old.pt: a checkpoint from before the style descriptors .* train --init"):
        DiffMST.load_checkpoint(old)
