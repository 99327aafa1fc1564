"""The -4.5 dB pan law (docs/design.md §4)."""

from __future__ import annotations

import math

import torch

# ----------------------------------------------------------------------- panner


def pan_gains(pan: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """-4.5 dB pan law: the geometric mean of the linear and the constant-power law.

    ``left = sqrt((1 - p) cos(p pi/2))``, ``right = sqrt(p sin(p pi/2))`` with
    ``p = (pan + 1) / 2`` in [0, 1]. Written as ``p * sqrt(pi/2 * sinc(p/2))``
    (``sin(p pi/2) = p pi/2 sinc(p/2)``), which is exactly zero at the edges and has
    a finite gradient there.

    Args:
        pan: ``(...)`` in [-1 (hard left), +1 (hard right)].

    Returns:
        ``(left, right)`` linear gains, each ``(...)``.

    Chapter 2: Gain and panning.
    """
    p = (pan + 1.0) / 2.0

    def side(w: torch.Tensor) -> torch.Tensor:
        return w * torch.sqrt(math.pi / 2 * torch.sinc(w / 2))

    return side(1.0 - p), side(p)


def pan(x: torch.Tensor, pan_position: torch.Tensor) -> torch.Tensor:
    """Pan mono ``x (batch, samples)`` to stereo ``(batch, 2, samples)``; pan ``(batch,)`` in [-1, 1].

    Chapter 2: Gain and panning.
    """
    left, right = pan_gains(pan_position)
    return x[:, None, :] * torch.stack([left, right], 1)[:, :, None]  # one product, no stacked copy
