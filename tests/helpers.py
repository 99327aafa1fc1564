"""Small signal helpers shared by the tests."""

from __future__ import annotations

import math

import torch

from diffmst_lite.console import params


def sine(freq_hz: float, seconds: float, sample_rate: int, amplitude: float = 0.5) -> torch.Tensor:
    t = torch.arange(int(seconds * sample_rate), dtype=torch.float64) / sample_rate
    return (amplitude * torch.sin(2 * math.pi * freq_hz * t)).float()


def rms_db(x: torch.Tensor) -> float:
    return float(10 * torch.log10(x.double().square().mean()))


def neutral(sample_rate: int, tracks: int = 1, batch: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Neutral normalised settings ``(batch, tracks, P)`` and ``(batch, Pm)``."""
    track = params.neutral_params(params.track_param_specs(sample_rate))
    master = params.neutral_params(params.master_param_specs(sample_rate))
    return track.repeat(batch, tracks, 1), master.repeat(batch, 1)


def set_physical(unit_params: torch.Tensor, specs: list[params.ParamSpec], name: str, value: float) -> torch.Tensor:
    """Copy of normalised ``unit_params (..., P)`` with parameter ``name`` set to a physical ``value``."""
    index = [s.name for s in specs].index(name)
    out = unit_params.clone()
    out[..., index] = float(specs[index].to_unit(torch.tensor(value, dtype=torch.float64)))
    return out
