"""A true-peak limiter for the end of the mix path (beyond the paper; docs/design.md §4.5).

Mastered references are loud for their peaks: a limiter holds their true peak near
-1 dBTP while the loudness goes up. The console's compressors have a 10 ms RMS
detector that lets onsets through, so matching a mastered reference's loudness with
the output gain alone either overshoots 0 dBFS or, capped at the peak, leaves the
mix several LU quieter than the reference. ``diffmst-lite mix`` therefore ends with
this limiter (the sheet's optional ``limiter`` field); training does not use it.

The gain is computed offline, looking ahead: for every sample the gain that keeps
its true peak (the largest 4x-oversampled value around it, ITU-R BS.1770-4 Annex 2)
at the ceiling, the minimum of that over the next ``lookahead`` samples (the gain
is down before a peak arrives), an instant-attack / one-pole-release recursion, and a
moving average over the last ``lookahead`` samples (no clicks). Each of the averaged
values is at most the gain its window's peak needs, so no sample exceeds the ceiling.
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from functools import partial

import numpy as np
import torch
import torch.nn.functional as F

from diffmst_lite.dsp.dynamics import _kernels, compressor_core, time_constant_to_coefficient
from diffmst_lite.files.audio import polyphase_kernel

TRUE_PEAK_OVERSAMPLING = 4  # BS.1770-4 Annex 2 (for 44.1 and 48 kHz)
TRUE_PEAK_ZEROS = 6  # interpolation filter: 12 taps per phase, as the 48-tap filter of BS.1770-4 Annex 2
CEILING_MARGIN_DB = 0.05
PARALLEL_SAMPLES = 2**16  # channels of longer signals are metered on threads at once


def _oversampled_peaks(x: torch.Tensor, sample_rate: int) -> torch.Tensor:
    """``(samples,)``: the largest |value| of any channel from sample ``n`` up to ``n + 1``, 4x oversampled.

    One numba loop per channel (:func:`.ballistics.interpolated_peaks`); on a long
    signal the channels run at once, one per PyTorch thread.
    """
    kernel, reach = polyphase_kernel(TRUE_PEAK_OVERSAMPLING, 1, TRUE_PEAK_ZEROS)
    phases = kernel[1:].numpy()  # phase 0 is the sample itself
    padded = F.pad(x.detach().float(), (reach, reach)).numpy()
    peaks_of = partial(_kernels().interpolated_peaks, phases=phases)
    workers = min(len(padded), torch.get_num_threads())
    if workers > 1 and x.shape[-1] >= PARALLEL_SAMPLES:
        with ThreadPoolExecutor(workers, thread_name_prefix="diffmst-peaks") as pool:
            channels = list(pool.map(peaks_of, padded))
    else:
        channels = [peaks_of(row) for row in padded]
    return torch.from_numpy(np.maximum.reduce(channels))


def _sliding_min(x: torch.Tensor, width: int) -> torch.Tensor:
    """``out[n] = min(x[n : n + width])`` of ``x (samples,)`` (1 beyond the end), in O(samples).

    van Herk / Gil-Werman: in blocks of ``width``, a running minimum from each block's
    end and one from its start; any window spans the end of one block and the start
    of the next, so it is the smaller of the two running minima.
    """
    n = x.shape[-1]
    blocks = -(-n // width) + 1
    padded = F.pad(x, (0, blocks * width - n), value=1.0).reshape(blocks, width)
    from_end = padded.flip(1).cummin(1).values.flip(1).reshape(-1)  # min(x[i : end of i's block])
    from_start = padded.cummin(1).values.reshape(-1)  # min(x[start of i's block : i + 1])
    return torch.minimum(from_end[:n], from_start[width - 1 : width - 1 + n])


def true_peak_db(x: torch.Tensor, sample_rate: int) -> float:
    """True peak of ``x (channels, samples)`` in dBTP (4x oversampling, BS.1770-4 Annex 2); -inf for silence."""
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
    # aim a little lower: the gain changing between samples can lift a peak between them by ~0.01 dB
    ceiling = 10.0 ** ((ceiling_dbtp - CEILING_MARGIN_DB) / 20.0)
    needed = (ceiling / _oversampled_peaks(x, sample_rate).clamp_min(1e-12)).clamp(max=1.0)
    reach = max(1, round(lookahead_ms * sample_rate / 1000.0))
    ahead = _sliding_min(needed, reach + 1)[None]  # min over [n, n + reach]
    release = time_constant_to_coefficient(torch.tensor([release_ms], dtype=torch.float64), sample_rate).float()
    one = torch.ones(1)
    with torch.no_grad():  # instant attack (coefficient 1), one-pole release: the compressor's recursion
        released = compressor_core(ahead, one, one, release)
    # before the start: the first gain, which is already down for any peak in the first window
    window = torch.cat([released[:, :1].expand(1, reach), released], 1).double().cumsum(1)
    gain = ((window[:, reach:] - F.pad(window, (1, 0))[:, : -reach - 1]) / (reach + 1)).float()  # mean over [n-reach, n]
    return x * gain.clamp(max=1.0)
