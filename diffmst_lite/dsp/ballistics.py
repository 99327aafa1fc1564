"""The compressor's attack/release recursion without autograd, compiled once and cached on disk.

Rendering a mix (``render``, ``mix``, ``evaluate``'s scores) needs no gradient. There
the console runs this kernel instead of torchcomp's differentiable one: the same
one-pole recursion, but compiled with ``cache=True``, so a new process loads machine
code from numba's cache instead of compiling torchcomp's parallel kernel again (a few
seconds on every command). It is imported only when a compressor first runs without
gradients (importing it starts numba).
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True)
def attack_release(x: np.ndarray, zi: np.ndarray, at: np.ndarray, rt: np.ndarray) -> np.ndarray:
    """``y[b, t] = y[b, t-1] + c * (x[b, t] - y[b, t-1])`` with ``c = at[b]`` while ``x < y`` (attack)
    and ``rt[b]`` otherwise (release); ``y[b, -1] = zi[b]``.

    Args:
        x: ``(batch, samples)`` float32 or float64; zi, at, rt: ``(batch,)`` start value and the
            attack and release coefficients in (0, 1].

    Returns:
        ``(batch, samples)``, the same values as ``torchcomp.compressor_core`` (the
        operations in the same order).
    """
    batch, samples = x.shape
    y = np.empty_like(x)
    for b in range(batch):
        g = zi[b]
        for t in range(samples):
            f = x[b, t]
            coeff = at[b] if f < g else rt[b]
            g *= 1 - coeff
            g += coeff * f
            y[b, t] = g
    return y
