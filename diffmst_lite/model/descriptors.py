"""Style descriptors: the AF loss's own features as extra inputs of the controller.

Beyond the paper. Diff-MST (Vanka et al., ISMIR 2024, arXiv:2407.08889) gives the
controller only learned spectrogram embeddings, and the model must discover by
itself how the reference's spectral balance, width and dynamics differ from those
of the unmixed tracks. A small model trained on a CPU learns that slowly: on real
songs its Bark-spectrum and stereo-imbalance errors stayed near those of random
settings. So the controller also receives, as fixed numbers, the features the AF
loss compares (:mod:`diffmst_lite.losses.features`):

* reference: :func:`mix_descriptor` of the reference mix (Bark spectra of mid and
  side, crest factor of each channel, stereo width and imbalance), 53 numbers;
* master token: the same for the plain sum of the tracks, and the difference to
  the reference, which is what the master bus has to change (2 x 53 numbers);
* each track: its Bark spectrum and RMS level after the same gain that brings the
  track sum to -16 LUFS (:func:`track_descriptors`, 25 numbers), so levels stay
  relative to the other tracks.

Every mix is first brought to -16 LUFS, as inside the AF loss. The numbers are
shifted and scaled to lie roughly in [-2, 2]. The controller adds a linear
projection of them to the tokens; the projections start at zero, so a model
fine-tuned from a checkpoint without them starts from that checkpoint's exact
behaviour (chapter 10).
"""

from __future__ import annotations

import torch

from diffmst_lite.dsp.loudness import loudness, loudness_normalize, rms_db
from diffmst_lite.losses.features import (NUM_BARK_BANDS, bark_spectrum, crest_factor, log_bark_bands,
                                          stereo_imbalance, stereo_width)

DESCRIPTOR_LUFS = -16.0
MIX_DESCRIPTOR_SIZE = 2 * NUM_BARK_BANDS + 2 + 2 + 1  # Bark mid/side, crest L/R, width twice, imbalance (53)
TRACK_DESCRIPTOR_SIZE = NUM_BARK_BANDS + 1  # Bark spectrum and RMS level (25)
# natural-log Bark magnitudes of a -16 LUFS mix lie around -11 (the floor) ... -3
_BARK_CENTRE, _BARK_SCALE = -7.0, 2.0


def _scaled(log_bark: torch.Tensor) -> torch.Tensor:
    return (log_bark - _BARK_CENTRE) / _BARK_SCALE


def mix_descriptor(mix: torch.Tensor, sample_rate: float) -> torch.Tensor:
    """Style numbers of a stereo mix: ``(B, 2, N)`` -> ``(B, 53)``.

    Of the mix at -16 LUFS: the scaled Bark spectra of mid and side (48), the crest
    factor of left and right (2, dB / 20), the stereo width (2: ``log10`` of the
    side/mid energy ratio, floored at -60 dB, / 3, and the width itself, clipped at
    2) and the stereo imbalance (1, in [-1, 1]).
    """
    return _normalised_mix_descriptor(loudness_normalize(mix, sample_rate, DESCRIPTOR_LUFS), sample_rate)


def _normalised_mix_descriptor(x: torch.Tensor, sample_rate: float) -> torch.Tensor:
    """:func:`mix_descriptor` of a mix ``x`` already at -16 LUFS."""
    width = stereo_width(x)
    return torch.cat([
        _scaled(bark_spectrum(x, sample_rate)).flatten(1),
        crest_factor(x) / 20.0,
        (torch.log10(width + 1e-6) / 3.0)[:, None],
        width.clamp(max=2.0)[:, None],
        stereo_imbalance(x)[:, None],
    ], dim=1)


def track_descriptors(tracks: torch.Tensor, mask: torch.Tensor | None, sample_rate: float
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """Descriptors of the tracks and of their plain sum.

    Args:
        tracks: ``(B, T, N)`` mono tracks.
        mask: ``(B, T)`` bool, True for a real track; None means all real.
        sample_rate: Hz.

    Returns:
        ``per_track (B, T, 25)``: each track's scaled Bark spectrum and RMS level
        (dB / 20 + 1), after the one gain per example that brings the sum of its
        tracks to -16 LUFS (padded tracks: 0); ``track_sum (B, 53)``: the
        :func:`mix_descriptor` of that sum played in the centre.
    """
    B, T, N = tracks.shape
    if mask is not None:
        tracks = tracks * mask.unsqueeze(-1).to(tracks.dtype)
    total = tracks.sum(1, keepdim=True).expand(B, 2, N)
    gain = torch.pow(10.0, (DESCRIPTOR_LUFS - loudness(total, sample_rate)) / 20.0)[:, None, None]
    scaled = tracks * gain
    # hop of half the window: a long-term average needs no finer time grid
    bark = _scaled(log_bark_bands(scaled.reshape(B * T, N), sample_rate, hop=1024)).view(B, T, NUM_BARK_BANDS)
    level = (rms_db(scaled) / 20.0 + 1.0).clamp(min=-3.0)
    per_track = torch.cat([bark, level.unsqueeze(-1)], dim=-1)
    if mask is not None:
        per_track = per_track * mask.unsqueeze(-1).to(per_track.dtype)
    return per_track, _normalised_mix_descriptor(total * gain, sample_rate)  # the same gain brings the sum there


@torch.no_grad()
def style_descriptors(tracks: torch.Tensor, reference: torch.Tensor, mask: torch.Tensor | None,
                      sample_rate: float) -> dict[str, torch.Tensor]:
    """Everything the controller receives besides the embeddings (no gradients).

    Returns ``{"tracks": (B, T, 25), "reference": (B, 53), "master": (B, 106)}``; the
    master's is ``[reference, reference - track sum]``.
    """
    per_track, track_sum = track_descriptors(tracks, mask, sample_rate)
    ref = mix_descriptor(reference, sample_rate)
    return {"tracks": per_track, "reference": ref, "master": torch.cat([ref, ref - track_sum], dim=1)}
