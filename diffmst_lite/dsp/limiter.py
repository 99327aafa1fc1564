"""A true-peak limiter for the end of the mix path (beyond the paper; docs/design.md §4.5).

Mastered references are loud for their peaks: a limiter holds their true peak near
-1 dBTP while the loudness goes up. The console's compressors have a 10 ms RMS
detector that lets onsets through, so matching a mastered reference's loudness with
the output gain alone either overshoots 0 dBFS or, capped at the peak, leaves the
mix several LU quieter than the reference. ``diffmst-lite mix`` therefore ends with
this limiter (the sheet's optional ``limiter`` field); training does not use it.

The gain is computed offline, looking ahead: for every sample the gain that keeps
its true peak (the largest oversampled value around it: 4x as ITU-R BS.1770-4 Annex 2, 8x below
44.1 kHz)
at the ceiling, the minimum of that over the next ``lookahead`` samples (the gain
is down before a peak arrives), an instant-attack / one-pole-release recursion, and a
moving average over the last ``lookahead`` samples (no clicks). Each of the averaged
values is at most the gain its window's peak needs, so no sample exceeds the ceiling.
The per-sample loops are numba kernels (:mod:`.ballistics`: ``interpolated_peaks``
and ``limiter_gain``): a 3-minute song takes about a tenth of a second per pass.
"""

from __future__ import annotations

import math
from functools import partial

import numpy as np
import torch
import torch.nn.functional as F

from diffmst_lite.dsp.compiled import compiled_loops
from diffmst_lite.dsp.dynamics import time_constant_to_coefficient
from diffmst_lite.dsp.threads import thread_map
from diffmst_lite.files.audio import polyphase_kernel


def true_peak_interpolation(sample_rate: int) -> tuple[int, int]:
    """``(oversampling, zeros)`` of the true-peak meter at ``sample_rate`` Hz.

    From 44.1 kHz up: 4x and a 12-tap interpolator per phase, as the 48-tap filter of
    BS.1770-4 Annex 2. Below, music has much of its energy close to Nyquist (at
    22.05 kHz, up to 11 kHz), where that short filter reads peaks low: a limited
    22.05 kHz mix it metered at -1.05 dBTP measured -0.5 with ffmpeg's ``ebur128`` and
    -0.55 with 8x ``scipy.signal.resample_poly``. There the meter oversamples 8x with a
    24-tap interpolator, which reads that mix at -0.45: a little above the other meters,
    so a mix limited with it stays under the ceiling on them too. From 44.1 kHz the
    4x meter is kept (the 8x one would double the metering time of ``mix``): music has
    little energy in its top octave, but a signal with much of it (white noise limited
    by 30 dB) can read up to 0.5 dB above the ceiling on an 8x meter.
    """
    return (4, 6) if sample_rate >= 44100 else (8, 12)


CEILING_MARGIN_DB = 0.1
PARALLEL_SAMPLES = 2**16  # channels of longer signals are metered on threads at once


def _oversampled_peaks(x: torch.Tensor, sample_rate: int) -> torch.Tensor:
    """``(samples,)``: the largest |value| of any channel from sample ``n`` up to ``n + 1``, oversampled
    (:func:`true_peak_interpolation`).

    One numba loop per channel (:func:`.ballistics.interpolated_peaks`); on a long
    signal the channels run at once, one per PyTorch thread.
    """
    oversampling, zeros = true_peak_interpolation(sample_rate)
    kernel, reach = polyphase_kernel(oversampling, 1, zeros)
    phases = kernel[1:].numpy()  # phase 0 is the sample itself
    padded = F.pad(x.detach().float(), (reach, reach)).numpy()
    peaks_of = partial(compiled_loops("ballistics").interpolated_peaks, phases=phases)
    channels = list(thread_map(peaks_of, padded, parallel=x.shape[-1] >= PARALLEL_SAMPLES))
    return torch.from_numpy(np.maximum.reduce(channels))


def true_peak_db(x: torch.Tensor, sample_rate: int) -> float:
    """True peak of ``x (channels, samples)`` in dBTP (4x oversampling as BS.1770-4 Annex 2, 8x below
    44.1 kHz: :func:`true_peak_interpolation`); -inf for silence."""
    peak = float(_oversampled_peaks(torch.as_tensor(x), sample_rate).max())
    return 20.0 * math.log10(peak) if peak > 0 else -math.inf


def limit_true_peak(x: torch.Tensor, sample_rate: int, ceiling_dbtp: float = -1.0, lookahead_ms: float = 2.0,
                    release_ms: float = 100.0) -> torch.Tensor:
    """Stereo-linked look-ahead limiter: ``x (channels, samples)`` -> the same, true peak <= ``ceiling_dbtp``.

    Args:
        sample_rate: Hz.
        ceiling_dbtp: the highest true peak allowed, dBTP.
        lookahead_ms: how long before a peak the gain starts coming down (and the
            length of the smoothing), ms.
        release_ms: time constant of the gain's recovery after a peak, ms.

    Returns:
        ``x`` times a gain <= 1 shared by all channels (float32). Not differentiable.
    """
    x = torch.as_tensor(x).detach().float()
    # aim a little lower: the gain changing between samples lifts a peak between them by ~0.03 dB,
    # and other meters' interpolation filters read up to ~0.05 dB higher
    ceiling = 10.0 ** ((ceiling_dbtp - CEILING_MARGIN_DB) / 20.0)
    reach = max(1, round(lookahead_ms * sample_rate / 1000.0))
    release = float(time_constant_to_coefficient(torch.tensor(release_ms, dtype=torch.float64), sample_rate))
    gain = compiled_loops("ballistics").limiter_gain(_oversampled_peaks(x, sample_rate).numpy(), ceiling, reach, release)
    return x * torch.from_numpy(gain)
