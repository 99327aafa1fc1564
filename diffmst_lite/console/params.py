"""The console's parameter table: ranges, [0, 1] <-> physical units, random draws.

The network of Diff-MST (Vanka et al., ISMIR 2024) predicts every console setting
as a number in [0, 1]. This module maps those numbers to physical units (dB, Hz,
ms, ...) with the ranges of the paper (docs/design.md §4.1): levels linearly in dB,
frequencies, Q, ratios and times logarithmically, so that equal steps in [0, 1]
are equal steps to the ear.

Vector layouts (the order of the last axis):

- track  (``P = 26``): gain_db, eq_freq x6, eq_gain x6, eq_q x6,
  threshold_db, ratio, attack_ms, release_ms, knee_db, makeup_db, pan
- master (``Pm = 26``): gain_in_db, eq_freq x6, eq_gain x6, eq_q x6,
  threshold_db, ratio, attack_ms, release_ms, knee_db, makeup_db, gain_out_db

EQ bands, in order: low shelf, four peaking bands, high shelf.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

BAND_NAMES = ("low_shelf", "band0", "band1", "band2", "band3", "high_shelf")
COMPRESSOR_FIELDS = ("threshold_db", "ratio", "attack_ms", "release_ms", "knee_db", "makeup_db")
NUM_BANDS = 6

# (low, high) in Hz, the same at every sample rate; None means the cap, 0.45 * sample_rate.
BAND_FREQ_RANGES_HZ = (
    (20.0, 2000.0),
    (80.0, 2000.0),
    (2000.0, 8000.0),
    (8000.0, 12000.0),
    (12000.0, None),
    (6000.0, None),
)
NYQUIST_CAP = 0.45  # no band reaches above 0.45 * fs
MIN_BAND_RATIO = 1.2  # a capped range narrower than this (high / low) becomes the octave below the cap

@dataclass(frozen=True)
class ParamSpec:
    """One console parameter: its name, physical range and mapping from [0, 1]."""

    name: str
    low: float
    high: float
    log: bool = False
    unit: str = ""

    def to_physical(self, u: torch.Tensor | float) -> torch.Tensor:
        """Map u in [0, 1] to [low, high] (geometrically if ``log``): :func:`to_physical` of one parameter."""
        u = _floating(u)
        return to_physical(u[..., None], [self])[..., 0]

    def to_unit(self, value: torch.Tensor | float) -> torch.Tensor:
        """Inverse of :meth:`to_physical` (no clipping)."""
        value = _floating(value)
        return to_unit(value[..., None], [self])[..., 0]

    def contains(self, value: float, tol: float = 1e-6) -> bool:
        """Whether ``value`` lies in [low, high] (give or take ``tol`` of the span); False for NaN."""
        span = self.high - self.low
        return self.low - tol * span <= value <= self.high + tol * span

    def range_error(self, value: float, where: str | None = None) -> str | None:
        """The one-line error for a physical ``value`` outside the range (NaN included), else None.

        ``where`` names the value in the message (default: the parameter's name); the
        sheet reader and :func:`dict_to_params` both use it.
        """
        if self.contains(float(value)):
            return None
        return f"{where or self.name}: {value} is outside {self.low:g} … {self.high:g} {self.unit}".rstrip()


def band_freq_ranges(sample_rate: float) -> list[tuple[float, float]]:
    """Frequency range (Hz) of each EQ band at ``sample_rate``.

    The ranges are absolute (:data:`BAND_FREQ_RANGES_HZ`, the paper's ranges at
    44.1 kHz), so a setting valid at 22.05 kHz is valid unchanged at 44.1 or 48 kHz.
    Every bound is capped at 0.45 * fs, so no band reaches Nyquist. A band whose
    capped range would be narrower than :data:`MIN_BAND_RATIO` (at 22.05 kHz: band 3,
    12 kHz and up, lies wholly above the 9.92 kHz cap) covers the octave below the cap
    instead, ``(0.225 fs, 0.45 fs)``: it stays a usable peaking band and its log
    mapping stays well defined. At a higher rate such a setting is moved to the
    band's lower edge (at most one setting per channel strip between 22.05 and 44.1 kHz).
    """
    cap = NYQUIST_CAP * sample_rate
    ranges = []
    for low, high in BAND_FREQ_RANGES_HZ:
        high = cap if high is None else min(high, cap)
        if high / low < MIN_BAND_RATIO:
            low, high = cap / 2, cap
        ranges.append((low, high))
    return ranges


def _eq_specs(sample_rate: float) -> list[ParamSpec]:
    ranges = band_freq_ranges(sample_rate)
    freqs = [ParamSpec(f"eq.{b}.freq_hz", lo, hi, log=True, unit="Hz") for b, (lo, hi) in zip(BAND_NAMES, ranges)]
    gains = [ParamSpec(f"eq.{b}.gain_db", -12.0, 12.0, unit="dB") for b in BAND_NAMES]
    qs = [ParamSpec(f"eq.{b}.q", 0.1, 5.0, log=True) for b in BAND_NAMES]
    return freqs + gains + qs


def _compressor_specs() -> list[ParamSpec]:
    return [
        ParamSpec("compressor.threshold_db", -60.0, 0.0, unit="dB"),
        ParamSpec("compressor.ratio", 1.0, 10.0, log=True, unit=":1"),
        ParamSpec("compressor.attack_ms", 1.0, 250.0, log=True, unit="ms"),
        ParamSpec("compressor.release_ms", 10.0, 1000.0, log=True, unit="ms"),
        ParamSpec("compressor.knee_db", 1.0, 12.0, unit="dB"),
        ParamSpec("compressor.makeup_db", 0.0, 6.0, unit="dB"),
    ]


def track_param_specs(sample_rate: float) -> list[ParamSpec]:
    """The 26 per-track parameters, in vector order."""
    return (
        [ParamSpec("gain_db", -48.0, 24.0, unit="dB")]
        + _eq_specs(sample_rate)
        + _compressor_specs()
        + [ParamSpec("pan", -1.0, 1.0, unit="L..R")]
    )


def master_param_specs(sample_rate: float) -> list[ParamSpec]:
    """The 26 master-bus parameters, in vector order."""
    return (
        [ParamSpec("gain_in_db", -24.0, 24.0, unit="dB")]
        + _eq_specs(sample_rate)
        + _compressor_specs()
        + [ParamSpec("gain_out_db", -24.0, 24.0, unit="dB")]
    )


NUM_TRACK_PARAMS = 26
NUM_MASTER_PARAMS = 26
# Slices of the vectors shared by both layouts.
GAIN = 0
EQ_FREQ = slice(1, 7)
EQ_GAIN = slice(7, 13)
EQ_Q = slice(13, 19)
COMPRESSOR = slice(19, 25)
PAN = 25  # last slot of a track strip: pan
GAIN_OUT = 25  # last slot of the master bus: gain_out_db


def _floating(x: torch.Tensor | float) -> torch.Tensor:
    x = torch.as_tensor(x)
    return x if x.is_floating_point() else x.to(torch.get_default_dtype())


def _as_tensors(specs: list[ParamSpec], like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    low = torch.tensor([s.low for s in specs], dtype=like.dtype, device=like.device)
    high = torch.tensor([s.high for s in specs], dtype=like.dtype, device=like.device)
    is_log = torch.tensor([s.log for s in specs], device=like.device)
    return low, high, is_log


def to_physical(u: torch.Tensor, specs: list[ParamSpec]) -> torch.Tensor:
    """Map normalised parameters ``u (..., P)`` in [0, 1] to physical units ``(..., P)``."""
    if u.shape[-1] != len(specs):
        raise ValueError(f"expected {len(specs)} parameters on the last axis, got shape {tuple(u.shape)}")
    low, high, is_log = _as_tensors(specs, u)
    linear = low + (high - low) * u
    safe_low = torch.where(is_log, low, torch.ones_like(low))
    safe_high = torch.where(is_log, high, torch.ones_like(high))
    logarithmic = safe_low * torch.exp(u * torch.log(safe_high / safe_low))
    return torch.where(is_log, logarithmic, linear)


def to_unit(values: torch.Tensor, specs: list[ParamSpec]) -> torch.Tensor:
    """Inverse of :func:`to_physical`: physical ``(..., P)`` -> normalised ``(..., P)``."""
    low, high, is_log = _as_tensors(specs, values)
    linear = (values - low) / (high - low)
    safe_low = torch.where(is_log, low, torch.ones_like(low))
    safe_high = torch.where(is_log, high, torch.ones_like(high))
    safe_values = torch.where(is_log, values, torch.ones_like(values))
    logarithmic = torch.log(safe_values / safe_low) / torch.log(safe_high / safe_low)
    return torch.where(is_log, logarithmic, linear)


def neutral_physical(specs: list[ParamSpec]) -> dict[str, float]:
    """A setting that leaves a signal as it is: 0 dB, flat EQ, ratio 1, centre pan.

    EQ band frequencies sit at the geometric centre of their range and Q at 0.707;
    with 0 dB band gain they have no effect whatever their frequency and Q.
    """
    neutral = {}
    for s in specs:
        leaf = s.name.split(".")[-1]
        if leaf == "freq_hz":
            neutral[s.name] = math.sqrt(s.low * s.high)
        elif leaf == "q":
            neutral[s.name] = 0.707
        elif leaf == "ratio":
            neutral[s.name] = 1.0
        elif leaf == "threshold_db":
            neutral[s.name] = 0.0
        elif leaf == "attack_ms":
            neutral[s.name] = 10.0
        elif leaf == "release_ms":
            neutral[s.name] = 100.0
        elif leaf == "knee_db":
            neutral[s.name] = 6.0
        else:  # gains, makeup and pan
            neutral[s.name] = 0.0
    return neutral


def neutral_params(specs: list[ParamSpec]) -> torch.Tensor:
    """The neutral setting (see :func:`neutral_physical`) as a normalised vector ``(P,)``."""
    values = neutral_physical(specs)
    physical = torch.tensor([values[s.name] for s in specs], dtype=torch.float64)
    return to_unit(physical, specs).float().clamp(0.0, 1.0)


@dataclass
class RandomParamConfig:
    """Ranges (physical units) to draw random settings from, per parameter name.

    Names are those of :func:`track_param_specs` / :func:`master_param_specs`;
    an ``eq.*.gain_db`` style wildcard applies to every band. Parameters not listed
    are drawn over their full range. Values are drawn uniformly in [0, 1] space,
    so log-mapped parameters are log-uniform. The defaults give plausible mixes
    (no track 40 dB down, no EQ band at +12 dB on everything) for Method 1.
    """

    track: dict[str, tuple[float, float]] = field(default_factory=lambda: {
        "gain_db": (-12.0, 6.0),
        "eq.*.gain_db": (-6.0, 6.0),
        "eq.*.q": (0.5, 2.0),
        "compressor.threshold_db": (-30.0, 0.0),
        "compressor.ratio": (1.0, 6.0),
        "compressor.makeup_db": (0.0, 3.0),
        "pan": (-0.8, 0.8),
    })
    master: dict[str, tuple[float, float]] = field(default_factory=lambda: {
        "gain_in_db": (-6.0, 6.0),
        "eq.*.gain_db": (-6.0, 6.0),  # wide enough that references differ in brightness
        "eq.*.q": (0.5, 2.0),
        "compressor.threshold_db": (-24.0, 0.0),
        "compressor.ratio": (1.0, 4.0),
        "compressor.makeup_db": (0.0, 3.0),
        "gain_out_db": (-3.0, 3.0),
    })

    @staticmethod
    def full_range() -> "RandomParamConfig":
        """Uniform over the whole [0, 1] cube."""
        return RandomParamConfig(track={}, master={})


def _unit_bounds(specs: list[ParamSpec], ranges: dict[str, tuple[float, float]]) -> tuple[torch.Tensor, torch.Tensor]:
    low, high = torch.zeros(len(specs)), torch.ones(len(specs))
    for i, s in enumerate(specs):
        parts = s.name.split(".")
        wildcard = ".".join([parts[0], "*", parts[-1]]) if len(parts) == 3 else None
        bounds = ranges.get(s.name, ranges.get(wildcard))
        if bounds is not None:
            pair = s.to_unit(torch.tensor(bounds, dtype=torch.float64)).clamp(0.0, 1.0)
            low[i], high[i] = float(pair[0]), float(pair[1])
    return low, high


def _draw(shape: tuple[int, ...], specs: list[ParamSpec], ranges: dict, generator: torch.Generator | None) -> torch.Tensor:
    low, high = _unit_bounds(specs, ranges)
    u = torch.rand(*shape, len(specs), generator=generator)
    return low + (high - low) * u


def random_track_params(
    batch: int,
    tracks: int,
    sample_rate: float,
    generator: torch.Generator | None = None,
    config: RandomParamConfig | None = None,
) -> torch.Tensor:
    """Random per-track settings ``(batch, tracks, P)`` in [0, 1] (training Method 1).

    Chapter 5: The master bus and the whole console.
    """
    config = config or RandomParamConfig()
    return _draw((batch, tracks), track_param_specs(sample_rate), config.track, generator)


def random_master_params(
    batch: int,
    sample_rate: float,
    generator: torch.Generator | None = None,
    config: RandomParamConfig | None = None,
) -> torch.Tensor:
    """Random master-bus settings ``(batch, Pm)`` in [0, 1].

    Chapter 5: The master bus and the whole console.
    """
    config = config or RandomParamConfig()
    return _draw((batch,), master_param_specs(sample_rate), config.master, generator)


def params_to_dicts(params: torch.Tensor, specs: list[ParamSpec]) -> list[dict[str, float]]:
    """Normalised ``(..., P)`` -> a flat list of ``{name: physical value}`` dicts."""
    physical = to_physical(params.detach().double().reshape(-1, len(specs)), specs)
    return [{s.name: float(v) for s, v in zip(specs, row)} for row in physical]


def dict_to_params(values: dict[str, float], specs: list[ParamSpec]) -> torch.Tensor:
    """``{name: physical value}`` (all names of ``specs``) -> normalised ``(P,)``.

    Raises:
        ValueError: a missing name, or a value outside its range (NaN included), in one
            line naming it, e.g. ``pan: -1.1 is outside -1 … 1 L..R``: the console would
            otherwise extrapolate (a pan beyond -1 inverts the right channel's polarity).
    """
    for s in specs:
        if s.name not in values:
            raise ValueError(f"missing setting {s.name!r}")
        problem = s.range_error(values[s.name])
        if problem:
            raise ValueError(problem)
    physical = torch.tensor([float(values[s.name]) for s in specs], dtype=torch.float64)
    return to_unit(physical, specs).float().clamp(0.0, 1.0)


def rescale_params(params: torch.Tensor, from_specs: list[ParamSpec], to_specs: list[ParamSpec]) -> tuple[torch.Tensor, int]:
    """Re-express normalised ``params (..., P)`` under other specs (another sample rate).

    The physical values are kept; a value outside the new range (e.g. band 3 at
    6 kHz predicted at 22.05 kHz, where the band covers 4.96-9.92 kHz, rendered at
    44.1 kHz, where it covers 12-19.8 kHz) is moved to the nearest bound.

    Returns:
        ``(params, number of values moved)``.
    """
    physical = to_physical(params.double(), from_specs)
    low, high, _ = _as_tensors(to_specs, physical)
    moved = int(((physical < low - 1e-6 * (high - low)) | (physical > high + 1e-6 * (high - low))).sum())
    return to_unit(torch.minimum(torch.maximum(physical, low), high), to_specs).float().clamp(0, 1), moved
