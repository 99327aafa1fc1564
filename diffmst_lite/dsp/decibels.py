"""Decibel gains (docs/design.md §4)."""

from __future__ import annotations

import math

import torch


def db_to_amplitude(db: torch.Tensor) -> torch.Tensor:
    return torch.pow(10.0, db / 20.0)


def gain(x: torch.Tensor, gain_db: torch.Tensor) -> torch.Tensor:
    """Scale ``x (batch, ..., samples)`` by ``gain_db (batch,)`` decibels.

    Chapter 2: Gain and panning.
    """
    gain_db = torch.as_tensor(gain_db, dtype=x.dtype, device=x.device)
    return x * db_to_amplitude(gain_db).reshape(gain_db.shape + (1,) * (x.dim() - gain_db.dim()))


def peak_db(x) -> float:
    """Sample peak of ``x`` (a tensor or a NumPy array, any shape) in dBFS; -inf for
    silence or an empty signal."""
    peak = float(abs(x).max()) if math.prod(x.shape) else 0.0
    return 20.0 * math.log10(peak) if peak > 0 else -math.inf
