"""Style losses of Diff-MST (Vanka et al., ISMIR 2024, §3.3).

- :class:`AudioFeatureLoss`: weighted sum of MSEs between features of the
  predicted mix and of the reference (RMS, crest factor, stereo width, stereo
  imbalance, Bark spectrum). Content-independent: the reference may be a
  different song (training Method 2). RMS is linear and crest factor in dB, as in
  the official implementation, for which the paper's weights were chosen.
- :class:`MRSTFTLoss`: multi-resolution STFT loss (auraloss, Steinmetz & Reiss
  2020) with log and linear magnitude terms; needs the same content (Method 1).

Both optionally loudness-normalise prediction and reference to the same target
(-16 LUFS) first, so a level mismatch is not part of what the loss measures.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn as nn

from diffmst_lite.losses import features
from diffmst_lite.dsp.loudness import loudness_normalize


@dataclass
class AFWeights:
    """Weights of the AF loss terms (the paper's values by default)."""

    rms: float = 0.1
    crest_factor: float = 0.001
    stereo_width: float = 1.0
    stereo_imbalance: float = 1.0
    bark_spectrum: float = 0.1


def af_weights(weights: AFWeights | dict | None = None) -> dict[str, float]:
    """``{term: weight}``: the paper's weights, with those given in ``weights`` in their place.

    Raises:
        ValueError: a term :class:`AFWeights` does not have, or a negative weight.
    """
    merged = asdict(AFWeights())
    given = asdict(weights) if isinstance(weights, AFWeights) else dict(weights or {})
    unknown = sorted(set(given) - set(merged))
    if unknown:
        raise ValueError(f"unknown AF terms {unknown}; known: {', '.join(merged)}")
    if any(weight < 0 for weight in given.values()):
        raise ValueError(f"AF weights must be >= 0, got {given}")
    return {**merged, **given}


class AudioFeatureLoss(nn.Module):
    """Audio-feature (AF) loss: ``sum_k w_k * MSE(f_k(pred), f_k(ref))``.

    The features are those of :mod:`diffmst_lite.losses.features`, with RMS **linear**
    (full-scale units) by default, as in the official Diff-MST code
    (``mst/loss.py``): the paper's weight 0.1 was chosen for it. With RMS in dB
    (``rms_db=True``) the same weight makes the RMS term large: after loudness
    normalisation, per-channel RMS in dB mostly measures left/right balance and
    dominates the loss: in chapter 7 a mix panned further left has an RMS MSE of about
    20 dB² (three quarters of its AF loss) against a linear one of a few 1e-3 (under
    0.1 %), and even a master EQ change is about two thirds RMS in dB.

    Args:
        sample_rate: Hz, for the Bark spectrum.
        weights: :class:`AFWeights` (or a dict of some of its names; the others keep the
            paper's values); paper values by default. Unknown names and negative weights
            raise ``ValueError`` (:func:`af_weights`).
        target_lufs: loudness both mixes are normalised to first; ``None`` to skip.
        rms_db: compare RMS levels in dB instead of linear.

    Call with ``pred, ref`` of shape ``(batch, 2, samples)`` (lengths may differ);
    returns a scalar tensor. :meth:`terms` returns the unweighted per-feature MSEs.

    Chapter 7: The audio-feature loss.
    """

    def __init__(self, sample_rate: float, weights: AFWeights | dict | None = None, target_lufs: float | None = -16.0,
                 rms_db: bool = False):
        super().__init__()
        self.sample_rate = sample_rate
        self.weights = af_weights(weights)
        self.target_lufs, self.rms_db = target_lufs, rms_db

    def _prepare(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.target_lufs is None else loudness_normalize(x, self.sample_rate, self.target_lufs)

    def terms(self, pred: torch.Tensor, ref: torch.Tensor) -> dict[str, torch.Tensor]:
        """Unweighted MSE of each feature, ``{name: scalar tensor}``."""
        if pred.shape[0] != ref.shape[0]:
            raise ValueError(f"pred and ref batch sizes differ: {pred.shape[0]} vs {ref.shape[0]}")
        pred_features = features.all_features(self._prepare(pred), self.sample_rate, self.rms_db)
        ref_features = features.all_features(self._prepare(ref), self.sample_rate, self.rms_db)
        return {name: (pred_features[name] - ref_features[name]).square().mean() for name in pred_features}

    def total_and_terms(self, pred: torch.Tensor, ref: torch.Tensor
                        ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The weighted total (scalar) and the unweighted terms of :meth:`terms`, from one
        computation of the features: the one place the weights are applied."""
        terms = self.terms(pred, ref)
        return sum(self.weights[name] * value for name, value in terms.items()), terms

    def forward(self, pred: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
        """The AF loss: a scalar tensor (docs/design.md §5)."""
        return self.total_and_terms(pred, ref)[0]


class MRSTFTLoss(nn.Module):
    """Multi-resolution STFT loss: auraloss ``MultiResolutionSTFTLoss`` with FFT sizes
    512 / 2048 / 8192, hop W/2, L1 of log magnitudes plus L1 of linear magnitudes
    (no spectral-convergence term), on each channel of ``(batch, 2, samples)``.

    Frames are centred with reflect padding of half a window, which needs more samples
    than that: inputs must be at least :attr:`min_samples` = ``max(fft_sizes) // 2 + 1``
    long (4097 by default), and shorter ones raise a ``ValueError`` naming the minimum.
    Between that and ``max(fft_sizes)`` samples the largest resolution still runs, its
    few frames partly made of the reflected padding; pass smaller ``fft_sizes`` for short
    signals.

    Args:
        sample_rate: needed only for loudness normalisation.
        target_lufs: loudness both mixes are normalised to first; ``None`` to skip.

    Chapter 8: The multi-resolution STFT loss.
    """

    def __init__(self, sample_rate: float | None = None, target_lufs: float | None = None,
                 fft_sizes: tuple[int, ...] = (512, 2048, 8192)):
        super().__init__()
        from auraloss.freq import MultiResolutionSTFTLoss

        if target_lufs is not None and sample_rate is None:
            raise ValueError("MRSTFTLoss needs sample_rate to loudness-normalise")
        self.sample_rate, self.target_lufs = sample_rate, target_lufs
        self.min_samples = max(fft_sizes) // 2 + 1
        self.loss = MultiResolutionSTFTLoss(
            fft_sizes=list(fft_sizes),
            hop_sizes=[n // 2 for n in fft_sizes],
            win_lengths=list(fft_sizes),
            w_sc=0.0,
            w_log_mag=1.0,
            w_lin_mag=1.0,
        )

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if pred.shape != target.shape:
            raise ValueError(f"MRSTFT loss needs equal shapes, got {tuple(pred.shape)} and {tuple(target.shape)}")
        if pred.shape[-1] < self.min_samples:
            raise ValueError(f"MRSTFT loss needs at least {self.min_samples} samples (half its largest FFT size, "
                             f"{2 * (self.min_samples - 1)}, plus one), got {pred.shape[-1]}; pass smaller fft_sizes")
        if self.target_lufs is not None:
            pred = loudness_normalize(pred, self.sample_rate, self.target_lufs)
            target = loudness_normalize(target, self.sample_rate, self.target_lufs)
        return self.loss(pred, target)
