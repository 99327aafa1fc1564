"""The per-sample loops of the compressor and the limiter as numba kernels, compiled once
and cached on disk.

* :func:`attack_release`: the attack/release recursion (the smoothing of the gain,
  and :func:`.dynamics.compressor_core` without gradients).
* :func:`detector` and :func:`gain_exponent`: the level detector and the soft-knee
  static curve of :func:`.dynamics.compressor`.
* :func:`side_chain_backward`: the gradient of the whole side chain (detector, curve,
  smoothing) in one reverse-time loop per row.
* :func:`interpolated_peaks` and :func:`limiter_gain`: the true-peak meter (4x
  oversampling) and the gain of :mod:`.limiter`.

:class:`.dynamics._SideChain` runs them in place of about ten full-length torch
passes forward and again backward (each with a ``(batch, samples)`` temporary, and
torchcomp's backward through torchlpc). Between the forward loops, torch's vectorised
``log`` and ``exp`` run: numba calls the C library's scalar ones, which cost more than
all the loops together (15 against 7 ns per sample).

The compressor's loops run their rows in parallel on PyTorch's own OpenMP threads
where numba's OpenMP layer loads (:mod:`.compiled`, docs/design.md §4.3); the limiter's are single-threaded (its
channels run on Python threads). All release the GIL (so that Python threads can run
two of them at once when rendering) and are compiled with ``cache=True``: a new process
loads machine code from numba's cache (``__pycache__`` next to this file, or
``NUMBA_CACHE_DIR`` when set) instead of compiling again. This module is imported
only when a compressor or the limiter first runs (:func:`.compiled.compiled_loops`). The
recursions' scalars are float64 whatever the arrays' dtype (as in torchcomp's kernel), so slow
one-pole recursions do not stall on float32 rounding.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from diffmst_lite.dsp.compiled import parallel_rows

PARALLEL = parallel_rows()  # rows in parallel on numba's OpenMP layer, if it is there (compiled.py)

DB_PER_NEPER_POWER = 10.0 / math.log(10.0)  # 10 log10(p) == ln(p) * this
NEPER_PER_DB_AMPLITUDE = math.log(10.0) / 20.0  # 10 ** (db / 20) == exp(db * this)


@numba.njit(cache=True, nogil=True, parallel=PARALLEL)
def attack_release(x: np.ndarray, zi: np.ndarray, at: np.ndarray, rt: np.ndarray) -> tuple:
    """``y[b, t] = y[b, t-1] + c * (x[b, t] - y[b, t-1])`` with ``c = at[b]`` while ``x < y`` (attack)
    and ``rt[b]`` otherwise (release); ``y[b, -1] = zi[b]``.

    Args:
        x: ``(batch, samples)`` float32 or float64; zi, at, rt: ``(batch,)`` start value and the
            attack and release coefficients in (0, 1].

    Returns:
        ``y (batch, samples)``, the same values as ``torchcomp.compressor_core`` (the
        operations in the same order), and ``attacking (batch, samples)`` bool, the
        branch taken.
    """
    batch, samples = x.shape
    y = np.empty_like(x)
    attacking = np.empty((batch, samples), np.bool_)
    for b in numba.prange(batch):  # in parallel if PARALLEL
        g, attack, release = zi[b], at[b], rt[b]
        for t in range(samples):
            f = x[b, t]
            attacking[b, t] = f < g
            coeff = attack if f < g else release
            g *= 1 - coeff
            g += coeff * f
            y[b, t] = g
    return y, attacking


@numba.njit(cache=True, nogil=True, parallel=PARALLEL)
def detector(x: np.ndarray, silence: float, coefficient: np.ndarray) -> np.ndarray:
    """The RMS level detector: ``d[b, t] = d[b, t-1] + c (p[b, t] - d[b, t-1])``, ``d[b, -1] = 0``.

    Args:
        x: ``(batch, channels, samples)`` float32 or float64.
        silence: added to the power (the detector's floor).
        coefficient: ``(batch,)`` ``c`` in (0, 1].

    Returns:
        ``(batch, samples)`` in ``x``'s dtype; ``p`` is the mean over channels of ``x^2``
        plus ``silence`` (a one-pole smoother is :func:`attack_release` with equal
        coefficients: the same operations).
    """
    batch, channels, samples = x.shape
    detected = np.empty((batch, samples), x.dtype)
    for b in numba.prange(batch):  # in parallel if PARALLEL
        c = coefficient[b]
        keep, d = 1 - c, 0.0
        for t in range(samples):
            power = 0.0
            for ch in range(channels):
                power += float(x[b, ch, t]) ** 2
            d *= keep
            d += c * (power / channels + silence)
            detected[b, t] = d
    return detected


@numba.njit(cache=True, nogil=True)
def _curve(log_power: float, threshold_db: float, knee: float, half_per_knee: float) -> tuple:
    """The soft-knee curve (Giannoulis et al. 2012, as :func:`.dynamics.gain_computer`) at one sample.

    Returns ``(over, inside, base)``: level above threshold (dB), its part in the knee
    (dB) and the gain change (dB) divided by ``1/ratio - 1``; ``half_per_knee = 0.5 / knee``.
    """
    over = DB_PER_NEPER_POWER * log_power - threshold_db
    inside = min(max(over + knee / 2, 0.0), knee)
    return over, inside, inside * inside * half_per_knee + max(over - knee / 2, 0.0)


@numba.njit(cache=True, nogil=True, parallel=PARALLEL)
def gain_exponent(
    log_power: np.ndarray, threshold_db: np.ndarray, ratio: np.ndarray, knee_db: np.ndarray,
) -> np.ndarray:
    """``ln`` of the static curve's linear gain, from ``ln`` of the detected power.

    Args:
        log_power: ``(batch, samples)``; threshold_db, ratio, knee_db: ``(batch,)``,
            ratio >= 1, knee > 0 dB.

    Returns:
        ``(batch, samples)`` <= 0, in ``log_power``'s dtype: ``exp`` of it is the target gain.
    """
    batch, samples = log_power.shape
    exponent = np.empty_like(log_power)
    for b in numba.prange(batch):  # in parallel if PARALLEL
        scale, threshold, knee = NEPER_PER_DB_AMPLITUDE * (1.0 / ratio[b] - 1.0), threshold_db[b], knee_db[b]
        half_per_knee = 0.5 / knee
        for t in range(samples):
            exponent[b, t] = scale * _curve(log_power[b, t], threshold, knee, half_per_knee)[2]
    return exponent


@numba.njit(cache=True, nogil=True, parallel=PARALLEL)
def side_chain_backward(
    x: np.ndarray, detector: np.ndarray, threshold_db: np.ndarray, ratio: np.ndarray, knee_db: np.ndarray,
    attack: np.ndarray, release: np.ndarray, detected: np.ndarray, log_power: np.ndarray, target: np.ndarray,
    gain: np.ndarray, attacking: np.ndarray, grad_gain: np.ndarray, grad_detected: np.ndarray,
) -> tuple:
    """Gradients of the side chain, one reverse-time loop per row.

    Forward: ``detected = detector(x)``, ``log_power = ln(detected)``, ``target =
    exp(gain_exponent(log_power))``, ``gain, attacking = attack_release(target, 1, ...)``.
    The branch (attack or release) is held constant, as torchcomp does.

    Args:
        x: ``(batch, channels, samples)``; detector ... release: ``(batch,)`` float64, the
            detector's coefficient, the curve's settings, the attack and release coefficients.
        detected, log_power, target, gain, attacking: ``(batch, samples)``, from the forward pass.
        grad_gain: ``(batch, samples)``, the gradient of the loss w.r.t. ``gain``.
        grad_detected: ``(batch, samples)`` w.r.t. ``detected``, or ``(batch, 0)`` if none.

    Returns:
        ``grad_x (batch, channels, samples)`` in ``x``'s dtype and ``(5, batch)`` float64:
        the gradients w.r.t. threshold_db, ratio, knee_db, attack and release.
    """
    batch, channels, samples = x.shape
    grad_x = np.empty_like(x)
    grads = np.zeros((5, batch))
    for b in numba.prange(batch):  # in parallel if PARALLEL
        # per-row constants in locals, and no division in the loop but one
        threshold, slope, knee, a, r = threshold_db[b], 1.0 / ratio[b] - 1.0, knee_db[b], attack[b], release[b]
        per_knee, keep_detector, by_power_per_detected = 1.0 / knee, 1 - detector[b], 2 * detector[b] / channels
        by_gain = 0.0  # d loss / d gain[t], all later samples included
        keep = 0.0  # d gain[t+1] / d gain[t] = 1 - k[t+1]
        by_detected = 0.0  # d loss / d detected[t], all later samples included
        threshold_sum = base_sum = knee_sum = attack_sum = release_sum = 0.0
        for t in range(samples - 1, -1, -1):
            by_gain = grad_gain[b, t] + keep * by_gain
            k = a if attacking[b, t] else r
            keep = 1 - k
            by_coefficient = by_gain * (target[b, t] - (gain[b, t - 1] if t > 0 else 1.0))  # d gain[t] / d k
            by_attack = by_coefficient if attacking[b, t] else 0.0
            attack_sum += by_attack
            release_sum += by_coefficient - by_attack
            over, inside, base = _curve(log_power[b, t], threshold, knee, per_knee / 2)
            by_change = by_gain * k * target[b, t] * NEPER_PER_DB_AMPLITUDE  # d loss / d change (dB)
            in_knee = over < knee / 2  # or below it
            by_over = by_change * slope * (inside * per_knee if in_knee else 1.0)
            threshold_sum -= by_over
            base_sum += by_change * base
            knee_sum += by_change * inside * per_knee * (1 - inside * per_knee) / 2 if in_knee else 0.0
            here = by_over * DB_PER_NEPER_POWER / detected[b, t]  # through this sample's level
            if grad_detected.shape[1]:
                here += grad_detected[b, t]
            by_detected = here + keep_detector * by_detected
            for ch in range(channels):
                grad_x[b, ch, t] = by_power_per_detected * by_detected * x[b, ch, t]
        grads[0, b] = threshold_sum
        grads[1, b] = -base_sum / ratio[b] ** 2  # d slope / d ratio = -1 / ratio^2
        grads[2, b] = slope * knee_sum
        grads[3, b] = attack_sum
        grads[4, b] = release_sum
    return grad_x, grads


@numba.njit(cache=True, nogil=True, fastmath=True)
def interpolated_peaks(padded: np.ndarray, phases: np.ndarray) -> np.ndarray:
    """``peaks[n]``: the largest |value| of one channel from sample ``n`` up to ``n + 1``:
    the sample itself and the interpolated values between it and the next one.

    Args:
        padded: ``(samples + 2 * reach,)`` float32, the channel with ``reach`` zeros on each side.
        phases: ``(phases, 2 * reach + 1)`` float64: the interpolation filter of each
            in-between position (``polyphase_kernel`` without its phase 0).

    Returns:
        ``(samples,)`` float32. One pass over the audio, each sum in a register
        (``fastmath`` lets the short sums over taps use SIMD; the input is finite), where
        shifted copies added in torch pass over the whole song once per tap and phase.
    """
    num_phases, taps = phases.shape
    reach = (taps - 1) // 2
    samples = padded.shape[0] - 2 * reach
    weights = phases.astype(np.float32)
    peaks = np.empty(samples, np.float32)
    for n in range(samples):
        peak = abs(padded[n + reach])
        for p in range(num_phases):
            value = np.float32(0.0)
            for k in range(taps):
                value += weights[p, k] * padded[n + k]
            peak = max(peak, abs(value))
        peaks[n] = peak
    return peaks


@numba.njit(cache=True, nogil=True)
def limiter_gain(peaks: np.ndarray, ceiling: float, reach: int, release: float) -> np.ndarray:
    """The look-ahead limiter's gain (:func:`.limiter.limit_true_peak`) from the true peaks.

    Args:
        peaks: ``(samples,)`` float32, the true peak around each sample (:func:`interpolated_peaks`).
        ceiling: the highest peak allowed (linear).
        reach: look-ahead in samples (>= 1).
        release: the one-pole release coefficient in (0, 1].

    Returns:
        ``(samples,)`` float32 gain <= 1: per sample the gain its peak needs
        (``min(1, ceiling / peak)``), its minimum over ``[n, n + reach]`` (1 beyond the
        end), an instant-attack / one-pole-release recursion from 1, and the mean over
        ``[n - reach, n]`` (the first value repeated before the start). Four passes
        over ``(samples,)`` arrays, no temporaries of torch.
    """
    samples, width = peaks.shape[0], reach + 1
    padded = -(-samples // width) * width + width  # whole blocks, and one more of 1s
    needed = np.ones(padded)
    for n in range(samples):
        needed[n] = min(1.0, ceiling / max(float(peaks[n]), 1e-12))
    # minimum over [n, n + reach] (van Herk / Gil-Werman): within blocks of `width`, a
    # running minimum from each block's end and one from its start
    from_end, from_start = np.empty(padded), np.empty(padded)
    for start in range(0, padded, width):
        low = 1.0
        for n in range(start + width - 1, start - 1, -1):
            low = min(low, needed[n])
            from_end[n] = low
        low = 1.0
        for n in range(start, start + width):
            low = min(low, needed[n])
            from_start[n] = low
    released = np.empty(samples)
    g = 1.0
    for n in range(samples):
        ahead = min(from_end[n], from_start[n + width - 1])
        coefficient = 1.0 if ahead < g else release
        g *= 1 - coefficient
        g += coefficient * ahead
        released[n] = g
    gain = np.empty(samples, np.float32)
    total = released[0] * width  # the window [-reach, 0], the first value repeated
    for n in range(samples):
        if n > 0:
            total += released[n] - released[max(n - width, 0)]
        gain[n] = min(total / width, 1.0)
    return gain
