"""The six-band EQ's biquad cascade as numba loops (docs/design.md §4): its impulse
response and that response's gradient, and the cascade run on audio itself.

:func:`.biquads.parametric_eq` applies the cascade's impulse response (0.85 s) by FFT
convolution when gradients are needed. Running the six biquads on a unit impulse gives
that response exactly (up to the end of the window) in float64; the backward is the
adjoint recursion, one reverse-time loop per biquad. Both replace sampling the
cascade's complex response on a grid of 2^14-2^15 frequencies and an inverse FFT,
forward and backward, which cost several times more (benchmarks/README.md, "Sixteenth
session"). Without gradients (rendering) :func:`cascade_filter` runs the biquads on the
audio: the exact IIR filter, and a little faster than the FFT convolution ("Seventeenth
session").

The loops run their rows in parallel on PyTorch's own OpenMP threads (where numba's
OpenMP layer loads), release the GIL and are cached on disk, like those of :mod:`.ballistics`; imported at first use
through :func:`.compiled.compiled_loops` (docs/design.md §4.3).
"""

from __future__ import annotations

import numba
import numpy as np

from diffmst_lite.dsp.compiled import parallel_rows

PARALLEL = parallel_rows()  # rows in parallel on numba's OpenMP layer, if it is there (compiled.py)


@numba.njit(inline="always")
def _biquad_step(x: float, b: np.ndarray, a: np.ndarray, z1: np.ndarray, z2: np.ndarray, k: int) -> float:
    """One sample through biquad ``k`` (transposed direct form II): its output; updates its
    state ``z1[k]``, ``z2[k]``. ``b, a``: ``(3,)``, ``a[0] == 1``."""
    y = b[0] * x + z1[k]
    z1[k] = b[1] * x - a[1] * y + z2[k]
    z2[k] = b[2] * x - a[2] * y
    return y


@numba.njit(cache=True, nogil=True, parallel=PARALLEL)
def impulse_response(b: np.ndarray, a: np.ndarray, length: int) -> np.ndarray:
    """Impulse response of biquads in series, each ``(b0 + b1 z^-1 + b2 z^-2) / (1 + a1 z^-1 + a2 z^-2)``.

    Args:
        b, a: ``(rows, stages, 3)`` float64, normalised so that ``a[..., 0] == 1`` (not read).
        length: samples of the response.

    Returns:
        ``signals (rows, stages + 1, length + 2)`` float64: the input of the first biquad
        (a unit impulse) and the output of every biquad, each after two zeros (the
        samples before time 0, which the backward reads). The cascade's impulse
        response is ``signals[:, -1, 2:]``.
    """
    rows, stages, _ = b.shape
    signals = np.zeros((rows, stages + 1, length + 2))
    for r in numba.prange(rows):  # in parallel if PARALLEL
        z1, z2 = np.zeros(stages), np.zeros(stages)
        signals[r, 0, 2] = 1.0
        for n in range(2, length + 2):
            x = signals[r, 0, n]
            for k in range(stages):  # all biquads at one sample: their recursions overlap
                x = _biquad_step(x, b[r, k], a[r, k], z1, z2, k)
                signals[r, k + 1, n] = x
    return signals


@numba.njit(cache=True, nogil=True, parallel=PARALLEL)
def impulse_response_backward(b: np.ndarray, a: np.ndarray, signals: np.ndarray, grad: np.ndarray) -> tuple:
    """Gradients of a loss w.r.t. the coefficients of :func:`impulse_response`.

    For one biquad ``y = (B / A) x`` and ``gamma = dL/dy``: with ``g = gamma`` filtered
    backwards in time by ``1 / A`` (``g[n] = gamma[n] - a1 g[n+1] - a2 g[n+2]``, the
    adjoint of the causal recursion), ``dL/db_j = sum_n g[n] x[n-j]``,
    ``dL/da_j = -sum_n g[n] y[n-j]`` and ``dL/dx[n] = sum_j b_j g[n+j]``, which is the
    ``gamma`` of the biquad before it. One reverse-time loop per biquad, last first.

    Args:
        b, a: ``(rows, stages, 3)`` as given to :func:`impulse_response`.
        signals: its output.
        grad: ``(rows, length)`` float64, ``dL/d`` the impulse response.

    Returns:
        ``grad_b, grad_a``: ``(rows, stages, 3)`` float64 (``grad_a[..., 0]`` is 0).
    """
    rows, stages, _ = b.shape
    length = grad.shape[1]
    grad_b, grad_a = np.zeros((rows, stages, 3)), np.zeros((rows, stages, 3))
    for r in numba.prange(rows):  # in parallel if PARALLEL
        gamma = grad[r].copy()
        for k in range(stages - 1, -1, -1):
            b0, b1, b2, a1, a2 = b[r, k, 0], b[r, k, 1], b[r, k, 2], a[r, k, 1], a[r, k, 2]
            x, y = signals[r, k], signals[r, k + 1]  # sample n at index n + 2
            g1 = g2 = 0.0  # g[n + 1], g[n + 2]
            db0 = db1 = db2 = da1 = da2 = 0.0
            for n in range(length - 1, -1, -1):
                g = gamma[n] - a1 * g1 - a2 * g2
                db0 += g * x[n + 2]
                db1 += g * x[n + 1]
                db2 += g * x[n]
                da1 -= g * y[n + 1]
                da2 -= g * y[n]
                gamma[n] = b0 * g + b1 * g1 + b2 * g2  # dL/dx: the previous biquad's gamma
                g2, g1 = g1, g
            grad_b[r, k, 0], grad_b[r, k, 1], grad_b[r, k, 2] = db0, db1, db2
            grad_a[r, k, 1], grad_a[r, k, 2] = da1, da2
    return grad_b, grad_a


@numba.njit(cache=True, nogil=True, parallel=PARALLEL)
def cascade_filter(b: np.ndarray, a: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Biquads in series run on ``x``, from rest (as :func:`impulse_response` runs them on an impulse).

    Args:
        b, a: ``(rows, stages, 3)`` float64, normalised so that ``a[..., 0] == 1`` (not read).
        x: ``(rows, samples)`` float32 or float64.

    Returns:
        ``(rows, samples)`` in ``x``'s dtype; the biquads' states are float64.
    """
    rows, stages, _ = b.shape
    y = np.empty_like(x)
    for r in numba.prange(rows):  # in parallel if PARALLEL
        z1, z2 = np.zeros(stages), np.zeros(stages)
        for n in range(x.shape[1]):
            value = float(x[r, n])
            for k in range(stages):  # all biquads at one sample: their recursions overlap
                value = _biquad_step(value, b[r, k], a[r, k], z1, z2, k)
            y[r, n] = value
    return y
